//! [`Client`]: leader discovery, retries with the same request id, deadlines.
//!
//! One concept per file: `discovery.rs` finds the leader, `retry.rs` runs a call's attempts
//! until its deadline and says what an exhausted call reports, `admission.rs` holds the calls of
//! the `Admission` service (submissions, watches, deals, reads), `operator.rs` those of the
//! `Cluster` service (status, membership, leadership, snapshots, sagas, exports), `voters.rs`
//! the voter set after a promotion or a removal, and `types.rs` the requests and results the
//! calls take and give.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledger_proto::pb::admission_client::AdmissionClient;
use ledger_proto::pb::cluster_client::ClusterClient;
use tonic::transport::Channel;

use crate::error::ClientError;
use crate::{Credentials, Transport, MESSAGE_BYTES_MAX};

mod admission;
mod discovery;
mod operator;
mod retry;
#[cfg(test)]
mod tests;
mod throttle;
mod types;
mod voters;

pub use throttle::RetryThrottle;
pub use types::{is_final, open_deal, status_of, Decision, LearnerAdded, Submission};
pub use voters::VoterSetError;

/// How a [`Client`] behaves; [`ClientConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Nodes to ask for the cluster's leader and members (`host:port`); any live one will do.
    pub seeds: Vec<String>,
    /// Longest wait for one attempt of one call.
    pub attempt_timeout: Duration,
    /// Longest a call keeps retrying (for `Submit`: before it reports
    /// [`ClientError::OutcomeUnknown`]).
    pub deadline: Duration,
    /// Longest wait for a TCP connection to a node.
    pub connect_timeout: Duration,
    /// First pause between attempts; it doubles (with jitter) up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest pause between attempts.
    pub backoff_max: Duration,
    /// Most attempts per call (`None`: until the deadline). `Some(1)` fails fast: a caller
    /// that sheds load itself gets [`ClientError::Overloaded`] at once when the leader has no
    /// room, rather than waiting out backoffs.
    ///
    /// [`ClientError::Overloaded`]: crate::ClientError::Overloaded
    pub max_attempts: Option<u32>,
    /// A budget for retrying refusals for lack of room (`RESOURCE_EXHAUSTED`, nothing
    /// proposed), shared by all calls of this client: under a sustained overload the client
    /// stops retrying them and reports [`ClientError::Overloaded`] rather than adding its own
    /// retries to the load. `None`: retried like any transient failure, until the deadline.
    /// Other failures (no leader, a timeout, a broken connection) are not budgeted.
    ///
    /// [`ClientError::Overloaded`]: crate::ClientError::Overloaded
    pub overload_retries: Option<RetryThrottle>,
    /// TLS and token; [`Credentials::insecure`] by default.
    pub credentials: Credentials,
}

impl ClientConfig {
    /// Defaults: 5 s per attempt, 15 s per call, 2 s to connect, pauses of 25 ms to 1 s, attempts
    /// until the deadline.
    pub fn new<S: Into<String>>(seeds: impl IntoIterator<Item = S>) -> ClientConfig {
        ClientConfig {
            seeds: seeds.into_iter().map(Into::into).collect(),
            attempt_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(25),
            backoff_max: Duration::from_secs(1),
            max_attempts: None,
            overload_retries: Some(RetryThrottle::default()),
            credentials: Credentials::insecure(),
        }
    }
}

/// A client of an admission-ledger cluster: cheap to clone, safe to share between tasks.
///
/// Sends writes and linearizable reads to the leader it discovered through `Cluster.Status`,
/// follows the leader hints nodes give, rediscovers on `UNAVAILABLE` and connection errors, and
/// retries with backoff until [`ClientConfig::deadline`].
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    /// Ordered: dropped in the same order every time, so that a simulation replays.
    channels: Mutex<BTreeMap<String, Channel>>,
    /// The leader's address as last learned, if any.
    leader: Mutex<Option<String>>,
    /// Every member's address as last learned (plus the seeds).
    members: Mutex<Vec<String>>,
    /// What is left of the budget for retrying refusals for lack of room.
    overload_budget: throttle::Budget,
}

/// The two services of one node over one connection.
#[derive(Clone)]
pub struct Services {
    /// `Admission`.
    pub admission: AdmissionClient<Transport>,
    /// `Cluster`.
    pub cluster: ClusterClient<Transport>,
}

impl Client {
    /// A client that has not looked for the leader yet (it will on its first call): for
    /// commands that must work without one, such as status and initialization.
    pub fn unconnected(config: ClientConfig) -> Result<Client, ClientError> {
        if config.seeds.is_empty() {
            return Err(ClientError::Config("no seed endpoints".into()));
        }
        for seed in &config.seeds {
            config.credentials.endpoint(seed, config.connect_timeout)?;
        }
        Ok(Client {
            inner: Arc::new(Inner {
                members: Mutex::new(config.seeds.clone()),
                overload_budget: throttle::Budget::new(config.overload_retries),
                config,
                channels: Mutex::new(BTreeMap::new()),
                leader: Mutex::new(None),
            }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Both services of the node at `addr` (one shared connection per address).
    pub fn node(&self, addr: &str) -> Result<Services, ClientError> {
        let channel = {
            let mut channels = lock(&self.inner.channels);
            match channels.get(addr) {
                Some(channel) => channel.clone(),
                None => {
                    let config = &self.inner.config;
                    let channel = config
                        .credentials
                        .endpoint(addr, config.connect_timeout)?
                        .connect_lazy();
                    channels.insert(addr.to_owned(), channel.clone());
                    channel
                }
            }
        };
        let credentials = self.inner.config.credentials.clone();
        Ok(Services {
            admission: AdmissionClient::with_interceptor(channel.clone(), credentials.clone())
                .max_decoding_message_size(MESSAGE_BYTES_MAX)
                .max_encoding_message_size(MESSAGE_BYTES_MAX),
            cluster: ClusterClient::with_interceptor(channel, credentials)
                .max_decoding_message_size(MESSAGE_BYTES_MAX)
                .max_encoding_message_size(MESSAGE_BYTES_MAX),
        })
    }
}

/// Locks a mutex, recovering from poisoning (the data are plain addresses and channels).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
