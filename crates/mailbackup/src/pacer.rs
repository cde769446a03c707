//! A worker's share of the app's Graph request budget (see
//! [`crate::options::WorkerOptions::tenant_requests_per_second`]).
//!
//! Requests are spaced evenly: each takes the next free instant, one interval after the one
//! before, so a worker never sends more than its rate in any window (no bursts). The rate is
//! changed when the number of live workers changes (at each heartbeat). A request that took its
//! instant before the rate was lowered takes a new one once that instant has come (after every
//! instant already given out), so a lower rate holds from the moment it is set: another worker
//! may take the share given up at once.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Paces the requests of one worker.
#[derive(Debug)]
pub(crate) struct Pacer {
    next: Mutex<Option<Instant>>,
    interval_nanos: AtomicU64,
    /// Counts the times the rate was lowered: an instant reserved before is void.
    lowered: AtomicU64,
}

fn interval(per_second: f64) -> u64 {
    (1e9 / per_second.max(0.001)) as u64
}

impl Pacer {
    pub(crate) fn new(per_second: f64) -> Pacer {
        Pacer {
            next: Mutex::new(None),
            interval_nanos: AtomicU64::new(interval(per_second)),
            lowered: AtomicU64::new(0),
        }
    }

    /// Changes the rate (requests per second): for the requests reserved from now on, and when
    /// it is lowered, for those waiting for an instant reserved before ([`Pacer::wait_turn`]).
    pub(crate) fn set_rate(&self, per_second: f64) {
        let before = self
            .interval_nanos
            .swap(interval(per_second), Ordering::SeqCst);
        if interval(per_second) > before {
            self.lowered.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The rate in requests per second.
    pub(crate) fn rate(&self) -> f64 {
        1e9 / self.interval_nanos.load(Ordering::Relaxed) as f64
    }

    /// Reserves the next free instant for a request; the caller waits until then, and then
    /// asks [`Pacer::still_valid`] with the token given here whether it may go (else it
    /// reserves again: the rate was lowered while it waited).
    pub(crate) fn reserve(&self) -> (Instant, u64) {
        let now = Instant::now();
        let lowered = self.lowered.load(Ordering::SeqCst);
        let step = Duration::from_nanos(self.interval_nanos.load(Ordering::SeqCst));
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let at = next.map_or(now, |n| n.max(now));
        *next = Some(at + step);
        (at, lowered)
    }

    /// Whether an instant reserved with `token` still holds (the rate was not lowered since).
    pub(crate) fn still_valid(&self, token: u64) -> bool {
        self.lowered.load(Ordering::SeqCst) == token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_spaced_by_the_share_of_the_budget() {
        let p = Pacer::new(10.0);
        let first = p.reserve().0;
        let tenth = (0..9).map(|_| p.reserve().0).last().unwrap();
        assert!(
            tenth - first >= Duration::from_millis(899),
            "{:?}",
            tenth - first
        );
        // Three workers sharing 30 requests/s: 10 each.
        p.set_rate(30.0 / 3.0);
        assert!((p.rate() - 10.0).abs() < 0.01);
        p.set_rate(1000.0);
        let a = p.reserve().0;
        let b = p.reserve().0;
        assert!(b - a <= Duration::from_millis(100) + Duration::from_millis(1));
    }

    #[test]
    fn instants_reserved_before_the_rate_is_lowered_no_longer_hold() {
        let p = Pacer::new(20.0);
        let (_, waiting) = p.reserve();
        let (_, also_waiting) = p.reserve();
        // Raised: what was reserved at the lower rate still holds.
        p.set_rate(40.0);
        assert!(p.still_valid(waiting) && p.still_valid(also_waiting));
        // Lowered (a worker joined): reserved instants are void, new ones come after them.
        p.set_rate(10.0);
        assert!(!p.still_valid(waiting) && !p.still_valid(also_waiting));
        let (at, token) = p.reserve();
        assert!(p.still_valid(token));
        let (then, _) = p.reserve();
        assert!(then - at >= Duration::from_millis(99), "{:?}", then - at);
    }
}
