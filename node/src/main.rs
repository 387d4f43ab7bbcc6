//! The `ledger-node` binary; see [`ledger_node::cli`].

/// jemalloc rather than glibc's allocator: the state's long-lived allocations interleave with
/// the saga executor's short-lived ones, and glibc left the holes resident (issue #15,
/// docs/performance.md, "Size").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    ledger_node::cli::main()
}
