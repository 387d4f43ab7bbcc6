//! [`Client`]: leader discovery, retries with the same request id, deadlines.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use ledger_proto::pb;
use ledger_proto::pb::admission_client::AdmissionClient;
use ledger_proto::pb::cluster_client::ClusterClient;
use tonic::transport::Channel;

use crate::error::{classify, ClientError, Failure};
use crate::{Credentials, Transport, MESSAGE_BYTES_MAX};

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
    /// TLS and token; [`Credentials::insecure`] by default.
    pub credentials: Credentials,
}

impl ClientConfig {
    /// Defaults: 5 s per attempt, 15 s per call, 2 s to connect, pauses of 25 ms to 1 s.
    pub fn new<S: Into<String>>(seeds: impl IntoIterator<Item = S>) -> ClientConfig {
        ClientConfig {
            seeds: seeds.into_iter().map(Into::into).collect(),
            attempt_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(25),
            backoff_max: Duration::from_secs(1),
            credentials: Credentials::insecure(),
        }
    }
}

/// One investment request. The `request_id` is what makes retries safe: the ledger decides a
/// request id once, and a resubmission returns the first decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    /// The request's id (a UUID).
    pub request_id: String,
    /// The deal.
    pub deal_id: String,
    /// The investor.
    pub user_id: String,
    /// The amount, a decimal string such as `"2500.00"`.
    pub amount: String,
    /// Wait on the deal's waitlist rather than be rejected for lack of seats or amount.
    pub waitlist: bool,
    /// With `waitlist`: how long (ms of log time) to wait at most; `None` until the deal closes.
    pub waitlist_ttl_ms: Option<u64>,
}

impl Submission {
    /// A request with a fresh random id.
    pub fn new(
        deal_id: impl Into<String>,
        user_id: impl Into<String>,
        amount: impl Into<String>,
    ) -> Submission {
        Submission {
            request_id: uuid::Uuid::new_v4().to_string(),
            deal_id: deal_id.into(),
            user_id: user_id.into(),
            amount: amount.into(),
            waitlist: false,
            waitlist_ttl_ms: None,
        }
    }

    /// The same request, opting in to the waitlist (for at most `ttl_ms` of log time if given).
    pub fn waitlisted(mut self, ttl_ms: Option<u64>) -> Submission {
        self.waitlist = true;
        self.waitlist_ttl_ms = ttl_ms;
        self
    }

    fn to_request(&self) -> pb::SubmitRequest {
        pb::SubmitRequest {
            request_id: self.request_id.clone(),
            deal_id: self.deal_id.clone(),
            user_id: self.user_id.clone(),
            amount: self.amount.clone(),
            waitlist: self.waitlist,
            waitlist_ttl_ms: self.waitlist_ttl_ms,
        }
    }
}

/// The ledger's decision on a request: admitted (`PENDING`, then a saga runs) or `REJECTED`
/// with a reason. Either is a normal result.
#[derive(Clone, Debug)]
pub struct Decision {
    /// The investment as decided.
    pub investment: pb::Investment,
    /// The log entry that decided it, and the request's position in that entry.
    pub log_index: u64,
    /// Position within the entry.
    pub offset: u32,
    /// The request had been decided before (a resubmission).
    pub replayed: bool,
    /// Attempts this call took (1 without retries).
    pub attempts: u32,
}

impl Decision {
    /// The investment's status at the decision.
    pub fn status(&self) -> pb::InvestmentStatus {
        status_of(&self.investment)
    }

    /// Admitted: a seat and the amount are held, and the saga runs.
    pub fn is_admitted(&self) -> bool {
        self.status() != pb::InvestmentStatus::Rejected
    }

    /// Why the request was rejected, if it was.
    pub fn reject_reason(&self) -> Option<pb::RejectReason> {
        (self.status() == pb::InvestmentStatus::Rejected).then(|| {
            pb::RejectReason::try_from(self.investment.reject_reason)
                .unwrap_or(pb::RejectReason::Unspecified)
        })
    }
}

/// An investment's status, `UNSPECIFIED` if the number is unknown to this client.
pub fn status_of(investment: &pb::Investment) -> pb::InvestmentStatus {
    pb::InvestmentStatus::try_from(investment.status).unwrap_or(pb::InvestmentStatus::Unspecified)
}

