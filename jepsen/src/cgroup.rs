//! CPU starvation through a cgroup quota, on cgroup v1 (`/sys/fs/cgroup/cpu/<group>/
//! cpu.cfs_quota_us`, what these machines mount) or v2 (`cpu.max`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::net::PREFIX;

const V1_ROOT: &str = "/sys/fs/cgroup/cpu";
const V2_ROOT: &str = "/sys/fs/cgroup";
/// The scheduling period the quota is a share of.
const PERIOD_US: u64 = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// One host's CPU cgroup.
#[derive(Debug)]
pub struct CpuGroup {
    path: PathBuf,
    version: Version,
}

fn detect() -> Result<(Version, PathBuf)> {
    if Path::new(V1_ROOT).join("cpu.cfs_quota_us").exists() {
        return Ok((Version::V1, PathBuf::from(V1_ROOT)));
    }
    let controllers =
        fs::read_to_string(Path::new(V2_ROOT).join("cgroup.controllers")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "cpu") {
        // Children get the cpu controller only if the parent delegates it.
        let _ = fs::write(Path::new(V2_ROOT).join("cgroup.subtree_control"), "+cpu");
        return Ok((Version::V2, PathBuf::from(V2_ROOT)));
    }
    bail!("no cgroup cpu controller: neither {V1_ROOT} (v1) nor cpu in {V2_ROOT} (v2)")
}

impl CpuGroup {
    /// Creates (or reuses) the group `name`, which must start with [`PREFIX`].
    pub fn create(name: &str) -> Result<CpuGroup> {
        assert!(
            name.starts_with(PREFIX),
            "cgroup names carry the run prefix"
        );
        let (version, root) = detect()?;
        let path = root.join(name);
        if !path.exists() {
            fs::create_dir(&path).with_context(|| format!("create cgroup {}", path.display()))?;
        }
        let group = CpuGroup { path, version };
        group.unlimit()?;
        Ok(group)
    }

    /// Moves process `pid` (all its threads) into the group.
    pub fn add(&self, pid: u32) -> Result<()> {
        fs::write(self.path.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("move {pid} into {}", self.path.display()))
    }

    /// Limits the group to `percent` of one core.
    pub fn limit(&self, percent: u64) -> Result<()> {
        let quota = (PERIOD_US * percent / 100).max(1_000);
        match self.version {
            Version::V1 => {
                fs::write(self.path.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
                fs::write(self.path.join("cpu.cfs_quota_us"), quota.to_string())?;
            }
            Version::V2 => fs::write(self.path.join("cpu.max"), format!("{quota} {PERIOD_US}"))?,
        }
        Ok(())
    }

    /// Lifts the limit.
    pub fn unlimit(&self) -> Result<()> {
        match self.version {
            Version::V1 => fs::write(self.path.join("cpu.cfs_quota_us"), "-1")?,
            Version::V2 => fs::write(self.path.join("cpu.max"), format!("max {PERIOD_US}"))?,
        }
        Ok(())
    }
}

impl Drop for CpuGroup {
    fn drop(&mut self) {
        let _ = self.unlimit();
        // Only an empty group can be removed; the processes are gone by now.
        let _ = fs::remove_dir(&self.path);
    }
}

/// Removes leftover groups of earlier runs (empty ones; their processes were killed first).
pub fn cleanup_leftovers() -> Vec<String> {
    let mut removed = Vec::new();
    for root in [V1_ROOT, V2_ROOT] {
        let Ok(entries) = fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(PREFIX)
                && !crate::net::owned_by_live_run(&name)
                && fs::remove_dir(entry.path()).is_ok()
            {
                removed.push(format!("cgroup {}", entry.path().display()));
            }
        }
    }
    removed
}
