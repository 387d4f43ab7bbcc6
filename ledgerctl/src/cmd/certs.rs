//! `ledgerctl certs`: the cluster CA, certificates it signs, bearer tokens.

use anyhow::{Context, Result};
use serde_json::json;

use crate::cli::{CertsCmd, Cli};
use crate::output::print_or_json;

pub fn run(cli: &Cli, cmd: &CertsCmd) -> Result<()> {
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
