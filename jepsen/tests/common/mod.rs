//! What the real-process tests share: whether this machine can run them, and the binaries.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ledger_jepsen::nemesis::Family;
use ledger_jepsen::run::RunConfig;

/// `Ok` when the harness can run here; outside CI a missing capability skips the test (with a
/// message), with `CI=true` it fails it.
pub fn can_run() -> bool {
    match ledger_jepsen::net::preflight() {
        Ok(()) => true,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the Jepsen suite cannot run on this CI machine: {why:#}"
            );
            eprintln!("skipped: {why:#}");
            false
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the jepsen crate lives in the workspace")
        .to_path_buf()
}

/// Builds `bin` of `package` (with `features`) in this test's profile and returns its path.
pub fn build(package: &str, bin: &str, features: &[&str]) -> PathBuf {
    let release = !cfg!(debug_assertions);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace())
        .args(["build", "-p", package, "--bin", bin]);
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    if release {
        command.arg("--release");
    }
    let status = command.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build -p {package} --bin {bin} failed"
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target
        .join(if release { "release" } else { "debug" })
        .join(bin)
}

/// A run of `family` for `seconds`, reports under the target folder.
pub fn config(family: Family, seconds: u64, seed: u64, node_bin: PathBuf) -> RunConfig {
    let partners_bin = build("ledger-partners", "ledger-partners", &[]);
    let out = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("jepsen-runs");
    RunConfig {
        family,
        time: Duration::from_secs(seconds),
        seed,
        voters: 3,
        rate: 100.0,
        workers: 8,
        out,
        node_bin,
        partners_bin,
        executors: true,
        liveness_timeout: Duration::from_secs(120),
    }
}
