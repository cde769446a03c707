//! The delivery channels: a signed webhook (`crates/webhook`) and mail over SMTP
//! (`crates/smtp-mail`), built from `[gateway.alerts]` with their secrets read from files or
//! the environment. One [`Channel::send`] is one attempt; the delivery queue
//! ([`super::delivery`]) decides about retries.
//!
//! The webhook body is the alert as JSON ([`AlertBody`]), signed with `X-Signature-256:
//! sha256=<hex HMAC-SHA256 of the body>`. The mail is text/plain with the same fields.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use oftp::journal::Alert;
use serde::Serialize;

use super::config::{AlertsConfig, AlertsConfigError, shown_url};

/// The JSON body POSTed to a webhook (schema version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertBody<'a> {
    /// 1 for this layout.
    pub schema_version: u32,
    /// The alert's journal id (`oftp alerts --ack ID`); with the channel, what a receiver
    /// deduplicates on (delivery is at least once).
    pub id: i64,
    /// `file_failed`, `not_delivered`, `eerp_overdue`, `partner_unreachable`,
    /// `post_processing_failed`, `certificate_expiring`, `disk_space_low`.
    pub kind: &'static str,
    /// The partner concerned, if any.
    pub partner: Option<&'a str>,
    /// The file concerned, if any.
    pub file: Option<&'a str>,
    /// What happened and what to do.
    pub text: &'a str,
    /// When it was raised (RFC 3339, UTC).
    pub raised_at: String,
}

impl<'a> AlertBody<'a> {
    /// The body of `alert`.
    pub fn of(alert: &'a Alert) -> Self {
        AlertBody {
            schema_version: 1,
            id: alert.id,
            kind: alert.alert.kind.as_str(),
            partner: alert.alert.partner.as_deref(),
            file: alert.alert.file.as_deref(),
            text: &alert.alert.text,
            raised_at: rfc3339(alert.raised_at),
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A channel alerts are delivered to.
#[derive(Debug, Clone)]
pub struct Channel {
    name: String,
    kind: ChannelKind,
}

#[derive(Debug, Clone)]
enum ChannelKind {
    Webhook(Box<webhook::Webhook>),
    Mail(smtp_mail::Mailer),
}

/// Why an attempt failed; `refused` when the receiver answered that it will not take it as
/// it is (HTTP 4xx, SMTP 5xx): retrying alone does not help, the receiver's configuration
/// must change (the attempt is still retried, in case it does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text}")]
pub struct SendFailed {
    /// What went wrong (no secrets, no URL query strings).
    pub text: String,
    /// The receiver refused rather than failed.
    pub refused: bool,
}

impl Channel {
    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A webhook channel.
    pub fn webhook(name: impl Into<String>, hook: webhook::Webhook) -> Self {
        Channel {
            name: name.into(),
            kind: ChannelKind::Webhook(Box::new(hook.attempts(1))),
        }
    }

    /// A mail channel.
    pub fn mail(name: impl Into<String>, mailer: smtp_mail::Mailer) -> Self {
        Channel {
            name: name.into(),
            kind: ChannelKind::Mail(mailer),
        }
    }

    /// One attempt to deliver `alert`.
    pub async fn send(&self, alert: &Alert) -> Result<(), SendFailed> {
        match &self.kind {
            ChannelKind::Webhook(hook) => {
                let body = serde_json::to_vec(&AlertBody::of(alert)).map_err(|e| SendFailed {
                    text: format!("cannot encode the alert: {e}"),
                    refused: true,
                })?;
                hook.deliver(&body).await.map(drop).map_err(|e| SendFailed {
                    refused: matches!(e, webhook::DeliveryError::Refused { .. }),
                    text: e.to_string(),
                })
            }
            ChannelKind::Mail(mailer) => {
                let (subject, text) = mail_text(alert);
                mailer.send(&subject, &text).await.map_err(|e| SendFailed {
                    refused: !e.is_transient(),
                    text: format!("SMTP {}:{}: {e}", mailer.server(), mailer.server_port()),
                })
            }
        }
    }
}

/// The subject and text of an alert mail.
fn mail_text(alert: &Alert) -> (String, String) {
    let a = &alert.alert;
    let about = a
        .partner
        .as_deref()
        .map(|p| format!(" (partner {p})"))
        .unwrap_or_default();
    let subject = format!("oftp alert: {}{about}", a.kind.as_str().replace('_', " "));
    let mut text = format!("{}\n\nkind: {}\n", a.text, a.kind.as_str());
    if let Some(p) = &a.partner {
        text.push_str(&format!("partner: {p}\n"));
    }
    if let Some(f) = &a.file {
        text.push_str(&format!("file: {f}\n"));
    }
    text.push_str(&format!(
        "raised at: {}\nalert id: {} (acknowledge with: oftp alerts --ack {})\n",
        rfc3339(alert.raised_at),
        alert.id,
        alert.id
    ));
    (subject, text)
}

/// Reads a secret from a file (its first line) or an environment variable.
fn read_secret(
    at: &str,
    what: &str,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Option<String>, AlertsConfigError> {
    let value = match (file, env) {
        (Some(f), _) => {
            let text = std::fs::read_to_string(f).map_err(|e| {
                AlertsConfigError(format!(
                    "{at}: cannot read the {what} file {}: {e}",
                    f.display()
                ))
            })?;
            let first = text.lines().next().unwrap_or("").trim_end().to_owned();
            if first.is_empty() {
                return Err(AlertsConfigError(format!(
                    "{at}: the {what} file {} is empty",
                    f.display()
                )));
            }
            first
        }
        (None, Some(var)) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => v,
            _ => {
                return Err(AlertsConfigError(format!(
                    "{at}: the environment variable {var} that should hold the {what} is not set or empty"
                )));
            }
        },
        (None, None) => return Ok(None),
    };
    Ok(Some(value))
}

/// Builds every configured channel, reading the secrets: webhooks first, in configuration
/// order. The configuration must have passed [`AlertsConfig::check`].
pub fn channels_from_config(config: &AlertsConfig) -> Result<Vec<Channel>, AlertsConfigError> {
    config.check()?;
    let mut out = Vec::new();
    for w in &config.webhook {
        let at = format!(" [[webhook]] {:?}", w.name);
        let secret = read_secret(
            &at,
            "secret",
            w.secret_file.as_deref(),
            w.secret_env.as_deref(),
        )?
        .ok_or_else(|| AlertsConfigError(format!("{at}: needs a secret")))?;
        let url = w.url.parse().map_err(|_| {
            AlertsConfigError(format!("{at}: url {:?} is not a URL", shown_url(&w.url)))
        })?;
        let hook = webhook::Webhook::new(url, webhook::Secret::new(secret))
            .timeout(Duration::from_secs(w.timeout_secs));
        out.push(Channel::webhook(w.name.clone(), hook));
    }
    for m in &config.mail {
        let at = format!(" [[mail]] {:?}", m.name);
        let mut mailer = smtp_mail::Mailer::new(m.server.clone(), m.security, &m.from, &m.to)
            .map_err(|e| AlertsConfigError(format!("{at}: {e}")))?
            .timeout(Duration::from_secs(m.timeout_secs));
        if let Some(port) = m.port {
            mailer = mailer.port(port);
        }
        let password = read_secret(
            &at,
            "password",
            m.password_file.as_deref(),
            m.password_env.as_deref(),
        )?;
        if let (Some(user), Some(password)) = (&m.username, password) {
            mailer = mailer.credentials(user.clone(), password);
        }
        out.push(Channel::mail(m.name.clone(), mailer));
    }
    Ok(out)
}
