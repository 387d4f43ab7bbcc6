//! The system under test: `ledger-node` processes in their namespaces (one per slot), the
//! partner simulator in its own, and the knobs the nemeses turn on them (signals, restarts,
//! wipes, CPU quota, fake clock, slow fsync).
//!
//! A slot is a host of the test network that can run a node; a node keeps its slot's address
//! and data folder across restarts, but a wiped slot may come back under a new node id.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ledger_client::{pb, NodeClients};

use crate::cgroup::CpuGroup;
use crate::net::Net;
use crate::procs::{self, Preload, Spawn};

/// The gRPC port every node listens on, inside its own namespace.
pub const NODE_PORT: u16 = 7801;
/// The partner simulator's port.
pub const PARTNERS_PORT: u16 = 7700;

/// What a run's processes look like.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The `ledger-node` binary.
    pub node_bin: PathBuf,
    /// The `ledger-partners` binary.
    pub partners_bin: PathBuf,
    /// The run's folder (data, logs, report).
    pub dir: PathBuf,
    /// Voters at start.
    pub voters: usize,
    /// Extra slots, not members at start (membership nemeses add them).
    pub spares: usize,
    /// Nodes run saga executors.
    pub executors: bool,
    /// `--snapshot-every-entries`.
    pub snapshot_every: u64,
    /// `--log-keep-entries`.
    pub log_keep: u64,
    /// Preload libfaketime into the nodes (clock nemeses).
    pub fake_clocks: bool,
    /// Preload the slow-fsync shim into the nodes (disk nemeses).
    pub slow_disks: bool,
}

/// A host that can run a node.
pub struct Slot {
    /// The host's name in the network (`n1`, ...).
    pub host: String,
    /// Its network namespace.
    pub netns: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// The node id it runs under now.
    pub id: u64,
    /// The node's data folder.
    pub data_dir: PathBuf,
    /// The running process, if any.
    pub child: Option<Child>,
    /// Whether the process is stopped (SIGSTOP).
    pub frozen: bool,
    /// Its CPU cgroup.
    pub cpu: Option<CpuGroup>,
    /// libfaketime's offset file (`+0` when healthy).
    pub clock_file: PathBuf,
    /// The slow-fsync shim's delay file (`0` when healthy).
    pub disk_file: PathBuf,
    /// How many times a process was started here.
    pub starts: u32,
}

impl Slot {
    /// `ip:port` of the node's gRPC server.
    pub fn addr(&self) -> String {
        format!("{}:{NODE_PORT}", self.ip)
    }

    /// The running process's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A node clients may talk to: its id and address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The node id.
    pub id: u64,
    /// `ip:port`.
    pub addr: String,
}

/// The nodes the workload and the observer talk to, kept current by the nemesis.
pub type Targets = Arc<RwLock<Vec<Target>>>;

/// Everything the run started. Dropping it kills every process it started (by pid), then removes
/// cgroups and the network.
pub struct World {
    /// How processes are started.
    pub settings: Settings,
    /// Every slot, members or not.
    pub slots: Vec<Slot>,
    /// The cluster's id (unique per run).
    pub cluster_id: String,
    /// The partners' base URL, as the nodes reach it.
    pub partners_url: String,
    /// The nodes clients should use.
    pub targets: Targets,
    partners: Option<Child>,
    shim: Option<PathBuf>,
    faketime: Option<PathBuf>,
    next_id: u64,
    // Last: removed after every process is gone.
    net: Net,
}

