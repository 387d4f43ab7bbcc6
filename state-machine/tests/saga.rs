//! The saga of `DESIGN.md` §4.4: one test per transition, then assignment, leases, fencing and
//! deadlines.

mod common;

use common::*;
use ledger_state_machine::*;

/// A deal with one admitted investment (request 1) and executors on nodes 2 and 3; node 1 leads.
fn admitted() -> Harness {
    let mut h = Harness::new();
    h.heartbeat(2);
    h.heartbeat(3);
    h.create_deal("d", "1000", 10);
    assert_eq!(h.submit(1, "d", "ana", "100"), Verdict::Pending);
    h
}

fn totals(h: &Harness) -> (u32, Money, u32, Money) {
    let deal = h.state.deal("d").unwrap();
    (
        deal.investor_count,
        deal.reserved_amount,
        deal.confirmed_count,
        deal.confirmed_amount,
    )
}

#[test]
fn payment_then_documents_confirms_then_notify_finishes() {
    let mut h = admitted();
    assert_eq!(h.saga(1).step, SagaStep::Payment);

    let out = h.record(1, paid("pay-1"));
    assert_eq!(
        out,
        Outcome::StepRecorded {
            status: Status::Pending,
            step: SagaStep::Documents
        }
    );
    assert_eq!(h.saga(1).payment_id.as_deref(), Some("pay-1"));

    let out = h.record(1, documented("doc-1"));
    assert_eq!(
        out,
        Outcome::StepRecorded {
            status: Status::Confirmed,
            step: SagaStep::Notify
        }
    );
    assert_eq!(totals(&h), (1, money("100"), 1, money("100")));
    assert_eq!(h.state.user("ana").unwrap().confirmed.len(), 1);

    let out = h.record(1, notified("msg-1"));
    assert_eq!(
        out,
        Outcome::StepRecorded {
            status: Status::Confirmed,
            step: SagaStep::Done
        }
    );
    let saga = h.saga(1);
    assert_eq!(saga.message_id.as_deref(), Some("msg-1"));
    assert!(
        h.state.executor_sagas(saga.assignee.unwrap()).is_empty(),
        "no work left"
    );
}

#[test]
fn a_declined_payment_cancels_and_releases_in_the_same_entry() {
    let mut h = admitted();
    let out = h.record(
        1,
        StepResult::PaymentDeclined {
            reason: "insufficient funds".into(),
        },
    );
    assert_eq!(
        out,
        Outcome::StepRecorded {
            status: Status::Cancelled,
            step: SagaStep::Notify
        }
    );
    assert_eq!(totals(&h), (0, Money::ZERO, 0, Money::ZERO));
    let saga = h.saga(1);
    assert_eq!(saga.cancel_cause, Some(CancelCause::PaymentDeclined));
    assert_eq!(saga.last_error.as_deref(), Some("insufficient funds"));
    // The cancellation e-mail still goes out.
    h.record(1, notified("msg-1"));
    assert_eq!(h.saga(1).step, SagaStep::Done);
}

#[test]
fn documents_failing_for_good_voids_the_payment_then_cancels() {
    let mut h = admitted();
    h.record(1, paid("pay-1"));
    let out = h.record(
        1,
        StepResult::DocumentsFailed {
            error: "templates down".into(),
        },
    );
    assert_eq!(
        out,
        Outcome::StepRecorded {
            status: Status::Pending,
            step: SagaStep::Void
        }
    );
    assert_eq!(totals(&h).0, 1, "the seat is held until the money is safe");
    assert_eq!(h.saga(1).cancel_cause, Some(CancelCause::DocumentsFailed));

    let out = h.record(1, StepResult::PaymentVoided { refunded: true });
    assert_eq!(
        out,
        Outcome::StepRecorded {
            status: Status::Cancelled,
            step: SagaStep::Notify
        }
    );
    assert_eq!(totals(&h), (0, Money::ZERO, 0, Money::ZERO));
    let saga = h.saga(1);
    assert!(saga.refunded);
    assert_eq!(
        saga.last_error.as_deref(),
        Some("templates down"),
        "the cause stays visible"
    );
    h.record(1, notified("msg-1"));
    let saga = h.saga(1);
    assert_eq!(saga.step, SagaStep::Done);
    assert_eq!(
        saga.last_error.as_deref(),
        Some("templates down"),
        "and once done"
    );
}

