//! Golden bytes: the encoding of every `Command`, every `StepResult`, an entry (and its wire
//! form), a state snapshot, and every persisted record kind (`codec::record`), pinned byte for byte in
//! `fixtures/golden.txt` (one `name hex` line each). A change to any of them fails here: bump the
//! format version it belongs to, keep a reader for the old bytes, and only then write the file
//! again with `LEDGER_UPDATE_GOLDEN=1 cargo test -p ledger-state-machine --test golden`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use common::*;
use ledger_state_machine::codec::record::{
    self, EncodedEntry, LogPosition, LogRecord, MembershipRecord, PayloadRecord, SnapshotHead,
    VoteRecord,
};
use ledger_state_machine::*;

const GOLDEN: &str = "tests/fixtures/golden.txt";

fn entry(commands: Vec<Command>) -> Entry {
    Entry {
        header: EntryHeader {
            leader_id: 2,
            time_ms: T0_MS,
        },
        commands,
    }
}

fn step(result: StepResult) -> Command {
    Command::RecordStep(RecordStep {
        request_id: rid(7),
        executor: 3,
        epoch: 2,
        result,
    })
}

/// One of each `Command` variant, with every optional field set somewhere.
fn commands() -> Vec<(&'static str, Command)> {
    vec![
        (
            "command/create_deal",
            Command::CreateDeal(CreateDeal {
                opens_at_ms: Some(T0_MS),
                closes_at_ms: Some(T0_MS + 60_000),
                max_waitlist: 5,
                ..match create_deal("alpha", "10000.50", 3, Some("10"), Some("5000")) {
                    Command::CreateDeal(create) => create,
                    _ => unreachable!(),
                }
            }),
        ),
        (
            "command/close_deal",
            Command::CloseDeal {
                deal_id: "alpha".into(),
            },
        ),
        (
            "command/submit_traced",
            match submit(1, "alpha", "ana", "100") {
                Command::Submit(submit) => {
                    Command::SubmitTraced(ledger_state_machine::TracedSubmit {
                        submit,
                        trace: ledger_state_machine::TraceContext::parse(
                            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                        )
                        .unwrap(),
                    })
                }
                _ => unreachable!(),
            },
        ),
        ("command/submit", submit(1, "alpha", "ana", "500.25")),
        (
            "command/submit_waitlisted",
            submit_waitlisted(2, "alpha", "bob", "100", Some(60_000)),
        ),
        (
            "command/executor_heartbeat",
            Command::ExecutorHeartbeat {
                node_id: 2,
                applied_index: 41,
            },
        ),
        (
            "command/executor_retire",
            Command::ExecutorRetire { node_id: 2 },
        ),
        ("command/record_step", step(paid("pay-1"))),
        (
            "command/abort_saga",
            Command::AbortSaga {
                request_id: rid(1),
                reason: "operator".into(),
            },
        ),
        ("command/set_params", Command::SetParams(Params::default())),
        ("command/withdraw", Command::Withdraw { request_id: rid(2) }),
        (
            "command/archive_deal",
            Command::ArchiveDeal(ArchiveDeal {
                deal_id: "alpha".into(),
                receipt_seq: 3,
                receipt_hash: [0xAB; 32],
            }),
        ),
    ]
}

/// One of each `StepResult` variant, as a `RecordStep`.
fn step_results() -> Vec<(&'static str, Command)> {
    vec![
        ("step/payment_succeeded", step(paid("pay-1"))),
        (
            "step/payment_declined",
            step(StepResult::PaymentDeclined {
                reason: "insufficient funds".into(),
            }),
        ),
        ("step/documents_generated", step(documented("doc-1"))),
        (
            "step/documents_failed",
            step(StepResult::DocumentsFailed {
                error: "template".into(),
            }),
        ),
        (
            "step/payment_voided",
            step(StepResult::PaymentVoided { refunded: true }),
        ),
        ("step/notify_sent", step(notified("msg-1"))),
        (
            "step/notify_failed",
            step(StepResult::NotifyFailed {
                error: "bounced".into(),
            }),
        ),
        (
            "step/retrying",
            step(StepResult::Retrying {
                step: SagaStep::Documents,
                attempts: 4,
                error: "503".into(),
            }),
        ),
    ]
}

