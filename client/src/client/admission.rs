//! The `Admission` service: submissions (retried with the same request id), watches, deals,
//! investments and users.

use std::time::{Duration, Instant};

use ledger_proto::pb;

use super::retry::Route;
use super::{is_final, status_of, Client, Decision, Submission};
use crate::error::{classify, ClientError, Failure};

impl Client {
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
