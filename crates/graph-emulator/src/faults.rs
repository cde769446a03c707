//! Fault injection: throttling (429), unavailability (503), dropped connections, extra latency,
//! and invalidation of access and delta tokens.
//!
//! Faults apply to Graph endpoints only (the identity endpoints stay reliable so a test can
//! always get a token), optionally narrowed to some endpoint kinds. Probabilities use a seeded
//! generator, so a single-threaded test sees the same sequence on every run. The per-mailbox
//! concurrency limit is not a fault: it is always on (see
//! [`crate::EmulatorConfig::mailbox_concurrency_limit`]).

use std::sync::Arc;
use std::time::Duration;

use crate::rng::SplitMix64;
use crate::server::Shared;
use crate::stats::EndpointKind;
use crate::util::lock;

/// When a fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Trigger {
    /// Never (default).
    #[default]
    Never,
    /// On each matching request with this probability (0.0..=1.0).
    Probability(f64),
    /// On every n-th matching request (n >= 1; 1 = always).
    EveryNth(u64),
    /// On the next n matching requests, then never again.
    Next(u64),
}

/// Fault settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// Answer 429 `ApplicationThrottled` with `Retry-After: throttle_retry_after_secs`.
    pub throttle: Trigger,
    /// `Retry-After` seconds of injected 429s.
    pub throttle_retry_after_secs: u64,
    /// Answer 503 `ServiceUnavailable`.
    pub unavailable: Trigger,
    /// `Retry-After` of injected 503s (`None` = header absent, as Graph sometimes does).
    pub unavailable_retry_after_secs: Option<u64>,
    /// Close the connection without sending a response.
    pub drop_connection: Trigger,
    /// `$value` only: send the status, headers (with the full `Content-Length`) and the first
    /// half of the MIME bytes, then close the connection (a download cut short).
    pub truncate_value: Trigger,
    /// Delta only: answer a page with no items and a `nextLink` to the same position (Graph
    /// documents that empty pages with a `nextLink` can occur).
    pub delta_empty_page: Trigger,
    /// Delta only: repeat the last item of the previous page at the start of a page (Graph
    /// documents that an item can appear more than once in a round).
    pub delta_duplicate: Trigger,
    /// Latency added to every Graph request on top of [`crate::EmulatorConfig::latency`].
    pub extra_latency: Duration,
    /// `$value` bodies are delivered at most this fast (bytes per second), in 64 KiB chunks;
    /// for client timeout and progress tests. `None` = full speed.
    pub value_bytes_per_sec: Option<u64>,
    /// Endpoint kinds the triggers apply to; `None` = all Graph endpoints.
    pub only: Option<Vec<EndpointKind>>,
    /// Seed of the probability generator.
    pub seed: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            throttle: Trigger::Never,
            throttle_retry_after_secs: 1,
            unavailable: Trigger::Never,
            unavailable_retry_after_secs: Some(1),
            drop_connection: Trigger::Never,
            truncate_value: Trigger::Never,
            delta_empty_page: Trigger::Never,
            delta_duplicate: Trigger::Never,
            extra_latency: Duration::ZERO,
            value_bytes_per_sec: None,
            only: None,
            seed: 42,
        }
    }
}

/// The decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Injected {
    Throttle {
        retry_after: u64,
    },
    Unavailable {
        retry_after: Option<u64>,
    },
    Drop,
    /// `$value` cut after half of the body.
    Truncate,
}

/// Delta page quirks decided for one page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DeltaQuirks {
    pub(crate) empty_page: bool,
    pub(crate) duplicate: bool,
}

#[derive(Debug)]
struct TriggerState {
    seen: u64,
    fired: u64,
}

impl TriggerState {
    fn new() -> Self {
        Self { seen: 0, fired: 0 }
    }

    fn fire(&mut self, trigger: Trigger, rng: &mut SplitMix64) -> bool {
        self.seen += 1;
        let hit = match trigger {
            Trigger::Never => false,
            Trigger::Probability(p) => rng.chance(p),
            Trigger::EveryNth(n) => n != 0 && self.seen.is_multiple_of(n),
            Trigger::Next(n) => self.fired < n,
        };
        if hit {
            self.fired += 1;
        }
        hit
    }
}

