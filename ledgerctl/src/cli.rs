//! The command line: global flags (endpoints, credentials, output) and every subcommand.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ledger_client::{Client, ClientConfig, Credentials};

use crate::cmd::{bench, demo, saga_bench};
use crate::export;

#[derive(Parser)]
#[command(
    name = "ledgerctl",
    version,
    about = "Operate an admission-ledger cluster"
)]
pub struct Cli {
    /// Nodes to talk to, comma separated (`host:port`); any live member will do, the leader
    /// is found from there.
    #[arg(
        long,
        env = "LEDGER_ENDPOINTS",
        default_value = "127.0.0.1:7801,127.0.0.1:7802,127.0.0.1:7803",
        value_delimiter = ',',
        global = true
    )]
    pub endpoints: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Longest a command keeps retrying, in seconds.
    #[arg(long, default_value_t = 15, global = true)]
    pub deadline_s: u64,
    /// The cluster CA's certificate (PEM): connect over TLS, trusting only this CA.
    #[arg(long, env = "LEDGER_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// This caller's certificate (PEM) from the cluster CA: an operator's or a client's
    /// (`ledgerctl certs issue`).
    #[arg(long, env = "LEDGER_CERT", global = true, requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert.
    #[arg(long, env = "LEDGER_KEY", global = true, requires = "cert")]
    pub key: Option<PathBuf>,
    /// A file whose first line is a bearer token (operator or client). The token can also come
    /// in the LEDGER_TOKEN environment variable; never as a flag, which `ps` would show.
    #[arg(long, env = "LEDGER_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Plaintext, for a cluster run with `--insecure`.
    #[arg(long, env = "LEDGER_INSECURE", global = true, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub insecure: bool,
    #[command(subcommand)]
    pub command: Top,
}

impl Cli {
    /// The credentials from --ca, --cert, --key, --token-file and LEDGER_TOKEN.
    pub fn credentials(&self) -> Result<Credentials> {
        let credentials = match (&self.ca, self.insecure) {
            (Some(_), true) => bail!("--insecure and --ca exclude each other"),
            (None, true) => return Ok(Credentials::insecure()),
            (None, false) => bail!(
                "give --ca (the cluster CA) with --cert/--key or a token (--token-file, \
                 LEDGER_TOKEN), or --insecure for a cluster run without TLS"
            ),
            (Some(ca), false) => {
                let pair = self.cert.as_deref().zip(self.key.as_deref());
                Credentials::tls(ca, pair)?
            }
        };
        let credentials = match (&self.token_file, std::env::var("LEDGER_TOKEN")) {
            (Some(file), _) => credentials.with_token_file(file)?,
            (None, Ok(token)) => credentials.with_token(&token)?,
            (None, Err(_)) => credentials,
        };
        Ok(credentials)
    }

    /// A client configuration over `--endpoints` with `--deadline-s` and the credentials.
    pub fn config(&self) -> Result<ClientConfig> {
        let mut config = ClientConfig::new(self.endpoints.iter().cloned());
        config.deadline = Duration::from_secs(self.deadline_s);
        config.credentials = self.credentials()?;
        Ok(config)
    }

    /// A client over `--endpoints` with `--deadline-s`.
    pub async fn client(&self) -> Result<Client> {
        Client::connect(self.config()?)
            .await
            .with_context(|| format!("connecting to {}", self.endpoints.join(",")))
    }
}

#[derive(Subcommand)]
pub enum Top {
    /// Cluster status and bootstrap.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Membership changes: add a learner, promote it, remove a member.
    #[command(subcommand)]
    Member(MemberCmd),
    /// Leadership.
    #[command(subcommand)]
    Leader(LeaderCmd),
    /// Snapshots and backups: `snapshot now N` (or `snapshot N`) makes node N build one now;
    /// `snapshot save FILE` writes a backup of the cluster; `snapshot restore FILE` writes a new
    /// node's data folder from one.
    Snapshot(SnapshotArgs),
    /// Deals.
    #[command(subcommand)]
    Deal(DealCmd),
    /// Investments.
    #[command(subcommand)]
    Invest(InvestCmd),
    /// Users.
    #[command(subcommand)]
    User(UserCmd),
    /// Sagas: list the open or stuck ones, show one, compensate a stuck one.
    #[command(subcommand)]
    Saga(SagaCmd),
    /// Drive a bounded load of `Submit`s and report throughput, latency, outcomes and errors.
    Bench(bench::BenchArgs),
    /// Submit at a fixed rate, watch every admitted investment to its final status, and report
    /// saga overhead beyond the partners' own latency.
    SagaBench(saga_bench::SagaBenchArgs),
    /// The rush: thousands of investors on one deal of 200 seats, with a live view, a summary
    /// with the invariants checked, and a plot. Against a running cluster with partners.
    Demo(demo::DemoArgs),
    /// Certificates and tokens: the cluster CA, and certificates it signs for nodes, operators
    /// and clients.
    #[command(subcommand)]
    Certs(CertsCmd),
}

