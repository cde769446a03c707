//! Graph write endpoints, with Graph's documented request and response shapes and errors:
//!
//! - `POST .../mailFolders`, `.../mailFolders/{id}/childFolders`: `displayName`, `isHidden`;
//!   201 `mailFolder`; a sibling with the same name (any case, hidden ones included): 409
//!   `ErrorFolderExists`.
//! - `POST .../messages`, `.../mailFolders/{id}/messages`: MIME (`Content-Type: text/plain`,
//!   base64; always a draft; `sentDateTime` from `Date`) or a JSON message resource, whose
//!   `singleValueExtendedProperties` `Integer 0x0E07` (`PidTagMessageFlags`: unsent bit 0x8 =
//!   draft, read bit 0x1), `SystemTime 0x0E06` (`PidTagMessageDeliveryTime` =
//!   `receivedDateTime`) and `SystemTime 0x0039` (`PidTagClientSubmitTime` = `sentDateTime`)
//!   decide the draft state and the dates; 201 `message`. Without a folder: Drafts.
//! - `PATCH .../messages/{id}`: `isRead`, `categories`, `flag`, `importance`. `isDraft` is
//!   read-only, and `PidTagMessageFlags` is read-only once a message is saved ([MS-OXCMSG]
//!   2.2.1.6): 400 `ErrorInvalidPropertySet`.
//! - `POST .../messages/{id}/attachments`: `#microsoft.graph.fileAttachment` with
//!   `contentBytes`, up to 3 MiB (more: 413, use an upload session).
//! - `POST .../messages/{id}/attachments/createUploadSession` (3 MiB to 150 MiB), then `PUT`
//!   byte ranges (`Content-Range`, at most 4 MiB each, in order, no `Authorization`) to the
//!   opaque `uploadUrl`; 200 with `nextExpectedRanges`, the last one 201 with `Location`.
//!
//! Writes need `Mail.ReadWrite` (delegated for the own mailbox or app-only) or
//! `Mail.ReadWrite.Shared` (delegated, another user's mailbox): otherwise 403
//! `ErrorAccessDenied`. Request bodies over 4 MiB (Graph's request size limit) get 413.
//! Attachments can be added only to messages created from JSON over HTTP (the MIME of other
//! messages is not rewritten); that answers 400 naming the limitation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, NaiveDateTime, Utc};
use hyper::Method;
use serde_json::{Map, Value, json};

use super::route::Resource;
use super::{Ctx, graph_error, ok_json};
use crate::compose::{self, html_to_text};
use crate::identity::{Grant, Principal};
use crate::mailbox::Content;
use crate::mailbox::{Attachment, Body, Composed, CreateFolderError, NewItem, Patch, WriteError};
use crate::server::{Req, Resp, Shared};
use crate::synth::{Person, SynthMessage};
use crate::util::{graph_time, lock, random_token};

/// Graph's limit on the size of one request body.
const MAX_REQUEST: usize = 4 * 1024 * 1024;
/// Largest attachment `POST .../attachments` takes ("under 3 MB"); the smallest an upload
/// session takes.
const MAX_INLINE_ATTACHMENT: usize = 3 * 1024 * 1024;
/// Largest attachment an upload session takes.
const MAX_SESSION_ATTACHMENT: usize = 150 * 1024 * 1024;
/// Lifetime of an upload session (its `expirationDateTime`; not extended by uploads).
const SESSION_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// `PidTagMessageFlags` bits.
const MSGFLAG_READ: i64 = 0x1;
const MSGFLAG_UNSENT: i64 = 0x8;

/// Message properties Graph computes; a create ignores them, an update refuses them.
const READ_ONLY_MESSAGE_PROPERTIES: &[&str] = &[
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "parentFolderId",
    "conversationId",
    "conversationIndex",
    "bodyPreview",
    "webLink",
    "uniqueBody",
    "isDraft",
];

/// Message properties a create takes and the emulator does not update (Graph updates some of
/// them on drafts only).
const COMPOSE_PROPERTIES: &[&str] = &[
    "subject",
    "body",
    "from",
    "sender",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "internetMessageId",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
];

/// An attachment upload in progress.
#[derive(Debug)]
pub(crate) struct UploadSession {
    /// User principal name of the mailbox.
    mailbox: String,
    /// Immutable id of the message (stable if it moves meanwhile).
    message: String,
    /// The message id as it appears in the upload URL.
    url_message: String,
    name: String,
    content_type: String,
    is_inline: bool,
    content_id: Option<String>,
    size: usize,
    data: Vec<u8>,
    /// The grant of the token that created the session (the URL is pre-authenticated).
    grant: Grant,
    expires: Instant,
    expires_at: DateTime<Utc>,
}

/// Upload sessions by id (the last segment of the upload URL).
pub(crate) type UploadStore = std::sync::Mutex<HashMap<String, UploadSession>>;

