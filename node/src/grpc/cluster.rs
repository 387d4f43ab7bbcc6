//! The operators' `admission.v1.Cluster` service: status, bootstrap, membership, leadership,
//! snapshots, and the listing and compensation of sagas. Membership changes and compensations
//! run on the leader (followers forward them once).

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::transport::PeerChannel;
use ledger_proto::pb::{self, cluster_client::ClusterClient};
use ledger_state_machine::{CancelCause, Command, CommandError, InvestmentView, Outcome, SagaStep};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::convert;
use crate::error::ApiError;
use crate::node::{forwarded, is_forwarded, Node, Route};
use crate::raft::admin;

/// How long `TransferLeader` and `TriggerSnapshot` wait for their effect, and a repeated
/// membership change for the entry already proposed to commit.
const WAIT_FOR_EFFECT: Duration = Duration::from_secs(10);
/// How long a leadership transfer waits, with new entries held back, for its target to catch up.
const CATCH_UP_FOR_TRANSFER: Duration = Duration::from_secs(3);
/// How long the other voters hold their own elections back while a target campaigns: the whole
/// time the target may campaign, and a little more. With 3 s, the other voter came back while a
/// loaded target was still campaigning and won instead (`leader_transfer_under_saga_load`, twice
/// in two CI runs on 2026-12-02: terms 74 and 116). The cost: if the old leader dies during a
/// transfer, the other voters wait this long before their own elections.
const STAND_ASIDE_FOR: Duration = Duration::from_secs(WAIT_FOR_EFFECT.as_secs() + 1);

/// Longest `AddLearner` waits for the learner to catch up (`catch_up_wait_ms` is capped here).
pub const CATCH_UP_WAIT_MAX: Duration = Duration::from_secs(60);

/// The `Cluster` service of one node.
pub struct ClusterService {
    node: Arc<Node>,
    elections: Arc<ElectionHolds>,
}

impl ClusterService {
    /// Serves `node`.
    pub fn new(node: Arc<Node>) -> ClusterService {
        ClusterService {
            node,
            elections: Arc::default(),
        }
    }

    fn members(&self) -> Vec<pb::Member> {
        admin::members(&self.node.raft)
            .into_iter()
            .map(|member| pb::Member {
                node_id: member.node_id,
                addr: member.addr,
                role: if member.voter {
                    pb::MemberRole::Voter
                } else {
                    pb::MemberRole::Learner
                } as i32,
                matched_index: member.matched_index,
            })
            .collect()
    }

    /// Waits until the membership entry at `log_index` is applied (hence committed) while this
    /// node leads.
    async fn membership_committed(&self, log_index: u64) -> Result<(), ApiError> {
        let me = self.node.config.node_id;
        admin::wait_committed_while_leading(&self.node.raft, me, log_index, WAIT_FOR_EFFECT).await
    }

    /// Waits at most `wait` for `node_id`'s log to reach `target` on this leader's view;
    /// returns whether it did.
    async fn caught_up(&self, node_id: u64, target: u64, wait: Duration) -> bool {
        node_id == self.node.config.node_id
            || admin::caught_up(&self.node.raft, node_id, target, wait).await
    }
}

impl ClusterService {
    /// This node campaigns until it leads (bounded). The first campaign makes the old leader step
    /// down (higher term), but followers still inside the old leader's lease refuse their votes;
    /// campaigning again once a few heartbeat periods passed (before their own election timers
    /// fire) wins.
    async fn campaign(&self) -> Result<(), ApiError> {
        let me = self.node.config.node_id;
        let retry = Duration::from_millis(self.node.config.raft.heartbeat_ms * 3);
        admin::campaign(&self.node.raft, me, retry, WAIT_FOR_EFFECT).await
    }

