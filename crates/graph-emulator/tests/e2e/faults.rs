//! Concurrency limit, injected faults, $batch, determinism, statistics.

use std::time::Duration;

use base64::Engine;
use graph_emulator::{EmulatorConfig, EndpointKind, FaultConfig, MailboxSpec, Trigger};
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn concurrency_limit_is_per_mailbox() {
    let other = "megan.bowen@emulator.test";
    let emu = start(
        EmulatorConfig::default()
            .with_mailboxes(vec![
                MailboxSpec::new(USER).messages(3),
                MailboxSpec::new(other).messages(3),
            ])
            .with_concurrency_limit(Some(2)),
    )
    .await;
    let token = app_token(&emu).await;
    let g = emu.graph_url();
    let mb = emu.mailbox(USER);
    // Two slow requests occupy both slots of the mailbox (the latency wait counts as in flight).
    emu.faults().latency(Duration::from_secs(60));
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let (url, token) = (format!("{g}/users/{USER}/mailFolders"), token.clone());
            tokio::spawn(async move {
                client()
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(30), mb.wait_in_flight(2))
        .await
        .expect("slow requests did not arrive");
    assert_eq!(mb.in_flight(), 2);
    emu.faults().latency(Duration::ZERO);

    // Further requests on that mailbox: 429 ApplicationThrottled with Retry-After.
    for _ in 0..4 {
        let (status, headers, body) =
            get(&token, &format!("{g}/users/{USER}/messages"), None).await;
        assert_eq!(status, 429);
        assert_eq!(
            headers.get("retry-after").and_then(|h| h.to_str().ok()),
            Some("1")
        );
        let v = assert_graph_error(&body, "ApplicationThrottled");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("MailboxConcurrency")
        );
    }
    // Another mailbox is not affected.
    let (status, _, _) = get(&token, &format!("{g}/users/{other}/messages"), None).await;
    assert_eq!(status, 200);
    let s = emu.stats();
    assert_eq!(s.throttled_concurrency, 4);
    assert_eq!(s.max_concurrency_per_mailbox.get(USER), Some(&3));
    assert_eq!(s.max_concurrency_per_mailbox.get(other), Some(&1));

    // Shutdown closes the connections of the slow requests.
    emu.shutdown().await;
    for h in slow {
        assert!(
            h.await.expect("task").is_err(),
            "slow request must fail on shutdown"
        );
    }
    assert_eq!(mb.in_flight(), 0);
}

#[tokio::test]
async fn concurrent_clients_within_the_limit_all_succeed() {
    let emu = start(EmulatorConfig::default().with_latency(Duration::from_millis(20))).await;
    let token = user_token(&emu, USER).await;
    let g = emu.graph_url();
    // Four parallel requests at a time (the Graph limit), three waves.
    for _ in 0..3 {
        let wave = (0..4).map(|_| {
            let (url, token) = (format!("{g}/me/mailFolders/inbox/messages"), token.clone());
            async move {
                client()
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("send")
                    .status()
                    .as_u16()
            }
        });
        assert_eq!(futures_join_all(wave).await, vec![200; 4]);
    }
    assert!(emu.stats().max_concurrency <= 4);
    emu.shutdown().await;
}

