//! Nemeses: the faults, a schedule of fault windows drawn from a seed, and how each fault is
//! applied to the [`World`] and healed.
//!
//! The schedule holds intents ("isolate the leader"); which node that hits is decided when the
//! window opens (whoever leads then) and written to the run's log of applied faults.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ledger_client::{pb, Client, ClientConfig};
use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use crate::world::{self, World};

/// A family of faults, as `--nemesis` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Family {
    /// No faults: a baseline.
    None,
    /// Network partitions of every shape, and executors cut off from the partners.
    Partition,
    /// SIGKILL of the leader, a follower, a majority, every node; restarts.
    Crash,
    /// SIGSTOP of the leader, and of an executor mid-saga for longer than its lease.
    Pause,
    /// CPU starvation of one node through a cgroup quota.
    Cpu,
    /// One node's clock jumps forward, backward, or strobes (libfaketime).
    Clock,
    /// Add a learner and promote it, remove a voter, remove the leader, re-add a wiped node
    /// under a new id, also during a partition.
    Membership,
    /// A low snapshot threshold and followers that come back from outages behind the purge.
    Snapshot,
    /// Slow fsync on the leader, then on a follower.
    Disk,
    /// Partner outages, slowness, lost replies after the effect.
    Partners,
    /// All of the above, rotating every ~10 s.
    Mixed,
    /// Partitions, kills and pauses, rotating every ~10 s: the short run in CI.
    Quick,
}

impl Family {
    /// The faults of this family.
    pub fn faults(self) -> Vec<Fault> {
        use Fault::*;
        match self {
            Family::None => Vec::new(),
            Family::Partition => vec![
                IsolateLeader,
                IsolateFollower,
                MajorityMinority,
                Bridge,
                OneWay,
                Flapping,
                PartnersCut,
            ],
            Family::Crash => vec![KillLeader, KillFollower, KillMajority, KillAll],
            Family::Pause => vec![PauseLeader, PauseExecutor],
            Family::Cpu => vec![StarveLeader, StarveFollower],
            Family::Clock => vec![
                ClockJump { secs: 600 },
                ClockJump { secs: 7_200 },
                ClockJump { secs: -3_600 },
                ClockStrobe { secs: 600 },
            ],
            Family::Membership => vec![
                AddAndPromote,
                RemoveVoter,
                RemoveLeader,
                ReplaceWiped,
                MembershipUnderPartition,
            ],
            Family::Snapshot => vec![SnapshotCatchUp],
            Family::Disk => vec![SlowDiskLeader { ms: 150 }, SlowDiskFollower { ms: 150 }],
            Family::Partners => vec![PartnersOutage, PartnersSlow, PartnersLostReplies],
            Family::Quick => vec![
                IsolateLeader,
                KillLeader,
                PauseLeader,
                MajorityMinority,
                KillFollower,
                IsolateFollower,
            ],
            Family::Mixed => [
                Family::Partition,
                Family::Crash,
                Family::Pause,
                Family::Cpu,
                Family::Clock,
                Family::Membership,
                Family::Snapshot,
                Family::Disk,
                Family::Partners,
            ]
            .into_iter()
            .flat_map(Family::faults)
            .collect(),
        }
    }

    /// Whether runs of this family need spare slots (membership changes).
    pub fn needs_spares(self) -> bool {
        matches!(self, Family::Membership | Family::Mixed)
    }

    /// `--snapshot-every-entries` and `--log-keep-entries` for runs of this family: low for
    /// the snapshot family (installs under load), moderate otherwise.
    pub fn snapshot_policy(self) -> (u64, u64) {
        match self {
            Family::Snapshot => (300, 50),
            Family::Mixed => (1_000, 200),
            _ => (5_000, 1_000),
        }
    }
}

