//! Bounded waiting: poll a condition until it holds or a deadline passes; never sleep blindly.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`wait_until`] polls.
pub const POLL_EVERY: Duration = Duration::from_millis(50);

/// Polls `probe` until it returns `Ok(value)`, and returns that value. `Err(state)` describes
/// what the probe saw; if `timeout` passes first, panics with `what` and the last state seen.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let last = match tokio::time::timeout(remaining.max(POLL_EVERY), probe()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(state)) => state,
            Err(_) => "the probe itself did not answer in time".to_owned(),
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Runs a whole test body with an upper bound on its duration, so a hang fails the test instead
/// of stalling the suite. The body is still alive when the timeout panics, so a cluster inside
/// it sees the panic (and prints its logs) while the unwinding drops it and kills its nodes.
///
/// The `ledger-node` binary is found (or built) first, outside the bound.
pub async fn bounded<T>(timeout: Duration, body: impl Future<Output = T>) -> T {
    tokio::task::spawn_blocking(crate::binary::node_binary)
        .await
        .expect("find or build the ledger-node binary");
    let mut body = std::pin::pin!(body);
    let deadline = tokio::time::sleep(timeout);
    tokio::select! {
        value = &mut body => value,
        () = deadline => panic!("the test did not finish within {timeout:?}"),
    }
}
