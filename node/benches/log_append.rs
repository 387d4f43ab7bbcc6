//! The log store's append path (issue #15 §4): what one durable append costs, by entry size,
//! measured as openraft 0.9's core loop waits for it: the entry is written as one sled batch,
//! then the `log-flusher` thread fsyncs it and the flush callback fires
//! (`RaftLogStorageExt::blocking_append`, which awaits both). On the leader every round waits
//! for one such append before its entry goes to the followers (docs/performance.md).
//!
//! `cargo bench -p ledger-node --bench log_append` prints, for entries of 1, 9 (a hot unary
//! round), 100 and 1,000 `Submit`s: appends/s, commands/s, MB/s, append latency p50/p99/max,
//! and the encoding cost alone. The log is in a temporary folder on the disk the target folder
//! is on (`TMPDIR` chooses another). `LOG_APPEND_COUNT` sets the appends per size (2,000).

use std::time::{Duration, Instant};

use ledger_node::raft::log_store::LogStore;
use ledger_node::raft::LogEntry;
use ledger_state_machine::codec::record::EncodedEntry;
use ledger_state_machine::{Command, Entry, EntryHeader, Money, RequestId, Submit};
use openraft::storage::RaftLogStorageExt;
use openraft::{CommittedLeaderId, EntryPayload, LogId};

const SIZES: [usize; 4] = [1, 9, 100, 1_000];

/// An entry of `commands` submissions, as the leader's batcher would propose it.
fn entry(index: u64, commands: usize) -> Entry {
    Entry {
        header: EntryHeader {
            leader_id: 1,
            time_ms: 1_767_225_600_000 + index,
        },
        commands: (0..commands)
            .map(|n| {
                let serial = index * commands as u64 + n as u64;
                Command::Submit(Submit {
                    request_id: RequestId::from_u128(u128::from(serial) + 1).expect("not zero"),
                    deal_id: format!("deal-{:04}", serial % 1_000),
                    user_id: format!("investor-{serial:07}"),
                    amount: Money::from_cents(100_000),
                    waitlist: false,
                    waitlist_ttl_ms: None,
                })
            })
            .collect(),
    }
}

fn log_entry(index: u64, commands: usize) -> LogEntry {
    LogEntry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(EncodedEntry::new(entry(index, commands))),
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let at = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let count: u64 = std::env::var("LOG_APPEND_COUNT")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(2_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!("log store append path: {count} appends per size, each awaited until fsynced");
    println!(
        "{:>9} {:>10} {:>12} {:>8} {:>11} {:>9} {:>9} {:>9} {:>12}",
        "commands",
        "appends/s",
        "commands/s",
        "MB/s",
        "bytes/entry",
        "p50 ms",
        "p99 ms",
        "max ms",
        "encode µs"
    );
    for commands in SIZES {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let (mut log, _) = LogStore::open(dir.path()).expect("a new log");
        // The encoding alone, as the batcher does it once per entry.
        let encode_started = Instant::now();
        let encoded: Vec<usize> = (1..=count.min(200))
            .map(|i| EncodedEntry::new(entry(i, commands)).bytes().len())
            .collect();
        let encode = encode_started.elapsed() / encoded.len() as u32;
        let bytes_per_entry = encoded.iter().sum::<usize>() / encoded.len();
        let mut latencies = Vec::with_capacity(count as usize);
        let started = Instant::now();
        runtime.block_on(async {
            for index in 1..=count {
                let next = log_entry(index, commands);
                let sent = Instant::now();
                log.blocking_append([next])
                    .await
                    .expect("appended and fsynced");
                latencies.push(sent.elapsed());
            }
        });
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort();
        let appends = count as f64 / elapsed;
        println!(
            "{:>9} {:>10.0} {:>12.0} {:>8.2} {:>11} {:>9.3} {:>9.3} {:>9.3} {:>12.1}",
            commands,
            appends,
            appends * commands as f64,
            appends * bytes_per_entry as f64 / 1e6,
            bytes_per_entry,
            ms(quantile(&latencies, 0.5)),
            ms(quantile(&latencies, 0.99)),
            ms(quantile(&latencies, 1.0)),
            encode.as_secs_f64() * 1e6,
        );
    }
}
