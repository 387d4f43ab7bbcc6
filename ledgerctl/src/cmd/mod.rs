//! Runs a parsed command: one module per command group.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, ClusterCmd, LeaderCmd, Top, UserCmd};

pub mod bench;
mod certs;
mod cluster;
mod deal;
pub mod demo;
mod invest;
mod leader;
mod member;
mod saga;
pub mod saga_bench;
mod snapshot;
mod user;

/// Runs the command `cli` names; the exit code of a command that did not fail.
pub async fn run(cli: &Cli) -> Result<ExitCode> {
    let done = match &cli.command {
        Top::Cluster(ClusterCmd::Status) => cluster::status(cli).await,
        Top::Cluster(ClusterCmd::Init { members }) => cluster::init(cli, members).await,
        Top::Member(cmd) => return member::run(cli, cmd).await,
        Top::Leader(LeaderCmd::Transfer { node_id }) => leader::transfer(cli, *node_id).await,
        Top::Snapshot(args) => snapshot::run(cli, args).await,
        Top::Deal(cmd) => deal::run(cli, cmd).await,
        Top::Invest(cmd) => invest::run(cli, cmd).await,
        Top::User(UserCmd::Show { user_id }) => user::show(cli, user_id).await,
        Top::Saga(cmd) => saga::run(cli, cmd).await,
        Top::Bench(args) => bench::run(cli, args).await,
        Top::SagaBench(args) => saga_bench::saga_bench(cli, args).await,
        Top::Demo(args) => demo::run(cli, args).await,
        Top::Certs(cmd) => certs::run(cli, cmd),
    };
    done.map(|()| ExitCode::SUCCESS)
}