#[test]
fn an_exhausted_email_is_recorded_and_changes_nothing_else() {
    let mut h = admitted();
    h.record(1, paid("pay-1"));
    h.record(1, documented("doc-1"));
    let out = h.record(
        1,
        StepResult::NotifyFailed {
            error: "smtp 550".into(),
        },
    );
    assert_eq!(
        out,
        Outcome::StepRecorded {
            status: Status::Confirmed,
            step: SagaStep::Done
        }
    );
    let saga = h.saga(1);
    assert!(saga.notify_failed);
    assert_eq!(totals(&h), (1, money("100"), 1, money("100")));
}

#[test]
fn retries_are_progress_only() {
    let mut h = admitted();
    let out = h.record(
        1,
        StepResult::Retrying {
            step: SagaStep::Payment,
            attempts: 3,
            error: "timeout".into(),
        },
    );
    assert_eq!(
        out,
        Outcome::StepRecorded {
            status: Status::Pending,
            step: SagaStep::Payment
        }
    );
    let saga = h.saga(1);
    assert_eq!(
        (saga.attempts, saga.last_error.as_deref()),
        (3, Some("timeout"))
    );
    // Moving to the next step starts its count afresh.
    h.record(1, paid("pay-1"));
    assert_eq!((h.saga(1).attempts, h.saga(1).last_error), (0, None));
}

#[test]
fn results_for_another_step_are_ignored() {
    let mut h = admitted();
    h.record(1, paid("pay-1"));
    let before = h.state.investment(rid(1));
    // A late duplicate of the payment result, and a result of a step not reached yet.
    assert_eq!(
        h.record(1, paid("pay-2")),
        Outcome::StepIgnored(IgnoreReason::WrongStep)
    );
    assert_eq!(
        h.record(1, StepResult::PaymentVoided { refunded: false }),
        Outcome::StepIgnored(IgnoreReason::WrongStep)
    );
    assert_eq!(h.state.investment(rid(1)), before);
}

#[test]
fn results_for_unknown_or_rejected_requests_are_ignored() {
    let mut h = admitted();
    h.submit(2, "nope", "bob", "1");
    for (request, reason) in [
        (2, IgnoreReason::NoSaga),
        (99, IgnoreReason::UnknownInvestment),
    ] {
        let out = h.apply_one(Command::RecordStep(RecordStep {
            request_id: rid(request),
            executor: 2,
            epoch: 1,
            result: paid("p"),
        }));
        assert_eq!(out, Ok(Outcome::StepIgnored(reason)));
    }
}

#[test]
fn sagas_go_to_the_least_loaded_live_executor_other_than_the_leader() {
    let mut h = Harness::new();
    h.heartbeat(1);
    h.heartbeat(2);
    h.heartbeat(3);
    h.create_deal("d", "1000", 10);
    for n in 1..=4 {
        h.submit(n, "d", &format!("u{n}"), "1");
    }
    let owners: Vec<_> = (1..=4).map(|n| h.saga(n).assignee.unwrap()).collect();
    assert_eq!(
        owners,
        [2, 3, 2, 3],
        "leader 1 is skipped, load is balanced"
    );
    assert!(h.events.iter().all(|e| e.executor.is_some()));

    // With only the leader's executor alive, the leader takes the work rather than nobody.
    h.apply_one(Command::ExecutorRetire { node_id: 2 }).unwrap();
    h.apply_one(Command::ExecutorRetire { node_id: 3 }).unwrap();
    h.submit(5, "d", "u5", "1");
    assert_eq!(h.saga(5).assignee, Some(1));
    assert_eq!(
        h.state.executor_sagas(1).len(),
        5,
        "retired executors' sagas moved too"
    );
    // The sweep's ids-only form names the same sagas in the same order.
    for node in [1, 2, 3] {
        let ids: Vec<_> = h
            .state
            .executor_sagas(node)
            .iter()
            .map(|view| view.request_id)
            .collect();
        assert_eq!(h.state.executor_saga_ids(node), ids, "executor {node}");
    }
}

