//! The leader's clock for entry timestamps (`DESIGN.md` §4.3): the members' median wall clock,
//! so that one node whose clock jumps cannot drag log time with it.
//!
//! Every Raft reply carries the replying node's wall clock (`RaftReply.clock_ms`). The leader's
//! Raft client ([`crate::raft::network`]) records, per peer, that clock minus this node's
//! *monotonic* clock at the middle of the round trip. The time estimate is then
//! `monotonic now + median(own wall − monotonic, each fresh peer's reading)`: every vote is
//! relative to the monotonic clock, which never jumps, so when this node's wall clock jumps
//! only its own vote moves and the median holds. A leader ten minutes ahead is outvoted by its
//! two followers; a follower that is off is outvoted by the others.
//!
//! A new leader has heard no replies yet (followers send none): until a majority of the voters'
//! clocks is known, it stamps `min(own wall clock, log time extrapolated from the last entry it
//! applied)`, so a leader whose clock is ahead cannot carry log time forward, and one whose clock
//! is behind only holds it still for a moment (the state machine's log time never goes back).
//! The state machine also bounds how far one entry may move log time
//! (`Params::log_time_step_max_ms`).
//!
//! Both clocks are read through the [`Clock`] seam: [`SystemClock`] in production, a simulated
//! one (skewed, jumping or frozen per node) in the deterministic simulation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Readings older than this are not counted: the peer may have gone, or its clock moved since.
const READING_FRESH_FOR: Duration = Duration::from_secs(5);

/// Where a node reads the time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The wall clock in Unix milliseconds: it may jump either way.
    fn wall_ms(&self) -> u64;

    /// The monotonic clock. tokio's, so that timers, timeouts and backoff (which sleep on
    /// tokio's clock) and what is measured here agree, under a paused or simulated runtime too.
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The operating system's wall clock and tokio's monotonic clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// What this node knows of the other clocks and of log time.
#[derive(Debug)]
pub struct LogClock {
    clock: Arc<dyn Clock>,
    /// The origin of [`LogClock::mono_ms`].
    start: Instant,
    /// Per peer: its wall clock minus our monotonic clock, and when that was measured.
    readings: Mutex<HashMap<u64, (i64, Instant)>>,
    /// The largest log time this replica applied, and when it first saw it.
    log_time: Mutex<Option<(u64, Instant)>>,
}

