//! `[gateway.alerts]` of `oftp.toml`: the delivery channels, the retry schedule of the
//! delivery queue, and the watchdogs' settings. Reading and checking only; secrets are read
//! when the channels are built ([`super::channel::Channels::from_config`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The `[gateway.alerts]` table.
///
/// ```toml
/// [gateway.alerts]
/// poll_interval_secs = 10
///
/// [gateway.alerts.delivery]
/// first_delay_secs = 30
///
/// [[gateway.alerts.webhook]]
/// name = "ops-hook"
/// url = "https://alerts.example.com/oftp"
/// secret_file = "/etc/oftp/webhook-secret"
///
/// [[gateway.alerts.mail]]
/// name = "ops-mail"
/// server = "smtp.example.com"
/// from = "oftp@example.com"
/// to = ["edi-ops@example.com"]
/// username = "oftp"
/// password_env = "OFTP_SMTP_PASSWORD"
///
/// [gateway.alerts.watchdog]
/// interval_secs = 300
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// How often the delivery queue is looked at for due alerts (also right after the
    /// watchdogs raise one), in seconds (at least 1).
    pub poll_interval_secs: u64,
    /// The retry schedule of deliveries.
    pub delivery: DeliveryConfig,
    /// Webhook channels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhook: Vec<WebhookConfig>,
    /// Mail channels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mail: Vec<MailConfig>,
    /// The watchdogs.
    pub watchdog: WatchdogConfig,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            poll_interval_secs: 10,
            delivery: DeliveryConfig::default(),
            webhook: Vec::new(),
            mail: Vec::new(),
            watchdog: WatchdogConfig::default(),
        }
    }
}

/// `[gateway.alerts.delivery]`: how a failed delivery is retried (see
/// [`super::delivery::DeliverySchedule`]).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Seconds to wait after the first failed attempt (at least 1).
    pub first_delay_secs: u64,
    /// Longest wait in seconds; the wait doubles up to it.
    pub max_delay_secs: u64,
    /// Fraction (0..=1) of each wait taken off at random.
    pub jitter: f64,
    /// An alert not delivered to a channel this many hours after it was raised is given up
    /// for that channel (logged as an error); at least 1.
    pub give_up_after_hours: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            first_delay_secs: 30,
            max_delay_secs: 1800,
            jitter: 0.25,
            give_up_after_hours: 72,
        }
    }
}

/// One `[[gateway.alerts.webhook]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The channel's name (unique among channels; the delivery queue keys on it, so renaming
    /// a channel delivers the alerts of the last `give_up_after_hours` to it again).
    pub name: String,
    /// `http://` or `https://` URL the alert is POSTed to.
    pub url: String,
    /// File holding the HMAC-SHA256 signing secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// Environment variable holding the signing secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// Seconds one attempt may take (at least 1; default 10).
    #[serde(default = "default_webhook_timeout")]
    pub timeout_secs: u64,
}

fn default_webhook_timeout() -> u64 {
    10
}

fn default_mail_timeout() -> u64 {
    30
}

/// One `[[gateway.alerts.mail]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// The channel's name (unique among channels).
    pub name: String,
    /// SMTP server host name or address.
    pub server: String,
    /// Port; default by `security` (587, 465, 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` (implicit) or `none` (loopback only).
    #[serde(default)]
    pub security: smtp_mail::Security,
    /// Sender address.
    pub from: String,
    /// Recipients (at least one).
    pub to: Vec<String>,
    /// SMTP user; needs `password_file` or `password_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File holding the SMTP password (its first line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Seconds the exchange with the server may take (at least 1; default 30).
    #[serde(default = "default_mail_timeout")]
    pub timeout_secs: u64,
}

/// `[gateway.alerts.watchdog]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchdogConfig {
    /// Seconds between sweeps (at least 1); one sweep also runs at start.
    pub interval_secs: u64,
    /// A certificate (ours or a partner's) that expires within this many days raises an
    /// alert (0 = off).
    pub cert_warning_days: u32,
    /// A certificate alert that was acknowledged is raised again after this many days if the
    /// certificate still expires within `cert_warning_days` (at least 1).
    pub cert_repeat_days: u32,
    /// Free space in the data directory's file system below this many MiB raises an alert
    /// (0 = off).
    pub disk_low_mib: u64,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            interval_secs: 300,
            cert_warning_days: 30,
            cert_repeat_days: 7,
            disk_low_mib: 1024,
        }
    }
}