#[derive(Subcommand)]
pub enum CertsCmd {
    /// Create the cluster CA (`ca.pem`, `ca-key.pem`, `cluster-id`) in --dir.
    Init {
        /// Folder for the CA and the certificates it issues; keep `ca-key.pem` secret.
        #[arg(long)]
        dir: PathBuf,
        /// The cluster's id (the nodes' --cluster-id): part of every identity.
        #[arg(long, default_value = "admission-ledger")]
        cluster_id: String,
    },
    /// Issue a certificate and key signed by the CA in --dir: `<role>-<name>.pem` and
    /// `<role>-<name>-key.pem`.
    Issue {
        /// Folder of the CA.
        #[arg(long)]
        dir: PathBuf,
        /// node, operator or client.
        #[arg(value_parser = ["node", "operator", "client"])]
        role: String,
        /// A node's id, or an operator's or client's name.
        name: String,
        /// DNS names and IP addresses the node is reached at, repeated (default: 127.0.0.1,
        /// ::1 and localhost). Every address peers and clients use must be named.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// Write a new random bearer token to FILE (for --admin-token-file or --client-token-file
    /// on the nodes, and --token-file here).
    Token {
        /// Where to write it (readable by its owner only).
        file: PathBuf,
    },
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SnapshotArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: Option<SnapshotCmd>,
    /// The node to make build a snapshot now (the same as `snapshot now N`).
    pub node_id: Option<u64>,
}

#[derive(Subcommand)]
pub enum SnapshotCmd {
    /// Make node NODE_ID build a snapshot now.
    Now {
        /// The node's id.
        node_id: u64,
    },
    /// Save a backup of the cluster's state to FILE: taken on the leader after a read barrier
    /// (every acknowledged write is in it), with its log index, term, format version, state
    /// digest and a checksum over the file. Written to FILE.tmp, checked, then renamed.
    Save {
        /// Where to write it.
        file: PathBuf,
    },
    /// Write node --id's data folder for a NEW cluster restored from the backup FILE (like
    /// `etcdutl snapshot restore`); run it once per node, with the same --members and
    /// --cluster-id, then start each node on its folder with the new --cluster-id.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The new node's data folder (created; it must not hold a node's data).
        #[arg(long)]
        data_dir: PathBuf,
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// `id=host:port` of every voter of the new cluster.
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<String>,
        /// The new cluster's id; default: the old one with `-r<log index>` (it must differ
        /// from the old one, so that the two clusters cannot mix).
        #[arg(long)]
        cluster_id: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Role, term, indexes, digest and members, as every member sees them.
    Status,
    /// Initialize a new cluster: `--members 1=127.0.0.1:7801,2=127.0.0.1:7802`.
    Init {
        /// `id=host:port` of every initial voter.
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum MemberCmd {
    /// Add a node as a learner; returns once it has caught up, or, after --catch-up-timeout-s,
    /// says it was added and is still catching up (exit code 4). Repeating it is safe.
    AddLearner {
        /// The new node's id.
        node_id: u64,
        /// Its address (`host:port`), as the other nodes reach it.
        addr: String,
        /// Longest wait for the learner to catch up once added, in seconds.
        #[arg(long, default_value_t = 120)]
        catch_up_timeout_s: u64,
    },
    /// Make a learner a voter.
    Promote {
        /// The learner's id.
        node_id: u64,
    },
    /// Remove a member (voter or learner) from the cluster.
    Remove {
        /// The member's id.
        node_id: u64,
    },
}

#[derive(Subcommand)]
pub enum LeaderCmd {
    /// Hand leadership to a voter.
    Transfer {
        /// The voter's id.
        node_id: u64,
    },
}

#[derive(Subcommand)]
pub enum DealCmd {
    /// Open a deal.
    Create {
        /// The deal id.
        deal_id: String,
        /// The deal amount, e.g. 1000000.00.
        #[arg(long)]
        amount: String,
        /// Seats (0 = 200).
        #[arg(long, default_value_t = 0)]
        max_investors: u32,
        /// Smallest ticket.
        #[arg(long)]
        min_ticket: Option<String>,
        /// Largest ticket.
        #[arg(long)]
        max_ticket: Option<String>,
        /// Open this long from now (e.g. 30s, 5m): until then requests are rejected with
        /// DEAL_NOT_OPEN. "Now" is this machine's clock; the ledger decides by log time, the
        /// leader's clock, the same for every node.
        #[arg(long, value_parser = humantime::parse_duration)]
        opens_in: Option<Duration>,
        /// Close by itself this long from now (e.g. 1h).
        #[arg(long, value_parser = humantime::parse_duration)]
        closes_in: Option<Duration>,
        /// Most requests on the waitlist (0 = 1000).
        #[arg(long, default_value_t = 0)]
        max_waitlist: u32,
    },
    /// Close a deal to new requests (sagas in flight finish).
    Close {
        /// The deal id.
        deal_id: String,
    },
    /// Show a deal.
    Show {
        /// The deal id.
        deal_id: String,
    },
    /// List every deal.
    List,
    /// Write a deal's decisions (log order, with receipts and outcomes) to FILE as JSON lines,
    /// and FILE.manifest.json with the deal and its receipt head. Operator role.
    Export {
        /// The deal id.
        deal_id: String,
        /// Where to write the lines.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check an export: recompute the receipt chain over its decisions and compare it with
    /// every receipt and the manifest's head; with --receipt, that an investor's receipt is in
    /// it. Works offline, on the files alone.
    Verify {
        /// The lines file (its manifest is FILE.manifest.json).
        file: PathBuf,
        /// A receipt to find in the chain, as DEAL_SEQ:HASH.
        #[arg(long, value_parser = export::parse_receipt)]
        receipt: Option<(u64, String)>,
    },
    /// Remove a CLOSED deal whose sagas all ended from the live state (and later snapshots).
    /// Give the export you hold (checked first, like `deal verify`) or its receipt head.
    /// Operator role.
    Archive {
        /// The deal id.
        deal_id: String,
        /// An export of the deal (`deal export`); its head is the one named.
        #[arg(
            long,
            required_unless_present = "receipt_head",
            conflicts_with = "receipt_head"
        )]
        export: Option<PathBuf>,
        /// The deal's current receipt head, as DEAL_SEQ:HASH.
        #[arg(long, value_parser = export::parse_receipt)]
        receipt_head: Option<(u64, String)>,
    },
}

#[derive(Subcommand)]
pub enum InvestCmd {
    /// Submit an investment request (retried with the same id until the deadline).
    Submit {
        /// The deal.
        #[arg(long)]
        deal: String,
        /// The investor.
        #[arg(long)]
        user: String,
        /// The ticket.
        #[arg(long)]
        amount: String,
        /// The request id (a UUID); a new one if absent. Resubmitting an id returns its
        /// first decision.
        #[arg(long)]
        request_id: Option<String>,
        /// Wait on the deal's waitlist rather than be rejected for lack of seats or amount.
        #[arg(long)]
        waitlist: bool,
        /// With --waitlist: wait at most this long (e.g. 10m).
        #[arg(long, value_parser = humantime::parse_duration, requires = "waitlist")]
        waitlist_ttl: Option<Duration>,
    },
    /// Take a WAITLISTED request off its deal's waitlist (it ends REJECTED WAITLIST_CLOSED).
    Withdraw {
        /// The request id.
        request_id: String,
    },
    /// Show an investment.
    Show {
        /// The request id.
        request_id: String,
    },
    /// A request's story from the ledger's own record: where, when and by which leader it was
    /// decided, each saga step with its executor, epoch, result and retries, and the outcome
    /// (operator role).
    Trace {
        /// The request id.
        request_id: String,
    },
    /// Follow an investment until it is final (CONFIRMED, CANCELLED or REJECTED).
    Watch {
        /// The request id.
        request_id: String,
        /// Longest wait, in seconds.
        #[arg(long, default_value_t = 120)]
        timeout_s: u64,
    },
}

#[derive(Subcommand)]
pub enum UserCmd {
    /// A user's pending and confirmed investments.
    Show {
        /// The user id.
        user_id: String,
    },
}

#[derive(Subcommand)]
pub enum SagaCmd {
    /// Open sagas, oldest first, with their step, attempts and last error.
    List {
        /// Only stuck ones: older than --older-than-s, or with failing steps.
        #[arg(long)]
        stuck: bool,
        /// Age (log time since the decision) that makes a saga stuck, in seconds.
        #[arg(long, default_value_t = 60)]
        older_than_s: u64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One saga: its investment with the saga's step, attempts, executor and last error.
    Show {
        /// The request id.
        request_id: String,
    },
    /// Start the documented compensation of a stuck saga: void or refund the payment, then
    /// CANCELLED (cause ABORTED), seat and amount released. (An operator token will be
    /// required once authentication lands.)
    Compensate {
        /// The request id.
        request_id: String,
        /// Why, recorded with the saga.
        #[arg(long)]
        reason: String,
    },
}
