//! What the `ledger-node` binary does: flags, logging, the listener, signals; everything else
//! is [`crate::run`]. A module of the library so that the test-only `ledger-node-sabotaged`
//! binary is the same program.

use std::process::ExitCode;

use crate::config::Flags;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// The whole binary.
pub fn main() -> ExitCode {
    let flags = Flags::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = flags.worker_threads {
        runtime.worker_threads(usize::from(threads));
    }
    match runtime.enable_all().build() {
        Ok(runtime) => runtime.block_on(node_main(flags)),
        Err(error) => {
            eprintln!("ledger-node: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn node_main(flags: Flags) -> ExitCode {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn,sled=warn,h2=warn"));
    let telemetry = match crate::logging::init(
        flags.log_format,
        flags.id,
        filter,
        flags.otlp_endpoint.as_deref(),
    ) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("ledger-node: {error}");
            return ExitCode::FAILURE;
        }
    };
    let served = serve(flags).await;
    // Off the async workers: the export's shutdown blocks until its last batch is sent.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        // Plain display: every start error already names its cause (the alternate form would
        // repeat it, once from the message and once from the source chain).
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("ledger-node: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(flags: Flags) -> anyhow::Result<()> {
    let config = flags.validate()?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    // Scripts and tests read this line to learn the port when they pass port 0.
    println!(
        "ledger-node {} listening on {}",
        config.node_id,
        listener.local_addr()?
    );
    crate::run(config, listener, shutdown_signal()).await?;
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
