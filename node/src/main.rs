//! The `ledger-node` binary. The replicated node lands with issue #3; until then it says so and
//! exits with an error instead of pretending to serve.

fn main() -> std::process::ExitCode {
    eprintln!(
        "ledger-node {}: the replicated node is not built yet (issue #3); \
         only the state machine exists so far",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::FAILURE
}