/// One fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// The leader cannot reach the other members, nor they it.
    IsolateLeader,
    /// A follower is cut off.
    IsolateFollower,
    /// A random minority is cut off from the majority.
    MajorityMinority,
    /// Two halves that cannot see each other, and one node that sees both.
    Bridge,
    /// One node drops what one peer sends it, but not the other way.
    OneWay,
    /// A random node is isolated and healed again every 1–5 s.
    Flapping,
    /// Every node is cut off from the partners (executors only; Raft is fine).
    PartnersCut,
    /// SIGKILL of the leader; restarted at the end of the window.
    KillLeader,
    /// SIGKILL of a follower; restarted.
    KillFollower,
    /// SIGKILL of a majority; restarted.
    KillMajority,
    /// SIGKILL of every node; restarted.
    KillAll,
    /// SIGSTOP of the leader; SIGCONT at the end.
    PauseLeader,
    /// SIGSTOP of an executor that owns open sagas, for longer than its lease.
    PauseExecutor,
    /// The leader gets 5% of a core.
    StarveLeader,
    /// A follower gets 5% of a core.
    StarveFollower,
    /// One node's clock jumps by `secs` (negative: backwards); leadership moves to it half the
    /// time.
    ClockJump {
        /// The jump.
        secs: i64,
    },
    /// One node's clock alternates between `+secs` and right, every second.
    ClockStrobe {
        /// The amplitude.
        secs: i64,
    },
    /// A wiped spare joins as a learner, catches up, and is promoted.
    AddAndPromote,
    /// A follower voter is removed (and stopped).
    RemoveVoter,
    /// The leader is removed (and stopped).
    RemoveLeader,
    /// A node is removed, wiped, and added back under a new id.
    ReplaceWiped,
    /// A follower is isolated while a voter is added or removed.
    MembershipUnderPartition,
    /// A follower is killed for the window; with the low snapshot threshold it comes back
    /// behind the leader's purge and catches up by snapshot, under load.
    SnapshotCatchUp,
    /// The leader's fsyncs take `ms` longer.
    SlowDiskLeader {
        /// Added delay.
        ms: u64,
    },
    /// A follower's fsyncs take `ms` longer.
    SlowDiskFollower {
        /// Added delay.
        ms: u64,
    },
    /// The payment partner answers 503 to everything.
    PartnersOutage,
    /// Every partner answers after 1.5 s.
    PartnersSlow,
    /// 30% of payment and documents replies are lost after the effect.
    PartnersLostReplies,
}

impl Fault {
    /// How long this fault's window lasts: long enough for it to matter.
    fn window(&self, mixed: bool) -> Duration {
        match self {
            // Longer than the executor lease (10 s), so that its sagas move.
            Fault::PauseExecutor => Duration::from_secs(16),
            Fault::SnapshotCatchUp => Duration::from_secs(15),
            _ if mixed => Duration::from_secs(8),
            _ => Duration::from_secs(12),
        }
    }
}

/// A fault and when it is active, in microseconds since the start of the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// When the fault is applied.
    pub start_us: u64,
    /// When it is healed.
    pub end_us: u64,
    /// What it is.
    pub fault: Fault,
}