/// A `[gateway.alerts]` key that cannot be used; the text names it and says what to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[gateway.alerts]{0}")]
pub struct AlertsConfigError(pub(crate) String);

impl AlertsConfig {
    /// Checks what serde cannot (numbers in range, names unique, URLs and addresses usable,
    /// one secret source each). Secrets are not read here.
    pub fn check(&self) -> Result<(), AlertsConfigError> {
        let err = |s: String| Err(AlertsConfigError(s));
        for (key, value) in [
            ("poll_interval_secs", self.poll_interval_secs),
            ("delivery.first_delay_secs", self.delivery.first_delay_secs),
            (
                "delivery.give_up_after_hours",
                self.delivery.give_up_after_hours,
            ),
            ("watchdog.interval_secs", self.watchdog.interval_secs),
            (
                "watchdog.cert_repeat_days",
                u64::from(self.watchdog.cert_repeat_days),
            ),
        ] {
            if value == 0 {
                return err(format!(" {key} must be at least 1"));
            }
        }
        super::delivery::DeliverySchedule::try_from(&self.delivery)
            .map_err(|e| AlertsConfigError(format!(" delivery: {e}")))?;
        let mut names = HashSet::new();
        let all = self.webhook.iter().map(|w| ("webhook", &w.name));
        for (table, name) in all.chain(self.mail.iter().map(|m| ("mail", &m.name))) {
            if name.trim().is_empty() {
                return err(format!(" [[{table}]]: name must not be empty"));
            }
            if !names.insert(name.as_str()) {
                return err(format!(
                    " [[{table}]] {name:?}: another channel has this name; give each channel its own"
                ));
            }
        }
        for w in &self.webhook {
            let at = format!(" [[webhook]] {:?}", w.name);
            if !is_http_url(&w.url) {
                return err(format!(
                    "{at}: url {:?} is not an http:// or https:// URL",
                    shown_url(&w.url)
                ));
            }
            one_source(&at, "secret", &w.secret_file, &w.secret_env, true)?;
            if w.timeout_secs == 0 {
                return err(format!("{at}: timeout_secs must be at least 1"));
            }
        }
        for m in &self.mail {
            let at = format!(" [[mail]] {:?}", m.name);
            smtp_mail::Mailer::new(m.server.clone(), m.security, &m.from, &m.to)
                .map_err(|e| AlertsConfigError(format!("{at}: {e}")))?;
            let has_password = one_source(
                &at,
                "password",
                &m.password_file,
                &m.password_env,
                m.username.is_some(),
            )?;
            if has_password && m.username.is_none() {
                return err(format!("{at}: a password needs a username"));
            }
            if m.timeout_secs == 0 {
                return err(format!("{at}: timeout_secs must be at least 1"));
            }
        }
        Ok(())
    }

