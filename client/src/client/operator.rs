//! The `Cluster` service, for operators: status, bootstrap, membership, leadership, snapshots,
//! sagas, deal exports and archives.

use std::time::{Duration, Instant};

use ledger_proto::pb;

use super::retry::{Exhausted, Route};
use super::voters;
use super::{lock, Client, LearnerAdded, Services};
use crate::error::ClientError;

impl Client {
    /// A deal's whole record (`Cluster.ExportDeal`, operator role): the deal with its receipt
    /// head, and every decision on it in log order. A broken stream is read again from the
    /// start.
    pub async fn export_deal(
        &self,
        deal_id: &str,
    ) -> Result<(pb::Deal, Vec<pb::Investment>), ClientError> {
        let request = pb::ExportDealRequest {
            deal_id: deal_id.to_owned(),
        };
        let parts = self
            .call(request, |mut node, request| async move {
                let mut stream = node.cluster.export_deal(request).await?.into_inner();
                let mut parts = Vec::new();
                while let Some(part) = stream.message().await? {
                    parts.push(part);
                }
                Ok(tonic::Response::new(parts))
            })
            .await?;
        let mut deal = None;
        let mut decisions = Vec::with_capacity(parts.len());
        for part in parts {
            match part.part {
                Some(pb::export_deal_part::Part::Deal(d)) if deal.is_none() => deal = Some(d),
                Some(pb::export_deal_part::Part::Investment(inv)) if deal.is_some() => {
                    decisions.push(inv)
                }
                other => {
                    return Err(ClientError::Unavailable(format!(
                        "export of {deal_id}: unexpected part {other:?}"
                    )))
                }
            }
        }
        let deal = deal.ok_or_else(|| {
            ClientError::Unavailable(format!("export of {deal_id}: no deal in the stream"))
        })?;
        Ok((deal, decisions))
    }

    /// A backup of the cluster's state (`Cluster.SaveSnapshot`, operator role): the first
    /// chunk's description (log index, term, digest, size) and the backup file's bytes. A
    /// broken stream is read again from the start.
    pub async fn save_snapshot(&self) -> Result<(pb::BackupChunk, Vec<u8>), ClientError> {
        let chunks = self
            .call(pb::SaveSnapshotRequest {}, |mut node, request| async move {
                let mut stream = node.cluster.save_snapshot(request).await?.into_inner();
                let mut chunks = Vec::new();
                while let Some(chunk) = stream.message().await? {
                    chunks.push(chunk);
                }
                Ok(tonic::Response::new(chunks))
            })
            .await?;
        let mut chunks = chunks.into_iter();
        let mut first = chunks
            .next()
            .ok_or_else(|| ClientError::Unavailable("SaveSnapshot sent nothing".into()))?;
        let mut bytes = std::mem::take(&mut first.data);
        for chunk in chunks {
            bytes.extend_from_slice(&chunk.data);
        }
        if bytes.len() as u64 != first.total_bytes {
            return Err(ClientError::Unavailable(format!(
                "SaveSnapshot sent {} bytes of {}",
                bytes.len(),
                first.total_bytes
            )));
        }
        Ok((first, bytes))
    }

    /// Archives a CLOSED deal whose sagas all ended (`Cluster.ArchiveDeal`, operator role),
    /// naming its current receipt head. Retrying with the same head is safe.
    pub async fn archive_deal(
        &self,
        deal_id: &str,
        receipt_head: pb::Receipt,
    ) -> Result<pb::ArchiveDealResponse, ClientError> {
        let request = pb::ArchiveDealRequest {
            deal_id: deal_id.to_owned(),
            receipt_head: Some(receipt_head),
        };
        self.write(
            &format!("ArchiveDeal {deal_id}"),
            request,
            |mut node, request| async move { node.cluster.archive_deal(request).await },
        )
        .await
    }

    /// A request's story from the ledger's record: the investment (where, when and by which
    /// leader it was decided, its outcome) and its saga's history (assignments, step results,
    /// compensation), read linearizably. [`ClientError::NotFound`] if it was never decided.
    pub async fn trace_investment(
        &self,
        request_id: &str,
    ) -> Result<pb::InvestmentTrace, ClientError> {
        let request = pb::TraceInvestmentRequest {
            request_id: request_id.to_owned(),
            consistency: pb::Consistency::Linearizable as i32,
        };
        self.call(request, |mut node, request| async move {
            node.cluster.trace_investment(request).await
        })
        .await
    }

