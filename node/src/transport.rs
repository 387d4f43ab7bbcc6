//! The seam every call from one node to another goes through: Raft's messages
//! ([`crate::raft::network`]), writes and reads forwarded to the leader
//! ([`crate::node::Node::route`]) and the executor's proposals
//! ([`crate::node::Node::propose_anywhere`]).
//!
//! A [`Transport`] hands out [`PeerChannel`]s: gRPC channels to the node at an address, typed as
//! any tower service of HTTP requests, so that the generated clients work over either
//! implementation. Production uses [`TonicTransport`] (HTTP/2 over TCP, TLS when configured).
//! The deterministic simulator plugs in an in-process one that hands the same requests to the
//! target node's services, and drops, delays, duplicates or reorders them; a failure it injects
//! reads, to the caller, as a `Status` from the network (`UNAVAILABLE`, `DEADLINE_EXCEEDED`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tonic::body::Body;
use tower::util::BoxCloneSyncService;
use tower::ServiceExt;

use crate::tls::Security;

/// A failure of a channel itself, not an answer of the peer. tonic looks for a `Status` or a
/// connection error in its sources, so the wrapped error decides the caller's status code.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ChannelError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl ChannelError {
    /// Wraps `error` (a `tonic::Status` to choose the caller's code); the error is its
    /// source, where tonic looks.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> ChannelError {
        ChannelError(Box::new(error))
    }
}

/// A gRPC channel to one peer, whichever transport made it.
pub type PeerChannel = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, ChannelError>;

/// HTTP/2 pings on node-to-node channels: a peer that stops answering them is dropped within
/// `KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT`, failing the calls in flight on it, instead of after
/// the kernel's TCP retransmission timeout (about 15 minutes).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// See [`KEEPALIVE_INTERVAL`].
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Makes channels to peers.
pub trait Transport: Send + Sync + 'static {
    /// A new channel to the node listening at `addr` (`host:port`), connected lazily: a peer
    /// that cannot be reached fails the calls made on it, not this. `Err` when `addr` cannot
    /// name a peer at all.
    fn channel(&self, addr: &str) -> Result<PeerChannel, String>;
}

/// One channel per peer address, made through another [`Transport`] when first asked for and
/// handed out again after: every caller on this node shares one HTTP/2 connection to a peer.
///
/// Without it, openraft 0.9 asks its network for a new client for every linearizable read it
/// confirms (`ensure_linearizable` sends a heartbeat to each follower on a fresh client), and
/// each new channel cost a TCP connection and a TLS handshake, closed again after one call:
/// ~125 a second to each follower at 500 saga investments/s, and 13% of the leader's CPU.
pub struct SharedChannels {
    transport: Arc<dyn Transport>,
    /// Ordered, so that a crash drops (and closes) the connections in the same order every
    /// time: a simulation replays.
    open: Mutex<BTreeMap<String, PeerChannel>>,
}

impl SharedChannels {
    /// Channels made by `transport`, each kept for reuse.
    pub fn new(transport: Arc<dyn Transport>) -> SharedChannels {
        SharedChannels {
            transport,
            open: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Transport for SharedChannels {
    fn channel(&self, addr: &str) -> Result<PeerChannel, String> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = open.get(addr) {
            return Ok(channel.clone());
        }
        let channel = self.transport.channel(addr)?;
        open.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// gRPC over TCP with this node's TLS settings.
pub struct TonicTransport {
    security: Arc<Security>,
    connect_timeout: Duration,
}

impl TonicTransport {
    /// Channels with `security`'s TLS settings, giving up a connection attempt after
    /// `connect_timeout`.
    pub fn new(security: Arc<Security>, connect_timeout: Duration) -> TonicTransport {
        TonicTransport {
            security,
            connect_timeout,
        }
    }
}

impl Transport for TonicTransport {
    fn channel(&self, addr: &str) -> Result<PeerChannel, String> {
        let channel = self
            .security
            .endpoint(addr)?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .connect_lazy();
        Ok(BoxCloneSyncService::new(channel.map_err(ChannelError::new)))
    }
}
