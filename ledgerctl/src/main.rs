//! `ledgerctl`: the operator CLI of the admission ledger. Every read command takes `--json`.
//!
//! Exit codes: 0 done; 1 failed; 2 bad usage; 3 outcome unknown (a write may or may not have
//! taken effect: running the same command again is safe); 4 learner added but still catching
//! up (`member add-learner`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ledger_client::{pb, Client, ClientConfig, ClientError, Credentials, Submission};
use serde_json::json;

mod bench;
mod demo;
mod export;
mod load;
mod output;
mod plot;
mod redecide;
mod saga_bench;

use output::*;

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
    command: Top,
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
enum Top {
    /// Cluster status and bootstrap.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Membership changes: add a learner, promote it, remove a member.
    #[command(subcommand)]
    Member(MemberCmd),
    /// Leadership.
    #[command(subcommand)]
    Leader(LeaderCmd),
    /// Make a node build a snapshot now.
    Snapshot {
        /// The node's id.
        node_id: u64,
    },
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
enum CertsCmd {
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

fn certs(cli: &Cli, cmd: &CertsCmd) -> Result<()> {
    use ledger_client::certs;
    use ledger_proto::identity::Role;
    let value = match cmd {
        CertsCmd::Init { dir, cluster_id } => {
            let ca = certs::init(dir, cluster_id)?;
            json!({"ca": ca, "cluster_id": cluster_id})
        }
        CertsCmd::Issue {
            dir,
            role,
            name,
            hosts,
        } => {
            let role = match role.as_str() {
                "node" => Role::Node(
                    name.parse()
                        .ok()
                        .filter(|id| *id >= 1)
                        .with_context(|| format!("a node's name is its id, not {name:?}"))?,
                ),
                "operator" => Role::Operator(name.clone()),
                _ => Role::Client(name.clone()),
            };
            let hosts = match hosts.is_empty() {
                true => certs::local_hosts(),
                false => hosts.clone(),
            };
            let issued = certs::issue(dir, role, &hosts)?;
            json!({"cert": issued.cert, "key": issued.key})
        }
        CertsCmd::Token { file } => {
            certs::token(file)?;
            json!({"token_file": file})
        }
    };
    print_or_json(cli, value.clone(), || {
        value
            .as_object()
            .map(|fields| {
                fields
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    })
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Role, term, indexes, digest and members, as every member sees them.
    Status,
    /// Initialize a new cluster: `--members 1=127.0.0.1:7801,2=127.0.0.1:7802`.
    Init {
        /// `id=host:port` of every initial voter.
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<String>,
    },
}

/// Exit code of a write whose outcome is unknown.
const EXIT_OUTCOME_UNKNOWN: u8 = 3;
/// Exit code of `member add-learner` when the learner was added but is still catching up.
const EXIT_STILL_CATCHING_UP: u8 = 4;

#[derive(Subcommand)]
enum MemberCmd {
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
enum LeaderCmd {
    /// Hand leadership to a voter.
    Transfer {
        /// The voter's id.
        node_id: u64,
    },
}

#[derive(Subcommand)]
enum DealCmd {
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
enum InvestCmd {
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
enum UserCmd {
    /// A user's pending and confirmed investments.
    Show {
        /// The user id.
        user_id: String,
    },
}

#[derive(Subcommand)]
enum SagaCmd {
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(code) => code,
        Err(error) => report(&cli, &error),
    }
}

/// Prints a failed command's error (also as JSON on stdout with `--json`) and picks the exit
/// code: an unknown outcome is told apart from a failure, since the write may have happened.
fn report(cli: &Cli, error: &anyhow::Error) -> ExitCode {
    let client_error = error.chain().find_map(|e| e.downcast_ref::<ClientError>());
    let advice = match client_error {
        Some(ClientError::OutcomeUnknown { request_id, .. }) => Some(format!(
            "the request may or may not have been decided; `invest show {request_id}` tells, \
             and submitting it again with --request-id {request_id} is safe (a request id is \
             decided once)"
        )),
        Some(ClientError::OperationOutcomeUnknown { operation, .. }) => Some(format!(
            "{operation} may or may not have taken effect; running the same command again is \
             safe, or check with `cluster status`, `deal show` or `saga show`"
        )),
        _ => None,
    };
    if cli.json {
        let mut value = json!({
            "code": client_error.map_or("ERROR", ClientError::code_name),
            "message": format!("{error:#}"),
        });
        match client_error {
            Some(ClientError::OutcomeUnknown {
                request_id, waited, ..
            }) => {
                value["outcome"] = json!("unknown");
                value["request_id"] = json!(request_id);
                value["waited_ms"] = json!(waited.as_millis() as u64);
            }
            Some(ClientError::OperationOutcomeUnknown {
                operation, waited, ..
            }) => {
                value["outcome"] = json!("unknown");
                value["operation"] = json!(operation);
                value["waited_ms"] = json!(waited.as_millis() as u64);
            }
            _ => {}
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "error": value })).unwrap_or_default()
        );
    }
    match advice {
        Some(advice) => {
            eprintln!("ledgerctl: OUTCOME UNKNOWN: {error:#}\nledgerctl: {advice}");
            ExitCode::from(EXIT_OUTCOME_UNKNOWN)
        }
        None => {
            eprintln!("ledgerctl: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<ExitCode> {
    let done = match &cli.command {
        Top::Cluster(ClusterCmd::Status) => cluster_status(cli).await,
        Top::Cluster(ClusterCmd::Init { members }) => cluster_init(cli, members).await,
        Top::Member(cmd) => return member(cli, cmd).await,
        Top::Leader(LeaderCmd::Transfer { node_id }) => {
            let client = cli.client().await?;
            let leader = client.transfer_leader(*node_id).await?;
            print_or_json(cli, json!({"leader_id": leader}), || {
                format!("node {leader} leads")
            })
        }
        Top::Snapshot { node_id } => {
            let client = cli.client().await?;
            let addr = member_addr(&client, *node_id).await?;
            let index = client.trigger_snapshot(&addr).await?;
            print_or_json(
                cli,
                json!({"node_id": node_id, "snapshot_index": index}),
                || format!("node {node_id} has a snapshot at index {index}"),
            )
        }
        Top::Deal(cmd) => deal(cli, cmd).await,
        Top::Invest(cmd) => invest(cli, cmd).await,
        Top::User(UserCmd::Show { user_id }) => {
            let user = cli.client().await?.user(user_id).await?;
            if cli.json {
                let list = |l: &[pb::Investment]| l.iter().map(investment_json).collect::<Vec<_>>();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"user_id": user.user_id, "pending": list(&user.pending), "confirmed": list(&user.confirmed), "waitlisted": list(&user.waitlisted)})
                    )?
                );
            } else {
                println!(
                    "{}: {} pending, {} confirmed, {} waitlisted",
                    user.user_id,
                    user.pending.len(),
                    user.confirmed.len(),
                    user.waitlisted.len()
                );
                for inv in user
                    .pending
                    .iter()
                    .chain(&user.confirmed)
                    .chain(&user.waitlisted)
                {
                    println!("  {}", investment_line(inv));
                }
            }
            Ok(())
        }
        Top::Saga(cmd) => saga(cli, cmd).await,
        Top::Bench(args) => bench::run(cli, args).await,
        Top::SagaBench(args) => saga_bench::saga_bench(cli, args).await,
        Top::Demo(args) => demo::run(cli, args).await,
        Top::Certs(cmd) => certs(cli, cmd),
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// Prints `value` with `--json`, else the text line.
fn print_or_json(cli: &Cli, value: serde_json::Value, text: impl FnOnce() -> String) -> Result<()> {
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("{}", text());
    }
    Ok(())
}

async fn cluster_status(cli: &Cli) -> Result<()> {
    // Not through `Client::connect`: status must work with no leader at all.
    let mut config = cli.config()?;
    config.attempt_timeout = Duration::from_secs(2);
    let client = Client::unconnected(config)?;
    let rows = client.statuses().await;
    if cli.json {
        let items: Vec<_> = rows
            .iter()
            .map(|(addr, status)| match status {
                Ok(s) => status_json(addr, s),
                Err(error) => json!({"endpoint": addr, "error": error.to_string()}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    println!(
        "{:<22} {:>4} {:<9} {:>6} {:>5} {:>9} {:>9}  {:<16}  members",
        "endpoint", "id", "role", "leader", "term", "applied", "snapshot", "digest"
    );
    for (addr, status) in rows {
        match status {
            Ok(s) => println!(
                "{addr:<22} {:>4} {:<9} {:>6} {:>5} {:>9} {:>9}  {:<16}  {}",
                s.node_id,
                s.role,
                s.leader_id.map_or("-".to_owned(), |l| l.to_string()),
                s.term,
                s.applied_index,
                s.snapshot_index,
                &s.state_digest[..16.min(s.state_digest.len())],
                members_line(&s.members)
            ),
            Err(error) => println!("{addr:<22} unreachable: {error}"),
        }
    }
    Ok(())
}

async fn cluster_init(cli: &Cli, members: &[String]) -> Result<()> {
    let mut parsed = Vec::new();
    for member in members {
        let (id, addr) = member
            .split_once('=')
            .with_context(|| format!("{member:?} is not id=host:port"))?;
        let id: u64 = id.parse().with_context(|| format!("node id {id:?}"))?;
        parsed.push((id, addr.to_owned()));
    }
    Client::unconnected(cli.config()?)?.init(&parsed).await?;
    println!("initialized");
    Ok(())
}

/// The address of member `node_id`, from the leader's membership.
async fn member_addr(client: &Client, node_id: u64) -> Result<String> {
    let status = client.status().await?;
    status
        .members
        .iter()
        .find(|m| m.node_id == node_id)
        .map(|m| m.addr.clone())
        .with_context(|| format!("node {node_id} is not a member"))
}

async fn member(cli: &Cli, cmd: &MemberCmd) -> Result<ExitCode> {
    let client = cli.client().await?;
    let reply = match cmd {
        MemberCmd::AddLearner {
            node_id,
            addr,
            catch_up_timeout_s,
        } => {
            let added = client
                .add_learner_waiting(*node_id, addr, Duration::from_secs(*catch_up_timeout_s))
                .await?;
            let progress = format!(
                "matched {} of {}",
                added.matched_index, added.catch_up_index
            );
            print_or_json(
                cli,
                json!({
                    "node_id": node_id, "added": true, "caught_up": added.caught_up,
                    "matched_index": added.matched_index, "catch_up_index": added.catch_up_index,
                    "log_index": added.log_index,
                    "members": added.members.iter().map(member_json).collect::<Vec<_>>(),
                }),
                || match added.caught_up {
                    true => format!(
                        "node {node_id} is a learner (membership entry {}) and has caught up \
                         ({progress}); members: {}",
                        added.log_index,
                        members_line(&added.members)
                    ),
                    false => format!(
                        "node {node_id} was added as a learner (membership entry {}) but is \
                         still catching up ({progress}) after {catch_up_timeout_s} s; watch \
                         `cluster status` and promote it only once it has caught up",
                        added.log_index
                    ),
                },
            )?;
            return Ok(match added.caught_up {
                true => ExitCode::SUCCESS,
                false => ExitCode::from(EXIT_STILL_CATCHING_UP),
            });
        }
        MemberCmd::Promote { node_id } | MemberCmd::Remove { node_id } => {
            let status = client.status().await?;
            let member = status.members.iter().find(|m| m.node_id == *node_id);
            let mut voters: Vec<u64> = status
                .members
                .iter()
                .filter(|m| m.role == pb::MemberRole::Voter as i32)
                .map(|m| m.node_id)
                .collect();
            let retain = match cmd {
                MemberCmd::Promote { .. } => {
                    match member {
                        None => bail!("node {node_id} is not a member: add it as a learner first"),
                        // Already promoted (a repeated command): the node proposes nothing and
                        // says so.
                        Some(m) if m.role == pb::MemberRole::Voter as i32 => {}
                        Some(_) => voters.push(*node_id),
                    }
                    true
                }
                _ => {
                    // `ChangeMembership` names voters only: a learner would stay.
                    if member.is_some_and(|m| m.role == pb::MemberRole::Learner as i32) {
                        bail!("node {node_id} is a learner; removing learners is not supported");
                    }
                    // Not a member (already removed, by a repeated command): the voters stay
                    // as they are, and the node proposes nothing and says so.
                    voters.retain(|v| v != node_id);
                    if voters.is_empty() {
                        bail!("node {node_id} is the last voter");
                    }
                    false
                }
            };
            client.change_membership(&voters, retain).await?
        }
    };
    print_or_json(
        cli,
        json!({"log_index": reply.log_index, "changed": reply.changed, "members": reply.members.iter().map(member_json).collect::<Vec<_>>()}),
        || {
            format!(
                "members at log index {}{}: {}",
                reply.log_index,
                if reply.changed {
                    ""
                } else {
                    " (already in force, nothing changed)"
                },
                members_line(&reply.members)
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn archive(
    cli: &Cli,
    deal_id: &str,
    export: Option<&Path>,
    receipt_head: Option<&(u64, String)>,
) -> Result<()> {
    let (deal_seq, hash) = match (export, receipt_head) {
        (Some(file), _) => {
            let verified = export::verify(file, None)
                .with_context(|| format!("{} does not verify", file.display()))?;
            if verified.deal_id != deal_id {
                bail!(
                    "{} is an export of deal {:?}, not {deal_id:?}",
                    file.display(),
                    verified.deal_id
                );
            }
            (verified.head.deal_seq, verified.head.hash.to_vec())
        }
        (None, Some((seq, hex))) => (*seq, export::hash_bytes(hex)?),
        (None, None) => bail!("give --export FILE or --receipt-head SEQ:HASH"),
    };
    let client = cli.client().await?;
    let reply = client
        .archive_deal(deal_id, pb::Receipt { deal_seq, hash })
        .await?;
    let head = reply.receipt_head.clone().unwrap_or_default();
    let head = format!("{}:{}", head.deal_seq, export::hex(&head.hash));
    print_or_json(
        cli,
        json!({"deal_id": reply.deal_id, "archived": reply.archived, "receipt_head": head,
               "log_index": reply.log_index, "confirmed_count": reply.confirmed_count,
               "confirmed_amount": reply.confirmed_amount}),
        || {
            format!(
                "deal {} archived{} at log index {} (receipt head {head}; {} confirmed, {})",
                reply.deal_id,
                if reply.archived { "" } else { " already" },
                reply.log_index,
                reply.confirmed_count,
                reply.confirmed_amount
            )
        },
    )
}

async fn deal(cli: &Cli, cmd: &DealCmd) -> Result<()> {
    if let DealCmd::Verify { file, receipt } = cmd {
        let verified = export::verify(file, receipt.clone())
            .with_context(|| format!("{} does not verify", file.display()))?;
        let head = format!("{}:{}", verified.head.deal_seq, verified.head.hash_hex());
        let again = &verified.redecided;
        return print_or_json(
            cli,
            json!({"verified": true, "decisions": verified.decisions, "receipt_head": head,
                   "redecided": again.decisions,
                   "admitted_from_waitlist": again.admitted_from_waitlist}),
            || {
                format!(
                    "verified: {} decisions, receipt head {head}; {} decided again by the \
                     rules as recorded, {} admissions from the waitlist where recorded",
                    verified.decisions, again.decisions, again.admitted_from_waitlist
                )
            },
        );
    }
    if let DealCmd::Archive {
        deal_id,
        export,
        receipt_head,
    } = cmd
    {
        return archive(cli, deal_id, export.as_deref(), receipt_head.as_ref()).await;
    }
    let client = cli.client().await?;
    let deal = match cmd {
        DealCmd::Create {
            deal_id,
            amount,
            max_investors,
            min_ticket,
            max_ticket,
            opens_in,
            closes_in,
            max_waitlist,
        } => {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let at = |d: &Option<Duration>| d.map(|d| now_ms + d.as_millis() as u64);
            client
                .create_deal(pb::CreateDealRequest {
                    deal_id: deal_id.clone(),
                    amount: amount.clone(),
                    max_investors: *max_investors,
                    min_ticket: min_ticket.clone(),
                    max_ticket: max_ticket.clone(),
                    opens_at_ms: at(opens_in),
                    closes_at_ms: at(closes_in),
                    max_waitlist: *max_waitlist,
                })
                .await?
        }
        DealCmd::Close { deal_id } => client.close_deal(deal_id).await?,
        DealCmd::Export { deal_id, out } => {
            let (deal, decisions) = client.export_deal(deal_id).await?;
            let manifest = export::write(out, &deal, &decisions)?;
            return print_or_json(
                cli,
                json!({"file": out, "decisions": manifest.decisions,
                       "receipt_head": manifest.receipt_head}),
                || {
                    format!(
                        "{} decisions of {deal_id} written to {} (receipt head {}:{})",
                        manifest.decisions,
                        out.display(),
                        manifest.receipt_head.deal_seq,
                        manifest.receipt_head.hash
                    )
                },
            );
        }
        DealCmd::Verify { .. } | DealCmd::Archive { .. } => unreachable!("handled above"),
        DealCmd::Show { deal_id } => client.deal(deal_id).await?,
        DealCmd::List => {
            let deals = client.deals().await?;
            if cli.json {
                let list: Vec<_> = deals.iter().map(deal_json).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for deal in &deals {
                    println!("{}", deal_line(deal));
                }
                println!("{} deal(s)", deals.len());
            }
            return Ok(());
        }
    };
    print_or_json(cli, deal_json(&deal), || deal_line(&deal))
}

async fn invest(cli: &Cli, cmd: &InvestCmd) -> Result<()> {
    let client = cli.client().await?;
    let investment = match cmd {
        InvestCmd::Submit {
            deal,
            user,
            amount,
            request_id,
            waitlist,
            waitlist_ttl,
        } => {
            let mut submission = Submission::new(deal.clone(), user.clone(), amount.clone());
            if let Some(id) = request_id {
                submission.request_id = id.clone();
            }
            if *waitlist {
                submission = submission.waitlisted(waitlist_ttl.map(|d| d.as_millis() as u64));
            }
            client.submit(&submission).await?.investment
        }
        InvestCmd::Withdraw { request_id } => client.withdraw(request_id).await?,
        InvestCmd::Show { request_id } => client.investment(request_id).await?,
        InvestCmd::Watch {
            request_id,
            timeout_s,
        } => {
            let current = client.investment(request_id).await?;
            if !cli.json {
                println!("{}", investment_line(&current));
            }
            if ledger_client::is_final(&current) {
                current
            } else {
                client
                    .wait_final(request_id, Duration::from_secs(*timeout_s))
                    .await?
            }
        }
    };
    print_or_json(cli, investment_json(&investment), || {
        investment_line(&investment)
    })
}

async fn saga(cli: &Cli, cmd: &SagaCmd) -> Result<()> {
    let client = cli.client().await?;
    let investment = match cmd {
        SagaCmd::List {
            stuck,
            older_than_s,
            limit,
        } => {
            let reply = if *stuck {
                client
                    .list_sagas(Some(Duration::from_secs(*older_than_s)), true, *limit)
                    .await?
            } else {
                client.list_sagas(None, false, *limit).await?
            };
            if cli.json {
                let list: Vec<_> = reply.sagas.iter().map(investment_json).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"open_total": reply.open_total, "now_ms": reply.now_ms, "sagas": list})
                    )?
                );
            } else {
                println!(
                    "{:<36} {:<9} {:<9} {:>8} {:>8} {:>8}  last error",
                    "request", "status", "step", "attempts", "executor", "age s"
                );
                for inv in &reply.sagas {
                    println!(
                        "{:<36} {:<9} {:<9} {:>8} {:>8} {:>8}  {}",
                        inv.request_id,
                        investment_status(inv),
                        saga_step(inv),
                        inv.attempts,
                        inv.executor.map_or("-".to_owned(), |e| e.to_string()),
                        reply.now_ms.saturating_sub(inv.decided_at_ms) / 1000,
                        inv.last_error
                    );
                }
                println!(
                    "{} shown, {} open in all{}",
                    reply.sagas.len(),
                    reply.open_total,
                    if *stuck {
                        " (stuck: old or failing)"
                    } else {
                        ""
                    }
                );
            }
            return Ok(());
        }
        SagaCmd::Show { request_id } => client.investment(request_id).await?,
        SagaCmd::Compensate { request_id, reason } => {
            client.compensate_saga(request_id, reason).await?
        }
    };
    print_or_json(cli, investment_json(&investment), || {
        investment_line(&investment)
    })
}
