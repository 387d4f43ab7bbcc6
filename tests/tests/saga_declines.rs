//! Declined payments (issue #4, scenario 2): 200 investments fill a 200-seat deal while the
//! payment partner declines 20% of new charges. Declined investments end CANCELLED with cause
//! PAYMENT_DECLINED and release their seat and amount (the deal's active count equals its
//! confirmed count); nothing is refunded and nothing is kept for them (I7). Then, with declines
//! off, every declined user is admitted again under a new request id (their seats were freed),
//! which fills the deal again: a new user is refused for lack of seats, and a confirmed user for
//! already holding one (I3). Everything ends settled (I7, I8).

use std::time::{Duration, Instant};

use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, pb, Rng};

/// Seats of the deal, and investments of the first round (one per seat, all admitted).
const SEATS: u32 = 200;
const DEAL: &str = "declines";
const DECLINE_RATE: f64 = 0.2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_investments_are_cancelled_and_release_their_seats() {
    bounded(Duration::from_secs(120), async {
        let started = Instant::now();
        let mut faults = saga::quiet_faults(0xdec1);
        faults.decline_rate = DECLINE_RATE;
        let saga = SagaCluster::start(3, faults).await;
        let clients = saga.clients().await;
        saga::create_deal(&clients[0], DEAL, "100000000.00", SEATS).await;
        let mut rng = Rng::new(0xdec1_0001);
        let first = saga::requests(&mut rng, &[DEAL], SEATS as usize, "decl", (1_000, 500_000));
        let acked = saga::submit_all(&clients, first).await;
        assert_eq!(
            saga::admitted(&acked).len(),
            SEATS as usize,
            "one seat each"
        );

        // Round 1: ~20% declined.
        let investments =
            saga::wait_sagas_done(&clients[1], &[DEAL], Duration::from_secs(60)).await;
        let report = saga::check_settled(&clients[2], &[DEAL], &investments, &saga.audit()).await;
        let declined: Vec<&pb::Investment> = investments
            .iter()
            .filter(|inv| inv.cancel_cause == pb::CancelCause::PaymentDeclined as i32)
            .collect();
        assert_eq!(
            report.cancelled_with(pb::CancelCause::PaymentDeclined),
            declined.len()
        );
        assert_eq!(
            report.cancelled_total(),
            declined.len(),
            "only declines cancel: {report:?}"
        );
        assert!(
            (10..=80).contains(&declined.len()),
            "about 20% of {SEATS} declined, not {}",
            declined.len()
        );
        assert_eq!(
            report.confirmed + declined.len(),
            SEATS as usize,
            "{report:?}"
        );
        assert_eq!(report.declined_charges, declined.len(), "{report:?}");
        // Documents start beside the charge's log entry, but only after a definite success.
        assert_eq!(report.documents, report.confirmed, "{report:?}");
        assert_eq!(
            (report.refunds, report.voids, report.refunded),
            (0, 0, 0),
            "{report:?}"
        );
        for inv in &declined {
            assert_eq!(
                inv.status,
                pb::InvestmentStatus::Cancelled as i32,
                "{inv:?}"
            );
            assert!(!inv.refunded, "{inv:?}");
        }
        // Seats released: only the confirmed ones are active (check_settled checked the counters
        // against the listing; here against the numbers).
        let deal = saga::get_deal(&clients[0], DEAL)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(deal.investor_count as usize, report.confirmed);

        // Round 2: declined users come back with new request ids and are admitted into the freed
        // seats; with declines off, they are confirmed.
        let mut faults = saga::quiet_faults(0xdec2);
        faults.decline_rate = 0.0;
        saga.set_faults(faults);
        let again: Vec<pb::SubmitRequest> = declined
            .iter()
            .map(|inv| pb::SubmitRequest {
                request_id: rng.uuid(),
                deal_id: DEAL.to_owned(),
                user_id: inv.user_id.clone(),
                amount: inv.amount.clone(),
                waitlist: false,
                waitlist_ttl_ms: None,
            })
            .collect();
        let again_ids: Vec<String> = again.iter().map(|r| r.request_id.clone()).collect();
        let acked = saga::submit_all(&clients, again).await;
        assert_eq!(
            saga::admitted(&acked),
            again_ids,
            "every declined user is admitted again with a new request id"
        );

        // The deal is full again: a new user is refused for seats, a confirmed user for holding
        // one already.
        let confirmed_user = investments
            .iter()
            .find(|inv| inv.status == pb::InvestmentStatus::Confirmed as i32)
            .expect("some confirmed")
            .user_id
            .clone();
        let extra = vec![
            pb::SubmitRequest {
                request_id: rng.uuid(),
                deal_id: DEAL.to_owned(),
                user_id: "decl-newcomer".to_owned(),
                amount: "10.00".to_owned(),
                waitlist: false,
                waitlist_ttl_ms: None,
            },
            pb::SubmitRequest {
                request_id: rng.uuid(),
                deal_id: DEAL.to_owned(),
                user_id: confirmed_user,
                amount: "10.00".to_owned(),
                waitlist: false,
                waitlist_ttl_ms: None,
            },
        ];
        let refused = saga::submit_all(&clients, extra).await;
        let reasons: Vec<i32> = refused
            .iter()
            .map(|ack| {
                let inv = ack.response.investment.as_ref().expect("an investment");
                assert_eq!(inv.status, pb::InvestmentStatus::Rejected as i32, "{inv:?}");
                inv.reject_reason
            })
            .collect();
        assert_eq!(
            reasons,
            [
                pb::RejectReason::InvestorLimitReached as i32,
                pb::RejectReason::DuplicateInvestor as i32
            ]
        );

        let investments =
            saga::wait_sagas_done(&clients[2], &[DEAL], Duration::from_secs(60)).await;
        let report = saga::check_settled(&clients[0], &[DEAL], &investments, &saga.audit()).await;
        assert_eq!(
            report.admitted,
            SEATS as usize + declined.len(),
            "{report:?}"
        );
        assert_eq!(report.rejected, 2, "{report:?}");
        assert_eq!(
            report.confirmed, SEATS as usize,
            "every seat confirmed: {report:?}"
        );
        assert_eq!(report.cancelled_total(), declined.len(), "{report:?}");
        for id in &again_ids {
            let inv = investments
                .iter()
                .find(|inv| &inv.request_id == id)
                .expect("listed");
            assert_eq!(
                inv.status,
                pb::InvestmentStatus::Confirmed as i32,
                "{inv:?}"
            );
        }
        eprintln!(
            "declines: {SEATS} investments, {} declined and re-admitted; {report:?}; {:?}",
            declined.len(),
            started.elapsed()
        );
    })
    .await;
}