impl World {
    /// Creates the network (slots `n1..`, plus `partners`), starts the partners, and starts and
    /// initializes `settings.voters` nodes (ids 1..=voters); spare slots stay empty.
    pub async fn start(settings: Settings, tag: &str, subnet: u8) -> Result<World> {
        let slot_count = settings.voters + settings.spares;
        let mut names: Vec<String> = (1..=slot_count).map(|i| format!("n{i}")).collect();
        names.push("partners".into());
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let net = Net::create(tag, subnet, &name_refs)?;
        let shim = if settings.slow_disks {
            Some(procs::build_slow_fsync_shim(&settings.dir)?)
        } else {
            None
        };
        let faketime = if settings.fake_clocks {
            Some(procs::faketime_library().context("libfaketime is not installed")?)
        } else {
            None
        };
        let partners_ip = net.host("partners")?.addr;
        let mut slots = Vec::new();
        for (i, name) in names.iter().take(slot_count).enumerate() {
            let host = net.host(name)?;
            let cpu = CpuGroup::create(&format!("{}-{name}", net.tag)).ok();
            let slot = Slot {
                host: name.clone(),
                netns: host.netns.clone(),
                ip: host.addr,
                id: i as u64 + 1,
                data_dir: settings.dir.join(format!("data-{name}")),
                child: None,
                frozen: false,
                cpu,
                clock_file: settings.dir.join(format!("clock-{name}")),
                disk_file: settings.dir.join(format!("disk-{name}")),
                starts: 0,
            };
            std::fs::write(&slot.clock_file, "+0")?;
            std::fs::write(&slot.disk_file, "0")?;
            slots.push(slot);
        }
        let mut world = World {
            cluster_id: format!("jepsen-{}", net.tag),
            partners_url: format!("http://{partners_ip}:{PARTNERS_PORT}"),
            targets: Arc::new(RwLock::new(Vec::new())),
            partners: None,
            shim,
            faketime,
            next_id: slot_count as u64 + 1,
            settings,
            slots,
            net,
        };
        world.start_partners()?;
        for i in 0..world.settings.voters {
            world.spawn(i)?;
        }
        for i in 0..world.settings.voters {
            world.await_serving(i, Duration::from_secs(60)).await?;
        }
        let members = (0..world.settings.voters)
            .map(|i| pb::MemberAddr {
                node_id: world.slots[i].id,
                addr: world.slots[i].addr(),
            })
            .collect();
        let mut first = connect(&world.slots[0].addr()).await?;
        first
            .cluster
            .init(pb::InitRequest { members })
            .await
            .context("Init")?;
        world.refresh_targets();
        Ok(world)
    }

    /// The network.
    pub fn net(&self) -> &Net {
        &self.net
    }

    fn start_partners(&mut self) -> Result<()> {
        let host = self.net.host("partners")?.clone();
        let log = self.settings.dir.join("partners.log");
        let child = procs::spawn(Spawn {
            netns: &host.netns,
            program: &self.settings.partners_bin,
            args: vec!["--listen".into(), format!("{}:{PARTNERS_PORT}", host.addr)],
            env: vec![("RUST_LOG".into(), "warn".into())],
            preload: Preload::default(),
            log: &log,
        })?;
        self.partners = Some(child);
        Ok(())
    }

    /// The partners' URL as the harness (in the root namespace) reaches it: the same address,
    /// through the bridge.
    pub fn partners_url(&self) -> &str {
        &self.partners_url
    }

    /// Starts slot `i`'s node process (it must not be running).
    pub fn spawn(&mut self, i: usize) -> Result<()> {
        let preload = Preload {
            faketime: self
                .faketime
                .clone()
                .map(|lib| (lib, self.slots[i].clock_file.clone())),
            slow_fsync: self
                .shim
                .clone()
                .map(|lib| (lib, self.slots[i].disk_file.clone())),
        };
        let settings = &self.settings;
        let slot = &mut self.slots[i];
        if slot.child.is_some() {
            bail!("node {} in {} is already running", slot.id, slot.host);
        }
        slot.starts += 1;
        let log = settings
            .dir
            .join(format!("node-{}-{}.log", slot.host, slot.id));
        let args = vec![
            "--id".into(),
            slot.id.to_string(),
            "--listen".into(),
            slot.addr(),
            "--data-dir".into(),
            slot.data_dir.to_string_lossy().into_owned(),
            "--partners-url".into(),
            self.partners_url.clone(),
            "--cluster-id".into(),
            self.cluster_id.clone(),
            // The suite tests replication and sagas under faults, not transport security
            // (tests/tests/tls_*.rs and the hostile-input suite do).
            "--insecure".into(),
            "--executor".into(),
            settings.executors.to_string(),
            "--worker-threads".into(),
            "1".into(),
            "--snapshot-every-entries".into(),
            settings.snapshot_every.to_string(),
            "--log-keep-entries".into(),
            settings.log_keep.to_string(),
        ];
        let child = procs::spawn(Spawn {
            netns: &slot.netns,
            program: &settings.node_bin,
            args,
            env: vec![(
                "RUST_LOG".into(),
                "info,openraft=warn,sled=warn,h2=warn".into(),
            )],
            preload,
            log: &log,
        })?;
        if let Some(cpu) = &slot.cpu {
            cpu.add(child.id())?;
        }
        slot.child = Some(child);
        slot.frozen = false;
        Ok(())
    }

