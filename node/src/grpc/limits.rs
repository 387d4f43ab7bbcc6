//! Server limits, so that no caller can exhaust a node: calls in flight (all connections
//! together), a time limit per call, and watch streams in total and per connection. Beyond a
//! limit the answer is `RESOURCE_EXHAUSTED` at once (nothing queues), which the client library
//! retries with backoff. Streams per HTTP/2 connection and message sizes per service are set on
//! the server and the services (`lib.rs`).
//!
//! Raft's own messages between nodes are exempt from the in-flight limit: a flood of client
//! calls must not starve heartbeats and start elections.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use crate::config::Limits;
use crate::grpc::status::{mark, NOT_PROPOSED};

/// `AddLearner` and `ChangeMembership` wait for a learner to catch up or for a joint
/// membership to commit; they get this long instead of `--request-timeout-ms`.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(90);

/// Whether a path is Raft's node-to-node traffic (not `Propose`, which executors send and which
/// may wait for a commit like any write).
fn is_raft_transport(path: &str) -> bool {
    matches!(
        path,
        "/admission.v1.Raft/AppendEntries"
            | "/admission.v1.Raft/Vote"
            | "/admission.v1.Raft/InstallSnapshot"
    )
}

/// The limits shared by every connection of a node.
pub struct Guard {
    limits: Limits,
    in_flight: Arc<Semaphore>,
    watches: Arc<Semaphore>,
    watches_by_peer: Arc<Mutex<HashMap<SocketAddr, usize>>>,
}

/// A watch stream's place: released when the stream ends.
pub struct WatchSlot {
    _total: OwnedSemaphorePermit,
    peer: Option<SocketAddr>,
    by_peer: Arc<Mutex<HashMap<SocketAddr, usize>>>,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        if let Some(peer) = self.peer {
            let mut by_peer = self.by_peer.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = by_peer.get_mut(&peer) {
                *count -= 1;
                if *count == 0 {
                    by_peer.remove(&peer);
                }
            }
        }
    }
}

impl Guard {
    /// The limits of one node.
    pub fn new(limits: Limits) -> Arc<Guard> {
        Arc::new(Guard {
            in_flight: Arc::new(Semaphore::new(limits.in_flight_max)),
            watches: Arc::new(Semaphore::new(limits.watch_streams_max)),
            watches_by_peer: Arc::default(),
            limits,
        })
    }

    /// A place for one more watch stream from `peer` (its TCP address: one connection), or
    /// `RESOURCE_EXHAUSTED`.
    pub fn watch_slot(&self, peer: Option<SocketAddr>) -> Result<WatchSlot, Status> {
        let total = self.watches.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "this node serves {} watch streams, its limit (--watch-streams-max)",
                self.limits.watch_streams_max
            ))
        })?;
        if let Some(peer) = peer {
            let mut by_peer = self
                .watches_by_peer
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let count = by_peer.entry(peer).or_insert(0);
            if *count >= self.limits.watch_streams_per_connection_max {
                return Err(Status::resource_exhausted(format!(
                    "this connection has {count} watch streams, its limit \
                     (--watch-streams-per-connection-max)"
                )));
            }
            *count += 1;
        }
        Ok(WatchSlot {
            _total: total,
            peer,
            by_peer: self.watches_by_peer.clone(),
        })
    }
}

/// Applies [`Guard`]'s in-flight limit and time limits to every call.
#[derive(Clone)]
pub struct LimitLayer {
    guard: Arc<Guard>,
}

impl LimitLayer {
    /// Limits calls with `guard`.
    pub fn new(guard: Arc<Guard>) -> LimitLayer {
        LimitLayer { guard }
    }
}

impl<S> tower::Layer<S> for LimitLayer {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Limited<S> {
        Limited {
            inner,
            guard: self.guard.clone(),
        }
    }
}

