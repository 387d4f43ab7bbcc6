//! `FILE_DESCRIPTOR_SET` decodes and describes exactly the public contract: the three services
//! with their methods, and the messages and enums with their field names and numbers. A rename or
//! renumbering in a `.proto` file breaks this test on purpose.

use std::collections::BTreeMap;

use ledger_proto::FILE_DESCRIPTOR_SET;
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet, ServiceDescriptorProto};

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("FILE_DESCRIPTOR_SET decodes")
}

fn services() -> BTreeMap<String, ServiceDescriptorProto> {
    let mut out = BTreeMap::new();
    for file in descriptor_set().file {
        let package = file.package().to_owned();
        for service in file.service {
            out.insert(format!("{package}.{}", service.name()), service);
        }
    }
    out
}

fn messages() -> BTreeMap<String, DescriptorProto> {
    let mut out = BTreeMap::new();
    for file in descriptor_set().file {
        let package = file.package().to_owned();
        for message in file.message_type {
            out.insert(format!("{package}.{}", message.name()), message);
        }
    }
    out
}

#[test]
fn files_are_the_three_admission_v1_protos() {
    let set = descriptor_set();
    let mut names: Vec<_> = set.file.iter().map(|f| f.name().to_owned()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "admission/v1/admission.proto",
            "admission/v1/cluster.proto",
            "admission/v1/raft.proto"
        ]
    );
    for file in &set.file {
        assert_eq!(file.package(), "admission.v1", "{}", file.name());
        assert_eq!(file.syntax(), "proto3", "{}", file.name());
    }
}

/// (method, input, output, server streaming)
type Method = (&'static str, &'static str, &'static str, bool);

#[test]
fn services_and_methods_match_the_contract() {
    let expected: [(&str, &[Method]); 3] = [
        (
            "admission.v1.Admission",
            &[
                ("CreateDeal", "CreateDealRequest", "Deal", false),
                ("CloseDeal", "CloseDealRequest", "Deal", false),
                ("GetDeal", "GetDealRequest", "Deal", false),
                ("ListDeals", "ListDealsRequest", "ListDealsResponse", false),
                ("Submit", "SubmitRequest", "SubmitResponse", false),
                (
                    "SubmitBatch",
                    "SubmitBatchRequest",
                    "SubmitBatchResponse",
                    false,
                ),
                ("GetInvestment", "GetInvestmentRequest", "Investment", false),
                (
                    "WatchInvestment",
                    "WatchInvestmentRequest",
                    "Investment",
                    true,
                ),
                (
                    "ListInvestments",
                    "ListInvestmentsRequest",
                    "ListInvestmentsResponse",
                    false,
                ),
                ("GetUser", "GetUserRequest", "User", false),
                ("Withdraw", "WithdrawRequest", "Investment", false),
            ],
        ),
        (
            "admission.v1.Cluster",
            &[
                ("Status", "StatusRequest", "StatusResponse", false),
                ("Init", "InitRequest", "InitResponse", false),
                (
                    "AddLearner",
                    "AddLearnerRequest",
                    "MembershipResponse",
                    false,
                ),
                (
                    "ChangeMembership",
                    "ChangeMembershipRequest",
                    "MembershipResponse",
                    false,
                ),
                (
                    "TransferLeader",
                    "TransferLeaderRequest",
                    "TransferLeaderResponse",
                    false,
                ),
                (
                    "TriggerSnapshot",
                    "TriggerSnapshotRequest",
                    "TriggerSnapshotResponse",
                    false,
                ),
                ("ListSagas", "ListSagasRequest", "ListSagasResponse", false),
                (
                    "CompensateSaga",
                    "CompensateSagaRequest",
                    "Investment",
                    false,
                ),
                ("ExportDeal", "ExportDealRequest", "ExportDealPart", true),
                (
                    "ArchiveDeal",
                    "ArchiveDealRequest",
                    "ArchiveDealResponse",
                    false,
                ),
                ("SaveSnapshot", "SaveSnapshotRequest", "BackupChunk", true),
                (
                    "TraceInvestment",
                    "TraceInvestmentRequest",
                    "InvestmentTrace",
                    false,
                ),
            ],
        ),
        (
            "admission.v1.Raft",
            &[
                ("AppendEntries", "RaftRequest", "RaftReply", false),
                ("Vote", "RaftRequest", "RaftReply", false),
                ("InstallSnapshot", "RaftRequest", "RaftReply", false),
                ("Propose", "RaftRequest", "RaftReply", false),
                ("ProposeBatch", "RaftRequest", "RaftReply", false),
            ],
        ),
    ];

    let services = services();
    let names: Vec<_> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            ledger_proto::service_names::ADMISSION,
            ledger_proto::service_names::CLUSTER,
            ledger_proto::service_names::RAFT
        ]
    );

    for (service, methods) in expected {
        let got = &services[service];
        let got: Vec<_> = got
            .method
            .iter()
            .map(|m| {
                (
                    m.name().to_owned(),
                    m.input_type().to_owned(),
                    m.output_type().to_owned(),
                    m.client_streaming(),
                    m.server_streaming(),
                )
            })
            .collect();
        let want: Vec<_> = methods
            .iter()
            .map(|&(name, input, output, streaming)| {
                (
                    name.to_owned(),
                    format!(".admission.v1.{input}"),
                    format!(".admission.v1.{output}"),
                    false,
                    streaming,
                )
            })
            .collect();
        assert_eq!(got, want, "methods of {service}");
    }
}