    /// Waits until slot `i`'s node answers `Status`.
    pub async fn await_serving(&mut self, i: usize, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let addr = self.slots[i].addr();
        loop {
            if let Some(child) = self.slots[i].child.as_mut() {
                if let Some(exit) = child.try_wait()? {
                    self.slots[i].child = None;
                    bail!(
                        "node {} exited at start ({exit}); see node-{}-{}.log",
                        self.slots[i].id,
                        self.slots[i].host,
                        self.slots[i].id
                    );
                }
            }
            if status(&addr, false).await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "node {} at {addr} did not serve within {timeout:?}",
                    self.slots[i].id
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILLs slot `i`'s node (thawing it first if stopped) and reaps it.
    pub fn kill(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if let Some(mut child) = slot.child.take() {
            let _ = procs::signal(child.id(), libc::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
        slot.frozen = false;
    }

    /// SIGSTOP or SIGCONT slot `i`'s node.
    pub fn freeze(&mut self, i: usize, frozen: bool) -> Result<()> {
        let slot = &mut self.slots[i];
        if let Some(pid) = slot.pid() {
            procs::signal(pid, if frozen { libc::SIGSTOP } else { libc::SIGCONT })?;
            slot.frozen = frozen;
        }
        Ok(())
    }

    /// Kills slot `i`'s node, wipes its data, and gives the slot a fresh node id (a replaced
    /// machine). Returns the new id.
    pub fn wipe(&mut self, i: usize) -> Result<u64> {
        self.kill(i);
        let slot = &mut self.slots[i];
        if slot.data_dir.exists() {
            std::fs::remove_dir_all(&slot.data_dir)?;
        }
        slot.id = self.next_id;
        self.next_id += 1;
        Ok(slot.id)
    }

    /// Sets slot `i`'s fake clock offset, in seconds.
    pub fn set_clock(&self, i: usize, offset_s: i64) -> Result<()> {
        let text = if offset_s >= 0 {
            format!("+{offset_s}")
        } else {
            offset_s.to_string()
        };
        std::fs::write(&self.slots[i].clock_file, text)?;
        Ok(())
    }

    /// Sets slot `i`'s fsync delay, in milliseconds.
    pub fn set_disk_delay(&self, i: usize, ms: u64) -> Result<()> {
        std::fs::write(&self.slots[i].disk_file, ms.to_string())?;
        Ok(())
    }

    /// Limits slot `i`'s CPU to `percent` of a core (`None`: no limit).
    pub fn set_cpu(&self, i: usize, percent: Option<u64>) -> Result<()> {
        let cpu = self.slots[i]
            .cpu
            .as_ref()
            .context("no cpu cgroup on this machine")?;
        match percent {
            Some(percent) => cpu.limit(percent),
            None => cpu.unlimit(),
        }
    }

    /// The slot running node `id`.
    pub fn slot_of(&self, id: u64) -> Option<usize> {
        self.slots.iter().position(|s| s.id == id)
    }

    /// Running (not necessarily member) slots.
    pub fn running(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].child.is_some())
            .collect()
    }

    /// Publishes the running nodes as the clients' targets.
    pub fn refresh_targets(&self) {
        let targets = self
            .running()
            .into_iter()
            .map(|i| Target {
                id: self.slots[i].id,
                addr: self.slots[i].addr(),
            })
            .collect();
        *self.targets.write().unwrap_or_else(|e| e.into_inner()) = targets;
    }

    /// Heals every knob: thaw, no CPU limit, real clocks, fast disks, filters removed.
    pub fn heal_all(&mut self) -> Result<()> {
        for i in 0..self.slots.len() {
            if self.slots[i].frozen {
                self.freeze(i, false)?;
            }
            let _ = self.set_cpu(i, None);
            self.set_clock(i, 0)?;
            self.set_disk_delay(i, 0)?;
        }
        self.net.heal()
    }

    /// Stops every process this world started; the partners last.
    pub fn stop_all(&mut self) {
        for i in 0..self.slots.len() {
            self.kill(i);
        }
        if let Some(mut partners) = self.partners.take() {
            let _ = partners.kill();
            let _ = partners.wait();
        }
    }

    /// The folder of the run.
    pub fn dir(&self) -> &Path {
        &self.settings.dir
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop_all();
        for slot in &mut self.slots {
            slot.cpu = None;
        }
        self.net.teardown();
    }
}

/// Connects to one node (bounded).
pub async fn connect(addr: &str) -> Result<NodeClients> {
    tokio::time::timeout(Duration::from_secs(3), ledger_client::connect(addr))
        .await
        .with_context(|| format!("connect to {addr}: timed out"))?
        .with_context(|| format!("connect to {addr}"))
}

/// One node's `Status` (bounded), with the state digest when `digest`.
pub async fn status(addr: &str, digest: bool) -> Result<pb::StatusResponse> {
    let call = async {
        let mut client = connect(addr).await?;
        let reply = client
            .cluster
            .status(pb::StatusRequest {
                with_digest: digest,
            })
            .await
            .with_context(|| format!("Status of {addr}"))?;
        Ok::<_, anyhow::Error>(reply.into_inner())
    };
    tokio::time::timeout(Duration::from_secs(3), call)
        .await
        .with_context(|| format!("Status of {addr}: timed out"))?
}
