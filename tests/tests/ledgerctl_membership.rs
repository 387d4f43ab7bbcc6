//! `ledgerctl` takes a 3-node cluster through a membership change as an operator would: add
//! a learner, promote it, hand it the leadership, remove an old voter, with `cluster status`
//! showing each step; repeated changes propose nothing, and impossible ones are refused.

use std::collections::BTreeMap;
use std::time::Duration;

use ledger_tests::ctl::{self, run_ok};
use ledger_tests::{bounded, wait_until, ClusterOptions, TestCluster};
use serde_json::Value;

/// `node_id → role` in the membership the answering leader reports, from `cluster status --json`.
fn leader_view(status: &Value) -> Option<(u64, BTreeMap<u64, String>)> {
    let leader = status
        .as_array()?
        .iter()
        .find(|node| node["role"] == "leader")?;
    let members = leader["members"]
        .as_array()?
        .iter()
        .map(|m| {
            (
                m["node_id"].as_u64().unwrap_or(0),
                m["role"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    Some((leader["node_id"].as_u64()?, members))
}

fn roles(voters: &[u64], learners: &[u64]) -> BTreeMap<u64, String> {
    let mut roles: BTreeMap<u64, String> = voters.iter().map(|&v| (v, "VOTER".into())).collect();
    roles.extend(learners.iter().map(|&l| (l, "LEARNER".into())));
    roles
}

/// Waits until `cluster status` shows a leader whose membership is `expected` (and, if given,
/// that leader is `leader`).
async fn wait_status(endpoints: &[String], expected: &BTreeMap<u64, String>, leader: Option<u64>) {
    wait_until(
        Duration::from_secs(20),
        &format!("cluster status to show {expected:?} (leader {leader:?})"),
        || async {
            let status = run_ok(endpoints, &["--json", "cluster", "status"])
                .await
                .json();
            match leader_view(&status) {
                Some((id, members)) if &members == expected && leader.is_none_or(|l| l == id) => {
                    Ok(())
                }
                seen => Err(format!("{seen:?}")),
            }
        },
    )
    .await;
}

/// Runs `ledgerctl --json <args>` and expects the command refused (exit code 1) with `message`.
async fn refused(endpoints: &[String], args: &[&str], message: &str) {
    let mut json_args = vec!["--json"];
    json_args.extend_from_slice(args);
    let output = ctl::spawn(endpoints, &json_args)
        .await
        .finish(Duration::from_secs(60))
        .await;
    assert_eq!(output.code, Some(1), "{output:?}");
    let error = &output.json()["error"];
    assert_eq!(error["code"], "ERROR", "{output:?}");
    assert_eq!(error["message"], message, "{output:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledgerctl_adds_promotes_transfers_and_removes() {
    ledger_tests::ctl::prepare().await;
    bounded(Duration::from_secs(240), async {
        let mut cluster = TestCluster::start(ClusterOptions::new(3)).await;
        cluster.start_extra(4).await;
        let endpoints: Vec<String> = [1, 2, 3, 4].iter().map(|&id| cluster.addr(id)).collect();
        wait_status(&endpoints, &roles(&[1, 2, 3], &[]), None).await;

        let added = run_ok(
            &endpoints,
            &["--json", "member", "add-learner", "4", &cluster.addr(4)],
        )
        .await
        .json();
        assert!(added["log_index"].as_u64().unwrap_or(0) > 0, "{added}");
        wait_status(&endpoints, &roles(&[1, 2, 3], &[4]), None).await;

        refused(
            &endpoints,
            &["member", "remove", "4"],
            "node 4 is a learner; removing learners is not supported",
        )
        .await;
        refused(
            &endpoints,
            &["member", "promote", "9"],
            "node 9 is not a member: add it as a learner first",
        )
        .await;

        run_ok(&endpoints, &["--json", "member", "promote", "4"]).await;
        wait_status(&endpoints, &roles(&[1, 2, 3, 4], &[]), None).await;
        let again = run_ok(&endpoints, &["--json", "member", "promote", "4"])
            .await
            .json();
        assert_eq!(again["changed"], false, "{again}");

        let moved = run_ok(&endpoints, &["--json", "leader", "transfer", "4"])
            .await
            .json();
        assert_eq!(moved["leader_id"].as_u64(), Some(4), "{moved}");
        wait_status(&endpoints, &roles(&[1, 2, 3, 4], &[]), Some(4)).await;

        run_ok(&endpoints, &["--json", "member", "remove", "1"]).await;
        wait_status(&endpoints, &roles(&[2, 3, 4], &[]), Some(4)).await;
        let again = run_ok(&endpoints, &["--json", "member", "remove", "1"])
            .await
            .json();
        assert_eq!(again["changed"], false, "{again}");

        // The text form names the same membership.
        let text = run_ok(&endpoints, &["cluster", "status"]).await.stdout;
        assert!(text.contains("2:VOTER 3:VOTER 4:VOTER"), "{text}");
        // And the cluster still decides.
        run_ok(
            &endpoints,
            &["deal", "create", "after-change", "--amount", "1000.00"],
        )
        .await;
        let submitted = run_ok(
            &endpoints,
            &[
                "--json",
                "invest",
                "submit",
                "--deal",
                "after-change",
                "--user",
                "u1",
                "--amount",
                "10.00",
            ],
        )
        .await
        .json();
        assert_eq!(submitted["status"], "PENDING", "{submitted}");
        let crashed = cluster.exited();
        assert!(crashed.is_empty(), "a node exited: {crashed:?}");
    })
    .await;
}
