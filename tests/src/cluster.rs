//! [`TestCluster`]: real `ledger-node` processes on loopback ports, with temporary data folders.
//!
//! Every process is a `Child` owned by the cluster; [`Drop`] kills (SIGKILL) and reaps every one
//! still running, then the temporary folder (data and logs) is deleted. When the test is
//! panicking, the tail of every node's output is printed first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ledger_client::{certs, Credentials, NodeClients};
use ledger_proto::identity::Role;
use ledger_proto::pb;
use tempfile::TempDir;

use crate::binary::node_binary;
use crate::wait::{wait_until, POLL_EVERY};

/// How long a node gets to print its "listening" line and answer `Status`.
const NODE_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a gracefully stopped node gets before it is killed.
const NODE_STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one `Status` call may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times a start is retried when the chosen port turns out to be taken.
const PORT_RETRIES: u32 = 5;
/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 40;

static CLUSTERS: AtomicU64 = AtomicU64::new(0);

/// How to start a [`TestCluster`].
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Number of initial voters, with ids `1..=nodes`.
    pub nodes: u64,
    /// Extra command-line flags given to every node (e.g. `--snapshot-every-entries 50`).
    pub extra_args: Vec<String>,
    /// How long to wait for the first leader after `Init`.
    pub leader_timeout: Duration,
    /// Whether nodes run a saga executor (`--executor`). Off by default: the scenarios check
    /// admission decisions, which stay PENDING without one.
    pub executor: bool,
    /// Whether nodes run with mutual TLS (certificates from a CA made for the cluster, in its
    /// temporary folder); off by default: `--insecure`.
    pub tls: bool,
    /// Whether nodes serve `/metrics` (`--metrics-listen` on a port of their own, see
    /// [`TestCluster::metrics_url`]); off by default.
    pub metrics: bool,
}

impl ClusterOptions {
    /// `nodes` voters, default flags.
    pub fn new(nodes: u64) -> ClusterOptions {
        ClusterOptions {
            nodes,
            extra_args: Vec::new(),
            leader_timeout: Duration::from_secs(20),
            executor: false,
            tls: false,
            metrics: false,
        }
    }

    /// Each node serves `/metrics` on a loopback port of its own.
    pub fn metrics(mut self) -> ClusterOptions {
        self.metrics = true;
        self
    }

    /// Runs the nodes with mutual TLS; the harness then calls them as an operator.
    pub fn tls(mut self) -> ClusterOptions {
        self.tls = true;
        self
    }

    /// Whether nodes run a saga executor (`--executor`).
    pub fn executor(mut self, on: bool) -> ClusterOptions {
        self.executor = on;
        self
    }

    /// Adds `--flag value` to every node's command line.
    pub fn flag(mut self, flag: &str, value: impl ToString) -> ClusterOptions {
        self.extra_args.push(flag.to_owned());
        self.extra_args.push(value.to_string());
        self
    }
}

/// Why a node process did not come up.
enum StartFailure {
    /// Its port was taken; another port (or a later try) may work.
    AddrInUse,
    /// Anything else; the message says what.
    Other(String),
}

/// One node: its port and folder survive restarts; `child` is the running process, if any.
struct NodeProc {
    port: u16,
    /// Where it serves `/metrics`, when the cluster's nodes do.
    metrics_port: Option<u16>,
    data_dir: PathBuf,
    child: Option<Child>,
    /// Output files (stdout, stderr) of every run, oldest first.
    logs: Vec<(PathBuf, PathBuf)>,
    /// Extra environment for this node's next runs (e.g. a preloaded fake clock).
    env: Vec<(String, String)>,
}

