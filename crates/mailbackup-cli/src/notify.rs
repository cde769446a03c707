//! Notifications at the end of `mailbackup run`: a signed webhook (crates/webhook) and mail
//! over SMTP (crates/smtp-mail: `lettre` 0.11, STARTTLS or implicit TLS through rustls; plain
//! SMTP only to a loopback address).
//!
//! Runs that failed, were aborted or completed with warnings always notify; completed runs only
//! with `--notify-success` / `notify.success`. A notification that cannot be delivered is logged
//! as an error and never changes the run's exit code. Secrets (webhook key, SMTP password) come
//! from files or environment variables and are never logged.

use crate::run_report::{Outcome, RunSummary};
use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Environment variable holding the webhook signing secret.
pub(crate) const ENV_WEBHOOK_SECRET: &str = "MAILBACKUP_WEBHOOK_SECRET";
/// Environment variable holding the SMTP password.
pub(crate) const ENV_SMTP_PASSWORD: &str = "MAILBACKUP_SMTP_PASSWORD";

/// Notification flags of `run`.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct NotifyArgs {
    /// Also notify when the run completed without errors (failed runs and runs with warnings
    /// always notify) [config: notify.success].
    #[arg(long)]
    pub(crate) notify_success: bool,
    /// POST the JSON run report here, signed with X-Signature-256 [config: notify.webhook_url];
    /// the secret comes from notify.webhook_secret_file or env MAILBACKUP_WEBHOOK_SECRET.
    #[arg(long, value_name = "URL")]
    pub(crate) webhook_url: Option<String>,
    /// Mail the run report to this address (repeatable, comma separated) over the SMTP server
    /// of the config file's [notify] table [config: notify.mail_to].
    #[arg(long, value_name = "ADDRESS", value_delimiter = ',')]
    pub(crate) mail_to: Vec<String>,
}

/// How the SMTP connection is protected (`starttls`, `tls` or `none`; shared with the OFTP
/// gateway's alerts).
pub(crate) use smtp_mail::Security as SmtpSecurity;

/// `[notify]` table of the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NotifyFile {
    pub(crate) success: Option<bool>,
    pub(crate) webhook_url: Option<String>,
    pub(crate) webhook_secret_file: Option<PathBuf>,
    pub(crate) webhook_attempts: Option<u32>,
    pub(crate) webhook_backoff: Option<f64>,
    pub(crate) webhook_timeout: Option<f64>,
    pub(crate) smtp_server: Option<String>,
    pub(crate) smtp_port: Option<u16>,
    pub(crate) smtp_security: Option<SmtpSecurity>,
    pub(crate) smtp_username: Option<String>,
    pub(crate) smtp_password_file: Option<PathBuf>,
    pub(crate) mail_from: Option<String>,
    pub(crate) mail_to: Option<Vec<String>>,
}

/// Where to notify, checked before the run starts (a mistake fails the run at once, not after
/// hours of backup).
pub(crate) struct Notifier {
    success: bool,
    webhook: Option<webhook::Webhook>,
    mail: Option<smtp_mail::Mailer>,
}

/// A config key in seconds (`default` when absent); zero only where `zero_ok`.
fn seconds(v: Option<f64>, default: f64, key: &str, zero_ok: bool) -> Result<Duration> {
    let s = v.unwrap_or(default);
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| zero_ok || !d.is_zero())
        .with_context(|| format!("notify.{key} = {s} is not a valid number of seconds"))
}

