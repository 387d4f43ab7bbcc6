//! `ledger-client`: the client library of the admission ledger, and the `ledgerctl` CLI.
//!
//! A [`Client`] takes a few seed endpoints, finds the leader (`Cluster.Status`), sends writes
//! there, follows leader hints, and retries with backoff until a deadline. A `Submit` is
//! retried with the **same** request id, so a retry can never admit twice; when the deadline
//! passes without an answer the error is [`ClientError::OutcomeUnknown`], which carries the
//! request id to look up later. Capacity rejections are normal [`Decision`]s, not errors.
//!
//! ```no_run
//! use std::time::Duration;
//! use ledger_client::{Client, ClientConfig, Submission};
//!
//! # async fn demo() -> Result<(), ledger_client::ClientError> {
//! let client = Client::connect(ClientConfig::new(["127.0.0.1:7001", "127.0.0.1:7002"])).await?;
//! let request = Submission::new("deal-1", "alice", "2500.00");
//! let decision = client.submit(&request).await?;
//! if decision.is_admitted() {
//!     // The saga runs: payment, documents, e-mail. Wait for its end.
//!     let done = client.invest_and_wait(&request, Duration::from_secs(30)).await?;
//!     println!("{:?}", done.status());
//! } else {
//!     println!("rejected: {:?}", decision.reject_reason());
//! }
//! # Ok(()) }
//! ```
//!
//! `examples/invest.rs` is the same as a program to run against a local cluster
//! (`scripts/cluster.sh up`, then `cargo run -p ledger-client --example invest`).

use std::time::Duration;

use ledger_proto::pb::admission_client::AdmissionClient;
use ledger_proto::pb::cluster_client::ClusterClient;
use tonic::transport::{Channel, Endpoint};

mod client;
mod error;
pub mod plot;

pub use client::{
    is_final, status_of, Client, ClientConfig, Decision, LearnerAdded, Services, Submission,
};
pub use error::{ClientError, LEADER_ADDR_KEY, NOT_PROPOSED, OUTCOME_KEY};
pub use ledger_proto::pb;

/// Largest message accepted from a node (a full page or batch).
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The two public services of one node, sharing one HTTP/2 connection, without the
/// [`Client`]'s routing and retries: for tests and tools that talk to one node on purpose.
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