/// Field shapes as the contract spells them.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Str,
    OptStr,
    U32,
    U64,
    OptU64,
    Bool,
    Bytes,
    Enum(&'static str),
    Msg(&'static str),
    Repeated(&'static str),
    RepeatedU64,
    /// A message-typed member of a oneof.
    OneofMsg(&'static str, &'static str),
}

impl Kind {
    /// The kind as [`describe`] spells a field of it.
    fn describe(self) -> String {
        match self {
            Kind::Str => "string".into(),
            Kind::OptStr => "optional string".into(),
            Kind::U32 => "uint32".into(),
            Kind::U64 => "uint64".into(),
            Kind::OptU64 => "optional uint64".into(),
            Kind::Bool => "bool".into(),
            Kind::Bytes => "bytes".into(),
            Kind::Enum(name) | Kind::Msg(name) => name.into(),
            Kind::Repeated(name) => format!("repeated {name}"),
            Kind::RepeatedU64 => "repeated uint64".into(),
            Kind::OneofMsg(oneof, name) => format!("oneof {oneof} {name}"),
        }
    }
}

/// A field's shape as text: `"optional string"`, `"repeated Deal"`, `"oneof result RequestError"`.
fn describe(field: &prost_types::FieldDescriptorProto, message: &DescriptorProto) -> String {
    let type_name = field
        .type_name()
        .strip_prefix(".admission.v1.")
        .unwrap_or(field.type_name());
    let optional = field.proto3_optional();
    let repeated = field.label() == Label::Repeated;
    if let (Some(index), false) = (field.oneof_index, optional) {
        let oneof = message.oneof_decl[index as usize].name();
        assert_eq!(field.r#type(), Type::Message, "{}", field.name());
        return format!("oneof {oneof} {type_name}");
    }
    let scalar = match field.r#type() {
        Type::String => "string",
        Type::Uint32 => "uint32",
        Type::Uint64 => "uint64",
        Type::Bool => "bool",
        Type::Bytes => "bytes",
        Type::Enum | Type::Message => type_name,
        other => panic!("unexpected type {other:?} of {}", field.name()),
    };
    match (optional, repeated) {
        (false, false) => scalar.to_owned(),
        (true, false) => format!("optional {scalar}"),
        (false, true) => format!("repeated {scalar}"),
        (true, true) => panic!("{} is both optional and repeated", field.name()),
    }
}

/// (field name, field number, shape)
type Field = (&'static str, i32, Kind);

#[test]
fn messages_match_the_contract() {
    use Kind::*;
    let expected: &[(&str, &[Field])] = &[
        (
            "CreateDealRequest",
            &[
                ("deal_id", 1, Str),
                ("amount", 2, Str),
                ("max_investors", 3, U32),
                ("min_ticket", 4, OptStr),
                ("max_ticket", 5, OptStr),
                ("opens_at_ms", 6, OptU64),
                ("closes_at_ms", 7, OptU64),
                ("max_waitlist", 8, U32),
            ],
        ),
        ("CloseDealRequest", &[("deal_id", 1, Str)]),
        (
            "GetDealRequest",
            &[("deal_id", 1, Str), ("consistency", 2, Enum("Consistency"))],
        ),
        (
            "ListDealsRequest",
            &[
                ("page_size", 1, U32),
                ("page_token", 2, Str),
                ("consistency", 3, Enum("Consistency")),
            ],
        ),
        (
            "ListDealsResponse",
            &[("deals", 1, Repeated("Deal")), ("next_page_token", 2, Str)],
        ),
        (
            "Deal",
            &[
                ("deal_id", 1, Str),
                ("amount", 2, Str),
                ("max_investors", 3, U32),
                ("min_ticket", 4, OptStr),
                ("max_ticket", 5, OptStr),
                ("status", 6, Enum("DealStatus")),
                ("investor_count", 7, U32),
                ("reserved_amount", 8, Str),
                ("confirmed_count", 9, U32),
                ("confirmed_amount", 10, Str),
                ("created_at_ms", 11, U64),
                ("opens_at_ms", 12, OptU64),
                ("closes_at_ms", 13, OptU64),
                ("max_waitlist", 14, U32),
                ("waitlist_length", 15, U32),
                ("receipt_head", 16, Msg("Receipt")),
                ("closed_log_index", 17, U64),
                ("closed_offset", 18, U32),
            ],
        ),
        ("Receipt", &[("deal_seq", 1, U64), ("hash", 2, Bytes)]),
        (
            "SubmitRequest",
            &[
                ("request_id", 1, Str),
                ("deal_id", 2, Str),
                ("user_id", 3, Str),
                ("amount", 4, Str),
                ("waitlist", 5, Bool),
                ("waitlist_ttl_ms", 6, OptU64),
            ],
        ),
        (
            "SubmitResponse",
            &[
                ("investment", 1, Msg("Investment")),
                ("log_index", 2, U64),
                ("offset", 3, U32),
                ("replayed", 4, Bool),
            ],
        ),
        (
            "SubmitBatchRequest",
            &[("requests", 1, Repeated("SubmitRequest"))],
        ),
        (
            "SubmitBatchResponse",
            &[("responses", 1, Repeated("SubmitBatchResult"))],
        ),
        (
            "SubmitBatchResult",
            &[
                ("response", 1, OneofMsg("result", "SubmitResponse")),
                ("error", 2, OneofMsg("result", "RequestError")),
            ],
        ),
        (
            "RequestError",
            &[
                ("code", 1, U32),
                ("message", 2, Str),
                ("field", 3, Str),
                ("outcome", 4, Enum("WriteOutcome")),
            ],
        ),
        (
            "GetInvestmentRequest",
            &[
                ("request_id", 1, Str),
                ("consistency", 2, Enum("Consistency")),
            ],
        ),
        ("WatchInvestmentRequest", &[("request_id", 1, Str)]),
        (
            "ListInvestmentsRequest",
            &[
                ("deal_id", 1, Str),
                ("page_size", 2, U32),
                ("page_token", 3, Str),
                ("consistency", 4, Enum("Consistency")),
            ],
        ),
        (
            "ListInvestmentsResponse",
            &[
                ("investments", 1, Repeated("Investment")),
                ("next_page_token", 2, Str),
            ],
        ),
        (
            "GetUserRequest",
            &[("user_id", 1, Str), ("consistency", 2, Enum("Consistency"))],
        ),
        (
            "User",
            &[
                ("user_id", 1, Str),
                ("pending", 2, Repeated("Investment")),
                ("confirmed", 3, Repeated("Investment")),
                ("waitlisted", 4, Repeated("Investment")),
            ],
        ),
        ("WithdrawRequest", &[("request_id", 1, Str)]),
        (
            "Investment",
            &[
                ("request_id", 1, Str),
                ("deal_id", 2, Str),
                ("user_id", 3, Str),
                ("amount", 4, Str),
                ("status", 5, Enum("InvestmentStatus")),
                ("reject_reason", 6, Enum("RejectReason")),
                ("log_index", 7, U64),
                ("offset", 8, U32),
                ("saga_step", 9, Enum("SagaStep")),
                ("decided_at_ms", 10, U64),
                ("updated_at_ms", 11, U64),
                ("attempts", 12, U32),
                ("last_error", 13, Str),
                ("cancel_cause", 14, Enum("CancelCause")),
                ("executor", 15, OptU64),
                ("epoch", 16, U64),
                ("deadline_ms", 17, U64),
                ("payment_id", 18, Str),
                ("document_id", 19, Str),
                ("message_id", 20, Str),
                ("notify_failed", 21, Bool),
                ("refunded", 22, Bool),
                ("cancelled_log_index", 23, U64),
                ("cancelled_offset", 24, U32),
                ("waitlist_position", 25, U32),
                ("waitlist", 26, Bool),
                ("waitlist_ttl_ms", 27, OptU64),
                ("waitlisted", 28, Bool),
                ("admitted_log_index", 29, U64),
                ("admitted_offset", 30, U32),
                ("receipt", 31, Msg("Receipt")),
                ("waitlist_ended_log_index", 32, U64),
                ("waitlist_ended_offset", 33, U32),
                ("decided_by", 34, U64),
            ],
        ),
        ("StatusRequest", &[("with_digest", 1, Bool)]),
        (
            "StatusResponse",
            &[
                ("node_id", 1, U64),
                ("leader_id", 2, OptU64),
                ("term", 3, U64),
                ("last_log_index", 4, U64),
                ("committed_index", 5, U64),
                ("applied_index", 6, U64),
                ("state_digest", 7, Str),
                ("members", 8, Repeated("Member")),
                ("executors", 9, Repeated("ExecutorStatus")),
                ("role", 10, Str),
                ("snapshot_index", 11, U64),
                ("purged_index", 12, U64),
            ],
        ),
        (
            "Member",
            &[
                ("node_id", 1, U64),
                ("addr", 2, Str),
                ("role", 3, Enum("MemberRole")),
                ("matched_index", 4, U64),
            ],
        ),
        (
            "ExecutorStatus",
            &[
                ("node_id", 1, U64),
                ("live", 2, Bool),
                ("last_heartbeat_ms", 3, U64),
                ("open_sagas", 4, U32),
            ],
        ),
        ("InitRequest", &[("members", 1, Repeated("MemberAddr"))]),
        ("InitResponse", &[]),
        ("MemberAddr", &[("node_id", 1, U64), ("addr", 2, Str)]),
        (
            "AddLearnerRequest",
            &[
                ("node_id", 1, U64),
                ("addr", 2, Str),
                ("catch_up_wait_ms", 3, U32),
            ],
        ),
        (
            "ChangeMembershipRequest",
            &[("voters", 1, RepeatedU64), ("retain", 2, Bool)],
        ),
        (
            "MembershipResponse",
            &[
                ("members", 1, Repeated("Member")),
                ("log_index", 2, U64),
                ("changed", 3, Bool),
                ("catch_up_index", 4, U64),
                ("caught_up", 5, Bool),
            ],
        ),
        ("TransferLeaderRequest", &[("to", 1, U64)]),
        ("TransferLeaderResponse", &[("leader_id", 1, U64)]),
        ("TriggerSnapshotRequest", &[]),
        ("TriggerSnapshotResponse", &[("snapshot_index", 1, U64)]),
        (
            "ListSagasRequest",
            &[
                ("older_than_ms", 1, U64),
                ("failing_only", 2, Bool),
                ("limit", 3, U32),
                ("consistency", 4, Enum("Consistency")),
            ],
        ),
        (
            "ListSagasResponse",
            &[
                ("sagas", 1, Repeated("Investment")),
                ("open_total", 2, U64),
                ("now_ms", 3, U64),
            ],
        ),
        (
            "CompensateSagaRequest",
            &[("request_id", 1, Str), ("reason", 2, Str)],
        ),
        ("SaveSnapshotRequest", &[]),
        (
            "TraceInvestmentRequest",
            &[
                ("request_id", 1, Str),
                ("consistency", 2, Enum("Consistency")),
            ],
        ),
        (
            "InvestmentTrace",
            &[
                ("investment", 1, Msg("Investment")),
                ("history", 2, Repeated("SagaMark")),
                ("history_dropped", 3, U32),
            ],
        ),
        (
            "SagaMark",
            &[
                ("log_index", 1, U64),
                ("at_ms", 2, U64),
                ("epoch", 3, U64),
                ("assigned", 4, OneofMsg("change", "SagaAssigned")),
                ("step_ended", 5, OneofMsg("change", "SagaStepEnded")),
                ("compensating", 6, OneofMsg("change", "SagaCompensating")),
            ],
        ),
        ("SagaAssigned", &[("executor", 1, OptU64)]),
        (
            "SagaStepEnded",
            &[
                ("step", 1, Enum("SagaStep")),
                ("result", 2, Enum("StepEnd")),
                ("refunded", 3, Bool),
                ("retries", 4, U32),
            ],
        ),
        ("SagaCompensating", &[("cause", 1, Enum("CancelCause"))]),
        (
            "BackupChunk",
            &[
                ("data", 1, Bytes),
                ("total_bytes", 2, U64),
                ("log_index", 3, U64),
                ("term", 4, U64),
                ("digest", 5, Str),
            ],
        ),
        ("ExportDealRequest", &[("deal_id", 1, Str)]),
        (
            "ArchiveDealRequest",
            &[("deal_id", 1, Str), ("receipt_head", 2, Msg("Receipt"))],
        ),
        (
            "ArchiveDealResponse",
            &[
                ("deal_id", 1, Str),
                ("archived", 2, Bool),
                ("receipt_head", 3, Msg("Receipt")),
                ("log_index", 4, U64),
                ("confirmed_count", 5, U32),
                ("confirmed_amount", 6, Str),
            ],
        ),
        (
            "ExportDealPart",
            &[
                ("deal", 1, OneofMsg("part", "Deal")),
                ("investment", 2, OneofMsg("part", "Investment")),
            ],
        ),
        (
            "RaftRequest",
            &[
                ("payload", 1, Bytes),
                ("cluster_id", 2, Str),
                ("target_node_id", 3, U64),
                ("sender_node_id", 4, U64),
            ],
        ),
        (
            "RaftReply",
            &[
                ("payload", 1, Bytes),
                ("error", 2, Str),
                ("clock_ms", 3, U64),
            ],
        ),
    ];

    let messages = messages();
    let mut want_names: Vec<_> = expected
        .iter()
        .map(|(name, _)| format!("admission.v1.{name}"))
        .collect();
    want_names.sort();
    let got_names: Vec<_> = messages.keys().cloned().collect();
    assert_eq!(got_names, want_names, "the set of messages");

    for (name, fields) in expected {
        let message = &messages[&format!("admission.v1.{name}")];
        let got: Vec<_> = message
            .field
            .iter()
            .map(|f| (f.name().to_owned(), f.number(), describe(f, message)))
            .collect();
        let want: Vec<_> = fields
            .iter()
            .map(|&(n, number, kind)| (n.to_owned(), number, kind.describe()))
            .collect();
        assert_eq!(got, want, "fields of {name}");
    }
}

#[test]
fn enums_match_the_contract() {
    let expected: &[(&str, &[(&str, i32)])] = &[
        ("Consistency", &[("LINEARIZABLE", 0), ("STALE", 1)]),
        (
            "InvestmentStatus",
            &[
                ("INVESTMENT_STATUS_UNSPECIFIED", 0),
                ("PENDING", 1),
                ("CONFIRMED", 2),
                ("CANCELLED", 3),
                ("REJECTED", 4),
                ("WAITLISTED", 5),
            ],
        ),
        (
            "DealStatus",
            &[("DEAL_STATUS_UNSPECIFIED", 0), ("OPEN", 1), ("CLOSED", 2)],
        ),
        (
            "RejectReason",
            &[
                ("REJECT_REASON_UNSPECIFIED", 0),
                ("DEAL_NOT_FOUND", 1),
                ("DEAL_CLOSED", 2),
                ("TICKET_OUT_OF_RANGE", 3),
                ("DUPLICATE_INVESTOR", 4),
                ("INVESTOR_LIMIT_REACHED", 5),
                ("AMOUNT_EXCEEDS_REMAINING", 6),
                ("DEAL_NOT_OPEN", 7),
                ("WAITLIST_CLOSED", 8),
            ],
        ),
        (
            "SagaStep",
            &[
                ("SAGA_STEP_UNSPECIFIED", 0),
                ("PAYMENT", 1),
                ("DOCUMENTS", 2),
                ("VOID", 3),
                ("NOTIFY", 4),
                ("DONE", 5),
            ],
        ),
        (
            "CancelCause",
            &[
                ("CANCEL_CAUSE_UNSPECIFIED", 0),
                ("PAYMENT_DECLINED", 1),
                ("DOCUMENTS_FAILED", 2),
                ("DEADLINE_EXCEEDED", 3),
                ("ABORTED", 4),
            ],
        ),
        (
            "MemberRole",
            &[("MEMBER_ROLE_UNSPECIFIED", 0), ("VOTER", 1), ("LEARNER", 2)],
        ),
        (
            "StepEnd",
            &[
                ("STEP_END_UNSPECIFIED", 0),
                ("STEP_END_PAYMENT_SUCCEEDED", 1),
                ("STEP_END_PAYMENT_DECLINED", 2),
                ("STEP_END_DOCUMENTS_GENERATED", 3),
                ("STEP_END_DOCUMENTS_FAILED", 4),
                ("STEP_END_PAYMENT_VOIDED", 5),
                ("STEP_END_NOTIFY_SENT", 6),
                ("STEP_END_NOTIFY_FAILED", 7),
            ],
        ),
        (
            "WriteOutcome",
            &[
                ("WRITE_OUTCOME_UNSPECIFIED", 0),
                ("WRITE_OUTCOME_NOT_PROPOSED", 1),
                ("WRITE_OUTCOME_UNKNOWN", 2),
            ],
        ),
    ];

    let mut got = BTreeMap::new();
    for file in descriptor_set().file {
        for e in file.enum_type {
            let values: Vec<_> = e
                .value
                .iter()
                .map(|v| (v.name().to_owned(), v.number()))
                .collect();
            got.insert(e.name().to_owned(), values);
        }
    }
    let mut want = BTreeMap::new();
    for (name, values) in expected {
        let values: Vec<_> = values.iter().map(|&(n, v)| (n.to_owned(), v)).collect();
        want.insert((*name).to_owned(), values);
    }
    assert_eq!(got, want);
}

#[test]
fn descriptor_keeps_source_comments_for_reflection() {
    // Reflection clients (grpcurl describe) show these; make sure they were not stripped.
    let set = descriptor_set();
    let admission = set
        .file
        .iter()
        .find(|f| f.name() == "admission/v1/admission.proto")
        .unwrap();
    let info = admission
        .source_code_info
        .as_ref()
        .expect("source info kept");
    assert!(info.location.iter().any(|l| l
        .leading_comments()
        .contains("Unix milliseconds in log time")));
}
