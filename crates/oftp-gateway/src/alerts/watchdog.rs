//! The watchdogs: conditions that come from watching over time, raised as alerts once per
//! condition ([`Journal::raise_alert_once`]), so a sweep every few minutes raises each only
//! once, also across daemon restarts.
//!
//! - **EERP overdue**: a queued file in state `sent` (EFPA received) longer than its partner's
//!   `eerp_timeout_hours` (default 24) without EERP or NERP. One alert per file and send (key:
//!   the row id and the time it became `sent`, so a file retried and sent again can be
//!   overdue again).
//! - **Certificate expiring**: our certificates (every purpose) and every partner's
//!   configured certificates (also those a certificate exchange put in place), when they expire
//!   within `cert_warning_days` or have expired. One alert per certificate and expiry date
//!   (key: SHA-256 thumbprint and notAfter, so a certificate used for several purposes is one
//!   alert, and a renewed one is a new condition). Raised again if a person acknowledged it and
//!   it is still expiring `cert_repeat_days` later: acknowledging is not fixing.
//! - **Disk space low**: free space of the data directory's file system (the same probe the
//!   runtime uses to refuse files that do not fit, [`FreeSpace`]) below `disk_low_mib`. Raised
//!   once while low; cleared when there is room again, so the next time it runs low is a new
//!   alert.
//!
//! Every time is the caller's ([`Watchdog::sweep`] takes `now`).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use oftp::journal::{
    AlertKind, Journal, JournalError, NewAlert, QueueState, RaiseAgain, TransferFilter,
};
use oftp::security::{PartnerCertUse, SecurityContext};
use oftp::space::FreeSpace;
use oftp_security::{Certificate, CertificateUse};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::config::WatchdogConfig;
use crate::config::PartnerEntry;

/// Sent rows read from the journal per page.
const PAGE: u32 = 500;

/// A certificate the watchdog looks at.
#[derive(Debug, Clone)]
pub struct WatchedCert {
    /// The partner it belongs to; `None` = ours.
    pub partner: Option<String>,
    /// What it is used for ("signing", "encryption", ...), for the alert text.
    pub purpose: &'static str,
    /// The certificate.
    pub cert: Certificate,
}

/// Lists the certificates to watch; called at every sweep (a certificate exchange may have
/// replaced a partner's).
pub type CertificateSource = Arc<dyn Fn() -> Vec<WatchedCert> + Send + Sync>;

/// Our certificates of every purpose and the partners' configured ones, as `sec` holds them
/// now. `partners` are (name, SSID code) of the configured partners.
pub fn certificates_of(sec: &SecurityContext, partners: &[(String, String)]) -> Vec<WatchedCert> {
    let mut out = Vec::new();
    for (usage, purpose) in [
        (CertificateUse::Signing, "signing"),
        (CertificateUse::Decryption, "decryption"),
        (CertificateUse::SessionAuthentication, "authentication"),
        (CertificateUse::ReceiptSigning, "receipt signing"),
    ] {
        if let Some(id) = sec.identity(usage) {
            out.push(WatchedCert {
                partner: None,
                purpose,
                cert: id.certificate().clone(),
            });
        }
    }
    for (name, ssid) in partners {
        let Some(p) = sec.partner_by_ssid(ssid) else {
            continue;
        };
        for (usage, purpose) in [
            (PartnerCertUse::Encryption, "encryption"),
            (PartnerCertUse::Signature, "signature"),
            (PartnerCertUse::Receipt, "receipt"),
            (PartnerCertUse::Authentication, "authentication"),
            (PartnerCertUse::TlsClient, "TLS client"),
        ] {
            if let Some(cert) = p.certificate(usage) {
                out.push(WatchedCert {
                    partner: Some(name.clone()),
                    purpose,
                    cert,
                });
            }
        }
    }
    out
}

