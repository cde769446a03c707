//! The gateway's keys in `oftp.toml`: per partner (in the partner's own `[[partners]]` entry,
//! beside the keys of [`oftp::config::Partner`]) and the `[gateway]` section.
//!
//! A `[[partners]]` entry is one table for the operator; in code it is two: the runtime's
//! [`Partner`] and the gateway's [`PartnerGateway`]. [`PartnerEntry`] reads the table, takes the
//! gateway's keys ([`PartnerGateway::KEYS`]) out, and reads the rest as a [`Partner`]; both
//! refuse unknown keys, so a misspelt key is an error, not a silent default. (serde's
//! `flatten` cannot be combined with `deny_unknown_fields`, hence the split by key names.)
//!
//! This module only reads and checks configuration; what the keys do is in the modules named
//! in each field's doc.

use serde::{Deserialize, Serialize};

use oftp::config::Partner;

use crate::alerts::AlertsConfig;
use crate::archive::ArchiveSettings;
use crate::outbox::WatchSettings;
use crate::postprocess::{EerpAfter, OnReceive, PostProcessConfigError, PostProcessingSettings};
use crate::retry::{RetryConfig, RetryConfigError, RetryPolicy};
use crate::schedule::{Schedule, ScheduleConfig, ScheduleError};

/// A partner's gateway keys, written in its `[[partners]]` entry.
///
/// ```toml
/// [[partners]]
/// name = "acme"
/// # ... the runtime's keys (ssid, password, address, ...)
/// call_on_new_file = true
/// max_sessions = 1
///
/// [partners.schedule]
/// interval_minutes = 240
///
/// [partners.retry]
/// max_attempts = 10
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartnerGateway {
    /// A file appearing in the partner's outbox starts a call within seconds (partners with an
    /// `address` only: the others collect their files when they call us).
    pub call_on_new_file: bool,
    /// Sessions with this partner at once, ours and theirs together (at least 1).
    pub max_sessions: u32,
    /// When to call the partner ([`crate::schedule`]); none = only on new files or on demand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleConfig>,
    /// How failed sends are retried ([`crate::retry`]).
    pub retry: RetryConfig,
    /// One `partner_unreachable` alert after this many calls in a row that never got to the
    /// files ([`crate::runtime`]); 0 = never.
    pub alert_after_failed_calls: u32,
    /// The command run for each received file ([`crate::postprocess`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_receive: Option<OnReceive>,
    /// When a received file's EERP goes out ([`crate::postprocess`]).
    pub eerp_after: EerpAfter,
    /// Hours a sent file may wait for its EERP/NERP before an alert is raised
    /// ([`crate::alerts::watchdog`]; at least 1).
    pub eerp_timeout_hours: u32,
}

impl Default for PartnerGateway {
    fn default() -> Self {
        PartnerGateway {
            call_on_new_file: true,
            max_sessions: 1,
            schedule: None,
            retry: RetryConfig::default(),
            alert_after_failed_calls: 3,
            on_receive: None,
            eerp_after: EerpAfter::Stored,
            eerp_timeout_hours: 24,
        }
    }
}

impl PartnerGateway {
    /// The keys of a `[[partners]]` entry that belong to the gateway (every field above).
    pub const KEYS: &'static [&'static str] = &[
        "call_on_new_file",
        "max_sessions",
        "schedule",
        "retry",
        "alert_after_failed_calls",
        "on_receive",
        "eerp_after",
        "eerp_timeout_hours",
    ];

    /// Checks what serde cannot: a schedule that parses and can match, a usable retry policy,
    /// at least one session. The error names the key and says what to write.
    pub fn check(&self) -> Result<(), GatewayConfigError> {
        if self.max_sessions == 0 {
            return Err(GatewayConfigError::NoSessions);
        }
        if let Some(schedule) = &self.schedule {
            Schedule::try_from(schedule)?;
        }
        RetryPolicy::try_from(&self.retry)?;
        crate::postprocess::check(self.on_receive.as_ref(), self.eerp_after)?;
        if self.eerp_timeout_hours == 0 {
            return Err(GatewayConfigError::NoEerpTimeout);
        }
        Ok(())
    }
}

/// Why a partner's gateway keys cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayConfigError {
    /// `max_sessions = 0`.
    #[error("max_sessions must be at least 1")]
    NoSessions,
    /// `eerp_timeout_hours = 0`.
    #[error("eerp_timeout_hours must be at least 1")]
    NoEerpTimeout,
    /// `[partners.schedule]`.
    #[error("[partners.schedule]: {0}")]
    Schedule(#[from] ScheduleError),
    /// `[partners.retry]`.
    #[error("[partners.retry]: {0}")]
    Retry(#[from] RetryConfigError),
    /// `[partners.on_receive]` / `eerp_after`.
    #[error("{0}")]
    PostProcessing(#[from] PostProcessConfigError),
}

/// One `[[partners]]` entry: the runtime's partner and the gateway's keys.
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerEntry {
    /// The keys of [`oftp::config::Partner`].
    pub partner: Partner,
    /// The gateway's keys.
    pub gateway: PartnerGateway,
}

impl PartnerEntry {
    /// An entry with the gateway's defaults.
    pub fn new(partner: Partner) -> Self {
        PartnerEntry {
            partner,
            gateway: PartnerGateway::default(),
        }
    }
}

impl<'de> Deserialize<'de> for PartnerEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut table = toml::Table::deserialize(deserializer)?;
        let mut gateway = toml::Table::new();
        for key in PartnerGateway::KEYS {
            if let Some(value) = table.remove(*key) {
                gateway.insert((*key).to_owned(), value);
            }
        }
        let partner: Partner = toml::Value::Table(table)
            .try_into()
            .map_err(D::Error::custom)?;
        let gateway: PartnerGateway = toml::Value::Table(gateway)
            .try_into()
            .map_err(|e| D::Error::custom(format!("partner {:?}: {e}", partner.name)))?;
        Ok(PartnerEntry { partner, gateway })
    }
}