/// Whether an investment's saga is over (`CONFIRMED`, `CANCELLED`) or it never had one
/// (`REJECTED`).
pub fn is_final(investment: &pb::Investment) -> bool {
    matches!(
        status_of(investment),
        pb::InvestmentStatus::Confirmed
            | pb::InvestmentStatus::Cancelled
            | pb::InvestmentStatus::Rejected
    )
}

/// Where a call goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    /// The leader (writes, linearizable reads): fewer hops than a forward by a follower.
    Leader,
    /// One particular node.
    Node,
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
    channels: Mutex<HashMap<String, Channel>>,
    /// The leader's address as last learned, if any.
    leader: Mutex<Option<String>>,
    /// Every member's address as last learned (plus the seeds).
    members: Mutex<Vec<String>>,
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
                config,
                channels: Mutex::new(HashMap::new()),
                leader: Mutex::new(None),
            }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The leader's address as last learned.
    pub fn leader_addr(&self) -> Option<String> {
        lock(&self.inner.leader).clone()
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

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.inner.config.backoff_min)
            .with_max_delay(self.inner.config.backoff_max)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// Runs `call` with a copy of `request` against the leader (or `addr`), retrying retryable
    /// failures until the deadline; every attempt sends the same request. Returns the reply and
    /// the attempts it took, the definite error, or the last retryable failure when time ran
    /// out (and whether any attempt may have written).
    async fn retrying<R, T, F, Fut>(
        &self,
        route: Route,
        addr: Option<&str>,
        request: R,
        call: F,
    ) -> Result<(T, u32), Exhausted>
    where
        R: Clone,
        F: FnMut(Services, R) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.inner.config.deadline;
        self.retrying_until(route, addr, request, deadline, call)
            .await
    }

    /// [`Client::retrying`] until `deadline` rather than the configured one.
    async fn retrying_until<R, T, F, Fut>(
        &self,
        route: Route,
        addr: Option<&str>,
        request: R,
        deadline: Instant,
        mut call: F,
    ) -> Result<(T, u32), Exhausted>
    where
        R: Clone,
        F: FnMut(Services, R) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let started = Instant::now();
        let mut delays = self.backoff();
        let mut attempts = 0u32;
        // Whether any failed attempt may have taken effect: then running out of time leaves
        // a write's outcome unknown, not "nothing written".
        let mut may_have_written = false;
        loop {
            attempts += 1;
            let target = match (route, addr) {
                (Route::Node, Some(addr)) => Ok(addr.to_owned()),
                _ => match self.leader_addr() {
                    Some(leader) => Ok(leader),
                    None => self.discover().await,
                },
            };
            let message = match target {
                Err(ClientError::Unavailable(message)) => message,
                Err(other) => return Err(Exhausted::Definite(other)),
                Ok(target) => {
                    let services = self.node(&target).map_err(Exhausted::Definite)?;
                    let left = deadline.saturating_duration_since(Instant::now());
                    let timeout = self.inner.config.attempt_timeout.min(left);
                    match tokio::time::timeout(timeout, call(services, request.clone())).await {
                        Ok(Ok(reply)) => return Ok((reply.into_inner(), attempts)),
                        Ok(Err(status)) => match classify(&status) {
                            Failure::Definite(error) => return Err(Exhausted::Definite(error)),
                            Failure::Retry {
                                leader_hint,
                                message,
                                may_have_written: written,
                            } => {
                                may_have_written |= written;
                                if route == Route::Leader {
                                    // Follow the hint, or forget a leader that failed us.
                                    *lock(&self.inner.leader) = leader_hint;
                                }
                                format!("{target}: {message}")
                            }
                        },
                        // The request may have arrived and be waiting for its entry to commit.
                        Err(_) => {
                            may_have_written = true;
                            if route == Route::Leader {
                                *lock(&self.inner.leader) = None;
                            }
                            format!("{target}: no answer within {timeout:?}")
                        }
                    }
                }
            };
            // Another attempt only if it gets a quarter of its usual time: one cut shorter
            // would rarely be answered, and one that times out leaves a write's outcome unknown.
            let shortest = self.inner.config.attempt_timeout / 4;
            match delays.next() {
                Some(delay) if Instant::now() + delay + shortest <= deadline => {
                    tokio::time::sleep(delay).await
                }
                _ => {
                    return Err(Exhausted::TimedOut {
                        waited: started.elapsed(),
                        last_error: message,
                        may_have_written,
                    })
                }
            }
        }
    }

    /// [`Client::retrying`] on the leader for a read: past the deadline, "unavailable".
    async fn call<R, T, F, Fut>(&self, request: R, call: F) -> Result<T, ClientError>
    where
        R: Clone,
        F: FnMut(Services, R) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.retrying(Route::Leader, None, request, call)
            .await
            .map(|(reply, _)| reply)
            .map_err(Exhausted::into_unavailable)
    }

    /// [`Client::retrying`] on the leader for an operator write, named by `operation` in an
    /// unknown outcome.
    async fn write<R, T, F, Fut>(
        &self,
        operation: &str,
        request: R,
        call: F,
    ) -> Result<T, ClientError>
    where
        R: Clone,
        F: FnMut(Services, R) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.retrying(Route::Leader, None, request, call)
            .await
            .map(|(reply, _)| reply)
            .map_err(|exhausted| exhausted.into_write_error(operation))
    }

    /// Submits one request, retrying with the same request id until the deadline.
    ///
    /// A capacity rejection is an `Ok` decision. When the deadline passes without an answer,
    /// the request may or may not have been decided: [`ClientError::OutcomeUnknown`], which
    /// carries the request id to look up later.
    pub async fn submit(&self, submission: &Submission) -> Result<Decision, ClientError> {
        let request = submission.to_request();
        let result = self
            .retrying(
                Route::Leader,
                None,
                request,
                |mut node, request| async move { node.admission.submit(request).await },
            )
            .await;
        match result {
            Ok((reply, attempts)) => decision(reply, attempts),
            Err(exhausted) => Err(exhausted.into_outcome_unknown(&submission.request_id)),
        }
    }

    /// Submits many requests in one call; they are decided in order, each on its own (one
    /// result per request). Retried as a whole with the same ids, so a retry never decides a
    /// request twice; when the deadline passes, every request's outcome is unknown.
    pub async fn submit_batch(
        &self,
        submissions: &[Submission],
    ) -> Result<Vec<Result<Decision, ClientError>>, ClientError> {
        let started = Instant::now();
        let request = pb::SubmitBatchRequest {
            requests: submissions.iter().map(Submission::to_request).collect(),
        };
        let result = self
            .retrying(
                Route::Leader,
                None,
                request,
                |mut node, request| async move { node.admission.submit_batch(request).await },
            )
            .await;
        let (reply, attempts) = match result {
            Ok(ok) => ok,
            Err(exhausted) => {
                let ids: Vec<&str> = submissions.iter().map(|s| s.request_id.as_str()).collect();
                return Err(exhausted.into_outcome_unknown(&ids.join(",")));
            }
        };
        Ok(reply
            .responses
            .into_iter()
            .zip(submissions)
            .map(|(result, submission)| match result.result {
                Some(pb::submit_batch_result::Result::Response(reply)) => decision(reply, attempts),
                Some(pb::submit_batch_result::Result::Error(error)) => {
                    let outcome = error.outcome();
                    let status = tonic::Status::new(
                        tonic::Code::from_i32(error.code as i32),
                        if error.field.is_empty() {
                            error.message
                        } else {
                            format!("{}: {}", error.field, error.message)
                        },
                    );
                    Err(match classify(&status) {
                        Failure::Definite(error) => error,
                        // Only the node's "not proposed" promises the request was not decided.
                        Failure::Retry { message, .. }
                            if outcome == pb::WriteOutcome::NotProposed =>
                        {
                            ClientError::Unavailable(message)
                        }
                        Failure::Retry { message, .. } => ClientError::OutcomeUnknown {
                            request_id: submission.request_id.clone(),
                            waited: started.elapsed(),
                            last_error: message,
                        },
                    })
                }
                None => Err(ClientError::Other {
                    code: tonic::Code::Internal,
                    message: "empty result in a batch reply".into(),
                }),
            })
            .collect())
    }

    /// Submits, then follows the investment until its saga is over (`CONFIRMED` or
    /// `CANCELLED`) or `wait` passes ([`ClientError::NotFinal`]). A rejection returns at once.
    pub async fn invest_and_wait(
        &self,
        submission: &Submission,
        wait: Duration,
    ) -> Result<pb::Investment, ClientError> {
        let started = Instant::now();
        let decided = self.submit(submission).await?;
        if is_final(&decided.investment) {
            return Ok(decided.investment);
        }
        self.wait_final(
            &submission.request_id,
            wait.saturating_sub(started.elapsed()),
        )
        .await
    }

    /// Follows an investment (`WatchInvestment`) until it is final or `wait` passes; a broken
    /// stream is reopened (on the leader, rediscovered if need be).
    pub async fn wait_final(
        &self,
        request_id: &str,
        wait: Duration,
    ) -> Result<pb::Investment, ClientError> {
        let deadline = Instant::now() + wait;
        let mut delays = self.backoff();
        let mut last: Option<pb::Investment> = None;
        loop {
            let watched = tokio::time::timeout_at(deadline.into(), async {
                let leader = match self.leader_addr() {
                    Some(leader) => leader,
                    None => self.discover().await?,
                };
                let mut node = self.node(&leader)?;
                let mut stream = node
                    .admission
                    .watch_investment(pb::WatchInvestmentRequest {
                        request_id: request_id.to_owned(),
                    })
                    .await
                    .map_err(|status| self.note_failure(&status))?
                    .into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(update)) => {
                            let done = is_final(&update);
                            last = Some(update);
                            if done {
                                return Ok(true);
                            }
                        }
                        Ok(None) => return Ok(false),
                        Err(status) => return Err(self.note_failure(&status)),
                    }
                }
            })
            .await;
            match watched {
                Ok(Ok(true)) => return last.ok_or_else(|| ClientError::Unavailable("".into())),
                Ok(Err(error @ (ClientError::NotFound(_) | ClientError::InvalidArgument(_)))) => {
                    return Err(error)
                }
                Ok(_) => {}
                Err(_) => break,
            }
            match delays.next() {
                Some(delay) if Instant::now() + delay < deadline => tokio::time::sleep(delay).await,
                _ => break,
            }
        }
        Err(ClientError::NotFinal {
            request_id: request_id.to_owned(),
            status: last
                .map(|inv| status_of(&inv).as_str_name().to_owned())
                .unwrap_or_else(|| "unknown".into()),
        })
    }

    /// Turns a failed status into an error, forgetting the leader if it may be gone.
    fn note_failure(&self, status: &tonic::Status) -> ClientError {
        match classify(status) {
            Failure::Definite(error) => error,
            Failure::Retry {
                leader_hint,
                message,
                ..
            } => {
                *lock(&self.inner.leader) = leader_hint;
                ClientError::Unavailable(message)
            }
        }
    }

    /// One investment (linearizable read).
    pub async fn investment(&self, request_id: &str) -> Result<pb::Investment, ClientError> {
        let request = pb::GetInvestmentRequest {
            request_id: request_id.to_owned(),
            consistency: pb::Consistency::Linearizable as i32,
        };
        self.call(request, |mut node, request| async move {
            node.admission.get_investment(request).await
        })
        .await
    }

    /// Creates a deal. Creating it again with the same terms answers the deal (so a retry after
    /// a lost reply succeeds); with other terms, [`ClientError::Conflict`]. Past the deadline,
    /// [`ClientError::OperationOutcomeUnknown`] if the deal may have been created.
    pub async fn create_deal(
        &self,
        request: pb::CreateDealRequest,
    ) -> Result<pb::Deal, ClientError> {
        let operation = format!("CreateDeal {}", request.deal_id);
        self.write(&operation, request, |mut node, request| async move {
            node.admission.create_deal(request).await
        })
        .await
    }

    /// Closes a deal to new requests (again: no change); sagas in flight finish.
    pub async fn close_deal(&self, deal_id: &str) -> Result<pb::Deal, ClientError> {
        let request = pb::CloseDealRequest {
            deal_id: deal_id.to_owned(),
        };
        self.write(
            &format!("CloseDeal {deal_id}"),
            request,
            |mut node, request| async move { node.admission.close_deal(request).await },
        )
        .await
    }

    /// Takes a WAITLISTED request off its deal's waitlist (REJECTED(WAITLIST_CLOSED)); returns
    /// the investment as it is now.
    pub async fn withdraw(&self, request_id: &str) -> Result<pb::Investment, ClientError> {
        let request = pb::WithdrawRequest {
            request_id: request_id.to_owned(),
        };
        self.write(
            &format!("Withdraw {request_id}"),
            request,
            |mut node, request| async move { node.admission.withdraw(request).await },
        )
        .await
    }

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

    /// One deal with its counters (linearizable read).
    pub async fn deal(&self, deal_id: &str) -> Result<pb::Deal, ClientError> {
        let request = pb::GetDealRequest {
            deal_id: deal_id.to_owned(),
            consistency: pb::Consistency::Linearizable as i32,
        };
        self.call(request, |mut node, request| async move {
            node.admission.get_deal(request).await
        })
        .await
    }

    /// Every deal, all pages.
    pub async fn deals(&self) -> Result<Vec<pb::Deal>, ClientError> {
        all_pages(|page_token| async move {
            let request = pb::ListDealsRequest {
                page_size: PAGE_SIZE,
                page_token,
                consistency: pb::Consistency::Linearizable as i32,
            };
            let page = self
                .call(request, |mut node, request| async move {
                    node.admission.list_deals(request).await
                })
                .await?;
            Ok((page.deals, page.next_page_token))
        })
        .await
    }

    /// A deal's investments in decision order, all pages.
    pub async fn deal_investments(
        &self,
        deal_id: &str,
    ) -> Result<Vec<pb::Investment>, ClientError> {
        all_pages(|page_token| async move {
            let request = pb::ListInvestmentsRequest {
                deal_id: deal_id.to_owned(),
                page_size: PAGE_SIZE,
                page_token,
                consistency: pb::Consistency::Linearizable as i32,
            };
            let page = self
                .call(request, |mut node, request| async move {
                    node.admission.list_investments(request).await
                })
                .await?;
            Ok((page.investments, page.next_page_token))
        })
        .await
    }

    /// A user's active investments.
    pub async fn user(&self, user_id: &str) -> Result<pb::User, ClientError> {
        let request = pb::GetUserRequest {
            user_id: user_id.to_owned(),
            consistency: pb::Consistency::Linearizable as i32,
        };
        self.call(request, |mut node, request| async move {
            node.admission.get_user(request).await
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
    /// [`Client::add_learner_waiting`] with [`ClientConfig::deadline`].
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

/// A learner in the membership, and how far it had caught up when
/// [`Client::add_learner_waiting`] returned.
#[derive(Clone, Debug)]
pub struct LearnerAdded {
    /// The learner's id.
    pub node_id: u64,
    /// The log index of the membership entry that holds it.
    pub log_index: u64,
    /// The membership as the leader last reported it.
    pub members: Vec<pb::Member>,
    /// Whether the learner's log had reached [`LearnerAdded::catch_up_index`]. False means
    /// added and still catching up, not a failure: do not promote it yet.
    pub caught_up: bool,
    /// The last log index the leader knew the learner to hold.
    pub matched_index: u64,
    /// The leader's last log index when it last checked: what the learner has to reach.
    pub catch_up_index: u64,
}

impl LearnerAdded {
    fn new(node_id: u64, reply: pb::MembershipResponse) -> LearnerAdded {
        let matched_index = reply
            .members
            .iter()
            .find(|m| m.node_id == node_id)
            .map_or(0, |m| m.matched_index);
        LearnerAdded {
            node_id,
            log_index: reply.log_index,
            members: reply.members,
            caught_up: reply.caught_up,
            matched_index,
            catch_up_index: reply.catch_up_index,
        }
    }
}

/// Why [`Client::retrying`] gave up.
enum Exhausted {
    Definite(ClientError),
    TimedOut {
        waited: Duration,
        last_error: String,
        /// Some attempt may have taken effect (see [`classify`]).
        may_have_written: bool,
    },
}

impl Exhausted {
    /// For reads (and writes known not to have been written).
    fn into_unavailable(self) -> ClientError {
        match self {
            Exhausted::Definite(error) => error,
            Exhausted::TimedOut {
                waited, last_error, ..
            } => ClientError::Unavailable(format!("gave up after {waited:?}: {last_error}")),
        }
    }

    /// For an operator write: unknown unless every attempt is known to have written nothing.
    fn into_write_error(self, operation: &str) -> ClientError {
        match self {
            Exhausted::TimedOut {
                waited,
                last_error,
                may_have_written: true,
            } => ClientError::OperationOutcomeUnknown {
                operation: operation.to_owned(),
                waited,
                last_error,
            },
            Exhausted::TimedOut {
                waited, last_error, ..
            } => ClientError::Unavailable(format!(
                "{operation} not done, nothing was written; gave up after {waited:?}: {last_error}"
            )),
            Exhausted::Definite(error) => error,
        }
    }

    /// For a submission: always unknown past the deadline (see `docs/decisions.md`).
    fn into_outcome_unknown(self, request_id: &str) -> ClientError {
        match self {
            Exhausted::Definite(error) => error,
            Exhausted::TimedOut {
                waited, last_error, ..
            } => ClientError::OutcomeUnknown {
                request_id: request_id.to_owned(),
                waited,
                last_error,
            },
        }
    }
}

fn decision(reply: pb::SubmitResponse, attempts: u32) -> Result<Decision, ClientError> {
    let investment = reply.investment.ok_or_else(|| ClientError::Other {
        code: tonic::Code::Internal,
        message: "a Submit reply without its investment".into(),
    })?;
    Ok(Decision {
        investment,
        log_index: reply.log_index,
        offset: reply.offset,
        replayed: reply.replayed,
        attempts,
    })
}

/// Locks a mutex, recovering from poisoning (the data are plain addresses and channels).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Items per page when the client reads a whole listing.
const PAGE_SIZE: u32 = 1000;

/// Reads a listing to its end: `page(token)` returns one page's items and the next page's token,
/// empty after the last page.
async fn all_pages<T, F, Fut>(mut page: F) -> Result<Vec<T>, ClientError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), ClientError>>,
{
    let mut items = Vec::new();
    let mut page_token = String::new();
    loop {
        let (mut found, next) = page(page_token).await?;
        items.append(&mut found);
        if next.is_empty() {
            return Ok(items);
        }
        page_token = next;
    }
}

#[cfg(test)]
mod tests {
    //! The client against a fake `Cluster` service on loopback that answers every write with
    //! a chosen failure: what the caller is told once the deadline passes.

    use std::collections::VecDeque;
    use std::net::SocketAddr;

    use ledger_proto::pb::cluster_server::{Cluster, ClusterServer};
    use tonic::transport::server::TcpIncoming;
    use tonic::{Code, Request, Response, Status};

    use super::*;
    use crate::error::{NOT_PROPOSED, OUTCOME_KEY};

    /// How the fake answers one write.
    #[derive(Clone, Copy, Debug)]
    enum Answer {
        /// `UNAVAILABLE` with `x-ledger-outcome: <value>`, or without the key.
        Unavailable(Option<&'static str>),
        /// No answer within the client's attempt timeout.
        Hang,
    }

    struct Fake {
        addr: String,
        /// Answers to the writes, in turn; the last one repeats.
        answers: Mutex<VecDeque<Answer>>,
        /// What `Status` says, when not the default (node 1, leading, alone).
        status: Option<pb::StatusResponse>,
    }

    impl Fake {
        async fn fail(&self) -> Status {
            let answer = {
                let mut answers = lock(&self.answers);
                if answers.len() > 1 {
                    answers.pop_front()
                } else {
                    answers.front().copied()
                }
            };
            match answer.expect("an answer") {
                Answer::Unavailable(outcome) => {
                    let mut status = Status::unavailable("no luck");
                    if let Some(outcome) = outcome {
                        status
                            .metadata_mut()
                            .insert(OUTCOME_KEY, outcome.parse().unwrap());
                    }
                    status
                }
                Answer::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Status::internal("woke up")
                }
            }
        }
    }

    #[tonic::async_trait]
    impl Cluster for Fake {
        async fn status(
            &self,
            _: Request<pb::StatusRequest>,
        ) -> Result<Response<pb::StatusResponse>, Status> {
            if let Some(status) = &self.status {
                return Ok(Response::new(status.clone()));
            }
            Ok(Response::new(pb::StatusResponse {
                node_id: 1,
                leader_id: Some(1),
                members: vec![pb::Member {
                    node_id: 1,
                    addr: self.addr.clone(),
                    role: pb::MemberRole::Voter as i32,
                    matched_index: 0,
                }],
                ..Default::default()
            }))
        }
        async fn init(
            &self,
            _: Request<pb::InitRequest>,
        ) -> Result<Response<pb::InitResponse>, Status> {
            Err(self.fail().await)
        }
        async fn add_learner(
            &self,
            _: Request<pb::AddLearnerRequest>,
        ) -> Result<Response<pb::MembershipResponse>, Status> {
            Err(self.fail().await)
        }
        async fn change_membership(
            &self,
            _: Request<pb::ChangeMembershipRequest>,
        ) -> Result<Response<pb::MembershipResponse>, Status> {
            Err(self.fail().await)
        }
        async fn transfer_leader(
            &self,
            _: Request<pb::TransferLeaderRequest>,
        ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
            Err(self.fail().await)
        }
        async fn trigger_snapshot(
            &self,
            _: Request<pb::TriggerSnapshotRequest>,
        ) -> Result<Response<pb::TriggerSnapshotResponse>, Status> {
            Err(self.fail().await)
        }
        async fn list_sagas(
            &self,
            _: Request<pb::ListSagasRequest>,
        ) -> Result<Response<pb::ListSagasResponse>, Status> {
            Err(self.fail().await)
        }
        async fn compensate_saga(
            &self,
            _: Request<pb::CompensateSagaRequest>,
        ) -> Result<Response<pb::Investment>, Status> {
            Err(self.fail().await)
        }
        type ExportDealStream = tonic::codegen::BoxStream<pb::ExportDealPart>;
        async fn export_deal(
            &self,
            _: Request<pb::ExportDealRequest>,
        ) -> Result<Response<Self::ExportDealStream>, Status> {
            Err(self.fail().await)
        }
        async fn archive_deal(
            &self,
            _: Request<pb::ArchiveDealRequest>,
        ) -> Result<Response<pb::ArchiveDealResponse>, Status> {
            Err(self.fail().await)
        }
    }

    /// A client of a fake node answering `answers`, with a deadline of a fraction of a second.
    async fn client_of(answers: &[Answer]) -> Client {
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
        let addr = incoming.local_addr().expect("local address").to_string();
        let fake = Fake {
            addr: addr.clone(),
            answers: Mutex::new(answers.iter().copied().collect()),
            status: None,
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ClusterServer::new(fake))
                .serve_with_incoming(incoming),
        );
        Client::unconnected(quick([addr])).expect("client")
    }

    fn quick<S: Into<String>>(seeds: impl IntoIterator<Item = S>) -> ClientConfig {
        let mut config = ClientConfig::new(seeds);
        // An attempt of 100 ms was too short on a loaded 2-core machine (a debug build
        // answering late counts as "no answer": outcome unknown), seen once in a full run.
        config.deadline = Duration::from_millis(1_500);
        config.attempt_timeout = Duration::from_millis(500);
        config.backoff_min = Duration::from_millis(5);
        config.backoff_max = Duration::from_millis(20);
        config
    }

    /// A fake node at its own address answering `Status` with `status(addr)`.
    async fn node_saying(status: impl FnOnce(&str) -> pb::StatusResponse) -> String {
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
        let addr = incoming.local_addr().expect("local address").to_string();
        let fake = Fake {
            addr: addr.clone(),
            answers: Mutex::new(VecDeque::from([Answer::Hang])),
            status: Some(status(&addr)),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ClusterServer::new(fake))
                .serve_with_incoming(incoming),
        );
        addr
    }

    /// Postmortem (found by jepsen/tests/partitioned_leader_sagas.rs): a leader cut off from its
    /// peers still says it leads, and discovery took the first node that named a leader, so a
    /// client that could reach the old leader kept reading from it (refused: no quorum) while a
    /// new leader served the others. The leader of the highest term wins now.
    #[tokio::test]
    async fn discovery_prefers_the_leader_of_the_highest_term() {
        let member = |node_id: u64, addr: &str| pb::Member {
            node_id,
            addr: addr.to_owned(),
            role: pb::MemberRole::Voter as i32,
            matched_index: 0,
        };
        let new_leader = node_saying(|addr| pb::StatusResponse {
            node_id: 3,
            leader_id: Some(3),
            term: 2,
            members: vec![member(3, addr)],
            ..Default::default()
        })
        .await;
        let old = new_leader.clone();
        let old_leader = node_saying(move |addr| pb::StatusResponse {
            node_id: 1,
            leader_id: Some(1),
            term: 1,
            members: vec![member(1, addr), member(3, &old)],
            ..Default::default()
        })
        .await;
        // The old leader first, as a seed list or a member list may well put it.
        let client =
            Client::unconnected(quick([old_leader.clone(), new_leader.clone()])).expect("client");
        assert_eq!(client.discover().await.expect("a leader"), new_leader);
    }

    async fn compensate(answers: &[Answer]) -> ClientError {
        let client = client_of(answers).await;
        client
            .compensate_saga("4b5e2d0c-6f1e-4c1a-9a57-6c0b8c3b1f2e", "test")
            .await
            .expect_err("every attempt fails")
    }

    #[tokio::test]
    async fn a_write_only_refused_before_proposing_is_unavailable() {
        let error = compensate(&[Answer::Unavailable(Some(NOT_PROPOSED))]).await;
        assert!(matches!(error, ClientError::Unavailable(_)), "{error:?}");
    }

    #[tokio::test]
    async fn a_write_that_may_have_been_proposed_has_an_unknown_outcome_naming_it() {
        let cases: [&[Answer]; 4] = [
            // The node says so.
            &[Answer::Unavailable(Some("unknown"))],
            // No marker (a broken connection, a forwarding node, a proxy): proves nothing.
            &[Answer::Unavailable(None)],
            // No answer in time: the request may be waiting for its entry to commit.
            &[Answer::Hang],
            // Once an attempt may have written, later "not proposed" refusals do not undo it.
            &[
                Answer::Unavailable(Some("unknown")),
                Answer::Unavailable(Some(NOT_PROPOSED)),
            ],
        ];
        for answers in cases {
            match compensate(answers).await {
                ClientError::OperationOutcomeUnknown { operation, .. } => assert_eq!(
                    operation, "CompensateSaga 4b5e2d0c-6f1e-4c1a-9a57-6c0b8c3b1f2e",
                    "{answers:?}"
                ),
                other => panic!("{answers:?}: expected an unknown outcome, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn every_operator_write_reports_its_unknown_outcome_and_reads_stay_unavailable() {
        let client = client_of(&[Answer::Unavailable(Some("unknown"))]).await;
        let unknown = |result: Result<(), ClientError>, name: &str| match result {
            Err(ClientError::OperationOutcomeUnknown { operation, .. }) => {
                assert!(operation.starts_with(name), "{operation}")
            }
            other => panic!("{name}: expected an unknown outcome, got {other:?}"),
        };
        unknown(
            client.add_learner(4, "127.0.0.1:1").await.map(|_| ()),
            "AddLearner 4",
        );
        unknown(
            client.change_membership(&[1, 2], false).await.map(|_| ()),
            "ChangeMembership",
        );
        unknown(
            client.transfer_leader(2).await.map(|_| ()),
            "TransferLeader",
        );
        unknown(client.init(&[(1, "x:1".into())]).await, "Init");
        let read = client.list_sagas(None, false, 10).await;
        assert!(
            matches!(read, Err(ClientError::Unavailable(_))),
            "a read changes nothing: {read:?}"
        );
    }

    #[tokio::test]
    async fn a_connection_never_established_wrote_nothing() {
        // A port with nobody listening: every attempt fails to connect.
        let closed: SocketAddr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("local address")
        };
        let client = Client::unconnected(quick([closed.to_string()])).expect("client");
        let error = client
            .trigger_snapshot(&closed.to_string())
            .await
            .expect_err("nobody listens");
        assert!(matches!(error, ClientError::Unavailable(_)), "{error:?}");

        // The same, one status at a time.
        let mut node = client.node(&closed.to_string()).expect("channel");
        let status = node
            .cluster
            .trigger_snapshot(pb::TriggerSnapshotRequest {})
            .await
            .expect_err("nobody listens");
        assert_eq!(status.code(), Code::Unavailable);
        assert!(matches!(
            classify(&status),
            Failure::Retry {
                may_have_written: false,
                ..
            }
        ));
    }
}
