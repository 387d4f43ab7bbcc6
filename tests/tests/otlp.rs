//! `--otlp-endpoint` (issue #14 §4): the nodes export their spans over OTLP/HTTP to a local
//! receiver stub; a request's `submit` span and its saga's `saga_step` spans arrive in the
//! trace of the client's `traceparent`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, wait_until, ClusterOptions, Rng};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// What the stub received: `(path, body)` of every request.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An OTLP/HTTP receiver on loopback that accepts every export (HTTP/1.1, keep-alive) and
/// keeps the bodies; returns its base URL. It stops with the test's runtime.
async fn receiver(received: Received) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let received = received.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = BufReader::new(read);
                loop {
                    let mut request_line = String::new();
                    if read.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("")
                        .to_owned();
                    let mut length = 0usize;
                    loop {
                        let mut header = String::new();
                        if read.read_line(&mut header).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    // Bounded: an export is far below this.
                    let mut body = vec![0u8; length.min(64 << 20)];
                    if read.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    received.lock().unwrap().push((path, body));
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n\
                                 content-length: 0\r\n\r\n";
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_collector_in_the_clients_trace() {
    bounded(Duration::from_secs(120), async {
        let received: Received = Arc::default();
        let url = receiver(received.clone()).await;
        let saga = SagaCluster::start_with(
            ClusterOptions::new(3).flag("--otlp-endpoint", &url),
            saga::quiet_faults(0x0714),
        )
        .await;
        let clients = saga.clients().await;
        saga::create_deal(&clients[0], "otlp", "100000000.00", 10).await;
        let trace_id: [u8; 16] = *b"otlp-trace-id-01";
        let traceparent = format!(
            "00-{}-00f067aa0ba902b7-01",
            trace_id
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let mut rng = Rng::new(0x0714_0001);
        let submit = saga::requests(&mut rng, &["otlp"], 1, "otlp", (1_000, 5_000)).remove(0);
        let mut request = tonic::Request::new(submit);
        request
            .metadata_mut()
            .insert("traceparent", traceparent.parse().unwrap());
        let mut admission = clients[1].admission.clone();
        admission.submit(request).await.expect("decided");
        saga::wait_sagas_done(&clients[0], &["otlp"], Duration::from_secs(60)).await;

        wait_until(
            Duration::from_secs(30),
            "the client's trace, with submit and saga_step spans, at the collector",
            || {
                let received = received.clone();
                async move {
                    let received = received.lock().unwrap();
                    let traced: Vec<&Vec<u8>> = received
                        .iter()
                        .filter(|(path, body)| path == "/v1/traces" && contains(body, &trace_id))
                        .map(|(_, body)| body)
                        .collect();
                    let has = |name: &[u8]| traced.iter().any(|body| contains(body, name));
                    match (has(b"submit"), has(b"saga_step")) {
                        (true, true) => Ok(()),
                        seen => Err(format!(
                            "{} exports, {} with the trace; submit, saga_step seen: {seen:?}",
                            received.len(),
                            traced.len()
                        )),
                    }
                }
            },
        )
        .await;
    })
    .await;
}