    /// Makes the relative secret and password file paths relative to `base` (the directory
    /// of the configuration file), as the other paths of `oftp.toml` are.
    pub fn resolve_paths(&mut self, base: &Path) {
        let files = self.webhook.iter_mut().map(|w| &mut w.secret_file);
        for file in files
            .chain(self.mail.iter_mut().map(|m| &mut m.password_file))
            .flatten()
        {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
    }
}

/// At most one of `<what>_file` and `<what>_env`, and one if `required`; returns whether one
/// is given.
fn one_source(
    at: &str,
    what: &str,
    file: &Option<PathBuf>,
    env: &Option<String>,
    required: bool,
) -> Result<bool, AlertsConfigError> {
    match (file, env) {
        (Some(_), Some(_)) => Err(AlertsConfigError(format!(
            "{at}: set {what}_file or {what}_env, not both"
        ))),
        (None, None) if required => Err(AlertsConfigError(format!(
            "{at}: needs a {what}: set {what}_file (a file holding it) or {what}_env (an environment variable)"
        ))),
        (None, None) => Ok(false),
        _ => Ok(true),
    }
}

/// Whether `url` is an http(s) URL with a host.
fn is_http_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// A URL as an error or log may show it: no query string or credentials (tokens live there).
pub(crate) fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => "<not a URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<(), String> {
        let c: AlertsConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.check().map_err(|e| e.to_string())
    }

    const HOOK: &str = "[[webhook]]\nname = \"h\"\nurl = \"https://x.example/a?token=SECRET\"\n";

    #[test]
    fn the_defaults_are_usable_and_need_no_channel() {
        assert_eq!(check(""), Ok(()));
        assert_eq!(AlertsConfig::default().watchdog.cert_warning_days, 30);
        assert_eq!(
            check(&format!("{HOOK}secret_env = \"HOOK_SECRET\"\n")),
            Ok(())
        );
    }

    #[test]
    fn a_webhook_needs_one_secret_source_and_an_http_url() {
        let e = check(HOOK).unwrap_err();
        assert!(
            e.contains("set secret_file") && e.contains("secret_env"),
            "{e}"
        );
        let e = check(&format!("{HOOK}secret_env = \"A\"\nsecret_file = \"/s\"\n")).unwrap_err();
        assert!(e.contains("not both"), "{e}");
        let e = check(
            "[[webhook]]\nname = \"h\"\nurl = \"ftp://x.example/?token=SECRET\"\nsecret_env = \"A\"\n",
        )
        .unwrap_err();
        assert!(e.contains("not an http:// or https:// URL"), "{e}");
        assert!(
            !e.contains("SECRET"),
            "query strings stay out of errors: {e}"
        );
    }

    #[test]
    fn channel_names_are_unique_and_unknown_keys_are_refused() {
        let mail = "[[mail]]\nname = \"h\"\nserver = \"127.0.0.1\"\nsecurity = \"none\"\n\
                    from = \"a@example.com\"\nto = [\"b@example.com\"]\n";
        let e = check(&format!("{HOOK}secret_env = \"A\"\n{mail}")).unwrap_err();
        assert!(e.contains("another channel has this name"), "{e}");
        let e = check("[watchdog]\ncert_warn_days = 3\n").unwrap_err();
        assert!(e.contains("cert_warn_days"), "{e}");
    }

    #[test]
    fn mail_settings_are_checked_before_start() {
        let base = "[[mail]]\nname = \"m\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n";
        let e = check(&format!(
            "{base}server = \"smtp.example.com\"\nsecurity = \"none\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("only allowed to a loopback relay"), "{e}");
        let e = check(&format!(
            "{base}server = \"smtp.example.com\"\nusername = \"u\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("needs a password"), "{e}");
        let e = check(&format!(
            "{base}server = \"smtp.example.com\"\npassword_env = \"P\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("a password needs a username"), "{e}");
        assert_eq!(
            check(&format!(
                "{base}server = \"smtp.example.com\"\nsecurity = \"tls\"\nusername = \"u\"\npassword_env = \"P\"\n"
            )),
            Ok(())
        );
    }

    #[test]
    fn relative_secret_files_are_read_from_the_configuration_directory() {
        let mut c: AlertsConfig = toml::from_str(&format!(
            "{HOOK}secret_file = \"hook-secret\"\n[[mail]]\nname = \"m\"\nserver = \"h\"\n\
             from = \"a@example.com\"\nto = [\"b@example.com\"]\nusername = \"u\"\n\
             password_file = \"/etc/oftp/smtp\"\n"
        ))
        .unwrap();
        c.resolve_paths(std::path::Path::new("/srv/oftp"));
        assert_eq!(
            c.webhook[0].secret_file.as_deref(),
            Some(std::path::Path::new("/srv/oftp/hook-secret"))
        );
        assert_eq!(
            c.mail[0].password_file.as_deref(),
            Some(std::path::Path::new("/etc/oftp/smtp")),
            "absolute paths stay"
        );
    }

    #[test]
    fn zero_intervals_are_refused() {
        let e = check("poll_interval_secs = 0\n").unwrap_err();
        assert_eq!(e, "[gateway.alerts] poll_interval_secs must be at least 1");
        let e = check("[delivery]\njitter = 2.0\n").unwrap_err();
        assert!(e.starts_with("[gateway.alerts] delivery: jitter"), "{e}");
    }
}