/// Which methods a resource takes: GET for every read resource, POST/PATCH/PUT for writes.
pub(super) fn check_method(r: &Req, res: &Resource) -> Result<(), Resp> {
    let write_only = matches!(
        res,
        Resource::Attachments(_) | Resource::UploadSession(_) | Resource::AttachmentSession { .. }
    );
    let ok = match r.method {
        Method::GET => !write_only,
        Method::POST => matches!(
            res,
            Resource::FolderList(_)
                | Resource::Messages(_)
                | Resource::Attachments(_)
                | Resource::UploadSession(_)
        ),
        Method::PATCH => matches!(res, Resource::Message(_)),
        Method::PUT => matches!(res, Resource::AttachmentSession { .. }),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(graph_error(
        r,
        405,
        "ErrorInvalidRequest",
        &format!(
            "Method {} is not supported on this resource by the emulator (writes: POST mailFolders, childFolders, messages, attachments, attachments/createUploadSession; PATCH messages/{{id}}; PUT to an upload URL; everything else is GET only).",
            r.method
        ),
    ))
}

/// Writes need `Mail.ReadWrite` (or `Mail.ReadWrite.Shared` for another user's mailbox).
pub(super) fn check_write_permission(r: &Req, grant: &Grant, user_idx: usize) -> Result<(), Resp> {
    if r.method == Method::GET {
        return Ok(());
    }
    let has = |p: &str| grant.permissions.iter().any(|x| x == p);
    let allowed = match grant.principal {
        Principal::App => has("mail.readwrite"),
        Principal::User(u) if u == user_idx => has("mail.readwrite"),
        Principal::User(_) => has("mail.readwrite.shared"),
    };
    if allowed {
        return Ok(());
    }
    Err(graph_error(
        r,
        403,
        "ErrorAccessDenied",
        "Access is denied. Check credentials and try again.",
    ))
}

/// The grant of an upload URL (pre-authenticated: no `Authorization` header).
pub(super) fn upload_grant(shared: &Shared, r: &Req, session: &str) -> Result<Grant, Resp> {
    let uploads = lock(&shared.uploads);
    match uploads.get(session) {
        Some(s) if s.expires > Instant::now() => Ok(s.grant.clone()),
        _ => Err(graph_error(
            r,
            404,
            "ErrorItemNotFound",
            "The upload session was not found: it expired, was completed, or the URL is wrong. Create a new upload session.",
        )),
    }
}

fn bad_request(r: &Req, message: &str) -> Resp {
    graph_error(r, 400, "BadRequest", message)
}

/// The JSON object of a request body.
fn json_object(r: &Req) -> Result<Map<String, Value>, Resp> {
    match serde_json::from_slice::<Value>(&r.body) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(bad_request(
            r,
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
        )),
    }
}

fn unknown_property(r: &Req, name: &str, on: &str) -> Resp {
    graph_error(
        r,
        400,
        "RequestBodyRead",
        &format!(
            "The property '{name}' does not exist on type 'microsoft.graph.{on}'. Make sure to only use property names that are defined by the type."
        ),
    )
}

fn invalid_value(r: &Req, name: &str, expected: &str) -> Resp {
    bad_request(
        r,
        &format!("Invalid value for property '{name}': expected {expected}."),
    )
}

fn string_prop(r: &Req, o: &Map<String, Value>, name: &str) -> Result<Option<String>, Resp> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid_value(r, name, "a string")),
    }
}

fn bool_prop(r: &Req, o: &Map<String, Value>, name: &str) -> Result<Option<bool>, Resp> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid_value(r, name, "true or false")),
    }
}

fn string_list(r: &Req, o: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, Resp> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| invalid_value(r, name, "an array of strings")),
        Some(_) => Err(invalid_value(r, name, "an array of strings")),
    }
}

/// A `recipient` (`{"emailAddress":{"name","address"}}`).
fn recipient(r: &Req, v: &Value, name: &str) -> Result<Person, Resp> {
    let e = v.get("emailAddress");
    let address = e
        .and_then(|e| e.get("address"))
        .and_then(Value::as_str)
        .filter(|a| !a.trim().is_empty())
        .ok_or_else(|| {
            invalid_value(
                r,
                name,
                "recipients as {\"emailAddress\":{\"address\":\"...\",\"name\":\"...\"}}",
            )
        })?;
    header_safe(r, name, address, " <>,;\"()[]\\")?;
    let display = e
        .and_then(|e| e.get("name"))
        .and_then(Value::as_str)
        .unwrap_or(address);
    Ok(Person {
        name: display.to_owned(),
        address: address.to_owned(),
    })
}

/// A value that goes into a generated MIME header as it is (address, content type, content
/// id, message id) must not break the header: no control characters (a CR or LF would start a
/// header of the client's choosing) and none of `forbidden`.
fn header_safe(r: &Req, name: &str, value: &str, forbidden: &str) -> Result<(), Resp> {
    if value
        .chars()
        .any(|c| c.is_control() || forbidden.contains(c))
    {
        return Err(invalid_value(
            r,
            name,
            &format!("a value without control characters or any of {forbidden:?}"),
        ));
    }
    Ok(())
}

