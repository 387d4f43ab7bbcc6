//! Documents outage longer than the retry budget (issue #4, scenario 3): 100 investments while
//! the documents partner answers 503 to everything. Each saga charges, fails its 5 documents
//! attempts, compensates (void by the payment key, which refunds the charge) and ends CANCELLED
//! with cause DOCUMENTS_FAILED, `refunded`, net charged 0 (I7),
//! no document, one refund and one "cancelled" e-mail per investment; the deal has nothing
//! active. When the outage ends, 20 more investments are confirmed (I7, I8 over all 120).

use std::time::{Duration, Instant};

use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, pb, Rng};

/// Investments during the outage.
const DURING: usize = 100;
/// Investments after it.
const AFTER: usize = 20;
const DEAL: &str = "outage";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_outage_voids_refunds_and_cancels() {
    bounded(Duration::from_secs(120), async {
        let started = Instant::now();
        let mut faults = saga::quiet_faults(0x0d0c);
        faults.documents.outage = true;
        let saga = SagaCluster::start(3, faults).await;
        let clients = saga.clients().await;
        saga::create_deal(&clients[0], DEAL, "100000000.00", 200).await;
        let mut rng = Rng::new(0x0d0c_0001);
        let requests = saga::requests(&mut rng, &[DEAL], DURING, "outage", (1_000, 500_000));
        let acked = saga::submit_all(&clients, requests).await;
        assert_eq!(saga::admitted(&acked).len(), DURING);

        let investments =
            saga::wait_sagas_done(&clients[1], &[DEAL], Duration::from_secs(60)).await;
        let during_done = started.elapsed();
        let report = saga::check_settled(&clients[2], &[DEAL], &investments, &saga.audit()).await;
        assert_eq!(
            report.cancelled_with(pb::CancelCause::DocumentsFailed),
            DURING,
            "{report:?}"
        );
        assert_eq!(report.confirmed, 0, "{report:?}");
        assert_eq!(
            (
                report.charges,
                report.declined_charges,
                report.refunds,
                report.refunded
            ),
            (DURING, 0, DURING, DURING),
            "each charge refunded once: {report:?}"
        );
        assert_eq!((report.documents, report.voids), (0, 0), "{report:?}");
        assert_eq!(report.emails, DURING, "{report:?}");
        for inv in &investments {
            assert!(inv.refunded && inv.document_id.is_empty(), "{inv:?}");
        }
        let net = saga.audit().net_charged();
        assert_eq!(net.len(), DURING, "one payment key per investment");
        assert!(
            net.values().all(|kept| kept.is_zero()),
            "net charged 0 for each"
        );
        let deal = saga::get_deal(&clients[0], DEAL)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (deal.investor_count, deal.confirmed_count),
            (0, 0),
            "{deal:?}"
        );

        // The outage ends: new investments go through.
        saga.set_faults(saga::quiet_faults(0x0d0d));
        let requests = saga::requests(&mut rng, &[DEAL], AFTER, "after", (1_000, 500_000));
        let acked = saga::submit_all(&clients, requests).await;
        assert_eq!(saga::admitted(&acked).len(), AFTER);
        let investments =
            saga::wait_sagas_done(&clients[2], &[DEAL], Duration::from_secs(60)).await;
        let report = saga::check_settled(&clients[0], &[DEAL], &investments, &saga.audit()).await;
        assert_eq!(report.confirmed, AFTER, "{report:?}");
        assert_eq!(report.cancelled_total(), DURING, "{report:?}");
        assert_eq!(report.documents, AFTER, "{report:?}");
        eprintln!(
            "documents outage: {DURING} cancelled after {during_done:?}, {AFTER} confirmed \
             after it; {report:?}; total {:?}",
            started.elapsed()
        );
    })
    .await;
}
