//! The public `admission.v1.Admission` service. Writes and linearizable reads run on the leader
//! (followers forward them, once); `STALE` reads and watches serve the local replica.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::transport::PeerChannel;
use ledger_proto::pb::{self, admission_client::AdmissionClient};
use ledger_state_machine::{Applied, Command, Outcome, RequestId, Status as InvestmentStatus};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::convert;
use crate::error::ApiError;
use crate::node::{forwarded, is_forwarded, Node, Route};

/// Most requests in one `SubmitBatch`.
pub const SUBMIT_BATCH_MAX: usize = 10_000;
/// Longest a follower waits for its own replica to show an investment a watch names, before it
/// asks the leader: at 500 sagas/s a round takes ~5 ms.
const CATCH_UP_WAIT: Duration = Duration::from_millis(25);

/// The `Admission` service of one node.
pub struct AdmissionService {
    node: Arc<Node>,
}

impl AdmissionService {
    /// Serves `node`.
    pub fn new(node: Arc<Node>) -> AdmissionService {
        AdmissionService { node }
    }

    async fn submit_one(
        &self,
        request: Request<pb::SubmitRequest>,
        submit: ledger_state_machine::Submit,
        trace: Option<ledger_state_machine::TraceContext>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        // A decided request id is answered from this replica: decisions never change, so
        // resubmissions and conflicting reuses cost no log entry.
        // The room for sagas is read under the same lock; it only matters on the leader.
        let (known, room) = {
            let replica = self.node.replica.read();
            let known = replica.state.resubmission(&submit);
            (known, self.node.saga_room_in(&replica.state))
        };
        if let Some(applied) = known {
            return Ok(Response::new(submit_response(&self.node, applied)?));
        }
        match self.node.route(is_forwarded(&request))? {
            Route::Leader(channel) => client(channel).submit(forwarded(request)).await,
            Route::Local => {
                room?;
                let proposed = self.node.propose(convert::traced(submit, trace)).await?;
                Ok(Response::new(submit_response(
                    &self.node,
                    proposed.applied,
                )?))
            }
        }
    }

    fn investment_view(&self, request_id: RequestId) -> Option<pb::Investment> {
        let view = self.node.replica.read().state.investment(request_id);
        view.map(convert::investment)
    }

    /// Whether the local replica holds a decision for `request_id` (without building its view).
    fn decided_here(&self, request_id: RequestId) -> bool {
        self.node
            .replica
            .read()
            .state
            .decision(request_id)
            .is_some()
    }

    /// Whether the local replica shows a decision for `request_id` within `wait`, following
    /// its applies (subscribed before each look, so no apply is missed).
    async fn applied_here_within(&self, request_id: RequestId, wait: Duration) -> bool {
        let mut applied = self.node.replica.applied_index();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.decided_here(request_id) {
                return true;
            }
            match tokio::time::timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => continue,
                // Out of time, or the replica is shutting down.
                _ => return false,
            }
        }
    }
}

