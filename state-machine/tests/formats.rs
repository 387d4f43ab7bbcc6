//! Data written by earlier builds still reads: log entries from before entry format versions
//! and of version 1, and snapshots of formats 3 to 5 (format 2 is in `unknown_deals.rs`).
//! `entries-v0.bin` and `snapshot-v3.bin` were written by the build of commit 12a3304 from
//! `fixture_entries`; `entries-v1.bin` and `snapshot-v4.bin` by that of f0f62f7 from
//! `fixture_entries_v4`; `snapshot-v5.bin` by that of 3f11d2b from `fixture_entries_v5`.

mod common;

use common::*;
use ledger_state_machine::*;

fn fixture_entries() -> Vec<Vec<Command>> {
    vec![
        vec![create_deal("alpha", "10000", 3, Some("10"), Some("5000"))],
        vec![Command::ExecutorHeartbeat {
            node_id: 2,
            applied_index: 1,
        }],
        vec![
            submit(1, "ghost", "ana", "100"),
            submit(2, "alpha", "ana", "500"),
            submit(3, "alpha", "bob", "200"),
        ],
        vec![Command::RecordStep(RecordStep {
            request_id: rid(2),
            executor: 2,
            epoch: 1,
            result: StepResult::PaymentSucceeded {
                payment_id: "pay-2".into(),
            },
        })],
        vec![Command::AbortSaga {
            request_id: rid(3),
            reason: "operator".into(),
        }],
        vec![Command::SetParams(Params::default())],
        vec![Command::ExecutorRetire { node_id: 2 }],
        vec![
            Command::CloseDeal {
                deal_id: "alpha".into(),
            },
            submit(4, "alpha", "cara", "50"),
        ],
    ]
}

/// What the format 4 fixtures hold: the above, and a waitlist.
fn fixture_entries_v4() -> Vec<Vec<Command>> {
    let mut entries = fixture_entries();
    entries.push(vec![create_deal("beta", "1000", 1, None, None)]);
    entries.push(vec![
        submit(5, "beta", "dan", "100"),
        submit_waitlisted(6, "beta", "eve", "100", Some(60_000)),
    ]);
    entries.push(vec![Command::Withdraw { request_id: rid(6) }]);
    entries
}

/// What the format 5 fixture holds: the above, a saga handed to a new executor, and a full
/// run of two sagas, one admitted from the waitlist after the other's payment was declined.
fn fixture_entries_v5() -> Vec<Vec<Command>> {
    let step = |n: u128, epoch: u64, result: StepResult| {
        vec![Command::RecordStep(RecordStep {
            request_id: rid(n),
            executor: 3,
            epoch,
            result,
        })]
    };
    let mut entries = fixture_entries_v4();
    entries.push(vec![Command::ExecutorHeartbeat {
        node_id: 3,
        applied_index: 11,
    }]);
    entries.push(vec![create_deal("gamma", "1000", 1, None, None)]);
    entries.push(vec![
        submit(7, "gamma", "fay", "100"),
        submit_waitlisted(8, "gamma", "gus", "100", None),
    ]);
    entries.push(step(
        7,
        1,
        StepResult::Retrying {
            step: SagaStep::Payment,
            attempts: 1,
            error: "timeout".into(),
        },
    ));
    entries.push(step(
        7,
        1,
        StepResult::PaymentDeclined {
            reason: "card".into(),
        },
    ));
    entries.push(step(
        8,
        1,
        StepResult::PaymentSucceeded {
            payment_id: "pay-8".into(),
        },
    ));
    entries.push(step(
        8,
        1,
        StepResult::DocumentsGenerated {
            document_id: "doc-8".into(),
        },
    ));
    entries.push(step(
        7,
        1,
        StepResult::NotifySent {
            message_id: "msg-7".into(),
        },
    ));
    entries
}

/// A converted snapshot equals a replay by this build, except for what formats before 5 did
/// not keep: where each deal closed and each waitlisted request ended (unknown: `None`).
fn assert_same_but_positions(converted: &AdmissionState, replayed: &AdmissionState) {
    assert_same_but(converted, replayed, true);
}

/// A converted snapshot equals a replay by this build, except for what formats before 6 did
/// not keep (each decision's leader and each saga's history) and, with `positions`, what
/// formats before 5 did not keep.
fn assert_same_but(converted: &AdmissionState, replayed: &AdmissionState, positions: bool) {
    let deals = |state: &AdmissionState| -> Vec<DealView> {
        let mut deals = state.deals(0, 100).items;
        for deal in &mut deals {
            if positions {
                deal.closed_at = None;
            }
        }
        deals
    };
    assert_eq!(deals(converted), deals(replayed));
    assert_eq!(converted.investment_count(), replayed.investment_count());
    for n in 1..=converted.investment_count() as u128 + 1 {
        let clear = |mut view: InvestmentView| {
            if positions {
                view.waitlist_ended_at = None;
            }
            without_history(view)
        };
        assert_eq!(
            converted.investment(rid(n)).map(clear),
            replayed.investment(rid(n)).map(clear),
            "request {n}"
        );
    }
    assert_eq!(converted.now_ms(), replayed.now_ms());
    assert_eq!(converted.last_log_index(), replayed.last_log_index());
}

fn fixture_entry(i: usize, commands: Vec<Command>) -> Entry {
    Entry {
        header: EntryHeader {
            leader_id: 1 + i as u64 % 3,
            time_ms: T0_MS + 10 * i as u64,
        },
        commands,
    }
}

