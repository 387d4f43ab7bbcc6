//! The test network: one Linux bridge in the root namespace and one network namespace per host
//! (each node, and the partners), with addresses from 198.18.0.0/15 (RFC 2544's benchmarking
//! range, never routed anywhere). Partitions are nftables rules inside the hosts' namespaces;
//! the clients stay in the root namespace and reach every host through the bridge.
//!
//! Every name starts with [`PREFIX`] and the run's tag, so a run can always find and remove what
//! an earlier run left behind ([`cleanup_leftovers`]), and [`Net`] tears down what it made when
//! dropped, also while a panic unwinds.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The first letters of every namespace, link and cgroup a run creates.
pub const PREFIX: &str = "ljp";

/// A host of the test network.
#[derive(Clone, Debug)]
pub struct Host {
    /// The host's name in the run (e.g. `n1`, `partners`).
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// The root-namespace end of its veth pair (enslaved to the bridge).
    pub veth: String,
    /// Its address.
    pub addr: Ipv4Addr,
}

/// The bridge, the namespaces and their links of one run.
pub struct Net {
    /// `ljp` + the run's tag; prefix of every name below.
    pub tag: String,
    /// The bridge's address, in the root namespace: where the clients' traffic comes from.
    pub gateway: Ipv4Addr,
    bridge: String,
    hosts: Vec<Host>,
    torn_down: bool,
}

/// Runs a command to completion; an error carries its stderr.
pub fn sh(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a command with `input` on its stdin.
fn sh_stdin(program: &str, args: &[&str], input: &str) -> Result<()> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {program}"))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "{program} {} failed ({}): {}\ninput:\n{input}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

impl Net {
    /// Creates the bridge `<tag>b` with `198.18.<subnet>.1/24`, and one namespace per name in
    /// `hosts`, the `i`-th at `198.18.<subnet>.<10 + i>`. On any failure, what was made so far
    /// is removed.
    pub fn create(tag: &str, subnet: u8, hosts: &[&str]) -> Result<Net> {
        let tag = format!("{PREFIX}{tag}");
        if tag.len() > 10 {
            bail!("run tag {tag:?} too long for interface names");
        }
        // Claim the tag: another run's cleanup leaves alone what a live harness owns.
        std::fs::write(owner_file(&tag), std::process::id().to_string())
            .context("write the run's owner file")?;
        let mut net = Net {
            bridge: format!("{tag}b"),
            gateway: Ipv4Addr::new(198, 18, subnet, 1),
            tag,
            hosts: Vec::new(),
            torn_down: false,
        };
        net.build(subnet, hosts)?;
        Ok(net)
    }

    fn build(&mut self, subnet: u8, hosts: &[&str]) -> Result<()> {
        let bridge = self.bridge.clone();
        sh("ip", &["link", "add", &bridge, "type", "bridge"])?;
        sh(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", self.gateway),
                "dev",
                &bridge,
            ],
        )?;
        sh("ip", &["link", "set", &bridge, "up"])?;
        for (i, name) in hosts.iter().enumerate() {
            let host = Host {
                name: (*name).to_owned(),
                netns: format!("{}-{name}", self.tag),
                veth: format!("{}v{i}", self.tag),
                addr: Ipv4Addr::new(198, 18, subnet, 10 + u8::try_from(i)?),
            };
            let peer = format!("{}p", host.veth);
            sh("ip", &["netns", "add", &host.netns])?;
            self.hosts.push(host.clone());
            sh(
                "ip",
                &[
                    "link",
                    "add",
                    &host.veth,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &peer,
                    "netns",
                    &host.netns,
                ],
            )?;
            sh("ip", &["link", "set", &host.veth, "master", &bridge])?;
            sh("ip", &["link", "set", &host.veth, "up"])?;
            let ns = host.netns.as_str();
            sh("ip", &["-n", ns, "link", "set", &peer, "name", "eth0"])?;
            sh(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{}/24", host.addr),
                    "dev",
                    "eth0",
                ],
            )?;
            sh("ip", &["-n", ns, "link", "set", "eth0", "up"])?;
            sh("ip", &["-n", ns, "link", "set", "lo", "up"])?;
            self.set_rules(name, &[], &[])?;
        }
        Ok(())
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Result<&Host> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .with_context(|| format!("no host {name}"))
    }

    /// Every host.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Replaces host `name`'s filter: packets from `drop_from` are dropped on the way in, packets
    /// to `drop_to` on the way out. Empty lists heal the host.
    pub fn set_rules(
        &self,
        name: &str,
        drop_from: &[Ipv4Addr],
        drop_to: &[Ipv4Addr],
    ) -> Result<()> {
        set_rules_in(&self.host(name)?.netns, drop_from, drop_to)
    }

    /// Removes every filter.
    pub fn heal(&self) -> Result<()> {
        for host in &self.hosts {
            self.set_rules(&host.name, &[], &[])?;
        }
        Ok(())
    }

    /// Removes the namespaces, their links and the bridge. Processes inside the namespaces must
    /// be gone first (the caller kills what it started).
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        for host in &self.hosts {
            let _ = sh("ip", &["link", "del", &host.veth]);
            let _ = sh("ip", &["netns", "del", &host.netns]);
        }
        let _ = sh("ip", &["link", "del", &self.bridge]);
        let _ = std::fs::remove_file(owner_file(&self.tag));
    }
}