/// The schedule of a run of `total` under `family`, from `seed`: windows separated by healthy
/// gaps (2 s when mixed, 8 s otherwise), every fault of the family in a seeded order, cycle after
/// cycle, the first window 5 s in, the last one healed at least 5 s before the end.
pub fn schedule(family: Family, seed: u64, total: Duration) -> Vec<Window> {
    let faults = family.faults();
    if faults.is_empty() {
        return Vec::new();
    }
    let mixed = matches!(family, Family::Mixed | Family::Quick);
    let gap = Duration::from_secs(if mixed { 2 } else { 8 });
    let mut rng = Rng::new(seed ^ (family as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut windows = Vec::new();
    let mut at = Duration::from_secs(5);
    let end = total.saturating_sub(Duration::from_secs(5));
    let mut cycle = Vec::new();
    loop {
        if cycle.is_empty() {
            cycle = faults.clone();
            rng.shuffle(&mut cycle);
        }
        let fault = cycle.pop().expect("refilled above");
        let length = fault.window(mixed);
        if at + length > end {
            break;
        }
        windows.push(Window {
            start_us: at.as_micros() as u64,
            end_us: (at + length).as_micros() as u64,
            fault,
        });
        at += length + gap;
    }
    windows
}

/// What applying a fault did, and what healing it must undo.
#[derive(Debug, Default)]
pub struct Applied {
    /// A line for the report: the fault and the nodes it hit.
    pub description: String,
    restart: Vec<usize>,
    thaw: Vec<usize>,
    unstarve: Vec<usize>,
    clocks: Vec<usize>,
    disks: Vec<usize>,
    net: bool,
    partners: bool,
    stop: Option<tokio::sync::watch::Sender<bool>>,
}

/// The base fault config of the partners in every run: a little latency, 5% declines. Charges
/// take about a second, so that some are declined after their deal filled: those cancellations
/// are what admits from the waitlists (a decline within milliseconds of its admission frees a
/// seat nobody waits for yet).
pub fn partners_base() -> serde_json::Value {
    serde_json::json!({
        "payment": {"latency": {"mean_ms": 1000, "jitter_ms": 500}},
        "documents": {"latency": {"mean_ms": 15, "jitter_ms": 5}},
        "email": {"latency": {"mean_ms": 5, "jitter_ms": 5}},
        "decline_rate": 0.05,
        "unknown_delay_ms": 3000
    })
}

/// Replaces (PUT) or patches (POST) the partners' fault config.
pub async fn partners_faults(url: &str, config: &serde_json::Value, replace: bool) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let target = format!("{url}/v1/faults");
    let request = if replace {
        client.put(&target)
    } else {
        client.post(&target)
    };
    let reply = request.json(config).send().await?;
    if !reply.status().is_success() {
        bail!("partners refused {config}: {}", reply.text().await?);
    }
    Ok(())
}

/// What the nemesis knows of the cluster when a window opens.
struct View {
    /// Running member slots.
    members: Vec<usize>,
    /// Voter slots among them.
    voters: Vec<usize>,
    /// The leader's slot, if one leads.
    leader: Option<usize>,
    /// Member list as the leader reports it: (node id, voter).
    ids: Vec<(u64, bool)>,
}

async fn view(world: &World) -> View {
    let mut best: Option<pb::StatusResponse> = None;
    for i in world.running() {
        if world.slots[i].frozen {
            continue;
        }
        if let Ok(status) = world::status(&world.slots[i].addr(), false).await {
            let better = match &best {
                None => true,
                Some(b) => (status.role == "leader", status.term) > (b.role == "leader", b.term),
            };
            if better {
                best = Some(status);
            }
        }
    }
    let Some(status) = best else {
        return View {
            members: world.running(),
            voters: world.running(),
            leader: None,
            ids: Vec::new(),
        };
    };
    let ids: Vec<(u64, bool)> = status
        .members
        .iter()
        .map(|m| (m.node_id, m.role == pb::MemberRole::Voter as i32))
        .collect();
    let running = world.running();
    let members: Vec<usize> = running
        .iter()
        .copied()
        .filter(|&i| ids.iter().any(|(id, _)| *id == world.slots[i].id))
        .collect();
    let voters = members
        .iter()
        .copied()
        .filter(|&i| ids.iter().any(|(id, v)| *v && *id == world.slots[i].id))
        .collect();
    let leader = (status.role == "leader")
        .then(|| world.slot_of(status.node_id))
        .flatten();
    View {
        members,
        voters,
        leader,
        ids,
    }
}

fn ips(world: &World, slots: &[usize]) -> Vec<Ipv4Addr> {
    slots.iter().map(|&i| world.slots[i].ip).collect()
}

fn names(world: &World, slots: &[usize]) -> String {
    let ids: Vec<String> = slots
        .iter()
        .map(|&i| format!("{}", world.slots[i].id))
        .collect();
    format!("[{}]", ids.join(","))
}

/// Cuts `side_a` from `side_b` both ways (rules on both sides).
fn cut(world: &World, side_a: &[usize], side_b: &[usize]) -> Result<()> {
    let (a, b) = (ips(world, side_a), ips(world, side_b));
    for &i in side_a {
        world.net().set_rules(&world.slots[i].host, &b, &b)?;
    }
    for &i in side_b {
        world.net().set_rules(&world.slots[i].host, &a, &a)?;
    }
    Ok(())
}

/// Cuts member `victim` from every other member.
fn isolate(world: &World, view: &View, victim: usize) -> Result<()> {
    let rest: Vec<usize> = view
        .members
        .iter()
        .copied()
        .filter(|&i| i != victim)
        .collect();
    cut(world, &[victim], &rest)
}

fn operator(world: &World, view: &View) -> Result<Client> {
    let seeds: Vec<String> = view
        .members
        .iter()
        .map(|&i| world.slots[i].addr())
        .collect();
    let mut config = ClientConfig::new(seeds);
    config.deadline = Duration::from_secs(20);
    config.attempt_timeout = Duration::from_secs(5);
    Ok(Client::unconnected(config)?)
}

/// Applies `fault` to the world; `rng` picks victims.
pub async fn apply(world: &mut World, fault: &Fault, rng: &mut Rng) -> Result<Applied> {
    let view = view(world).await;
    let mut applied = Applied::default();
    let followers: Vec<usize> = view
        .members
        .iter()
        .copied()
        .filter(|&i| Some(i) != view.leader)
        .collect();
    let leader = view
        .leader
        .or_else(|| view.members.first().copied())
        .context("no running member")?;
    let follower = rng.pick(&followers).copied();
    match fault {
        Fault::IsolateLeader | Fault::IsolateFollower => {
            let victim = if *fault == Fault::IsolateLeader {
                leader
            } else {
                follower.context("no follower")?
            };
            isolate(world, &view, victim)?;
            applied.net = true;
            applied.description = format!("isolated node {}", world.slots[victim].id);
        }
        Fault::MajorityMinority => {
            let mut shuffled = view.members.clone();
            rng.shuffle(&mut shuffled);
            let minority_len = (shuffled.len().saturating_sub(1)) / 2;
            let (minority, majority) = shuffled.split_at(minority_len.max(1));
            cut(world, minority, majority)?;
            applied.net = true;
            applied.description = format!(
                "minority {} cut from majority {}",
                names(world, minority),
                names(world, majority)
            );
        }
        Fault::Bridge => {
            let mut shuffled = view.members.clone();
            rng.shuffle(&mut shuffled);
            if shuffled.len() < 3 {
                bail!("a bridge needs three members");
            }
            let middle = shuffled.len() / 2;
            let (a, rest) = shuffled.split_at(middle);
            let (bridge, b) = rest.split_first().context("a middle node")?;
            cut(world, a, b)?;
            applied.net = true;
            applied.description = format!(
                "{} and {} cut apart, node {} sees both",
                names(world, a),
                names(world, b),
                world.slots[*bridge].id
            );
        }
        Fault::OneWay => {
            let from = leader;
            let to = follower.context("no follower")?;
            world
                .net()
                .set_rules(&world.slots[to].host, &[world.slots[from].ip], &[])?;
            applied.net = true;
            applied.description = format!(
                "node {} drops what node {} sends it",
                world.slots[to].id, world.slots[from].id
            );
        }
        Fault::Flapping => {
            let (stop, mut stopped) = tokio::sync::watch::channel(false);
            let net_hosts: Vec<(String, Ipv4Addr)> = view
                .members
                .iter()
                .map(|&i| (world.slots[i].host.clone(), world.slots[i].ip))
                .collect();
            let tag = world.net().tag.clone();
            let mut flap_rng = Rng::new(rng.next_u64());
            tokio::spawn(async move {
                let mut cut_now = false;
                loop {
                    let pause = Duration::from_millis(flap_rng.range(1_000, 5_000));
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stopped.changed() => break,
                    }
                    cut_now = !cut_now;
                    let victim = flap_rng.range(0, net_hosts.len() as u64) as usize;
                    let others: Vec<Ipv4Addr> = net_hosts
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != victim)
                        .map(|(_, (_, ip))| *ip)
                        .collect();
                    for (j, (host, _)) in net_hosts.iter().enumerate() {
                        let ns = format!("{tag}-{host}");
                        let (from, to): (Vec<Ipv4Addr>, Vec<Ipv4Addr>) = if !cut_now {
                            (Vec::new(), Vec::new())
                        } else if j == victim {
                            (others.clone(), others.clone())
                        } else {
                            (vec![net_hosts[victim].1], vec![net_hosts[victim].1])
                        };
                        let _ = crate::net::set_rules_in(&ns, &from, &to);
                    }
                }
            });
            applied.stop = Some(stop);
            applied.net = true;
            applied.description = "flapping partitions every 1-5 s".into();
        }
        Fault::PartnersCut => {
            let partners = world.net().host("partners")?.addr;
            for &i in &view.members {
                world
                    .net()
                    .set_rules(&world.slots[i].host, &[partners], &[partners])?;
            }
            applied.net = true;
            applied.description = "every node cut off from the partners".into();
        }
        Fault::KillLeader | Fault::KillFollower | Fault::KillMajority | Fault::KillAll => {
            let victims: Vec<usize> = match fault {
                Fault::KillLeader => vec![leader],
                Fault::KillFollower => vec![follower.context("no follower")?],
                Fault::KillMajority => {
                    let mut shuffled = view.voters.clone();
                    rng.shuffle(&mut shuffled);
                    shuffled.truncate(view.voters.len() / 2 + 1);
                    shuffled
                }
                _ => view.members.clone(),
            };
            for &i in &victims {
                world.kill(i);
            }
            world.refresh_targets();
            applied.description = format!("killed {}", names(world, &victims));
            applied.restart = victims;
        }
        Fault::PauseLeader => {
            world.freeze(leader, true)?;
            applied.thaw = vec![leader];
            applied.description = format!("paused leader {}", world.slots[leader].id);
        }
        Fault::PauseExecutor => {
            let status = world::status(&world.slots[leader].addr(), false).await.ok();
            let busiest = status
                .iter()
                .flat_map(|s| s.executors.iter())
                .filter(|e| e.live && e.open_sagas > 0)
                .filter_map(|e| world.slot_of(e.node_id).map(|i| (e.open_sagas, i)))
                .filter(|(_, i)| Some(*i) != view.leader)
                .max()
                .map(|(_, i)| i);
            let victim = busiest.or(follower).context("no executor to pause")?;
            world.freeze(victim, true)?;
            applied.thaw = vec![victim];
            applied.description = format!(
                "paused executor {} (past its lease)",
                world.slots[victim].id
            );
        }
        Fault::StarveLeader | Fault::StarveFollower => {
            let victim = if *fault == Fault::StarveLeader {
                leader
            } else {
                follower.context("no follower")?
            };
            world.set_cpu(victim, Some(5))?;
            applied.unstarve = vec![victim];
            applied.description =
                format!("node {} starved to 5% of a core", world.slots[victim].id);
        }
        Fault::ClockJump { secs } | Fault::ClockStrobe { secs } => {
            let victim = *rng.pick(&view.members).context("no member")?;
            world.set_clock(victim, *secs)?;
            applied.clocks = vec![victim];
            let id = world.slots[victim].id;
            applied.description = format!("node {id} clock {secs:+} s");
            if let Fault::ClockStrobe { secs } = fault {
                let (stop, mut stopped) = tokio::sync::watch::channel(false);
                let file = world.slots[victim].clock_file.clone();
                let secs = *secs;
                tokio::spawn(async move {
                    let mut on = true;
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = stopped.changed() => break,
                        }
                        on = !on;
                        let _ = std::fs::write(
                            &file,
                            if on { format!("+{secs}") } else { "+0".into() },
                        );
                    }
                });
                applied.stop = Some(stop);
                applied.description.push_str(", strobing every second");
            }
            if rng.range(0, 2) == 0 && Some(victim) != view.leader {
                let client = operator(world, &view)?;
                match client.transfer_leader(id).await {
                    Ok(_) => applied.description.push_str(", leadership moved to it"),
                    Err(error) => applied
                        .description
                        .push_str(&format!(", leadership transfer failed: {error}")),
                }
            }
        }
        Fault::AddAndPromote
        | Fault::RemoveVoter
        | Fault::RemoveLeader
        | Fault::ReplaceWiped
        | Fault::MembershipUnderPartition => {
            applied.description = membership(world, &view, fault, rng, &mut applied).await?;
        }
        Fault::SnapshotCatchUp => {
            let victim = follower.context("no follower")?;
            world.kill(victim);
            world.refresh_targets();
            applied.restart = vec![victim];
            applied.description = format!(
                "follower {} down for the window (catches up by snapshot)",
                world.slots[victim].id
            );
        }
        Fault::SlowDiskLeader { ms } | Fault::SlowDiskFollower { ms } => {
            let victim = if matches!(fault, Fault::SlowDiskLeader { .. }) {
                leader
            } else {
                follower.context("no follower")?
            };
            world.set_disk_delay(victim, *ms)?;
            applied.disks = vec![victim];
            applied.description = format!("node {} fsync +{ms} ms", world.slots[victim].id);
        }
        Fault::PartnersOutage | Fault::PartnersSlow | Fault::PartnersLostReplies => {
            let patch = match fault {
                Fault::PartnersOutage => serde_json::json!({"payment": {"outage": true}}),
                Fault::PartnersSlow => serde_json::json!({
                    "payment": {"latency": {"mean_ms": 1500, "jitter_ms": 0}},
                    "documents": {"latency": {"mean_ms": 1500, "jitter_ms": 0}},
                    "email": {"latency": {"mean_ms": 1500, "jitter_ms": 0}}
                }),
                _ => serde_json::json!({
                    "payment": {"unknown_rate": 0.3},
                    "documents": {"unknown_rate": 0.3},
                    "unknown_mode": "mixed"
                }),
            };
            partners_faults(world.partners_url(), &patch, false).await?;
            applied.partners = true;
            applied.description = format!("partners: {patch}");
        }
    }
    Ok(applied)
}