#[test]
fn a_lapsed_lease_moves_sagas_and_fences_the_old_owner() {
    let mut h = admitted();
    let old = h.saga(1);
    let old_owner = old.assignee.unwrap();
    let survivor = if old_owner == 2 { 3 } else { 2 };

    // Only the survivor keeps heartbeating; after the lease the saga is moved to it. (One
    // entry moves log time at most `log_time_step_max_ms`, hence three steps.)
    let lease = h.state.params().executor_lease_ms;
    h.time_ms += lease * 2 / 5;
    h.heartbeat(survivor);
    h.time_ms += lease * 2 / 5;
    h.heartbeat(survivor);
    h.time_ms += lease / 5 + 1;
    h.heartbeat(survivor);
    let new = h.saga(1);
    assert_eq!(new.assignee, Some(survivor));
    assert_eq!(new.epoch, old.epoch + 1);
    assert!(h
        .events
        .iter()
        .any(|e| e.request_id == rid(1) && e.executor == Some(survivor)));
    assert!(
        !h.state
            .executors()
            .iter()
            .find(|e| e.node_id == old_owner)
            .unwrap()
            .live
    );

    // The paused old owner wakes up and reports: ignored.
    let stale = h.apply_one(Command::RecordStep(RecordStep {
        request_id: rid(1),
        executor: old_owner,
        epoch: old.epoch,
        result: StepResult::PaymentDeclined {
            reason: "late".into(),
        },
    }));
    assert_eq!(stale, Ok(Outcome::StepIgnored(IgnoreReason::StaleEpoch)));
    assert_eq!(h.status(1), Status::Pending);
    // A right epoch from the wrong node is fenced too.
    let forged = h.apply_one(Command::RecordStep(RecordStep {
        request_id: rid(1),
        executor: old_owner,
        epoch: new.epoch,
        result: paid("p"),
    }));
    assert_eq!(forged, Ok(Outcome::StepIgnored(IgnoreReason::StaleEpoch)));
    // The new owner's result counts.
    assert_eq!(
        h.record(1, paid("p")),
        Outcome::StepRecorded {
            status: Status::Pending,
            step: SagaStep::Documents
        }
    );
}

#[test]
fn sagas_wait_unassigned_until_an_executor_is_live() {
    let mut h = Harness::new();
    h.create_deal("d", "1000", 10);
    h.submit(1, "d", "ana", "1");
    assert_eq!(h.saga(1).assignee, None);
    assert_eq!(h.state.unassigned_sagas().len(), 1);
    h.heartbeat(3);
    assert_eq!(h.saga(1).assignee, Some(3));
    assert!(h.state.unassigned_sagas().is_empty());

    // Every executor lapses: the saga waits again, then the first one back takes it.
    h.advance(h.state.params().executor_lease_ms + 1);
    assert_eq!(h.saga(1).assignee, None);
    h.heartbeat(3);
    assert_eq!(h.saga(1).assignee, Some(3));
    // Admission (nobody), node 3, nobody again, node 3 again: four assignments.
    assert_eq!(h.saga(1).epoch, 4);
}