    /// A voter other than the target, asked by the leader's hand-over: no election of its own
    /// for [`STAND_ASIDE_FOR`], so that the target's campaign meets no competitor. Always ends by
    /// itself, so a hand-over that fails cannot leave the cluster without candidates.
    fn stand_aside(&self) {
        let until = tokio::time::Instant::now() + STAND_ASIDE_FOR;
        self.elections
            .update(&self.node, |holds| holds.stand_aside(until));
        let (node, elections) = (self.node.clone(), self.elections.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(until).await;
            // Only this stand-aside ends here: a later one, or a hand-over of this node's own,
            // keeps elections off.
            elections.update(&node, |_| {});
        });
    }

    /// On the leader. openraft 0.9 has no TimeoutNow, and a voter refuses any vote while it
    /// heard from a leader within the lease (the longest election timeout), so the target's
    /// campaign only works once the leader has gone quiet, and it must not race the others:
    /// 1. new entries are held back and the target catches up with the whole log;
    /// 2. the other voters stand aside (no elections of their own for a moment);
    /// 3. this leader stops its heartbeats and elections;
    /// 4. the target campaigns until it wins (the leases lapse within an election timeout).
    ///
    /// Heartbeats, elections and writes come back when this returns, whatever happened.
    async fn hand_over(
        &self,
        to: u64,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<(), ApiError> {
        let (addr, others) = {
            let membership = admin::membership(&self.node.raft);
            if !membership.is_voter(to) {
                return Err(ApiError::invalid("to", format!("node {to} is not a voter")));
            }
            let me = self.node.config.node_id;
            let others: Vec<String> = membership
                .voters()
                .into_iter()
                .filter(|&id| id != to && id != me)
                .filter_map(|id| membership.nodes.get(&id).cloned())
                .collect();
            (membership.nodes.get(&to).cloned(), others)
        };
        let addr =
            addr.ok_or_else(|| ApiError::invalid("to", format!("node {to} has no address")))?;
        let _hold = self.node.hold_writes().await;
        // Every entry proposed before the hold must be on the target, or the voters holding it
        // refuse the target their votes. Once those are applied, the leader's metrics show
        // them appended, so the last log index below counts them. If the target cannot catch
        // up within the bound, it campaigns anyway: it may still win once it catches up.
        let drained = tokio::time::timeout(CATCH_UP_FOR_TRANSFER, self.node.writes_drained()).await;
        let caught_up = drained.is_ok()
            && admin::holds_whole_log(&self.node.raft, to, CATCH_UP_FOR_TRANSFER).await;
        if !caught_up {
            tracing::warn!(
                to,
                "transfer target not caught up in time; it campaigns anyway"
            );
        }
        for other in others {
            let ask = Request::new(pb::TransferLeaderRequest { to });
            let asked = match self.node.channel(&other) {
                Ok(channel) => tokio::time::timeout(
                    Duration::from_secs(1),
                    client(channel).transfer_leader(forwarded(ask)),
                )
                .await
                .map_err(|_| "no answer".to_owned())
                .and_then(|r| r.map(|_| ()).map_err(|s| s.message().to_owned())),
                Err(error) => Err(error.to_string()),
            };
            if let Err(error) = asked {
                tracing::warn!(voter = %other, %error, "could not ask a voter to stand aside");
            }
        }
        let _quiet = Quiet::new(&self.node, &self.elections);
        let channel = self.node.channel(&addr)?;
        client(channel)
            .transfer_leader(forwarded(request))
            .await
            .map_err(ApiError::Forwarded)?;
        Ok(())
    }
}

/// Why this node's heartbeats and elections are off, if they are. Stand-asides and hand-overs
/// overlap (a transfer takes about a second, a stand-aside lasts [`STAND_ASIDE_FOR`]): each one
/// ending must not switch back on what another still needs off. Seen in CI: a stand-aside from
/// an earlier transfer expired during this node's own hand-over, the old leader campaigned
/// against its target, and the transfer timed out after 20 s of split votes.
#[derive(Debug, Default)]
struct Holds {
    /// Hand-overs of this node's leadership under way.
    quiet: usize,
    /// The end of the latest stand-aside.
    aside_until: Option<tokio::time::Instant>,
}

impl Holds {
    fn stand_aside(&mut self, until: tokio::time::Instant) {
        self.aside_until = self.aside_until.max(Some(until));
    }

    fn heartbeat(&self) -> bool {
        self.quiet == 0
    }

    fn elect(&self, now: tokio::time::Instant) -> bool {
        self.quiet == 0 && self.aside_until.is_none_or(|until| now >= until)
    }
}