/// Minimal join_all over spawned tasks (keeps the dev-dependencies small).
async fn futures_join_all<F, T>(futs: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn injected_faults() {
    let emu = start(EmulatorConfig::default().with_concurrency_limit(None)).await;
    let token = user_token(&emu, USER).await;
    let url = format!("{}/me/mailFolders", emu.graph_url());
    let f = emu.faults();

    f.throttle(Trigger::Next(2), 7);
    for _ in 0..2 {
        let (status, headers, body) = get(&token, &url, None).await;
        assert_eq!(status, 429);
        assert_eq!(
            headers.get("retry-after").and_then(|h| h.to_str().ok()),
            Some("7")
        );
        assert_graph_error(&body, "ApplicationThrottled");
    }
    assert_eq!(get(&token, &url, None).await.0, 200);

    f.set(FaultConfig {
        unavailable: Trigger::EveryNth(2),
        unavailable_retry_after_secs: None,
        ..FaultConfig::default()
    });
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            let (status, headers, _) = get(&token, &url, None).await;
            if status == 503 {
                assert!(headers.get("retry-after").is_none());
            }
            v.push(status);
        }
        v
    };
    assert_eq!(statuses, vec![200, 503, 200, 503]);

    // Dropped connection: the client sees a transport error, not a response.
    f.set(FaultConfig {
        drop_connection: Trigger::Next(1),
        ..FaultConfig::default()
    });
    let err = client().get(&url).bearer_auth(&token).send().await;
    assert!(err.is_err(), "expected a transport error");
    assert_eq!(get(&token, &url, None).await.0, 200);

    // Faults narrowed to $value only.
    f.set(FaultConfig {
        unavailable: Trigger::EveryNth(1),
        unavailable_retry_after_secs: Some(3),
        only: Some(vec![EndpointKind::MessageValue]),
        ..FaultConfig::default()
    });
    assert_eq!(get(&token, &url, None).await.0, 200);
    let id = emu.mailbox(USER).messages()[0].id.clone();
    let (status, headers, _) = get(
        &token,
        &format!("{}/me/messages/{id}/$value", emu.graph_url()),
        None,
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(
        headers.get("retry-after").and_then(|h| h.to_str().ok()),
        Some("3")
    );
    f.clear();
    assert_eq!(
        get(
            &token,
            &format!("{}/me/messages/{id}/$value", emu.graph_url()),
            None
        )
        .await
        .0,
        200
    );

    let s = emu.stats();
    assert_eq!(
        (
            s.throttled_injected,
            s.unavailable_injected,
            s.dropped_connections
        ),
        (2, 3, 1)
    );
    assert!(s.count(EndpointKind::Folders) >= 10);
    assert_eq!(s.count(EndpointKind::MessageValue), 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn batch_runs_sub_requests() {
    let emu = start(EmulatorConfig::default()).await;
    let token = user_token(&emu, USER).await;
    let mb = emu.mailbox(USER);
    let msg = mb.messages()[3].clone();
    let body = json!({"requests": [
        {"id": "1", "method": "GET", "url": "/me/mailFolders?$top=2"},
        {"id": "2", "method": "GET", "url": format!("/me/messages/{}/$value", msg.id)},
        {"id": "3", "method": "GET", "url": "/me/messages/nope"},
    ]});
    let resp = client()
        .post(format!("{}/$batch", emu.graph_url()))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    let rs = v["responses"].as_array().expect("responses");
    let by_id = |id: &str| rs.iter().find(|r| r["id"] == id).expect("response").clone();
    assert_eq!(by_id("1")["status"], 200);
    assert_eq!(
        by_id("1")["body"]["value"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(by_id("2")["status"], 200);
    let mime = base64::engine::general_purpose::STANDARD
        .decode(by_id("2")["body"].as_str().expect("base64 body"))
        .expect("b64");
    assert_eq!(mime, mb.mime(&msg.id).expect("mime"));
    assert_eq!(by_id("3")["status"], 404);
    assert_eq!(by_id("3")["body"]["error"]["code"], "ErrorItemNotFound");
    assert_eq!(emu.stats().count(EndpointKind::Batch), 1);
    assert_eq!(emu.stats().count(EndpointKind::MessageValue), 1);

    let too_many = json!({"requests": (0..21).map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/me"})).collect::<Vec<_>>()});
    let resp = client()
        .post(format!("{}/$batch", emu.graph_url()))
        .bearer_auth(&token)
        .json(&too_many)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    emu.shutdown().await;
}

#[tokio::test]
async fn same_seed_same_ids_and_bytes_across_instances() {
    let config = || {
        EmulatorConfig::default().with_mailboxes(vec![MailboxSpec::new(USER).messages(25).seed(99)])
    };
    let a = start(config()).await;
    let b = start(config()).await;
    let ea = a.mailbox(USER).expected_messages();
    let eb = b.mailbox(USER).expected_messages();
    assert_eq!(ea, eb);
    let ta = user_token(&a, USER).await;
    let tb = user_token(&b, USER).await;
    let (la, _) = get_all(
        &ta,
        &format!("{}/me/messages?$top=100", a.graph_url()),
        None,
    )
    .await;
    let (lb, _) = get_all(
        &tb,
        &format!("{}/me/messages?$top=100", b.graph_url()),
        None,
    )
    .await;
    let strip = |v: Vec<Value>| -> Vec<Value> {
        v.into_iter()
            .map(|m| {
                json!([
                    m["id"],
                    m["subject"],
                    m["receivedDateTime"],
                    m["internetMessageId"]
                ])
            })
            .collect()
    };
    assert_eq!(strip(la), strip(lb));
    let c = start(
        EmulatorConfig::default()
            .with_mailboxes(vec![MailboxSpec::new(USER).messages(25).seed(100)]),
    )
    .await;
    assert_ne!(
        c.mailbox(USER).expected_messages()[0].info.id,
        ea[0].info.id
    );
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

#[tokio::test]
async fn binary_prints_urls_and_serves() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_graph-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--messages",
            "5",
            "--mailboxes",
            "2",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn binary");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut graph_url = None;
    let mut printed = Vec::new();
    for _ in 0..40 {
        let Some(line) = lines.next_line().await.expect("read") else {
            break;
        };
        if let Some(u) = line.trim().strip_prefix("Graph URL:") {
            graph_url = Some(u.trim().to_owned());
        }
        let done = line.starts_with("Press Ctrl-C");
        printed.push(line);
        if done {
            break;
        }
    }
    let graph_url = graph_url.expect("Graph URL printed");
    let text = printed.join("\n");
    assert!(
        text.contains("user1@emulator.test") && text.contains("user2@emulator.test"),
        "{text}"
    );
    assert!(text.contains(graph_emulator::DEFAULT_PUBLIC_CLIENT_ID));
    let base = graph_url.trim_end_matches("/v1.0");
    let info: Value = client()
        .get(format!("{base}/"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(info["mailboxes"].as_array().map(Vec::len), Some(2));
    child.kill().await.expect("kill");
}

#[tokio::test]
async fn truncated_downloads_and_delta_quirks() {
    let emu = start(
        EmulatorConfig::default()
            .with_mailboxes(vec![MailboxSpec::new(USER).messages(40).large_every(0)]),
    )
    .await;
    let token = user_token(&emu, USER).await;
    let mb = emu.mailbox(USER);
    let id = mb.messages()[0].id.clone();
    let url = format!("{}/me/messages/{id}/$value", emu.graph_url());

    emu.faults().truncate_values(Trigger::Next(1));
    let resp = client()
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("head arrives");
    assert_eq!(resp.status(), 200);
    let declared = resp.content_length().expect("Content-Length");
    assert_eq!(declared as usize, mb.mime(&id).expect("mime").len());
    assert!(resp.bytes().await.is_err(), "body must be cut short");
    let (status, _, body) = get(&token, &url, None).await;
    assert_eq!(status, 200);
    assert_eq!(body.len() as u64, declared);

    // Empty first page with a nextLink, then duplicates across pages: the union is still the folder.
    emu.faults()
        .delta_quirks(Trigger::Next(1), Trigger::EveryNth(1));
    let mut next = format!("{}/me/mailFolders/inbox/messages/delta", emu.graph_url());
    let mut seen = Vec::new();
    let mut empty_pages = 0;
    for _ in 0..100 {
        let v = {
            let (status, _, body) = get(&token, &next, Some("odata.maxpagesize=5")).await;
            assert_eq!(status, 200);
            serde_json::from_slice::<Value>(&body).expect("json")
        };
        let items = v["value"].as_array().cloned().unwrap_or_default();
        if items.is_empty() && v["@odata.nextLink"].is_string() {
            empty_pages += 1;
        }
        seen.extend(
            items
                .iter()
                .filter_map(|m| m["id"].as_str().map(str::to_owned)),
        );
        match v["@odata.nextLink"].as_str() {
            Some(n) => next = n.to_owned(),
            None => break,
        }
    }
    assert_eq!(empty_pages, 1);
    let unique: std::collections::BTreeSet<String> = seen.iter().cloned().collect();
    assert!(seen.len() > unique.len(), "duplicates were injected");
    let folder: std::collections::BTreeSet<String> = mb
        .folder_messages("inbox")
        .expect("msgs")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(unique, folder);
    let s = emu.stats();
    assert_eq!(s.truncated_values, 1);
    assert!(s.delta_quirks >= 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn request_budget_per_mailbox_window() {
    let emu = start(EmulatorConfig {
        mailbox_rate_limit: Some(graph_emulator::RateLimit {
            requests: 3,
            window: Duration::from_secs(120),
        }),
        ..EmulatorConfig::default()
    })
    .await;
    let token = user_token(&emu, USER).await;
    let url = format!("{}/me/mailFolders", emu.graph_url());
    for _ in 0..3 {
        assert_eq!(get(&token, &url, None).await.0, 200);
    }
    let (status, headers, body) = get(&token, &url, None).await;
    assert_eq!(status, 429);
    assert_graph_error(&body, "ApplicationThrottled");
    let retry: u64 = headers
        .get("retry-after")
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.parse().ok())
        .expect("Retry-After seconds");
    assert!((110..=120).contains(&retry), "{retry}");
    // The identity endpoints and the profile are not mailbox requests.
    assert_eq!(
        get(&token, &format!("{}/me", emu.graph_url()), None)
            .await
            .0,
        200
    );
    assert_eq!(emu.stats().throttled_rate, 1);
    assert_eq!(emu.stats().throttled(), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn value_bandwidth_paces_downloads() {
    let emu = start(
        EmulatorConfig::default()
            .with_mailboxes(vec![MailboxSpec::new(USER).messages(10).large_every(5)]),
    )
    .await;
    let token = user_token(&emu, USER).await;
    let mb = emu.mailbox(USER);
    let big = mb
        .messages()
        .into_iter()
        .find(|m| {
            mb.mime(&m.id)
                .map(|b| b.len() > 1024 * 1024)
                .unwrap_or(false)
        })
        .expect("a large message");
    let url = format!("{}/me/messages/{}/$value", emu.graph_url(), big.id);
    // 8 MiB/s: a 1.1+ MiB body needs more than 100 ms in 64 KiB chunks.
    emu.faults().value_bandwidth(Some(8 * 1024 * 1024));
    let started = std::time::Instant::now();
    let (status, _, body) = get(&token, &url, None).await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(body.as_ref(), mb.mime(&big.id).expect("mime").as_slice());
    assert!(
        took >= Duration::from_millis(100),
        "paced download took only {took:?}"
    );
    // A client timeout shorter than the transfer fails the download.
    let slow = reqwest::Client::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .expect("client");
    emu.faults().value_bandwidth(Some(64 * 1024));
    let r = slow.get(&url).bearer_auth(&token).send().await;
    let failed = match r {
        Ok(resp) => resp.bytes().await.is_err(),
        Err(_) => true,
    };
    assert!(
        failed,
        "the download must not finish within 50 ms at 64 KiB/s"
    );
    emu.faults().value_bandwidth(None);
    assert_eq!(get(&token, &url, None).await.0, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn batch_sub_requests_share_the_concurrency_limit_and_depends_on_runs_in_order() {
    let emu = start(EmulatorConfig::default().with_latency(Duration::from_millis(100))).await;
    let token = user_token(&emu, USER).await;
    let ids: Vec<String> = emu
        .mailbox(USER)
        .messages()
        .into_iter()
        .take(8)
        .map(|m| m.id)
        .collect();
    let batch = json!({"requests": ids.iter().enumerate().map(|(i, id)| json!({"id": i.to_string(), "method": "GET", "url": format!("/me/messages/{id}/$value")})).collect::<Vec<_>>()});
    let v: Value = client()
        .post(format!("{}/$batch", emu.graph_url()))
        .bearer_auth(&token)
        .json(&batch)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let rs = v["responses"].as_array().expect("responses");
    assert_eq!(rs.len(), 8);
    let ok = rs.iter().filter(|r| r["status"] == 200).count();
    let throttled: Vec<&Value> = rs.iter().filter(|r| r["status"] == 429).collect();
    assert_eq!((ok, throttled.len()), (4, 4), "{v}");
    assert!(throttled.iter().all(|r| r["headers"]["Retry-After"] == "1"
        && r["body"]["error"]["code"] == "ApplicationThrottled"));

    // dependsOn: sequential; a failed dependency gives 424.
    let chain = json!({"requests": [
        {"id": "a", "method": "GET", "url": "/me/messages/missing"},
        {"id": "b", "method": "GET", "url": "/me/mailFolders", "dependsOn": ["a"]},
        {"id": "c", "method": "GET", "url": "/me", "dependsOn": []},
        {"id": "d", "method": "GET", "url": "/me/mailFolders?$top=1", "dependsOn": ["c"]},
    ]});
    let v: Value = client()
        .post(format!("{}/$batch", emu.graph_url()))
        .bearer_auth(&token)
        .json(&chain)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let st: Vec<(String, u64)> = v["responses"]
        .as_array()
        .expect("r")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or("").to_owned(),
                r["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        st,
        vec![
            ("a".into(), 404),
            ("b".into(), 424),
            ("c".into(), 200),
            ("d".into(), 200)
        ]
    );
    emu.shutdown().await;
}
