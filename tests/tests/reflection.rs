//! Server reflection answers in both protocol versions: v1 (current grpcurl) and v1alpha, the
//! only one that Python's grpcio-reflection, older grpcurl and Postman speak. Each client below
//! speaks one version only, with nothing but the cluster CA (reflection needs no role), and must
//! list every service and resolve a method's file.
//!
//! The same from a tool built elsewhere: `buf curl --list-services` (Buf's gRPC client, the
//! grpcurl of the Buf tool chain; grpcurl itself is in no registry this project's CI can reach),
//! forced to each reflection version in turn. `.ci/run` installs it from npm
//! (`target/tools/node_modules/.bin/buf`, or `LEDGER_BUF`); without it the test is skipped with
//! a message, and fails when `CI=true`.

use std::path::PathBuf;
use std::time::Duration;

use ledger_client::{certs, Credentials};
use ledger_tests::{bounded, ClusterOptions, TestCluster};
use tonic::transport::Channel;
use tonic_reflection::pb::{v1, v1alpha};

/// What either version lists, besides its own reflection service.
const SERVICES: [&str; 4] = [
    "admission.v1.Admission",
    "admission.v1.Cluster",
    "admission.v1.Raft",
    "grpc.health.v1.Health",
];

/// [`SERVICES`] and the reflection service of `version`, sorted.
fn expected(version: &str) -> Vec<String> {
    let mut names = SERVICES.map(String::from).to_vec();
    names.push(format!("grpc.reflection.{version}.ServerReflection"));
    sorted(names)
}

/// A connection presenting no certificate and no token.
async fn anonymous(cluster: &TestCluster) -> Channel {
    let ca = certs::ca_path(&cluster.certs_dir().expect("a TLS cluster"));
    Credentials::tls(&ca, None)
        .expect("credentials")
        .endpoint(&cluster.addr(1), Duration::from_secs(5))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

/// `(services listed, files found for Admission.Submit)` from one reflection version; the two
/// versions' generated types have the same shape in different modules.
macro_rules! ask {
    ($version:ident, $channel:expr) => {{
        use $version::server_reflection_request::MessageRequest;
        use $version::server_reflection_response::MessageResponse;
        let name = stringify!($version);
        let mut client = $version::server_reflection_client::ServerReflectionClient::new($channel);
        let requests = [
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol("admission.v1.Admission.Submit".into()),
        ]
        .map(|message_request| $version::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(message_request),
        });
        let mut replies = client
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .unwrap_or_else(|status| panic!("{name}: {status:?}"))
            .into_inner();
        let (mut services, mut files) = (None, None);
        while let Some(reply) = replies.message().await.expect("a reply") {
            match reply.message_response.expect("a response") {
                MessageResponse::ListServicesResponse(list) => {
                    services = Some(list.service.into_iter().map(|s| s.name).collect())
                }
                MessageResponse::FileDescriptorResponse(found) => {
                    files = Some(found.file_descriptor_proto.len())
                }
                other => panic!("{name}: unexpected {other:?}"),
            }
        }
        (sorted(services.expect("services")), files.expect("a file"))
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_reflection_versions_list_the_services() {
    bounded(Duration::from_secs(60), async {
        let cluster = TestCluster::start(ClusterOptions::new(1).tls()).await;
        let (services, files) = ask!(v1, anonymous(&cluster).await);
        assert_eq!(services, expected("v1"));
        assert!(files >= 1, "v1 resolved no file for Admission.Submit");

        let (services, files) = ask!(v1alpha, anonymous(&cluster).await);
        assert_eq!(services, expected("v1alpha"));
        assert!(files >= 1, "v1alpha resolved no file for Admission.Submit");
    })
    .await;
}

/// `buf`, from `LEDGER_BUF` or where `.ci/run` installs it.
fn buf() -> Option<PathBuf> {
    let found = std::env::var_os("LEDGER_BUF")
        .map(PathBuf::from)
        .or_else(|| {
            Some(ledger_tests::binary::workspace_root().join("target/tools/node_modules/.bin/buf"))
        })
        .filter(|path| path.is_file());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "buf is missing (npm install --prefix target/tools @bufbuild/buf); .ci/run installs it"
        );
        eprintln!(
            "skipped: buf is not installed (npm install --prefix target/tools @bufbuild/buf)"
        );
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_reflection_client_lists_the_services_in_both_versions() {
    let Some(buf) = buf() else {
        return;
    };
    bounded(Duration::from_secs(60), async {
        let cluster = TestCluster::start(ClusterOptions::new(1).tls()).await;
        let ca = certs::ca_path(&cluster.certs_dir().expect("a TLS cluster"));
        for (protocol, version) in [("grpc-v1", "v1"), ("grpc-v1alpha", "v1alpha")] {
            let output = tokio::process::Command::new(&buf)
                .args([
                    "curl",
                    "--list-services",
                    "--protocol",
                    "grpc",
                    "--reflect-protocol",
                ])
                .arg(protocol)
                .arg("--cacert")
                .arg(&ca)
                .arg(format!("https://{}", cluster.addr(1)))
                .kill_on_drop(true)
                .output()
                .await
                .expect("run buf");
            let text = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "buf curl ({protocol}) failed: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let listed = sorted(text.lines().map(str::to_owned).collect());
            assert_eq!(listed, expected(version), "{protocol}");
        }
    })
    .await;
}