/// Membership changes, one at a time, each waiting for the previous to commit.
async fn membership(
    world: &mut World,
    view: &View,
    fault: &Fault,
    rng: &mut Rng,
    applied: &mut Applied,
) -> Result<String> {
    let client = operator(world, view)?;
    let voter_ids: Vec<u64> = view
        .ids
        .iter()
        .filter(|(_, v)| *v)
        .map(|(id, _)| *id)
        .collect();
    let free: Vec<usize> = (0..world.slots.len())
        .filter(|&i| !view.ids.iter().any(|(id, _)| *id == world.slots[i].id))
        .collect();
    let mut lines = Vec::new();
    if *fault == Fault::MembershipUnderPartition {
        let followers: Vec<usize> = view
            .voters
            .iter()
            .copied()
            .filter(|&i| Some(i) != view.leader)
            .collect();
        if let Some(&victim) = rng.pick(&followers) {
            isolate(world, view, victim)?;
            applied.net = true;
            lines.push(format!("isolated node {}", world.slots[victim].id));
        }
    }
    // Keep 3 to 5 voters: grow from 3, shrink from 4 or more.
    let grow = match fault {
        Fault::AddAndPromote => voter_ids.len() < 5 && !free.is_empty(),
        Fault::RemoveVoter | Fault::RemoveLeader => voter_ids.len() < 4,
        _ => voter_ids.len() < 4 && !free.is_empty(),
    };
    if grow {
        let slot = *rng.pick(&free).context("no free slot")?;
        let id = join_wiped(world, &client, slot, &voter_ids).await?;
        lines.push(format!("added learner {id}, promoted {id}"));
        return Ok(lines.join(", "));
    }
    let victim_id = match fault {
        Fault::RemoveLeader => view.leader.map(|i| world.slots[i].id),
        _ => {
            let followers: Vec<u64> = voter_ids
                .iter()
                .copied()
                .filter(|id| view.leader.map(|i| world.slots[i].id) != Some(*id))
                .collect();
            rng.pick(&followers).copied()
        }
    }
    .context("no voter to remove")?;
    let voters: Vec<u64> = voter_ids
        .iter()
        .copied()
        .filter(|id| *id != victim_id)
        .collect();
    client
        .change_membership(&voters, false)
        .await
        .with_context(|| format!("remove {victim_id}"))?;
    lines.push(format!("removed {victim_id}"));
    if let Some(slot) = world.slot_of(victim_id) {
        world.kill(slot);
        world.refresh_targets();
        if *fault == Fault::ReplaceWiped {
            let id = join_wiped(world, &client, slot, &voters).await?;
            lines.push(format!("wiped it, added learner {id}, promoted {id}"));
        }
    }
    Ok(lines.join(", "))
}

