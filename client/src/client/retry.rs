//! A call's attempts: where each goes, backoff, the per-attempt timeout and the overall deadline,
//! leader hints, and what the caller is told when time runs out (whether anything may have been
//! written).

use std::future::Future;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use super::{lock, Client, Services};
use crate::error::{classify, ClientError, Failure};

/// Where a call goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// The leader (writes, linearizable reads): fewer hops than a forward by a follower.
    Leader,
    /// One particular node.
    Node,
}

impl Client {
    pub(super) fn backoff(&self) -> impl Iterator<Item = Duration> {
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
    pub(super) async fn retrying<R, T, F, Fut>(
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
    pub(super) async fn retrying_until<R, T, F, Fut>(
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
            // Whether this attempt was refused for lack of room, before anything was proposed,
            // and if so whether the overload budget allows retrying it.
            let mut overloaded = false;
            let mut budget_left = true;
            // The node's suggested wait before the next attempt, if it gave one.
            let mut pushed_back = None;
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
                        Ok(Ok(reply)) => {
                            self.inner.overload_budget.answered();
                            return Ok((reply.into_inner(), attempts));
                        }
                        Ok(Err(status)) => match classify(&status) {
                            Failure::Definite(error) => {
                                self.inner.overload_budget.answered();
                                return Err(Exhausted::Definite(error));
                            }
                            Failure::Retry {
                                leader_hint,
                                message,
                                may_have_written: written,
                                stream_refused,
                                pushback,
                            } => {
                                pushed_back = pushback;
                                overloaded = stream_refused
                                    || status.code() == tonic::Code::ResourceExhausted && !written;
                                // A refused stream is the connection's first round trip
                                // (hyper then learns the node's stream limit and queues
                                // instead), not the node shedding: retried like gRPC's
                                // transparent retries, outside the budget, at the same leader.
                                if overloaded && !stream_refused {
                                    budget_left = self.inner.overload_budget.refused();
                                }
                                may_have_written |= written;
                                // Follow the hint, or forget a leader that failed us; but a
                                // node refusing for lack of room is there and answering, and
                                // forgetting it sent the next call to discovery, which on a
                                // swamped cluster timed out: with one attempt, a submission
                                // never sent ended "unknown" (scripts/overload.sh, the bench's
                                // error samples, 2026-12-07).
                                if route == Route::Leader && !overloaded {
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
            let attempts_left = self
                .inner
                .config
                .max_attempts
                .is_none_or(|max| attempts < max)
                && budget_left;
            match delays
                .next()
                .map(|delay| delay.max(pushed_back.unwrap_or_default()))
            {
                Some(delay) if attempts_left && Instant::now() + delay + shortest <= deadline => {
                    tokio::time::sleep(delay).await
                }
                _ => {
                    return Err(Exhausted::TimedOut {
                        waited: started.elapsed(),
                        attempts,
                        last_error: message,
                        may_have_written,
                        overloaded: overloaded && !may_have_written,
                    })
                }
            }
        }
    }

    /// [`Client::retrying`] on the leader for a read: past the deadline, "unavailable".
    pub(super) async fn call<R, T, F, Fut>(&self, request: R, call: F) -> Result<T, ClientError>
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
    pub(super) async fn write<R, T, F, Fut>(
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

    /// Turns a failed status into an error, forgetting the leader if it may be gone.
    pub(super) fn note_failure(&self, status: &tonic::Status) -> ClientError {
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
}

/// Why [`Client::retrying`] gave up.
pub(super) enum Exhausted {
    Definite(ClientError),
    TimedOut {
        waited: Duration,
        last_error: String,
        /// Attempts made.
        attempts: u32,
        /// Some attempt may have taken effect (see [`classify`]).
        may_have_written: bool,
        /// The last attempt was refused for lack of room, and none may have written.
        overloaded: bool,
    },
}

impl Exhausted {
    /// The last attempt refused for lack of room and none may have written:
    /// [`ClientError::Overloaded`], whatever the call; else `self`.
    fn overloaded(self) -> Result<ClientError, Exhausted> {
        match self {
            Exhausted::TimedOut {
                waited,
                attempts,
                last_error,
                overloaded: true,
                ..
            } => Ok(ClientError::Overloaded(format!(
                "gave up after {attempts} attempts in {waited:?}: {last_error}"
            ))),
            other => Err(other),
        }
    }

    /// For reads (and writes known not to have been written).
    pub(super) fn into_unavailable(self) -> ClientError {
        match self.overloaded() {
            Ok(overloaded) => overloaded,
            Err(Exhausted::Definite(error)) => error,
            Err(Exhausted::TimedOut {
                waited, last_error, ..
            }) => ClientError::Unavailable(format!("gave up after {waited:?}: {last_error}")),
        }
    }

    /// For an operator write: unknown unless every attempt is known to have written nothing.
    pub(super) fn into_write_error(self, operation: &str) -> ClientError {
        match self.overloaded() {
            Ok(overloaded) => overloaded,
            Err(Exhausted::TimedOut {
                waited,
                last_error,
                may_have_written: true,
                ..
            }) => ClientError::OperationOutcomeUnknown {
                operation: operation.to_owned(),
                waited,
                last_error,
            },
            Err(Exhausted::TimedOut {
                waited, last_error, ..
            }) => ClientError::Unavailable(format!(
                "{operation} not done, nothing was written; gave up after {waited:?}: {last_error}"
            )),
            Err(Exhausted::Definite(error)) => error,
        }
    }

    /// For a submission: unknown past the deadline (see `docs/decisions.md`), unless every
    /// attempt was refused for lack of room.
    pub(super) fn into_outcome_unknown(self, request_id: &str) -> ClientError {
        match self.overloaded() {
            Ok(overloaded) => overloaded,
            Err(Exhausted::Definite(error)) => error,
            Err(Exhausted::TimedOut {
                waited, last_error, ..
            }) => ClientError::OutcomeUnknown {
                request_id: request_id.to_owned(),
                waited,
                last_error,
            },
        }
    }
}
