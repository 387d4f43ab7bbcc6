//! The waitlist across processes (issue #12): a full one-seat deal waitlists those who opt in;
//! the leader is killed; an operator compensates the admitted investment, and the freed seat
//! goes to the first waitlisted request, which keeps its original log position, is told by
//! e-mail, paid and CONFIRMED, and whose watch stream shows WAITLISTED → PENDING → CONFIRMED. The second one
//! moves up, then is withdrawn. Every replica, the restarted one included, holds the same.

use std::time::Duration;

use ledger_client::{pb, status_of, Client, ClientConfig, ClientError, Submission};
use ledger_partners::AuditEntry;
use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, NodeClients};

const DEAL: &str = "waitlist";

async fn stale_investment(node: &NodeClients, request_id: &str) -> pb::Investment {
    node.admission
        .clone()
        .get_investment(pb::GetInvestmentRequest {
            request_id: request_id.to_owned(),
            consistency: pb::Consistency::Stale as i32,
        })
        .await
        .expect("a stale read of a decided request")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compensation_admits_the_waitlist_in_order_on_every_replica_across_a_leader_kill() {
    bounded(Duration::from_secs(150), async {
        let quiet = saga::quiet_faults(0x3a17);
        let mut saga = SagaCluster::start(3, quiet.clone()).await;
        let seeds: Vec<String> = saga.cluster.endpoints();
        let client = Client::connect(ClientConfig::new(seeds))
            .await
            .expect("connect");
        client
            .create_deal(pb::CreateDealRequest {
                deal_id: DEAL.into(),
                amount: "1000.00".into(),
                max_investors: 1,
                ..Default::default()
            })
            .await
            .expect("CreateDeal");

        // The payment partner is down: the admitted investment's saga cannot move.
        let mut outage = quiet.clone();
        outage.payment.outage = true;
        saga.set_faults(outage);
        let holder = Submission::new(DEAL, "holder", "400.00");
        let held = client.submit(&holder).await.expect("submit");
        assert_eq!(held.status(), pb::InvestmentStatus::Pending);
        let first = Submission::new(DEAL, "first", "300.00").waitlisted(None);
        let second = Submission::new(DEAL, "second", "200.00").waitlisted(Some(3_600_000));
        let first_decided = client.submit(&first).await.expect("submit");
        let second_decided = client.submit(&second).await.expect("submit");
        for (decided, position) in [(&first_decided, 1), (&second_decided, 2)] {
            assert_eq!(decided.status(), pb::InvestmentStatus::Waitlisted);
            assert_eq!(decided.investment.waitlist_position, position);
            assert!(decided.investment.waitlisted);
        }
        let plain = client
            .submit(&Submission::new(DEAL, "plain", "100.00"))
            .await
            .expect("submit");
        assert_eq!(
            plain.investment.reject_reason,
            pb::RejectReason::InvestorLimitReached as i32,
            "without the waitlist, the rejection is as before"
        );
        let deal = client.deal(DEAL).await.unwrap();
        assert_eq!(deal.waitlist_length, 2);
        // Four decisions, four links of the deal's receipt chain, in log order.
        let receipts: Vec<u64> = [&held, &first_decided, &second_decided, &plain]
            .iter()
            .map(|d| d.investment.receipt.as_ref().expect("a receipt").deal_seq)
            .collect();
        assert_eq!(receipts, [1, 2, 3, 4]);
        assert_eq!(
            deal.receipt_head,
            plain.investment.receipt.clone(),
            "the head is the last decision's receipt"
        );

        // Follow the first waitlisted request from now on, on a node that stays up.
        let old_leader = saga.cluster.leader().await;
        let watched_node = saga
            .cluster
            .running()
            .into_iter()
            .find(|&id| id != old_leader)
            .expect("a follower");
        let watch_addr = saga.cluster.addr(watched_node);
        let mut watcher = ledger_client::connect(&watch_addr).await.expect("connect");
        let mut stream = watcher
            .admission
            .watch_investment(pb::WatchInvestmentRequest {
                request_id: first.request_id.clone(),
            })
            .await
            .expect("watch")
            .into_inner();
        let watched = tokio::spawn(async move {
            let mut statuses = Vec::new();
            while let Ok(Some(update)) = stream.message().await {
                statuses.push(status_of(&update));
            }
            statuses
        });

        // The leader dies; an operator compensates the holder through the new one.
        saga.cluster.kill(old_leader);
        client
            .compensate_saga(&holder.request_id, "test: free the seat")
            .await
            .expect("CompensateSaga");
        // Only now may the partner answer: earlier, the holder's payment retry could succeed
        // and confirm it before the compensation (seen once in five runs).
        saga.set_faults(quiet.clone());
        let confirmed = client
            .wait_final(&first.request_id, Duration::from_secs(60))
            .await
            .expect("the first waitlisted request is admitted and settles");
        assert_eq!(status_of(&confirmed), pb::InvestmentStatus::Confirmed);
        assert_eq!(
            (confirmed.log_index, confirmed.offset),
            (first_decided.log_index, first_decided.offset),
            "it keeps its place in the log"
        );
        assert!(confirmed.admitted_log_index > first_decided.log_index);
        let holder_now = client
            .wait_final(&holder.request_id, Duration::from_secs(30))
            .await
            .expect("the holder settles");
        assert_eq!(status_of(&holder_now), pb::InvestmentStatus::Cancelled);
        assert!(
            (holder_now.cancelled_log_index, holder_now.cancelled_offset)
                <= (confirmed.admitted_log_index, confirmed.admitted_offset),
            "admitted by the cancellation that freed the seat"
        );
        // The investor admitted from the waitlist was told so, once; nobody else was.
        let admissions: Vec<(String, String)> = saga
            .audit()
            .events
            .into_iter()
            .filter_map(|event| match event.entry {
                AuditEntry::Email { key, subject, .. } if key.ends_with(":waitlist-admitted") => {
                    Some((key, subject))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            admissions,
            [(
                format!("{}:waitlist-admitted", first.request_id),
                format!("A seat in {DEAL} is yours")
            )]
        );

        // The watch saw the whole way (each saga step is an update: statuses repeat), and ended
        // at the terminal status.
        let mut statuses = watched.await.expect("the watch task");
        statuses.dedup();
        assert_eq!(
            statuses,
            [
                pb::InvestmentStatus::Waitlisted,
                pb::InvestmentStatus::Pending,
                pb::InvestmentStatus::Confirmed
            ]
        );

        // The second moved up; withdrawn, it ends REJECTED(WAITLIST_CLOSED). Only a waitlisted
        // request can be withdrawn.
        let second_now = client.investment(&second.request_id).await.unwrap();
        assert_eq!(status_of(&second_now), pb::InvestmentStatus::Waitlisted);
        assert_eq!(second_now.waitlist_position, 1);
        let withdrawn = client.withdraw(&second.request_id).await.expect("Withdraw");
        assert_eq!(status_of(&withdrawn), pb::InvestmentStatus::Rejected);
        assert_eq!(
            withdrawn.reject_reason,
            pb::RejectReason::WaitlistClosed as i32
        );
        match client.withdraw(&first.request_id).await {
            Err(ClientError::Conflict(message)) => {
                assert!(message.contains("not on a waitlist"), "{message}")
            }
            other => panic!("withdrawing a CONFIRMED request: {other:?}"),
        }
        // A resubmission replays the first decision: WAITLISTED at its position.
        let replayed = client.submit(&second).await.expect("resubmit");
        assert!(replayed.replayed);
        assert!(replayed.investment.waitlisted);
        assert_eq!(
            (replayed.log_index, replayed.offset),
            (second_decided.log_index, second_decided.offset)
        );

        // Every replica holds the same, the restarted one too.
        saga.cluster.restart(old_leader).await;
        saga.cluster.wait_converged().await;
        let nodes = saga.clients().await;
        for request in [&holder, &first, &second] {
            let seen: Vec<pb::Investment> = {
                let mut seen = Vec::new();
                for node in nodes.iter() {
                    seen.push(stale_investment(node, &request.request_id).await);
                }
                seen
            };
            assert!(
                seen.windows(2).all(|pair| pair[0] == pair[1]),
                "replicas differ on {}: {seen:?}",
                request.request_id
            );
        }
        // Money and effects: the holder voided (nothing kept), the first charged once with its
        // documents and e-mails, the withdrawn one never charged (I7).
        let investments = saga::wait_sagas_done(&nodes[0], &[DEAL], Duration::from_secs(60)).await;
        let report = saga::check_settled(&nodes[1], &[DEAL], &investments, &saga.audit()).await;
        assert_eq!(
            (report.confirmed, report.waitlist_emails),
            (1, 1),
            "{report:?}"
        );
        saga.assert_nodes_alive();
    })
    .await;
}