/// `contentType`, `contentId` (angle brackets dropped) and `isInline` of an attachment.
fn attachment_meta(
    r: &Req,
    o: &Map<String, Value>,
) -> Result<(Option<String>, Option<String>, bool), Resp> {
    let content_type = string_prop(r, o, "contentType")?;
    if let Some(ct) = &content_type {
        header_safe(r, "contentType", ct, "")?;
    }
    let content_id = string_prop(r, o, "contentId")?
        .map(|c| c.trim_start_matches('<').trim_end_matches('>').to_owned());
    if let Some(cid) = &content_id {
        header_safe(r, "contentId", cid, " <>")?;
    }
    Ok((
        content_type,
        content_id,
        bool_prop(r, o, "isInline")?.unwrap_or(false),
    ))
}

/// An array property (missing or null = empty).
fn array<'a>(r: &Req, o: &'a Map<String, Value>, name: &str) -> Result<&'a [Value], Resp> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(invalid_value(r, name, "an array")),
    }
}

/// Two string members (`a`, `b`) of an element of the array property `name`.
fn pair<'a>(
    r: &Req,
    v: &'a Value,
    name: &str,
    a: &str,
    b: &str,
) -> Result<(&'a str, &'a str), Resp> {
    match (
        v.get(a).and_then(Value::as_str),
        v.get(b).and_then(Value::as_str),
    ) {
        (Some(x), Some(y)) => Ok((x, y)),
        _ => Err(invalid_value(
            r,
            name,
            &format!("objects with string '{a}' and '{b}'"),
        )),
    }
}

fn recipients(r: &Req, o: &Map<String, Value>, name: &str) -> Result<Vec<Person>, Resp> {
    array(r, o, name)?
        .iter()
        .map(|v| recipient(r, v, name))
        .collect()
}

fn importance(r: &Req, o: &Map<String, Value>) -> Result<Option<&'static str>, Resp> {
    match string_prop(r, o, "importance")? {
        None => Ok(None),
        Some(s) => match s.to_ascii_lowercase().as_str() {
            "low" => Ok(Some("low")),
            "normal" => Ok(Some("normal")),
            "high" => Ok(Some("high")),
            _ => Err(invalid_value(r, "importance", "Low, Normal or High")),
        },
    }
}

/// A `followupFlag` (only `flagStatus` is checked; the object is kept as given).
fn flag(r: &Req, o: &Map<String, Value>) -> Result<Option<Value>, Resp> {
    match o.get("flag") {
        None | Some(Value::Null) => Ok(None),
        Some(f @ Value::Object(m)) => match m.get("flagStatus").and_then(Value::as_str) {
            Some("notFlagged" | "flagged" | "complete") => Ok(Some(f.clone())),
            _ => Err(invalid_value(
                r,
                "flag",
                "a followupFlag with flagStatus notFlagged, flagged or complete",
            )),
        },
        Some(_) => Err(invalid_value(r, "flag", "a followupFlag object")),
    }
}

/// The extended properties the emulator acts on.
#[derive(Debug, Default)]
struct Extended {
    /// `PidTagMessageFlags`.
    flags: Option<i64>,
    /// `PidTagMessageDeliveryTime`.
    delivery: Option<DateTime<Utc>>,
    /// `PidTagClientSubmitTime`.
    submit: Option<DateTime<Utc>>,
}

/// A `SystemTime` value: ISO 8601 with offset, or without (UTC); seconds resolution.
fn system_time(s: &str) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc())
        })
        .ok()?;
    DateTime::from_timestamp(t.timestamp(), 0)
}

