//! Graph's JSON as this client reads and writes it: pages of collections, messages as listed,
//! folders, users, error bodies, and the body of a write.

use crate::hooks::MessageInfo;
use bytes::Bytes;
use serde::Deserialize;

/// An error answer's body (`{"error": {"code", "message"}}`).
#[derive(Debug, Deserialize)]
pub(super) struct GraphErrorBody {
    pub(super) error: GraphErrorInner,
}

#[derive(Debug, Deserialize)]
pub(super) struct GraphErrorInner {
    #[serde(default)]
    pub(super) code: String,
    #[serde(default)]
    pub(super) message: String,
}

/// One page of a collection.
#[derive(Debug, Deserialize)]
pub(crate) struct Page<T> {
    #[serde(default = "Vec::new")]
    pub(crate) value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    pub(crate) next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    pub(crate) delta_link: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EmailAddress {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    address: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Recipient {
    #[serde(rename = "emailAddress")]
    email_address: Option<EmailAddress>,
}

fn recipient_text(r: &Recipient) -> Option<String> {
    let e = r.email_address.as_ref()?;
    match (
        e.name.as_deref().filter(|n| !n.is_empty()),
        e.address.as_deref(),
    ) {
        (Some(n), Some(a)) => Some(format!("{n} <{a}>")),
        (None, Some(a)) => Some(a.to_string()),
        (Some(n), None) => Some(n.to_string()),
        (None, None) => None,
    }
}

fn recipients_text(rs: &Option<Vec<Recipient>>) -> Option<String> {
    let v: Vec<String> = rs.iter().flatten().filter_map(recipient_text).collect();
    (!v.is_empty()).then(|| v.join(", "))
}

/// A message as listed (normal listing or delta).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawMessage {
    pub(crate) id: String,
    created_date_time: Option<String>,
    last_modified_date_time: Option<String>,
    received_date_time: Option<String>,
    sent_date_time: Option<String>,
    subject: Option<String>,
    from: Option<Recipient>,
    to_recipients: Option<Vec<Recipient>>,
    cc_recipients: Option<Vec<Recipient>>,
    bcc_recipients: Option<Vec<Recipient>>,
    has_attachments: Option<bool>,
    parent_folder_id: Option<String>,
    internet_message_id: Option<String>,
    is_read: Option<bool>,
    #[serde(rename = "@removed")]
    pub(crate) removed: Option<serde_json::Value>,
}

impl RawMessage {
    pub(crate) fn into_info(self, mailbox: &str, folder: Option<&str>) -> MessageInfo {
        MessageInfo {
            mailbox: mailbox.to_string(),
            from: self.from.as_ref().and_then(recipient_text),
            to: recipients_text(&self.to_recipients),
            cc: recipients_text(&self.cc_recipients),
            bcc: recipients_text(&self.bcc_recipients),
            id: self.id,
            subject: self.subject,
            received: self.received_date_time,
            sent: self.sent_date_time,
            created: self.created_date_time,
            last_modified: self.last_modified_date_time,
            has_attachments: self.has_attachments,
            folder_id: folder.map(str::to_string).or(self.parent_folder_id),
            internet_message_id: self.internet_message_id,
            is_read: self.is_read,
        }
    }
}

/// A mail folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Folder {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) display_name: String,
    #[serde(default)]
    pub(super) child_folder_count: Option<u64>,
    #[serde(rename = "@odata.type", default)]
    pub(super) odata_type: Option<String>,
    /// Path from the root (display names, see [`crate::store::folder_path`]), filled by
    /// [`Graph::folders`].
    #[serde(skip)]
    pub(crate) path: String,
}

/// The body of a write.
#[derive(Debug, Clone)]
pub(crate) struct Body {
    pub(crate) content_type: &'static str,
    pub(crate) bytes: Bytes,
    /// For a `PUT` to an upload session: the `Content-Range`; the request then carries no
    /// bearer token.
    pub(crate) content_range: Option<String>,
}

impl Body {
    pub(crate) fn new(content_type: &'static str, bytes: impl Into<Bytes>) -> Body {
        Body {
            content_type,
            bytes: bytes.into(),
            content_range: None,
        }
    }
}

/// A user of the tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) user_principal_name: Option<String>,
}
