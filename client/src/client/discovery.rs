//! Finding the leader: every known member and seed asked at once, the highest term wins.

use std::time::{Duration, Instant};

use ledger_proto::pb;

use super::{lock, Client, ClientConfig};
use crate::error::ClientError;

impl Client {
    /// Connects to the cluster: checks the configuration and asks the seeds for the leader.
    /// Fails with [`ClientError::Unavailable`] when no seed answers within the deadline.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let client = Client::unconnected(config)?;
        let deadline = Instant::now() + client.inner.config.deadline;
        let mut delays = client.backoff();
        loop {
            match client.discover().await {
                Ok(_) => return Ok(client),
                Err(error) => match delays.next() {
                    Some(delay) if Instant::now() + delay < deadline => {
                        tokio::time::sleep(delay).await
                    }
                    _ => return Err(error),
                },
            }
        }
    }

    /// The leader's address as last learned.
    pub fn leader_addr(&self) -> Option<String> {
        lock(&self.inner.leader).clone()
    }

    /// Asks the known members and the seeds, all at once, for the leader; remembers it and the
    /// members. When they disagree, the leader named in the highest term wins: a leader cut off
    /// from its peers still believes it leads (openraft 0.9 has no check-quorum), and a client
    /// that can reach it must not keep sending it what it can no longer commit.
    pub async fn discover(&self) -> Result<String, ClientError> {
        let mut candidates = lock(&self.inner.members).clone();
        for seed in &self.inner.config.seeds {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        let timeout = self
            .inner
            .config
            .attempt_timeout
            .min(Duration::from_secs(2));
        let mut asked = tokio::task::JoinSet::new();
        for addr in candidates {
            let mut services = self.node(&addr)?;
            asked.spawn(async move {
                // No digest: hashing the state on every node at every rediscovery stalls them.
                let call = services
                    .cluster
                    .status(pb::StatusRequest { with_digest: false });
                let reply = match tokio::time::timeout(timeout, call).await {
                    Ok(Ok(reply)) => Ok(reply.into_inner()),
                    Ok(Err(status)) => Err(format!("{addr}: {}", status.message())),
                    Err(_) => Err(format!("{addr}: no answer")),
                };
                (addr, reply)
            });
        }
        let mut last_error = String::from("no node answered");
        let mut best: Option<pb::StatusResponse> = None;
        while let Some(joined) = asked.join_next().await {
            let Ok((addr, reply)) = joined else {
                continue;
            };
            match reply {
                Ok(status) if status.leader_id.is_some() => {
                    if best.as_ref().is_none_or(|b| status.term > b.term) {
                        best = Some(status);
                    }
                }
                Ok(_) => last_error = format!("{addr}: no leader known"),
                Err(error) => last_error = error,
            }
        }
        let Some(status) = best else {
            return Err(ClientError::Unavailable(last_error));
        };
        if !status.members.is_empty() {
            *lock(&self.inner.members) = status.members.iter().map(|m| m.addr.clone()).collect();
        }
        let leader = status.leader_id.and_then(|id| {
            status
                .members
                .iter()
                .find(|m| m.node_id == id)
                .map(|m| m.addr.clone())
        });
        match leader {
            Some(leader) => {
                *lock(&self.inner.leader) = Some(leader.clone());
                Ok(leader)
            }
            None => Err(ClientError::Unavailable(format!(
                "node {} is named leader but has no address in the membership",
                status.leader_id.unwrap_or_default()
            ))),
        }
    }
}
