//! libfaketime for the nodes of a [`crate::TestCluster`]: a node restarted with [`preload`]
//! reads its wall clock's offset from a file the test writes (`+600`, `-3600`, `+0`), re-read
//! every second; its monotonic clock stays real, as when NTP steps a machine's clock.

use std::path::{Path, PathBuf};

use crate::TestCluster;

/// The multi-threaded libfaketime, if installed. When it is not: panics with `CI=true` (`.ci/run`
/// installs it), else prints why and returns `None` so the test can skip.
pub fn library() -> Option<PathBuf> {
    let found = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file());
    crate::required_tool(found, "libfaketime", "apt-get install faketime")
}

/// Makes node `id`'s next runs read their clock offset from `clock_file` (written here as
/// `offset`, e.g. `"+0"`); restart the node for it to take effect.
pub fn preload(
    cluster: &mut TestCluster,
    id: u64,
    library: &Path,
    clock_file: &Path,
    offset: &str,
) {
    std::fs::write(clock_file, offset).expect("write the clock file");
    cluster.set_env(id, "LD_PRELOAD", library.to_string_lossy());
    cluster.set_env(id, "FAKETIME_TIMESTAMP_FILE", clock_file.to_string_lossy());
    cluster.set_env(id, "FAKETIME_DONT_FAKE_MONOTONIC", "1");
    cluster.set_env(id, "FAKETIME_CACHE_DURATION", "1");
}

/// Log time as node `node`'s replica has it (`ListSagas.now_ms`, linearizable through it).
pub async fn log_time(cluster: &TestCluster, node: u64) -> Result<u64, String> {
    let mut client = cluster.client(node).await;
    let call = client.cluster.list_sagas(crate::pb::ListSagasRequest {
        limit: 1,
        ..Default::default()
    });
    match tokio::time::timeout(std::time::Duration::from_secs(5), call).await {
        Ok(Ok(reply)) => Ok(reply.into_inner().now_ms),
        Ok(Err(status)) => Err(format!("ListSagas: {status}")),
        Err(_) => Err("ListSagas timed out".into()),
    }
}

/// The real wall clock in Unix milliseconds (this test process is never faked).
pub fn real_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
