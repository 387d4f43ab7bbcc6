//! Back-pressure from the sagas (issue #15): while `--open-sagas-max` admitted investments have
//! sagas still running, the leader refuses new submissions with `RESOURCE_EXHAUSTED`, marked
//! "not proposed" and with a pushback, and writes nothing for them; a resubmission of a decided
//! request is still answered; once the sagas end, the refused request is admitted. A cluster
//! without executors (decisions only, as the benches run) is not bound.

use std::time::Duration;

use ledger_client::{NOT_PROPOSED, OUTCOME_KEY, RETRY_PUSHBACK_KEY};
use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, pb, ClusterOptions, TestCluster};
use tonic::Code;

const DEAL: &str = "backlog";
/// The bound under test.
const OPEN_SAGAS_MAX: usize = 8;

fn submit(n: usize) -> pb::SubmitRequest {
    pb::SubmitRequest {
        request_id: format!("00000000-0000-4000-8000-{n:012}"),
        deal_id: DEAL.into(),
        user_id: format!("backlog-user-{n}"),
        amount: "10.00".into(),
        waitlist: false,
        waitlist_ttl_ms: None,
    }
}

fn status_of(reply: &pb::SubmitResponse) -> pb::InvestmentStatus {
    reply
        .investment
        .as_ref()
        .and_then(|inv| pb::InvestmentStatus::try_from(inv.status).ok())
        .unwrap_or(pb::InvestmentStatus::Unspecified)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_past_the_open_sagas_bound_are_refused_unwritten_until_sagas_end() {
    bounded(Duration::from_secs(120), async {
        // Payment and documents each take 1.5 s (under the executors' 2 s call timeout): every
        // saga stays open for at least 3 s, far longer than submitting the first ones takes.
        let mut faults = saga::quiet_faults(0x5a6a);
        faults.payment.latency = ledger_partners::Latency::new(1_500, 0);
        faults.documents.latency = ledger_partners::Latency::new(1_500, 0);
        let options = ClusterOptions::new(3).flag("--open-sagas-max", OPEN_SAGAS_MAX);
        let saga = SagaCluster::start_with(options, faults).await;
        let leader = saga.cluster.leader().await;
        let client = saga.cluster.client(leader).await;
        saga::create_deal(&client, DEAL, "100000.00", 100).await;

        // The bound's worth, at once: all admitted, their sagas open.
        let mut admitted = Vec::new();
        for n in 0..OPEN_SAGAS_MAX {
            let mut admission = client.admission.clone();
            admitted.push(tokio::spawn(async move {
                admission.submit(submit(n)).await.map(|r| r.into_inner())
            }));
        }
        for (n, reply) in admitted.into_iter().enumerate() {
            let reply = reply.await.expect("task").expect("admitted");
            assert_eq!(
                status_of(&reply),
                pb::InvestmentStatus::Pending,
                "{n}: {reply:?}"
            );
        }

        // One more: refused, nothing proposed, with the leader's suggested wait.
        let refused = client
            .admission
            .clone()
            .submit(submit(OPEN_SAGAS_MAX))
            .await
            .expect_err("refused while the sagas run");
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert!(
            refused.message().contains("--open-sagas-max"),
            "{}",
            refused.message()
        );
        let header = |key| {
            refused
                .metadata()
                .get(key)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(header(OUTCOME_KEY).as_deref(), Some(NOT_PROPOSED));
        assert_eq!(header(RETRY_PUSHBACK_KEY).as_deref(), Some("1000"));

        // A decided request is still answered, from the replica, without a new entry.
        let again = client
            .admission
            .clone()
            .submit(submit(0))
            .await
            .expect("a resubmission is answered")
            .into_inner();
        assert!(again.replayed, "{again:?}");

        // The refused request was not written.
        let unknown = client
            .admission
            .clone()
            .get_investment(pb::GetInvestmentRequest {
                request_id: submit(OPEN_SAGAS_MAX).request_id,
                ..Default::default()
            })
            .await
            .expect_err("never written");
        assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

        // Once the sagas end, it is admitted.
        let done = saga::wait_sagas_done(&client, &[DEAL], Duration::from_secs(60)).await;
        assert_eq!(done.len(), OPEN_SAGAS_MAX, "only the admitted ones exist");
        let late = client
            .admission
            .clone()
            .submit(submit(OPEN_SAGAS_MAX))
            .await
            .expect("room again")
            .into_inner();
        assert_eq!(status_of(&late), pb::InvestmentStatus::Pending, "{late:?}");
    })
    .await;
}

/// Postmortem (scripts/overload.sh, 2026-12-07): on clusters with every executor off, sagas stay
/// open (unassigned) forever, so the bound refused every submission past the first 100,000 and
/// the benches measured refusals. Without any executor the bound does not apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_executors_is_not_bound_by_its_open_sagas() {
    bounded(Duration::from_secs(60), async {
        let options = ClusterOptions::new(1)
            .executor(false)
            .flag("--open-sagas-max", OPEN_SAGAS_MAX);
        let cluster = TestCluster::start(options).await;
        let client = cluster.client(cluster.leader().await).await;
        saga::create_deal(&client, DEAL, "100000.00", 100).await;
        for n in 0..3 * OPEN_SAGAS_MAX {
            let reply = client
                .admission
                .clone()
                .submit(submit(n))
                .await
                .unwrap_or_else(|e| panic!("submission {n}: {e:?}"))
                .into_inner();
            assert_eq!(
                status_of(&reply),
                pb::InvestmentStatus::Pending,
                "{n}: {reply:?}"
            );
        }
    })
    .await;
}
