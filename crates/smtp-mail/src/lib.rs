//! Plain-text notification mail over SMTP: STARTTLS, implicit TLS, or plain SMTP to a loopback
//! relay only. Used by mailbackup's run notifications and the OFTP gateway's alerts.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use smtp_mail::{Mailer, Security};
//! let mailer = Mailer::new("smtp.example.com", Security::Starttls, "oftp@example.com",
//!     &["ops@example.com".to_owned()])?
//!     .credentials("oftp", "password from a file");
//! mailer.send("oftp: disk space low", "The data directory has 1 GiB left.").await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

#[cfg(feature = "sink")]
pub mod sink;

use std::fmt;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// STARTTLS, required (port 587 by default).
    #[default]
    Starttls,
    /// Implicit TLS from the first byte (SMTPS, port 465 by default).
    Tls,
    /// Plain SMTP, only to a loopback address (a local relay; port 25 by default).
    None,
}

impl Security {
    /// The usual port of this kind of connection.
    pub fn default_port(self) -> u16 {
        match self {
            Security::Starttls => 587,
            Security::Tls => 465,
            Security::None => 25,
        }
    }
}

/// A mail configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Plain SMTP to a server that is not a loopback address.
    #[error(
        "plain SMTP (security \"none\") is only allowed to a loopback relay, not {server}: use \"starttls\" or \"tls\""
    )]
    PlainToRemote {
        /// The server.
        server: String,
    },
    /// A sender or recipient that is not a mail address.
    #[error("{address:?} is not a mail address")]
    Address {
        /// As written.
        address: String,
    },
    /// No recipient.
    #[error("no recipient: give at least one mail address to send to")]
    NoRecipient,
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
#[error("{text}")]
pub struct SendError {
    text: String,
    transient: bool,
}

impl SendError {
    /// Whether trying again later may succeed (connection failures, timeouts, 4xx answers);
    /// false for 5xx answers and messages that cannot be built.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

/// An SMTP server, a sender and recipients.
#[derive(Clone)]
pub struct Mailer {
    server: String,
    port: u16,
    security: Security,
    credentials: Option<(String, String)>,
    from: Mailbox,
    to: Vec<Mailbox>,
    timeout: Duration,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("server", &self.server)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("from", &self.from.to_string())
            .field(
                "to",
                &self.to.iter().map(Mailbox::to_string).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Whether `host` is `localhost` or a loopback IP address.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn mailbox(address: &str) -> Result<Mailbox, ConfigError> {
    address.parse().map_err(|_| ConfigError::Address {
        address: address.to_owned(),
    })
}

impl Mailer {
    /// A mailer to `server` on the default port of `security`, no credentials, 30 s timeout.
    pub fn new(
        server: impl Into<String>,
        security: Security,
        from: &str,
        to: &[String],
    ) -> Result<Self, ConfigError> {
        let server = server.into();
        if security == Security::None && !is_loopback(&server) {
            return Err(ConfigError::PlainToRemote { server });
        }
        if to.is_empty() {
            return Err(ConfigError::NoRecipient);
        }
        Ok(Mailer {
            port: security.default_port(),
            server,
            security,
            credentials: None,
            from: mailbox(from)?,
            to: to.iter().map(|a| mailbox(a)).collect::<Result<_, _>>()?,
            timeout: Duration::from_secs(30),
        })
    }

    /// Another port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Log in with this user and password (never logged).
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// The time the whole exchange with the server may take.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The server's host name or address.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The server's port.
    pub fn server_port(&self) -> u16 {
        self.port
    }

    /// Sends one text/plain message with `subject` and `text` to every recipient.
    pub async fn send(&self, subject: &str, text: &str) -> Result<(), SendError> {
        let mut b = Message::builder().from(self.from.clone()).subject(subject);
        for to in &self.to {
            b = b.to(to.clone());
        }
        let message = b
            .header(ContentType::TEXT_PLAIN)
            .body(text.to_owned())
            .map_err(|e| SendError {
                text: format!("cannot build the message: {e}"),
                transient: false,
            })?;
        let builder = match self.security {
            Security::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&self.server)
            }
            Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&self.server),
            Security::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                &self.server,
            )),
        }
        .map_err(|e| SendError {
            text: format!("cannot set up TLS for {}: {e}", self.server),
            transient: false,
        })?;
        let mut t = builder.port(self.port).timeout(Some(self.timeout));
        if let Some((user, password)) = &self.credentials {
            t = t.credentials(Credentials::new(user.clone(), password.clone()));
        }
        t.build()
            .send(message)
            .await
            .map(drop)
            .map_err(|e| SendError {
                transient: !e.is_permanent(),
                text: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to() -> Vec<String> {
        vec!["ops@example.com".into()]
    }

    #[test]
    fn plain_smtp_is_only_allowed_to_a_loopback_server() {
        for local in ["127.0.0.1", "localhost", "[::1]", "::1"] {
            assert!(Mailer::new(local, Security::None, "a@example.com", &to()).is_ok());
        }
        let e =
            Mailer::new("smtp.example.com", Security::None, "a@example.com", &to()).unwrap_err();
        assert_eq!(
            e,
            ConfigError::PlainToRemote {
                server: "smtp.example.com".into()
            }
        );
        assert!(Mailer::new("smtp.example.com", Security::Tls, "a@example.com", &to()).is_ok());
    }

    #[test]
    fn addresses_and_ports_are_checked_and_defaulted() {
        let e = Mailer::new("h", Security::Starttls, "not an address", &to()).unwrap_err();
        assert_eq!(e.to_string(), "\"not an address\" is not a mail address");
        assert_eq!(
            Mailer::new("h", Security::Starttls, "a@example.com", &[]).unwrap_err(),
            ConfigError::NoRecipient
        );
        let m = Mailer::new("h", Security::Tls, "a@example.com", &to()).unwrap();
        assert_eq!(m.server_port(), 465);
        assert_eq!(m.clone().port(2525).server_port(), 2525);
        assert_eq!(Security::Starttls.default_port(), 587);
        assert_eq!(Security::None.default_port(), 25);
    }

    #[test]
    fn the_password_stays_out_of_debug_output() {
        let m = Mailer::new("h", Security::Starttls, "a@example.com", &to())
            .unwrap()
            .credentials("user", "hunter2-secret");
        let shown = format!("{m:?}");
        assert!(
            shown.contains("user") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_transient() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let e = Mailer::new("127.0.0.1", Security::None, "a@example.com", &to())
            .unwrap()
            .port(port)
            .timeout(Duration::from_secs(5))
            .send("s", "t")
            .await
            .unwrap_err();
        assert!(e.is_transient(), "{e}");
    }
}
