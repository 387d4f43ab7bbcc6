//! Watches the cluster during the run: every node's `Status` twice a second, with its state
//! digest. The samples feed I9 (equal digests at equal applied index) and the report's counts of
//! elections, leaders and snapshots.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ledger_client::pb;
use ledger_client::pb::cluster_client::ClusterClient;
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};

use crate::history::DigestSample;
use crate::workload::Recorder;
use crate::world::Targets;

/// How often every node is asked.
pub const PERIOD: Duration = Duration::from_millis(500);

/// One node's `Status` at one moment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusSample {
    /// Microseconds since the start of the run.
    pub at_us: u64,
    /// The node.
    pub node_id: u64,
    /// Its role.
    pub role: String,
    /// Its term.
    pub term: u64,
    /// The leader it knows.
    pub leader_id: Option<u64>,
    /// Its applied index.
    pub applied_index: u64,
    /// Its state digest there.
    pub digest: String,
    /// Its latest snapshot's index.
    pub snapshot_index: u64,
    /// The voters it knows.
    pub voters: Vec<u64>,
    /// Its log time (`ListSagas.now_ms`), if it answered.
    pub log_time_ms: Option<u64>,
    /// The harness's own wall clock (never faked) when it asked, Unix ms.
    pub wall_ms: u64,
}

/// What the observer collected.
#[derive(Default)]
pub struct Observations {
    samples: Mutex<Vec<StatusSample>>,
}

impl Observations {
    /// Every sample so far.
    pub fn samples(&self) -> Vec<StatusSample> {
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Each node's log time next to the harness's clock, for the checker.
    pub fn log_times(&self) -> Vec<crate::history::LogTimeSample> {
        self.samples()
            .into_iter()
            .filter_map(|s| {
                s.log_time_ms
                    .map(|log_time_ms| crate::history::LogTimeSample {
                        node_id: s.node_id,
                        wall_ms: s.wall_ms,
                        log_time_ms,
                    })
            })
            .collect()
    }

    /// The `(node, applied index, digest)` triples, for the checker.
    pub fn digests(&self) -> Vec<DigestSample> {
        self.samples()
            .into_iter()
            .filter(|s| !s.digest.is_empty())
            .map(|s| DigestSample {
                node_id: s.node_id,
                applied_index: s.applied_index,
                digest: s.digest,
            })
            .collect()
    }
}

fn cluster_client(
    channels: &mut HashMap<String, Channel>,
    addr: &str,
) -> Option<ClusterClient<Channel>> {
    let channel = match channels.get(addr) {
        Some(channel) => channel.clone(),
        None => {
            let channel = Endpoint::from_shared(format!("http://{addr}"))
                .ok()?
                .connect_timeout(Duration::from_millis(500))
                .http2_keep_alive_interval(Duration::from_secs(1))
                .keep_alive_timeout(Duration::from_secs(2))
                .connect_lazy();
            channels.insert(addr.to_owned(), channel.clone());
            channel
        }
    };
    Some(ClusterClient::new(channel))
}

/// One node's `Status` with its digest, bounded by a timeout.
pub async fn sample(
    client: &mut ClusterClient<Channel>,
    recorder: &Recorder,
) -> Option<StatusSample> {
    let wall_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut sagas = tonic::Request::new(pb::ListSagasRequest {
        limit: 1,
        consistency: pb::Consistency::Stale as i32,
        ..Default::default()
    });
    sagas.set_timeout(Duration::from_secs(1));
    // A node that has applied nothing yet (a new learner) has no log time: 0 is not a reading.
    let log_time_ms =
        match tokio::time::timeout(Duration::from_millis(1_500), client.list_sagas(sagas)).await {
            Ok(Ok(reply)) => Some(reply.into_inner().now_ms).filter(|&ms| ms > 0),
            _ => None,
        };
    let mut request = tonic::Request::new(pb::StatusRequest { with_digest: true });
    request.set_timeout(Duration::from_secs(1));
    let status = tokio::time::timeout(Duration::from_millis(1_500), client.status(request))
        .await
        .ok()?
        .ok()?
        .into_inner();
    Some(StatusSample {
        at_us: recorder.now_us(),
        node_id: status.node_id,
        role: status.role,
        term: status.term,
        leader_id: status.leader_id,
        applied_index: status.applied_index,
        digest: status.state_digest,
        snapshot_index: status.snapshot_index,
        voters: status
            .members
            .iter()
            .filter(|m| m.role == pb::MemberRole::Voter as i32)
            .map(|m| m.node_id)
            .collect(),
        log_time_ms,
        wall_ms,
    })
}

/// Samples every target every [`PERIOD`] until `stop` is set.
pub async fn observe(
    targets: Targets,
    recorder: Arc<Recorder>,
    observations: Arc<Observations>,
    stop: Arc<AtomicBool>,
) {
    let mut channels = HashMap::new();
    let mut ticks = tokio::time::interval(PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        let nodes = targets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut calls = Vec::new();
        for node in nodes {
            if let Some(mut client) = cluster_client(&mut channels, &node.addr) {
                let recorder = recorder.clone();
                calls.push(tokio::spawn(
                    async move { sample(&mut client, &recorder).await },
                ));
            }
        }
        for call in calls {
            if let Ok(Some(sample)) = call.await {
                observations
                    .samples
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(sample);
            }
        }
    }
}
