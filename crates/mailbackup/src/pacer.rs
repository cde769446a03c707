//! A worker's share of the app's Graph request budget (see
//! [`crate::options::WorkerOptions::tenant_requests_per_second`]).
//!
//! Requests are spaced evenly: each takes the next free instant, one interval after the one
//! before, so a worker never sends more than its rate in any window (no bursts). The rate is
//! changed when the number of live workers changes (at each heartbeat).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Paces the requests of one worker.
#[derive(Debug)]
pub(crate) struct Pacer {
    next: Mutex<Option<Instant>>,
    interval_nanos: AtomicU64,
}

fn interval(per_second: f64) -> u64 {
    (1e9 / per_second.max(0.001)) as u64
}

impl Pacer {
    pub(crate) fn new(per_second: f64) -> Pacer {
        Pacer {
            next: Mutex::new(None),
            interval_nanos: AtomicU64::new(interval(per_second)),
        }
    }

    /// Changes the rate (requests per second) for the requests reserved from now on.
    pub(crate) fn set_rate(&self, per_second: f64) {
        self.interval_nanos
            .store(interval(per_second), Ordering::Relaxed);
    }

    /// The rate in requests per second.
    pub(crate) fn rate(&self) -> f64 {
        1e9 / self.interval_nanos.load(Ordering::Relaxed) as f64
    }

    /// Reserves the next free instant for a request; the caller waits until then.
    pub(crate) fn reserve(&self) -> Instant {
        let now = Instant::now();
        let step = Duration::from_nanos(self.interval_nanos.load(Ordering::Relaxed));
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let at = next.map_or(now, |n| n.max(now));
        *next = Some(at + step);
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_spaced_by_the_share_of_the_budget() {
        let p = Pacer::new(10.0);
        let first = p.reserve();
        let tenth = (0..9).map(|_| p.reserve()).last().unwrap();
        assert!(
            tenth - first >= Duration::from_millis(899),
            "{:?}",
            tenth - first
        );
        // Three workers sharing 30 requests/s: 10 each.
        p.set_rate(30.0 / 3.0);
        assert!((p.rate() - 10.0).abs() < 0.01);
        p.set_rate(1000.0);
        let a = p.reserve();
        let b = p.reserve();
        assert!(b - a <= Duration::from_millis(100) + Duration::from_millis(1));
    }
}
