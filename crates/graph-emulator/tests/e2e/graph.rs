//! Graph mail endpoints: folders, listing, paging, filters, $value, errors.

use std::collections::{HashMap, HashSet};

use graph_emulator::{EmulatorConfig, MailboxSpec};
use serde_json::Value;

use crate::common::*;

fn config(messages: usize) -> EmulatorConfig {
    EmulatorConfig::default().with_mailboxes(vec![
        MailboxSpec::new(USER)
            .messages(messages)
            .seed(3)
            .large_every(10),
    ])
}

#[tokio::test]
async fn folders_messages_and_value_match_expected() {
    let emu = start(config(60)).await;
    let token = user_token(&emu, USER).await;
    let g = emu.graph_url();

    // Folder tree: root children page at 10 (default), hidden folder only on request.
    let (root, _) = get_all(&token, &format!("{g}/me/mailFolders"), None).await;
    let names: Vec<&str> = root
        .iter()
        .filter_map(|f| f["displayName"].as_str())
        .collect();
    assert!(
        names.contains(&"Inbox") && names.contains(&"Unread Mail"),
        "{names:?}"
    );
    assert!(!names.contains(&"Quarantined Notes"));
    let (with_hidden, _) = get_all(
        &token,
        &format!("{g}/me/mailFolders?includeHiddenFolders=true"),
        None,
    )
    .await;
    assert_eq!(with_hidden.len(), root.len() + 1);
    let search = root
        .iter()
        .find(|f| f["displayName"] == "Unread Mail")
        .expect("search folder");
    assert_eq!(search["@odata.type"], "#microsoft.graph.mailSearchFolder");

    // Walk the tree (skipping search folders) and collect every message.
    let mut stack: Vec<Value> = with_hidden
        .into_iter()
        .filter(|f| f["@odata.type"].is_null())
        .collect();
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut folders = 0;
    while let Some(f) = stack.pop() {
        folders += 1;
        let id = f["id"].as_str().expect("folder id").to_owned();
        if f["childFolderCount"].as_u64().unwrap_or(0) > 0 {
            let (kids, _) = get_all(
                &token,
                &format!("{g}/me/mailFolders/{id}/childFolders?includeHiddenFolders=true"),
                None,
            )
            .await;
            assert_eq!(
                kids.len() as u64,
                f["childFolderCount"].as_u64().unwrap_or(0)
            );
            stack.extend(kids);
        }
        let (msgs, _) = get_all(
            &token,
            &format!("{g}/me/mailFolders/{id}/messages?$select=id,parentFolderId,lastModifiedDateTime&$top=7"),
            None,
        )
        .await;
        assert_eq!(msgs.len() as u64, f["totalItemCount"].as_u64().unwrap_or(0));
        for m in msgs {
            assert_eq!(m["parentFolderId"], id.as_str());
            assert!(
                m["subject"].is_null(),
                "$select must drop unselected fields"
            );
            let mid = m["id"].as_str().expect("id").to_owned();
            assert!(seen.insert(mid, id.clone()).is_none(), "duplicate id");
        }
    }
    assert!(folders >= 10, "walked {folders} folders");

    let mb = emu.mailbox(USER);
    let expected = mb.expected_messages();
    assert_eq!(seen.len(), expected.len());
    let mut large = 0;
    for e in &expected {
        assert_eq!(seen.get(&e.info.id), Some(&e.info.folder_id));
        let (status, headers, body) = get(
            &token,
            &format!("{g}/me/messages/{}/$value", e.info.id),
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert!(headers.get("request-id").is_some());
        assert_eq!(body.as_ref(), e.mime.as_slice());
        if body.len() > 1024 * 1024 {
            large += 1;
        }
    }
    assert!(large >= 1, "some messages exceed 1 MiB");
    // A MIME sample has the promised shape.
    let text = String::from_utf8_lossy(&expected[0].mime).into_owned();
    assert!(text.contains("Message-ID: <") && text.contains("multipart/alternative"));
    assert!(
        expected
            .iter()
            .any(|e| String::from_utf8_lossy(&e.mime).contains("Subject: =?UTF-8?B?"))
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn listing_pages_filters_and_orders() {
    let emu = start(config(45)).await;
    let token = user_token(&emu, USER).await;
    let g = emu.graph_url();

    // Default page size 10, nextLink with $skip.
    let first = get_json(&token, &format!("{g}/me/messages")).await;
    assert_eq!(first["value"].as_array().map(Vec::len), Some(10));
    let next = first["@odata.nextLink"].as_str().expect("nextLink");
    assert!(
        next.contains("%24skip=10") || next.contains("$skip=10"),
        "{next}"
    );
    let (all, pages) = get_all(&token, &format!("{g}/me/messages"), None).await;
    assert_eq!((all.len(), pages), (45, 5));
    // Newest first by default.
    let dates: Vec<&str> = all
        .iter()
        .filter_map(|m| m["receivedDateTime"].as_str())
        .collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]));
    // Prefer odata.maxpagesize, echoed in Preference-Applied.
    let (status, headers, body) = get(
        &token,
        &format!("{g}/me/messages"),
        Some("odata.maxpagesize=20"),
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["value"].as_array().map(Vec::len), Some(20));
    assert_eq!(
        headers
            .get("preference-applied")
            .and_then(|h| h.to_str().ok()),
        Some("odata.maxpagesize=20")
    );
    // $top above 1000 is capped.
    let big = get_json(&token, &format!("{g}/me/messages?$top=5000")).await;
    assert_eq!(big["value"].as_array().map(Vec::len), Some(45));

    // $filter on dates with `and`, ascending order.
    let mid = dates[20];
    let url = format!(
        "{g}/me/messages?$filter=receivedDateTime ge {mid} and receivedDateTime lt 2099-01-01T00:00:00Z&$orderby=receivedDateTime asc&$top=100"
    );
    let v = get_json(&token, &url).await;
    let got: Vec<&str> = v["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|m| m["receivedDateTime"].as_str())
        .collect();
    assert_eq!(got.len(), dates.iter().filter(|d| **d >= mid).count());
    assert!(got.windows(2).all(|w| w[0] <= w[1]));
    assert!(got.iter().all(|d| *d >= mid));

    // Unsupported filter: 400 with a reason.
    let (status, _, body) = get(
        &token,
        &format!("{g}/me/messages?$filter=address eq 'x@y.z'"),
        None,
    )
    .await;
    assert_eq!(status, 400);
    let e = assert_graph_error(&body, "BadRequest");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("address")
    );
    // Orderby property not first in the filter: InefficientFilter.
    let (status, _, body) = get(
        &token,
        &format!("{g}/me/messages?$filter=isRead eq false and receivedDateTime ge 2020-01-01&$orderby=receivedDateTime desc"),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_graph_error(&body, "InefficientFilter");
    // Unknown $select property.
    let (status, _, body) = get(&token, &format!("{g}/me/messages?$select=nope"), None).await;
    assert_eq!(status, 400);
    assert_graph_error(&body, "RequestBroker--ParseUri");
    emu.shutdown().await;
}

#[tokio::test]
async fn errors_are_graph_shaped() {
    let emu = start(config(5)).await;
    let token = user_token(&emu, USER).await;
    let g = emu.graph_url();
    // Unknown message id -> 404 ErrorItemNotFound; deleted one too.
    let (status, _, body) = get(&token, &format!("{g}/me/messages/AAMkAGnope=/$value"), None).await;
    assert_eq!(status, 404);
    assert_graph_error(&body, "ErrorItemNotFound");
    let mb = emu.mailbox(USER);
    let victim = mb.messages()[0].id.clone();
    mb.delete_message(&victim).expect("delete");
    let (status, _, body) = get(&token, &format!("{g}/me/messages/{victim}"), None).await;
    assert_eq!(status, 404);
    assert_graph_error(&body, "ErrorItemNotFound");
    // Ids are case-sensitive.
    let other = mb.messages()[0].id.clone();
    let flipped: String = other
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let (status, _, _) = get(&token, &format!("{g}/me/messages/{flipped}"), None).await;
    assert_eq!(status, 404);
    // Missing and bogus tokens -> 401 with WWW-Authenticate.
    let resp = client()
        .get(format!("{g}/me/messages"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("www-authenticate").is_some());
    let body = resp.bytes().await.expect("body");
    assert_graph_error(&body, "InvalidAuthenticationToken");
    let (status, headers, _) = get("bogus", &format!("{g}/me/messages"), None).await;
    assert_eq!(status, 401);
    assert!(headers.get("www-authenticate").is_some());
    // Unknown user, mailbox-wide delta, unknown segment.
    let (status, _, body) = get(
        &token,
        &format!("{g}/users/nobody@emulator.test/messages"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_graph_error(&body, "ErrorInvalidUser");
    let (status, _, body) = get(&token, &format!("{g}/me/messages/delta"), None).await;
    assert_eq!(status, 400);
    assert_graph_error(&body, "ErrorInvalidRequest");
    let (status, _, body) = get(&token, &format!("{g}/me/contacts"), None).await;
    assert_eq!(status, 400);
    assert_graph_error(&body, "BadRequest");
    // client-request-id is echoed.
    let resp = client()
        .get(format!("{g}/me/messages/nope"))
        .bearer_auth(&token)
        .header("client-request-id", "abc-123")
        .send()
        .await
        .expect("send");
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["innerError"]["client-request-id"], "abc-123");
    let stats = emu.stats();
    assert!(stats.unauthorized >= 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn app_only_token_reads_users_but_not_me() {
    let emu = start(config(3)).await;
    let token = app_token(&emu).await;
    let g = emu.graph_url();
    let (status, _, body) = get(&token, &format!("{g}/me/messages"), None).await;
    assert_eq!(status, 400);
    assert_graph_error(&body, "BadRequest");
    let mb = emu.mailbox(USER);
    // By UPN (any case) and by object id.
    let (all, _) = get_all(
        &token,
        &format!("{g}/users/{}/messages", USER.to_uppercase()),
        None,
    )
    .await;
    assert_eq!(all.len(), 3);
    let v = get_json(&token, &format!("{g}/users/{}", mb.object_id())).await;
    assert_eq!(v["userPrincipalName"], USER);
    let ids: HashSet<String> = all
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect();
    assert!(mb.messages().iter().all(|m| ids.contains(&m.id)));
    emu.shutdown().await;
}

#[tokio::test]
async fn recoverable_items_are_reachable_by_name_only_and_unknown_options_fail() {
    let mut folders = graph_emulator::FolderSpec::default_tree();
    folders.push(graph_emulator::FolderSpec::well_known(
        "Deletions",
        "recoverableitemsdeletions",
        10,
    ));
    let emu = start(
        EmulatorConfig::default()
            .with_mailboxes(vec![MailboxSpec::new(USER).messages(40).folders(folders)]),
    )
    .await;
    let token = user_token(&emu, USER).await;
    let g = emu.graph_url();
    let mb = emu.mailbox(USER);
    let del = mb.folder("recoverableitemsdeletions").expect("folder");
    assert!(
        del.total_item_count > 0,
        "weight 10 of ~120 should give messages"
    );
    let (root, _) = get_all(
        &token,
        &format!("{g}/me/mailFolders?includeHiddenFolders=true"),
        None,
    )
    .await;
    assert!(root.iter().all(|f| f["id"] != del.id.as_str()));
    let v = get_json(
        &token,
        &format!("{g}/me/mailFolders/recoverableitemsdeletions"),
    )
    .await;
    assert_eq!(v["id"], del.id.as_str());
    let (in_folder, _) = get_all(
        &token,
        &format!("{g}/me/mailFolders/recoverableitemsdeletions/messages"),
        None,
    )
    .await;
    assert_eq!(in_folder.len(), del.total_item_count);
    let (all, _) = get_all(&token, &format!("{g}/me/messages?$top=1000"), None).await;
    assert_eq!(all.len() + del.total_item_count, mb.message_count());

    for bad in [
        "messages?$expand=attachments",
        "messages?$search=\"x\"",
        "mailFolders/inbox?$top=1",
    ] {
        let (status, _, body) = get(&token, &format!("{g}/me/{bad}"), None).await;
        assert_eq!(status, 400, "{bad}");
        let e = assert_graph_error(&body, "BadRequest");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("not supported"),
            "{e}"
        );
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn invalid_configurations_are_refused() {
    use graph_emulator::EmulatorError;
    let dup = EmulatorConfig::default().with_mailboxes(vec![
        MailboxSpec::new(USER),
        MailboxSpec::new(&USER.to_uppercase()),
    ]);
    let err = graph_emulator::Emulator::start(dup)
        .await
        .expect_err("duplicate mailbox");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("twice"), "{err}");
    let bad_user = EmulatorConfig {
        default_user: Some("ghost@emulator.test".into()),
        ..EmulatorConfig::default()
    };
    let err = graph_emulator::Emulator::start(bad_user)
        .await
        .expect_err("unknown default user");
    assert!(err.to_string().contains("ghost@emulator.test"), "{err}");
    let err = graph_emulator::Emulator::start(EmulatorConfig::default().with_mailboxes(Vec::new()))
        .await
        .expect_err("no mailbox");
    assert!(err.to_string().contains("at least one mailbox"), "{err}");
    let err =
        graph_emulator::Emulator::start(EmulatorConfig::default().with_concurrency_limit(Some(0)))
            .await
            .expect_err("zero limit");
    assert!(err.to_string().contains("at least 1"), "{err}");

    let emu = start(EmulatorConfig::default()).await;
    assert!(matches!(
        emu.try_mailbox("ghost@emulator.test"),
        Err(EmulatorError::UnknownMailbox(..))
    ));
    assert_eq!(
        emu.mailbox(emu.mailbox(USER).object_id())
            .user_principal_name(),
        USER
    );
    let _ = user_token(&emu, USER).await;
    assert!(emu.stats().count(graph_emulator::EndpointKind::Token) == 1);
    emu.reset_stats();
    assert_eq!(emu.stats().total(), 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn deleted_and_renamed_folders() {
    let emu = start(config(40)).await;
    let token = user_token(&emu, USER).await;
    let g = emu.graph_url();
    let mb = emu.mailbox(USER);
    let news = mb.folder("Inbox/Newsletters").expect("folder");
    let delta = get_json(
        &token,
        &format!("{g}/me/mailFolders/{}/messages/delta?$top=100", news.id),
    )
    .await;
    let link = delta["@odata.deltaLink"]
        .as_str()
        .expect("deltaLink")
        .to_owned();
    mb.rename_folder(&news.id, "Rundbriefe").expect("rename");
    let v = get_json(&token, &format!("{g}/me/mailFolders/{}", news.id)).await;
    assert_eq!(v["displayName"], "Rundbriefe");
    mb.delete_folder(&news.id).expect("delete");
    for url in [
        format!("{g}/me/mailFolders/{}", news.id),
        format!("{g}/me/mailFolders/{}/messages", news.id),
        link,
    ] {
        let (status, _, body) = get(&token, &url, None).await;
        assert_eq!(status, 404, "{url}");
        assert_graph_error(&body, "ErrorItemNotFound");
    }
    let inbox = mb.folder("inbox").expect("inbox");
    let (kids, _) = get_all(
        &token,
        &format!("{g}/me/mailFolders/{}/childFolders", inbox.id),
        None,
    )
    .await;
    assert!(kids.iter().all(|f| f["id"] != news.id.as_str()));
    let v = get_json(&token, &format!("{g}/me/mailFolders/inbox")).await;
    assert_eq!(v["childFolderCount"].as_u64(), Some(kids.len() as u64));
    emu.shutdown().await;
}

#[tokio::test]
async fn tests_can_await_request_counts_and_an_idle_mailbox() {
    use graph_emulator::EndpointKind;
    use std::time::Duration;
    let emu = start(config(3).with_latency(Duration::from_millis(100))).await;
    let token = user_token(&emu, USER).await;
    let url = format!("{}/me/messages?$top=1", emu.graph_url());
    // Nothing counted yet: the wait is still pending after the requests of another kind.
    let waiter = emu.wait_for_requests(EndpointKind::Messages, 2);
    tokio::pin!(waiter);
    let (status, _, _) = get(&token, &format!("{}/me", emu.graph_url()), None).await;
    assert_eq!(status, 200);
    assert!(
        tokio::time::timeout(Duration::from_millis(1), waiter.as_mut())
            .await
            .is_err()
    );
    // Two listings in flight (each held 100 ms by the latency): the count wakes the waiter at
    // once, the mailbox becomes idle only when both are answered.
    let (t, u) = (token.clone(), url.clone());
    let a = tokio::spawn(async move { get(&t, &u, None).await.0 });
    let (t, u) = (token.clone(), url.clone());
    let b = tokio::spawn(async move { get(&t, &u, None).await.0 });
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("two listings are counted");
    let mb = emu.mailbox(USER);
    tokio::time::timeout(Duration::from_secs(10), mb.wait_in_flight(2))
        .await
        .expect("both listings are in flight together");
    tokio::time::timeout(Duration::from_secs(10), mb.wait_idle())
        .await
        .expect("the mailbox becomes idle");
    assert_eq!(mb.in_flight(), 0);
    assert_eq!((a.await.unwrap(), b.await.unwrap()), (200, 200));
    // Already reached / already idle: no wait.
    tokio::time::timeout(
        Duration::from_millis(100),
        emu.wait_for_requests(EndpointKind::Messages, 1),
    )
    .await
    .expect("immediate");
    tokio::time::timeout(Duration::from_millis(100), mb.wait_idle())
        .await
        .expect("immediate");
}

#[tokio::test]
async fn folder_and_message_pages_carry_count_context_and_next_link() {
    let emu = start(config(60)).await;
    let token = user_token(&emu, USER).await;
    let g = emu.graph_url();

    let (folders, _) = get_all(&token, &format!("{g}/me/mailFolders"), None).await;
    let v = get_json(&token, &format!("{g}/me/mailFolders?$top=2&$count=true")).await;
    assert_eq!(v["value"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["@odata.count"], folders.len(), "{v}");
    assert!(
        v["@odata.context"]
            .as_str()
            .is_some_and(|c| c.ends_with("')/mailFolders")),
        "{v}"
    );
    let next = v["@odata.nextLink"].as_str().expect("next link");
    assert!(
        next.contains("%24skip=2") || next.contains("$skip=2"),
        "{next}"
    );
    let v = get_json(&token, &format!("{g}/me/mailFolders")).await;
    assert!(v.get("@odata.count").is_none(), "{v}");

    let inbox = emu
        .mailbox(USER)
        .folder_messages("inbox")
        .expect("inbox")
        .len();
    assert!(inbox > 3, "{inbox}");
    let v = get_json(
        &token,
        &format!("{g}/me/mailFolders/inbox/messages?$top=3&$count=true&$select=subject"),
    )
    .await;
    assert_eq!(v["@odata.count"], inbox, "{v}");
    assert!(
        v["@odata.context"]
            .as_str()
            .is_some_and(|c| c.ends_with("/mailFolders('inbox')/messages(subject)")),
        "{v}"
    );
    assert!(v["@odata.nextLink"].is_string(), "{v}");
    let v = get_json(
        &token,
        &format!("{g}/me/mailFolders/inbox/messages?$top={inbox}&$skip=0"),
    )
    .await;
    assert!(v.get("@odata.nextLink").is_none(), "{v}");
}
