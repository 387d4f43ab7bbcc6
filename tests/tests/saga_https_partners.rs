//! Partners over HTTPS (issue #11, part 4): the partner simulator serves TLS with a throwaway CA
//! it generates (`SpawnedPartners::start_tls`), and the nodes reach it at `https://127.0.0.1:PORT`.
//!
//! - With `--partners-ca` naming that CA, a 3-node cluster confirms every investment, and the
//!   partners' audit holds exactly one charge per confirmed investment (plus the usual I7/I8
//!   checks of `saga::check_settled`).
//!   The nodes ask for HTTP/2 (`--partners-http2 true`), which they offer by ALPN; the
//!   simulator takes only HTTP/1.1 over TLS, so this also shows the fallback.
//! - Without it, a node trusts only the public web roots: its charge never completes (the
//!   investment stays PENDING at PAYMENT with the failure recorded), nothing is charged, and the
//!   simulator saw the node refuse its certificate (TLS alert UnknownCA). So the CA is checked.

use std::collections::BTreeMap;
use std::time::Duration;

use ledger_partners::{AuditEntry, ChargeStatus, SpawnedPartners};
use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, pb, wait_until, ClusterOptions, Rng, TestCluster};

const DEAL: &str = "https-deal";
/// Investments submitted in the happy case (all admitted).
const INVESTMENTS: usize = 20;

/// Partners serving HTTPS with a CA generated in `dir`.
async fn https_partners(dir: &std::path::Path, seed: u64) -> SpawnedPartners {
    let partners = SpawnedPartners::start_tls(saga::quiet_faults(seed), dir)
        .await
        .expect("start the partner simulator over https");
    assert!(
        partners.base_url().starts_with("https://127.0.0.1:"),
        "{}",
        partners.base_url()
    );
    partners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_trusting_the_partners_ca_confirm_every_investment() {
    bounded(Duration::from_secs(90), async {
        let certs = tempfile::tempdir().expect("a temporary folder");
        let partners = https_partners(certs.path(), 0x7115).await;
        let ca = partners.ca_path().expect("a CA").to_path_buf();
        let options = ClusterOptions::new(3)
            .executor(true)
            .flag("--partners-url", partners.base_url())
            .flag("--partners-ca", ca.display())
            .flag("--partners-http2", "true");
        let cluster = TestCluster::start(options).await;
        let saga = SagaCluster { cluster, partners };
        saga.wait_executors_live(&saga.cluster.running()).await;

        let clients = saga.clients().await;
        saga::create_deal(&clients[0], DEAL, "100000000.00", 100).await;
        let mut rng = Rng::new(0x7115_0001);
        let requests = saga::requests(&mut rng, &[DEAL], INVESTMENTS, "https", (1_000, 500_000));
        let acked = saga::submit_all(&clients, requests).await;
        let admitted = saga::admitted(&acked);
        assert_eq!(admitted.len(), INVESTMENTS, "every request fits the deal");

        let investments =
            saga::wait_sagas_done(&clients[0], &[DEAL], Duration::from_secs(40)).await;
        let audit = saga.audit();
        let report = saga::check_settled(&clients[1], &[DEAL], &investments, &audit).await;
        assert_eq!(report.confirmed, INVESTMENTS, "{report:?}");
        assert_eq!(
            (report.charges, report.declined_charges, report.refunds),
            (INVESTMENTS, 0, 0),
            "{report:?}"
        );

        // Exactly one charge per confirmed investment, under its payment key, and no other.
        let mut charges: BTreeMap<&str, usize> = BTreeMap::new();
        for event in &audit.events {
            if let AuditEntry::Charge { key, status, .. } = &event.entry {
                assert_eq!(*status, ChargeStatus::Succeeded, "{event:?}");
                *charges.entry(key.as_str()).or_default() += 1;
            }
        }
        let confirmed: BTreeMap<String, usize> = investments
            .iter()
            .filter(|inv| inv.status == pb::InvestmentStatus::Confirmed as i32)
            .map(|inv| (format!("{}:payment", inv.request_id), 1))
            .collect();
        assert_eq!(confirmed.len(), INVESTMENTS);
        let charges: BTreeMap<String, usize> = charges
            .into_iter()
            .map(|(key, n)| (key.to_owned(), n))
            .collect();
        assert_eq!(charges, confirmed, "one charge per confirmed investment");

        // Every node that called the partners trusted their certificate.
        let failures = saga.partners.partners().tls_failures();
        assert_eq!(failures.count, 0, "{failures:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_partners_ca_cannot_charge() {
    bounded(Duration::from_secs(60), async {
        let certs = tempfile::tempdir().expect("a temporary folder");
        let partners = https_partners(certs.path(), 0x7116).await;
        // No --partners-ca: the node trusts the public web roots only.
        let options = ClusterOptions::new(1)
            .executor(true)
            .flag("--partners-url", partners.base_url());
        let cluster = TestCluster::start(options).await;
        let saga = SagaCluster { cluster, partners };
        saga.wait_executors_live(&saga.cluster.running()).await;

        let clients = saga.clients().await;
        saga::create_deal(&clients[0], DEAL, "1000000.00", 10).await;
        let mut rng = Rng::new(0x7116_0001);
        let requests = saga::requests(&mut rng, &[DEAL], 1, "untrusting", (1_000, 50_000));
        let acked = saga::submit_all(&clients, requests).await;
        let admitted = saga::admitted(&acked);
        let [request_id] = admitted.as_slice() else {
            panic!("one admitted investment: {acked:?}");
        };

        // The node refused the simulator's certificate...
        let partners = saga.partners.partners();
        let failures = partners
            .wait_for_tls_failures(1, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| {
                panic!(
                    "the node never refused the certificate: {:?}",
                    partners.tls_failures()
                )
            });
        let refusal = failures.last.clone().unwrap_or_default();
        assert!(refusal.contains("UnknownCA"), "{failures:?}");

        // ...and recorded the failed charge: still PENDING at PAYMENT, the error naming the
        // partners' https URL and why the connection failed.
        let base = saga.partners.base_url();
        let stuck = wait_until(
            Duration::from_secs(20),
            "the failed charge recorded on the investment",
            || async {
                let inv = saga::investment(&clients[0], request_id).await?;
                if inv.attempts >= 1 && !inv.last_error.is_empty() {
                    Ok(inv)
                } else {
                    Err(format!("{inv:?}"))
                }
            },
        )
        .await;
        assert_eq!(
            (stuck.status(), stuck.saga_step()),
            (pb::InvestmentStatus::Pending, pb::SagaStep::Payment),
            "{stuck:?}"
        );
        assert!(stuck.last_error.contains(&base), "{stuck:?}");
        assert!(stuck.last_error.contains("certificate"), "{stuck:?}");
        assert!(stuck.payment_id.is_empty(), "{stuck:?}");
        assert!(
            partners.audit().events.is_empty(),
            "nothing reached the partners: {:?}",
            partners.audit()
        );
    })
    .await;
}