impl Notifier {
    /// The notifier of the merged flags and config, or an error saying what to fix.
    pub(crate) fn new(a: &NotifyArgs, f: &NotifyFile) -> Result<Notifier> {
        let webhook = match a.webhook_url.clone().or_else(|| f.webhook_url.clone()) {
            None => None,
            Some(u) => {
                let url = reqwest::Url::parse(&u)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .context("the webhook URL is not an http:// or https:// URL (--webhook-url / notify.webhook_url)")?;
                let secret = crate::auth::secret_from(ENV_WEBHOOK_SECRET, f.webhook_secret_file.as_deref())?
                    .filter(|s| !s.is_empty())
                    .with_context(|| format!(
                        "a webhook needs a signing secret: set notify.webhook_secret_file or env {ENV_WEBHOOK_SECRET}"
                    ))?;
                Some(
                    webhook::Webhook::new(url, webhook::Secret::new(secret.expose()))
                        .attempts(f.webhook_attempts.unwrap_or(5))
                        .backoff(
                            seconds(f.webhook_backoff, 1.0, "webhook_backoff", true)?,
                            Duration::from_secs(60),
                        )
                        .timeout(seconds(f.webhook_timeout, 10.0, "webhook_timeout", false)?),
                )
            }
        };
        let to = if a.mail_to.is_empty() {
            f.mail_to.clone().unwrap_or_default()
        } else {
            a.mail_to.clone()
        };
        let mail = if to.is_empty() {
            None
        } else {
            let server = f.smtp_server.clone().context(
                "mail notifications need an SMTP server: set notify.smtp_server in the config file",
            )?;
            let security = f.smtp_security.unwrap_or_default();
            let password =
                crate::auth::secret_from(ENV_SMTP_PASSWORD, f.smtp_password_file.as_deref())?;
            let from = f
                .mail_from
                .as_deref()
                .context("mail notifications need a sender: set notify.mail_from")?;
            let mut mailer = match smtp_mail::Mailer::new(server, security, from, &to) {
                Ok(m) => m,
                Err(smtp_mail::ConfigError::PlainToRemote { server }) => bail!(
                    "notify.smtp_security = \"none\" is only allowed to a loopback relay, not {server}: use \"starttls\""
                ),
                Err(e) => return Err(e.into()),
            };
            match (&f.smtp_username, password) {
                (Some(u), Some(p)) => mailer = mailer.credentials(u.clone(), p.expose()),
                (Some(_), None) => bail!(
                    "notify.smtp_username needs a password: set notify.smtp_password_file or env {ENV_SMTP_PASSWORD}"
                ),
                (None, _) => {}
            }
            if let Some(port) = f.smtp_port {
                mailer = mailer.port(port);
            }
            Some(mailer)
        };
        Ok(Notifier {
            success: a.notify_success || f.success.unwrap_or(false),
            webhook,
            mail,
        })
    }

    /// Sends the notifications this outcome calls for; failures are logged, never returned.
    pub(crate) async fn notify(&self, summary: &RunSummary) {
        if summary.outcome == Outcome::Completed && !self.success {
            return;
        }
        let body = summary.to_json();
        if let Some(hook) = &self.webhook {
            match hook.deliver(body.as_bytes()).await {
                Ok(d) => {
                    tracing::info!(attempts = d.attempts, "run report delivered to the webhook")
                }
                Err(e) => tracing::error!(
                    "run notification not delivered: {e} (the run's result is unchanged; the report is in --report FILE if given)"
                ),
            }
        }
        if let Some(mail) = &self.mail {
            match send_mail(mail, summary, &body).await {
                Ok(()) => tracing::info!("run report mailed"),
                Err(e) => tracing::error!(
                    "run notification mail not sent through {}:{}: {e:#} (the run's result is unchanged)",
                    mail.server(),
                    mail.server_port()
                ),
            }
        }
    }
}

async fn send_mail(mail: &smtp_mail::Mailer, summary: &RunSummary, json: &str) -> Result<()> {
    let text = format!(
        "{}\nstarted {}, finished {}\n\nThe run report (schema version {}):\n\n{json}",
        summary.headline(),
        summary.started,
        summary.finished,
        summary.schema_version
    );
    mail.send(&format!("mailbackup: {}", summary.headline()), &text)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_smtp_is_refused_to_a_remote_server() {
        let f = NotifyFile {
            smtp_server: Some("smtp.example.com".into()),
            smtp_security: Some(SmtpSecurity::None),
            mail_from: Some("backup@example.com".into()),
            mail_to: Some(vec!["ops@example.com".into()]),
            ..Default::default()
        };
        let e = Notifier::new(&NotifyArgs::default(), &f)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("only allowed to a loopback relay"), "{e}");
        let local = NotifyFile {
            smtp_server: Some("127.0.0.1".into()),
            ..f
        };
        assert!(Notifier::new(&NotifyArgs::default(), &local).is_ok());
    }

    #[test]
    fn a_webhook_without_a_secret_is_refused() {
        let a = NotifyArgs {
            webhook_url: Some("https://hooks.example.com/x".into()),
            ..Default::default()
        };
        let f = NotifyFile {
            webhook_secret_file: Some("/nonexistent/webhook-secret".into()),
            ..Default::default()
        };
        let e = format!("{:#}", Notifier::new(&a, &f).err().unwrap());
        assert!(e.contains("/nonexistent/webhook-secret"), "{e}");
        let e = Notifier::new(
            &NotifyArgs {
                webhook_url: Some("ftp://x".into()),
                ..Default::default()
            },
            &NotifyFile::default(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("not an http:// or https:// URL"), "{e}");
    }
}