/// Mutable fault state behind the handle.
#[derive(Debug)]
pub(crate) struct FaultState {
    config: FaultConfig,
    rng: SplitMix64,
    throttle: TriggerState,
    unavailable: TriggerState,
    drop: TriggerState,
    truncate: TriggerState,
    empty_page: TriggerState,
    duplicate: TriggerState,
}

impl FaultState {
    pub(crate) fn new(config: FaultConfig) -> Self {
        Self {
            rng: SplitMix64::new(config.seed),
            config,
            throttle: TriggerState::new(),
            unavailable: TriggerState::new(),
            drop: TriggerState::new(),
            truncate: TriggerState::new(),
            empty_page: TriggerState::new(),
            duplicate: TriggerState::new(),
        }
    }

    pub(crate) fn extra_latency(&self) -> Duration {
        self.config.extra_latency
    }

    pub(crate) fn value_bandwidth(&self) -> Option<u64> {
        self.config.value_bytes_per_sec.filter(|b| *b > 0)
    }

    /// Decides whether this request gets a fault. Drops win over 503 over 429, so that a
    /// configuration with several triggers still produces each kind.
    pub(crate) fn decide(&mut self, kind: EndpointKind) -> Option<Injected> {
        if !self.applies(kind) {
            return None;
        }
        let cfg = self.config.clone();
        if self.drop.fire(cfg.drop_connection, &mut self.rng) {
            return Some(Injected::Drop);
        }
        if kind == EndpointKind::MessageValue
            && self.truncate.fire(cfg.truncate_value, &mut self.rng)
        {
            return Some(Injected::Truncate);
        }
        if self.unavailable.fire(cfg.unavailable, &mut self.rng) {
            return Some(Injected::Unavailable {
                retry_after: cfg.unavailable_retry_after_secs,
            });
        }
        if self.throttle.fire(cfg.throttle, &mut self.rng) {
            return Some(Injected::Throttle {
                retry_after: cfg.throttle_retry_after_secs,
            });
        }
        None
    }
}

impl FaultState {
    fn applies(&self, kind: EndpointKind) -> bool {
        self.config
            .only
            .as_ref()
            .is_none_or(|only| only.contains(&kind))
    }

    /// Quirks for one delta page (only pages that follow another page can get a duplicate).
    pub(crate) fn delta_quirks(&mut self, has_previous_page: bool) -> DeltaQuirks {
        if !self.applies(EndpointKind::Delta) {
            return DeltaQuirks::default();
        }
        let cfg = self.config.clone();
        DeltaQuirks {
            empty_page: self.empty_page.fire(cfg.delta_empty_page, &mut self.rng),
            duplicate: has_previous_page && self.duplicate.fire(cfg.delta_duplicate, &mut self.rng),
        }
    }
}

/// Changes faults of a running emulator. Cheap to clone.
#[derive(Clone)]
pub struct FaultsHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for FaultsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultsHandle")
            .field("config", &self.config())
            .finish()
    }
}

impl FaultsHandle {
    /// Replaces the fault settings and resets the trigger counters.
    pub fn set(&self, config: FaultConfig) {
        *lock(&self.shared.faults) = FaultState::new(config);
    }

    /// Current fault settings.
    pub fn config(&self) -> FaultConfig {
        lock(&self.shared.faults).config.clone()
    }

    /// Changes the settings in place (counters reset).
    pub fn update(&self, change: impl FnOnce(&mut FaultConfig)) {
        let mut cfg = self.config();
        change(&mut cfg);
        self.set(cfg);
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.set(FaultConfig::default());
    }

    /// Sets the 429 trigger with its `Retry-After`.
    pub fn throttle(&self, trigger: Trigger, retry_after_secs: u64) {
        self.update(|c| {
            c.throttle = trigger;
            c.throttle_retry_after_secs = retry_after_secs;
        });
    }

    /// Sets the 503 trigger with an optional `Retry-After`.
    pub fn unavailable(&self, trigger: Trigger, retry_after_secs: Option<u64>) {
        self.update(|c| {
            c.unavailable = trigger;
            c.unavailable_retry_after_secs = retry_after_secs;
        });
    }