/// Wipes `slot`, starts it under a fresh id, adds it as a learner, waits for it to catch up
/// (bounded), and promotes it beside `voters`, the way an operator adds a machine: one change
/// at a time, each committed before the next. Returns the new id.
async fn join_wiped(
    world: &mut World,
    client: &Client,
    slot: usize,
    voters: &[u64],
) -> Result<u64> {
    let id = world.wipe(slot)?;
    world.spawn(slot)?;
    world.await_serving(slot, Duration::from_secs(30)).await?;
    world.refresh_targets();
    let addr = world.slots[slot].addr();
    let added = client
        .add_learner_waiting(id, &addr, Duration::from_secs(30))
        .await
        .with_context(|| format!("add learner {id}"))?;
    if !added.caught_up {
        bail!(
            "learner {id} added but still catching up ({} of {}); not promoted",
            added.matched_index,
            added.catch_up_index
        );
    }
    let mut voters = voters.to_vec();
    voters.push(id);
    client
        .change_membership(&voters, false)
        .await
        .with_context(|| format!("promote {id}"))?;
    Ok(id)
}

/// Undoes what [`apply`] did: restarts, thaws, lifts limits, resets clocks and disks, removes
/// filters, resets the partners.
pub async fn heal(world: &mut World, applied: Applied) -> Result<()> {
    if let Some(stop) = applied.stop {
        let _ = stop.send(true);
    }
    if applied.net {
        world.net().heal()?;
    }
    for i in applied.thaw {
        world.freeze(i, false)?;
    }
    for i in applied.unstarve {
        world.set_cpu(i, None)?;
    }
    for i in applied.clocks {
        world.set_clock(i, 0)?;
    }
    for i in applied.disks {
        world.set_disk_delay(i, 0)?;
    }
    if applied.partners {
        partners_faults(world.partners_url(), &partners_base(), true).await?;
    }
    for &i in &applied.restart {
        if world.slots[i].child.is_none() {
            world.spawn(i)?;
        }
    }
    for &i in &applied.restart {
        world.await_serving(i, Duration::from_secs(60)).await?;
    }
    world.refresh_targets();
    Ok(())
}
