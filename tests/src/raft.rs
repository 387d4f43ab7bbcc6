//! Raw messages to a node's internal `Raft` service, for the tests that forge them.

use ledger_proto::pb;
use pb::raft_client::RaftClient;
use tonic::transport::Channel;
use tonic::Code;

/// A client of the `Raft` service at `addr`.
pub async fn raft_client(addr: &str) -> RaftClient<Channel> {
    RaftClient::connect(format!("http://{addr}"))
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// A Raft request carrying `payload`, for node `target`, in `sender`'s name.
pub fn raft_request(
    cluster_id: &str,
    payload: Vec<u8>,
    target: u64,
    sender: u64,
) -> pb::RaftRequest {
    pb::RaftRequest {
        payload,
        cluster_id: cluster_id.to_owned(),
        target_node_id: target,
        sender_node_id: sender,
    }
}

/// Asserts that `result` is a refusal with `code` whose message contains every one of `words`.
pub fn assert_refused<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, tonic::Status>,
    code: Code,
    words: &[&str],
) {
    let status = match result {
        Ok(reply) => panic!("{what} was accepted: {reply:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "{what}: {status:?}");
    for word in words {
        assert!(
            status.message().contains(word),
            "{what}: the message {:?} does not name {word:?}",
            status.message()
        );
    }
}

/// A client of the `Raft` service at `addr` over TLS trusting `ca`, presenting `cert`/`key`
/// (PEM files); the connection error if the handshake fails.
pub async fn raft_client_tls(
    addr: &str,
    ca: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<RaftClient<Channel>, tonic::transport::Error> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let read = |path: &std::path::Path| {
        std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(ca)))
        .identity(Identity::from_pem(read(cert), read(key)));
    let channel = Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await?;
    Ok(RaftClient::new(channel))
}
