//! Running `ledgerctl` as a user would, bounded in time, and reading its JSON.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::binary::ledgerctl_binary;

/// A `ledgerctl` run's result.
#[derive(Debug)]
pub struct CtlOutput {
    /// Whether it exited with success.
    pub success: bool,
    /// Its exit code (`None` if a signal ended it).
    pub code: Option<i32>,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

impl CtlOutput {
    /// stdout as JSON; panics with both outputs if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "ledgerctl printed no JSON ({e}):\nstdout: {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

/// A `ledgerctl` started in the background; killed if dropped unfinished.
pub struct CtlRun {
    child: Option<Child>,
    out: tempfile::NamedTempFile,
    err: tempfile::NamedTempFile,
}

/// Finds or builds `ledgerctl`: call it before a test's time bound starts.
pub async fn prepare() {
    tokio::task::spawn_blocking(ledgerctl_binary)
        .await
        .expect("find or build ledgerctl");
}

/// Starts `ledgerctl --endpoints <endpoints> <args>` in the background.
pub async fn spawn(endpoints: &[String], args: &[&str]) -> CtlRun {
    let bin: PathBuf = tokio::task::spawn_blocking(|| ledgerctl_binary().to_path_buf())
        .await
        .expect("finding ledgerctl");
    let out = tempfile::NamedTempFile::new().expect("a file for stdout");
    let err = tempfile::NamedTempFile::new().expect("a file for stderr");
    let mut command = Command::new(bin);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LEDGER_") {
            command.env_remove(key);
        }
    }
    // Plaintext unless the test gives credentials (a cluster run with `--insecure`).
    if !args.contains(&"--ca") {
        command.env("LEDGER_INSECURE", "true");
    }
    let child = command
        .arg("--endpoints")
        .arg(endpoints.join(","))
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.reopen().expect("stdout file"))
        .stderr(err.reopen().expect("stderr file"))
        .spawn()
        .expect("start ledgerctl");
    CtlRun {
        child: Some(child),
        out,
        err,
    }
}

impl CtlRun {
    /// Waits for the run to end, at most `timeout` (then kills it and panics).
    pub async fn finish(mut self, timeout: Duration) -> CtlOutput {
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take().expect("a running ledgerctl");
        let status = loop {
            match child.try_wait().expect("wait for ledgerctl") {
                Some(status) => break status,
                None if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "ledgerctl did not finish within {timeout:?}; stderr: {}",
                        std::fs::read_to_string(self.err.path()).unwrap_or_default()
                    );
                }
            }
        };
        CtlOutput {
            success: status.success(),
            code: status.code(),
            stdout: std::fs::read_to_string(self.out.path()).unwrap_or_default(),
            stderr: std::fs::read_to_string(self.err.path()).unwrap_or_default(),
        }
    }
}

impl Drop for CtlRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `ledgerctl` to completion (at most 60 s) and expects success.
pub async fn run_ok(endpoints: &[String], args: &[&str]) -> CtlOutput {
    let output = spawn(endpoints, args)
        .await
        .finish(Duration::from_secs(60))
        .await;
    assert!(
        output.success,
        "ledgerctl {args:?} failed:\nstdout: {}\nstderr: {}",
        output.stdout, output.stderr
    );
    output
}
