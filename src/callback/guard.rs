//! What keeps the listener cheap under abuse: the rate limit, the memory of signatures seen,
//! and the limit on warning lines.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug)]
pub(super) struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub(super) fn new(rate: f64, burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            rate,
            burst,
            last: now,
        }
    }

    /// Takes a token if there is one.
    pub(super) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Signed payloads seen, by hash, with their timestamps. One older than the tolerance is
/// forgotten: the stale check refuses it anyway. The rate limit bounds how many can be live
/// (10 a second over a window of twice the tolerance); [`CAPACITY`] bounds it regardless.
#[derive(Debug, Default)]
pub(super) struct Replays {
    seen: HashMap<[u8; 32], u64>,
}

/// Most payloads remembered: 32 bytes and a timestamp each, under half a MiB in all.
const CAPACITY: usize = 8192;
/// Above this many, each insert first forgets the stale ones.
const PRUNE_ABOVE: usize = 1024;

impl Replays {
    /// Records `key` (signed at `timestamp`); `false` if it was seen before.
    pub(super) fn first_time(
        &mut self,
        key: [u8; 32],
        timestamp: u64,
        now_unix: u64,
        tolerance_s: u64,
    ) -> bool {
        if self.seen.contains_key(&key) {
            return false;
        }
        if self.seen.len() >= PRUNE_ABOVE {
            let oldest_valid = now_unix.saturating_sub(tolerance_s);
            self.seen.retain(|_, t| *t >= oldest_valid);
        }
        if self.seen.len() >= CAPACITY {
            // More live signatures than the rate limit lets in: a clock jump, or a secret that
            // leaked. Forgetting the oldest lets at most that one through again, as a nudge.
            if let Some(oldest) = self.seen.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k) {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(key, timestamp);
        true
    }
}

/// At most one warning line per [`WARN_EVERY`], and how many were not logged.
#[derive(Debug, Default)]
pub(super) struct Warnings {
    last: Option<Instant>,
    unlogged: u64,
}

const WARN_EVERY: Duration = Duration::from_secs(10);

impl Warnings {
    /// `Some(not_logged)` when a warning may be logged now.
    pub(super) fn due(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now < last + WARN_EVERY) {
            self.unlogged += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(10.0, 20.0, start);
        assert_eq!((0..25).filter(|_| bucket.take(start)).count(), 20);
        assert!(!bucket.take(start + Duration::from_millis(50)));
        assert!(bucket.take(start + Duration::from_millis(160)));
        let later = start + Duration::from_secs(3600);
        assert_eq!((0..25).filter(|_| bucket.take(later)).count(), 20);
    }

    #[test]
    fn a_payload_counts_once_until_it_is_stale_and_memory_is_bounded() {
        let mut replays = Replays::default();
        assert!(replays.first_time([1; 32], 1000, 1000, 300));
        assert!(!replays.first_time([1; 32], 1000, 1100, 300));
        for i in 0..(CAPACITY as u64 + 100) {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&i.to_le_bytes());
            key[31] = 2;
            assert!(replays.first_time(key, 2000, 2000, 300));
        }
        assert!(replays.seen.len() <= CAPACITY);
        // The first one went stale and was forgotten in a prune.
        assert!(!replays.seen.contains_key(&[1; 32]));
    }

    #[test]
    fn warnings_are_limited_and_count_what_was_not_logged() {
        let start = Instant::now();
        let mut warnings = Warnings::default();
        assert_eq!(warnings.due(start), Some(0));
        assert_eq!(warnings.due(start + Duration::from_secs(1)), None);
        assert_eq!(warnings.due(start + Duration::from_secs(2)), None);
        assert_eq!(warnings.due(start + Duration::from_secs(11)), Some(2));
    }
}