    /// Open sagas, oldest first, as the leader sees them: all of them, or with `older_than`
    /// and/or `failing_only` the stuck ones (old OR failing when both are given); at most
    /// `limit` (0: 100). Returns the sagas and how many are open in all.
    pub async fn list_sagas(
        &self,
        older_than: Option<Duration>,
        failing_only: bool,
        limit: u32,
    ) -> Result<pb::ListSagasResponse, ClientError> {
        let request = pb::ListSagasRequest {
            older_than_ms: older_than.map_or(0, |d| d.as_millis() as u64),
            failing_only,
            limit,
            consistency: pb::Consistency::Linearizable as i32,
        };
        self.call(request, |mut node, request| async move {
            node.cluster.list_sagas(request).await
        })
        .await
    }

    /// Starts the documented compensation of a stuck saga (void the payment, then CANCELLED
    /// with cause ABORTED); `reason` goes into the saga's record. Once an operator's
    /// compensation took effect, asking again answers the investment. Refused with
    /// [`ClientError::Conflict`] when the saga is no longer compensable.
    pub async fn compensate_saga(
        &self,
        request_id: &str,
        reason: &str,
    ) -> Result<pb::Investment, ClientError> {
        let request = pb::CompensateSagaRequest {
            request_id: request_id.to_owned(),
            reason: reason.to_owned(),
        };
        self.write(
            &format!("CompensateSaga {request_id}"),
            request,
            |mut node, request| async move { node.cluster.compensate_saga(request).await },
        )
        .await
    }

    /// The status of the node at `addr` (its own view: role, indexes, digest, members).
    pub async fn node_status(&self, addr: &str) -> Result<pb::StatusResponse, ClientError> {
        self.retrying(
            Route::Node,
            Some(addr),
            pb::StatusRequest { with_digest: true },
            |mut node, request| async move { node.cluster.status(request).await },
        )
        .await
        .map(|(reply, _)| reply)
        .map_err(Exhausted::into_unavailable)
    }

    /// The leader's status, without the state digest (see [`Client::statuses`]).
    pub async fn status(&self) -> Result<pb::StatusResponse, ClientError> {
        let request = pb::StatusRequest { with_digest: false };
        self.call(request, |mut node, request| async move {
            node.cluster.status(request).await
        })
        .await
    }

    /// Every known member's status (and each seed's), with its state digest, in address order;
    /// a node that does not answer within one attempt is reported as an error next to its
    /// address.
    pub async fn statuses(&self) -> Vec<(String, Result<pb::StatusResponse, ClientError>)> {
        let _ = self.discover().await;
        let mut addrs = lock(&self.inner.members).clone();
        for seed in &self.inner.config.seeds {
            if !addrs.contains(seed) {
                addrs.push(seed.clone());
            }
        }
        addrs.sort();
        let mut out = Vec::new();
        for addr in addrs {
            let reply = match self.node(&addr) {
                Ok(mut node) => tokio::time::timeout(
                    self.inner
                        .config
                        .attempt_timeout
                        .min(Duration::from_secs(2)),
                    node.cluster.status(pb::StatusRequest { with_digest: true }),
                )
                .await
                .map_err(|_| ClientError::Unavailable(format!("{addr}: no answer")))
                .and_then(|r| {
                    r.map(tonic::Response::into_inner)
                        .map_err(|s| ClientError::Unavailable(s.message().to_owned()))
                }),
                Err(error) => Err(error),
            };
            out.push((addr, reply));
        }
        out
    }

    /// Initializes a new cluster with `members` as `(node id, address)`, through the first seed.
    pub async fn init(&self, members: &[(u64, String)]) -> Result<(), ClientError> {
        let request = pb::InitRequest {
            members: members
                .iter()
                .map(|(node_id, addr)| pb::MemberAddr {
                    node_id: *node_id,
                    addr: addr.clone(),
                })
                .collect(),
        };
        let seed = self.inner.config.seeds[0].clone();
        let operation = format!("Init through {seed}");
        self.retrying(
            Route::Node,
            Some(&seed),
            request,
            |mut node, request| async move { node.cluster.init(request).await },
        )
        .await
        .map(|_| ())
        .map_err(|exhausted| exhausted.into_write_error(&operation))
    }

    /// Adds a learner and waits, within the client's deadline, for it to catch up:
    /// [`Client::add_learner_waiting`] with [`ClientConfig::deadline`](super::ClientConfig::deadline).
    pub async fn add_learner(&self, node_id: u64, addr: &str) -> Result<LearnerAdded, ClientError> {
        self.add_learner_waiting(node_id, addr, self.inner.config.deadline)
            .await
    }

