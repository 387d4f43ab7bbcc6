//! The transport seam as the Raft service's generated client sees it: what a simulated network
//! injects into a channel reaches the caller as that status, and a peer that is not listening
//! is `UNAVAILABLE` over the tonic transport.

use std::time::Duration;

use ledger_node::tls::Security;
use ledger_node::transport::{ChannelError, PeerChannel, TonicTransport, Transport};
use ledger_proto::pb::raft_client::RaftClient;
use ledger_proto::pb::RaftRequest;
use tonic::body::Body;
use tower::util::BoxCloneSyncService;

async fn vote(channel: PeerChannel) -> tonic::Code {
    RaftClient::new(channel)
        .vote(RaftRequest::default())
        .await
        .expect_err("no peer answers")
        .code()
}

/// What a simulated network injects is what the caller sees.
#[tokio::test]
async fn a_status_from_the_channel_reaches_the_caller() {
    for status in [
        tonic::Status::unavailable("partitioned"),
        tonic::Status::deadline_exceeded("dropped"),
    ] {
        let code = status.code();
        let failing = tower::service_fn(move |_: http::Request<Body>| {
            let status = tonic::Status::new(status.code(), status.message());
            async move { Err::<http::Response<Body>, _>(ChannelError::new(status)) }
        });
        assert_eq!(vote(BoxCloneSyncService::new(failing)).await, code);
    }
}

/// A peer that is not listening is `UNAVAILABLE`, as before the seam: openraft's network
/// maps it to `Unreachable` and backs off.
#[tokio::test]
async fn a_peer_not_listening_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let security = std::sync::Arc::new(Security::insecure());
    let transport = TonicTransport::new(security, Duration::from_secs(1));
    let channel = transport.channel(&addr).expect("a channel");
    assert_eq!(vote(channel).await, tonic::Code::Unavailable);
    assert!(transport.channel("not an address").is_err());
}
