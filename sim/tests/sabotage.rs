//! The simulator catches the real-process suite's sabotage: `ledger-sim-sabotaged` is the
//! simulator built with `sabotage-skip-seat-check` (every node admits past a deal's seat limit),
//! and within 200 seeds a seed must fail, the seat limit (I1) named by the checker or by a node
//! refusing to load a snapshot that breaks it.

use std::path::PathBuf;
use std::process::Command;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

#[test]
fn a_build_that_skips_the_seat_check_fails_within_200_seeds() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let release = !cfg!(debug_assertions);
    let mut build = Command::new(cargo);
    build.current_dir(workspace()).args([
        "build",
        "-p",
        "ledger-sim",
        "--bin",
        "ledger-sim-sabotaged",
        "--features",
        "sabotage-skip-seat-check",
    ]);
    if release {
        build.arg("--release");
    }
    assert!(build.status().expect("cargo build").success());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let binary = target
        .join(if release { "release" } else { "debug" })
        .join("ledger-sim-sabotaged");
    let output = Command::new(binary)
        .args(["--seeds", "200", "--seed", "1", "--first-failure"])
        .output()
        .expect("run ledger-sim-sabotaged");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "the sabotage went unnoticed:\n{text}"
    );
    assert!(text.contains("FAIL seed"), "{text}");
    // Caught by the checker's capacity walk, or by a restarting node's own check of the
    // snapshot it loads (I1): either way the seat limit is named.
    let named = (text.contains("capacity") && text.contains("INVALID"))
        || text.contains("I1 investor limit violated");
    assert!(named, "{text}");
    let summary = text.lines().last().unwrap_or_default();
    assert!(summary.ends_with("1 failures"), "{summary}");
}
