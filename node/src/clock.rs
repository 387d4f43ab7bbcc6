//! The leader's clock for entry timestamps (`DESIGN.md` §4.3): its wall clock, corrected by the
//! median of the members' clock offsets, so that one node whose clock jumps cannot drag log
//! time with it.
//!
//! Every Raft reply carries the replying node's wall clock (`RaftReply.clock_ms`); the leader's
//! Raft client ([`crate::raft::network`]) turns each into an offset against its own clock at
//! the middle of the round trip, per peer. Stamps are `wall + median(0, offsets of peers heard
//! from lately)`: a leader whose clock is ten minutes ahead sees its followers ten minutes
//! behind and stamps the true time; a follower whose clock is off is outvoted. The state
//! machine bounds how far one entry may move log time anyway
//! (`Params::log_time_step_max_ms`); this keeps log time right in the first place, and keeps it
//! moving when a leader's clock jumps back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Offsets older than this are not counted: the peer may have gone, or its clock moved since.
const OFFSET_FRESH_FOR: Duration = Duration::from_secs(5);

/// The local wall clock in Unix milliseconds.
pub fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The peers' clock offsets as this node measured them.
#[derive(Debug, Default)]
pub struct PeerClocks {
    offsets: Mutex<HashMap<u64, (i64, Instant)>>,
}

impl PeerClocks {
    /// Records a reply from `peer`: its clock said `peer_clock_ms` for a request sent when the
    /// local wall clock said `sent_wall_ms`, answered after `round_trip`.
    pub fn record(&self, peer: u64, peer_clock_ms: u64, sent_wall_ms: u64, round_trip: Duration) {
        if peer_clock_ms == 0 {
            return; // a peer that does not report its clock
        }
        let middle = sent_wall_ms.saturating_add(round_trip.as_millis() as u64 / 2);
        let offset = peer_clock_ms as i64 - middle as i64;
        self.offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer, (offset, Instant::now()));
    }

    /// The median of this node's offset (0) and the fresh offsets of its peers; of the two
    /// middle values of an even count, the one closer to 0 (trusting the local clock on a tie).
    pub fn consensus_offset_ms(&self) -> i64 {
        let mut offsets: Vec<i64> = vec![0];
        offsets.extend(
            self.offsets
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .filter(|(_, at)| at.elapsed() < OFFSET_FRESH_FOR)
                .map(|(offset, _)| *offset),
        );
        median_toward_zero(&mut offsets)
    }
}

fn median_toward_zero(values: &mut [i64]) -> i64 {
    values.sort_unstable();
    let n = values.len();
    if n == 0 {
        return 0;
    }
    if n % 2 == 1 {
        return values[n / 2];
    }
    let (low, high) = (values[n / 2 - 1], values[n / 2]);
    if low.unsigned_abs() <= high.unsigned_abs() {
        low
    } else {
        high
    }
}

/// Stamps entries on the leader: corrected wall clock, never below an earlier stamp.
#[derive(Debug, Default)]
pub struct LogClock {
    /// The peers' offsets.
    pub peers: PeerClocks,
    last_stamp: AtomicU64,
}

impl LogClock {
    /// The timestamp for an entry proposed now.
    pub fn stamp(&self) -> u64 {
        self.stamp_at(wall_clock_ms())
    }

    fn stamp_at(&self, wall_ms: u64) -> u64 {
        let corrected = wall_ms.saturating_add_signed(self.peers.consensus_offset_ms());
        let previous = self.last_stamp.fetch_max(corrected, Ordering::AcqRel);
        previous.max(corrected)
    }

    /// The correction applied to the local clock now, in ms (for operators' metrics).
    pub fn offset_ms(&self) -> i64 {
        self.peers.consensus_offset_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTES_10: i64 = 600_000;

    fn clock_with(offsets: &[(u64, i64)]) -> LogClock {
        let clock = LogClock::default();
        for &(peer, offset) in offsets {
            let sent = 1_000_000_000_000u64;
            clock.peers.record(
                peer,
                sent.saturating_add_signed(offset),
                sent,
                Duration::ZERO,
            );
        }
        clock
    }

    #[test]
    fn a_leader_ten_minutes_ahead_stamps_the_majoritys_time() {
        // Both followers see the leader's clock ten minutes ahead of theirs.
        let clock = clock_with(&[(2, -MINUTES_10), (3, -MINUTES_10 + 3)]);
        let wall = 1_800_000_000_000;
        assert_eq!(clock.stamp_at(wall), wall - MINUTES_10 as u64 + 3);
    }

    #[test]
    fn one_follower_off_is_outvoted() {
        let clock = clock_with(&[(2, MINUTES_10), (3, 2)]);
        assert_eq!(clock.offset_ms(), 2);
        let clock = clock_with(&[(2, -7_200_000), (3, 0), (4, 1), (5, MINUTES_10)]);
        assert_eq!(clock.offset_ms(), 0);
    }

    #[test]
    fn a_tie_trusts_the_local_clock_and_stamps_never_go_back() {
        let clock = clock_with(&[(2, -MINUTES_10)]);
        assert_eq!(clock.offset_ms(), 0, "one peer against me: keep my clock");
        let wall = 1_800_000_000_000;
        assert_eq!(clock.stamp_at(wall), wall);
        // The local clock jumps back an hour: stamps hold still instead of going back.
        assert_eq!(clock.stamp_at(wall - 3_600_000), wall);
    }

    #[test]
    fn stale_or_silent_peers_do_not_count() {
        let clock = LogClock::default();
        clock.peers.record(2, 0, 1_000, Duration::ZERO);
        assert_eq!(clock.offset_ms(), 0);
        clock
            .peers
            .offsets
            .lock()
            .unwrap()
            .insert(3, (-MINUTES_10, Instant::now() - OFFSET_FRESH_FOR));
        clock
            .peers
            .offsets
            .lock()
            .unwrap()
            .insert(4, (-MINUTES_10, Instant::now() - OFFSET_FRESH_FOR));
        assert_eq!(clock.offset_ms(), 0);
    }

    #[test]
    fn the_round_trip_is_split_in_the_middle() {
        let peers = PeerClocks::default();
        // Sent at 1,000, answered after 40 ms, the peer said 1,020: in step with us.
        peers.record(2, 1_020, 1_000, Duration::from_millis(40));
        peers.record(3, 1_020, 1_000, Duration::from_millis(40));
        assert_eq!(peers.consensus_offset_ms(), 0);
    }
}
