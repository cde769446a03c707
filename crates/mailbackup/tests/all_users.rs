//! `Mailboxes::AllUsers` end to end. The emulator does not list users (`GET /users`), so this test
//! puts a small forwarding proxy in front of it that answers `/v1.0/users` (paged) itself and
//! forwards every other request unchanged.

mod common;

use common::*;
use graph_emulator::{EmulatorConfig, MailboxSpec, UserSpec};
use mailbackup::{Backup, Mailboxes, StaticToken};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const ROOM: &str = "room@emulator.test";

/// Serves one request per connection: `/v1.0/users` pages from `users`, everything else from `upstream`.
async fn proxy(upstream: String, users: Vec<&'static str>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let me = base.clone();
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let (http, upstream, users, me) =
                (http.clone(), upstream.clone(), users.clone(), me.clone());
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                let mut line = String::new();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).await.unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = h.trim_end().split_once(':') {
                        headers.push((k.trim().to_string(), v.trim().to_string()));
                    }
                }
                let (status, ctype, retry_after, body) = if target.starts_with("/v1.0/users?") {
                    // Two users per page, to exercise paging.
                    let skip: usize = target
                        .split("skip=")
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    let page: Vec<_> = users
                        .iter()
                        .skip(skip)
                        .take(2)
                        .map(|u| serde_json::json!({"id": format!("id-{u}"), "userPrincipalName": u}))
                        .collect();
                    let mut v = serde_json::json!({ "value": page });
                    if skip + 2 < users.len() {
                        v["@odata.nextLink"] = format!("{me}/v1.0/users?skip={}", skip + 2).into();
                    }
                    (
                        200,
                        "application/json".to_string(),
                        None,
                        v.to_string().into_bytes(),
                    )
                } else {
                    let mut req = http.get(format!("{upstream}{target}"));
                    for (k, v) in &headers {
                        if k.eq_ignore_ascii_case("authorization")
                            || k.eq_ignore_ascii_case("prefer")
                        {
                            req = req.header(k.as_str(), v.as_str());
                        }
                    }
                    let Ok(resp) = req.send().await else { return };
                    let status = resp.status().as_u16();
                    let ctype = resp
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("application/octet-stream")
                        .to_string();
                    let ra = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let body = resp.bytes().await.unwrap_or_default().to_vec();
                    // Links in the body point at the emulator: rewrite them to come back here.
                    let body = String::from_utf8(body.clone())
                        .map(|s| s.replace(&upstream, &me).into_bytes())
                        .unwrap_or(body);
                    (status, ctype, ra, body)
                };
                let mut head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n",
                    body.len()
                );
                if let Some(ra) = retry_after {
                    head.push_str(&format!("retry-after: {ra}\r\n"));
                }
                head.push_str("\r\n");
                let _ = w.write_all(head.as_bytes()).await;
                let _ = w.write_all(&body).await;
                let _ = w.shutdown().await;
            });
        }
    });
    base
}

#[tokio::test]
async fn all_users_backs_up_every_mailbox_and_skips_users_without_one() {
    let cfg = EmulatorConfig::default().with_mailboxes(vec![
        MailboxSpec::new(ALICE).messages(7).seed(1),
        MailboxSpec::new(BOB).messages(5).seed(2),
    ]);
    let cfg = EmulatorConfig {
        users_without_mailbox: vec![UserSpec {
            user_principal_name: ROOM.into(),
            display_name: "Room".into(),
            password: None,
        }],
        ..cfg
    };
    let emu = emulator_with(cfg).await;
    let token = app_token(&emu).await;
    let base = proxy(emu.base_url(), vec![ALICE, ROOM, BOB]).await;
    let dir = tempfile::tempdir().unwrap();
    let report = Backup::builder(dir.path(), Arc::new(StaticToken::new(&token)))
        .graph_url(format!("{base}/v1.0"))
        .mailboxes(Mailboxes::AllUsers)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    let skipped: Vec<_> = report
        .mailboxes
        .iter()
        .filter(|m| m.skipped_reason.is_some())
        .map(|m| m.mailbox.as_str())
        .collect();
    assert_eq!(skipped, vec![ROOM]);
    assert_complete(&dir.path().join(ALICE), &emu, ALICE);
    assert_complete(&dir.path().join(BOB), &emu, BOB);
    assert!(
        emu.stats()
            .max_concurrency_per_mailbox
            .values()
            .all(|c| *c <= 4)
    );
}