impl LogClock {
    /// Reads the time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> LogClock {
        LogClock {
            start: clock.now(),
            clock,
            readings: Mutex::default(),
            log_time: Mutex::default(),
        }
    }

    /// This node's wall clock, as its Raft replies report it.
    pub fn wall_ms(&self) -> u64 {
        self.clock.wall_ms()
    }

    /// This node's monotonic clock.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Milliseconds of the monotonic clock since this clock was made (negative before).
    fn mono_ms(&self, at: Instant) -> i64 {
        let start = self.start;
        at.saturating_duration_since(start).as_millis() as i64
            - start.saturating_duration_since(at).as_millis() as i64
    }

    /// Records a reply from `peer` whose wall clock said `peer_clock_ms`, for a request sent at
    /// `sent` (monotonic) and answered at `answered`.
    pub fn record(&self, peer: u64, peer_clock_ms: u64, sent: Instant, answered: Instant) {
        if peer_clock_ms == 0 {
            return; // a peer that does not report its clock
        }
        let middle = sent + answered.saturating_duration_since(sent) / 2;
        let reading = peer_clock_ms as i64 - self.mono_ms(middle);
        self.readings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer, (reading, answered));
    }

    /// Notes the log time of the entries this replica just applied.
    pub fn observe_log_time(&self, log_time_ms: u64) {
        if log_time_ms == 0 {
            // A replica that has applied no stamped entry has no log time yet. Taken as one,
            // it made a new leader without readings stamp "1970 plus a few seconds" (the
            // extrapolation below), and log time then crawled back at 5 s per entry, lapsing
            // every executor's lease and every saga's deadline on the way (found by the
            // simulation: seeds 55, 123, 228, 372).
            return;
        }
        let mut seen = self.log_time.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.is_none_or(|(ms, _)| log_time_ms > ms) {
            *seen = Some((log_time_ms, self.clock.now()));
        }
    }

    /// The timestamp for an entry proposed now by a leader of `voters` voters.
    pub fn stamp(&self, voters: usize) -> u64 {
        self.stamp_at(self.clock.wall_ms(), self.clock.now(), voters)
    }

    fn stamp_at(&self, wall_ms: u64, now: Instant, voters: usize) -> u64 {
        let own = wall_ms as i64 - self.mono_ms(now);
        let mut votes = vec![own];
        votes.extend(
            self.readings
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .filter(|(_, at)| now.saturating_duration_since(*at) < READING_FRESH_FOR)
                .map(|(reading, _)| *reading),
        );
        if voters <= 1 {
            return wall_ms; // nobody to ask
        }
        // At least three clocks (two against one is a tie, which would trust this node's own),
        // and a majority of the voters' clocks.
        if votes.len() >= 3 && votes.len() * 2 > voters {
            let median = median_toward(&mut votes, own);
            return (self.mono_ms(now) + median).max(0) as u64;
        }
        // Not enough clocks known yet (a new leader): never ahead of the log's own time.
        let extrapolated = self
            .log_time
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map(|(ms, seen)| {
                ms.saturating_add(now.saturating_duration_since(seen).as_millis() as u64)
            });
        extrapolated.map_or(wall_ms, |log_ms| wall_ms.min(log_ms))
    }

    /// How far a stamp made now is from this node's wall clock, in ms (for diagnosis).
    pub fn offset_ms(&self, voters: usize) -> i64 {
        let (wall, now) = (self.clock.wall_ms(), self.clock.now());
        self.stamp_at(wall, now, voters) as i64 - wall as i64
    }
}

