//! Delta queries: paging, rounds after mutations, immutable ids, filters, expiry.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use graph_emulator::{EmulatorConfig, MailboxSpec, NewMessage};
use serde_json::Value;

use crate::common::*;

/// Result of one delta round.
#[derive(Debug, Default)]
struct Round {
    present: Vec<Value>,
    removed: Vec<String>,
    pages: usize,
    delta_link: String,
}

impl Round {
    fn present_ids(&self) -> BTreeSet<String> {
        self.present
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .collect()
    }
}

async fn round(token: &str, url: &str, prefer: &str) -> Round {
    let mut r = Round::default();
    let mut next = url.to_owned();
    loop {
        r.pages += 1;
        assert!(r.pages < 1000, "delta paging does not end");
        let (status, _, body) = get(token, &next, Some(prefer)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body).expect("json");
        for item in v["value"].as_array().cloned().unwrap_or_default() {
            if item.get("@removed").is_some() {
                assert_eq!(item["@removed"]["reason"], "deleted");
                r.removed.push(item["id"].as_str().expect("id").to_owned());
            } else {
                r.present.push(item);
            }
        }
        if let Some(n) = v["@odata.nextLink"].as_str() {
            assert!(n.contains("$skiptoken="), "{n}");
            assert!(v.get("@odata.deltaLink").is_none());
            next = n.to_owned();
        } else {
            r.delta_link = v["@odata.deltaLink"]
                .as_str()
                .expect("last page has a deltaLink")
                .to_owned();
            assert!(r.delta_link.contains("$deltatoken="));
            return r;
        }
    }
}

fn config(n: usize) -> EmulatorConfig {
    EmulatorConfig::default().with_mailboxes(vec![
        MailboxSpec::new(USER).messages(n).seed(11).large_every(0),
    ])
}

#[tokio::test]
async fn rounds_report_creates_updates_deletes_and_moves() {
    let emu = start(config(80)).await;
    let token = user_token(&emu, USER).await;
    let mb = emu.mailbox(USER);
    let inbox = mb.folder("inbox").expect("inbox");
    assert_eq!(inbox.well_known_name.as_deref(), Some("inbox"));
    let archive = mb.folder("archive").expect("archive");
    let url = |f: &str| {
        format!(
            "{}/me/mailFolders/{f}/messages/delta?$select=id,lastModifiedDateTime,parentFolderId",
            emu.graph_url()
        )
    };
    let prefer = "odata.maxpagesize=4";

    // Initial rounds: every message of the folder, paged.
    let r1 = round(&token, &url("inbox"), prefer).await;
    let expected: BTreeSet<String> = mb
        .folder_messages("inbox")
        .expect("msgs")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert!(
        expected.len() > 8,
        "inbox too small for paging: {}",
        expected.len()
    );
    assert_eq!(r1.present_ids(), expected);
    assert_eq!(r1.pages, expected.len().div_ceil(4));
    assert!(r1.removed.is_empty());
    assert!(
        r1.present
            .iter()
            .all(|m| m["subject"].is_null() && m["lastModifiedDateTime"].is_string())
    );
    let a1 = round(&token, &url(&archive.id), prefer).await;

    // Mutations.
    let inbox_msgs = mb.folder_messages("inbox").expect("msgs");
    let archive_msgs = mb.folder_messages("archive").expect("msgs");
    let created = mb
        .create_message("inbox", NewMessage::default())
        .expect("create");
    let updated = mb.update_message(&inbox_msgs[0].id).expect("update");
    mb.delete_message(&inbox_msgs[1].id).expect("delete");
    let moved_out = mb
        .move_message(&inbox_msgs[2].id, "archive")
        .expect("move out");
    let moved_in = mb
        .move_message(&archive_msgs[0].id, "inbox")
        .expect("move in");

    // Round 2 in the inbox: exactly the changes.
    let r2 = round(&token, &r1.delta_link, prefer).await;
    let want_present: BTreeSet<String> =
        [created.id.clone(), updated.id.clone(), moved_in.id.clone()].into();
    assert_eq!(r2.present_ids(), want_present);
    let want_removed: BTreeSet<String> =
        [inbox_msgs[1].id.clone(), inbox_msgs[2].id.clone()].into();
    assert_eq!(
        r2.removed.iter().cloned().collect::<BTreeSet<_>>(),
        want_removed
    );
    let up = r2
        .present
        .iter()
        .find(|m| m["id"] == updated.id.as_str())
        .expect("updated present");
    assert_ne!(
        up["lastModifiedDateTime"],
        r1.present
            .iter()
            .find(|m| m["id"] == updated.id.as_str())
            .expect("was present")["lastModifiedDateTime"]
    );

    // Round 2 in the archive: the moved-out message appears under its new id, the moved-in one is removed.
    let a2 = round(&token, &a1.delta_link, prefer).await;
    assert_eq!(a2.present_ids(), [moved_out.id.clone()].into());
    assert_eq!(a2.removed, vec![archive_msgs[0].id.clone()]);
    assert_eq!(a2.present[0]["parentFolderId"], archive.id.as_str());

    // Round 3 without changes: empty, new deltaLink.
    let r3 = round(&token, &r2.delta_link, prefer).await;
    assert!(r3.present.is_empty() && r3.removed.is_empty());
    assert_eq!(r3.pages, 1);

    // The client state built from the rounds equals the folder.
    let mut state: HashSet<String> = r1.present_ids().into_iter().collect();
    for id in &r2.removed {
        state.remove(id);
    }
    state.extend(r2.present_ids());
    let now: HashSet<String> = mb
        .folder_messages("inbox")
        .expect("msgs")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(state, now);
    emu.shutdown().await;
}

