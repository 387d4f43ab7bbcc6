//! Applies 1,000,000 `Submit`s over 1,000 deals, batched 100 per entry as the leader batches
//! them, and prints decisions per second and the bytes each recorded investment costs.
//!
//! `cargo bench -p ledger-state-machine` prints a summary first (our own timing over five runs,
//! the live heap and RSS per investment), then divan's table for the same workload.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ledger_state_machine::*;

const DEALS: usize = 1_000;
const SUBMITS: usize = 1_000_000;
const BATCH: usize = 100;
const RUNS: usize = 5;

/// Counts live heap bytes, so the state's footprint is measured, not estimated.
struct CountingAlloc;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// SplitMix64: a fixed, dependency-free source of varied but reproducible inputs.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

const T0_MS: u64 = 1_790_000_000_000;

/// The entries before the rush: three executors and the deals.
fn opening() -> Vec<Entry> {
    let mut commands: Vec<Command> = (2..=3)
        .map(|node_id| Command::ExecutorHeartbeat {
            node_id,
            applied_index: 0,
        })
        .collect();
    commands.extend((0..DEALS).map(|d| {
        Command::CreateDeal(CreateDeal {
            deal_id: format!("deal-{d:04}"),
            // Every fourth deal is small, so the amount rule rejects too, not only the seat rule.
            amount: Money::from_cents(if d % 4 == 0 { 25_000_000 } else { 100_000_000 }),
            max_investors: MAX_INVESTORS_DEFAULT,
            min_ticket: Some(Money::from_cents(10_000)),
            max_ticket: None,
            opens_at_ms: None,
            closes_at_ms: None,
            max_waitlist: MAX_WAITLIST_DEFAULT,
        })
    }));
    vec![Entry {
        header: EntryHeader {
            leader_id: 1,
            time_ms: T0_MS,
        },
        commands,
    }]
}

/// The rush: mostly new investors, some returning ones, a few resubmissions of the same id.
fn rush() -> Vec<Entry> {
    let mut rng = SplitMix(42);
    let mut previous = Vec::with_capacity(SUBMITS);
    let mut entries = Vec::with_capacity(SUBMITS / BATCH);
    let mut commands = Vec::with_capacity(BATCH);
    for n in 0..SUBMITS {
        let roll = rng.next() % 100;
        let submit = if roll == 0 && !previous.is_empty() {
            // A client retry: the same request again.
            let i = (rng.next() % previous.len() as u64) as usize;
            previous[i]
        } else {
            let user = if roll < 5 {
                rng.next() % (n as u64 + 1)
            } else {
                n as u64
            };
            let request_id = RequestId::from_u128((u128::from(rng.next()) << 64) | (n as u128 + 1))
                .expect("non-zero");
            (
                request_id,
                (rng.next() % DEALS as u64) as usize,
                user,
                100_000 * (1 + rng.next() % 5),
            )
        };
        previous.push(submit);
        let (request_id, deal, user, cents) = submit;
        commands.push(Command::Submit(Submit {
            request_id,
            deal_id: format!("deal-{deal:04}"),
            user_id: format!("investor-{user:07}"),
            amount: Money::from_cents(cents),
            waitlist: false,
            waitlist_ttl_ms: None,
        }));
        if commands.len() == BATCH {
            let time_ms = T0_MS + 1 + (entries.len() as u64 / 10);
            entries.push(Entry {
                header: EntryHeader {
                    leader_id: 1,
                    time_ms,
                },
                commands: std::mem::replace(&mut commands, Vec::with_capacity(BATCH)),
            });
        }
    }
    entries
}

fn apply_all(state: &mut AdmissionState, first_index: u64, entries: &[Entry]) -> Vec<SagaEvent> {
    let mut events = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let results = state
            .apply_entry(first_index + i as u64, entry, &mut events)
            .expect("entries in order");
        std::hint::black_box(results);
    }
    events
}

fn opened() -> AdmissionState {
    let mut state = AdmissionState::new();
    apply_all(&mut state, 1, &opening());
    state
}

fn rss_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    let entries = rush();

    // Footprint: live heap and RSS added by the state while it records 1,000,000 decisions.
    let heap_before = LIVE_BYTES.load(Ordering::Relaxed);
    let rss_before = rss_bytes();
    let mut state = opened();
    let events = apply_all(&mut state, 2, &entries);
    let investments = state.investment_count();
    drop(events);
    let heap_per = (LIVE_BYTES.load(Ordering::Relaxed) - heap_before) as f64 / investments as f64;
    let rss_per = rss_before
        .zip(rss_bytes())
        .map(|(before, after)| after.saturating_sub(before) as f64 / investments as f64);
    let admitted = state
        .deals(0, PAGE_SIZE_MAX)
        .items
        .iter()
        .map(|d| d.investor_count as u64)
        .sum::<u64>();
    state
        .check_invariants()
        .expect("the rush keeps the invariants");
    drop(state);

    // Throughput: fresh state each run, opening excluded from the timing.
    let mut rates = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let mut state = opened();
        let started = Instant::now();
        let events = apply_all(&mut state, 2, &entries);
        let seconds = started.elapsed().as_secs_f64();
        rates.push(SUBMITS as f64 / seconds);
        std::hint::black_box(events);
    }
    rates.sort_by(f64::total_cmp);

    println!("ledger-state-machine apply benchmark ({SUBMITS} submits, {DEALS} deals, {BATCH} per entry, one core)");
    println!(
        "  decided: {investments} recorded, {admitted} admitted, {} rejected",
        investments as u64 - admitted
    );
    println!(
        "  decisions/s: median {:.0}, best {:.0}, worst {:.0} ({RUNS} runs)",
        rates[RUNS / 2],
        rates[RUNS - 1],
        rates[0]
    );
    println!("  bytes/investment: {heap_per:.0} live heap");
    if let Some(rss_per) = rss_per {
        println!(
            "  bytes/investment: {rss_per:.0} resident (RSS growth, includes allocator overhead)"
        );
    }
    println!();

    divan::main();
}

/// The same workload under divan, for its statistics.
#[divan::bench(sample_count = 3, sample_size = 1)]
fn submit_1m_over_1k_deals(bencher: divan::Bencher) {
    let entries = rush();
    bencher
        .counter(divan::counter::ItemsCount::new(SUBMITS))
        .with_inputs(opened)
        .bench_local_values(|mut state| {
            apply_all(&mut state, 2, &entries);
            state
        });
}