/// The median; of the two middle values of an even count, the one closer to `own` (trusting
/// the local clock on a tie).
fn median_toward(values: &mut [i64], own: i64) -> i64 {
    values.sort_unstable();
    let n = values.len();
    if n % 2 == 1 {
        return values[n / 2];
    }
    let (low, high) = (values[n / 2 - 1], values[n / 2]);
    if low.abs_diff(own) <= high.abs_diff(own) {
        low
    } else {
        high
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Default for LogClock {
        fn default() -> LogClock {
            LogClock::new(Arc::new(SystemClock))
        }
    }

    const MINUTES_10: u64 = 600_000;
    const REAL: u64 = 1_800_000_000_000;

    /// A clock whose peers' wall clocks read `REAL + offset` at `now`.
    fn clock_with(now: Instant, peers: &[(u64, i64)]) -> LogClock {
        let clock = LogClock::default();
        for &(peer, offset) in peers {
            clock.record(peer, REAL.saturating_add_signed(offset), now, now);
        }
        clock
    }

    #[test]
    fn a_leader_ten_minutes_ahead_stamps_the_majoritys_time() {
        let now = Instant::now();
        let clock = clock_with(now, &[(2, 0), (3, 3)]);
        assert_eq!(clock.stamp_at(REAL + MINUTES_10, now, 3), REAL + 3);
    }

    #[test]
    fn a_jump_of_the_leaders_own_clock_after_the_readings_is_outvoted_at_once() {
        // The peers were read when the leader's clock was right; then it jumps two hours.
        let now = Instant::now();
        let clock = clock_with(now, &[(2, 0), (3, 0)]);
        let later = now + Duration::from_millis(50);
        // Within a millisecond: the monotonic clock is read in whole milliseconds.
        let near = |stamp: u64| stamp.abs_diff(REAL + 50) <= 1;
        assert!(near(clock.stamp_at(REAL + 50 + 7_200_000, later, 3)));
        // And back an hour: still the real time, not an hour ago.
        assert!(near(clock.stamp_at(REAL + 50 - 3_600_000, later, 3)));
    }

    #[test]
    fn one_follower_off_is_outvoted() {
        let now = Instant::now();
        let clock = clock_with(now, &[(2, MINUTES_10 as i64), (3, 2)]);
        assert_eq!(clock.stamp_at(REAL, now, 3), REAL + 2);
        let clock = clock_with(now, &[(2, -7_200_000), (3, 0), (4, 1), (5, 600_000)]);
        assert_eq!(clock.stamp_at(REAL, now, 5), REAL);
    }

    #[test]
    fn a_new_leader_without_readings_is_never_ahead_of_the_log() {
        let now = Instant::now();
        let clock = LogClock::default();
        clock.observe_log_time(REAL);
        // Its own clock two hours ahead: the log's time, extrapolated, wins.
        let later = now + Duration::from_millis(100);
        let stamp = clock.stamp_at(REAL + 7_200_000, later, 3);
        assert!(stamp <= REAL + 1_000, "{stamp}");
        // Its clock right: its clock.
        assert_eq!(clock.stamp_at(REAL + 10, later, 3), REAL + 10);
        // One reading besides its own is a tie, not a majority: still the fallback.
        clock.record(2, REAL + 100, later, later);
        let stamp = clock.stamp_at(REAL + 7_200_000, later, 3);
        assert!(stamp <= REAL + 1_000, "{stamp}");
        // Both followers heard: the median.
        clock.record(3, REAL + 100, later, later);
        assert_eq!(clock.stamp_at(REAL + 7_200_000, later, 3), REAL + 100);
    }

    #[test]
    fn a_replica_without_log_time_lets_a_new_leader_stamp_its_wall_clock() {
        let now = Instant::now();
        let clock = LogClock::default();
        // What a fresh replica reports before any stamped entry: no log time at all.
        clock.observe_log_time(0);
        let later = now + Duration::from_millis(100);
        assert_eq!(clock.stamp_at(REAL, later, 3), REAL);
    }

    #[test]
    fn stale_or_silent_peers_do_not_count() {
        let now = Instant::now();
        let clock = LogClock::default();
        clock.record(2, 0, now, now);
        clock.record(3, REAL - MINUTES_10, now, now);
        let much_later = now + READING_FRESH_FOR + Duration::from_secs(1);
        clock.observe_log_time(REAL);
        // The only reading is stale: the fallback applies, not the old reading.
        let stamp = clock.stamp_at(REAL, much_later, 3);
        assert_eq!(stamp, REAL);
    }

    /// A wall clock set by hand, as the simulation's is.
    #[derive(Debug, Default)]
    struct HandClock(std::sync::atomic::AtomicU64);

    impl Clock for HandClock {
        fn wall_ms(&self) -> u64 {
            self.0.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    #[test]
    fn stamps_read_the_clock_seam() {
        let hand = Arc::new(HandClock::default());
        hand.0.store(REAL, std::sync::atomic::Ordering::Relaxed);
        let clock = LogClock::new(hand.clone());
        assert_eq!(clock.wall_ms(), REAL);
        let now = clock.now();
        clock.record(2, REAL, now, now);
        clock.record(3, REAL, now, now);
        // The seam's wall clock jumps two hours: the median of the three holds.
        hand.0
            .store(REAL + 7_200_000, std::sync::atomic::Ordering::Relaxed);
        let stamp = clock.stamp(3);
        assert!(stamp.abs_diff(REAL) <= 1_000, "{stamp}");
        assert!(clock.offset_ms(3) < -7_000_000);
    }

    #[test]
    fn the_round_trip_is_split_in_the_middle() {
        let sent = Instant::now();
        let answered = sent + Duration::from_millis(40);
        let clock = LogClock::default();
        // The peer read REAL + 20 at the middle of the round trip, when our wall clock read
        // REAL + 20 too: in step with us.
        let middle = sent + Duration::from_millis(20);
        let own_at_middle = REAL as i64 + 20 - clock.mono_ms(middle);
        clock.record(2, REAL + 20, sent, answered);
        clock.record(3, REAL + 20, sent, answered);
        let readings = clock.readings.lock().unwrap();
        assert!(readings.values().all(|(r, _)| *r == own_at_middle));
    }
}
