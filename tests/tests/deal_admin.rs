//! `ListDeals` and `CloseDeal` end to end, through gRPC and `ledgerctl`: deals are listed in
//! creation order, page by page, the same on every node; closing a deal (through a follower)
//! changes only its status, keeps the investments it admitted, refuses new requests with
//! `DEAL_CLOSED` while resubmissions still replay, is idempotent, and an unknown deal is
//! `NOT_FOUND` (ledgerctl: exit code 1 with the reason).

use std::time::Duration;

use ledger_tests::check::money;
use ledger_tests::load::{self, Acked};
use ledger_tests::saga;
use ledger_tests::{bounded, ctl, pb, ClusterOptions, NodeClients, TestCluster};
use serde_json::Value;
use tonic::Code;

const DEALS: usize = 5;

fn deal_id(n: usize) -> String {
    format!("list-{n}")
}

async fn list_page(
    node: &NodeClients,
    page_size: u32,
    page_token: &str,
    consistency: pb::Consistency,
) -> pb::ListDealsResponse {
    node.admission
        .clone()
        .list_deals(pb::ListDealsRequest {
            page_size,
            page_token: page_token.into(),
            consistency: consistency as i32,
        })
        .await
        .expect("ListDeals")
        .into_inner()
}

async fn submit(node: &NodeClients, request: pb::SubmitRequest) -> Acked {
    load::submit_to(node, request).await
}

fn request(deal: &str, user: &str) -> pb::SubmitRequest {
    pb::SubmitRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        deal_id: deal.into(),
        user_id: user.into(),
        amount: money(10_000),
        waitlist: false,
        waitlist_ttl_ms: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deals_are_listed_in_order_and_closed_once() {
    ctl::prepare().await;
    bounded(Duration::from_secs(90), async {
        let cluster = TestCluster::start(ClusterOptions::new(3)).await;
        let leader = cluster.leader().await;
        let follower_id = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
        let nodes = load::connect_all(&cluster, &cluster.ids()).await;
        let follower = cluster.client(follower_id).await;
        let endpoints: Vec<String> = cluster.endpoints();

        // Five deals, created through every node in turn, with different terms.
        let mut created = Vec::new();
        for n in 0..DEALS {
            let node = &nodes[n % nodes.len()];
            let deal = node
                .admission
                .clone()
                .create_deal(pb::CreateDealRequest {
                    deal_id: deal_id(n),
                    amount: money(1_000_000 * (n as u64 + 1)),
                    max_investors: 10 + n as u32,
                    min_ticket: (n == 2).then(|| "50.00".to_owned()),
                    max_ticket: None,
                    opens_at_ms: None,
                    closes_at_ms: None,
                    max_waitlist: 0,
                })
                .await
                .expect("CreateDeal")
                .into_inner();
            created.push(deal);
        }

        // Pages of two, through a follower: creation order, a token until the last page.
        let mut listed = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = list_page(&follower, 2, &token, pb::Consistency::Linearizable).await;
            pages += 1;
            assert!(page.deals.len() <= 2, "{page:?}");
            listed.extend(page.deals);
            if page.next_page_token.is_empty() {
                break;
            }
            assert!(pages < DEALS, "the listing does not end");
            token = page.next_page_token;
        }
        assert_eq!(pages, 3);
        assert_eq!(
            listed, created,
            "ListDeals lists the deals as created, in order"
        );
        // The default page holds them all.
        let whole = list_page(&follower, 0, "", pb::Consistency::Linearizable).await;
        assert_eq!(whole.deals, created);
        assert!(whole.next_page_token.is_empty());

        // An investment in list-1, then list-1 closed through the follower: only the status
        // changes; the admitted investment keeps its seat.
        let ana = submit(&follower, request(&deal_id(1), "ana")).await;
        assert!(ana.decision().admitted());
        let open = saga::get_deal(&nodes[0], &deal_id(1))
            .await
            .expect("GetDeal");
        assert_eq!(open.investor_count, 1);
        let closed = follower
            .admission
            .clone()
            .close_deal(pb::CloseDealRequest {
                deal_id: deal_id(1),
            })
            .await
            .expect("CloseDeal")
            .into_inner();
        assert_eq!(closed.status(), pb::DealStatus::Closed);
        assert_eq!(
            pb::Deal {
                status: pb::DealStatus::Open as i32,
                closed_log_index: 0,
                closed_offset: 0,
                ..closed.clone()
            },
            open,
            "closing changed more than the status and where it closed"
        );
        assert!(
            closed.closed_log_index > 0,
            "the CloseDeal's position: {closed:?}"
        );

        // Closed: a new request is refused, a decided one still replays, closing again
        // answers the same deal, an unknown deal is NOT_FOUND.
        let bo = submit(&nodes[2], request(&deal_id(1), "bo")).await;
        assert_eq!(bo.decision().reason, pb::RejectReason::DealClosed as i32);
        let again = submit(&nodes[2], ana.request.clone()).await;
        assert!(again.response.replayed);
        assert_eq!(again.decision(), ana.decision());
        let reclosed = nodes[0]
            .admission
            .clone()
            .close_deal(pb::CloseDealRequest {
                deal_id: deal_id(1),
            })
            .await
            .expect("CloseDeal again")
            .into_inner();
        // The same deal, but for its receipt chain, which the rejection of bo extended.
        assert_eq!(
            reclosed.receipt_head.as_ref().map(|r| r.deal_seq),
            closed.receipt_head.as_ref().map(|r| r.deal_seq + 1)
        );
        assert_eq!(
            pb::Deal {
                receipt_head: closed.receipt_head.clone(),
                ..reclosed
            },
            closed
        );
        let unknown = follower
            .admission
            .clone()
            .close_deal(pb::CloseDealRequest {
                deal_id: "no-such-deal".into(),
            })
            .await;
        assert_eq!(
            unknown.map(|_| ()).map_err(|e| e.code()),
            Err(Code::NotFound)
        );

        // ledgerctl: close list-3, fail on an unknown deal, list them all.
        let shown = ctl::run_ok(&endpoints, &["--json", "deal", "close", &deal_id(3)])
            .await
            .json();
        assert_eq!(
            (&shown["deal_id"], &shown["status"]),
            (&Value::from(deal_id(3)), &Value::from("CLOSED")),
            "{shown}"
        );
        let missing = ctl::spawn(&endpoints, &["deal", "close", "no-such-deal"])
            .await
            .finish(Duration::from_secs(60))
            .await;
        assert_eq!(missing.code, Some(1), "{missing:?}");
        assert!(
            missing.stderr.contains("no-such-deal") && missing.stderr.contains("not found"),
            "{missing:?}"
        );
        let all = ctl::run_ok(&endpoints, &["--json", "deal", "list"])
            .await
            .json();
        let rows: Vec<(String, String)> = all
            .as_array()
            .expect("a list")
            .iter()
            .map(|d| {
                (
                    d["deal_id"].as_str().expect("an id").to_owned(),
                    d["status"].as_str().expect("a status").to_owned(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = (0..DEALS)
            .map(|n| {
                let status = if n == 1 || n == 3 { "CLOSED" } else { "OPEN" };
                (deal_id(n), status.to_owned())
            })
            .collect();
        assert_eq!(rows, expected);

        // Every replica lists the same deals, read locally.
        cluster.wait_converged().await;
        let reference = list_page(&nodes[0], 0, "", pb::Consistency::Linearizable).await;
        for node in &nodes {
            let stale = list_page(node, 0, "", pb::Consistency::Stale).await;
            assert_eq!(stale.deals, reference.deals);
        }
    })
    .await;
}
