//! `ledgerctl` for scheduled deals and the waitlist (issue #12): `deal create --opens-in`,
//! `invest submit --waitlist [--waitlist-ttl]`, `invest withdraw`, and what `deal show` and
//! `invest show` print about them.

use std::time::{Duration, Instant};

use ledger_tests::{bounded, ctl, ClusterOptions, TestCluster};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledgerctl_schedules_deals_and_manages_the_waitlist() {
    bounded(Duration::from_secs(120), async {
        ctl::prepare().await;
        let cluster = TestCluster::start(ClusterOptions::new(1)).await;
        let endpoints: Vec<String> = cluster.endpoints();
        let created = ctl::run_ok(
            &endpoints,
            &[
                "--json",
                "deal",
                "create",
                "soon",
                "--amount",
                "1000",
                "--max-investors",
                "1",
                "--opens-in",
                "3s",
                "--max-waitlist",
                "5",
            ],
        )
        .await
        .json();
        assert_eq!(created["max_waitlist"], Value::from(5));
        let opens_at = created["opens_at_ms"].as_u64().expect("opens_at_ms");
        assert_eq!(created["closes_at_ms"], Value::Null);

        let submit = |user: &'static str, extra: &'static [&'static str]| {
            let endpoints = endpoints.clone();
            async move {
                let mut args = vec![
                    "--json", "invest", "submit", "--deal", "soon", "--user", user, "--amount",
                    "100",
                ];
                args.extend_from_slice(extra);
                ctl::run_ok(&endpoints, &args).await.json()
            }
        };
        // Before the opening: DEAL_NOT_OPEN. Then, polled until log time passes the opening
        // (bounded), the first request is admitted.
        let early = submit("ana", &[]).await;
        assert_eq!(
            early["reject_reason"],
            Value::from("DEAL_NOT_OPEN"),
            "{early}"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let admitted = loop {
            let reply = submit("ana", &[]).await;
            if reply["status"] == "PENDING" {
                break reply;
            }
            assert_eq!(
                reply["reject_reason"],
                Value::from("DEAL_NOT_OPEN"),
                "{reply}"
            );
            assert!(Instant::now() < deadline, "the deal never opened");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(admitted["decided_at_ms"].as_u64().unwrap() >= opens_at);

        // Full: --waitlist waits, with a time to live if asked.
        let waiting = submit("bob", &["--waitlist", "--waitlist-ttl", "10m"]).await;
        assert_eq!(waiting["status"], Value::from("WAITLISTED"), "{waiting}");
        assert_eq!(waiting["waitlist_position"], Value::from(1));
        assert_eq!(waiting["waitlist_ttl_ms"], Value::from(600_000));
        let refused = submit("cyd", &[]).await;
        assert_eq!(
            refused["reject_reason"],
            Value::from("INVESTOR_LIMIT_REACHED")
        );
        let shown = ctl::run_ok(&endpoints, &["--json", "deal", "show", "soon"])
            .await
            .json();
        assert_eq!(shown["waitlist_length"], Value::from(1));
        let line = ctl::run_ok(&endpoints, &["deal", "show", "soon"]).await;
        assert!(line.stdout.contains("waitlist 1"), "{}", line.stdout);

        // Withdrawn, it ends REJECTED WAITLIST_CLOSED; withdrawing an admitted one fails.
        let request_id = waiting["request_id"].as_str().unwrap().to_owned();
        let withdrawn = ctl::run_ok(&endpoints, &["--json", "invest", "withdraw", &request_id])
            .await
            .json();
        assert_eq!(
            (&withdrawn["status"], &withdrawn["reject_reason"]),
            (&Value::from("REJECTED"), &Value::from("WAITLIST_CLOSED"))
        );
        let admitted_id = admitted["request_id"].as_str().unwrap().to_owned();
        let refused = ctl::spawn(&endpoints, &["invest", "withdraw", &admitted_id])
            .await
            .finish(Duration::from_secs(60))
            .await;
        assert_eq!(refused.code, Some(1), "{refused:?}");
        assert!(refused.stderr.contains("not on a waitlist"), "{refused:?}");
        // A time to live without --waitlist is refused by ledgerctl itself.
        let bad = ctl::spawn(
            &endpoints,
            &[
                "invest",
                "submit",
                "--deal",
                "soon",
                "--user",
                "dee",
                "--amount",
                "1",
                "--waitlist-ttl",
                "1m",
            ],
        )
        .await
        .finish(Duration::from_secs(60))
        .await;
        assert_eq!(bad.code, Some(2), "{bad:?}");
    })
    .await;
}