    /// Adds node `node_id` at `addr` as a learner, then waits up to `catch_up` for it to catch
    /// up with the leader's log. Adding is retried until the client's deadline and is
    /// idempotent (a learner already there is not proposed again); if it may or may not have
    /// happened, [`ClientError::OperationOutcomeUnknown`]. Once the learner is in, the wait
    /// cannot fail the call: a learner still behind at the end is `Ok` with
    /// [`LearnerAdded::caught_up`] false and its progress.
    pub async fn add_learner_waiting(
        &self,
        node_id: u64,
        addr: &str,
        catch_up: Duration,
    ) -> Result<LearnerAdded, ClientError> {
        let request = pb::AddLearnerRequest {
            node_id,
            addr: addr.to_owned(),
            catch_up_wait_ms: 0,
        };
        let add_learner =
            |mut node: Services, request| async move { node.cluster.add_learner(request).await };
        let mut reply = self
            .write(
                &format!("AddLearner {node_id} at {addr}"),
                request.clone(),
                add_learner,
            )
            .await?;
        let until = Instant::now() + catch_up;
        // Ask again, letting the leader wait for the catch-up within one attempt; the learner
        // is in, so nothing is proposed again.
        while !reply.caught_up {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let attempt = self.inner.config.attempt_timeout.min(left);
            let wait = attempt - attempt / 4;
            let request = pb::AddLearnerRequest {
                catch_up_wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
                ..request.clone()
            };
            match self
                .retrying_until(Route::Leader, None, request, until, add_learner)
                .await
            {
                Ok((next, _)) => reply = next,
                Err(Exhausted::Definite(error)) => return Err(error),
                // Out of time: the learner is in, report how far it got.
                Err(Exhausted::TimedOut { .. }) => break,
            }
        }
        Ok(LearnerAdded::new(node_id, reply))
    }

    /// Sets the voters (joint consensus); with `retain`, removed voters stay as learners.
    /// Asking for the voters already in force proposes nothing.
    pub async fn change_membership(
        &self,
        voters: &[u64],
        retain: bool,
    ) -> Result<pb::MembershipResponse, ClientError> {
        let request = pb::ChangeMembershipRequest {
            voters: voters.to_vec(),
            retain,
        };
        self.write(
            &format!("ChangeMembership to voters {voters:?}"),
            request,
            |mut node, request| async move { node.cluster.change_membership(request).await },
        )
        .await
    }

    /// Makes learner `node_id` a voter: reads the membership from the leader, then asks for the
    /// voters with it added ([`Client::change_membership`], removed voters retained as
    /// learners). Promote a learner only once it has caught up ([`LearnerAdded::caught_up`]).
    ///
    /// Repeating it is safe: once the node votes, the same voters are asked for and nothing is
    /// proposed (`changed` false in the reply). A node that is not a member is refused with
    /// [`ClientError::VoterSet`] ([`NotAMember`]) before anything is sent.
    ///
    /// [`NotAMember`]: crate::VoterSetError::NotAMember
    pub async fn promote(&self, node_id: u64) -> Result<pb::MembershipResponse, ClientError> {
        let status = self.status().await?;
        let voters = voters::after_promote(&status.members, node_id)?;
        self.change_membership(&voters, true).await
    }

    /// Removes voter `node_id` from the cluster: reads the membership from the leader, then asks
    /// for the voters without it ([`Client::change_membership`], not retained as a learner).
    ///
    /// Repeating it is safe: once the node is gone, the same voters are asked for and nothing is
    /// proposed (`changed` false in the reply). Refused with [`ClientError::VoterSet`] before
    /// anything is sent when the node is a learner ([`RemovingLearner`]: `ChangeMembership`
    /// names voters only, so it would stay) or the last voter ([`LastVoter`]).
    ///
    /// [`RemovingLearner`]: crate::VoterSetError::RemovingLearner
    /// [`LastVoter`]: crate::VoterSetError::LastVoter
    pub async fn remove_member(&self, node_id: u64) -> Result<pb::MembershipResponse, ClientError> {
        let status = self.status().await?;
        let voters = voters::after_remove(&status.members, node_id)?;
        self.change_membership(&voters, false).await
    }

    /// Hands leadership to node `to`; returns the new leader's id.
    pub async fn transfer_leader(&self, to: u64) -> Result<u64, ClientError> {
        let reply = self
            .write(
                &format!("TransferLeader to {to}"),
                pb::TransferLeaderRequest { to },
                |mut node, request| async move { node.cluster.transfer_leader(request).await },
            )
            .await?;
        *lock(&self.inner.leader) = None;
        Ok(reply.leader_id)
    }

    /// Makes the node at `addr` build a snapshot now; returns the index it covers.
    pub async fn trigger_snapshot(&self, addr: &str) -> Result<u64, ClientError> {
        let operation = format!("TriggerSnapshot on {addr}");
        self.retrying(
            Route::Node,
            Some(addr),
            pb::TriggerSnapshotRequest {},
            |mut node, request| async move { node.cluster.trigger_snapshot(request).await },
        )
        .await
        .map(|(reply, _)| reply.snapshot_index)
        .map_err(|exhausted| exhausted.into_write_error(&operation))
    }
}
