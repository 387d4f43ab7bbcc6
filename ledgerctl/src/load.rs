//! What the load commands (`bench`, `saga-bench`, `demo`) share.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use ledger_client::Client;

/// A latency histogram from 1 µs to 10 min, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    // The bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

/// Creates deals `{prefix}-0..count`, each with `max_investors` seats and room for every ticket,
/// a few at a time (a `hot` bench needs one per 200 requests).
pub async fn create_deals(
    client: &Client,
    prefix: &str,
    count: usize,
    max_investors: u32,
) -> Result<()> {
    const IN_FLIGHT: usize = 16;
    let mut creating = tokio::task::JoinSet::new();
    for d in 0..count {
        if creating.len() >= IN_FLIGHT {
            if let Some(created) = creating.join_next().await {
                created??;
            }
        }
        let (client, deal_id) = (client.clone(), format!("{prefix}-{d}"));
        creating.spawn(async move {
            client
                .create_deal(ledger_client::open_deal(
                    deal_id.clone(),
                    "1000000000000",
                    max_investors,
                ))
                .await
                .with_context(|| format!("creating deal {deal_id}"))
                .map(drop)
        });
    }
    while let Some(created) = creating.join_next().await {
        created??;
    }
    Ok(())
}

/// Waits (bounded) until some executor holds a lease, so that measured sagas start at once.
pub async fn wait_for_executors(client: &Client) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let status = client.status().await?;
        if status.executors.iter().any(|e| e.live) {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("no live saga executor after 30 s: are the nodes started with --executor?");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