/// Where a run records the pid of the harness that owns its tag.
fn owner_file(tag: &str) -> std::path::PathBuf {
    std::path::Path::new("/run").join(format!("{tag}.owner"))
}

/// `ljp` plus the run's 4-character tag, from any name a run gives (`ljpab12-n1`, `ljpab12v0`).
fn tag_of(name: &str) -> Option<&str> {
    name.get(..PREFIX.len() + 4)
        .filter(|t| t.starts_with(PREFIX))
}

/// Whether a live harness still owns what carries this name (another run going on now).
pub fn owned_by_live_run(name: &str) -> bool {
    let Some(tag) = tag_of(name) else {
        return false;
    };
    let Ok(text) = std::fs::read_to_string(owner_file(tag)) else {
        return false;
    };
    let Ok(pid) = text.trim().parse::<libc::pid_t>() else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    pid != 0 && pid != std::process::id() as libc::pid_t && unsafe { libc::kill(pid, 0) } == 0
}

impl Drop for Net {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Replaces the filter of namespace `netns` (see [`Net::set_rules`]).
pub fn set_rules_in(netns: &str, drop_from: &[Ipv4Addr], drop_to: &[Ipv4Addr]) -> Result<()> {
    let set = |addrs: &[Ipv4Addr]| {
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut script = String::new();
    // Declaring the table first makes the delete valid whether or not it exists.
    let _ = writeln!(script, "table inet {PREFIX}\ndelete table inet {PREFIX}");
    let _ = writeln!(script, "table inet {PREFIX} {{");
    let _ = writeln!(
        script,
        "  chain input {{ type filter hook input priority 0; policy accept;"
    );
    if !drop_from.is_empty() {
        let _ = writeln!(script, "    ip saddr {{ {} }} drop", set(drop_from));
    }
    let _ = writeln!(script, "  }}");
    let _ = writeln!(
        script,
        "  chain output {{ type filter hook output priority 0; policy accept;"
    );
    if !drop_to.is_empty() {
        let _ = writeln!(script, "    ip daddr {{ {} }} drop", set(drop_to));
    }
    let _ = writeln!(script, "  }}\n}}");
    sh_stdin("ip", &["netns", "exec", netns, "nft", "-f", "-"], &script)
}

/// Removes namespaces, links and cgroups whose names start with [`PREFIX`]: what earlier runs
/// left behind (a run killed with SIGKILL cannot clean up after itself). What a live harness
/// owns (its pid in `/run/<tag>.owner`) is left alone, so two runs on one machine do not tear
/// each other down. Processes still inside an orphaned namespace were started by an earlier
/// run of this harness; they are killed by pid first. Returns what was removed.
pub fn cleanup_leftovers() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let namespaces = sh("ip", &["netns", "list"]).unwrap_or_default();
    for line in namespaces.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if !name.starts_with(PREFIX) || owned_by_live_run(name) {
            continue;
        }
        if let Ok(pids) = sh("ip", &["netns", "pids", name]) {
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: kill(2) with a pid the kernel reports inside our own namespace.
                unsafe {
                    libc::kill(pid, libc::SIGCONT);
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        let _ = sh("ip", &["netns", "del", name]);
        removed.push(format!("netns {name}"));
    }
    let links = sh("ip", &["-o", "link", "show"]).unwrap_or_default();
    for line in links.lines() {
        // "12: ljpab12b: <...>" or "13: ljpab12v0@if2: <...>"
        let Some(name) = line.split(':').nth(1).map(str::trim) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if name.starts_with(PREFIX)
            && !owned_by_live_run(name)
            && sh("ip", &["link", "del", name]).is_ok()
        {
            removed.push(format!("link {name}"));
        }
    }
    removed.extend(crate::cgroup::cleanup_leftovers());
    Ok(removed)
}

/// Whether this machine can run the harness: root, and the tools it calls. `Err` says what is
/// missing.
pub fn preflight() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the Jepsen harness needs root (network namespaces, nftables, cgroups)");
    }
    let mut missing = Vec::new();
    for (tool, args) in [
        ("ip", &["-V"][..]),
        ("nft", &["-v"][..]),
        ("nsenter", &["--version"][..]),
        ("cc", &["--version"][..]),
    ] {
        if sh(tool, args).is_err() {
            missing.push(tool);
        }
    }
    if crate::procs::faketime_library().is_none() {
        missing.push("faketime (libfaketime)");
    }
    if !missing.is_empty() {
        bail!(
            "missing tools: {} (on Debian: apt-get install iproute2 nftables util-linux faketime gcc)",
            missing.join(", ")
        );
    }
    Ok(())
}