impl Serialize for PartnerEntry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let mut table = toml::Table::try_from(&self.partner).map_err(S::Error::custom)?;
        // Only what differs from the defaults: a generated file stays short.
        if self.gateway != PartnerGateway::default() {
            let gateway = toml::Table::try_from(&self.gateway).map_err(S::Error::custom)?;
            table.extend(gateway);
        }
        table.serialize(serializer)
    }
}

/// The `[gateway]` section of `oftp.toml`.
///
/// ```toml
/// [gateway.outbox]
/// poll_interval_secs = 5
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
    /// How outboxes are watched ([`crate::outbox::watch`]).
    pub outbox: WatchSettings,
    /// `[gateway.post_processing]` ([`crate::postprocess`]).
    pub post_processing: PostProcessingSettings,
    /// `[gateway.archive]` ([`crate::archive`]).
    pub archive: ArchiveSettings,
    /// Alert channels and watchdogs ([`crate::alerts`]).
    pub alerts: AlertsConfig,
    /// The local control channel (`[gateway.control]`, [`crate::control`]).
    pub control: crate::control::ControlSettings,
}

impl GatewaySection {
    /// Whether every key has its default (the section is then left out of generated files).
    pub fn is_default(&self) -> bool {
        *self == GatewaySection::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> Result<PartnerEntry, toml::de::Error> {
        toml::from_str(text)
    }

    const RUNTIME_KEYS: &str = "name = \"acme\"\nssid = \"O0013ACME\"\npassword = \"PW\"\n";

    #[test]
    fn the_runtime_and_gateway_keys_of_one_entry_are_read_apart() {
        let e = entry(&format!(
            "{RUNTIME_KEYS}address = \"127.0.0.1:3305\"\ncall_on_new_file = false\nmax_sessions = 2\n\
             [schedule]\ninterval_minutes = 60\n[retry]\nmax_attempts = 3\n"
        ))
        .unwrap();
        assert_eq!(e.partner.name, "acme");
        assert_eq!(e.partner.address.as_deref(), Some("127.0.0.1:3305"));
        assert!(!e.gateway.call_on_new_file);
        assert_eq!(e.gateway.max_sessions, 2);
        assert_eq!(e.gateway.schedule.unwrap().interval_minutes, Some(60));
        assert_eq!(e.gateway.retry.max_attempts, 3);
    }

    #[test]
    fn an_entry_without_gateway_keys_gets_the_defaults() {
        let e = entry(RUNTIME_KEYS).unwrap();
        assert_eq!(e.gateway, PartnerGateway::default());
        assert!(e.gateway.call_on_new_file);
        assert_eq!(e.gateway.max_sessions, 1);
    }

    #[test]
    fn a_misspelt_key_is_refused_whichever_side_it_was_meant_for() {
        let e = entry(&format!("{RUNTIME_KEYS}call_on_new_files = true\n")).unwrap_err();
        assert!(e.to_string().contains("call_on_new_files"), "{e}");
        let e = entry(&format!("{RUNTIME_KEYS}[retry]\nmax_attempt = 3\n")).unwrap_err();
        assert!(e.to_string().contains("max_attempt"), "{e}");
    }

    #[test]
    fn check_names_the_key_that_cannot_be_used() {
        let mut g = PartnerGateway::default();
        assert_eq!(g.check(), Ok(()));
        g.max_sessions = 0;
        assert_eq!(g.check(), Err(GatewayConfigError::NoSessions));
        g.max_sessions = 1;
        g.schedule = Some(ScheduleConfig::default());
        let e = g.check().unwrap_err().to_string();
        assert!(e.starts_with("[partners.schedule]: "), "{e}");
        g.schedule = None;
        g.retry.first_delay_secs = 0;
        let e = g.check().unwrap_err().to_string();
        assert!(e.starts_with("[partners.retry]: first_delay_secs"), "{e}");
    }

    #[test]
    fn keys_lists_every_gateway_field() {
        // A field missing from KEYS would be read as a runtime key and refused; an entry of
        // KEYS that is no field would be refused by the gateway side.
        let all = toml::Table::try_from(PartnerGateway {
            schedule: Some(ScheduleConfig {
                interval_minutes: Some(5),
                ..Default::default()
            }),
            on_receive: Some(OnReceive {
                command: vec!["x".into()],
                timeout_secs: 1,
                processed_dir: None,
            }),
            ..Default::default()
        })
        .unwrap();
        let mut fields: Vec<&str> = all.keys().map(String::as_str).collect();
        fields.sort_unstable();
        let mut keys = PartnerGateway::KEYS.to_vec();
        keys.sort_unstable();
        assert_eq!(fields, keys);
    }

    #[test]
    fn an_entry_written_and_read_again_is_the_same() {
        let mut e = entry(RUNTIME_KEYS).unwrap();
        e.gateway.max_sessions = 3;
        let text = toml::to_string(&e).unwrap();
        assert_eq!(entry(&text).unwrap(), e);
        let plain = toml::to_string(&PartnerEntry::new(e.partner.clone())).unwrap();
        assert!(!plain.contains("max_sessions"), "{plain}");
    }
}