/// The watchdogs of one gateway.
#[derive(Clone)]
pub struct Watchdog {
    journal: Arc<dyn Journal>,
    config: WatchdogConfig,
    /// Partners' `eerp_timeout_hours` by name.
    eerp_timeouts: Vec<(String, TimeDelta)>,
    certificates: CertificateSource,
    data_dir: PathBuf,
    free_space: Arc<dyn FreeSpace>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("config", &self.config)
            .field("eerp_timeouts", &self.eerp_timeouts)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// What one sweep raised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// EERP overdue alerts raised.
    pub eerp_overdue: usize,
    /// Certificate alerts raised.
    pub certificates: usize,
    /// Disk space alerts raised.
    pub disk: usize,
}

impl SweepReport {
    /// Alerts raised in all.
    pub fn raised(&self) -> usize {
        self.eerp_overdue + self.certificates + self.disk
    }
}

/// The EERP timeout used for a row whose partner is no longer configured.
const DEFAULT_EERP_TIMEOUT_HOURS: u32 = 24;

fn hours(h: u32) -> TimeDelta {
    TimeDelta::hours(i64::from(h))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Watchdog {
    /// Watchdogs over `journal` for `partners` and the data directory `data_dir` (free space
    /// from the operating system, no certificates until [`certificates`](Self::certificates)).
    pub fn new(
        journal: Arc<dyn Journal>,
        config: WatchdogConfig,
        partners: &[PartnerEntry],
        data_dir: PathBuf,
    ) -> Self {
        Watchdog {
            journal,
            config,
            eerp_timeouts: partners
                .iter()
                .map(|p| (p.partner.name.clone(), hours(p.gateway.eerp_timeout_hours)))
                .collect(),
            certificates: Arc::new(Vec::new),
            data_dir,
            free_space: Arc::new(oftp::space::StatVfs),
        }
    }

    /// Where the certificates to watch come from.
    pub fn certificates(mut self, source: CertificateSource) -> Self {
        self.certificates = source;
        self
    }

    /// Another free-space probe (tests; storage with quotas of its own).
    pub fn free_space(mut self, probe: Arc<dyn FreeSpace>) -> Self {
        self.free_space = probe;
        self
    }

    /// One sweep of every watchdog at `now`.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<SweepReport, JournalError> {
        Ok(SweepReport {
            eerp_overdue: self.eerp_overdue(now).await?,
            certificates: self.expiring_certificates(now).await?,
            disk: self.disk_space(now).await?,
        })
    }

    fn eerp_timeout(&self, partner: &str) -> TimeDelta {
        self.eerp_timeouts
            .iter()
            .find(|(name, _)| name == partner)
            .map_or(hours(DEFAULT_EERP_TIMEOUT_HOURS), |(_, t)| *t)
    }

    async fn eerp_overdue(&self, now: DateTime<Utc>) -> Result<usize, JournalError> {
        let mut raised = 0;
        let mut before_id = None;
        loop {
            let filter = TransferFilter {
                state: Some(QueueState::Sent),
                before_id,
                limit: PAGE,
                ..TransferFilter::default()
            };
            let rows = self.journal.call(move |j| j.transfers(&filter)).await?;
            let Some(last) = rows.last() else {
                return Ok(raised);
            };
            before_id = Some(last.id);
            let full = rows.len() == PAGE as usize;
            for row in rows {
                let timeout = self.eerp_timeout(&row.send.partner);
                // `updated_at` of a sent row is when it became sent (the EFPA).
                if now - row.updated_at < timeout {
                    continue;
                }
                let key = format!(
                    "eerp_overdue:{}:{}",
                    row.id,
                    row.updated_at.timestamp_millis()
                );
                let alert = NewAlert {
                    kind: AlertKind::EerpOverdue,
                    partner: Some(row.send.partner.clone()),
                    file: Some(row.send.source_path.display().to_string()),
                    text: format!(
                        "{} (transfer {}) was sent to {} at {} and confirmed with EFPA, but no \
                         end-to-end response (EERP/NERP) came within {} hours: ask the partner \
                         whether it was processed; the file is kept and stays in state sent \
                         (oftp transfer show {})",
                        row.send.virtual_file_name,
                        row.id,
                        row.send.partner,
                        rfc3339(row.updated_at),
                        timeout.num_hours(),
                        row.id
                    ),
                };
                if self.raise_once(key, alert, now, RaiseAgain::Never).await? {
                    raised += 1;
                }
            }
            if !full {
                return Ok(raised);
            }
        }
    }

    async fn expiring_certificates(&self, now: DateTime<Utc>) -> Result<usize, JournalError> {
        if self.config.cert_warning_days == 0 {
            return Ok(0);
        }
        let warn = TimeDelta::days(i64::from(self.config.cert_warning_days));
        let again =
            RaiseAgain::AfterAcknowledged(TimeDelta::days(i64::from(self.config.cert_repeat_days)));
        let mut seen = HashSet::new();
        let mut raised = 0;
        for w in (self.certificates)() {
            let not_after = DateTime::<Utc>::from(w.cert.not_after());
            let left = not_after - now;
            if left > warn {
                continue;
            }
            let thumb: String = w
                .cert
                .thumbprint_sha256()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let key = format!("certificate_expiring:{thumb}:{}", not_after.timestamp());
            if !seen.insert(key.clone()) {
                continue;
            }
            let whose = match &w.partner {
                None => format!("our {} certificate", w.purpose),
                Some(p) => format!("partner {p}'s {} certificate", w.purpose),
            };
            let when = if left <= TimeDelta::zero() {
                format!("expired on {}", rfc3339(not_after))
            } else {
                format!(
                    "expires on {}, in {} days",
                    rfc3339(not_after),
                    left.num_days()
                )
            };
            let todo = match &w.partner {
                None => "renew it and send the new one to the partners (oftp cert)",
                Some(_) => "ask the partner for its new certificate and configure it",
            };
            let alert = NewAlert {
                kind: AlertKind::CertificateExpiring,
                partner: w.partner.clone(),
                file: None,
                text: format!(
                    "{whose} {} (SHA-256 {}) {when}: {todo}",
                    w.cert.subject(),
                    &thumb[..16]
                ),
            };
            if self.raise_once(key, alert, now, again).await? {
                raised += 1;
            }
        }
        Ok(raised)
    }

    async fn disk_space(&self, now: DateTime<Utc>) -> Result<usize, JournalError> {
        let threshold = self.config.disk_low_mib.saturating_mul(1024 * 1024);
        if threshold == 0 {
            return Ok(0);
        }
        let available = match self.free_space.available(&self.data_dir) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(dir = %self.data_dir.display(), "free space unknown: {e}");
                return Ok(0);
            }
        };
        let key = format!("disk_space_low:{}", self.data_dir.display());
        if available >= threshold {
            let cleared = self.journal.call(move |j| j.clear_alert_key(&key)).await?;
            if cleared {
                tracing::info!(dir = %self.data_dir.display(), "disk space is no longer low");
            }
            return Ok(0);
        }
        let alert = NewAlert {
            kind: AlertKind::DiskSpaceLow,
            partner: None,
            file: None,
            text: format!(
                "the file system of the data directory {} has {} MiB free, below disk_low_mib \
                 ({} MiB): free space or enlarge it; files that do not fit are refused at their \
                 offer (SFNA 12)",
                self.data_dir.display(),
                available / (1024 * 1024),
                self.config.disk_low_mib
            ),
        };
        Ok(usize::from(
            self.raise_once(key, alert, now, RaiseAgain::Never).await?,
        ))
    }

    async fn raise_once(
        &self,
        key: String,
        alert: NewAlert,
        now: DateTime<Utc>,
        again: RaiseAgain,
    ) -> Result<bool, JournalError> {
        let text = alert.text.clone();
        let id = self
            .journal
            .call(move |j| j.raise_alert_once(&key, &alert, now, again))
            .await?;
        if let Some(id) = id {
            tracing::warn!(alert = id, "alert raised: {text}");
        }
        Ok(id.is_some())
    }
}

/// Sweeps at start and every `interval` until `shutdown`; wakes `delivery` after raising.
pub async fn run(
    watchdog: Watchdog,
    interval: Duration,
    delivery: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        match watchdog.sweep(Utc::now()).await {
            Ok(r) if r.raised() > 0 => delivery.notify_one(),
            Ok(_) => {}
            Err(e) => tracing::error!("alert watchdog: {e}; trying again in {interval:?}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
