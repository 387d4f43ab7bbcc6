//! `ledgerctl deal export` and `deal verify` (issue #12 §3–4): a real export verifies, and so
//! does an investor's receipt in it; an export with one decision altered, two reordered or one
//! removed does not.

use std::path::Path;
use std::time::Duration;

use ledger_client::{pb, Client, ClientConfig, Submission};
use ledger_tests::{bounded, ctl, hex, ClusterOptions, TestCluster};
use serde_json::Value;

const DEAL: &str = "exported";

/// Writes `lines` as a copy of the export at `from` (manifest included) named `name`.
fn tampered(from: &Path, name: &str, lines: &[&str]) -> std::path::PathBuf {
    let dir = from.parent().expect("a folder");
    let path = dir.join(name);
    std::fs::write(
        &path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let manifest = |p: &Path| {
        let mut name = p.as_os_str().to_owned();
        name.push(".manifest.json");
        std::path::PathBuf::from(name)
    };
    std::fs::copy(manifest(from), manifest(&path)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_verifies_and_any_change_to_its_decisions_is_caught() {
    bounded(Duration::from_secs(120), async {
        ctl::prepare().await;
        let cluster = TestCluster::start(ClusterOptions::new(1)).await;
        let endpoints: Vec<String> = cluster.endpoints();
        let client = Client::connect(ClientConfig::new(endpoints.clone()))
            .await
            .expect("connect");
        client
            .create_deal(pb::CreateDealRequest {
                deal_id: DEAL.into(),
                amount: "1000.00".into(),
                max_investors: 2,
                ..Default::default()
            })
            .await
            .expect("CreateDeal");
        let mut receipts = Vec::new();
        for (user, amount, waitlist) in [
            ("ana", "100.00", false),
            ("bob", "200.00", false),
            ("cyd", "300.00", true),
            ("dee", "400.00", false),
        ] {
            let mut submission = Submission::new(DEAL, user, amount);
            if waitlist {
                submission = submission.waitlisted(None);
            }
            let decided = client.submit(&submission).await.expect("submit");
            receipts.push(decided.investment.receipt.expect("a receipt"));
        }

        let dir = tempfile::tempdir().expect("a temporary folder");
        let file = dir.path().join("exported.jsonl");
        let file_arg = file.to_str().unwrap();
        let written = ctl::run_ok(
            &endpoints,
            &["--json", "deal", "export", DEAL, "--out", file_arg],
        )
        .await
        .json();
        assert_eq!(written["decisions"], Value::from(4));
        let ok = ctl::run_ok(&endpoints, &["--json", "deal", "verify", file_arg])
            .await
            .json();
        assert_eq!(ok["verified"], Value::from(true));
        assert_eq!(
            ok["receipt_head"],
            Value::from(format!("4:{}", hex(&receipts[3].hash)))
        );
        // An investor's receipt is in it; a forged one is not.
        let held = format!("3:{}", hex(&receipts[2].hash));
        ctl::run_ok(
            &endpoints,
            &["deal", "verify", file_arg, "--receipt", &held],
        )
        .await;
        let forged = format!("3:{}", hex(&receipts[1].hash));
        let refused = ctl::spawn(
            &endpoints,
            &["deal", "verify", file_arg, "--receipt", &forged],
        )
        .await
        .finish(Duration::from_secs(60))
        .await;
        assert_eq!(refused.code, Some(1), "{refused:?}");
        assert!(refused.stderr.contains("not in this chain"), "{refused:?}");

        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        let altered = lines[1].replace("\"200.00\"", "\"20.00\"");
        assert_ne!(altered, lines[1]);
        let cases = [
            (
                "altered",
                vec![lines[0], &altered, lines[2], lines[3]],
                "line 2",
            ),
            (
                "reordered",
                vec![lines[0], lines[2], lines[1], lines[3]],
                "line 2",
            ),
            ("removed", vec![lines[0], lines[1], lines[3]], "line 3"),
            ("truncated", vec![lines[0], lines[1], lines[2]], "manifest"),
        ];
        for (name, copy, says) in cases {
            let path = tampered(&file, &format!("{name}.jsonl"), &copy);
            let failed = ctl::spawn(&endpoints, &["deal", "verify", path.to_str().unwrap()])
                .await
                .finish(Duration::from_secs(60))
                .await;
            assert_eq!(failed.code, Some(1), "{name}: {failed:?}");
            assert!(failed.stderr.contains(says), "{name}: {failed:?}");
        }
    })
    .await;
}
