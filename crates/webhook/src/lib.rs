//! Signed webhook notifications.
//!
//! A notification is a JSON body POSTed to a receiver's URL with the header
//! `X-Signature-256: sha256=<hex>`, the lower-case hex HMAC-SHA256 of the exact body bytes under
//! a secret shared with the receiver. [`sign`] makes the header value, [`verify`] is the
//! receiver's constant-time check, [`Webhook::deliver`] sends with bounded exponential back-off.
//!
//! ```
//! let secret = webhook::Secret::new("It is a secret to everybody");
//! let body = br#"{"outcome":"failed"}"#;
//! let header = webhook::sign(&secret, body);
//! assert!(webhook::verify(&secret, body, &header).is_ok());
//! assert!(webhook::verify(&secret, b"{}", &header).is_err());
//! ```

#![warn(missing_docs)]

use aws_lc_rs::hmac;
use std::fmt;
use std::time::Duration;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Signature-256";

/// The shared signing key. Its `Debug` output never shows the value.
#[derive(Clone)]
pub struct Secret(hmac::Key);

impl Secret {
    /// A key from the secret's bytes (a file's content or an environment variable's value).
    pub fn new(value: impl AsRef<[u8]>) -> Self {
        Secret(hmac::Key::new(hmac::HMAC_SHA256, value.as_ref()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The `X-Signature-256` value of `body`: `sha256=` and the hex HMAC-SHA256.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac::sign(&secret.0, body).as_ref())
    )
}

/// Why a receiver rejects a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The header is not `sha256=` followed by 64 hex digits.
    #[error("the {SIGNATURE_HEADER} header is not sha256=<64 hex digits>")]
    Malformed,
    /// Well formed, but not the HMAC of this body under this secret.
    #[error(
        "the {SIGNATURE_HEADER} signature does not match the body (wrong secret or altered body)"
    )]
    Mismatch,
}

/// Checks a received `X-Signature-256` value against the body, in constant time.
pub fn verify(secret: &Secret, body: &[u8], header: &str) -> Result<(), VerifyError> {
    let hex_part = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(VerifyError::Malformed)?;
    let tag = hex::decode(hex_part).map_err(|_| VerifyError::Malformed)?;
    if tag.len() != 32 {
        return Err(VerifyError::Malformed);
    }
    hmac::verify(&secret.0, body, &tag).map_err(|_| VerifyError::Mismatch)
}

/// Why a delivery finally failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The receiver refused the request (an answer that retrying cannot change, e.g. 4xx).
    #[error("webhook receiver {url} refused the notification: HTTP {status}")]
    Refused {
        /// The receiver (without query string).
        url: String,
        /// Its answer.
        status: u16,
    },
    /// Every attempt failed with a server error, a timeout or a connection failure.
    #[error("webhook receiver {url} unreachable after {attempts} attempts; last: {last}")]
    GaveUp {
        /// The receiver (without query string).
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's failure.
        last: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot set up the webhook HTTP client: {0}")]
    Client(String),
}

/// A receiver and how to deliver to it.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: reqwest::Url,
    secret: Secret,
    attempts: u32,
    first_delay: Duration,
    max_delay: Duration,
    timeout: Duration,
}

/// What a successful delivery took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Attempts made (1 when the first one succeeded).
    pub attempts: u32,
    /// The receiver's answer.
    pub status: u16,
}

impl Webhook {
    /// A receiver with the defaults: 5 attempts, 1 s first delay doubled up to 30 s, 10 s
    /// per attempt.
    pub fn new(url: reqwest::Url, secret: Secret) -> Self {
        Webhook {
            url,
            secret,
            attempts: 5,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }

    /// At most this many attempts in all (at least 1).
    pub fn attempts(mut self, n: u32) -> Self {
        self.attempts = n.max(1);
        self
    }

    /// The delay before the second attempt; each later delay doubles, up to `max`.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_delay = first;
        self.max_delay = max.max(first);
        self
    }

    /// The time one attempt may take (connect, send, answer).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The delay before attempt `n + 1` after `n` failed attempts (`n >= 1`).
    fn delay_after(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n - 1).unwrap_or(u32::MAX);
        self.first_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The URL as logs may show it: no query string or credentials (tokens often live there).
    fn shown_url(&self) -> String {
        let mut u = self.url.clone();
        u.set_query(None);
        let _ = u.set_password(None);
        let _ = u.set_username("");
        u.to_string()
    }

    /// POSTs `body` (JSON) signed, retrying server errors, timeouts and connection failures.
    pub async fn deliver(&self, body: &[u8]) -> Result<Delivered, DeliveryError> {
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| DeliveryError::Client(e.to_string()))?;
        let signature = sign(&self.secret, body);
        let shown = self.shown_url();
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            if attempt > 1 {
                let wait = self.delay_after(attempt - 1);
                tracing::info!(url = %shown, attempt, ?wait, "webhook: retrying after {last}");
                tokio::time::sleep(wait).await;
            }
            let sent = client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, &signature)
                .body(body.to_vec())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    return Ok(Delivered {
                        attempts: attempt,
                        status: r.status().as_u16(),
                    });
                }
                Ok(r) if r.status().is_server_error() => {
                    last = format!("HTTP {}", r.status().as_u16());
                }
                Ok(r) => {
                    return Err(DeliveryError::Refused {
                        url: shown,
                        status: r.status().as_u16(),
                    });
                }
                Err(e) if e.is_timeout() => last = format!("no answer within {:?}", self.timeout),
                Err(e) => last = without_url(&e),
            }
        }
        Err(DeliveryError::GaveUp {
            url: shown,
            attempts: self.attempts,
            last,
        })
    }
}