/// Parses `singleValueExtendedProperties`. Ids must have one of the documented formats
/// (`{type} {proptag}`, `{type} {guid} Name {name}`, `{type} {guid} Id {id}`); properties other
/// than the three above are accepted and not stored.
fn extended(r: &Req, o: &Map<String, Value>) -> Result<Extended, Resp> {
    let mut out = Extended::default();
    for p in array(r, o, "singleValueExtendedProperties")? {
        let (id, value) = pair(r, p, "singleValueExtendedProperties", "id", "value")?;
        let parts: Vec<&str> = id.split_whitespace().collect();
        let tag = match parts.as_slice() {
            [_, tag] => tag
                .strip_prefix("0x")
                .or_else(|| tag.strip_prefix("0X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok()),
            [_, guid, kind, _]
                if guid.starts_with('{')
                    && guid.ends_with('}')
                    && (kind.eq_ignore_ascii_case("name") || kind.eq_ignore_ascii_case("id")) =>
            {
                None
            }
            _ => {
                return Err(graph_error(
                    r,
                    400,
                    "ErrorInvalidProperty",
                    &format!(
                        "'{id}' is not a valid extended property id: use '{{type}} {{proptag}}' (for example 'Integer 0x0E07'), '{{type}} {{guid}} Name {{name}}' or '{{type}} {{guid}} Id {{id}}'."
                    ),
                ));
            }
        };
        // The property id is the upper 16 bits of a full tag (0x0E070003) or the id itself.
        let prop = tag.map(|t| if t > 0xFFFF { t >> 16 } else { t });
        let kind = parts[0].to_ascii_lowercase();
        let bad = |what: &str| {
            graph_error(
                r,
                400,
                "ErrorInvalidExtendedPropertyValue",
                &format!("Extended property '{id}' needs {what}; got '{value}'."),
            )
        };
        match (prop, kind.as_str()) {
            (Some(0x0E07), "integer") => {
                out.flags = Some(value.trim().parse().map_err(|_| bad("a decimal Integer"))?)
            }
            (Some(0x0E06), "systemtime") => {
                out.delivery =
                    Some(system_time(value).ok_or_else(|| bad("an ISO 8601 SystemTime"))?)
            }
            (Some(0x0039), "systemtime") => {
                out.submit = Some(system_time(value).ok_or_else(|| bad("an ISO 8601 SystemTime"))?)
            }
            (Some(0x0E07 | 0x0E06 | 0x0039), _) => {
                return Err(bad(
                    "its MAPI type (Integer for 0x0E07, SystemTime for 0x0E06 and 0x0039)",
                ));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A `#microsoft.graph.fileAttachment` (id assigned later).
fn file_attachment(r: &Req, o: &Map<String, Value>) -> Result<Attachment, Resp> {
    match o.get("@odata.type").and_then(Value::as_str) {
        Some(t) if t.trim_start_matches('#') == "microsoft.graph.fileAttachment" => {}
        Some(t) => {
            return Err(bad_request(
                r,
                &format!(
                    "Attachment type '{t}' is not emulated; only #microsoft.graph.fileAttachment is."
                ),
            ));
        }
        None => {
            return Err(bad_request(
                r,
                "An attachment needs \"@odata.type\": \"#microsoft.graph.fileAttachment\".",
            ));
        }
    }
    for k in o.keys() {
        if !k.starts_with('@')
            && ![
                "name",
                "contentBytes",
                "contentType",
                "isInline",
                "contentId",
                "contentLocation",
                "size",
                "id",
                "lastModifiedDateTime",
            ]
            .contains(&k.as_str())
        {
            return Err(unknown_property(r, k, "fileAttachment"));
        }
    }
    let name = string_prop(r, o, "name")?
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| bad_request(r, "A file attachment needs a 'name'."))?;
    let encoded = string_prop(r, o, "contentBytes")?
        .ok_or_else(|| bad_request(r, "A file attachment needs 'contentBytes' (base64)."))?;
    let bytes = STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid_value(r, "contentBytes", "base64"))?;
    if bytes.len() > MAX_INLINE_ATTACHMENT {
        return Err(graph_error(
            r,
            413,
            "RequestEntityTooLarge",
            &format!(
                "The attachment has {} bytes; this request takes attachments up to {MAX_INLINE_ATTACHMENT} bytes. Attach larger files with an upload session (POST .../attachments/createUploadSession).",
                bytes.len()
            ),
        ));
    }
    let (content_type, content_id, is_inline) = attachment_meta(r, o)?;
    Ok(Attachment {
        id: String::new(),
        content_type: content_type.unwrap_or_else(|| guess_type(&name)),
        name,
        content_id,
        is_inline,
        bytes: Arc::new(bytes),
        last_modified: Utc::now(),
    })
}

/// Content type of an attachment from its file name, when the client gives none.
fn guess_type(name: &str) -> String {
    let ext = name
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "htm" | "html" => "text/html",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "zip" => "application/zip",
        "eml" => "message/rfc822",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        _ => "application/octet-stream",
    }
    .to_owned()
}

fn attachment_json(a: &Attachment) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert(
        "@odata.type".into(),
        json!("#microsoft.graph.fileAttachment"),
    );
    o.insert("id".into(), json!(a.id));
    o.insert(
        "lastModifiedDateTime".into(),
        json!(graph_time(a.last_modified)),
    );
    o.insert("name".into(), json!(a.name));
    o.insert("contentType".into(), json!(a.content_type));
    o.insert("size".into(), json!(a.bytes.len()));
    o.insert("isInline".into(), json!(a.is_inline));
    o.insert("contentId".into(), json!(a.content_id));
    o.insert("contentLocation".into(), Value::Null);
    o.insert(
        "contentBytes".into(),
        json!(STANDARD.encode(a.bytes.as_ref())),
    );
    o
}

fn created(mut resp: Resp) -> Resp {
    resp.status = 201;
    resp
}

/// `Content-Range: bytes {start}-{end}/{total}`.
fn content_range(v: &str) -> Option<(usize, usize, usize)> {
    let (range, total) = v.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end, total) = (start.parse().ok()?, end.parse().ok()?, total.parse().ok()?);
    (start <= end && end < total).then_some((start, end, total))
}

impl Ctx<'_> {
    /// Answers a write request (method already checked).
    pub(super) fn write(&self, res: Resource, grant: &Grant) -> Resp {
        if self.r.body.len() > MAX_REQUEST {
            return self.err(
                413,
                "RequestEntityTooLarge",
                &format!(
                    "The request body has {} bytes; Graph takes at most {MAX_REQUEST}. Send large attachments through an upload session.",
                    self.r.body.len()
                ),
            );
        }
        match res {
            Resource::FolderList(parent) => self.create_folder(parent.as_deref()),
            Resource::Messages(folder) => self.create_message(folder.as_deref()),
            Resource::Message(id) => self.update_message(&id),
            Resource::Attachments(id) => self.add_attachment(&id),
            Resource::UploadSession(id) => self.create_upload_session(&id, grant),
            Resource::AttachmentSession { message, session } => {
                self.upload_range(&message, &session)
            }
            _ => self.err(405, "ErrorInvalidRequest", "Method not allowed here."),
        }
    }

    fn write_error(&self, e: WriteError) -> Resp {
        match e {
            WriteError::UnknownFolder | WriteError::UnknownMessage => self.not_found(),
            WriteError::SearchFolder => self.err(
                400,
                "ErrorInvalidRequest",
                "A search folder (mailSearchFolder) cannot hold messages of its own; create the message in a mail folder.",
            ),
            WriteError::NotComposed => self.err(
                400,
                "ErrorInvalidRequest",
                "The emulator adds attachments only to messages created from JSON over HTTP; put the attachments into the MIME of a message created from MIME.",
            ),
        }
    }

    fn create_folder(&self, parent: Option<&str>) -> Resp {
        let o = match json_object(self.r) {
            Ok(o) => o,
            Err(resp) => return resp,
        };
        const READ_ONLY: &[&str] = &[
            "id",
            "parentFolderId",
            "childFolderCount",
            "unreadItemCount",
            "totalItemCount",
            "sizeInBytes",
        ];
        if let Some(k) = o.keys().find(|k| {
            !k.starts_with('@')
                && !["displayName", "isHidden"].contains(&k.as_str())
                && !READ_ONLY.contains(&k.as_str())
        }) {
            return unknown_property(self.r, k, "mailFolder");
        }
        let (name, hidden) = match (
            string_prop(self.r, &o, "displayName"),
            bool_prop(self.r, &o, "isHidden"),
        ) {
            (Ok(n), Ok(h)) => (n, h.unwrap_or(false)),
            (Err(resp), _) | (_, Err(resp)) => return resp,
        };
        let Some(name) = name.filter(|n| !n.trim().is_empty()) else {
            return bad_request(self.r, "A mail folder needs a non-empty 'displayName'.");
        };
        match self
            .mb
            .create_folder(parent.unwrap_or("msgfolderroot"), &name, hidden)
        {
            Ok(idx) => {
                let d = lock(&self.mb.data);
                let mut v = self.folder_json(&d, idx, None);
                drop(d);
                v["@odata.context"] = json!(self.context("mailFolders/$entity"));
                created(ok_json(self.r, &v))
            }
            Err(CreateFolderError::UnknownParent) => self.not_found(),
            Err(CreateFolderError::SearchFolder) => self.err(
                400,
                "ErrorInvalidRequest",
                "A search folder (mailSearchFolder) cannot have child mail folders.",
            ),
            Err(CreateFolderError::Exists) => self.err(
                409,
                "ErrorFolderExists",
                &format!(
                    "A folder with the specified name already exists., Could not create folder '{name}'."
                ),
            ),
        }
    }

    fn create_message(&self, folder: Option<&str>) -> Resp {
        let mime = self
            .r
            .header("content-type")
            .is_some_and(|c| c.trim().to_ascii_lowercase().starts_with("text/plain"));
        let new = if mime {
            self.mime_item()
        } else {
            self.json_item()
        };
        let new = match new {
            Ok(n) => n,
            Err(resp) => return resp,
        };
        match self.mb.create_message(folder, new) {
            Ok(key) => created(self.message_response(key)),
            Err(e) => self.write_error(e),
        }
    }

    /// The message JSON of `key` with its `@odata.context`.
    fn message_response(&self, key: u64) -> Resp {
        let d = lock(&self.mb.data);
        let Some(m) = d.messages.get(&key) else {
            return self.not_found();
        };
        let mut v = self.message_json(&d, m, None, false);
        drop(d);
        v["@odata.context"] = json!(self.context("messages/$entity"));
        self.with_pref(ok_json(self.r, &v), None)
    }

    /// A message posted as base64 MIME: always a draft (Graph's rule), read, sent at its
    /// `Date`, received now; `$value` returns the posted bytes.
    fn mime_item(&self) -> Result<NewItem, Resp> {
        let compact: Vec<u8> = self
            .r
            .body
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let raw = STANDARD.decode(&compact).map_err(|_| {
            self.err(
                400,
                "ErrorMimeContentInvalidBase64String",
                "Invalid base64 string for MIME content.",
            )
        })?;
        let parsed = compose::parse_mime(&raw, &self.mb.ctx.owner).map_err(|()| {
            self.err(
                400,
                "ErrorMimeContentInvalid",
                "MIME content does not contain all required information, malformed formatting, or empty.",
            )
        })?;
        Ok(NewItem {
            synth: parsed.synth,
            content: Content::Raw(Arc::new(raw)),
            received: None,
            sent: parsed.date,
            is_read: true,
            is_draft: true,
            flag: None,
        })
    }

    /// A message posted as a JSON `message` resource.
    fn json_item(&self) -> Result<NewItem, Resp> {
        let r = self.r;
        let o = json_object(r)?;
        const WRITABLE: &[&str] = &[
            "importance",
            "isRead",
            "categories",
            "internetMessageHeaders",
            "flag",
            "singleValueExtendedProperties",
            "multiValueExtendedProperties",
            "attachments",
            "inferenceClassification",
        ];
        if let Some(k) = o.keys().find(|k| {
            !k.starts_with('@')
                && !WRITABLE.contains(&k.as_str())
                && !COMPOSE_PROPERTIES.contains(&k.as_str())
                && !READ_ONLY_MESSAGE_PROPERTIES.contains(&k.as_str())
        }) {
            return Err(unknown_property(r, k, "message"));
        }
        let body = match o.get("body") {
            None | Some(Value::Null) => Body {
                html: false,
                content: String::new(),
            },
            Some(Value::Object(b)) => {
                let html = match string_prop(r, b, "contentType")?.map(|t| t.to_ascii_lowercase()) {
                    None => false,
                    Some(t) if t == "text" => false,
                    Some(t) if t == "html" => true,
                    Some(_) => return Err(invalid_value(r, "body.contentType", "text or html")),
                };
                Body {
                    html,
                    content: string_prop(r, b, "content")?.unwrap_or_default(),
                }
            }
            Some(_) => return Err(invalid_value(r, "body", "an itemBody object")),
        };
        let from = match o.get("from").or(o.get("sender")) {
            None | Some(Value::Null) => self.mb.ctx.owner.clone(),
            Some(v) => recipient(r, v, "from")?,
        };
        let mut headers = Vec::new();
        for h in array(r, &o, "internetMessageHeaders")? {
            let (name, value) = pair(r, h, "internetMessageHeaders", "name", "value")?;
            let valid_name =
                name.len() > 2 && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
            if !name.to_ascii_lowercase().starts_with("x-") || !valid_name {
                return Err(graph_error(
                    r,
                    400,
                    "InvalidInternetMessageHeader",
                    &format!(
                        "The internet message header name '{name}' should start with 'x-' or 'X-'."
                    ),
                ));
            }
            if value.contains(['\r', '\n']) {
                return Err(invalid_value(
                    r,
                    "internetMessageHeaders",
                    "header values without line breaks",
                ));
            }
            headers.push((name.to_owned(), value.to_owned()));
        }
        let mut attachments = Vec::new();
        for a in array(r, &o, "attachments")? {
            let Some(a) = a.as_object() else {
                return Err(invalid_value(r, "attachments", "attachment objects"));
            };
            attachments.push(file_attachment(r, a)?);
        }
        let ext = extended(r, &o)?;
        let is_read = bool_prop(r, &o, "isRead")?
            .or(ext.flags.map(|f| f & MSGFLAG_READ != 0))
            .unwrap_or(true);
        let message_id = match string_prop(r, &o, "internetMessageId")? {
            Some(id) if !id.trim().is_empty() => {
                header_safe(r, "internetMessageId", &id, " ")?;
                id
            }
            _ => format!("<{}@emulator.test>", random_token(12)),
        };
        let body_text = if body.html {
            html_to_text(&body.content)
        } else {
            body.content.clone()
        };
        let synth = SynthMessage {
            subject: string_prop(r, &o, "subject")?.unwrap_or_default(),
            from,
            to: recipients(r, &o, "toRecipients")?,
            cc: recipients(r, &o, "ccRecipients")?,
            message_id,
            in_reply_to: None,
            body_text,
            attachments: Vec::new(),
            importance: importance(r, &o)?.unwrap_or("normal"),
            is_read,
            categories: string_list(r, &o, "categories")?.unwrap_or_default(),
        };
        let composed = Composed {
            body,
            bcc: recipients(r, &o, "bccRecipients")?,
            reply_to: recipients(r, &o, "replyTo")?,
            headers,
            attachments,
        };
        Ok(NewItem {
            synth,
            content: Content::Composed(Arc::new(composed)),
            received: ext.delivery,
            sent: ext.submit,
            is_read,
            is_draft: ext.flags.is_none_or(|f| f & MSGFLAG_UNSENT != 0),
            flag: flag(r, &o)?,
        })
    }

    fn update_message(&self, id: &str) -> Resp {
        let r = self.r;
        let o = match json_object(r) {
            Ok(o) => o,
            Err(resp) => return resp,
        };
        const UPDATABLE: &[&str] = &[
            "isRead",
            "categories",
            "flag",
            "importance",
            "inferenceClassification",
            "singleValueExtendedProperties",
        ];

        for k in o.keys().filter(|k| !k.starts_with('@')) {
            if READ_ONLY_MESSAGE_PROPERTIES.contains(&k.as_str()) {
                return self.err(
                    400,
                    "ErrorInvalidPropertySet",
                    &format!(
                        "Set action is invalid for property '{k}': it is read-only{}.",
                        if k == "isDraft" {
                            " (the draft state is fixed when a message is created, through PidTagMessageFlags 0x0E07)"
                        } else {
                            ""
                        }
                    ),
                );
            }
            if COMPOSE_PROPERTIES.contains(&k.as_str()) || k == "multiValueExtendedProperties" {
                return bad_request(
                    r,
                    &format!(
                        "The emulator does not update '{k}' (it updates {}).",
                        UPDATABLE.join(", ")
                    ),
                );
            }
            if !UPDATABLE.contains(&k.as_str()) {
                return unknown_property(r, k, "message");
            }
        }
        let patch = (|| {
            let ext = extended(r, &o)?;
            if ext.flags.is_some() {
                return Err(self.err(
                    400,
                    "ErrorInvalidPropertySet",
                    "Set action is invalid for property: PidTagMessageFlags (0x0E07) is read-only once a message is saved (MS-OXCMSG 2.2.1.6), so the draft state is fixed at creation; set isRead to change the read state.",
                ));
            }
            if ext.delivery.is_some() || ext.submit.is_some() {
                return Err(self.err(
                    400,
                    "ErrorInvalidPropertySet",
                    "Set action is invalid for property: the emulator sets PidTagMessageDeliveryTime and PidTagClientSubmitTime only when a message is created.",
                ));
            }
            Ok(Patch {
                is_read: bool_prop(r, &o, "isRead")?,
                categories: string_list(r, &o, "categories")?,
                flag: flag(r, &o)?,
                importance: importance(r, &o)?,
            })
        })();
        let patch = match patch {
            Ok(p) => p,
            Err(resp) => return resp,
        };
        match self.mb.patch_message(id, patch) {
            Ok(key) => self.message_response(key),
            Err(e) => self.write_error(e),
        }
    }

    fn add_attachment(&self, id: &str) -> Resp {
        let attachment = match json_object(self.r).and_then(|o| file_attachment(self.r, &o)) {
            Ok(a) => a,
            Err(resp) => return resp,
        };
        match self.mb.add_attachment(id, |att_id| Attachment {
            id: att_id,
            ..attachment
        }) {
            Ok((_, a)) => {
                let mut o = attachment_json(&a);
                o.insert(
                    "@odata.context".into(),
                    json!(self.context(&format!("messages('{id}')/attachments/$entity"))),
                );
                created(ok_json(self.r, &Value::Object(o)))
            }
            Err(e) => self.write_error(e),
        }
    }

    fn create_upload_session(&self, id: &str, grant: &Grant) -> Resp {
        let r = self.r;
        let item = match json_object(r) {
            Ok(o) => o
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("attachmentItem"))
                .and_then(|(_, v)| v.as_object().cloned()),
            Err(resp) => return resp,
        };
        let Some(item) = item else {
            return bad_request(
                r,
                "createUploadSession needs {\"AttachmentItem\":{\"attachmentType\":\"file\",\"name\",\"size\"}}.",
            );
        };
        let parsed = (|| {
            match string_prop(r, &item, "attachmentType")? {
                Some(t) if t.eq_ignore_ascii_case("file") => {}
                _ => return Err(invalid_value(r, "attachmentType", "'file'")),
            }
            let name = string_prop(r, &item, "name")?
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| bad_request(r, "AttachmentItem needs a 'name'."))?;
            let size = item
                .get("size")
                .and_then(Value::as_u64)
                .and_then(|s| usize::try_from(s).ok())
                .ok_or_else(|| invalid_value(r, "size", "the file size in bytes"))?;
            Ok((name, size, attachment_meta(r, &item)?))
        })();
        let (name, size, (content_type, content_id, is_inline)) = match parsed {
            Ok(p) => p,
            Err(resp) => return resp,
        };
        if size < MAX_INLINE_ATTACHMENT {
            return self.err(
                400,
                "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                &format!(
                    "Attachment size must be greater than the minimum size: upload sessions take {MAX_INLINE_ATTACHMENT} bytes or more; POST smaller files to .../attachments."
                ),
            );
        }
        if size > MAX_SESSION_ATTACHMENT {
            return self.err(
                400,
                "ErrorMessageSizeExceeded",
                &format!(
                    "The message exceeds the maximum supported size: attachments are limited to {MAX_SESSION_ATTACHMENT} bytes."
                ),
            );
        }
        let message = {
            let d = lock(&self.mb.data);
            match d.message_by_id(id) {
                Some(m) if matches!(m.content, Content::Composed(_)) => m.immutable_id.clone(),
                Some(_) => return self.write_error(WriteError::NotComposed),
                None => return self.not_found(),
            }
        };
        let sid = random_token(24);
        let expires_at = Utc::now() + SESSION_LIFETIME;
        let url = format!(
            "{}/users/{}/messages/{id}/attachmentSessions/{sid}",
            self.shared.graph_url(),
            self.mb.object_id
        );
        let mut uploads = lock(&self.shared.uploads);
        // Abandoned sessions go when they expire.
        uploads.retain(|_, s| s.expires > Instant::now());
        uploads.insert(
            sid,
            UploadSession {
                mailbox: self.mb.upn.clone(),
                message,
                url_message: id.to_owned(),
                content_type: content_type.unwrap_or_else(|| guess_type(&name)),
                name,
                is_inline,
                content_id,
                size,
                data: Vec::new(),
                grant: grant.clone(),
                expires: Instant::now() + SESSION_LIFETIME,
                expires_at,
            },
        );
        drop(uploads);
        let body = json!({
            "@odata.context": format!("{}/$metadata#microsoft.graph.uploadSession", self.shared.graph_url()),
            "uploadUrl": url,
            "expirationDateTime": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "nextExpectedRanges": ["0-"],
        });
        created(ok_json(r, &body))
    }

    fn upload_range(&self, message: &str, session: &str) -> Resp {
        let r = self.r;
        let Some((start, end, total)) = r.header("content-range").and_then(content_range) else {
            return bad_request(
                r,
                "A PUT to an upload URL needs 'Content-Range: bytes {start}-{end}/{total}'.",
            );
        };
        if r.body.len() > MAX_REQUEST {
            return self.err(
                413,
                "RequestEntityTooLarge",
                &format!("Upload at most {MAX_REQUEST} bytes per PUT."),
            );
        }
        let done = {
            let mut uploads = lock(&self.shared.uploads);
            let Some(s) = uploads
                .get_mut(session)
                .filter(|s| s.mailbox == self.mb.upn && s.url_message == message)
            else {
                return self.not_found();
            };
            if total != s.size || start != s.data.len() {
                return self.err(
                    416,
                    "InvalidRange",
                    &format!(
                        "Upload the bytes of the file in order: the next range starts at {} of {} bytes (nextExpectedRanges).",
                        s.data.len(),
                        s.size
                    ),
                );
            }
            if end - start + 1 != r.body.len() {
                return bad_request(
                    r,
                    &format!(
                        "Content-Range announces {} bytes, the body has {}.",
                        end - start + 1,
                        r.body.len()
                    ),
                );
            }
            s.data.extend_from_slice(&r.body);
            if s.data.len() < s.size {
                let body = json!({
                    "@odata.context": format!("{}/$metadata#microsoft.graph.uploadSession", self.shared.graph_url()),
                    "expirationDateTime": s.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    "nextExpectedRanges": [s.data.len().to_string()],
                });
                return ok_json(r, &body);
            }
            uploads.remove(session)
        };
        let Some(s) = done else {
            return self.not_found();
        };
        let result = self.mb.add_attachment(&s.message, |att_id| Attachment {
            id: att_id,
            name: s.name,
            content_type: s.content_type,
            content_id: s.content_id,
            is_inline: s.is_inline,
            bytes: Arc::new(s.data),
            last_modified: Utc::now(),
        });
        match result {
            Ok((_, a)) => {
                let location = format!(
                    "{}/users('{}')/messages('{}')/attachments('{}')",
                    self.shared.graph_url(),
                    self.mb.object_id,
                    s.url_message,
                    a.id
                );
                Resp::new(201, "text/plain", "").with_header("Location", location)
            }
            Err(e) => self.write_error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse_and_reject_garbage() {
        assert_eq!(content_range("bytes 0-9/20"), Some((0, 9, 20)));
        assert_eq!(content_range("bytes 10-19/20"), Some((10, 19, 20)));
        assert_eq!(content_range("bytes 10-20/20"), None);
        assert_eq!(content_range("bytes 5-4/20"), None);
        assert_eq!(content_range("0-9/20"), None);
        assert_eq!(content_range("bytes x-9/20"), None);
    }

    #[test]
    fn system_times_take_offsets_or_utc_and_drop_fractions() {
        let t = |s: &str| system_time(s).map(graph_time);
        assert_eq!(
            t("2024-01-02T03:04:05Z").as_deref(),
            Some("2024-01-02T03:04:05Z")
        );
        assert_eq!(
            t("2024-01-02T04:04:05.750+01:00").as_deref(),
            Some("2024-01-02T03:04:05Z")
        );
        assert_eq!(
            t("2024-01-02T03:04:05").as_deref(),
            Some("2024-01-02T03:04:05Z")
        );
        assert_eq!(t("yesterday"), None);
    }
}
