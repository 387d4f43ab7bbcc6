//! The architecture invariants of `ARCHITECTURE.md`, checked on the source text:
//! - openraft is named only under `node/src/raft/` and in `node/src/lib.rs` (the wiring);
//! - protobuf types (`ledger_proto::pb`, `ledger_proto::admission`) only under `node/src/grpc/`
//!   and in `node/src/lib.rs` (which registers the gRPC services);
//! - the state machine has no I/O, clock, thread, randomness or async: none of those crates in
//!   its dependencies, none of those `std` modules in its source.
//!
//! A use is a code line (comments dropped) naming the crate or the types; a log filter string
//! such as `openraft=warn` is not one.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, relative to the workspace root.
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a source folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read a source file");
                let name = path
                    .strip_prefix(root())
                    .expect("under the root")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((name, text));
            }
        }
    }
    out.sort();
    out
}

/// Code lines of `text` (comments and doc comments dropped) that contain `needle`.
fn uses(text: &str, needle: &str) -> Vec<String> {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .filter(|code| code.contains(needle))
        .map(|code| code.trim().to_owned())
        .collect()
}

fn check_rule(rule: &str, needles: &[&str], allowed: impl Fn(&str) -> bool) {
    let mut found = Vec::new();
    for (name, text) in sources(&root().join("node/src")) {
        if allowed(&name) {
            continue;
        }
        let lines: Vec<String> = needles.iter().flat_map(|n| uses(&text, n)).collect();
        if !lines.is_empty() {
            found.push(format!("{name} uses {rule}: {}", lines.join(" | ")));
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn openraft_is_named_only_in_the_raft_module_and_the_wiring() {
    check_rule("openraft", &["openraft::", "use openraft"], |name| {
        name.starts_with("node/src/raft/") || name == "node/src/lib.rs"
    });
}

#[test]
fn protobuf_types_are_named_only_in_the_grpc_module() {
    check_rule(
        "protobuf",
        &["ledger_proto::pb", "ledger_proto::admission", "pb::"],
        |name| name.starts_with("node/src/grpc/") || name == "node/src/lib.rs",
    );
}

#[test]
fn the_state_machine_has_no_io_clock_thread_randomness_or_async() {
    let manifest = std::fs::read_to_string(root().join("state-machine/Cargo.toml"))
        .expect("the state machine's manifest");
    let dependencies = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [dependencies] table");
    let forbidden_crates = [
        "tokio", "sled", "tonic", "prost", "openraft", "reqwest", "rand", "hyper", "axum",
        "tracing", "futures", "chrono", "time",
    ];
    for line in dependencies.lines() {
        let name = line.split(['=', '.']).next().unwrap_or_default().trim();
        assert!(
            !forbidden_crates.contains(&name),
            "state-machine depends on {name}: {line}"
        );
    }
    let forbidden_std = [
        "std::fs",
        "std::net",
        "std::thread",
        "std::env",
        "std::process",
        "SystemTime",
        "Instant",
        "async fn",
        ".await",
    ];
    let mut found = Vec::new();
    for (name, text) in sources(&root().join("state-machine/src")) {
        for needle in forbidden_std {
            for line in uses(&text, needle) {
                found.push(format!("{name}: {line}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "I/O, clocks or async in the state machine:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checks_see_what_they_look_for() {
    // The scanner itself: a use in code is found, one in a comment is not.
    assert_eq!(uses("use openraft::Raft; // x", "openraft").len(), 1);
    assert!(uses("// openraft in a comment", "openraft").is_empty());
    assert!(uses("/// doc about openraft", "openraft").is_empty());
    assert!(!sources(&root().join("node/src")).is_empty());
}