/// A small state: a deal, admissions, a rejection, a waitlisted request, saga steps.
fn state() -> AdmissionState {
    let mut h = Harness::new();
    h.apply(vec![create_deal("alpha", "1000", 2, None, None)]);
    h.apply(vec![
        submit(1, "alpha", "ana", "100"),
        submit(2, "alpha", "bob", "200"),
        submit_waitlisted(3, "alpha", "cara", "50", Some(60_000)),
        submit(4, "ghost", "dan", "10"),
    ]);
    h.apply(vec![Command::ExecutorHeartbeat {
        node_id: 2,
        applied_index: 2,
    }]);
    h.state
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

fn position(index: u64) -> LogPosition {
    LogPosition {
        term: 3,
        node_id: 2,
        index,
    }
}

fn membership() -> MembershipRecord {
    MembershipRecord {
        configs: vec![BTreeSet::from([1, 2, 3])],
        nodes: BTreeMap::from([
            (1, "10.0.0.1:9700".to_owned()),
            (2, "10.0.0.2:9700".to_owned()),
            (3, "10.0.0.3:9700".to_owned()),
        ]),
    }
}

/// Every pinned encoding, by name.
fn encodings() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, command) in commands().into_iter().chain(step_results()) {
        let bytes = codec::encode_entry(&entry(vec![command.clone()]));
        assert_eq!(
            codec::decode_entry(&bytes).expect("decodes").commands,
            vec![command],
            "{name}"
        );
        out.push((format!("entry/{name}"), bytes));
    }
    let all: Vec<Command> = commands().into_iter().map(|(_, c)| c).collect();
    let batch = EncodedEntry::new(entry(all));
    out.push(("entry/batch".into(), batch.bytes().to_vec()));
    // As a leader sends it in `AppendEntries`.
    out.push(("wire/encoded_entry".into(), codec::encode(&batch)));

    let state = state();
    let snapshot = state.encode_snapshot();
    assert_eq!(
        AdmissionState::decode_snapshot(&snapshot)
            .expect("loads")
            .digest(),
        state.digest()
    );
    out.push(("snapshot/state".into(), snapshot.clone()));

    let records = [
        (
            "record/entry_blank",
            record::encode_log_record(&LogRecord {
                position: position(7),
                payload: PayloadRecord::Blank,
            }),
        ),
        (
            "record/entry_normal",
            record::encode_log_record(&LogRecord {
                position: position(8),
                payload: PayloadRecord::Normal(EncodedEntry::new(entry(vec![submit(
                    1, "alpha", "ana", "1",
                )]))),
            }),
        ),
        (
            "record/entry_membership",
            record::encode_log_record(&LogRecord {
                position: position(9),
                payload: PayloadRecord::Membership(membership()),
            }),
        ),
        (
            "record/vote",
            record::encode_vote_record(&VoteRecord {
                term: 3,
                node_id: 2,
                committed: true,
            }),
        ),
        ("record/log_id_none", record::encode_log_id_record(None)),
        (
            "record/log_id",
            record::encode_log_id_record(Some(&position(9))),
        ),
        (
            "record/snapshot",
            record::encode_snapshot_record(
                &SnapshotHead {
                    last_log_id: Some(position(3)),
                    membership_log_id: Some(position(1)),
                    membership: membership(),
                    snapshot_id: "3-2-3".into(),
                },
                &[1, 2, 3],
            ),
        ),
        (
            "backup",
            ledger_state_machine::codec::backup::encode(
                &ledger_state_machine::codec::backup::Backup {
                    log_index: 48_213,
                    term: 7,
                    log_time_ms: 1_790_000_000_000,
                    cluster_id: "prod-eu".into(),
                    digest: state.digest().0,
                    state: state.encode_snapshot(),
                },
            ),
        ),
    ];
    for (name, bytes) in records {
        out.push((name.into(), bytes));
    }
    out
}

#[test]
fn every_encoding_matches_its_golden_bytes() {
    let now: String = encodings()
        .iter()
        .map(|(name, bytes)| format!("{name} {}\n", hex(bytes)))
        .collect();
    if std::env::var_os("LEDGER_UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, &now).expect("write the golden file");
        return;
    }
    let golden = std::fs::read_to_string(GOLDEN).expect("the golden file");
    let golden: BTreeMap<&str, &str> = golden
        .lines()
        .filter_map(|line| line.split_once(' '))
        .collect();
    let mut names = BTreeSet::new();
    for line in now.lines() {
        let (name, bytes) = line.split_once(' ').expect("name and bytes");
        names.insert(name);
        assert_eq!(
            golden.get(name).copied(),
            Some(bytes),
            "the encoding of {name} changed (or is new): see this file's documentation"
        );
    }
    let stale: Vec<_> = golden.keys().filter(|n| !names.contains(*n)).collect();
    assert!(
        stale.is_empty(),
        "golden entries no longer produced: {stale:?}"
    );
}

#[test]
fn every_record_decodes_to_what_was_encoded() {
    let record_of = |index| LogRecord {
        position: position(index),
        payload: PayloadRecord::Membership(membership()),
    };
    let bytes = record::encode_log_record(&record_of(9));
    assert_eq!(record::decode_log_record(&bytes), Ok(record_of(9)));
    let normal = LogRecord {
        position: position(8),
        payload: PayloadRecord::Normal(EncodedEntry::new(entry(vec![submit(
            1, "alpha", "ana", "1",
        )]))),
    };
    let decoded = record::decode_log_record(&record::encode_log_record(&normal)).expect("reads");
    assert_eq!(decoded, normal);
    match decoded.payload {
        PayloadRecord::Normal(encoded) => {
            assert_eq!(encoded.entry().expect("decodes").commands.len(), 1)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_record_of_a_future_format_is_refused_with_a_clear_message() {
    let mut bytes = record::encode_vote_record(&VoteRecord {
        term: 3,
        node_id: 2,
        committed: false,
    });
    assert_eq!(bytes[4..6], [0xFF, record::RECORD_FORMAT_VERSION]);
    bytes[5] = record::RECORD_FORMAT_VERSION + 1;
    let checksum = crc32fast::hash(&bytes[4..]).to_le_bytes();
    bytes[..4].copy_from_slice(&checksum);
    let error = record::decode_vote_record(&bytes).unwrap_err().to_string();
    assert!(
        error.contains("newer than this build's") && error.contains("upgrade this node"),
        "{error}"
    );
}

#[test]
fn damaged_records_are_refused() {
    let good = record::encode_log_record(&LogRecord {
        position: position(9),
        payload: PayloadRecord::Membership(membership()),
    });
    for cut in 0..good.len() {
        assert!(
            record::decode_log_record(&good[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    for at in 0..good.len() {
        let mut flipped = good.clone();
        flipped[at] ^= 0x10;
        assert!(
            record::decode_log_record(&flipped).is_err(),
            "flipped at {at}"
        );
    }
    // Of another kind: a vote is not a log entry.
    let vote = record::encode_vote_record(&VoteRecord {
        term: 1,
        node_id: 1,
        committed: false,
    });
    let error = record::decode_log_record(&vote).unwrap_err().to_string();
    assert!(error.contains("expected a log entry record"), "{error}");
}