#[derive(Debug, Default)]
struct ElectionHolds(std::sync::Mutex<Holds>);

impl ElectionHolds {
    /// Changes the holds and sets openraft's switches from all of them, under one lock, so two
    /// updates cannot apply their switches out of order.
    fn update(&self, node: &Node, change: impl FnOnce(&mut Holds)) {
        let mut holds = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut holds);
        admin::set_switches(
            &node.raft,
            holds.heartbeat(),
            holds.elect(tokio::time::Instant::now()),
        );
    }
}

/// While alive, this node sends no heartbeats and starts no election (a leader handing over).
struct Quiet<'a> {
    node: &'a Node,
    elections: &'a ElectionHolds,
}

impl<'a> Quiet<'a> {
    fn new(node: &'a Node, elections: &'a ElectionHolds) -> Quiet<'a> {
        elections.update(node, |holds| holds.quiet += 1);
        Quiet { node, elections }
    }
}

impl Drop for Quiet<'_> {
    fn drop(&mut self) {
        self.elections.update(self.node, |holds| holds.quiet -= 1);
    }
}

fn client(channel: PeerChannel) -> ClusterClient<PeerChannel> {
    // A forwarded `ListSagas` reply may exceed tonic's default 4 MiB.
    ClusterClient::new(channel)
        .max_decoding_message_size(crate::grpc::CLIENT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(crate::grpc::CLIENT_MESSAGE_BYTES_MAX)
}

/// What `CompensateSaga` does for an investment as a replica shows it.
#[derive(Debug, PartialEq, Eq)]
enum Compensation {
    /// Propose `AbortSaga`.
    Start,
    /// An operator's compensation already took effect (cause ABORTED): a retry, or a repeated
    /// command. Answer the investment and propose nothing.
    Started,
}

/// Whether `view`'s saga can be compensated, or `FAILED_PRECONDITION` with a plain explanation
/// when there is nothing left to compensate. Decisions never change and sagas never return to
/// PAYMENT or DOCUMENTS (nor lose their cancel cause), so an answer read from any replica,
/// however stale, other than `Start` is final.
fn compensable(view: &InvestmentView) -> Result<Compensation, ApiError> {
    let id = view.request_id;
    let status = view.status.as_str();
    let Some(saga) = &view.saga else {
        return Err(ApiError::FailedPrecondition(format!(
            "investment {id} was {status} and has no saga to compensate"
        )));
    };
    if saga.cancel_cause == Some(CancelCause::Aborted) {
        return Ok(Compensation::Started);
    }
    let step = saga.step.as_str().to_uppercase();
    let cause = saga.cancel_cause.map_or("", |c| c.as_str());
    match saga.step {
        SagaStep::Payment | SagaStep::Documents => Ok(Compensation::Start),
        SagaStep::Void => Err(ApiError::FailedPrecondition(format!(
            "the saga of investment {id} is already being compensated (cause {cause}, step {step})"
        ))),
        SagaStep::Notify | SagaStep::Done => Err(ApiError::FailedPrecondition(format!(
            "investment {id} is already {status} (saga step {step}); only a PENDING saga in \
             PAYMENT or DOCUMENTS can be compensated"
        ))),
    }
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportDealPart, Status>> + Send>>;

/// Decisions read per hold of the replica's lock while exporting, so that applies wait at
/// most for one page.
const EXPORT_PAGE: usize = 1_000;

type BackupStream = Pin<Box<dyn Stream<Item = Result<pb::BackupChunk, Status>> + Send>>;

/// Bytes of a backup file per streamed chunk (well under the 4 MiB message limit).
const BACKUP_CHUNK: usize = 1 << 20;

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    type ExportDealStream = ExportStream;
    type SaveSnapshotStream = BackupStream;

    async fn trace_investment(
        &self,
        request: Request<pb::TraceInvestmentRequest>,
    ) -> Result<Response<pb::InvestmentTrace>, Status> {
        let request_id = convert::request_id(&request.get_ref().request_id)?;
        if let Some(channel) = self
            .node
            .read_route(&request, convert::is_stale(request.get_ref().consistency)?)
            .await?
        {
            return client(channel).trace_investment(forwarded(request)).await;
        }
        let view = self.node.replica.read().state.investment(request_id);
        let view = view.ok_or_else(|| ApiError::NotFound(format!("investment {request_id}")))?;
        Ok(Response::new(convert::investment_trace(view)))
    }

    async fn save_snapshot(
        &self,
        request: Request<pb::SaveSnapshotRequest>,
    ) -> Result<Response<BackupStream>, Status> {
        // On the leader after a read barrier: every write acknowledged before this call is in.
        if let Some(channel) = self.node.read_route(&request, false).await? {
            let forwarded = client(channel).save_snapshot(forwarded(request)).await?;
            let stream: BackupStream = Box::pin(forwarded.into_inner());
            return Ok(Response::new(stream));
        }
        let backup = crate::raft::backup::save(&self.node.replica, &self.node.config.cluster_id)
            .await
            .map_err(ApiError::Internal)?;
        let (log_index, term) = (backup.log_index, backup.term);
        let digest = ledger_state_machine::StateDigest(backup.digest).to_string();
        let bytes = ledger_state_machine::codec::backup::encode(&backup);
        drop(backup);
        tracing::info!(log_index, term, bytes = bytes.len(), %digest, "backup saved");
        let total_bytes = bytes.len() as u64;
        let chunks: Vec<pb::BackupChunk> = bytes
            .chunks(BACKUP_CHUNK)
            .enumerate()
            .map(|(n, data)| {
                let first = n == 0;
                pb::BackupChunk {
                    data: data.to_vec(),
                    total_bytes: if first { total_bytes } else { 0 },
                    log_index: if first { log_index } else { 0 },
                    term: if first { term } else { 0 },
                    digest: if first { digest.clone() } else { String::new() },
                }
            })
            .collect();
        let stream: BackupStream = Box::pin(tokio_stream::iter(chunks.into_iter().map(Ok)));
        Ok(Response::new(stream))
    }

    async fn export_deal(
        &self,
        request: Request<pb::ExportDealRequest>,
    ) -> Result<Response<ExportStream>, Status> {
        let deal_id = convert::deal_id(&request.get_ref().deal_id)?.to_owned();
        if let Some(channel) = self.node.read_route(&request, false).await? {
            let forwarded = client(channel).export_deal(forwarded(request)).await?;
            let stream: ExportStream = Box::pin(forwarded.into_inner());
            return Ok(Response::new(stream));
        }
        let deal = self.node.replica.read().state.deal(&deal_id);
        let deal = deal.ok_or_else(|| self.node.deal_missing(&deal_id))?;
        // The head read first bounds the export: decisions never change, so the pages read
        // after it hold exactly the decisions it commits to.
        let decisions = deal.receipt_head.deal_seq;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let node = self.node.clone();
        tokio::spawn(async move {
            let first = pb::ExportDealPart {
                part: Some(pb::export_deal_part::Part::Deal(convert::deal(deal))),
            };
            if sender.send(Ok(first)).await.is_err() {
                return;
            }
            let mut start = 0u64;
            while start < decisions {
                let limit = EXPORT_PAGE.min((decisions - start) as usize);
                let page = node
                    .replica
                    .read()
                    .state
                    .deal_investments(&deal_id, start, limit);
                let items = match page {
                    Ok(page) if !page.items.is_empty() => page.items,
                    Ok(_) => return,
                    Err(_) => {
                        let gone = node.deal_missing(&deal_id);
                        let _ = sender.send(Err(gone.into())).await;
                        return;
                    }
                };
                start += items.len() as u64;
                for view in items {
                    let part = pb::ExportDealPart {
                        part: Some(pb::export_deal_part::Part::Investment(convert::investment(
                            view,
                        ))),
                    };
                    if sender.send(Ok(part)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let raft = admin::status(&self.node.raft);
        // The digest hashes the whole state: only when asked (leader discovery does not).
        let (applied_index, state_digest) = if request.get_ref().with_digest {
            let (index, digest) = self.node.replica.digest_async().await;
            (index, digest.to_string())
        } else {
            let applied = self.node.replica.read().last_applied;
            (applied.map_or(0, |id| id.index), String::new())
        };
        let executors = self
            .node
            .replica
            .read()
            .state
            .executors()
            .into_iter()
            .map(|e| pb::ExecutorStatus {
                node_id: e.node_id,
                live: e.live,
                last_heartbeat_ms: e.last_heartbeat_ms,
                open_sagas: u32::try_from(e.open_sagas).unwrap_or(u32::MAX),
            })
            .collect();
        Ok(Response::new(pb::StatusResponse {
            node_id: self.node.config.node_id,
            leader_id: raft.leader_id,
            term: raft.term,
            last_log_index: raft.last_log_index,
            // openraft 0.9 does not publish the commit index; what is applied is committed, and
            // the leader's view of its followers is in `matched_index`.
            committed_index: applied_index,
            applied_index,
            state_digest,
            members: self.members(),
            executors,
            role: raft.role.to_owned(),
            snapshot_index: raft.snapshot_index,
            purged_index: raft.purged_index,
        }))
    }

    async fn init(
        &self,
        request: Request<pb::InitRequest>,
    ) -> Result<Response<pb::InitResponse>, Status> {
        let members = &request.get_ref().members;
        if members.is_empty() {
            return Err(ApiError::invalid("members", "at least one member").into());
        }
        let mut nodes = BTreeMap::new();
        for member in members {
            if member.node_id == 0 || member.addr.is_empty() {
                return Err(ApiError::invalid(
                    "members",
                    "every member needs a node_id ≥ 1 and an addr",
                )
                .into());
            }
            nodes.insert(member.node_id, member.addr.clone());
        }
        if !nodes.contains_key(&self.node.config.node_id) {
            return Err(
                ApiError::invalid("members", "must include the node receiving Init").into(),
            );
        }
        admin::initialize(&self.node.raft, nodes).await?;
        Ok(Response::new(pb::InitResponse {}))
    }

    async fn add_learner(
        &self,
        request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let pb::AddLearnerRequest {
            node_id,
            addr,
            catch_up_wait_ms,
        } = request.get_ref().clone();
        if node_id == 0 || addr.is_empty() {
            return Err(
                ApiError::invalid("node_id", "a learner needs a node_id ≥ 1 and an addr").into(),
            );
        }
        if let Route::Leader(channel) = self.node.route(is_forwarded(&request))? {
            return client(channel).add_learner(forwarded(request)).await;
        }
        // openraft would append another membership entry for a node already there (and keep
        // its old address): a retry proposes nothing instead.
        let (present, membership_index) = {
            let membership = admin::membership(&self.node.raft);
            (
                membership.nodes.get(&node_id).cloned(),
                membership.log_index,
            )
        };
        let (log_index, changed) = match present {
            Some(existing) if existing == addr => {
                self.membership_committed(membership_index).await?;
                (membership_index, false)
            }
            Some(existing) => {
                return Err(ApiError::FailedPrecondition(format!(
                    "node {node_id} is already a member, at {existing}; remove it before adding \
                     it at another address"
                ))
                .into())
            }
            None => (
                admin::add_learner(&self.node.raft, node_id, addr).await?,
                true,
            ),
        };
        let catch_up_index = admin::status(&self.node.raft).last_log_index;
        let wait = Duration::from_millis(u64::from(catch_up_wait_ms)).min(CATCH_UP_WAIT_MAX);
        let caught_up = self.caught_up(node_id, catch_up_index, wait).await;
        Ok(Response::new(pb::MembershipResponse {
            members: self.members(),
            log_index,
            changed,
            catch_up_index,
            caught_up,
        }))
    }

    async fn change_membership(
        &self,
        request: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let voters: BTreeSet<u64> = request.get_ref().voters.iter().copied().collect();
        if voters.is_empty() {
            return Err(ApiError::invalid("voters", "at least one voter").into());
        }
        let retain = request.get_ref().retain;
        if let Route::Leader(channel) = self.node.route(is_forwarded(&request))? {
            return client(channel).change_membership(forwarded(request)).await;
        }
        // openraft would append the same membership again: a retry, or a promotion repeated,
        // proposes nothing once these voters are in force (not a joint configuration).
        let in_force = {
            let membership = admin::membership(&self.node.raft);
            (membership.configs.len() == 1 && membership.configs[0] == voters)
                .then_some(membership.log_index)
        };
        if let Some(log_index) = in_force {
            self.membership_committed(log_index).await?;
            return Ok(Response::new(pb::MembershipResponse {
                members: self.members(),
                log_index,
                ..Default::default()
            }));
        }
        let log_index = admin::change_membership(&self.node.raft, voters, retain).await?;
        Ok(Response::new(pb::MembershipResponse {
            members: self.members(),
            log_index,
            changed: true,
            ..Default::default()
        }))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        let to = request.get_ref().to;
        let me = self.node.config.node_id;
        // A retry of a transfer that took effect: no new election.
        if self.node.leader().0 == Some(to) {
            return Ok(Response::new(pb::TransferLeaderResponse { leader_id: to }));
        }
        // openraft 0.9 has no transfer call (no TimeoutNow): see `hand_over`. A target asked
        // directly goes through the leader first.
        let forwarded_here = is_forwarded(&request);
        let leads = self.node.leader().0 == Some(me);
        match (to == me, self.node.route(forwarded_here)) {
            (true, _) if forwarded_here => self.campaign().await?,
            // The leader's hand-over asks the other voters to stand aside for a moment.
            (false, _) if forwarded_here && !leads => {
                self.stand_aside();
                return Ok(Response::new(pb::TransferLeaderResponse { leader_id: to }));
            }
            (_, Ok(Route::Leader(channel))) => {
                return client(channel).transfer_leader(forwarded(request)).await;
            }
            (true, _) => self.campaign().await?, // no leader to ask: campaign at once
            (false, Ok(Route::Local)) => self.hand_over(to, request).await?,
            (false, Err(error)) => return Err(error.into()),
        }
        let leader_id = admin::wait_leader(&self.node.raft, to, WAIT_FOR_EFFECT).await?;
        Ok(Response::new(pb::TransferLeaderResponse { leader_id }))
    }

    async fn list_sagas(
        &self,
        request: Request<pb::ListSagasRequest>,
    ) -> Result<Response<pb::ListSagasResponse>, Status> {
        let (filter, limit) = convert::list_sagas(request.get_ref())?;
        if let Some(channel) = self
            .node
            .read_route(&request, convert::is_stale(request.get_ref().consistency)?)
            .await?
        {
            return client(channel).list_sagas(forwarded(request)).await;
        }
        let (sagas, open_total, now_ms) = {
            let replica = self.node.replica.read();
            let state = &replica.state;
            (
                state.open_sagas(filter, limit),
                state.open_saga_count(),
                state.now_ms(),
            )
        };
        Ok(Response::new(pb::ListSagasResponse {
            sagas: sagas.into_iter().map(convert::investment).collect(),
            open_total: open_total as u64,
            now_ms,
        }))
    }

    async fn compensate_saga(
        &self,
        request: Request<pb::CompensateSagaRequest>,
    ) -> Result<Response<pb::Investment>, Status> {
        let (request_id, command) = convert::compensate_saga(request.get_ref())?;
        // What the local replica already shows is final unless it is "start": no need to
        // forward or propose.
        let local = self.node.replica.read().state.investment(request_id);
        if let Some(view) = local {
            if compensable(&view)? == Compensation::Started {
                return Ok(Response::new(convert::investment(view)));
            }
        }
        match self.node.route(is_forwarded(&request))? {
            Route::Leader(channel) => client(channel).compensate_saga(forwarded(request)).await,
            Route::Local => {
                let applied = self.node.propose(command).await?.applied;
                let view = self.node.replica.read().state.investment(request_id);
                match applied {
                    Ok(Outcome::SagaAborted) => {}
                    Ok(other) => {
                        return Err(
                            ApiError::Internal(format!("AbortSaga applied as {other:?}")).into(),
                        )
                    }
                    // Explained from the investment as it now stands: an earlier attempt's
                    // compensation that committed meanwhile is this call's success.
                    Err(error @ CommandError::NotCompensable { .. }) => {
                        match view.as_ref().map(compensable) {
                            Some(Ok(Compensation::Started)) => {}
                            Some(Err(explained)) => return Err(explained.into()),
                            _ => return Err(ApiError::Command(error).into()),
                        }
                    }
                    Err(error) => return Err(ApiError::Command(error).into()),
                }
                let view = view.ok_or_else(|| {
                    ApiError::Internal(format!("investment {request_id} missing after AbortSaga"))
                })?;
                Ok(Response::new(convert::investment(view)))
            }
        }
    }

    async fn archive_deal(
        &self,
        request: Request<pb::ArchiveDealRequest>,
    ) -> Result<Response<pb::ArchiveDealResponse>, Status> {
        let archive = convert::archive_deal(request.get_ref())?;
        match self.node.route(is_forwarded(&request))? {
            Route::Leader(channel) => client(channel).archive_deal(forwarded(request)).await,
            Route::Local => {
                let deal_id = archive.deal_id.clone();
                let proposed = self.node.propose(Command::ArchiveDeal(archive)).await?;
                let newly = match proposed.applied {
                    Ok(Outcome::DealArchived { archived }) => archived,
                    Ok(other) => {
                        return Err(
                            ApiError::Internal(format!("ArchiveDeal applied as {other:?}")).into(),
                        )
                    }
                    Err(error) => return Err(ApiError::Command(error).into()),
                };
                let replica = self.node.replica.read();
                let archived = replica.state.archived_deal(&deal_id).ok_or_else(|| {
                    ApiError::Internal(format!("deal {deal_id} missing after ArchiveDeal"))
                })?;
                tracing::info!(
                    deal_id,
                    log_index = archived.archived_log_index,
                    newly,
                    "deal archived"
                );
                Ok(Response::new(convert::archived_deal(archived, newly)))
            }
        }
    }

    async fn trigger_snapshot(
        &self,
        _request: Request<pb::TriggerSnapshotRequest>,
    ) -> Result<Response<pb::TriggerSnapshotResponse>, Status> {
        let snapshot_index = admin::snapshot_now(&self.node.raft, WAIT_FOR_EFFECT).await?;
        Ok(Response::new(pb::TriggerSnapshotResponse {
            snapshot_index,
        }))
    }
}

#[cfg(test)]
mod tests {
    use ledger_state_machine::{
        CancelCause, Money, RejectReason, RequestId, Saga, Status as InvestmentStatus,
    };

    use super::*;

    #[test]
    fn an_ending_stand_aside_leaves_a_hand_over_quiet() {
        let now = tokio::time::Instant::now();
        let mut holds = Holds::default();
        assert!(holds.elect(now) && holds.heartbeat());
        holds.stand_aside(now + Duration::from_secs(11));
        holds.quiet += 1; // this node became leader and now hands over
        let later = now + Duration::from_secs(12);
        assert!(
            !holds.elect(later),
            "the hand-over still needs elections off"
        );
        assert!(!holds.heartbeat());
        holds.quiet -= 1;
        assert!(holds.elect(later) && holds.heartbeat());
    }

    #[test]
    fn an_earlier_stand_aside_does_not_cut_a_later_one_short() {
        let now = tokio::time::Instant::now();
        let mut holds = Holds::default();
        holds.stand_aside(now + Duration::from_secs(11));
        holds.stand_aside(now + Duration::from_secs(12));
        holds.stand_aside(now + Duration::from_secs(5)); // cannot shorten
        assert!(!holds.elect(now + Duration::from_secs(11)));
        assert!(
            holds.heartbeat(),
            "standing aside keeps a leader's heartbeats"
        );
        assert!(holds.elect(now + Duration::from_secs(12)));
    }

    fn view(status: InvestmentStatus, step: Option<SagaStep>) -> InvestmentView {
        let cause = (step == Some(SagaStep::Void)).then_some(CancelCause::DeadlineExceeded);
        view_with_cause(status, step, cause)
    }

    fn view_with_cause(
        status: InvestmentStatus,
        step: Option<SagaStep>,
        cancel_cause: Option<CancelCause>,
    ) -> InvestmentView {
        InvestmentView {
            request_id: RequestId::from_u128(7).unwrap(),
            deal_id: "d".into(),
            user_id: "ana".into(),
            amount: Money::parse("100").unwrap(),
            status,
            reject_reason: step.is_none().then_some(RejectReason::InvestorLimitReached),
            log_index: 3,
            offset: 0,
            decided_by: Some(1),
            decided_at_ms: 1,
            saga: step.map(|step| Saga {
                step,
                assignee: Some(2),
                epoch: 1,
                deadline_ms: 300_001,
                attempts: 0,
                last_error: None,
                cancel_cause,
                payment_id: None,
                refunded: false,
                document_id: None,
                message_id: None,
                notify_failed: false,
                updated_at_ms: 1,
                cancelled_at: None,
                history: Vec::new(),
                history_dropped: 0,
            }),
            waitlist_requested: false,
            waitlist_ttl_ms: None,
            waitlisted: false,
            waitlist_position: None,
            admitted_at: None,
            waitlist_ended_at: None,
            receipt: None,
        }
    }

    fn refusal(view: &InvestmentView) -> String {
        match compensable(view) {
            Err(ApiError::FailedPrecondition(message)) => message,
            other => panic!("expected FAILED_PRECONDITION, got {other:?}"),
        }
    }

    #[test]
    fn only_pending_sagas_in_payment_or_documents_are_compensable() {
        use InvestmentStatus::*;
        for step in [SagaStep::Payment, SagaStep::Documents] {
            assert!(matches!(
                compensable(&view(Pending, Some(step))),
                Ok(Compensation::Start)
            ));
        }

        let rejected = refusal(&view(Rejected, None));
        assert!(
            rejected.contains("was REJECTED and has no saga"),
            "{rejected}"
        );
        let voiding = refusal(&view(Pending, Some(SagaStep::Void)));
        assert!(
            voiding.contains("already being compensated (cause DEADLINE_EXCEEDED, step VOID)"),
            "{voiding}"
        );
        let confirmed = refusal(&view(Confirmed, Some(SagaStep::Notify)));
        assert!(
            confirmed.contains("already CONFIRMED (saga step NOTIFY)"),
            "{confirmed}"
        );
        let cancelled = refusal(&view(Cancelled, Some(SagaStep::Done)));
        assert!(
            cancelled.contains("already CANCELLED (saga step DONE)"),
            "{cancelled}"
        );
    }

    #[test]
    fn an_operators_compensation_that_took_effect_is_answered_again_not_refused() {
        use InvestmentStatus::*;
        let aborted = Some(CancelCause::Aborted);
        // Still voiding, and already cancelled (the e-mail going out, or done).
        for (status, step) in [
            (Pending, SagaStep::Void),
            (Cancelled, SagaStep::Notify),
            (Cancelled, SagaStep::Done),
        ] {
            assert!(
                matches!(
                    compensable(&view_with_cause(status, Some(step), aborted)),
                    Ok(Compensation::Started)
                ),
                "{status:?} in {step:?}"
            );
        }
        // Cancelled for another cause: not this command's doing, still refused.
        let declined = view_with_cause(
            Cancelled,
            Some(SagaStep::Done),
            Some(CancelCause::PaymentDeclined),
        );
        assert!(matches!(
            compensable(&declined),
            Err(ApiError::FailedPrecondition(_))
        ));
    }

    #[test]
    fn compensation_failures_map_to_their_codes() {
        let request_id = RequestId::from_u128(7).unwrap();
        let code = |error: ApiError| Status::from(error).code();
        let refusal = compensable(&view(InvestmentStatus::Rejected, None)).unwrap_err();
        assert_eq!(code(refusal), tonic::Code::FailedPrecondition);
        let not_compensable = CommandError::NotCompensable {
            request_id,
            step: SagaStep::Void,
        };
        assert_eq!(
            code(ApiError::Command(not_compensable)),
            tonic::Code::FailedPrecondition
        );
        let unknown = CommandError::InvestmentNotFound { request_id };
        assert_eq!(code(ApiError::Command(unknown)), tonic::Code::NotFound);
        assert_eq!(
            code(ApiError::invalid("reason", "blank")),
            tonic::Code::InvalidArgument
        );
    }
}
