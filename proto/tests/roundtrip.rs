//! Every main message survives a prost encode/decode round trip with its fields intact,
//! including `optional` fields (present and absent), enums, repeated fields and the oneof.

use ledger_proto::pb::{
    submit_batch_result, AddLearnerRequest, ChangeMembershipRequest, CompensateSagaRequest,
    CreateDealRequest, Deal, ExecutorStatus, GetInvestmentRequest, GetUserRequest, InitRequest,
    Investment, ListDealsRequest, ListDealsResponse, ListInvestmentsRequest,
    ListInvestmentsResponse, ListSagasRequest, ListSagasResponse, Member, MemberAddr,
    MembershipResponse, RaftReply, RaftRequest, Receipt, RequestError, StatusResponse,
    SubmitBatchRequest, SubmitBatchResponse, SubmitBatchResult, SubmitRequest, SubmitResponse,
    TransferLeaderRequest, TriggerSnapshotResponse, User,
};
use ledger_proto::{
    CancelCause, Consistency, DealStatus, InvestmentStatus, MemberRole, RejectReason, SagaStep,
    WriteOutcome,
};
use prost::Message;

/// Encodes `msg`, decodes it back, asserts equality and returns the decoded copy.
fn roundtrip<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M) -> M {
    let bytes = msg.encode_to_vec();
    let back = M::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(&back, msg);
    back
}

fn deal() -> Deal {
    Deal {
        deal_id: "deal-1".into(),
        amount: "1000000.00".into(),
        max_investors: 200,
        min_ticket: Some("100.00".into()),
        max_ticket: None,
        status: DealStatus::Open as i32,
        investor_count: 3,
        reserved_amount: "30000.00".into(),
        confirmed_count: 1,
        confirmed_amount: "10000.00".into(),
        created_at_ms: 1_700_000_000_123,
        opens_at_ms: Some(1_700_000_000_000),
        closes_at_ms: None,
        max_waitlist: 1_000,
        waitlist_length: 4,
        receipt_head: Some(Receipt {
            deal_seq: 3,
            hash: vec![7; 32],
        }),
        closed_log_index: 40,
        closed_offset: 1,
    }
}

fn investment() -> Investment {
    Investment {
        request_id: "0b5e2d0c-6f1e-4c1a-9a57-6c0b8c3b1f2e".into(),
        deal_id: "deal-1".into(),
        user_id: "user-7".into(),
        amount: "25000.50".into(),
        status: InvestmentStatus::Cancelled as i32,
        reject_reason: RejectReason::Unspecified as i32,
        log_index: 42,
        offset: 7,
        saga_step: SagaStep::Notify as i32,
        decided_at_ms: 1_700_000_000_000,
        updated_at_ms: 1_700_000_005_000,
        attempts: 3,
        last_error: "documents: 503".into(),
        cancel_cause: CancelCause::DocumentsFailed as i32,
        executor: Some(2),
        epoch: 5,
        deadline_ms: 1_700_000_300_000,
        payment_id: "pay_1".into(),
        document_id: String::new(),
        message_id: "msg_9".into(),
        notify_failed: true,
        refunded: true,
        cancelled_log_index: 0,
        cancelled_offset: 0,
        waitlist_position: 0,
        waitlist: true,
        waitlist_ttl_ms: Some(60_000),
        waitlisted: true,
        admitted_log_index: 40,
        admitted_offset: 2,
        receipt: Some(Receipt {
            deal_seq: 2,
            hash: vec![9; 32],
        }),
        waitlist_ended_log_index: 0,
        waitlist_ended_offset: 0,
        decided_by: 3,
    }
}

fn submit() -> SubmitRequest {
    SubmitRequest {
        request_id: "0b5e2d0c-6f1e-4c1a-9a57-6c0b8c3b1f2e".into(),
        deal_id: "deal-1".into(),
        user_id: "user-7".into(),
        amount: "25000.50".into(),
        waitlist: false,
        waitlist_ttl_ms: None,
    }
}

