//! The `ledger-node` binary; see [`ledger_node::cli`].

fn main() -> std::process::ExitCode {
    ledger_node::cli::main()
}