#[test]
fn a_passed_deadline_compensates_in_log_time() {
    let mut h = admitted();
    h.record(1, paid("pay-1"));
    let deadline = h.saga(1).deadline_ms;
    assert_eq!(deadline, T0_MS + Params::default().saga_deadline_ms);

    // Heartbeats keep the executors alive; the deadline is reached exactly.
    while h.time_ms + 5_000 < deadline {
        h.time_ms += 5_000;
        h.heartbeat(2);
        h.heartbeat(3);
    }
    assert_eq!(h.saga(1).step, SagaStep::Documents);
    h.time_ms = deadline;
    h.heartbeat(2);
    h.heartbeat(3);
    let saga = h.saga(1);
    assert_eq!(
        (saga.step, saga.cancel_cause),
        (SagaStep::Void, Some(CancelCause::DeadlineExceeded))
    );
    // A late documents result is for a step the saga left.
    assert_eq!(
        h.record(1, documented("doc-1")),
        Outcome::StepIgnored(IgnoreReason::WrongStep)
    );
    h.record(1, StepResult::PaymentVoided { refunded: true });
    assert_eq!(h.status(1), Status::Cancelled);
    assert_eq!(totals(&h), (0, Money::ZERO, 0, Money::ZERO));
}

#[test]
fn confirmed_sagas_have_no_deadline() {
    let mut h = admitted();
    h.record(1, paid("pay-1"));
    h.record(1, documented("doc-1"));
    h.time_ms += Params::default().saga_deadline_ms * 2;
    h.heartbeat(2);
    h.heartbeat(3);
    assert_eq!(
        (h.status(1), h.saga(1).step),
        (Status::Confirmed, SagaStep::Notify)
    );
}

#[test]
fn operators_can_abort_a_stuck_saga_but_not_a_finished_one() {
    let mut h = admitted();
    assert_eq!(
        h.apply_one(Command::AbortSaga {
            request_id: rid(1),
            reason: "stuck at partner".into()
        }),
        Ok(Outcome::SagaAborted)
    );
    let saga = h.saga(1);
    assert_eq!(
        (saga.step, saga.cancel_cause),
        (SagaStep::Void, Some(CancelCause::Aborted))
    );
    assert_eq!(
        h.apply_one(Command::AbortSaga {
            request_id: rid(1),
            reason: String::new()
        }),
        Err(CommandError::NotCompensable {
            request_id: rid(1),
            step: SagaStep::Void
        })
    );
    assert_eq!(
        h.apply_one(Command::AbortSaga {
            request_id: rid(7),
            reason: String::new()
        }),
        Err(CommandError::InvestmentNotFound { request_id: rid(7) })
    );
}

#[test]
fn params_travel_through_the_log() {
    let mut h = Harness::new();
    let params = Params {
        saga_deadline_ms: 2_000,
        executor_lease_ms: 500,
        ..Params::default()
    };
    assert_eq!(
        h.apply_one(Command::SetParams(params)),
        Ok(Outcome::ParamsSet)
    );
    h.heartbeat(2);
    h.create_deal("d", "1000", 10);
    h.submit(1, "d", "ana", "1");
    assert_eq!(h.saga(1).deadline_ms, T0_MS + 2_000);
    h.advance(501);
    assert_eq!(h.saga(1).assignee, None, "the short lease lapsed");
    h.heartbeat(2);
    h.advance(1_499);
    assert_eq!(h.saga(1).step, SagaStep::Void);
}