/// A reqwest error's text and causes, without the URL it quotes (it may carry a token).
fn without_url(e: &reqwest::Error) -> String {
    let mut out = String::from(if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    });
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    const KEY: &str = "It is a secret to everybody";
    const BODY: &[u8] = br#"{"schema_version":1,"outcome":"failed"}"#;
    // printf '%s' '{"schema_version":1,"outcome":"failed"}' \
    //   | openssl dgst -sha256 -hmac 'It is a secret to everybody'
    const OPENSSL: &str = "f2f13858f5b060a76ac78d69738d8e7d57e6002cde2d45b4a056b6ae69b8fa1d";

    #[test]
    fn signature_matches_openssl_known_answer() {
        assert_eq!(sign(&Secret::new(KEY), BODY), format!("sha256={OPENSSL}"));
    }

    #[test]
    fn verify_accepts_the_signature_and_rejects_other_bodies_keys_and_shapes() {
        let s = Secret::new(KEY);
        let good = format!("sha256={OPENSSL}");
        assert_eq!(verify(&s, BODY, &good), Ok(()));
        assert_eq!(
            verify(&s, BODY, &good.to_uppercase().replace("SHA256=", "sha256=")),
            Ok(()),
            "hex digits in upper case are the same signature"
        );
        assert_eq!(verify(&s, b"{}", &good), Err(VerifyError::Mismatch));
        assert_eq!(
            verify(&Secret::new("other"), BODY, &good),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(verify(&s, BODY, OPENSSL), Err(VerifyError::Malformed));
        assert_eq!(verify(&s, BODY, "sha256=zz"), Err(VerifyError::Malformed));
        assert_eq!(verify(&s, BODY, "sha256=abcd"), Err(VerifyError::Malformed));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let hook = Webhook::new("http://127.0.0.1:1/".parse().unwrap(), Secret::new(KEY));
        assert!(!format!("{hook:?}").contains("secret to everybody"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let h = Webhook::new("http://127.0.0.1:1/".parse().unwrap(), Secret::new(KEY))
            .backoff(Duration::from_millis(100), Duration::from_millis(500));
        let d: Vec<_> = (1..=5).map(|n| h.delay_after(n).as_millis()).collect();
        assert_eq!(d, [100, 200, 400, 500, 500]);
        assert_eq!(h.delay_after(200), Duration::from_millis(500));
    }

    /// A receiver answering `answers` in turn (then 200), verifying each signature.
    async fn receiver(answers: Vec<u16>) -> (reqwest::Url, Arc<AtomicU32>) {
        let hits = Arc::new(AtomicU32::new(0));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let h = h.clone();
                let answers = answers.clone();
                async move {
                    let n = h.fetch_add(1, Ordering::SeqCst) as usize;
                    let sig = headers[SIGNATURE_HEADER].to_str().unwrap();
                    if verify(&Secret::new(KEY), &body, sig).is_err() {
                        return StatusCode::UNAUTHORIZED;
                    }
                    StatusCode::from_u16(answers.get(n).copied().unwrap_or(200)).unwrap()
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook?token=abc", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        (url.parse().unwrap(), hits)
    }

    fn quick(url: reqwest::Url) -> Webhook {
        Webhook::new(url, Secret::new(KEY))
            .attempts(4)
            .backoff(Duration::from_millis(10), Duration::from_millis(40))
            .timeout(Duration::from_millis(500))
    }

    #[tokio::test]
    async fn server_errors_are_retried_until_delivered() {
        let (url, hits) = receiver(vec![500, 503]).await;
        let d = quick(url).deliver(BODY).await.unwrap();
        assert_eq!(
            d,
            Delivered {
                attempts: 3,
                status: 200
            }
        );
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_receiver_that_stays_down_is_given_up_after_the_attempts() {
        let (url, hits) = receiver(vec![502; 10]).await;
        let e = quick(url).deliver(BODY).await.unwrap_err();
        assert_eq!(hits.load(Ordering::SeqCst), 4);
        let text = e.to_string();
        assert!(text.contains("after 4 attempts; last: HTTP 502"), "{text}");
        assert!(
            !text.contains("token=abc"),
            "query strings stay out: {text}"
        );
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let (url, hits) = receiver(vec![404]).await;
        let e = quick(url).deliver(BODY).await.unwrap_err();
        assert!(
            matches!(e, DeliveryError::Refused { status: 404, .. }),
            "{e}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn timeouts_and_refused_connections_are_retried() {
        // A listener that accepts and never answers: each attempt times out.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicU32::new(0));
        let a = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                held.push(s);
            }
        });
        let hook = quick(format!("http://{addr}/").parse().unwrap())
            .attempts(2)
            .timeout(Duration::from_millis(200));
        let e = hook.deliver(BODY).await.unwrap_err().to_string();
        assert!(
            e.contains("after 2 attempts; last: no answer within"),
            "{e}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);

        // Nothing listening: connection refused, retried too.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let e = quick(format!("http://{addr}/").parse().unwrap())
            .deliver(BODY)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("after 4 attempts; last: connection failed"),
            "{e}"
        );
    }
}