#[test]
fn deal_messages_roundtrip() {
    let create = CreateDealRequest {
        deal_id: "deal-1".into(),
        amount: "1000000.00".into(),
        max_investors: 0,
        min_ticket: None,
        max_ticket: Some("50000.00".into()),
        opens_at_ms: None,
        closes_at_ms: None,
        max_waitlist: 0,
    };
    let back = roundtrip(&create);
    assert_eq!(back.min_ticket, None);
    assert_eq!(back.max_ticket.as_deref(), Some("50000.00"));

    // An explicitly present empty optional string is distinguishable from an absent one.
    let present_empty = CreateDealRequest {
        min_ticket: Some(String::new()),
        ..create.clone()
    };
    assert_eq!(
        roundtrip(&present_empty).min_ticket.as_deref(),
        Some(""),
        "proto3 optional keeps presence"
    );
    assert_ne!(present_empty.encode_to_vec(), create.encode_to_vec());

    let back = roundtrip(&deal());
    assert_eq!(back.status(), DealStatus::Open);
    assert_eq!(back.min_ticket.as_deref(), Some("100.00"));
    assert_eq!(back.max_ticket, None);
    assert_eq!(back.created_at_ms, 1_700_000_000_123);

    let list = ListDealsResponse {
        deals: vec![
            deal(),
            Deal {
                status: DealStatus::Closed as i32,
                ..deal()
            },
        ],
        next_page_token: "tok".into(),
    };
    let back = roundtrip(&list);
    assert_eq!(back.deals[1].status(), DealStatus::Closed);

    let req = ListDealsRequest {
        page_size: 10,
        page_token: "tok".into(),
        consistency: Consistency::Stale as i32,
    };
    assert_eq!(roundtrip(&req).consistency(), Consistency::Stale);
}

#[test]
fn investment_messages_roundtrip() {
    let back = roundtrip(&investment());
    assert_eq!(back.status(), InvestmentStatus::Cancelled);
    assert_eq!(back.saga_step(), SagaStep::Notify);
    assert_eq!(back.cancel_cause(), CancelCause::DocumentsFailed);
    assert_eq!(back.executor, Some(2));
    assert!(back.notify_failed && back.refunded);

    let rejected = Investment {
        status: InvestmentStatus::Rejected as i32,
        reject_reason: RejectReason::AmountExceedsRemaining as i32,
        saga_step: SagaStep::Unspecified as i32,
        cancel_cause: CancelCause::Unspecified as i32,
        executor: None,
        ..investment()
    };
    let back = roundtrip(&rejected);
    assert_eq!(back.reject_reason(), RejectReason::AmountExceedsRemaining);
    assert_eq!(back.executor, None);

    // Executor 0 is present, not absent.
    let zero = Investment {
        executor: Some(0),
        ..investment()
    };
    assert_eq!(roundtrip(&zero).executor, Some(0));

    let list = ListInvestmentsResponse {
        investments: vec![investment(), rejected.clone()],
        next_page_token: String::new(),
    };
    assert_eq!(roundtrip(&list).investments.len(), 2);

    let user = User {
        user_id: "user-7".into(),
        pending: vec![investment()],
        confirmed: vec![rejected, investment()],
        waitlisted: vec![investment()],
    };
    let back = roundtrip(&user);
    assert_eq!(
        (
            back.pending.len(),
            back.confirmed.len(),
            back.waitlisted.len()
        ),
        (1, 2, 1)
    );

    roundtrip(&GetInvestmentRequest {
        request_id: "0b5e2d0c-6f1e-4c1a-9a57-6c0b8c3b1f2e".into(),
        consistency: Consistency::Stale as i32,
    });
    roundtrip(&ListInvestmentsRequest {
        deal_id: "deal-1".into(),
        page_size: 50,
        page_token: "abc".into(),
        consistency: Consistency::Linearizable as i32,
    });
    roundtrip(&GetUserRequest {
        user_id: "user-7".into(),
        consistency: Consistency::Stale as i32,
    });
}