#[test]
fn unversioned_entries_read_as_the_same_commands() {
    let encoded: Vec<Vec<u8>> =
        codec::decode(include_bytes!("fixtures/entries-v0.bin")).expect("the fixture decodes");
    let expected = fixture_entries();
    assert_eq!(encoded.len(), expected.len());
    for (i, (bytes, commands)) in encoded.iter().zip(expected).enumerate() {
        let entry = codec::decode_entry(bytes).expect("an unversioned entry decodes");
        assert_eq!(entry, fixture_entry(i, commands), "entry {i}");
        // Written again, it carries the current version and reads back the same.
        let rewritten = codec::encode_entry(&entry);
        assert_ne!(&rewritten, bytes);
        assert_eq!(rewritten[0], 0, "versioned entries start with 0");
        assert_eq!(codec::decode_entry(&rewritten).unwrap(), entry);
    }
}

#[test]
fn an_entry_of_a_future_format_is_refused_with_a_clear_message() {
    let entry = fixture_entry(0, fixture_entries().remove(0));
    let mut bytes = codec::encode_entry(&entry);
    assert_eq!(bytes[1] as u32, codec::ENTRY_FORMAT_VERSION);
    bytes[1] = codec::ENTRY_FORMAT_VERSION as u8 + 1;
    let error = codec::decode_entry(&bytes).unwrap_err().to_string();
    assert!(error.contains("newer than this build reads"), "{error}");
}

#[test]
fn a_format_3_snapshot_is_converted_to_what_a_replay_gives() {
    let bytes = include_bytes!("fixtures/snapshot-v3.bin");
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 3);
    let converted = AdmissionState::decode_snapshot(bytes).expect("a format 3 snapshot loads");
    converted.check_invariants().unwrap();

    let replayed = Harness::replaying(fixture_entries());
    assert_same_but_positions(&converted, &replayed.state);
    assert_eq!(
        replayed.state.deal("alpha").unwrap().closed_at,
        Some((8, 0))
    );
    assert_eq!(
        converted.deal("alpha").unwrap().closed_at,
        None,
        "not known"
    );
    let deal = converted.deal("alpha").unwrap();
    assert_eq!(deal.terms.max_waitlist, MAX_WAITLIST_DEFAULT);
    assert_eq!(
        (deal.terms.opens_at_ms, deal.terms.closes_at_ms),
        (None, None)
    );
    for n in 1..=4 {
        assert_eq!(
            converted.investment(rid(n)),
            replayed.state.investment(rid(n)).map(without_history),
            "request {n}"
        );
    }
}

#[test]
fn version_1_entries_read_as_the_same_commands() {
    let encoded: Vec<Vec<u8>> =
        codec::decode(include_bytes!("fixtures/entries-v1.bin")).expect("the fixture decodes");
    let expected = fixture_entries_v4();
    assert_eq!(encoded.len(), expected.len());
    for (i, (bytes, commands)) in encoded.iter().zip(expected).enumerate() {
        assert_eq!((bytes[0], bytes[1]), (0, 1), "a version 1 entry");
        let entry = codec::decode_entry(bytes).expect("a version 1 entry decodes");
        assert_eq!(entry, fixture_entry(i, commands), "entry {i}");
    }
}

#[test]
fn a_format_4_snapshot_loads_as_what_a_replay_gives() {
    let bytes = include_bytes!("fixtures/snapshot-v4.bin");
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 4);
    let converted = AdmissionState::decode_snapshot(bytes).expect("a format 4 snapshot loads");
    let replayed = Harness::replaying(fixture_entries_v4());
    assert_same_but_positions(&converted, &replayed.state);
    assert_eq!(
        replayed
            .state
            .investment(rid(6))
            .and_then(|inv| inv.waitlist_ended_at),
        Some((11, 0)),
        "withdrawn by the command at (11, 0)"
    );
    assert_eq!(converted.archived_deal_count(), 0);
    assert_eq!(
        converted.investment(rid(6)).map(|inv| inv.reject_reason),
        Some(Some(RejectReason::WaitlistClosed))
    );
}

#[test]
fn a_format_5_snapshot_loads_as_what_a_replay_gives_without_histories() {
    let bytes = include_bytes!("fixtures/snapshot-v5.bin");
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 5);
    let converted = AdmissionState::decode_snapshot(bytes).expect("a format 5 snapshot loads");
    let replayed = Harness::replaying(fixture_entries_v5());
    assert_same_but(&converted, &replayed.state, false);
    let saga = |state: &AdmissionState, n| state.investment(rid(n)).unwrap().saga.unwrap();
    assert!(saga(&converted, 8).history.is_empty(), "not known");
    assert_eq!(converted.investment(rid(8)).unwrap().decided_by, None);
    assert_eq!(saga(&converted, 8).payment_id.as_deref(), Some("pay-8"));
    assert_eq!(
        replayed.state.investment(rid(8)).unwrap().decided_by,
        Some(1)
    );
    assert_eq!(
        saga(&replayed.state, 8).history.len(),
        3,
        "assigned, paid, documents"
    );

    // Written again it is format 6, and a state that applies more entries keeps histories
    // from then on.
    let mut h = Harness::new();
    h.state = AdmissionState::decode_snapshot(&converted.encode_snapshot()).unwrap();
    h.log_index = converted.last_log_index();
    h.time_ms = converted.now_ms() + 10;
    h.apply_one(Command::RecordStep(RecordStep {
        request_id: rid(8),
        executor: 3,
        epoch: 1,
        result: StepResult::NotifySent {
            message_id: "msg-8".into(),
        },
    }))
    .unwrap();
    let history = saga(&h.state, 8).history;
    assert_eq!(history.len(), 1);
    assert_eq!(
        history[0].change,
        SagaChange::StepEnded {
            result: StepEnd::NotifySent,
            retries: 0
        }
    );
}
