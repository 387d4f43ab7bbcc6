//! Helpers shared by the tests that run the `ledger-partners` binary.

use std::time::Duration;

use tokio::process::{Child, Command};

/// Sends SIGTERM to `child` and asserts that it exits successfully within `wait`.
pub async fn stop_with_sigterm(mut child: Child, wait: Duration) {
    let pid = child.id().expect("running").to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("run kill");
    assert!(kill.success());
    let status = tokio::time::timeout(wait, child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}
