//! `Cluster.ArchiveDeal` and `ledgerctl deal archive` (issue #12 §3) on three nodes with
//! executors and partners: an open deal, one with sagas running, or a head other than the
//! deal's is refused; with its export, the deal is archived on every replica; afterwards its
//! queries answer NOT_FOUND "archived" on every node, a resubmission FAILED_PRECONDITION "deal
//! archived", and the replicas still agree.

use std::time::Duration;

use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, ctl, hex, pb};
use serde_json::Value;
use tonic::Code;

const DEAL: &str = "archived-deal";
const OTHER: &str = "live-deal";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_settled_deal_is_archived_with_its_export_and_answers_archived_everywhere() {
    bounded(Duration::from_secs(240), async {
        ctl::prepare().await;
        let saga = SagaCluster::start(3, saga::quiet_faults(0xa4c1)).await;
        let clients = saga.clients().await;
        let endpoints: Vec<String> = saga.cluster.endpoints();
        saga::create_deal(&clients[0], DEAL, "1000.00", 2).await;
        saga::create_deal(&clients[0], OTHER, "1000.00", 5).await;
        let mut rng = ledger_tests::Rng::new(0xa4c1_0001);
        let requests = saga::requests(&mut rng, &[DEAL], 3, "investor", (10_000, 20_000));
        let acked = saga::submit_all(&clients, requests).await;
        assert_eq!(saga::admitted(&acked).len(), 2, "two seats");
        let resubmitted = acked[0].request.clone();

        // Open: refused, and nothing changes.
        let head = saga::get_deal(&clients[0], DEAL)
            .await
            .unwrap()
            .receipt_head
            .expect("a head");
        let open = ctl::spawn(
            &endpoints,
            &[
                "deal",
                "archive",
                DEAL,
                "--receipt-head",
                &format!("{}:{}", head.deal_seq, hex(&head.hash)),
            ],
        )
        .await
        .finish(Duration::from_secs(60))
        .await;
        assert_ne!(open.code, Some(0), "{open:?}");
        assert!(
            open.stderr.contains("close it before archiving"),
            "{open:?}"
        );

        let mut admission = clients[1].admission.clone();
        admission
            .close_deal(pb::CloseDealRequest {
                deal_id: DEAL.into(),
            })
            .await
            .expect("CloseDeal");
        saga::wait_sagas_done(&clients[0], &[DEAL], Duration::from_secs(60)).await;

        // A head that is not the deal's (an export missing its last decision) is refused.
        let mut cluster = clients[2].cluster.clone();
        let stale = cluster
            .archive_deal(pb::ArchiveDealRequest {
                deal_id: DEAL.into(),
                receipt_head: Some(pb::Receipt {
                    deal_seq: head.deal_seq - 1,
                    hash: head.hash.clone(),
                }),
            })
            .await
            .expect_err("a stale head");
        assert_eq!(stale.code(), Code::FailedPrecondition, "{stale:?}");

        // Through a follower, with the export: archived.
        let dir = tempfile::tempdir().expect("a temporary folder");
        let file = dir.path().join("deal.jsonl");
        let file_arg = file.to_str().unwrap();
        ctl::run_ok(&endpoints, &["deal", "export", DEAL, "--out", file_arg]).await;
        let archived = ctl::run_ok(
            &endpoints,
            &["--json", "deal", "archive", DEAL, "--export", file_arg],
        )
        .await
        .json();
        assert_eq!(archived["archived"], Value::from(true), "{archived}");
        assert_eq!(
            archived["receipt_head"],
            Value::from(format!("{}:{}", head.deal_seq, hex(&head.hash)))
        );
        // A retry is answered the same, without a second archiving.
        let again = ctl::run_ok(
            &endpoints,
            &["--json", "deal", "archive", DEAL, "--export", file_arg],
        )
        .await
        .json();
        assert_eq!(again["archived"], Value::from(false), "{again}");
        assert_eq!(again["log_index"], archived["log_index"]);

        saga.cluster.wait_converged().await;
        for node in clients.iter() {
            let mut admission = node.admission.clone();
            let gone = admission
                .get_deal(pb::GetDealRequest {
                    deal_id: DEAL.into(),
                    consistency: pb::Consistency::Stale as i32,
                })
                .await
                .expect_err("archived");
            assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
            assert!(gone.message().contains("archived"), "{gone:?}");
            let listed = admission
                .list_investments(pb::ListInvestmentsRequest {
                    deal_id: DEAL.into(),
                    ..Default::default()
                })
                .await
                .expect_err("archived");
            assert_eq!(listed.code(), Code::NotFound, "{listed:?}");
            assert!(listed.message().contains("archived"), "{listed:?}");
        }
        let resubmission = admission
            .submit(resubmitted)
            .await
            .expect_err("an archived deal's request");
        assert_eq!(resubmission.code(), Code::FailedPrecondition);
        assert!(
            resubmission
                .message()
                .contains(&format!("deal {DEAL} archived")),
            "{resubmission:?}"
        );

        // The other deal goes on.
        let requests = saga::requests(&mut rng, &[OTHER], 2, "later", (10_000, 20_000));
        let acked = saga::submit_all(&clients, requests).await;
        assert_eq!(saga::admitted(&acked).len(), 2);
        saga::wait_sagas_done(&clients[0], &[OTHER], Duration::from_secs(60)).await;
        saga.cluster.wait_converged().await;
    })
    .await;
}
