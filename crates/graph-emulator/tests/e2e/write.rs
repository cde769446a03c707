//! Writes over HTTP (what `mailbackup restore` needs): folder and child folder creation,
//! messages from MIME and from JSON (PidTagMessageFlags, dates), PATCH, attachments, upload
//! sessions, the Mail.ReadWrite permission, and created items in listings and delta queries.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use graph_emulator::{
    AppRegistration, DEFAULT_CLIENT_SECRET, EmulatorConfig, EndpointKind, MailboxSpec,
};
use serde_json::{Value, json};

use crate::common::*;

const RW: &str = "https://graph.microsoft.com/Mail.ReadWrite offline_access";
const RW_APP: &str = "0d3c1b2a-0000-4000-8000-00000000abcd";

/// A confidential client with the application permission a restore needs.
fn rw_app() -> AppRegistration {
    let mut app = AppRegistration::confidential_client(RW_APP, DEFAULT_CLIENT_SECRET);
    app.application_permissions = vec!["Mail.ReadWrite".into()];
    app
}

/// An app-only token of [`rw_app`].
async fn rw_app_token(emu: &graph_emulator::Emulator) -> String {
    let v: Value = client()
        .post(emu.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", RW_APP),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    v["access_token"].as_str().expect("access_token").to_owned()
}

async fn token(emu: &graph_emulator::Emulator, user: &str, scope: &str) -> String {
    ropc(emu, user, scope).await["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// A request with a body; returns status, headers and the body bytes.
async fn send(
    method: reqwest::Method,
    token: Option<&str>,
    url: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, reqwest::header::HeaderMap, bytes::Bytes) {
    let mut rb = client()
        .request(method, url)
        .header("Content-Type", content_type)
        .body(body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let resp = rb.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.expect("body"))
}

async fn post_json(token: &str, url: &str, body: &Value) -> (u16, Value) {
    let (status, _, b) = send(
        reqwest::Method::POST,
        Some(token),
        url,
        "application/json",
        body.to_string(),
    )
    .await;
    (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

async fn patch_json(token: &str, url: &str, body: &Value) -> (u16, Value) {
    let (status, _, b) = send(
        reqwest::Method::PATCH,
        Some(token),
        url,
        "application/json",
        body.to_string(),
    )
    .await;
    (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

async fn post_mime(token: &str, url: &str, base64_body: String) -> (u16, Value) {
    let (status, _, b) = send(
        reqwest::Method::POST,
        Some(token),
        url,
        "text/plain",
        base64_body,
    )
    .await;
    (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// A message body with one single-value extended property.
fn extended(id: &str, value: &str) -> Value {
    json!({"singleValueExtendedProperties": [{"id": id, "value": value}]})
}

/// The body of `createUploadSession`.
fn upload_item(name: &str, size: usize) -> Value {
    json!({"AttachmentItem": {"attachmentType": "file", "name": name, "size": size}})
}

/// A `fileAttachment` for `POST .../attachments`.
fn file_attachment(name: &str, bytes: &[u8]) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": name,
        "contentBytes": STANDARD.encode(bytes),
    })
}

fn assert_error(v: &Value, code: &str) {
    assert_graph_error(v.to_string().as_bytes(), code);
}

/// Asserts a Graph error answer with this status and code.
#[track_caller]
fn refused((status, body): (u16, Value), want: u16, code: &str) -> Value {
    assert_eq!(status, want, "{body}");
    assert_error(&body, code);
    body
}

/// A message as a restore would send it from JSON: not a draft, original dates, read.
fn restored_json(subject: &str) -> Value {
    json!({
        "subject": subject,
        "body": {"contentType": "HTML", "content": "<p>They were <b>awesome</b>!</p>"},
        "from": {"emailAddress": {"name": "Jörg Müller", "address": "joerg@example.com"}},
        "toRecipients": [{"emailAddress": {"address": "adele.vance@emulator.test"}}],
        "ccRecipients": [{"emailAddress": {"name": "Zoë", "address": "zoe@example.org"}}],
        "categories": ["Blue category"],
        "importance": "High",
        "internetMessageId": "<orig-1@example.com>",
        "singleValueExtendedProperties": [
            {"id": "Integer 0x0E07", "value": "1"},
            {"id": "SystemTime 0x0E06", "value": "2023-05-06T07:08:09Z"},
            {"id": "SystemTime 0x0039", "value": "2023-05-06T07:00:00Z"},
        ],
    })
}

const MIME: &str = "From: =?UTF-8?B?SsO2cmcgTcO8bGxlcg==?= <joerg@example.com>\r\nTo: Adele Vance <adele.vance@emulator.test>\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_M=C3=BCnchen?=\r\nDate: Sat, 06 May 2023 09:00:00 +0200\r\nMessage-ID: <mime-1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"xx\"\r\n\r\n--xx\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHallo Adele\r\n--xx\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"scan.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjcK\r\n--xx--\r\n";

fn config() -> EmulatorConfig {
    EmulatorConfig::default().with_mailboxes(vec![MailboxSpec::new(USER).messages(20).seed(4)])
}

async fn folder_id(token: &str, g: &str, name: &str) -> String {
    get_json(token, &format!("{g}/me/mailFolders/{name}")).await["id"]
        .as_str()
        .expect("folder id")
        .to_owned()
}

#[tokio::test]
async fn folders_and_child_folders_are_created_and_duplicates_refused() {
    let emu = start(config()).await;
    let t = token(&emu, USER, RW).await;
    let g = emu.graph_url();
    let root = folder_id(&t, &g, "msgfolderroot").await;

    let (status, top) = post_json(
        &t,
        &format!("{g}/me/mailFolders"),
        &json!({"displayName": "Restored 2026-12-06"}),
    )
    .await;
    assert_eq!(status, 201, "{top}");
    assert_eq!(top["displayName"], "Restored 2026-12-06");
    assert_eq!(top["parentFolderId"], root.as_str());
    assert_eq!(top["isHidden"], false);
    assert_eq!(top["totalItemCount"], 0);
    assert!(
        top["@odata.context"]
            .as_str()
            .is_some_and(|c| c.ends_with("/mailFolders/$entity"))
    );
    let top_id = top["id"].as_str().expect("id").to_owned();

    let (status, child) = post_json(
        &t,
        &format!("{g}/me/mailFolders/{top_id}/childFolders"),
        &json!({"displayName": "Inbox"}),
    )
    .await;
    assert_eq!(status, 201, "{child}");
    assert_eq!(child["parentFolderId"], top_id.as_str());
    // A grandchild through the childFolders path form.
    let child_id = child["id"].as_str().expect("id");
    let (status, grandchild) = post_json(
        &t,
        &format!("{g}/users/{USER}/mailFolders/{top_id}/childFolders/{child_id}/childFolders"),
        &json!({"displayName": "2024 / Q1 — Überblick", "isHidden": true}),
    )
    .await;
    assert_eq!(status, 201, "{grandchild}");
    assert_eq!(grandchild["isHidden"], true);

    // Same name under the same parent (any case): 409 ErrorFolderExists; under another
    // parent it is fine.
    refused(
        post_json(
            &t,
            &format!("{g}/me/mailFolders"),
            &json!({"displayName": "restored 2026-12-06"}),
        )
        .await,
        409,
        "ErrorFolderExists",
    );
    refused(
        post_json(
            &t,
            &format!("{g}/me/mailFolders/inbox/childFolders"),
            &json!({"displayName": "Projects"}),
        )
        .await,
        409,
        "ErrorFolderExists",
    );
    // A hidden folder occupies its name too.
    let (status, _) = post_json(
        &t,
        &format!("{g}/me/mailFolders"),
        &json!({"displayName": "Quarantined Notes"}),
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = post_json(
        &t,
        &format!("{g}/me/mailFolders/inbox/childFolders"),
        &json!({"displayName": "Restored 2026-12-06"}),
    )
    .await;
    assert_eq!(status, 201);

    // Unknown parent, missing name, unknown property.
    refused(
        post_json(
            &t,
            &format!("{g}/me/mailFolders/AAMkNoSuchFolder=/childFolders"),
            &json!({"displayName": "x"}),
        )
        .await,
        404,
        "ErrorItemNotFound",
    );
    refused(
        post_json(&t, &format!("{g}/me/mailFolders"), &json!({})).await,
        400,
        "BadRequest",
    );
    refused(
        post_json(
            &t,
            &format!("{g}/me/mailFolders"),
            &json!({"displayName": "x", "colour": "red"}),
        )
        .await,
        400,
        "RequestBodyRead",
    );

    // Listings show the new folders; the hidden one only on request.
    let (roots, _) = get_all(&t, &format!("{g}/me/mailFolders"), None).await;
    let listed = roots
        .iter()
        .find(|f| f["id"] == top_id.as_str())
        .expect("new top folder listed");
    assert_eq!(listed["childFolderCount"], 1);
    let (kids, _) = get_all(
        &t,
        &format!("{g}/me/mailFolders/{child_id}/childFolders"),
        None,
    )
    .await;
    assert!(kids.is_empty(), "hidden grandchild listed: {kids:?}");
    let (kids, _) = get_all(
        &t,
        &format!("{g}/me/mailFolders/{child_id}/childFolders?includeHiddenFolders=true"),
        None,
    )
    .await;
    assert_eq!(kids.len(), 1);
    assert_eq!(kids[0]["displayName"], "2024 / Q1 — Überblick");
    let paths: Vec<String> = emu
        .mailbox(USER)
        .folders()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert!(paths.contains(&"Restored 2026-12-06/Inbox/2024 / Q1 — Überblick".to_owned()));
    assert_eq!(emu.stats().count(EndpointKind::FolderCreate), 10);
    emu.shutdown().await;
}

#[tokio::test]
async fn mime_messages_are_drafts_that_keep_their_bytes() {
    let emu = start(config()).await;
    let t = token(&emu, USER, RW).await;
    let g = emu.graph_url();
    let inbox = folder_id(&t, &g, "inbox").await;
    let drafts = folder_id(&t, &g, "drafts").await;

    let (status, m) = post_mime(
        &t,
        &format!("{g}/me/mailFolders/inbox/messages"),
        STANDARD.encode(MIME),
    )
    .await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(
        m["isDraft"], true,
        "Graph: a message created from MIME is a draft"
    );
    assert_eq!(m["isRead"], true);
    assert_eq!(m["subject"], "Grüße aus München");
    assert_eq!(m["from"]["emailAddress"]["name"], "Jörg Müller");
    assert_eq!(m["from"]["emailAddress"]["address"], "joerg@example.com");
    assert_eq!(m["toRecipients"][0]["emailAddress"]["name"], "Adele Vance");
    assert_eq!(m["internetMessageId"], "<mime-1@example.com>");
    assert_eq!(m["sentDateTime"], "2023-05-06T07:00:00Z");
    assert_eq!(m["parentFolderId"], inbox.as_str());
    assert_eq!(m["hasAttachments"], true);
    assert_eq!(m["bodyPreview"], "Hallo Adele");
    assert!(
        m["@odata.context"]
            .as_str()
            .is_some_and(|c| c.ends_with("/messages/$entity"))
    );
    let id = m["id"].as_str().expect("id");
    let (status, _, value) = get(&t, &format!("{g}/me/messages/{id}/$value"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        &value[..],
        MIME.as_bytes(),
        "$value returns the posted MIME"
    );

    // Without a folder: Drafts. Base64 with line breaks (76 columns) is fine.
    let wrapped: String = STANDARD
        .encode(MIME)
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\r\n", String::from_utf8_lossy(c)))
        .collect();
    let (status, m) = post_mime(&t, &format!("{g}/users/{USER}/messages"), wrapped).await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["parentFolderId"], drafts.as_str());

    // Bad base64, base64 of something that is not a message, unknown folder.
    let err = refused(
        post_mime(&t, &format!("{g}/me/messages"), "not base64!".into()).await,
        400,
        "ErrorMimeContentInvalidBase64String",
    );
    assert_eq!(
        err["error"]["message"],
        "Invalid base64 string for MIME content."
    );
    refused(
        post_mime(
            &t,
            &format!("{g}/me/messages"),
            STANDARD.encode("no headers here, just words"),
        )
        .await,
        400,
        "ErrorMimeContentInvalid",
    );
    refused(
        post_mime(&t, &format!("{g}/me/messages"), String::new()).await,
        400,
        "ErrorMimeContentInvalid",
    );
    refused(
        post_mime(
            &t,
            &format!("{g}/me/mailFolders/AAMkNoSuchFolder=/messages"),
            STANDARD.encode(MIME),
        )
        .await,
        404,
        "ErrorItemNotFound",
    );
    let search = emu
        .mailbox(USER)
        .folder("Unread Mail")
        .expect("search folder")
        .id;
    refused(
        post_mime(
            &t,
            &format!("{g}/me/mailFolders/{search}/messages"),
            STANDARD.encode(MIME),
        )
        .await,
        400,
        "ErrorInvalidRequest",
    );
    assert_eq!(emu.stats().count(EndpointKind::MessageCreate), 7);
    emu.shutdown().await;
}

#[tokio::test]
async fn json_messages_with_message_flags_are_not_drafts_and_keep_their_dates() {
    let emu = start(config()).await;
    let t = token(&emu, USER, RW).await;
    let g = emu.graph_url();
    let archive = folder_id(&t, &g, "archive").await;

    let (status, m) = post_json(
        &t,
        &format!("{g}/me/mailFolders/archive/messages"),
        &restored_json("Quarterly report"),
    )
    .await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(
        m["isDraft"], false,
        "PidTagMessageFlags without MSGFLAG_UNSENT"
    );
    assert_eq!(m["isRead"], true, "MSGFLAG_READ");
    assert_eq!(m["receivedDateTime"], "2023-05-06T07:08:09Z");
    assert_eq!(m["sentDateTime"], "2023-05-06T07:00:00Z");
    assert_eq!(m["parentFolderId"], archive.as_str());
    assert_eq!(m["subject"], "Quarterly report");
    assert_eq!(m["importance"], "high");
    assert_eq!(m["categories"], json!(["Blue category"]));
    assert_eq!(m["from"]["emailAddress"]["name"], "Jörg Müller");
    assert_eq!(m["ccRecipients"][0]["emailAddress"]["name"], "Zoë");
    assert_eq!(m["internetMessageId"], "<orig-1@example.com>");
    assert_eq!(m["body"]["contentType"], "html");
    assert_eq!(m["bodyPreview"], "They were awesome!");
    assert_eq!(m["hasAttachments"], false);
    let id = m["id"].as_str().expect("id").to_owned();

    // $value: MIME generated from the fields, the same bytes on every request.
    let (status, _, v1) = get(&t, &format!("{g}/me/messages/{id}/$value"), None).await;
    assert_eq!(status, 200);
    let (_, _, v2) = get(&t, &format!("{g}/me/messages/{id}/$value"), None).await;
    assert_eq!(v1, v2);
    let text = String::from_utf8(v1.to_vec()).expect("ASCII MIME");
    for needle in [
        "From: =?UTF-8?B?",
        "Subject: Quarterly report\r\n",
        "Date: Sat, 6 May 2023 07:00:00 +0000\r\n",
        "Message-ID: <orig-1@example.com>\r\n",
        "Importance: high\r\n",
        "Content-Type: text/html; charset=\"utf-8\"",
        "They were <b>awesome</b>!",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
    }

    // Flags 0: neither read nor a draft; explicit isRead wins over the read bit; no flags:
    // a draft (Graph's default for created messages).
    let mut unread = restored_json("unread");
    unread["singleValueExtendedProperties"][0]["value"] = json!("0");
    let (_, m) = post_json(&t, &format!("{g}/me/messages"), &unread).await;
    assert_eq!(
        (m["isDraft"].clone(), m["isRead"].clone()),
        (json!(false), json!(false))
    );
    let mut explicit = restored_json("explicit");
    explicit["isRead"] = json!(false);
    let (_, m) = post_json(&t, &format!("{g}/me/messages"), &explicit).await;
    assert_eq!(m["isRead"], false);
    let (status, m) = post_json(
        &t,
        &format!("{g}/me/messages"),
        &json!({"subject": "plain draft", "isDraft": false, "receivedDateTime": "2020-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        m["isDraft"], true,
        "isDraft in the body is read-only and ignored"
    );
    assert_ne!(m["receivedDateTime"], "2020-01-01T00:00:00Z");

    // Attachments given at creation.
    let mut with_att = restored_json("with attachment");
    with_att["attachments"] = json!([{
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": "Übersicht \"Q1\".pdf",
        "contentBytes": STANDARD.encode(b"%PDF-1.7 tiny"),
    }]);
    let (status, m) = post_json(&t, &format!("{g}/me/messages"), &with_att).await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["hasAttachments"], true);
    let att_id = m["id"].as_str().expect("id");
    let (_, _, mime) = get(&t, &format!("{g}/me/messages/{att_id}/$value"), None).await;
    let mime = String::from_utf8(mime.to_vec()).expect("ASCII");
    assert!(mime.contains("Content-Type: multipart/mixed;"), "{mime}");
    assert!(
        mime.contains("filename*=UTF-8''%C3%9Cbersicht%20%22Q1%22.pdf"),
        "{mime}"
    );
    assert!(mime.contains(&STANDARD.encode(b"%PDF-1.7 tiny")), "{mime}");

    // Values that would break the generated MIME headers are refused; names and subjects are
    // encoded instead.
    refused(
        post_json(
            &t,
            &format!("{g}/me/messages"),
            &json!({"toRecipients": [{"emailAddress": {"address": "a@example.com\r\nBcc: v@example.com"}}]}),
        )
        .await,
        400,
        "BadRequest",
    );
    refused(
        post_json(
            &t,
            &format!("{g}/me/messages"),
            &json!({"attachments": [{"@odata.type": "#microsoft.graph.fileAttachment", "name": "a", "contentBytes": "eA==", "contentType": "text/plain\r\nX-Evil: 1"}]}),
        )
        .await,
        400,
        "BadRequest",
    );
    let (status, m) = post_json(
        &t,
        &format!("{g}/me/messages"),
        &json!({"subject": "hi\r\nBcc: v@example.com", "from": {"emailAddress": {"name": "M\r\nBcc: v@example.com", "address": "m@example.com"}}}),
    )
    .await;
    assert_eq!(status, 201);
    let (_, _, mime) = get(
        &t,
        &format!("{g}/me/messages/{}/$value", m["id"].as_str().expect("id")),
        None,
    )
    .await;
    let mime = String::from_utf8(mime.to_vec()).expect("ASCII");
    assert!(!mime.contains("\r\nBcc:"), "{mime}");

    // Errors: unknown property, malformed or mistyped extended properties, bad JSON.
    refused(
        post_json(&t, &format!("{g}/me/messages"), &json!({"subjekt": "x"})).await,
        400,
        "RequestBodyRead",
    );
    refused(
        post_json(&t, &format!("{g}/me/messages"), &extended("Integer", "1")).await,
        400,
        "ErrorInvalidProperty",
    );
    refused(
        post_json(
            &t,
            &format!("{g}/me/messages"),
            &extended("SystemTime 0x0E06", "last May"),
        )
        .await,
        400,
        "ErrorInvalidExtendedPropertyValue",
    );
    refused(
        post_json(
            &t,
            &format!("{g}/me/messages"),
            &extended("String 0x0E07", "1"),
        )
        .await,
        400,
        "ErrorInvalidExtendedPropertyValue",
    );
    let (status, _, body) = send(
        reqwest::Method::POST,
        Some(&t),
        &format!("{g}/me/messages"),
        "application/json",
        "{not json",
    )
    .await;
    assert_eq!(status, 400);
    assert_graph_error(&body, "BadRequest");
    refused(
        post_json(
            &t,
            &format!("{g}/me/messages"),
            &json!({"internetMessageHeaders": [{"name": "Received", "value": "x"}]}),
        )
        .await,
        400,
        "InvalidInternetMessageHeader",
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn attachments_are_added_and_large_ones_go_through_an_upload_session() {
    let emu = start(config()).await;
    let t = token(&emu, USER, RW).await;
    let g = emu.graph_url();
    let (_, m) = post_json(&t, &format!("{g}/me/messages"), &restored_json("files")).await;
    let id = m["id"].as_str().expect("id").to_owned();
    let before = m["lastModifiedDateTime"].clone();

    let (status, a) = post_json(
        &t,
        &format!("{g}/me/messages/{id}/attachments"),
        &file_attachment("notes.txt", b"hello"),
    )
    .await;
    assert_eq!(status, 201, "{a}");
    assert_eq!(a["name"], "notes.txt");
    assert_eq!(a["contentType"], "text/plain");
    assert_eq!(a["size"], 5);
    assert_eq!(a["isInline"], false);
    assert!(a["id"].as_str().is_some_and(|i| i.len() > 100));
    let m = get_json(&t, &format!("{g}/me/messages/{id}")).await;
    assert_eq!(m["hasAttachments"], true);
    assert_ne!(m["lastModifiedDateTime"], before);

    // Over 3 MiB in one POST: 413; an upload session takes it in ranges of at most 4 MiB.
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 512 * 1024)
        .map(|i| (i % 251) as u8)
        .collect();
    refused(
        post_json(
            &t,
            &format!("{g}/me/messages/{id}/attachments"),
            &file_attachment("big.bin", &big),
        )
        .await,
        413,
        "RequestEntityTooLarge",
    );
    refused(
        post_json(
            &t,
            &format!("{g}/me/messages/{id}/attachments/createUploadSession"),
            &upload_item("small.bin", 1024),
        )
        .await,
        400,
        "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
    );
    let (status, s) = post_json(
        &t,
        &format!("{g}/me/messages/{id}/attachments/createUploadSession"),
        &upload_item("big.bin", big.len()),
    )
    .await;
    assert_eq!(status, 201, "{s}");
    assert_eq!(s["nextExpectedRanges"], json!(["0-"]));
    let url = s["uploadUrl"].as_str().expect("uploadUrl").to_owned();
    let put = |range: String, bytes: Vec<u8>| {
        let url = url.clone();
        async move {
            let resp = client()
                .put(url)
                .header("Content-Type", "application/octet-stream")
                .header("Content-Range", range)
                .body(bytes)
                .send()
                .await
                .expect("put");
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, location, body)
        }
    };
    let half = 2 * 1024 * 1024;
    let total = big.len();
    // No Authorization header: the upload URL is pre-authenticated.
    let (status, _, body) = put(
        format!("bytes 0-{}/{total}", half - 1),
        big[..half].to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["nextExpectedRanges"], json!([half.to_string()]));
    let (status, _, body) = put(
        format!("bytes 0-{}/{total}", half - 1),
        big[..half].to_vec(),
    )
    .await;
    assert_eq!(status, 416, "ranges go in order");
    assert_error(&body, "InvalidRange");
    let (status, location, _) = put(
        format!("bytes {half}-{}/{total}", total - 1),
        big[half..].to_vec(),
    )
    .await;
    assert_eq!(status, 201);
    assert!(
        location.is_some_and(|l| l.contains("/attachments('")),
        "Location names the attachment"
    );
    let (status, _, _) = put(format!("bytes 0-9/{total}"), vec![0; 10]).await;
    assert_eq!(status, 404, "a completed session is gone");
    let (_, _, mime) = get(&t, &format!("{g}/me/messages/{id}/$value"), None).await;
    let mime = String::from_utf8(mime.to_vec()).expect("ASCII");
    let tail = mime
        .split("filename=\"big.bin\"")
        .nth(1)
        .and_then(|s| s.split("\r\n\r\n").nth(1))
        .and_then(|s| s.split("\r\n--").next())
        .expect("big.bin part");
    assert_eq!(
        STANDARD.decode(tail.replace("\r\n", "")).expect("base64"),
        big
    );

    // Messages not created from JSON over HTTP take no attachments (emulator limitation).
    let (_, mm) = post_mime(&t, &format!("{g}/me/messages"), STANDARD.encode(MIME)).await;
    refused(
        post_json(
            &t,
            &format!(
                "{g}/me/messages/{}/attachments",
                mm["id"].as_str().expect("id")
            ),
            &file_attachment("x.txt", b"x"),
        )
        .await,
        400,
        "ErrorInvalidRequest",
    );
    refused(
        post_json(
            &t,
            &format!("{g}/me/messages/AAMkNoSuchMessage=/attachments"),
            &file_attachment("x.txt", b"x"),
        )
        .await,
        404,
        "ErrorItemNotFound",
    );
    let s = emu.stats();
    assert_eq!(s.count(EndpointKind::AttachmentUpload), 4);
    emu.shutdown().await;
}

#[tokio::test]
async fn patch_changes_read_state_categories_and_flag_but_never_the_draft_state() {
    let emu = start(config()).await;
    let t = token(&emu, USER, RW).await;
    let g = emu.graph_url();
    let mut unread = restored_json("to update");
    unread["singleValueExtendedProperties"][0]["value"] = json!("0");
    let (_, m) = post_json(&t, &format!("{g}/me/messages"), &unread).await;
    let id = m["id"].as_str().expect("id").to_owned();
    let url = format!("{g}/me/messages/{id}");

    let (status, p) = patch_json(
        &t,
        &url,
        &json!({"isRead": true, "categories": ["Red category"], "flag": {"flagStatus": "flagged"}, "importance": "low"}),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["isRead"], true);
    assert_eq!(p["categories"], json!(["Red category"]));
    assert_eq!(p["flag"]["flagStatus"], "flagged");
    assert_eq!(p["importance"], "low");
    assert_ne!(p["changeKey"], m["changeKey"]);
    assert!(p["lastModifiedDateTime"].as_str() > m["lastModifiedDateTime"].as_str());
    // isDraft is read-only, and so is PidTagMessageFlags once the message is saved (read bit
    // and unsent bit alike; MS-OXCMSG 2.2.1.6).
    refused(
        patch_json(&t, &url, &json!({"isDraft": true})).await,
        400,
        "ErrorInvalidPropertySet",
    );
    for flags in ["9", "0"] {
        refused(
            patch_json(&t, &url, &extended("Integer 0x0E07", flags)).await,
            400,
            "ErrorInvalidPropertySet",
        );
    }
    let now = get_json(&t, &url).await;
    assert_eq!(
        (now["isRead"].clone(), now["isDraft"].clone()),
        (json!(true), json!(false))
    );
    let (_, draft) = post_mime(&t, &format!("{g}/me/messages"), STANDARD.encode(MIME)).await;
    let draft_url = format!("{g}/me/messages/{}", draft["id"].as_str().expect("id"));
    refused(
        patch_json(&t, &draft_url, &json!({"isDraft": false})).await,
        400,
        "ErrorInvalidPropertySet",
    );
    assert_eq!(get_json(&t, &draft_url).await["isDraft"], true);

    // Other refusals: not emulated, unknown, bad values, unknown message.
    refused(
        patch_json(&t, &url, &json!({"subject": "new"})).await,
        400,
        "BadRequest",
    );
    refused(
        patch_json(&t, &url, &json!({"colour": "red"})).await,
        400,
        "RequestBodyRead",
    );
    refused(
        patch_json(&t, &url, &json!({"flag": {"flagStatus": "maybe"}})).await,
        400,
        "BadRequest",
    );
    refused(
        patch_json(
            &t,
            &format!("{g}/me/messages/AAMkNoSuchMessage="),
            &json!({"isRead": true}),
        )
        .await,
        404,
        "ErrorItemNotFound",
    );

    // Synthetic messages take updates too.
    let synthetic = emu.mailbox(USER).messages()[0].clone();
    let (status, p) = patch_json(
        &t,
        &format!("{g}/me/messages/{}", synthetic.id),
        &json!({"isRead": !synthetic.is_read}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(p["isRead"], !synthetic.is_read);
    assert_eq!(
        emu.mailbox(USER)
            .message(&synthetic.id)
            .expect("msg")
            .is_read,
        !synthetic.is_read
    );
    assert_eq!(emu.stats().count(EndpointKind::MessageUpdate), 10);
    emu.shutdown().await;
}

/// The sorted ids of some messages.
fn ids<'a>(vs: impl IntoIterator<Item = &'a Value>) -> Vec<String> {
    let mut v: Vec<String> = vs
        .into_iter()
        .filter_map(|x| x["id"].as_str().map(str::to_owned))
        .collect();
    v.sort();
    v
}

/// One delta round to its end: the items and the delta link.
async fn delta_round(token: &str, url: &str) -> (Vec<Value>, String) {
    let mut items = Vec::new();
    let mut next = url.to_owned();
    loop {
        let v = get_json(token, &next).await;
        items.extend(v["value"].as_array().cloned().unwrap_or_default());
        if let Some(n) = v["@odata.nextLink"].as_str() {
            next = n.to_owned();
        } else {
            let d = v["@odata.deltaLink"]
                .as_str()
                .expect("deltaLink")
                .to_owned();
            return (items, d);
        }
    }
}

#[tokio::test]
async fn created_items_show_up_in_listings_and_delta_like_synthetic_ones() {
    let emu = start(config()).await;
    let t = token(&emu, USER, RW).await;
    let g = emu.graph_url();
    let (_, f) = post_json(
        &t,
        &format!("{g}/me/mailFolders"),
        &json!({"displayName": "Restored"}),
    )
    .await;
    let fid = f["id"].as_str().expect("id").to_owned();
    let (first, link) = delta_round(&t, &format!("{g}/me/mailFolders/{fid}/messages/delta")).await;
    assert!(first.is_empty());
    let (inbox_items, inbox_link) =
        delta_round(&t, &format!("{g}/me/mailFolders/inbox/messages/delta")).await;

    let (_, a) = post_json(
        &t,
        &format!("{g}/me/mailFolders/{fid}/messages"),
        &restored_json("a"),
    )
    .await;
    let (_, b) = post_mime(
        &t,
        &format!("{g}/me/mailFolders/{fid}/messages"),
        STANDARD.encode(MIME),
    )
    .await;
    let (_, c) = post_json(
        &t,
        &format!("{g}/me/mailFolders/inbox/messages"),
        &restored_json("c"),
    )
    .await;
    let expected = ids([&a, &b]);

    let (changes, link2) = delta_round(&t, &link).await;
    assert_eq!(ids(&changes), expected);
    assert!(
        changes
            .iter()
            .all(|c| c["@odata.type"] == "#microsoft.graph.message")
    );
    let (inbox_changes, _) = delta_round(&t, &inbox_link).await;
    assert_eq!(ids(&inbox_changes), ids([&c]));

    // Listings: the folder, /messages, counts, $filter on the restored date.
    let (listed, _) = get_all(&t, &format!("{g}/me/mailFolders/{fid}/messages"), None).await;
    assert_eq!(ids(&listed), expected);
    let folder = get_json(&t, &format!("{g}/me/mailFolders/{fid}")).await;
    assert_eq!(folder["totalItemCount"], 2);
    let (all, _) = get_all(&t, &format!("{g}/me/messages?$top=100"), None).await;
    assert_eq!(all.len(), 20 + 3);
    let (old, _) = get_all(
        &t,
        &format!(
            "{g}/me/mailFolders/{fid}/messages?$filter=receivedDateTime%20eq%202023-05-06T07:08:09Z"
        ),
        None,
    )
    .await;
    assert_eq!(ids(&old), ids([&a]));

    // An update shows in the next round; the test handle sees created items as well.
    let (status, _) = patch_json(
        &t,
        &format!("{g}/me/messages/{}", a["id"].as_str().expect("id")),
        &json!({"isRead": false}),
    )
    .await;
    assert_eq!(status, 200);
    let (changes, _) = delta_round(&t, &link2).await;
    assert_eq!(ids(&changes), ids([&a]));
    assert_eq!(changes[0]["isRead"], false);
    let mb = emu.mailbox(USER);
    let expected_messages = mb.expected_messages();
    assert_eq!(expected_messages.len(), 23);
    let restored = expected_messages
        .iter()
        .find(|e| e.info.id == b["id"].as_str().unwrap_or_default())
        .expect("MIME message in expected_messages");
    assert_eq!(restored.mime, MIME.as_bytes());
    assert_eq!(restored.info.folder_path, "Restored");
    assert!(restored.info.is_draft);
    let from_json = mb
        .message(a["id"].as_str().expect("id"))
        .expect("JSON message");
    assert!(!from_json.is_draft);
    assert_eq!(from_json.received.to_rfc3339(), "2023-05-06T07:08:09+00:00");
    assert!(!inbox_items.is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn writes_need_mail_readwrite() {
    let other = "megan.bowen@emulator.test";
    let mut cfg = EmulatorConfig::default().with_mailboxes(vec![
        MailboxSpec::new(USER).messages(3),
        MailboxSpec::new(other).messages(3),
    ]);
    cfg.apps.push(rw_app());
    let emu = start(cfg).await;
    let g = emu.graph_url();
    let read = token(&emu, USER, "https://graph.microsoft.com/Mail.Read").await;
    let msg = emu.mailbox(USER).messages()[0].id.clone();

    refused(
        post_json(
            &read,
            &format!("{g}/me/mailFolders"),
            &json!({"displayName": "x"}),
        )
        .await,
        403,
        "ErrorAccessDenied",
    );
    refused(
        post_json(
            &read,
            &format!("{g}/me/mailFolders/inbox/childFolders"),
            &json!({"displayName": "x"}),
        )
        .await,
        403,
        "ErrorAccessDenied",
    );
    refused(
        post_json(&read, &format!("{g}/me/messages"), &restored_json("x")).await,
        403,
        "ErrorAccessDenied",
    );
    refused(
        post_mime(&read, &format!("{g}/me/messages"), STANDARD.encode(MIME)).await,
        403,
        "ErrorAccessDenied",
    );
    refused(
        patch_json(
            &read,
            &format!("{g}/me/messages/{msg}"),
            &json!({"isRead": true}),
        )
        .await,
        403,
        "ErrorAccessDenied",
    );
    refused(
        post_json(
            &read,
            &format!("{g}/me/messages/{msg}/attachments"),
            &file_attachment("x", b"x"),
        )
        .await,
        403,
        "ErrorAccessDenied",
    );
    // Reading still works with Mail.Read, and Mail.ReadWrite reads too.
    let (s, _, _) = get(&read, &format!("{g}/me/messages/{msg}"), None).await;
    assert_eq!(s, 200);
    let rw = token(&emu, USER, RW).await;
    let (s, _, _) = get(&rw, &format!("{g}/me/messages/{msg}/$value"), None).await;
    assert_eq!(s, 200);

    // Another user's mailbox needs Mail.ReadWrite.Shared.
    refused(
        post_json(
            &rw,
            &format!("{g}/users/{other}/mailFolders"),
            &json!({"displayName": "x"}),
        )
        .await,
        403,
        "ErrorAccessDenied",
    );
    let shared = token(
        &emu,
        USER,
        "https://graph.microsoft.com/Mail.ReadWrite.Shared https://graph.microsoft.com/Mail.ReadWrite",
    )
    .await;
    let (s, b) = post_json(
        &shared,
        &format!("{g}/users/{other}/mailFolders"),
        &json!({"displayName": "x"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");

    // App-only: the default confidential client has Mail.Read; an app with Mail.ReadWrite
    // writes to any mailbox.
    refused(
        post_json(
            &app_token(&emu).await,
            &format!("{g}/users/{other}/mailFolders"),
            &json!({"displayName": "y"}),
        )
        .await,
        403,
        "ErrorAccessDenied",
    );
    let app_rw = rw_app_token(&emu).await;
    let (s, b) = post_json(
        &app_rw,
        &format!("{g}/users/{other}/mailFolders"),
        &json!({"displayName": "y"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");

    // Methods a resource does not take: 405.
    let (s, _, body) = send(
        reqwest::Method::DELETE,
        Some(&rw),
        &format!("{g}/me/messages/{msg}"),
        "application/json",
        "",
    )
    .await;
    assert_eq!(s, 405);
    assert_graph_error(&body, "ErrorInvalidRequest");
    emu.shutdown().await;
}

#[tokio::test]
async fn writes_share_the_mailbox_concurrency_limit_and_latency() {
    let emu = start(config()).await;
    let t = token(&emu, USER, RW).await;
    let g = emu.graph_url();
    let mb = emu.mailbox(USER);
    let latency = Duration::from_millis(1500);
    emu.faults().latency(latency);
    let started = Instant::now();
    let slow: Vec<_> = (0..4)
        .map(|i| {
            let (url, t) = (format!("{g}/me/messages"), t.clone());
            tokio::spawn(async move {
                post_json(&t, &url, &restored_json(&format!("slow {i}")))
                    .await
                    .0
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(30), mb.wait_in_flight(4))
        .await
        .expect("four writes in flight");
    // A fifth request on the mailbox, write or read: 429 MailboxConcurrency.
    let (status, headers, body) = send(
        reqwest::Method::POST,
        Some(&t),
        &format!("{g}/me/mailFolders"),
        "application/json",
        json!({"displayName": "fifth"}).to_string(),
    )
    .await;
    assert_eq!(status, 429);
    assert!(headers.get("retry-after").is_some());
    let v = assert_graph_error(&body, "ApplicationThrottled");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("MailboxConcurrency")
    );
    for h in slow {
        assert_eq!(h.await.expect("task"), 201);
    }
    assert!(started.elapsed() >= latency, "latency applies to writes");
    emu.faults().latency(Duration::ZERO);
    let s = emu.stats();
    assert_eq!(s.count(EndpointKind::MessageCreate), 4);
    assert_eq!(s.count(EndpointKind::FolderCreate), 1);
    assert_eq!(s.throttled_concurrency, 1);
    assert_eq!(
        mb.folders()
            .iter()
            .filter(|f| f.display_name == "fifth")
            .count(),
        0
    );
    emu.shutdown().await;
}

/// The `{name: id}` of the mail folders of a mailbox, by display-name path (search folders
/// skipped), walked over Graph as a backup does.
async fn folder_tree(token: &str, g: &str, user: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), None::<String>)];
    while let Some((path, id)) = stack.pop() {
        let url = match &id {
            None => format!("{g}/users/{user}/mailFolders?includeHiddenFolders=true"),
            Some(id) => {
                format!("{g}/users/{user}/mailFolders/{id}/childFolders?includeHiddenFolders=true")
            }
        };
        let (kids, _) = get_all(token, &url, None).await;
        for k in kids.iter().filter(|k| k["@odata.type"].is_null()) {
            let name = k["displayName"].as_str().expect("name");
            let p = if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}/{name}")
            };
            let kid = k["id"].as_str().expect("id").to_owned();
            out.push((p.clone(), kid.clone()));
            stack.push((p, Some(kid)));
        }
    }
    out
}

#[tokio::test]
async fn a_restore_through_graph_keeps_every_message_of_the_source_mailbox() {
    // Back up A, restore into B (half from MIME, half from JSON the way
    // docs/mailbackup-restore-fidelity.md recommends), back up B, compare message by message.
    let (a, b) = ("adele.vance@emulator.test", "megan.bowen@emulator.test");
    let mut cfg = EmulatorConfig::default().with_mailboxes(vec![
        MailboxSpec::new(a).messages(24).seed(11).large_every(8),
        MailboxSpec::new(b).messages(0),
    ]);
    cfg.apps.push(rw_app());
    let emu = start(cfg).await;
    let t = rw_app_token(&emu).await;
    let g = emu.graph_url();
    let source = emu.mailbox(a).expected_messages();

    // Restore: the folder tree below "Restored", then every message.
    let mut folders: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let (_, root) = post_json(
        &t,
        &format!("{g}/users/{b}/mailFolders"),
        &json!({"displayName": "Restored"}),
    )
    .await;
    folders.insert(String::new(), root["id"].as_str().expect("id").to_owned());
    let mut restored_ids = Vec::new();
    for (n, m) in source.iter().enumerate() {
        let mut path = String::new();
        for part in m.info.folder_path.split('/') {
            let child = if path.is_empty() {
                part.to_owned()
            } else {
                format!("{path}/{part}")
            };
            if !folders.contains_key(&child) {
                let parent = &folders[&path];
                let (status, f) = post_json(
                    &t,
                    &format!("{g}/users/{b}/mailFolders/{parent}/childFolders"),
                    &json!({"displayName": part}),
                )
                .await;
                assert_eq!(status, 201, "{f}");
                folders.insert(child.clone(), f["id"].as_str().expect("id").to_owned());
            }
            path = child;
        }
        let target = format!("{g}/users/{b}/mailFolders/{}/messages", folders[&path]);
        let (status, created) = if n % 2 == 0 {
            post_mime(&t, &target, STANDARD.encode(&m.mime)).await
        } else {
            let parsed = mail_parser::MessageParser::default()
                .parse(&m.mime)
                .expect("source MIME");
            let people = |a: Option<&mail_parser::Address<'_>>| -> Vec<Value> {
                a.map(|a| {
                    a.iter()
                        .map(
                            |x| json!({"emailAddress": {"name": x.name(), "address": x.address()}}),
                        )
                        .collect()
                })
                .unwrap_or_default()
            };
            let date =
                chrono::DateTime::from_timestamp(parsed.date().expect("Date").to_timestamp(), 0)
                    .expect("date")
                    .to_rfc3339();
            let mut body = json!({
                "subject": parsed.subject(),
                "from": people(parsed.from()).into_iter().next(),
                "toRecipients": people(parsed.to()),
                "ccRecipients": people(parsed.cc()),
                "internetMessageId": format!("<{}>", parsed.message_id().expect("Message-ID")),
                "body": {"contentType": "html", "content": parsed.body_html(0).expect("html")},
                "singleValueExtendedProperties": [
                    {"id": "Integer 0x0E07", "value": if m.info.is_read { "1" } else { "0" }},
                    {"id": "SystemTime 0x0E06", "value": m.info.received.to_rfc3339()},
                    {"id": "SystemTime 0x0039", "value": date},
                ],
            });
            let (status, created) = post_json(&t, &target, &body).await;
            assert_eq!(status, 201, "{created}");
            let id = created["id"].as_str().expect("id").to_owned();
            for part in parsed.attachments() {
                let (status, a) = post_json(
                    &t,
                    &format!("{g}/users/{b}/messages/{id}/attachments"),
                    &file_attachment(
                        mail_parser::MimeHeaders::attachment_name(part).expect("name"),
                        part.contents(),
                    ),
                )
                .await;
                assert_eq!(status, 201, "{a}");
            }
            body["id"] = json!(id);
            (status, body)
        };
        assert_eq!(status, 201, "{created}");
        restored_ids.push(created["id"].as_str().expect("id").to_owned());
    }

    // Back up B over Graph: every folder below Restored, every message's JSON and MIME.
    let tree = folder_tree(&t, &g, b).await;
    let mut backup: std::collections::HashMap<String, (String, Value, Vec<u8>)> =
        std::collections::HashMap::new();
    for (path, id) in &tree {
        let (items, _) = delta_round(
            &t,
            &format!("{g}/users/{b}/mailFolders/{id}/messages/delta"),
        )
        .await;
        for item in items {
            let mid = item["id"].as_str().expect("id").to_owned();
            let full = get_json(&t, &format!("{g}/users/{b}/messages/{mid}")).await;
            let (status, _, mime) =
                get(&t, &format!("{g}/users/{b}/messages/{mid}/$value"), None).await;
            assert_eq!(status, 200);
            backup.insert(mid, (path.clone(), full, mime.to_vec()));
        }
    }
    assert_eq!(
        backup.len(),
        source.len(),
        "every restored message is backed up once"
    );

    for (n, (m, id)) in source.iter().zip(&restored_ids).enumerate() {
        let (path, json_b, mime_b) = backup.get(id).expect("restored message in the backup");
        assert_eq!(path, &format!("Restored/{}", m.info.folder_path));
        let json_a = get_json(&t, &format!("{g}/users/{a}/messages/{}", m.info.id)).await;
        for field in [
            "subject",
            "internetMessageId",
            "sentDateTime",
            "hasAttachments",
            "bodyPreview",
        ] {
            assert_eq!(json_b[field], json_a[field], "{field} of message {n}");
        }
        assert_eq!(
            json_b["from"]["emailAddress"]["address"],
            json_a["from"]["emailAddress"]["address"]
        );
        if n % 2 == 0 {
            // MIME: the same bytes, but a draft received at restore time (Graph's rule).
            assert_eq!(mime_b, &m.mime, "MIME of message {n}");
            assert_eq!(json_b["isDraft"], true);
        } else {
            // JSON: not a draft, original dates and read state, the same attachments.
            assert_eq!(json_b["isDraft"], false);
            assert_eq!(json_b["receivedDateTime"], json_a["receivedDateTime"]);
            assert_eq!(json_b["isRead"], json_a["isRead"]);
            let attachments = |mime: &[u8]| -> Vec<(String, Vec<u8>)> {
                let p = mail_parser::MessageParser::default()
                    .parse(mime)
                    .expect("MIME");
                p.attachments()
                    .map(|x| {
                        (
                            mail_parser::MimeHeaders::attachment_name(x)
                                .unwrap_or_default()
                                .to_owned(),
                            x.contents().to_vec(),
                        )
                    })
                    .collect()
            };
            assert_eq!(
                attachments(mime_b),
                attachments(&m.mime),
                "attachments of message {n}"
            );
        }
    }
    emu.shutdown().await;
}
