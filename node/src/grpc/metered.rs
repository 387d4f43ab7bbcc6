//! Counts every gRPC call by method and status code, and times it from arrival to its final
//! status (`ledger_rpc_requests_total`, `ledger_rpc_duration_seconds`). The outermost layer, so
//! that calls the limits or the credentials refuse are counted too.
//!
//! A unary call's status is in the trailers after its message (or, for an error, in the
//! headers alone), so the response body is wrapped and the call recorded when its trailers
//! pass, or when the body ends or is dropped without them (the client went away: CANCELLED).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use tonic::Code;

use crate::metrics::{CallLabels, MethodLabels, Metrics};
use ledger_proto::code_name;

/// Records every call in `metrics`.
#[derive(Clone)]
pub struct MeteredLayer {
    metrics: Arc<Metrics>,
}

impl MeteredLayer {
    /// Records calls in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> MeteredLayer {
        MeteredLayer { metrics }
    }
}

impl<S> tower::Layer<S> for MeteredLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`MeteredLayer`] wraps.
#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// The method label of `path`: `package.Service/Method` for this node's own services, health
/// and reflection; anything else is `other`, so that a client cannot mint label values.
fn method_of(path: &str) -> String {
    let known = ["/admission.v1.", "/grpc.health.v1.", "/grpc.reflection."];
    match known.iter().any(|prefix| path.starts_with(prefix)) && path.len() <= 128 {
        true => path[1..].to_owned(),
        false => "other".to_owned(),
    }
}

fn status_in(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

/// One call until its status is recorded.
struct Call {
    metrics: Arc<Metrics>,
    method: String,
    started: Instant,
}

impl Call {
    fn record(self, code: Code) {
        self.metrics
            .rpc_calls
            .get_or_create(&CallLabels {
                method: self.method.clone(),
                code: code_name(code),
            })
            .inc();
        self.metrics
            .rpc_seconds
            .get_or_create(&MethodLabels {
                method: self.method,
            })
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for Metered<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: Body + Send + 'static,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = Call {
            metrics: self.metrics.clone(),
            method: method_of(request.uri().path()),
            started: Instant::now(),
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let Ok(response) = inner.call(request).await;
            let (parts, body) = response.into_parts();
            let call = match status_in(&parts.headers) {
                // Trailers-only: the status is already here.
                Some(code) => {
                    call.record(code);
                    None
                }
                None => Some(call),
            };
            Ok(http::Response::from_parts(
                parts,
                MeteredBody { inner: body, call },
            ))
        })
    }
}

/// A response body that records its call's status when it passes.
pub struct MeteredBody<B> {
    inner: B,
    call: Option<Call>,
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        // Dropped before its status: the client went away (or the stream was cut).
        if let Some(call) = self.call.take() {
            call.record(Code::Cancelled);
        }
    }
}

impl<B: Body + Unpin> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_in) {
                    if let Some(call) = self.call.take() {
                        call.record(code);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = self.call.take() {
                    call.record(Code::Internal);
                }
            }
            // Ended without trailers: tonic always sends them, so this is a broken stream.
            Poll::Ready(None) => {
                if let Some(call) = self.call.take() {
                    call.record(Code::Unknown);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_services_name_their_method() {
        assert_eq!(
            method_of("/admission.v1.Admission/Submit"),
            "admission.v1.Admission/Submit"
        );
        assert_eq!(
            method_of("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health/Check"
        );
        assert_eq!(method_of("/evil.Service/x"), "other");
        assert_eq!(
            method_of(&format!("/admission.v1.{}", "a".repeat(200))),
            "other"
        );
    }
}