impl NodeProc {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A cluster of `ledger-node` processes. See the module documentation.
pub struct TestCluster {
    nodes: BTreeMap<u64, NodeProc>,
    cluster_id: String,
    options: ClusterOptions,
    bin: PathBuf,
    /// How the harness calls the nodes: as operator `harness` with TLS.
    credentials: Credentials,
    /// Nodes that are ready once they print their "listening" line (no `Status` check).
    unreachable: BTreeSet<u64>,
    // Declared last: deleted after every process is gone (see `Drop`).
    dir: TempDir,
}

impl TestCluster {
    /// Starts `options.nodes` nodes, initializes the cluster through node 1 and waits until all
    /// of them agree on a leader. Panics if that does not happen in time.
    pub async fn start(options: ClusterOptions) -> TestCluster {
        assert!(options.nodes >= 1, "a cluster needs at least one node");
        let bin = tokio::task::spawn_blocking(|| node_binary().to_path_buf())
            .await
            .expect("find the ledger-node binary");
        let dir = tempfile::Builder::new()
            .prefix("ledger-tests-")
            .tempdir()
            .expect("create a temporary folder");
        let serial = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let cluster_id = format!("ledger-tests-{}-{serial}", std::process::id());
        let credentials = match options.tls {
            true => {
                let certs = dir.path().join("certs");
                certs::init(&certs, &cluster_id).expect("a CA for the cluster");
                let issued = certs::issue(&certs, Role::Operator("harness".into()), &[])
                    .expect("the harness's certificate");
                Credentials::tls(&certs::ca_path(&certs), Some((&issued.cert, &issued.key)))
                    .expect("the harness's credentials")
            }
            false => Credentials::insecure(),
        };
        let mut cluster = TestCluster {
            nodes: BTreeMap::new(),
            cluster_id,
            options,
            bin,
            credentials,
            unreachable: BTreeSet::new(),
            dir,
        };
        let ids: Vec<u64> = (1..=cluster.options.nodes).collect();
        let ports = free_ports(ids.len());
        for (&id, port) in ids.iter().zip(ports) {
            cluster.add_node(id, port);
            cluster.spawn(id);
        }
        for &id in &ids {
            cluster.await_ready_or_move(id).await;
        }
        let members = ids
            .iter()
            .map(|&id| pb::MemberAddr {
                node_id: id,
                addr: cluster.addr(id),
            })
            .collect();
        let mut client = cluster.client(1).await;
        client
            .cluster
            .init(pb::InitRequest { members })
            .await
            .expect("Init on node 1");
        let timeout = cluster.options.leader_timeout;
        cluster.wait_leader(timeout).await;
        cluster
    }

    /// Starts node `id`, which is not part of the initial membership (e.g. a future learner),
    /// on a fresh port and folder, and waits until it answers `Status`.
    pub async fn start_extra(&mut self, id: u64) {
        assert!(!self.nodes.contains_key(&id), "node {id} already exists");
        let port = free_ports(1)[0];
        self.add_node(id, port);
        self.spawn(id);
        self.await_ready_or_move(id).await;
    }

    /// Starts node `id` like [`TestCluster::start_extra`], but waits only for its "listening"
    /// line: for a node the harness cannot talk to (one whose certificate the cluster's CA did
    /// not sign).
    pub async fn start_extra_unreachable(&mut self, id: u64) {
        self.unreachable.insert(id);
        self.start_extra(id).await;
    }

    /// The `--cluster-id` every node of this cluster runs with (Raft requests carry it).
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Starts nodes from now on with `--cluster-id cluster_id` (a cluster restored from a
    /// backup gets an id of its own; without TLS only, as certificates name the cluster).
    pub fn set_cluster_id(&mut self, cluster_id: &str) {
        assert!(!self.options.tls, "certificates name the old cluster id");
        self.cluster_id = cluster_id.to_owned();
    }

    /// The folder holding every node's data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every node id ever started, running or not.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The ids of the nodes whose process runs.
    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, node)| node.child.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    /// `http://…/metrics` of node `id`, when the cluster's nodes serve metrics.
    pub fn metrics_url(&self, id: u64) -> Option<String> {
        let port = self.nodes.get(&id)?.metrics_port?;
        Some(format!("http://127.0.0.1:{port}/metrics"))
    }

