//! The simulated network: gRPC over turmoil's in-process TCP, plus the message faults TCP
//! cannot show (a duplicated request, a reply lost after the request took effect, a request
//! held back so that a later one overtakes it), drawn from the seed.
//!
//! Partitions, latency and crashes are turmoil's: a partitioned link drops segments, so calls
//! on it time out, as on a real network.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use hyper_util::rt::TokioIo;
use ledger_node::transport::{ChannelError, PeerChannel, Transport};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tonic::body::Body;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

/// The port every simulated node listens on.
pub const PORT: u16 = 7000;

/// The address node `id` is known by (turmoil resolves host names).
pub fn addr(id: u64) -> String {
    format!("n{id}:{PORT}")
}

/// A connection accepted by a simulated node.
pub struct SimConn(turmoil::net::TcpStream);

impl Connected for SimConn {
    type ConnectInfo = ();

    fn connect_info(&self) {}
}

impl tokio::io::AsyncRead for SimConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SimConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The connections accepted on `listener`.
pub fn incoming(
    listener: turmoil::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<SimConn>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| SimConn(stream));
        Some((accepted, listener))
    })
}

/// A lazily connected gRPC channel to `addr` over turmoil's TCP, with the production
/// transport's timeouts and HTTP/2 pings.
pub fn channel(addr: &str) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("{addr}: {e}"))?
        .connect_timeout(Duration::from_secs(1))
        .http2_keep_alive_interval(ledger_node::transport::KEEPALIVE_INTERVAL)
        .keep_alive_timeout(ledger_node::transport::KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(|uri: Uri| async move {
            let host = uri.host().unwrap_or_default().to_owned();
            let port = uri.port_u16().unwrap_or(PORT);
            let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        })),
    )
}

/// How often each message fault strikes a node-to-node call, in parts per million.
#[derive(Clone, Copy, Debug, Default)]
pub struct MessageFaults {
    /// The request is sent twice; the second reply is dropped.
    pub duplicate_ppm: u32,
    /// The request is delivered and its reply lost: the caller sees `UNAVAILABLE`.
    pub lose_reply_ppm: u32,
    /// The request is held back up to `hold_max` before it is sent.
    pub hold_ppm: u32,
    /// The longest hold.
    pub hold_max: Duration,
}

impl MessageFaults {
    /// Rates drawn from `rng`: some seeds see none, others up to a few percent of each.
    pub fn draw(rng: &mut SmallRng) -> MessageFaults {
        let mut rate = |max: u32| {
            if rng.random_bool(0.3) {
                0
            } else {
                rng.random_range(0..=max)
            }
        };
        MessageFaults {
            duplicate_ppm: rate(30_000),
            lose_reply_ppm: rate(20_000),
            hold_ppm: rate(50_000),
            hold_max: Duration::from_millis(200),
        }
    }
}

enum Fault {
    None,
    Duplicate,
    LoseReply,
    Hold(Duration),
}

/// One node's transport: channels over the simulated network, with [`MessageFaults`] drawn
/// from the node's own generator.
pub struct SimTransport {
    faults: MessageFaults,
    rng: Arc<Mutex<SmallRng>>,
}

impl SimTransport {
    /// The transport of a node whose faults follow `seed`.
    pub fn new(faults: MessageFaults, seed: u64) -> SimTransport {
        SimTransport {
            faults,
            rng: Arc::new(Mutex::new(SmallRng::seed_from_u64(seed))),
        }
    }
}

impl Transport for SimTransport {
    fn channel(&self, addr: &str) -> Result<PeerChannel, String> {
        Ok(BoxCloneSyncService::new(Faulty {
            inner: channel(addr)?,
            faults: self.faults,
            rng: self.rng.clone(),
        }))
    }
}

/// A channel that applies [`MessageFaults`] to each call.
#[derive(Clone)]
struct Faulty {
    inner: Channel,
    faults: MessageFaults,
    rng: Arc<Mutex<SmallRng>>,
}

impl Faulty {
    fn roll(&self) -> Fault {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let draw = rng.random_range(0..1_000_000u32);
        let f = self.faults;
        if draw < f.duplicate_ppm {
            Fault::Duplicate
        } else if draw < f.duplicate_ppm + f.lose_reply_ppm {
            Fault::LoseReply
        } else if draw < f.duplicate_ppm + f.lose_reply_ppm + f.hold_ppm {
            let max = f.hold_max.as_millis().max(1) as u64;
            Fault::Hold(Duration::from_millis(rng.random_range(1..=max)))
        } else {
            Fault::None
        }
    }
}

fn lost(what: &str) -> ChannelError {
    ChannelError::new(tonic::Status::unavailable(format!(
        "simulated network: {what}"
    )))
}

impl Service<http::Request<Body>> for Faulty {
    type Response = http::Response<Body>;
    type Error = ChannelError;
    type Future = BoxFuture<'static, Result<http::Response<Body>, ChannelError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        // Readiness is awaited on the inner channel in `call`, on a clone.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let fault = self.roll();
        let inner = self.inner.clone();
        Box::pin(async move {
            match fault {
                Fault::None => send(inner, request).await,
                Fault::Hold(delay) => {
                    tokio::time::sleep(delay).await;
                    send(inner, request).await
                }
                Fault::LoseReply => {
                    // The peer may act on it; the caller learns nothing.
                    let _ = send(inner, request).await;
                    Err(lost("reply lost"))
                }
                Fault::Duplicate => {
                    let (parts, body) = request.into_parts();
                    let bytes = http_body_util_collect(body).await?;
                    let copy = http::Request::from_parts(
                        clone_parts(&parts),
                        Body::new(http_body_full(bytes.clone())),
                    );
                    let original =
                        http::Request::from_parts(parts, Body::new(http_body_full(bytes)));
                    let first = send(inner.clone(), copy);
                    let (_, answer) = tokio::join!(first, send(inner, original));
                    answer
                }
            }
        })
    }
}

async fn send(
    mut channel: Channel,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, ChannelError> {
    channel.ready().await.map_err(ChannelError::new)?;
    channel.call(request).await.map_err(ChannelError::new)
}

fn clone_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut request = http::Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.clone())
        .version(parts.version)
        .body(())
        .expect("the parts of a valid request");
    *request.headers_mut() = parts.headers.clone();
    request.into_parts().0
}

async fn http_body_util_collect(body: Body) -> Result<bytes::Bytes, ChannelError> {
    use http_body_util::BodyExt;
    body.collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|e| ChannelError::new(tonic::Status::internal(e.to_string())))
}

fn http_body_full(bytes: bytes::Bytes) -> http_body_util::Full<bytes::Bytes> {
    http_body_util::Full::new(bytes)
}
