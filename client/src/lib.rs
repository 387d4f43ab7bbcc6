//! `ledger-client`: the client library of the admission ledger (the `ledgerctl` CLI is its own
//! crate, `ledgerctl/`).
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
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub mod certs;
mod client;
mod credentials;
mod error;

pub use client::{
    is_final, open_deal, status_of, Client, ClientConfig, Decision, LearnerAdded, RetryThrottle,
    Services, Submission, VoterSetError,
};
pub use credentials::Credentials;
pub use error::{ClientError, LEADER_ADDR_KEY, NOT_PROPOSED, OUTCOME_KEY, RETRY_PUSHBACK_KEY};
pub use ledger_proto::pb;

/// A channel that adds the client's token to every call.
pub type Transport = InterceptedService<Channel, Credentials>;

/// Largest message accepted from a node (a full page or batch).
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The two public services of one node, sharing one HTTP/2 connection, without the
/// [`Client`]'s routing and retries: for tests and tools that talk to one node on purpose.
#[derive(Clone)]
pub struct NodeClients {
    /// The `Admission` service.
    pub admission: AdmissionClient<Transport>,
    /// The `Cluster` service.
    pub cluster: ClusterClient<Transport>,
}

/// Connects to the node at `addr` (`host:port`) in plaintext, for a cluster run with
/// `--insecure`.
pub async fn connect(addr: &str) -> Result<NodeClients, ClientError> {
    connect_with(addr, &Credentials::insecure()).await
}

/// Connects to the node at `addr` (`host:port`) with `credentials`.
pub async fn connect_with(
    addr: &str,
    credentials: &Credentials,
) -> Result<NodeClients, ClientError> {
    let channel = credentials
        .endpoint(addr, Duration::from_secs(5))?
        .connect()
        .await
        .map_err(|e| ClientError::Unavailable(format!("{addr}: {e}")))?;
    Ok(NodeClients {
        admission: AdmissionClient::with_interceptor(channel.clone(), credentials.clone())
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX),
        cluster: ClusterClient::with_interceptor(channel, credentials.clone()),
    })
}
