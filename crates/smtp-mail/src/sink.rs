//! A minimal SMTP server on loopback for tests (feature `sink`): what the mail channels of
//! mailbackup's notifications and the OFTP gateway's alerts are tested against. ESMTP with
//! AUTH PLAIN, no TLS; it records each mail and panics on what a test must not do (it is
//! test support, never used by the commands).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One received mail: the AUTH line's decoded credentials, the envelope and the data.
#[derive(Debug, Default, Clone)]
pub struct Received {
    /// The AUTH PLAIN credentials, NULs shown as `|`.
    pub auth: Option<String>,
    /// The RCPT TO addresses, with their angle brackets.
    pub rcpt: Vec<String>,
    /// The mail's lines after DATA, each ending in `\n`.
    pub data: String,
}

/// A small SMTP server on loopback (ESMTP with AUTH PLAIN, no TLS), recording each mail.
pub async fn start() -> (u16, Arc<Mutex<Vec<Received>>>) {
    use base64::Engine as _;
    let got = Arc::new(Mutex::new(Vec::new()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("the test SMTP sink");
    let port = l.local_addr().expect("the test SMTP sink").port();
    let g = got.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let g = g.clone();
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut lines = BufReader::new(r).lines();
                let mut mail = Received::default();
                w.write_all(b"220 sink ESMTP\r\n")
                    .await
                    .expect("the test SMTP sink");
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let answer: &[u8] = if upper.starts_with("EHLO") {
                        b"250-sink\r\n250 AUTH PLAIN\r\n"
                    } else if let Some(b64) = line.strip_prefix("AUTH PLAIN ") {
                        let raw = base64::engine::general_purpose::STANDARD
                            .decode(b64.trim())
                            .expect("the test SMTP sink");
                        mail.auth = Some(String::from_utf8_lossy(&raw).replace('\0', "|"));
                        b"235 ok\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        mail.rcpt.push(line[8..].trim().to_string());
                        b"250 ok\r\n"
                    } else if upper == "DATA" {
                        w.write_all(b"354 go on\r\n")
                            .await
                            .expect("the test SMTP sink");
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            mail.data.push_str(&l);
                            mail.data.push('\n');
                        }
                        g.lock()
                            .expect("the test SMTP sink")
                            .push(std::mem::take(&mut mail));
                        b"250 queued\r\n"
                    } else if upper == "QUIT" {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        break;
                    } else {
                        b"250 ok\r\n"
                    };
                    w.write_all(answer).await.expect("the test SMTP sink");
                }
            });
        }
    });
    (port, got)
}
