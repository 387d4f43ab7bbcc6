//! `ledger-partners` binary: flags → validated config (and TLS, if asked) →
//! bound listener → serve until SIGINT/SIGTERM.

use anyhow::Context;
use clap::Parser;
use ledger_partners::config::{Args, TlsSource};
use ledger_partners::{tls, Partners};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.log_json);
    let config = args.fault_config()?;
    let partners = Partners::new(config.clone())?;
    // Everything TLS needs is ready (and generated files written) before the
    // address line, so that a script that sees it can read the CA at once.
    let (tls, ca) = match args.tls() {
        None => (None, None),
        Some(TlsSource::Files { cert, key }) => (Some(tls::server_config(&cert, &key)?), None),
        Some(TlsSource::Generate(dir)) => {
            let files = tls::generate(&dir)?;
            (
                Some(tls::server_config(&files.cert, &files.key)?),
                Some(files.ca),
            )
        }
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Scripts start us with port 0 and read this line for the real address.
    println!("ledger-partners listening on {addr}");
    match (&tls, &ca) {
        (Some(_), Some(ca)) => println!("ledger-partners serving https; CA {}", ca.display()),
        (Some(_), None) => println!("ledger-partners serving https"),
        _ => {}
    }
    tracing::info!(%addr, https = tls.is_some(), ?config, "started");
    match tls {
        Some(tls) => {
            ledger_partners::serve_partners_tls(listener, tls, partners, shutdown_signal()).await?
        }
        None => ledger_partners::serve_partners(listener, partners, shutdown_signal()).await?,
    }
    tracing::info!("stopped");
    Ok(())
}

fn init_tracing(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr so stdout carries only the address line.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}
