//! The client against a fake `Cluster` service on loopback that answers every write with
//! a chosen failure: what the caller is told once the deadline passes.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use ledger_proto::pb;
use ledger_proto::pb::cluster_server::{Cluster, ClusterServer};
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

use super::*;
use crate::error::{classify, Failure, NOT_PROPOSED, OUTCOME_KEY, RETRY_PUSHBACK_KEY};

/// How the fake answers one write.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// `UNAVAILABLE` with `x-ledger-outcome: <value>`, or without the key.
    Unavailable(Option<&'static str>),
    /// `RESOURCE_EXHAUSTED` (an overloaded node), marked as `Unavailable` is.
    Overloaded(Option<&'static str>),
    /// `RESOURCE_EXHAUSTED`, "not proposed", asking for this many ms before the next attempt.
    PushBack(u64),
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
            Answer::Unavailable(outcome) | Answer::Overloaded(outcome) => {
                let mut status = match answer {
                    Some(Answer::Overloaded(_)) => Status::resource_exhausted("queue full"),
                    _ => Status::unavailable("no luck"),
                };
                if let Some(outcome) = outcome {
                    status
                        .metadata_mut()
                        .insert(OUTCOME_KEY, outcome.parse().unwrap());
                }
                status
            }
            Answer::PushBack(millis) => {
                let mut status = Status::resource_exhausted("queue full");
                status
                    .metadata_mut()
                    .insert(OUTCOME_KEY, NOT_PROPOSED.parse().unwrap());
                status
                    .metadata_mut()
                    .insert(RETRY_PUSHBACK_KEY, millis.into());
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
    async fn trace_investment(
        &self,
        _: Request<pb::TraceInvestmentRequest>,
    ) -> Result<Response<pb::InvestmentTrace>, Status> {
        Err(self.fail().await)
    }
    type SaveSnapshotStream = tonic::codegen::BoxStream<pb::BackupChunk>;
    async fn save_snapshot(
        &self,
        _: Request<pb::SaveSnapshotRequest>,
    ) -> Result<Response<Self::SaveSnapshotStream>, Status> {
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
    client_of_with(answers, |_| {}).await
}

/// [`client_of`], its configuration changed by `change`.
async fn client_of_with(answers: &[Answer], change: impl FnOnce(&mut ClientConfig)) -> Client {
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
    let mut config = quick([addr]);
    change(&mut config);
    Client::unconnected(config).expect("client")
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

/// Back-pressure: a call whose attempts were refused for lack of room, none of them possibly
/// written, is `Overloaded` (nothing written, send it again later); `max_attempts` ends the
/// call at its first refusal rather than at the deadline.
#[tokio::test]
async fn refusals_for_lack_of_room_are_an_overload_and_max_attempts_stops_early() {
    let full = Answer::Overloaded(Some(NOT_PROPOSED));
    let error = compensate(&[full]).await;
    assert!(matches!(error, ClientError::Overloaded(_)), "{error:?}");
    assert_eq!(error.code_name(), "RESOURCE_EXHAUSTED");

    // One attempt: the refusal is the answer; the next answer (which would make the outcome
    // unknown) is never asked for.
    let then_unknown = [full, Answer::Unavailable(Some("unknown"))];
    let client = client_of_with(&then_unknown, |config| config.max_attempts = Some(1)).await;
    let error = client
        .compensate_saga("4b5e2d0c-6f1e-4c1a-9a57-6c0b8c3b1f2e", "test")
        .await
        .expect_err("refused");
    assert!(matches!(error, ClientError::Overloaded(_)), "{error:?}");
    // Until the deadline, the second attempt's "unknown" decides.
    let error = compensate(&then_unknown).await;
    assert!(
        matches!(error, ClientError::OperationOutcomeUnknown { .. }),
        "{error:?}"
    );
    // The refusing node answered: it stays the leader, so the next call does not wait for
    // discovery. A node that is merely unavailable is forgotten.
    let client = client_of_with(&[full], |config| config.max_attempts = Some(1)).await;
    let _ = client
        .compensate_saga("4b5e2d0c-6f1e-4c1a-9a57-6c0b8c3b1f2e", "test")
        .await
        .expect_err("refused");
    assert!(client.leader_addr().is_some(), "the leader was forgotten");
    let gone = [Answer::Unavailable(Some(NOT_PROPOSED))];
    let client = client_of_with(&gone, |config| config.max_attempts = Some(1)).await;
    let _ = client
        .compensate_saga("4b5e2d0c-6f1e-4c1a-9a57-6c0b8c3b1f2e", "test")
        .await
        .expect_err("unavailable");
    assert!(
        client.leader_addr().is_none(),
        "an unavailable leader is forgotten"
    );
    // An unmarked refusal (a proxy, an older node) proves nothing.
    let error = compensate(&[Answer::Overloaded(None)]).await;
    assert!(
        matches!(error, ClientError::OperationOutcomeUnknown { .. }),
        "{error:?}"
    );
    // The overload budget (10 tokens, retries while more than 5 are left) ends the call at
    // the 5th refusal, long before the deadline: the 6th answer is never asked for. Without a
    // budget it is.
    let five_then_unknown = [
        full,
        full,
        full,
        full,
        full,
        Answer::Unavailable(Some("unknown")),
    ];
    let error = compensate(&five_then_unknown).await;
    assert!(matches!(error, ClientError::Overloaded(_)), "{error:?}");
    let unbudgeted = client_of_with(&five_then_unknown, |c| c.overload_retries = None).await;
    let error = unbudgeted
        .compensate_saga("4b5e2d0c-6f1e-4c1a-9a57-6c0b8c3b1f2e", "test")
        .await
        .expect_err("unknown");
    assert!(
        matches!(error, ClientError::OperationOutcomeUnknown { .. }),
        "{error:?}"
    );
    // An earlier attempt that may have written is not undone by a later refusal.
    let error = compensate(&[Answer::Unavailable(Some("unknown")), full]).await;
    assert!(
        matches!(error, ClientError::OperationOutcomeUnknown { .. }),
        "{error:?}"
    );
}

/// Server pushback: the next attempt waits at least as long as the node asked (far longer than
/// the test's backoff of 5-20 ms), and a wait that would pass the deadline ends the call at
/// once as the overload it is.
#[tokio::test]
async fn a_refusal_that_asks_for_a_wait_gets_it_within_the_deadline() {
    let refused_then_unknown = [Answer::PushBack(400), Answer::Unavailable(Some("unknown"))];
    let started = Instant::now();
    let error = compensate(&refused_then_unknown).await;
    assert!(
        matches!(error, ClientError::OperationOutcomeUnknown { .. }),
        "the second attempt was made: {error:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "after the 400 ms asked for: {:?}",
        started.elapsed()
    );

    // 5 s asked for, 1.5 s of deadline: no second attempt, no waiting for the deadline.
    let started = Instant::now();
    let error = compensate(&[
        Answer::PushBack(5_000),
        Answer::Unavailable(Some("unknown")),
    ])
    .await;
    assert!(matches!(error, ClientError::Overloaded(_)), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "given up before the deadline: {:?}",
        started.elapsed()
    );
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
