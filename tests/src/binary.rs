//! Where the `ledger-node` and `ledgerctl` binaries are: `LEDGER_NODE_BIN` / `LEDGERCTL_BIN` if
//! set, else built once per test process with the same cargo, target folder and profile (debug
//! or release) that run the tests.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Upper bound on building the node (it may wait for another build's lock first).
const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);

static NODE_BINARY: OnceLock<PathBuf> = OnceLock::new();
static LEDGERCTL_BINARY: OnceLock<PathBuf> = OnceLock::new();

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

/// The path of a runnable `ledger-node`; builds it on first use unless `LEDGER_NODE_BIN` is set.
/// Blocks; panics, with cargo's output, if the build fails or takes longer than 20 minutes.
pub fn node_binary() -> &'static Path {
    NODE_BINARY.get_or_init(|| find_or_build("LEDGER_NODE_BIN", "ledger-node", "ledger-node"))
}

/// The path of a runnable `ledgerctl`, as [`node_binary`] (`LEDGERCTL_BIN` overrides).
pub fn ledgerctl_binary() -> &'static Path {
    LEDGERCTL_BINARY.get_or_init(|| find_or_build("LEDGERCTL_BIN", "ledgerctl", "ledgerctl"))
}

fn find_or_build(variable: &str, package: &str, bin: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{variable}={} is not a file",
            path.display()
        );
        return path;
    }
    build(package, bin)
}

fn build(package: &str, bin: &str) -> PathBuf {
    let root = workspace_root();
    let release = !cfg!(debug_assertions);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let log = tempfile::NamedTempFile::new().expect("a file for cargo's output");
    let mut command = Command::new(cargo);
    command.args(["build", "-p", package, "--bin", bin]);
    if release {
        command.arg("--release");
    }
    let mut child = command
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(log.path()).expect("open cargo's output file"))
        .spawn()
        .expect("run cargo to build a binary");
    let deadline = Instant::now() + BUILD_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("wait for cargo") {
            Some(status) => break status,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("cargo build -p {package} did not finish within {BUILD_TIMEOUT:?}");
            }
        }
    };
    assert!(
        status.success(),
        "cargo build -p {package} failed ({status}):\n{}",
        std::fs::read_to_string(log.path()).unwrap_or_default()
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_relative() {
                root.join(dir)
            } else {
                dir
            }
        })
        .unwrap_or_else(|| root.join("target"));
    let path = target
        .join(if release { "release" } else { "debug" })
        .join(bin);
    assert!(
        path.is_file(),
        "cargo built {bin} but {} does not exist",
        path.display()
    );
    path
}