/// The service [`LimitLayer`] wraps.
#[derive(Clone)]
pub struct Limited<S> {
    inner: S,
    guard: Arc<Guard>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResBody> tower::Service<http::Request<B>> for Limited<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<ResBody>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if is_raft_transport(&path) {
            return Box::pin(inner.call(request));
        }
        let Ok(permit) = self.guard.in_flight.clone().try_acquire_owned() else {
            // Refused before any handler ran: nothing was proposed, which the client library
            // needs to know to report an overload rather than an unknown outcome.
            let status = mark(
                Status::resource_exhausted(format!(
                    "this node has {} calls in flight, its limit (--max-in-flight); retry later",
                    self.guard.limits.in_flight_max
                )),
                NOT_PROPOSED,
            );
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        let timeout = match path.as_str() {
            "/admission.v1.Cluster/AddLearner" | "/admission.v1.Cluster/ChangeMembership" => {
                MEMBERSHIP_TIMEOUT
            }
            _ => self.guard.limits.request_timeout,
        };
        Box::pin(async move {
            let answered = tokio::time::timeout(timeout, inner.call(request)).await;
            drop(permit);
            match answered {
                Ok(Ok(mut response)) => {
                    too_large_is_exhaustion(response.headers_mut());
                    Ok(response)
                }
                Ok(Err(never)) => match never {},
                // A write may still take effect: the client library treats DEADLINE_EXCEEDED
                // without a "not proposed" marker as an unknown outcome.
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "{path} took longer than {timeout:?} (--request-timeout-ms); its outcome \
                     is unknown"
                ))
                .into_http()),
            }
        })
    }
}

/// tonic answers a message past a service's size limit with `OUT_OF_RANGE`; gRPC's own
/// implementations say `RESOURCE_EXHAUSTED`, as do our other limits, so it is rewritten (only
/// that refusal, recognised by tonic's message, in a trailers-only answer).
fn too_large_is_exhaustion(headers: &mut http::HeaderMap) {
    let out_of_range = headers
        .get("grpc-status")
        .is_some_and(|code| code.as_bytes() == b"11");
    let too_large = headers.get("grpc-message").is_some_and(|message| {
        String::from_utf8_lossy(message.as_bytes())
            .replace("%20", " ")
            .starts_with("Error, decoded message length too large")
    });
    if out_of_range && too_large {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_connection: usize) -> Limits {
        Limits {
            connections_max: 1,
            in_flight_max: 1,
            request_timeout: Duration::from_secs(1),
            streams_per_connection_max: 1,
            watch_streams_max: total,
            watch_streams_per_connection_max: per_connection,
        }
    }

    /// A call past `--max-in-flight` is refused before any handler ran, so it says "not
    /// proposed": the client library may then report an overload, not an unknown outcome.
    #[tokio::test]
    async fn a_call_past_the_in_flight_limit_is_refused_not_proposed() {
        use tower::{Layer, Service};
        let held = Arc::new(tokio::sync::Notify::new());
        let release = held.clone();
        let handler = tower::service_fn(move |_: http::Request<()>| {
            let held = held.clone();
            async move {
                held.notified().await;
                Ok::<_, Infallible>(http::Response::new(()))
            }
        });
        let mut limited = LimitLayer::new(Guard::new(limits(1, 1))).layer(handler);
        let request = || {
            http::Request::builder()
                .uri("/admission.v1.Admission/Submit")
                .body(())
                .expect("a request")
        };
        let first = tokio::spawn(limited.call(request()));
        let refused = limited.call(request()).await.expect("an answer");
        let header = |name: &str| {
            refused
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(
            header("grpc-status").as_deref(),
            Some("8"),
            "RESOURCE_EXHAUSTED"
        );
        assert_eq!(
            header(crate::grpc::status::OUTCOME_KEY).as_deref(),
            Some(NOT_PROPOSED)
        );
        release.notify_one();
        let answered = first.await.expect("joined").expect("an answer");
        assert!(
            answered.headers().get("grpc-status").is_none(),
            "the first went through"
        );
    }

    #[test]
    fn watch_slots_are_bounded_per_connection_and_in_total() {
        let guard = Guard::new(limits(3, 2));
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        let a1 = guard.watch_slot(Some(a)).expect("a1");
        let _a2 = guard.watch_slot(Some(a)).expect("a2");
        let refused = guard.watch_slot(Some(a)).err().expect("a3 refused");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        let _b1 = guard.watch_slot(Some(b)).expect("b1");
        let refused = guard.watch_slot(Some(b)).err().expect("total reached");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        drop(a1);
        let _a3 = guard
            .watch_slot(Some(a))
            .expect("a slot freed by a finished stream");
    }
}