#[test]
fn operators_list_open_sagas_oldest_first_and_filter_the_stuck_ones() {
    let mut h = admitted();
    h.advance(30_000);
    h.heartbeat(2);
    h.heartbeat(3);
    h.submit(2, "d", "bob", "100");
    assert!(matches!(
        h.submit(3, "nope", "cy", "1"),
        Verdict::Rejected(_)
    ));
    h.submit(4, "d", "dan", "100");
    // Request 4 runs to DONE; request 2 is retrying its payment.
    h.record(4, paid("pay-4"));
    h.record(4, documented("doc-4"));
    h.record(4, notified("msg-4"));
    h.record(
        2,
        StepResult::Retrying {
            step: SagaStep::Payment,
            attempts: 2,
            error: "timeout".into(),
        },
    );
    // Request 1 is 30 s old, request 2 just decided; they sit with different executors.
    assert_ne!(h.saga(1).assignee, h.saga(2).assignee);

    let listed = |h: &Harness, older_than_ms, failing, limit| -> Vec<RequestId> {
        let filter = SagaFilter {
            older_than_ms,
            failing,
        };
        let views = h.state.open_sagas(filter, limit);
        views.into_iter().map(|v| v.request_id).collect()
    };
    assert_eq!(h.state.open_saga_count(), 2);
    assert_eq!(listed(&h, 0, false, 100), [rid(1), rid(2)]);
    assert_eq!(listed(&h, 0, false, 1), [rid(1)]);
    assert_eq!(listed(&h, 30_000, false, 100), [rid(1)]);
    assert_eq!(listed(&h, 30_001, false, 100), []);
    assert_eq!(listed(&h, 0, true, 100), [rid(2)]);
    // Both criteria: old OR failing.
    assert_eq!(listed(&h, 30_000, true, 100), [rid(1), rid(2)]);
    assert_eq!(listed(&h, 60_000, true, 100), [rid(2)]);

    // A saga under compensation carries its cause as the error, so it shows as failing.
    h.apply_one(Command::AbortSaga {
        request_id: rid(1),
        reason: "stuck at partner".into(),
    })
    .unwrap();
    assert_eq!(listed(&h, 0, true, 100), [rid(1), rid(2)]);

    // Sagas waiting for an executor are open too, still in decision order.
    h.apply_one(Command::ExecutorRetire { node_id: 2 }).unwrap();
    h.apply_one(Command::ExecutorRetire { node_id: 3 }).unwrap();
    assert_eq!(h.state.unassigned_sagas().len(), 2);
    assert_eq!(h.state.open_saga_count(), 2);
    assert_eq!(listed(&h, 0, false, 100), [rid(1), rid(2)]);
    let views = h.state.open_sagas(SagaFilter::default(), 100);
    assert_eq!(views[0], h.state.investment(rid(1)).unwrap());
}

#[test]
fn cancellations_record_where_they_released_the_seat() {
    let mut h = admitted();
    h.record(
        1,
        StepResult::PaymentDeclined {
            reason: "no funds".into(),
        },
    );
    assert_eq!(h.saga(1).cancelled_at, Some((h.log_index, 0)));

    h.submit(2, "d", "bob", "100");
    h.record(2, paid("pay-2"));
    h.apply_one(Command::AbortSaga {
        request_id: rid(2),
        reason: "operator".into(),
    })
    .unwrap();
    assert_eq!(
        h.saga(2).cancelled_at,
        None,
        "compensating is not cancelled yet"
    );
    // Two commands in one entry: the void is the second, so its offset is 1.
    let saga = h.saga(2);
    let void = Command::RecordStep(RecordStep {
        request_id: rid(2),
        executor: saga.assignee.unwrap(),
        epoch: saga.epoch,
        result: StepResult::PaymentVoided { refunded: true },
    });
    h.apply(vec![
        Command::CloseDeal {
            deal_id: "x".into(),
        },
        void,
    ]);
    assert_eq!(h.status(2), Status::Cancelled);
    assert_eq!(h.saga(2).cancelled_at, Some((h.log_index, 1)));
    // A confirmed investment was never cancelled.
    h.submit(3, "d", "cyd", "100");
    h.record(3, paid("pay-3"));
    h.record(3, documented("doc-3"));
    assert_eq!(h.saga(3).cancelled_at, None);
}