#[test]
fn submit_messages_and_batch_oneof_roundtrip() {
    let back = roundtrip(&submit());
    assert_eq!(back.amount, "25000.50");

    let response = SubmitResponse {
        investment: Some(investment()),
        log_index: 42,
        offset: 7,
        replayed: true,
    };
    let back = roundtrip(&response);
    assert!(back.replayed);
    assert_eq!(back.investment.as_ref().map(|i| i.log_index), Some(42));

    let batch = SubmitBatchRequest {
        requests: vec![submit(), submit()],
    };
    assert_eq!(roundtrip(&batch).requests.len(), 2);

    let error = RequestError {
        code: tonic::Code::InvalidArgument as u32,
        message: "amount: has more than 2 fraction digits".into(),
        field: "amount".into(),
        outcome: WriteOutcome::Unspecified as i32,
    };
    let unknown = roundtrip(&RequestError {
        code: tonic::Code::Unavailable as u32,
        message: "outcome unknown".into(),
        field: String::new(),
        outcome: WriteOutcome::Unknown as i32,
    });
    assert_eq!(unknown.outcome(), WriteOutcome::Unknown);
    let results = SubmitBatchResponse {
        responses: vec![
            SubmitBatchResult {
                result: Some(submit_batch_result::Result::Response(response.clone())),
            },
            SubmitBatchResult {
                result: Some(submit_batch_result::Result::Error(error.clone())),
            },
            SubmitBatchResult { result: None },
        ],
    };
    let back = roundtrip(&results);
    match &back.responses[0].result {
        Some(submit_batch_result::Result::Response(r)) => assert_eq!(r, &response),
        other => panic!("expected a response, got {other:?}"),
    }
    match &back.responses[1].result {
        Some(submit_batch_result::Result::Error(e)) => {
            assert_eq!(e, &error);
            assert_eq!(
                tonic::Code::from(e.code as i32),
                tonic::Code::InvalidArgument
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(back.responses[2].result, None);
}

#[test]
fn cluster_and_raft_messages_roundtrip() {
    let member = Member {
        node_id: 3,
        addr: "127.0.0.1:7003".into(),
        role: MemberRole::Learner as i32,
        matched_index: 99,
    };
    let status = StatusResponse {
        node_id: 1,
        leader_id: Some(2),
        term: 4,
        last_log_index: 100,
        committed_index: 99,
        applied_index: 98,
        state_digest: "ab".repeat(32),
        members: vec![
            Member {
                node_id: 1,
                addr: "127.0.0.1:7001".into(),
                role: MemberRole::Voter as i32,
                matched_index: 0,
            },
            member.clone(),
        ],
        executors: vec![ExecutorStatus {
            node_id: 1,
            live: true,
            last_heartbeat_ms: 1_700_000_000_000,
            open_sagas: 12,
        }],
        role: "follower".into(),
        snapshot_index: 50,
        purged_index: 40,
    };
    let back = roundtrip(&status);
    assert_eq!(back.leader_id, Some(2));
    assert_eq!(back.members[1].role(), MemberRole::Learner);
    let no_leader = StatusResponse {
        leader_id: None,
        ..status
    };
    assert_eq!(roundtrip(&no_leader).leader_id, None);

    roundtrip(&InitRequest {
        members: vec![
            MemberAddr {
                node_id: 1,
                addr: "127.0.0.1:7001".into(),
            },
            MemberAddr {
                node_id: 2,
                addr: "127.0.0.1:7002".into(),
            },
        ],
    });
    let add = roundtrip(&AddLearnerRequest {
        node_id: 3,
        addr: "127.0.0.1:7003".into(),
        catch_up_wait_ms: 5_000,
    });
    assert_eq!(add.catch_up_wait_ms, 5_000);
    let change = roundtrip(&ChangeMembershipRequest {
        voters: vec![1, 2, 3],
        retain: true,
    });
    assert_eq!(change.voters, [1, 2, 3]);
    let membership = roundtrip(&MembershipResponse {
        members: vec![member],
        log_index: 101,
        changed: false,
        catch_up_index: 120,
        caught_up: true,
    });
    assert!(!membership.changed && membership.caught_up);
    assert_eq!(membership.catch_up_index, 120);
    roundtrip(&TransferLeaderRequest { to: 2 });
    roundtrip(&TriggerSnapshotResponse { snapshot_index: 77 });

    let list = roundtrip(&ListSagasRequest {
        older_than_ms: 60_000,
        failing_only: true,
        limit: 500,
        consistency: Consistency::Stale as i32,
    });
    assert_eq!(list.consistency(), Consistency::Stale);
    let sagas = roundtrip(&ListSagasResponse {
        sagas: vec![investment(), Investment::default()],
        open_total: 1_234,
        now_ms: 1_700_000_060_000,
    });
    assert_eq!(sagas.sagas[0].saga_step(), SagaStep::Notify);
    roundtrip(&CompensateSagaRequest {
        request_id: "0b5e2d0c-6f1e-4c1a-9a57-6c0b8c3b1f2e".into(),
        reason: "payment partner stuck since 10:02".into(),
    });

    let request = RaftRequest {
        payload: vec![0, 1, 2, 255],
        cluster_id: "prod-eu".into(),
        target_node_id: 3,
        sender_node_id: 1,
    };
    let back = roundtrip(&request);
    assert_eq!(back.payload, [0, 1, 2, 255]);
    assert_eq!((back.target_node_id, back.sender_node_id), (3, 1));
    let reply = RaftReply {
        payload: vec![9; 1024],
        error: "higher vote".into(),
        clock_ms: 1_795_000_000_000,
    };
    let back = roundtrip(&reply);
    assert_eq!(back.error, "higher vote");
    assert_eq!(back.clock_ms, 1_795_000_000_000);
}

#[test]
fn defaults_and_enum_numbers_are_pinned() {
    // LINEARIZABLE is the proto3 default: an unset field reads as it.
    let req = GetInvestmentRequest::decode(&[][..]).expect("empty message decodes");
    assert_eq!(req.consistency(), Consistency::Linearizable);
    let req = ListSagasRequest::decode(&[][..]).expect("empty message decodes");
    assert_eq!(req.consistency(), Consistency::Linearizable);
    assert_eq!(Consistency::Linearizable as i32, 0);
    assert_eq!(Consistency::Stale as i32, 1);

    assert_eq!(InvestmentStatus::Pending as i32, 1);
    assert_eq!(InvestmentStatus::Confirmed as i32, 2);
    assert_eq!(InvestmentStatus::Cancelled as i32, 3);
    assert_eq!(InvestmentStatus::Rejected as i32, 4);
    assert_eq!(DealStatus::Open as i32, 1);
    assert_eq!(DealStatus::Closed as i32, 2);
    assert_eq!(RejectReason::DealNotFound as i32, 1);
    assert_eq!(RejectReason::DealClosed as i32, 2);
    assert_eq!(RejectReason::TicketOutOfRange as i32, 3);
    assert_eq!(RejectReason::DuplicateInvestor as i32, 4);
    assert_eq!(RejectReason::InvestorLimitReached as i32, 5);
    assert_eq!(RejectReason::AmountExceedsRemaining as i32, 6);
    assert_eq!(SagaStep::Payment as i32, 1);
    assert_eq!(SagaStep::Documents as i32, 2);
    assert_eq!(SagaStep::Void as i32, 3);
    assert_eq!(SagaStep::Notify as i32, 4);
    assert_eq!(SagaStep::Done as i32, 5);
    assert_eq!(CancelCause::PaymentDeclined as i32, 1);
    assert_eq!(CancelCause::DocumentsFailed as i32, 2);
    assert_eq!(CancelCause::DeadlineExceeded as i32, 3);
    assert_eq!(CancelCause::Aborted as i32, 4);
    assert_eq!(MemberRole::Voter as i32, 1);
    assert_eq!(MemberRole::Learner as i32, 2);

    // The names used in the API text match the state machine's `as_str` spellings.
    assert_eq!(
        RejectReason::TicketOutOfRange.as_str_name(),
        "TICKET_OUT_OF_RANGE"
    );
    assert_eq!(InvestmentStatus::Pending.as_str_name(), "PENDING");
    assert_eq!(CancelCause::Aborted.as_str_name(), "ABORTED");

    // An unknown enum number from a newer peer is kept as a number and reads as the default.
    let future = Investment {
        status: 99,
        ..Investment::default()
    };
    let back = roundtrip(&future);
    assert_eq!(back.status, 99);
    assert_eq!(back.status(), InvestmentStatus::Unspecified);
}
