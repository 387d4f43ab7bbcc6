//! Prometheus metrics over HTTP (`GET /metrics`, text exposition format), read from openraft's
//! metrics and the local replica at scrape time, so nothing is counted on the hot path.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::node::Node;

/// Serves `/metrics` on `listener` until the process stops.
pub async fn serve(listener: TcpListener, node: Arc<Node>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render))
        .with_state(node);
    axum::serve(listener, app).await
}

async fn render(State(node): State<Arc<Node>>) -> String {
    let metrics = node.raft.metrics().borrow().clone();
    let (investments, executors_live, (unknown_kept, unknown_forgotten), breaches) = {
        let replica = node.replica.read();
        let live = replica.state.executors().iter().filter(|e| e.live).count();
        (
            replica.state.investment_count(),
            live,
            replica.state.unknown_deal_rejections(),
            replica.state.breaches().count,
        )
    };
    let id = node.config.node_id;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{node_id=\"{id}\"}} {value}"
        );
    };
    gauge(
        "ledger_raft_term",
        "Current Raft term.",
        metrics.current_term,
    );
    gauge(
        "ledger_raft_is_leader",
        "1 if this node leads.",
        u64::from(crate::raft::admin::leads(&metrics)),
    );
    gauge(
        "ledger_raft_leader_id",
        "Known leader's node id (0 if none).",
        metrics.current_leader.unwrap_or(0),
    );
    gauge(
        "ledger_raft_last_log_index",
        "Index of the last log entry.",
        metrics.last_log_index.unwrap_or(0),
    );
    gauge(
        "ledger_raft_applied_index",
        "Index of the last applied entry.",
        metrics.last_applied.map_or(0, |l| l.index),
    );
    gauge(
        "ledger_raft_snapshot_index",
        "Index covered by the last snapshot.",
        metrics.snapshot.map_or(0, |l| l.index),
    );
    gauge(
        "ledger_raft_purged_index",
        "Index up to which the log was purged.",
        metrics.purged.map_or(0, |l| l.index),
    );
    gauge(
        "ledger_state_digests_computed",
        "Times the whole state was hashed for a Status with_digest (once per applied index), since start.",
        node.replica.digests_computed(),
    );
    let (stalls, worst_stall_ms) = crate::stall::observed();
    gauge(
        "ledger_runtime_stalls",
        "Times the async runtime woke a timer more than 50 ms late, since start.",
        stalls,
    );
    gauge(
        "ledger_runtime_stall_worst_ms",
        "Worst lateness of a timer wake-up since start, in ms (0 if none over 50 ms).",
        worst_stall_ms,
    );
    gauge(
        "ledger_investments_recorded",
        "Requests for existing deals decided (admitted or rejected).",
        investments as u64,
    );
    gauge(
        "ledger_unknown_deal_rejections_kept",
        &format!(
            "Rejections of requests naming a deal that does not exist, kept to answer \
             resubmissions (at most {}).",
            ledger_state_machine::UNKNOWN_DEAL_REJECTIONS_KEPT
        ),
        unknown_kept as u64,
    );
    gauge(
        "ledger_unknown_deal_rejections_forgotten",
        "Rejections of requests naming a deal that does not exist, forgotten past the bound since \
         the ledger began (a resubmission of one is decided anew).",
        unknown_forgotten,
    );
    gauge(
        "ledger_state_breaches",
        "Counter updates that found the replica's state already wrong while applying (a seat \
         released that was never held, an overflow), since it was loaded; anything but 0 is a \
         bug: the log names the deal.",
        breaches,
    );
    gauge(
        "ledger_executors_live",
        "Executors with a live lease.",
        executors_live as u64,
    );
    gauge(
        "ledger_connections_open",
        "TCP connections the gRPC server holds now.",
        node.connections.open() as u64,
    );
    let refused = node.raft_refused.load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP ledger_raft_refused_total Raft messages refused before reaching Raft (another \
         cluster, another target, undecodable, overflowing numbers, oversized snapshot chunks, a \
         sender that is not its certificate's node or not a member, a proposal a node may not \
         make).\n\
         # TYPE ledger_raft_refused_total counter\nledger_raft_refused_total{{node_id=\"{id}\"}} {refused}"
    );
    let refused = node.connections.refused();
    let _ = writeln!(
        out,
        "# HELP ledger_connections_refused_total Connections closed at once for being past \
         --max-connections.\n\
         # TYPE ledger_connections_refused_total counter\nledger_connections_refused_total{{node_id=\"{id}\"}} {refused}"
    );
    let refused = node.auth_refused.load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP ledger_auth_refused_total Calls refused for their credentials (none: \
         UNAUTHENTICATED; the wrong role or cluster: PERMISSION_DENIED).\n\
         # TYPE ledger_auth_refused_total counter\nledger_auth_refused_total{{node_id=\"{id}\"}} {refused}"
    );
    out
}