fn client(channel: PeerChannel) -> AdmissionClient<PeerChannel> {
    AdmissionClient::new(channel)
        .max_decoding_message_size(crate::grpc::CLIENT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(crate::grpc::CLIENT_MESSAGE_BYTES_MAX)
}

fn submit_response(node: &Node, applied: Applied) -> Result<pb::SubmitResponse, ApiError> {
    let outcome = applied?;
    let Outcome::Submitted { decision, replayed } = outcome else {
        return Err(ApiError::Internal(format!("Submit applied as {outcome:?}")));
    };
    let view = node.replica.read().state.investment(decision.request_id);
    Ok(pb::SubmitResponse {
        investment: view.map(convert::investment),
        log_index: decision.log_index,
        offset: decision.offset,
        replayed,
    })
}

type InvestmentStream = Pin<Box<dyn Stream<Item = Result<pb::Investment, Status>> + Send>>;

#[tonic::async_trait]
impl pb::admission_server::Admission for AdmissionService {
    async fn create_deal(
        &self,
        request: Request<pb::CreateDealRequest>,
    ) -> Result<Response<pb::Deal>, Status> {
        let command = convert::create_deal(request.get_ref())?;
        let deal_id = request.get_ref().deal_id.clone();
        match self.node.route(is_forwarded(&request))? {
            Route::Leader(channel) => client(channel).create_deal(forwarded(request)).await,
            Route::Local => {
                self.node
                    .propose(command)
                    .await?
                    .applied
                    .map_err(ApiError::from)?;
                let deal = self.node.replica.read().state.deal(&deal_id);
                let deal = deal.ok_or_else(|| {
                    ApiError::Internal(format!("deal {deal_id} missing after creation"))
                })?;
                Ok(Response::new(convert::deal(deal)))
            }
        }
    }

    async fn close_deal(
        &self,
        request: Request<pb::CloseDealRequest>,
    ) -> Result<Response<pb::Deal>, Status> {
        let deal_id = convert::deal_id(&request.get_ref().deal_id)?.to_owned();
        match self.node.route(is_forwarded(&request))? {
            Route::Leader(channel) => client(channel).close_deal(forwarded(request)).await,
            Route::Local => {
                self.node
                    .propose(Command::CloseDeal {
                        deal_id: deal_id.clone(),
                    })
                    .await?
                    .applied
                    .map_err(ApiError::from)?;
                let deal = self.node.replica.read().state.deal(&deal_id);
                let deal = deal.ok_or_else(|| self.node.deal_missing(&deal_id))?;
                Ok(Response::new(convert::deal(deal)))
            }
        }
    }

    async fn withdraw(
        &self,
        request: Request<pb::WithdrawRequest>,
    ) -> Result<Response<pb::Investment>, Status> {
        let request_id = convert::request_id(&request.get_ref().request_id)?;
        match self.node.route(is_forwarded(&request))? {
            Route::Leader(channel) => client(channel).withdraw(forwarded(request)).await,
            Route::Local => {
                self.node
                    .propose(Command::Withdraw { request_id })
                    .await?
                    .applied
                    .map_err(ApiError::from)?;
                let view = self.node.replica.read().state.investment(request_id);
                let view =
                    view.ok_or_else(|| ApiError::NotFound(format!("investment {request_id}")))?;
                Ok(Response::new(convert::investment(view)))
            }
        }
    }

    async fn get_deal(
        &self,
        request: Request<pb::GetDealRequest>,
    ) -> Result<Response<pb::Deal>, Status> {
        let deal_id = convert::deal_id(&request.get_ref().deal_id)?.to_owned();
        if let Some(channel) = self
            .node
            .read_route(&request, convert::is_stale(request.get_ref().consistency)?)
            .await?
        {
            return client(channel).get_deal(forwarded(request)).await;
        }
        let deal = self.node.replica.read().state.deal(&deal_id);
        let deal = deal.ok_or_else(|| self.node.deal_missing(&deal_id))?;
        Ok(Response::new(convert::deal(deal)))
    }

    async fn list_deals(
        &self,
        request: Request<pb::ListDealsRequest>,
    ) -> Result<Response<pb::ListDealsResponse>, Status> {
        let start = convert::page_token(&request.get_ref().page_token)?;
        if let Some(channel) = self
            .node
            .read_route(&request, convert::is_stale(request.get_ref().consistency)?)
            .await?
        {
            return client(channel).list_deals(forwarded(request)).await;
        }
        let page = self
            .node
            .replica
            .read()
            .state
            .deals(start, request.get_ref().page_size as usize);
        Ok(Response::new(pb::ListDealsResponse {
            deals: page.items.into_iter().map(convert::deal).collect(),
            next_page_token: convert::next_page_token(page.next),
        }))
    }

    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let submit = convert::submit(request.get_ref())?;
        let trace = convert::trace_of(request.metadata());
        let span = tracing::info_span!("submit", node_id = self.node.config.node_id, request_id = %submit.request_id, trace_id = trace.map(|t| t.trace_id_hex()));
        if let Some(trace) = &trace {
            crate::logging::adopt(&span, trace);
        }
        tracing::Instrument::instrument(self.submit_one(request, submit, trace), span).await
    }

    async fn submit_batch(
        &self,
        request: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        let requests = &request.get_ref().requests;
        if requests.len() > SUBMIT_BATCH_MAX {
            return Err(ApiError::invalid(
                "requests",
                format!("at most {SUBMIT_BATCH_MAX} per batch"),
            )
            .into());
        }
        let parsed: Vec<Result<ledger_state_machine::Submit, ApiError>> =
            requests.iter().map(convert::submit).collect();
        if let Route::Leader(channel) = self.node.route(is_forwarded(&request))? {
            return client(channel).submit_batch(forwarded(request)).await;
        }
        // One trace context for the whole batch: the call's.
        let trace = convert::trace_of(request.metadata());
        let commands = parsed
            .iter()
            .filter_map(|p| p.as_ref().ok().map(|s| convert::traced(s.clone(), trace)))
            .collect();
        // A full queue refuses the whole call, which the client retries as one; so does a
        // backlog of sagas.
        self.node.saga_room()?;
        let mut proposed = self.node.propose_all(commands).await?.into_iter();
        let responses = parsed
            .into_iter()
            .map(|parsed| {
                let result = parsed.and_then(|_| {
                    let next = proposed
                        .next()
                        .unwrap_or_else(|| Err(ApiError::Internal("missing batch result".into())));
                    submit_response(&self.node, next?.applied)
                });
                pb::SubmitBatchResult {
                    result: Some(match result {
                        Ok(response) => pb::submit_batch_result::Result::Response(response),
                        Err(error) => pb::submit_batch_result::Result::Error(
                            super::status::request_error(error),
                        ),
                    }),
                }
            })
            .collect();
        Ok(Response::new(pb::SubmitBatchResponse { responses }))
    }

    async fn get_investment(
        &self,
        request: Request<pb::GetInvestmentRequest>,
    ) -> Result<Response<pb::Investment>, Status> {
        let request_id = convert::request_id(&request.get_ref().request_id)?;
        if let Some(channel) = self
            .node
            .read_route(&request, convert::is_stale(request.get_ref().consistency)?)
            .await?
        {
            return client(channel).get_investment(forwarded(request)).await;
        }
        let view = self.investment_view(request_id);
        Ok(Response::new(view.ok_or_else(|| {
            ApiError::NotFound(format!("investment {request_id}"))
        })?))
    }

    type WatchInvestmentStream = InvestmentStream;

    async fn watch_investment(
        &self,
        request: Request<pb::WatchInvestmentRequest>,
    ) -> Result<Response<InvestmentStream>, Status> {
        let request_id = convert::request_id(&request.get_ref().request_id)?;
        let slot = self.node.guard.watch_slot(request.remote_addr())?;
        // Existence is checked linearizably, so a request just decided elsewhere is not reported
        // missing by a lagging replica; the stream then follows the local replica.
        if !self.decided_here(request_id) {
            match self.node.route(is_forwarded(&request))? {
                Route::Local => {
                    self.node.linearizable_barrier().await?;
                    if !self.decided_here(request_id) {
                        return Err(ApiError::NotFound(format!("investment {request_id}")).into());
                    }
                }
                // Usually decided a moment ago, and this replica applies it within a round or two:
                // seen here, it exists, and the leader is spared a read barrier (a heartbeat to
                // every follower) per watch. Only a request still unseen is checked there.
                Route::Leader(_) if self.applied_here_within(request_id, CATCH_UP_WAIT).await => {}
                Route::Leader(channel) => {
                    let lookup = pb::GetInvestmentRequest {
                        request_id: request_id.to_string(),
                        consistency: pb::Consistency::Linearizable as i32,
                    };
                    client(channel)
                        .get_investment(forwarded(Request::new(lookup)))
                        .await?;
                }
            }
        }
        let (sender, receiver) = mpsc::channel(16);
        let node = self.node.clone();
        tokio::spawn(async move {
            // Held as long as the stream runs.
            let _slot = slot;
            let watch = node.replica.watch(request_id);
            let mut applied = node.replica.applied_index();
            // Every state, in log order: those the replica captured for this watch as it applied
            // entries (several may come at once), else, after a snapshot install or at the
            // start, the replica's current state. A state at or below the last index sent is
            // not sent again, so nothing goes backwards.
            let mut last: Option<(u64, pb::Investment)> = None;
            let mut first = true;
            loop {
                let captured = watch.states();
                let mut states = Vec::with_capacity(captured.len() + 1);
                let mut present = !captured.is_empty();
                if first || captured.is_empty() {
                    let replica = node.replica.read();
                    let index = replica.last_applied.map_or(0, |id| id.index);
                    let view = replica.state.investment(request_id);
                    drop(replica);
                    present |= view.is_some();
                    states.extend(view.map(|view| (index, view)));
                }
                first = false;
                states.extend(captured);
                for (index, view) in states {
                    if last.as_ref().is_some_and(|(sent, _)| index <= *sent) {
                        continue;
                    }
                    let terminal = !matches!(
                        view.status,
                        InvestmentStatus::Pending | InvestmentStatus::Waitlisted
                    );
                    let wire = convert::investment(view);
                    if last.as_ref().map(|(_, sent)| sent) != Some(&wire)
                        && sender.send(Ok(wire.clone())).await.is_err()
                    {
                        return;
                    }
                    last = Some((index, wire));
                    if terminal {
                        return;
                    }
                }
                // Saga events wake the watch; until the request reaches this replica (a rejection
                // has no saga, hence no event), every applied entry does.
                // In a fixed order (not tokio's random one), so that a simulation replays.
                tokio::select! {
                    biased;
                    () = sender.closed() => return,
                    () = watch.changed() => {}
                    changed = applied.changed(), if !present => if changed.is_err() { return },
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn list_investments(
        &self,
        request: Request<pb::ListInvestmentsRequest>,
    ) -> Result<Response<pb::ListInvestmentsResponse>, Status> {
        let deal_id = convert::deal_id(&request.get_ref().deal_id)?.to_owned();
        let start = convert::page_token(&request.get_ref().page_token)?;
        if let Some(channel) = self
            .node
            .read_route(&request, convert::is_stale(request.get_ref().consistency)?)
            .await?
        {
            return client(channel).list_investments(forwarded(request)).await;
        }
        let page = self
            .node
            .replica
            .read()
            .state
            .deal_investments(&deal_id, start, request.get_ref().page_size as usize)
            .map_err(|_| self.node.deal_missing(&deal_id))?;
        Ok(Response::new(pb::ListInvestmentsResponse {
            investments: page.items.into_iter().map(convert::investment).collect(),
            next_page_token: convert::next_page_token(page.next),
        }))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let user_id = convert::user_id(&request.get_ref().user_id)?.to_owned();
        if let Some(channel) = self
            .node
            .read_route(&request, convert::is_stale(request.get_ref().consistency)?)
            .await?
        {
            return client(channel).get_user(forwarded(request)).await;
        }
        let user = self.node.replica.read().state.user(&user_id);
        let user = user.ok_or_else(|| ApiError::NotFound(format!("user {user_id}")))?;
        Ok(Response::new(convert::user(user)))
    }
}