#[tokio::test]
async fn immutable_ids_survive_moves_and_changes_mid_round_are_not_lost() {
    let emu = start(config(40)).await;
    let token = user_token(&emu, USER).await;
    let mb = emu.mailbox(USER);
    let url = format!("{}/me/mailFolders/inbox/messages/delta", emu.graph_url());
    let prefer = "odata.maxpagesize=3, IdType=\"ImmutableId\"";

    // Start a round and read only the first page.
    let (status, headers, body) = get(&token, &url, Some(prefer)).await;
    assert_eq!(status, 200);
    let applied = headers
        .get("preference-applied")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    assert!(
        applied.contains("ImmutableId") && applied.contains("odata.maxpagesize=3"),
        "{applied}"
    );
    let v: Value = serde_json::from_slice(&body).expect("json");
    let first_ids: Vec<String> = v["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect();
    let inbox = mb.folder_messages("inbox").expect("msgs");
    assert!(
        first_ids
            .iter()
            .all(|id| inbox.iter().any(|m| &m.immutable_id == id))
    );
    // Retrying the same page link gives the same page.
    let next = v["@odata.nextLink"].as_str().expect("next").to_owned();
    let (_, _, b1) = get(&token, &next, Some(prefer)).await;
    let (_, _, b2) = get(&token, &next, Some(prefer)).await;
    let ids = |b: &[u8]| -> Vec<Value> {
        serde_json::from_slice::<Value>(b).expect("json")["value"]
            .as_array()
            .expect("v")
            .iter()
            .map(|m| m["id"].clone())
            .collect()
    };
    assert_eq!(ids(&b1), ids(&b2));

    // Mid-round: delete a message not yet delivered, create one.
    let pending = inbox
        .iter()
        .find(|m| !first_ids.contains(&m.immutable_id))
        .expect("undelivered")
        .clone();
    mb.delete_message(&pending.id).expect("delete");
    let created = mb
        .create_message(
            "inbox",
            NewMessage {
                subject: Some("mid-round".into()),
                ..NewMessage::default()
            },
        )
        .expect("create");
    let rest = round(&token, &next, prefer).await;
    assert!(
        rest.removed.contains(&pending.immutable_id),
        "deleted message reported as removed on its page"
    );
    assert!(
        !rest.present_ids().contains(&created.immutable_id),
        "created after the snapshot: next round"
    );
    let r2 = round(&token, &rest.delta_link, prefer).await;
    assert!(r2.present_ids().contains(&created.immutable_id));

    // Move away and back with immutable ids: same id, present, not removed.
    let some = mb.folder_messages("inbox").expect("msgs")[0].clone();
    mb.move_message(&some.immutable_id, "archive")
        .expect("move");
    mb.move_message(&some.immutable_id, "inbox")
        .expect("move back");
    let r3 = round(&token, &r2.delta_link, prefer).await;
    assert!(r3.present_ids().contains(&some.immutable_id));
    assert!(!r3.removed.contains(&some.immutable_id));
    // The old REST id is gone, the immutable id still resolves.
    let (status, _, _) = get(
        &token,
        &format!("{}/me/messages/{}", emu.graph_url(), some.id),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = get(
        &token,
        &format!("{}/me/messages/{}", emu.graph_url(), some.immutable_id),
        None,
    )
    .await;
    assert_eq!(status, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn delta_filter_restrictions_and_expiry() {
    let emu = start(config(30)).await;
    let token = user_token(&emu, USER).await;
    let mb = emu.mailbox(USER);
    let g = emu.graph_url();
    let inbox = mb.folder_messages("inbox").expect("msgs");
    let mut dates: Vec<_> = inbox.iter().map(|m| m.received).collect();
    dates.sort();
    let cut = dates[dates.len() / 2];
    let cut_s = cut.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let r = round(
        &token,
        &format!("{g}/me/mailFolders/inbox/messages/delta?$filter=receivedDateTime ge {cut_s}"),
        "odata.maxpagesize=100",
    )
    .await;
    assert_eq!(r.present.len(), dates.iter().filter(|d| **d >= cut).count());

    // Only receivedDateTime ge/gt.
    for bad in [
        "receivedDateTime lt 2024-01-01T00:00:00Z",
        "isRead eq false",
    ] {
        let (status, _, body) = get(
            &token,
            &format!("{g}/me/mailFolders/inbox/messages/delta?$filter={bad}"),
            None,
        )
        .await;
        assert_eq!(status, 400, "{bad}");
        assert_graph_error(&body, "BadRequest");
    }
    // Search folders cannot be tracked.
    let search = mb
        .folders()
        .into_iter()
        .find(|f| f.is_search_folder)
        .expect("search folder");
    let (status, _, _) = get(
        &token,
        &format!("{g}/me/mailFolders/{}/messages/delta", search.id),
        None,
    )
    .await;
    assert_eq!(status, 400);
    // A token of another folder is refused.
    let (status, _, _) = get(&token, &r.delta_link.replace("/inbox/", "/archive/"), None).await;
    assert_eq!(status, 400);

    // Invalidated tokens: 410 syncStateNotFound with Location, then a fresh round works.
    emu.faults().expire_delta_tokens();
    let (status, headers, body) = get(&token, &r.delta_link, None).await;
    assert_eq!(status, 410);
    assert_graph_error(&body, "syncStateNotFound");
    let location = headers
        .get("location")
        .and_then(|l| l.to_str().ok())
        .expect("Location")
        .to_owned();
    let fresh = round(&token, &location, "odata.maxpagesize=100").await;
    assert_eq!(
        fresh.present.len(),
        mb.folder_messages("inbox").expect("msgs").len()
    );
    assert_eq!(emu.stats().delta_gone, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn delta_tokens_expire_after_their_lifetime() {
    let emu = start(config(5).with_delta_token_lifetime(Some(Duration::ZERO))).await;
    let token = user_token(&emu, USER).await;
    let url = format!("{}/me/mailFolders/inbox/messages/delta", emu.graph_url());
    let (status, _, body) = get(&token, &url, Some("odata.maxpagesize=100")).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).expect("json");
    let link = v["@odata.deltaLink"].as_str().expect("deltaLink");
    let (status, _, body) = get(&token, link, None).await;
    assert_eq!(status, 410);
    assert_graph_error(&body, "syncStateNotFound");
    emu.shutdown().await;
}