#[test]
fn a_clock_jumping_ahead_moves_log_time_one_bounded_step_per_entry() {
    let mut h = admitted();
    let step = h.state.params().log_time_step_max_ms;
    let before = h.state.now_ms();
    let deadline = h.saga(1).deadline_ms;
    // A leader ten minutes ahead stamps two entries: log time moves one step per entry, so
    // neither the executors' leases nor the saga's deadline pass.
    h.time_ms += 600_000;
    h.heartbeat(2);
    assert_eq!(h.state.now_ms(), before + step);
    h.heartbeat(3);
    assert_eq!(h.state.now_ms(), before + 2 * step);
    assert!(h.state.now_ms() < deadline);
    assert_eq!(h.saga(1).step, SagaStep::Payment);
    assert!(h.state.executors().iter().all(|e| e.live));
    // A clock that jumps back only holds log time still.
    let now = h.state.now_ms();
    h.time_ms = T0_MS;
    h.heartbeat(2);
    assert_eq!(h.state.now_ms(), now);
}

#[test]
fn a_heartbeat_from_a_replica_far_behind_does_not_renew_the_lease() {
    let mut h = admitted();
    let owner = h.saga(1).assignee.unwrap();
    let other = if owner == 2 { 3 } else { 2 };
    let lag_max = h.state.params().executor_lag_max_entries;
    // The owner's replica stopped applying (its Raft died, or it fell far behind) while it still
    // sends heartbeats through the leader: they carry its old applied index.
    let stuck_at = h.log_index;
    h.log_index += lag_max; // entries the stuck replica never applied
    let lease = h.state.params().executor_lease_ms;
    for _ in 0..3 {
        h.time_ms += lease * 2 / 5;
        let refused = h.apply_one(Command::ExecutorHeartbeat {
            node_id: owner,
            applied_index: stuck_at,
        });
        assert!(
            matches!(refused, Ok(Outcome::HeartbeatRefused { lag }) if lag > lag_max),
            "{refused:?}"
        );
        h.heartbeat(other);
    }
    assert_eq!(h.saga(1).assignee, Some(other), "the lease lapsed");
    // Caught up again, the owner's heartbeat counts.
    h.heartbeat(owner);
    assert!(h.state.executors().iter().all(|e| e.live));
}

/// Log time reaches request 1's saga deadline while both executors stay live (the owner renews
/// its lease but never finishes the payment).
fn run_past_the_deadline(h: &mut Harness) {
    let deadline = h.saga(1).deadline_ms;
    while h.time_ms < deadline {
        h.time_ms = (h.time_ms + 2_500).min(deadline);
        let applied_index = h.log_index;
        let heartbeats = [2, 3].map(|node_id| Command::ExecutorHeartbeat {
            node_id,
            applied_index,
        });
        h.apply(heartbeats.to_vec());
    }
}

#[test]
fn a_passed_deadline_hands_the_compensation_to_another_live_executor() {
    let mut h = admitted();
    let owner = h.saga(1).assignee.unwrap();
    let other = if owner == 2 { 3 } else { 2 };
    let epoch = h.saga(1).epoch;
    run_past_the_deadline(&mut h);
    let saga = h.saga(1);
    assert_eq!(saga.step, SagaStep::Void);
    assert_eq!(saga.assignee, Some(other));
    assert!(saga.epoch > epoch, "the old owner is fenced");
    assert!(h
        .events
        .iter()
        .any(|e| e.request_id == rid(1) && e.executor == Some(other)));
    // With the other executor gone, the owner is still better than nobody.
    h.submit(2, "d", "bob", "100");
    h.apply_one(Command::ExecutorRetire { node_id: other })
        .unwrap();
    assert_eq!(h.saga(1).assignee, Some(owner));
}

/// The `(log index, epoch, change)` of each mark in a saga's history.
fn history(h: &Harness, request: u128) -> Vec<(u64, u64, SagaChange)> {
    h.saga(request)
        .history
        .iter()
        .map(|mark| (mark.log_index, mark.epoch, mark.change))
        .collect()
}

