//! Unknown payment outcomes (issue #4, scenario 4): 200 investments while 20% of payment calls
//! take effect but their reply is lost (held 3 s, past the node's 2 s timeout, or the connection
//! dropped), and 10% of new charges are declined. The executor retries with the same key, so no
//! investment is charged twice (one charge event per key), and none is cancelled while charged:
//! net charged equals the amount exactly for the CONFIRMED ones and is 0 for the others (I7);
//! every saga ends (I8). The nodes' logs show the unknown outcomes were met and retried.

use std::time::{Duration, Instant};

use ledger_partners::UnknownMode;
use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, pb, Rng};

const INVESTMENTS: usize = 200;
const DEAL: &str = "unknown";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_payment_outcomes_never_charge_twice() {
    bounded(Duration::from_secs(150), async {
        let started = Instant::now();
        let mut faults = saga::quiet_faults(0x0bad);
        faults.payment.unknown_rate = 0.2;
        faults.unknown_delay_ms = 3_000;
        faults.unknown_mode = UnknownMode::Mixed;
        faults.decline_rate = 0.1;
        let saga = SagaCluster::start(3, faults).await;
        let clients = saga.clients().await;
        saga::create_deal(&clients[0], DEAL, "100000000.00", 300).await;
        let mut rng = Rng::new(0x0bad_0001);
        let requests = saga::requests(&mut rng, &[DEAL], INVESTMENTS, "unknown", (1_000, 500_000));
        let acked = saga::submit_all(&clients, requests).await;
        assert_eq!(saga::admitted(&acked).len(), INVESTMENTS);

        let investments =
            saga::wait_sagas_done(&clients[1], &[DEAL], Duration::from_secs(90)).await;
        let report = saga::check_settled(&clients[2], &[DEAL], &investments, &saga.audit()).await;
        // check_sagas: one charge per key, net == amount iff CONFIRMED, else 0.
        assert_eq!(
            report.charges, INVESTMENTS,
            "one charge per key: {report:?}"
        );
        let declined = report.cancelled_with(pb::CancelCause::PaymentDeclined);
        assert_eq!(declined, report.declined_charges, "{report:?}");
        assert_eq!(
            report.cancelled_total(),
            declined,
            "only declines cancel: {report:?}"
        );
        assert_eq!(report.confirmed + declined, INVESTMENTS, "{report:?}");
        assert_eq!((report.refunds, report.voids), (0, 0), "{report:?}");
        let retried: Vec<u64> = saga
            .cluster
            .running()
            .into_iter()
            .filter(|&id| saga.cluster.latest_log_contains(id, "outcome unknown"))
            .collect();
        assert!(
            !retried.is_empty(),
            "no node logged an unknown payment outcome; the faults were not exercised"
        );
        eprintln!(
            "unknown payments: {INVESTMENTS} investments, {declined} declined; unknown outcomes \
             retried on nodes {retried:?}; {report:?}; {:?}",
            started.elapsed()
        );
    })
    .await;
}