    /// A running node that is not the current leader (lowest id first).
    pub async fn follower(&self) -> u64 {
        let leader = self.leader().await;
        self.running()
            .into_iter()
            .find(|&id| id != leader)
            .expect("a running follower")
    }

    /// Node `id`'s gRPC address, `127.0.0.1:PORT`.
    pub fn addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.node(id).port)
    }

    /// Every node's gRPC address, in id order (what `ledgerctl --endpoints` takes).
    pub fn endpoints(&self) -> Vec<String> {
        self.ids().iter().map(|&id| self.addr(id)).collect()
    }

    /// The folder of the cluster's CA and certificates (`ledger_client::certs`), with TLS.
    pub fn certs_dir(&self) -> Option<PathBuf> {
        self.options.tls.then(|| self.dir.path().join("certs"))
    }

    /// How the harness calls the nodes (an operator's certificate with TLS).
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Node `id`'s process id, if it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.node(id).pid()
    }

    /// Connects to node `id` (retrying for a few seconds while it is starting).
    pub async fn client(&self, id: u64) -> NodeClients {
        let addr = self.addr(id);
        wait_until(
            Duration::from_secs(10),
            &format!("a connection to node {id}"),
            || {
                let addr = addr.clone();
                let credentials = self.credentials.clone();
                async move {
                    ledger_client::connect_with(&addr, &credentials)
                        .await
                        .map_err(|e| format!("{e:?}"))
                }
            },
        )
        .await
    }

    /// Node `id`'s `Status` with its state digest, or why it could not be read.
    pub async fn status(&self, id: u64) -> Result<pb::StatusResponse, String> {
        status_of(&self.addr(id), true, &self.credentials).await
    }

    /// The nodes this cluster believes running whose process has exited on its own (a crash),
    /// with how it exited. They are reaped and count as stopped afterwards.
    pub fn exited(&mut self) -> Vec<(u64, String)> {
        let mut gone = Vec::new();
        for (&id, node) in &mut self.nodes {
            let Some(child) = node.child.as_mut() else {
                continue;
            };
            match child.try_wait() {
                Ok(None) => {}
                Ok(Some(status)) => {
                    node.child = None;
                    gone.push((id, status.to_string()));
                }
                Err(error) => gone.push((id, format!("cannot wait: {error}"))),
            }
        }
        gone
    }

    /// Kills node `id` with SIGKILL (a crash) and reaps it.
    pub fn kill(&mut self, id: u64) {
        let node = self.node_mut(id);
        let mut child = node
            .child
            .take()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Freezes node `id` with SIGSTOP, as a long pause would (a stalled VM, a swapped-out
    /// process): it keeps its sockets and its state, and answers nothing until
    /// [`TestCluster::resume`]. [`Drop`] still kills it.
    pub fn pause(&self, id: u64) {
        self.signal(id, libc::SIGSTOP);
    }

    /// Lets node `id`, frozen by [`TestCluster::pause`], run again (SIGCONT).
    pub fn resume(&self, id: u64) {
        self.signal(id, libc::SIGCONT);
    }

    fn signal(&self, id: u64, signal: libc::c_int) {
        let pid = self
            .pid(id)
            .unwrap_or_else(|| panic!("node {id} is not running"));
        let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on a child this cluster spawned and has not reaped yet, so the pid
        // cannot have been reused.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "signal {signal} to node {id} (pid {pid}) failed");
    }

    /// Stops node `id` with SIGTERM (graceful) and waits for it to exit; kills it if it does not
    /// exit in time, and panics then, since a graceful stop must work.
    pub async fn stop(&mut self, id: u64) {
        let node = self.node_mut(id);
        let mut child = node
            .child
            .take()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on a child this cluster spawned and has not reaped yet, so the pid
        // cannot have been reused.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM to node {id} (pid {pid}) failed");
        let deadline = Instant::now() + NODE_STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => tokio::time::sleep(POLL_EVERY).await,
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("node {id} did not stop within {NODE_STOP_TIMEOUT:?} of SIGTERM");
                }
            }
        }
    }

    /// Starts node `id` again on the same port and data folder (it rejoins by itself), and waits
    /// until it answers `Status`.
    pub async fn restart(&mut self, id: u64) {
        if let Err(why) = self.try_restart(id).await {
            panic!("node {id} did not restart: {why}");
        }
    }

    /// [`TestCluster::restart`], for a node that may refuse to start: `Err` carries how the
    /// process exited and everything it printed (the process is reaped then).
    pub async fn try_restart(&mut self, id: u64) -> Result<(), String> {
        assert!(
            self.node(id).child.is_none(),
            "node {id} is still running; kill or stop it first"
        );
        let deadline = Instant::now() + NODE_START_TIMEOUT;
        loop {
            self.spawn(id);
            match self.await_ready(id).await {
                Ok(()) => return Ok(()),
                // The old process's port may linger briefly; the port must stay the same.
                Err(StartFailure::AddrInUse) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(StartFailure::AddrInUse) => panic!("node {id}: port still in use"),
                Err(StartFailure::Other(why)) => return Err(why),
            }
        }
    }

    /// Waits until every running node of the leader's membership names the same leader, which
    /// itself reports the `leader` role; returns its id.
    pub async fn leader(&self) -> u64 {
        self.wait_leader(Duration::from_secs(20)).await
    }

    /// [`TestCluster::leader`] with a chosen timeout.
    pub async fn wait_leader(&self, timeout: Duration) -> u64 {
        let addrs = self.running_addrs();
        wait_until(timeout, "a leader all running members agree on", || {
            let addrs = addrs.clone();
            let credentials = self.credentials.clone();
            async move { agreed_leader(&addrs, &credentials).await }
        })
        .await
    }

    /// Waits until a leader other than `old` is elected and agreed on; returns its id.
    pub async fn wait_new_leader(&self, old: u64, timeout: Duration) -> u64 {
        let addrs = self.running_addrs();
        wait_until(timeout, &format!("a new leader other than {old}"), || {
            let addrs = addrs.clone();
            let credentials = self.credentials.clone();
            async move {
                match agreed_leader(&addrs, &credentials).await? {
                    leader if leader == old => Err(format!("{old} still leads")),
                    leader => Ok(leader),
                }
            }
        })
        .await
    }

    /// Waits until every node of `ids` names the same leader, other than `old`, which itself
    /// reports the `leader` role; returns it. For when `old` is frozen (and so cannot answer,
    /// which [`TestCluster::wait_new_leader`] would count as disagreeing).
    pub async fn wait_leader_among(&self, ids: &[u64], old: u64, timeout: Duration) -> u64 {
        let addrs: Vec<(u64, String)> = ids.iter().map(|&id| (id, self.addr(id))).collect();
        wait_until(
            timeout,
            &format!("nodes {ids:?} to agree on a leader other than {old}"),
            || {
                let addrs = addrs.clone();
                let credentials = self.credentials.clone();
                async move {
                    let mut views = Vec::new();
                    for (id, addr) in &addrs {
                        let status = status_of(addr, false, &credentials).await?;
                        views.push((*id, status.leader_id, status.role));
                    }
                    let leader = views[0].1.filter(|&l| l != old);
                    let agreed = views.iter().all(|(_, l, _)| *l == leader);
                    let leads = views
                        .iter()
                        .any(|(id, l, role)| Some(*id) == *l && role == "leader");
                    match leader {
                        Some(leader) if agreed && leads => Ok(leader),
                        _ => Err(format!("(node, leader, role): {views:?}")),
                    }
                }
            },
        )
        .await
    }

    /// Waits until every running member (per the leader's membership) reports the same applied
    /// index and the same state digest (I9); returns them. Panics at once if two nodes are ever
    /// seen with different digests at the same applied index.
    pub async fn wait_converged(&self) -> (u64, String) {
        let leader = self.leader().await;
        let members: BTreeSet<u64> = self
            .status(leader)
            .await
            .unwrap_or_else(|e| panic!("status of leader {leader}: {e}"))
            .members
            .iter()
            .map(|m| m.node_id)
            .collect();
        let ids: Vec<u64> = self
            .running()
            .into_iter()
            .filter(|id| members.contains(id))
            .collect();
        self.wait_converged_on(&ids).await
    }

    /// [`TestCluster::wait_converged`] over the given nodes.
    pub async fn wait_converged_on(&self, ids: &[u64]) -> (u64, String) {
        assert!(!ids.is_empty(), "no node to compare");
        let addrs: Vec<(u64, String)> = ids.iter().map(|&id| (id, self.addr(id))).collect();
        let seen = std::sync::Mutex::new(HashMap::<u64, (u64, String)>::new());
        let seen = &seen;
        wait_until(
            Duration::from_secs(30),
            &format!("nodes {ids:?} to converge"),
            || {
                let addrs = addrs.clone();
                let credentials = self.credentials.clone();
                async move {
                    let mut views = Vec::new();
                    for (id, addr) in &addrs {
                        let status = status_of(addr, true, &credentials).await?;
                        views.push((*id, status.applied_index, status.state_digest));
                    }
                    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                    for (id, applied, digest) in &views {
                        let (first, first_digest) =
                            seen.entry(*applied).or_insert((*id, digest.clone()));
                        assert_eq!(
                            first_digest, digest,
                            "I9 violated: nodes {first} and {id} have different digests at \
                             applied index {applied}"
                        );
                    }
                    let (_, applied, digest) = &views[0];
                    if *applied > 0 && views.iter().all(|(_, a, d)| a == applied && d == digest) {
                        Ok((*applied, digest.clone()))
                    } else {
                        Err(format!("(node, applied, digest): {views:?}"))
                    }
                }
            },
        )
        .await
    }

    /// Prints the last lines of every node's output files to stderr.
    pub fn dump_logs(&self) {
        for (id, node) in &self.nodes {
            for (run, (out, err)) in node.logs.iter().enumerate() {
                for path in [out, err] {
                    let lines = tail(path, LOG_TAIL_LINES);
                    if lines.is_empty() {
                        continue;
                    }
                    eprintln!(
                        "----- node {id} run {} ({}), last {} lines -----",
                        run + 1,
                        path.file_name().unwrap_or_default().to_string_lossy(),
                        lines.len()
                    );
                    for line in lines {
                        eprintln!("{line}");
                    }
                }
            }
        }
    }

    /// The lines of node `id`'s latest run's output (stdout, then stderr) that contain `needle`.
    pub fn latest_log_lines(&self, id: u64, needle: &str) -> Vec<String> {
        let Some((out, err)) = self.node(id).logs.last() else {
            return Vec::new();
        };
        [out, err]
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .flat_map(|text| {
                text.lines()
                    .filter(|line| line.contains(needle))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Node `id`'s data folder (`--data-dir`), which survives its restarts.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.node(id).data_dir.clone()
    }

    /// What node `id`'s latest run printed: stdout, then stderr.
    pub fn latest_output(&self, id: u64) -> (String, String) {
        let Some((out, err)) = self.node(id).logs.last() else {
            return (String::new(), String::new());
        };
        let read = |path: &PathBuf| std::fs::read_to_string(path).unwrap_or_default();
        (read(out), read(err))
    }

    /// Whether the output of node `id`'s latest run contains `needle`.
    pub fn latest_log_contains(&self, id: u64, needle: &str) -> bool {
        let Some((out, err)) = self.node(id).logs.last() else {
            return false;
        };
        [out, err].iter().any(|path| {
            std::fs::read_to_string(path)
                .map(|text| text.contains(needle))
                .unwrap_or(false)
        })
    }

    fn node(&self, id: u64) -> &NodeProc {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    fn node_mut(&mut self, id: u64) -> &mut NodeProc {
        self.nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    fn running_addrs(&self) -> Vec<(u64, String)> {
        self.running()
            .into_iter()
            .map(|id| (id, self.addr(id)))
            .collect()
    }

    fn add_node(&mut self, id: u64, port: u16) {
        let data_dir = self.dir.path().join(format!("node-{id}"));
        self.nodes.insert(
            id,
            NodeProc {
                port,
                metrics_port: self.options.metrics.then(|| free_ports(1)[0]),
                data_dir,
                child: None,
                logs: Vec::new(),
                env: Vec::new(),
            },
        );
    }

    /// Sets an environment variable for node `id`'s next runs (restart it to take effect).
    pub fn set_env(&mut self, id: u64, key: &str, value: impl Into<String>) {
        let env = &mut self.node_mut(id).env;
        env.retain(|(k, _)| k != key);
        env.push((key.to_owned(), value.into()));
    }

    /// Spawns node `id`'s process (one more run), with its output in files of the temp folder.
    fn spawn(&mut self, id: u64) {
        let dir = self.dir.path().to_path_buf();
        let bin = self.bin.clone();
        let cluster_id = self.cluster_id.clone();
        let mut extra = self.options.extra_args.clone();
        match self.certs_dir() {
            Some(certs) => {
                let issued = certs::paths(&certs, &Role::Node(id));
                if !issued.cert.exists() {
                    certs::issue(&certs, Role::Node(id), &certs::local_hosts())
                        .expect("a node certificate");
                }
                extra.extend([
                    "--tls-cert".into(),
                    issued.cert.display().to_string(),
                    "--tls-key".into(),
                    issued.key.display().to_string(),
                    "--tls-ca".into(),
                    certs::ca_path(&certs).display().to_string(),
                ]);
            }
            None => extra.push("--insecure".into()),
        }
        let executor = self.options.executor;
        let node = self.node_mut(id);
        if let Some(port) = node.metrics_port {
            extra.extend(["--metrics-listen".into(), format!("127.0.0.1:{port}")]);
        }
        assert!(node.child.is_none(), "node {id} is already running");
        let run = node.logs.len() + 1;
        let out = dir.join(format!("node-{id}.run-{run}.stdout"));
        let err = dir.join(format!("node-{id}.run-{run}.stderr"));
        let mut command = Command::new(&bin);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("LEDGER_") {
                command.env_remove(key);
            }
        }
        command
            .arg("--id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", node.port))
            .arg("--data-dir")
            .arg(&node.data_dir)
            .arg("--cluster-id")
            .arg(&cluster_id)
            .arg("--executor")
            .arg(executor.to_string())
            .args(&extra)
            .env(
                "RUST_LOG",
                std::env::var("LEDGER_TESTS_NODE_LOG")
                    .unwrap_or_else(|_| "info,openraft=warn,sled=warn,h2=warn".to_owned()),
            )
            .env("NO_COLOR", "1")
            .envs(node.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("create a stdout file"))
            .stderr(File::create(&err).expect("create a stderr file"));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        node.logs.push((out, err));
        node.child = Some(child);
    }

    /// Waits for node `id`'s latest run to come up; on a taken port (only possible before the
    /// node ever ran, so before `Init` names its address) moves it to another port.
    async fn await_ready_or_move(&mut self, id: u64) {
        for _ in 0..PORT_RETRIES {
            match self.await_ready(id).await {
                Ok(()) => return,
                Err(StartFailure::AddrInUse) => {
                    self.node_mut(id).port = free_ports(1)[0];
                    self.spawn(id);
                }
                Err(StartFailure::Other(why)) => panic!("node {id} did not start: {why}"),
            }
        }
        panic!("node {id}: no free port after {PORT_RETRIES} tries");
    }

    /// Waits until node `id` prints its "listening" line and answers `Status`. If the process
    /// exits instead, it is reaped and the reason returned.
    async fn await_ready(&mut self, id: u64) -> Result<(), StartFailure> {
        let deadline = Instant::now() + NODE_START_TIMEOUT;
        let banner = format!("ledger-node {id} listening on");
        let addr = self.addr(id);
        loop {
            let node = self.node_mut(id);
            let (out, err) = node.logs.last().cloned().expect("a run was spawned");
            let child = node.child.as_mut().expect("the node was spawned");
            if let Ok(Some(exit)) = child.try_wait() {
                node.child = None;
                let output = format!(
                    "{}\n{}",
                    std::fs::read_to_string(&out).unwrap_or_default(),
                    std::fs::read_to_string(&err).unwrap_or_default()
                );
                if output.contains("Address already in use") || output.contains("AddrInUse") {
                    return Err(StartFailure::AddrInUse);
                }
                return Err(StartFailure::Other(format!("exited with {exit}: {output}")));
            }
            let listening = std::fs::read_to_string(&out)
                .map(|text| text.contains(&banner))
                .unwrap_or(false);
            let answers = self.unreachable.contains(&id)
                || status_of(&addr, false, &self.credentials).await.is_ok();
            if listening && answers {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartFailure::Other(format!(
                    "not ready within {NODE_START_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "test failed; node logs are in {}",
                self.dir.path().display()
            );
            self.dump_logs();
        }
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `count` distinct free loopback ports: all are bound at once (so they differ), then released
/// for the nodes to take. Another process may grab one in between; callers retry on that.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// `Status` of the node at `addr` (with its state digest if `with_digest`), within
/// [`STATUS_TIMEOUT`].
async fn status_of(
    addr: &str,
    with_digest: bool,
    credentials: &Credentials,
) -> Result<pb::StatusResponse, String> {
    let call = async {
        let mut client = ledger_client::connect_with(addr, credentials)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        client
            .cluster
            .status(pb::StatusRequest { with_digest })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|e| format!("Status of {addr}: {e}"))
    };
    tokio::time::timeout(STATUS_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(format!("Status of {addr} timed out")))
}

/// The leader every running member names, if they agree and it says it leads.
async fn agreed_leader(addrs: &[(u64, String)], credentials: &Credentials) -> Result<u64, String> {
    let mut statuses = BTreeMap::new();
    for (id, addr) in addrs {
        if let Ok(status) = status_of(addr, false, credentials).await {
            statuses.insert(*id, status);
        }
    }
    let leader = statuses
        .values()
        .find(|s| s.role == "leader" && s.leader_id == Some(s.node_id))
        .map(|s| s.node_id)
        .ok_or_else(|| {
            let views: Vec<_> = statuses
                .values()
                .map(|s| (s.node_id, s.role.clone(), s.leader_id, s.term))
                .collect();
            format!("no node leads; (node, role, leader, term): {views:?}")
        })?;
    let members: BTreeSet<u64> = statuses[&leader]
        .members
        .iter()
        .map(|m| m.node_id)
        .collect();
    let disagreeing: Vec<_> = addrs
        .iter()
        .filter(|(id, _)| members.contains(id))
        .filter(|(id, _)| statuses.get(id).is_none_or(|s| s.leader_id != Some(leader)))
        .map(|(id, _)| (*id, statuses.get(id).and_then(|s| s.leader_id)))
        .collect();
    if disagreeing.is_empty() {
        Ok(leader)
    } else {
        Err(format!(
            "{leader} leads, but these running members name (node, leader): {disagreeing:?}"
        ))
    }
}

/// The last `count` lines of the file at `path` (none if it cannot be read).
fn tail(path: &Path, count: usize) -> Vec<String> {
    let Ok(file) = File::open(path) else {
        return Vec::new();
    };
    let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(count)..].to_vec()
}
