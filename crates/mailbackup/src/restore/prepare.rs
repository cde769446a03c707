//! What a backed-up message becomes in a create request: the raw MIME (`--mode mime`), or
//! Graph's JSON message with its small attachments inline and the large ones left for an
//! upload session (the default). Pure: no Graph call, no store access.

use super::*;

/// Builds the create request of a message.
pub(super) fn prepare(
    mode: RestoreMode,
    mime: &[u8],
    info: &MessageInfo,
) -> Result<Prepared, Error> {
    let parsed = mail_parser::MessageParser::default().parse(mime);
    let message_id = parsed
        .as_ref()
        .and_then(|p| p.message_id())
        .map(|m| format!("<{m}>"))
        .or_else(|| info.internet_message_id.clone());
    let subject = parsed
        .as_ref()
        .and_then(|p| p.subject())
        .map(str::to_string)
        .or_else(|| info.subject.clone());
    if mode == RestoreMode::Mime && mime.len() <= MAX_INLINE_BYTES {
        return Ok(Prepared {
            mode,
            body: Body::new("text/plain", B64.encode(mime)),
            uploads: Vec::new(),
            message_id,
            subject,
            fell_back: false,
        });
    }
    let parsed = parsed.ok_or_else(|| Error::Protocol {
        url: String::new(),
        reason: "the backed-up message is not MIME that can be parsed".into(),
    })?;
    let (body, uploads) = json_message(&parsed, info, message_id.as_deref());
    Ok(Prepared {
        mode: RestoreMode::Json,
        body: Body::new(
            "application/json",
            serde_json::to_vec(&body).unwrap_or_default(),
        ),
        uploads,
        message_id,
        subject,
        fell_back: mode == RestoreMode::Mime,
    })
}

/// The JSON `message` of the recommended path, and the attachments too large to go in it.
fn json_message(
    p: &mail_parser::Message<'_>,
    info: &MessageInfo,
    message_id: Option<&str>,
) -> (Value, Vec<Upload>) {
    use mail_parser::MimeHeaders as _;
    let people = |a: Option<&mail_parser::Address<'_>>| -> Vec<Value> {
        a.map(|a| {
            a.iter()
                .filter_map(|x| {
                    let address = x.address()?;
                    Some(json!({"emailAddress": {"name": x.name().unwrap_or(address), "address": address}}))
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let date = p
        .date()
        .and_then(|d| chrono::DateTime::from_timestamp(d.to_timestamp(), 0));
    let sent = date
        .map(|d| d.to_rfc3339())
        .or_else(|| info.sent.clone())
        .or_else(|| info.received.clone());
    let received = info.received.clone().or_else(|| sent.clone());
    // PidTagMessageFlags: MSGFLAG_READ (0x1) or nothing; never MSGFLAG_UNSENT (0x8).
    let flags = if info.is_read.unwrap_or(true) {
        "1"
    } else {
        "0"
    };
    let mut props = vec![json!({"id": "Integer 0x0E07", "value": flags})];
    if let Some(r) = &received {
        props.push(json!({"id": "SystemTime 0x0E06", "value": r}));
    }
    if let Some(s) = &sent {
        props.push(json!({"id": "SystemTime 0x0039", "value": s}));
    }
    let body = match p.body_html(0) {
        Some(h) => json!({"contentType": "html", "content": h}),
        None => json!({"contentType": "text", "content": p.body_text(0).unwrap_or_default()}),
    };
    let mut msg = json!({
        "subject": p.subject().unwrap_or_default(),
        "toRecipients": people(p.to()),
        "ccRecipients": people(p.cc()),
        "bccRecipients": people(p.bcc()),
        "replyTo": people(p.reply_to()),
        "body": body,
        "singleValueExtendedProperties": props,
    });
    if let Some(from) = people(p.from()).into_iter().next() {
        msg["from"] = from;
    }
    if let Some(mid) = message_id {
        msg["internetMessageId"] = json!(mid);
    }
    let mut budget = MAX_INLINE_BYTES
        .saturating_sub(serde_json::to_vec(&msg).map_or(0, |v| v.len()))
        .saturating_mul(3)
        / 4;
    let mut inline = Vec::new();
    let mut uploads = Vec::new();
    for (n, part) in p.attachments().enumerate() {
        let bytes = part.contents().to_vec();
        let name = part
            .attachment_name()
            .map(str::to_string)
            .unwrap_or_else(|| format!("attachment-{}", n + 1));
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(st) => format!("{}/{}", ct.ctype(), st),
                None => ct.ctype().to_string(),
            })
            .unwrap_or_else(|| "application/octet-stream".into());
        let content_id = part
            .content_id()
            .map(|c| c.trim_matches(['<', '>']).to_string());
        let is_inline = part
            .content_disposition()
            .is_some_and(|d| d.ctype().eq_ignore_ascii_case("inline"));
        if bytes.len() + 1024 <= budget {
            budget -= bytes.len() + 1024;
            let mut a = json!({
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": name,
                "contentType": content_type,
                "contentBytes": B64.encode(&bytes),
                "isInline": is_inline,
            });
            if let Some(cid) = &content_id {
                a["contentId"] = json!(cid);
            }
            inline.push(a);
        } else {
            uploads.push(Upload {
                name,
                content_type,
                content_id,
                inline: is_inline,
                bytes,
            });
        }
    }
    if !inline.is_empty() {
        msg["attachments"] = Value::Array(inline);
    }
    (msg, uploads)
}