    /// Sets the dropped-connection trigger.
    pub fn drop_connections(&self, trigger: Trigger) {
        self.update(|c| c.drop_connection = trigger);
    }

    /// Sets the trigger for `$value` downloads cut after half of the body.
    pub fn truncate_values(&self, trigger: Trigger) {
        self.update(|c| c.truncate_value = trigger);
    }

    /// Sets the delta quirks: empty pages with a `nextLink`, and items repeated across pages.
    pub fn delta_quirks(&self, empty_page: Trigger, duplicate: Trigger) {
        self.update(|c| {
            c.delta_empty_page = empty_page;
            c.delta_duplicate = duplicate;
        });
    }

    /// Limits the delivery speed of `$value` bodies (`None` = full speed).
    pub fn value_bandwidth(&self, bytes_per_sec: Option<u64>) {
        self.update(|c| c.value_bytes_per_sec = bytes_per_sec);
    }

    /// Sets extra latency for Graph requests.
    pub fn latency(&self, extra: Duration) {
        self.update(|c| c.extra_latency = extra);
    }

    /// Makes every access token issued so far invalid: the next Graph call with one gets 401
    /// `InvalidAuthenticationToken` ("Lifetime validation failed, the token is expired.").
    /// Refresh tokens stay valid, so a client can refresh.
    pub fn expire_all_tokens(&self) {
        self.shared.identity.expire_access_tokens();
    }

    /// Makes every delta and skip token issued so far invalid: the next request with one gets
    /// 410 Gone with error code `syncStateNotFound`.
    pub fn expire_delta_tokens(&self) {
        for mb in self.shared.mailboxes.iter() {
            mb.expire_delta_tokens();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_and_next_fire_exactly() {
        let mut s = FaultState::new(FaultConfig {
            throttle: Trigger::EveryNth(3),
            ..FaultConfig::default()
        });
        let hits: Vec<bool> = (0..9)
            .map(|_| s.decide(EndpointKind::MessageValue).is_some())
            .collect();
        assert_eq!(
            hits,
            [false, false, true, false, false, true, false, false, true]
        );

        let mut s = FaultState::new(FaultConfig {
            drop_connection: Trigger::Next(2),
            ..FaultConfig::default()
        });
        let hits: Vec<_> = (0..4).map(|_| s.decide(EndpointKind::Messages)).collect();
        assert_eq!(
            hits,
            [Some(Injected::Drop), Some(Injected::Drop), None, None]
        );
    }

    #[test]
    fn truncation_only_for_value_and_quirks_need_a_previous_page() {
        let mut s = FaultState::new(FaultConfig {
            truncate_value: Trigger::EveryNth(1),
            delta_duplicate: Trigger::EveryNth(1),
            ..FaultConfig::default()
        });
        assert_eq!(s.decide(EndpointKind::Messages), None);
        assert_eq!(
            s.decide(EndpointKind::MessageValue),
            Some(Injected::Truncate)
        );
        assert!(!s.delta_quirks(false).duplicate);
        assert!(s.delta_quirks(true).duplicate);
        assert!(!s.delta_quirks(true).empty_page);
    }

    #[test]
    fn only_filter_limits_kinds() {
        let mut s = FaultState::new(FaultConfig {
            unavailable: Trigger::EveryNth(1),
            unavailable_retry_after_secs: None,
            only: Some(vec![EndpointKind::Delta]),
            ..FaultConfig::default()
        });
        assert_eq!(s.decide(EndpointKind::Messages), None);
        assert_eq!(
            s.decide(EndpointKind::Delta),
            Some(Injected::Unavailable { retry_after: None })
        );
    }

    #[test]
    fn probability_extremes() {
        let mut s = FaultState::new(FaultConfig {
            throttle: Trigger::Probability(1.0),
            ..FaultConfig::default()
        });
        assert!((0..20).all(|_| s.decide(EndpointKind::Folders).is_some()));
        let mut s = FaultState::new(FaultConfig {
            throttle: Trigger::Probability(0.0),
            ..FaultConfig::default()
        });
        assert!((0..20).all(|_| s.decide(EndpointKind::Folders).is_none()));
    }
}
