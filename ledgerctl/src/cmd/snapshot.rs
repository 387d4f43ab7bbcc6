//! `ledgerctl snapshot`: make a node build a snapshot now; save a backup of the cluster;
//! restore a new node's data folder from a backup.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use ledger_client::Client;
use ledger_state_machine::codec::backup;
use serde_json::json;

use crate::cli::{Cli, SnapshotArgs, SnapshotCmd};
use crate::output::print_or_json;

/// Runs `ledgerctl snapshot …`.
pub async fn run(cli: &Cli, args: &SnapshotArgs) -> Result<()> {
    match (&args.command, &args.node_id) {
        (Some(SnapshotCmd::Now { node_id }), _) | (None, Some(node_id)) => now(cli, *node_id).await,
        (Some(SnapshotCmd::Save { file }), _) => save(cli, file).await,
        (
            Some(SnapshotCmd::Restore {
                file,
                data_dir,
                id,
                members,
                cluster_id,
            }),
            _,
        ) => restore(cli, file, data_dir, *id, members, cluster_id.as_deref()),
        (None, None) => {
            bail!("say which: snapshot now N, snapshot save FILE or snapshot restore FILE …")
        }
    }
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

/// Makes node `node_id` build a snapshot now.
async fn now(cli: &Cli, node_id: u64) -> Result<()> {
    let client = cli.client().await?;
    let addr = member_addr(&client, node_id).await?;
    let index = client.trigger_snapshot(&addr).await?;
    print_or_json(
        cli,
        json!({"node_id": node_id, "snapshot_index": index}),
        || format!("node {node_id} has a snapshot at index {index}"),
    )
}

/// Saves a backup of the cluster to `file`: written beside it, checked, synced, renamed.
async fn save(cli: &Cli, file: &Path) -> Result<()> {
    let client = cli.client().await?;
    let (about, bytes) = client.save_snapshot().await?;
    // What arrived is checked as a restore would check it, before it takes the file's name.
    let saved = backup::decode(&bytes).context("the backup received does not check out")?;
    let tmp = file.with_extension("tmp");
    {
        let mut out =
            std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
        out.write_all(&bytes)
            .and_then(|()| out.sync_all())
            .with_context(|| format!("write {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, file).with_context(|| format!("rename to {}", file.display()))?;
    print_or_json(
        cli,
        json!({
            "file": file.display().to_string(),
            "bytes": bytes.len(),
            "log_index": saved.log_index,
            "term": saved.term,
            "cluster_id": saved.cluster_id,
            "format_version": backup::BACKUP_FORMAT_VERSION,
            "digest": about.digest,
        }),
        || {
            format!(
                "saved {} ({} bytes): cluster {}, log index {}, term {}, digest {}",
                file.display(),
                bytes.len(),
                saved.cluster_id,
                saved.log_index,
                saved.term,
                about.digest
            )
        },
    )
}

/// Writes a new node's data folder from the backup `file`.
fn restore(
    cli: &Cli,
    file: &Path,
    data_dir: &Path,
    id: u64,
    members: &[String],
    cluster_id: Option<&str>,
) -> Result<()> {
    let mut parsed = BTreeMap::new();
    for (node, addr) in super::cluster::parse_members(members)? {
        if parsed.insert(node, addr).is_some() {
            bail!("node {node} appears twice in --members");
        }
    }
    let restored = ledger_node::raft::backup::restore(file, data_dir, id, &parsed, cluster_id)?;
    print_or_json(
        cli,
        json!({
            "data_dir": data_dir.display().to_string(),
            "node_id": id,
            "log_index": restored.log_index,
            "digest": restored.digest,
            "old_cluster_id": restored.old_cluster_id,
            "cluster_id": restored.cluster_id,
        }),
        || {
            format!(
                "restored node {id} into {} at log index {} (digest {}); start it with \
                 --cluster-id {} (the old cluster was {})",
                data_dir.display(),
                restored.log_index,
                restored.digest,
                restored.cluster_id,
                restored.old_cluster_id
            )
        },
    )
}
