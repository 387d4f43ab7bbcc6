//! Saga happy path (issue #4, scenario 1): 1,000 investments over four deals, submitted through
//! every node of a 3-node cluster whose nodes all run executors, against partners with no faults
//! (2 ± 2 ms latency). Every investment is admitted and ends CONFIRMED with its saga DONE (I8);
//! the partners hold exactly one succeeded charge, one document and one e-mail per investment's
//! keys and no refund (I7); every deal's counters equal its confirmed investments; and
//! `WatchInvestment` streams a few of them up to CONFIRMED.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, pb, Rng};

/// Investments submitted (all admitted).
const INVESTMENTS: usize = 1_000;
const DEALS: [&str; 4] = ["happy-a", "happy-b", "happy-c", "happy-d"];
/// Seats per deal: more than the 250 investments each receives.
const SEATS: u32 = 300;
/// Investments followed with `WatchInvestment`.
const WATCHED: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_investment_is_confirmed_with_one_effect_per_key() {
    bounded(Duration::from_secs(150), async {
        let started = Instant::now();
        let saga = SagaCluster::start(3, saga::quiet_faults(0x4a99)).await;
        let clients = saga.clients().await;
        for (i, deal) in DEALS.iter().enumerate() {
            saga::create_deal(&clients[i % clients.len()], deal, "100000000.00", SEATS).await;
        }
        let mut rng = Rng::new(0x4a99_0001);
        let requests = saga::requests(&mut rng, &DEALS, INVESTMENTS, "happy", (1_000, 500_000));
        let acked = saga::submit_all(&clients, requests).await;
        let admitted = saga::admitted(&acked);
        assert_eq!(admitted.len(), INVESTMENTS, "every request fits its deal");

        // A few investments followed from the start, through different nodes, to their end.
        let mut watches = Vec::new();
        for (n, id) in admitted.iter().take(WATCHED).enumerate() {
            let mut admission = clients[n % clients.len()].admission.clone();
            let request = pb::WatchInvestmentRequest {
                request_id: id.clone(),
            };
            watches.push(tokio::spawn(async move {
                let mut stream = admission
                    .watch_investment(request)
                    .await
                    .expect("WatchInvestment")
                    .into_inner();
                let mut statuses = Vec::new();
                // Bounded: a stream ends at a terminal status; each message within 60 s.
                for _ in 0..1_000 {
                    let next = tokio::time::timeout(Duration::from_secs(60), stream.message())
                        .await
                        .expect("WatchInvestment went silent")
                        .expect("WatchInvestment failed");
                    match next {
                        Some(inv) => statuses.push(inv.status),
                        None => return statuses,
                    }
                }
                panic!("WatchInvestment did not end after 1,000 messages");
            }));
        }

        let investments = saga::wait_sagas_done(&clients[0], &DEALS, Duration::from_secs(90)).await;
        let sagas_done = started.elapsed();
        let report = saga::check_settled(&clients[1], &DEALS, &investments, &saga.audit()).await;
        assert_eq!(report.admitted, INVESTMENTS);
        assert_eq!(report.confirmed, INVESTMENTS, "{report:?}");
        assert_eq!(report.cancelled_total(), 0, "{report:?}");
        assert_eq!(
            (
                report.charges,
                report.declined_charges,
                report.refunds,
                report.voids
            ),
            (INVESTMENTS, 0, 0, 0),
            "{report:?}"
        );
        assert_eq!(
            (report.documents, report.emails, report.notify_failed),
            (INVESTMENTS, INVESTMENTS, 0),
            "{report:?}"
        );

        for watch in watches {
            let statuses = watch.await.expect("a watch task panicked");
            assert_eq!(
                statuses.last(),
                Some(&(pb::InvestmentStatus::Confirmed as i32)),
                "the watch ends at CONFIRMED: {statuses:?}"
            );
        }

        // Executors preferably run on followers; at least two of them shared the work.
        let mut per_executor: BTreeMap<Option<u64>, usize> = BTreeMap::new();
        for inv in &investments {
            *per_executor.entry(inv.executor).or_default() += 1;
        }
        assert!(
            per_executor.len() >= 2,
            "the sagas ran on one executor only: {per_executor:?}"
        );
        eprintln!(
            "happy path: {INVESTMENTS} investments, sagas done after {sagas_done:?}, total \
             {:?}; sagas per executor {per_executor:?}",
            started.elapsed()
        );
    })
    .await;
}