#[test]
fn the_history_records_each_assignment_and_each_step_with_its_retries() {
    let mut h = admitted();
    let decided_at = h.log_index;
    let owner = h.saga(1).assignee;
    assert_eq!(
        h.state.investment(rid(1)).unwrap().decided_by,
        Some(h.leader_id)
    );
    h.record(
        1,
        StepResult::Retrying {
            step: SagaStep::Payment,
            attempts: 2,
            error: "timeout".into(),
        },
    );
    h.time_ms += 10;
    h.record(1, paid("pay-1"));
    let paid_at = (h.log_index, h.time_ms);
    h.record(1, documented("doc-1"));
    h.record(1, notified("msg-1"));
    let ended = |result, retries| SagaChange::StepEnded { result, retries };
    assert_eq!(
        history(&h, 1),
        [
            (decided_at, 1, SagaChange::Assigned { executor: owner }),
            (paid_at.0, 1, ended(StepEnd::PaymentSucceeded, 2)),
            (paid_at.0 + 1, 1, ended(StepEnd::DocumentsGenerated, 0)),
            (paid_at.0 + 2, 1, ended(StepEnd::NotifySent, 0)),
        ]
    );
    assert_eq!(h.saga(1).history[1].at_ms, paid_at.1);
    assert_eq!(h.saga(1).history_dropped, 0);
}

#[test]
fn the_history_records_a_passed_deadline_and_the_reassignment_it_causes() {
    let mut h = admitted();
    let owner = h.saga(1).assignee.unwrap();
    let other = if owner == 2 { 3 } else { 2 };
    run_past_the_deadline(&mut h);
    let at = h.log_index;
    h.record(1, StepResult::PaymentVoided { refunded: false });
    assert_eq!(
        history(&h, 1)[1..],
        [
            (
                at,
                1,
                SagaChange::Compensating {
                    cause: CancelCause::DeadlineExceeded
                }
            ),
            (
                at,
                2,
                SagaChange::Assigned {
                    executor: Some(other)
                }
            ),
            (
                at + 1,
                2,
                SagaChange::StepEnded {
                    result: StepEnd::PaymentVoided { refunded: false },
                    retries: 0
                }
            ),
        ]
    );
}

#[test]
fn the_history_records_an_abort_and_stays_bounded() {
    let mut h = admitted();
    // Executors retire and come back, moving the saga every time: more changes than are kept.
    let changes = SAGA_HISTORY_MAX as u64 + 10;
    for _ in 0..changes / 2 {
        for node_id in [2, 3] {
            h.apply_one(Command::ExecutorRetire { node_id }).unwrap();
        }
        h.heartbeat(2);
        h.heartbeat(3);
    }
    assert_eq!(
        h.apply_one(Command::AbortSaga {
            request_id: rid(1),
            reason: "stuck".into(),
        }),
        Ok(Outcome::SagaAborted)
    );
    let saga = h.saga(1);
    assert_eq!(saga.history.len(), SAGA_HISTORY_MAX);
    // The first mark (the saga's start) and the last (the abort) are kept; the oldest
    // reassignments after the first went.
    assert_eq!(saga.history[0].epoch, 1);
    let last = saga.history.last().unwrap();
    assert_eq!(
        (last.log_index, last.epoch, last.change),
        (
            h.log_index,
            saga.epoch,
            SagaChange::Compensating {
                cause: CancelCause::Aborted
            }
        )
    );
    // One assignment mark per epoch (the first included), then the abort.
    let recorded = saga.epoch + 1;
    assert_eq!(
        saga.history_dropped as u64,
        recorded - SAGA_HISTORY_MAX as u64
    );
    assert!(saga
        .history
        .windows(2)
        .all(|pair| pair[0].log_index <= pair[1].log_index));
}

/// A history costs 40 bytes a mark (about 200 for an ordinary saga): a million sagas are held in
/// memory, so a wider mark is a decision, not an accident (docs/operations.md).
#[test]
fn a_history_mark_stays_small() {
    assert_eq!(std::mem::size_of::<SagaMark>(), 40);
}
