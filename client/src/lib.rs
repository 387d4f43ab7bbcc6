//! `ledger-client`: connections to an admission-ledger cluster, and the `ledgerctl` CLI.
//!
//! Today this is the thin layer `ledgerctl` and the integration tests need: [`connect`] a
//! node's `Admission` and `Cluster` clients. The full client library (leader discovery,
//! retries with the same request id, deadlines, `invest_and_wait`) comes with issue #5.

use std::time::Duration;

use ledger_proto::pb::admission_client::AdmissionClient;
use ledger_proto::pb::cluster_client::ClusterClient;
use tonic::transport::{Channel, Endpoint};

/// Largest message accepted from a node (a full page or batch).
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The two public services of one node, sharing one HTTP/2 connection.
#[derive(Clone)]
pub struct NodeClients {
    /// The `Admission` service.
    pub admission: AdmissionClient<Channel>,
    /// The `Cluster` service.
    pub cluster: ClusterClient<Channel>,
}

/// Connects to the node at `addr` (`host:port`, or a full `http://` URL).
pub async fn connect(addr: &str) -> Result<NodeClients, tonic::transport::Error> {
    let url = if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let channel = Endpoint::from_shared(url)?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(NodeClients {
        admission: AdmissionClient::new(channel.clone())
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX),
        cluster: ClusterClient::new(channel),
    })
}
