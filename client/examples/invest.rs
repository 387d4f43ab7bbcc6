//! One investor against a running cluster: open a deal if needed, invest, wait for the saga.
//!
//! ```sh
//! scripts/cluster.sh up
//! source .cluster/ledgerctl.env   # LEDGER_CA, LEDGER_CERT, LEDGER_KEY (or LEDGER_INSECURE=true)
//! cargo run -p ledger-client --example invest -- 127.0.0.1:7801,127.0.0.1:7802 alice 2500.00
//! ```

use std::time::Duration;

use ledger_client::{Client, ClientConfig, ClientError, Credentials, Submission};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let seeds = args.next().unwrap_or_else(|| "127.0.0.1:7801".into());
    let user = args.next().unwrap_or_else(|| "alice".into());
    let amount = args.next().unwrap_or_else(|| "2500.00".into());

    let mut config = ClientConfig::new(seeds.split(','));
    // The operator's certificate `scripts/cluster.sh up` made: creating the deal needs it.
    if let (Ok(ca), Ok(cert), Ok(key)) = (
        std::env::var("LEDGER_CA"),
        std::env::var("LEDGER_CERT"),
        std::env::var("LEDGER_KEY"),
    ) {
        config.credentials = Credentials::tls(ca.as_ref(), Some((cert.as_ref(), key.as_ref())))?;
    }
    let client = Client::connect(config).await?;
    println!("leader: {:?}", client.leader_addr());
    match client
        .create_deal(ledger_client::open_deal("example-deal", "1000000.00", 200))
        .await
    {
        Ok(_) | Err(ClientError::Conflict(_)) => {} // created now, or earlier
        Err(error) => return Err(error),
    }

    let request = Submission::new("example-deal", user, amount);
    let decision = client.submit(&request).await?;
    println!(
        "decided: {:?} at log index {}",
        decision.status(),
        decision.log_index
    );
    if decision.is_admitted() {
        let done = client
            .invest_and_wait(&request, Duration::from_secs(60))
            .await?;
        println!(
            "final: {:?} (saga step {:?})",
            done.status(),
            done.saga_step()
        );
    } else {
        println!("rejected: {:?}", decision.reject_reason());
    }
    Ok(())
}
