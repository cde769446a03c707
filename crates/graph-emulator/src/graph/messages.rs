//! Message endpoints: listing with OData options, single message JSON, `$value` MIME.

use std::collections::HashMap;

use base64::Engine;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Ctx, ok_json, query_error};
use crate::delta;
use crate::mailbox::{Content, MailboxData, Message};
use crate::odata::{self, Filter, OrderBy, Prop, QueryError};
use crate::server::Resp;
use crate::synth::{self, Person};
use crate::util::{graph_time, lock, query_encode};

/// A message property and how to compute it (computed only when selected).
type Field<'a> = (&'static str, Box<dyn Fn() -> Value + 'a>);

impl Ctx<'_> {
    pub(super) fn select(
        &self,
        q: &HashMap<String, String>,
    ) -> Result<Option<Vec<&'static str>>, QueryError> {
        match q.get("$select") {
            Some(s) => odata::parse_select(s, odata::MESSAGE_PROPERTIES, "message").map(Some),
            None => Ok(None),
        }
    }

    pub(super) fn messages(&self, folder: Option<&str>) -> Resp {
        let q = self.r.query_map();
        let parsed = (|| {
            let filter = match q.get("$filter") {
                Some(f) => odata::parse_filter(f)?,
                None => Filter::default(),
            };
            let order = match q.get("$orderby") {
                Some(o) => odata::parse_orderby(o)?,
                None => Vec::new(),
            };
            odata::check_filter_orderby(&filter, &order)?;
            Ok::<_, QueryError>((filter, order, self.select(&q)?, self.paging(&q)?))
        })();
        let (filter, order, select, paging) = match parsed {
            Ok(x) => x,
            Err(e) => return query_error(self.r, e),
        };
        let d = lock(&self.mb.data);
        let keys = match folder {
            Some(f) => match d.folder_index(f) {
                Some(i) => d.folder_message_keys(i),
                None => return self.not_found(),
            },
            None => d.all_message_keys(),
        };
        let mut msgs: Vec<(u64, &Message)> = keys
            .iter()
            .filter_map(|k| d.messages.get(k).map(|m| (*k, m)))
            .filter(|(_, m)| filter.matches(&delta::subject_of(&d, m)))
            .collect();
        let order = if order.is_empty() {
            vec![OrderBy {
                prop: Prop::Received,
                descending: true,
            }]
        } else {
            order
        };
        msgs.sort_by(|a, b| {
            for o in &order {
                let c = match o.prop {
                    Prop::Received => a.1.received.cmp(&b.1.received),
                    Prop::Created => a.1.created.cmp(&b.1.created),
                    Prop::LastModified => a.1.last_modified.cmp(&b.1.last_modified),
                    Prop::Sent => a.1.sent.cmp(&b.1.sent),
                    _ => a.1.synth.subject.cmp(&b.1.synth.subject),
                };
                let c = if o.descending { c.reverse() } else { c };
                if c != std::cmp::Ordering::Equal {
                    return c;
                }
            }
            a.0.cmp(&b.0)
        });
        let total = msgs.len();
        let page: Vec<Value> = msgs
            .iter()
            .skip(paging.skip)
            .take(paging.top)
            .map(|(_, m)| self.message_json(&d, m, select.as_deref(), false))
            .collect();
        let what = match folder {
            Some(f) => format!("mailFolders('{f}')/messages"),
            None => "messages".to_owned(),
        };
        drop(d);
        let what = match &select {
            Some(s) => format!("{what}({})", s.join(",")),
            None => what,
        };
        let body = self.collection_page(&q, &what, page, total, &paging);
        let pref = paging.from_prefer.then_some(paging.top);
        self.with_pref(ok_json(self.r, &body), pref)
    }

    pub(super) fn message(&self, id: &str) -> Resp {
        let q = self.r.query_map();
        let select = match self.select(&q) {
            Ok(s) => s,
            Err(e) => return query_error(self.r, e),
        };
        let d = lock(&self.mb.data);
        let Some(m) = d.message_by_id(id) else {
            return self.not_found();
        };
        let mut v = self.message_json(&d, m, select.as_deref(), false);
        v["@odata.context"] = json!(self.context("messages/$entity"));
        drop(d);
        self.with_pref(ok_json(self.r, &v), None)
    }

    pub(super) fn value(&self, id: &str) -> Resp {
        let m = {
            let d = lock(&self.mb.data);
            match d.message_by_id(id) {
                Some(m) => m.clone(),
                None => return self.not_found(),
            }
        };
        let bytes = self.mb.render(&m);
        self.shared.stats.download(&self.mb.upn, id);
        let request_id = uuid::Uuid::new_v4().to_string();
        Resp::new(200, "text/plain", Bytes::from(bytes)).with_header("request-id", request_id)
    }

    /// JSON of a message. `delta`: add `@odata.type` as delta responses do.
    pub(super) fn message_json(
        &self,
        d: &MailboxData,
        m: &Message,
        select: Option<&[&str]>,
        delta: bool,
    ) -> Value {
        let folder = &d.folders[m.folder];
        let id = m.id(self.immutable);
        let s = &m.synth;
        let recipient =
            |p: &Person| json!({"emailAddress": {"name": p.name, "address": p.address}});
        let mut o = Map::new();
        if delta {
            o.insert("@odata.type".into(), json!("#microsoft.graph.message"));
        }
        o.insert(
            "@odata.etag".into(),
            json!(format!("W/\"{}\"", m.change_key())),
        );
        let want = |k: &str| {
            k == "id"
                || select.is_some_and(|s| s.contains(&k))
                || (select.is_none() && k != "internetMessageHeaders" && k != "uniqueBody")
        };
        let conv_topic = s.subject.trim_start_matches("Re: ").to_owned();
        let conv = {
            let dg = Sha256::digest(format!("{}:{conv_topic}", self.mb.upn).as_bytes());
            format!(
                "AAQkA{}=",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&dg[..24])
            )
        };
        let fields: Vec<Field<'_>> = vec![
            ("id", Box::new(|| json!(id))),
            ("createdDateTime", Box::new(|| json!(graph_time(m.created)))),
            (
                "lastModifiedDateTime",
                Box::new(|| json!(graph_time(m.last_modified))),
            ),
            ("changeKey", Box::new(|| json!(m.change_key()))),
            ("categories", Box::new(|| json!(s.categories))),
            (
                "receivedDateTime",
                Box::new(|| json!(graph_time(m.received))),
            ),
            ("sentDateTime", Box::new(|| json!(graph_time(m.sent)))),
            ("hasAttachments", Box::new(|| json!(m.has_attachments()))),
            ("internetMessageId", Box::new(|| json!(s.message_id))),
            ("subject", Box::new(|| json!(s.subject))),
            ("bodyPreview", Box::new(|| json!(synth::body_preview(s)))),
            ("importance", Box::new(|| json!(s.importance))),
            ("parentFolderId", Box::new(|| json!(folder.id))),
            ("conversationId", Box::new(|| json!(conv))),
            (
                "conversationIndex",
                Box::new(|| {
                    json!(
                        base64::engine::general_purpose::STANDARD
                            .encode(&Sha256::digest(conv_topic.as_bytes())[..22])
                    )
                }),
            ),
            ("isDeliveryReceiptRequested", Box::new(|| json!(false))),
            ("isReadReceiptRequested", Box::new(|| json!(false))),
            ("isRead", Box::new(|| json!(m.is_read))),
            ("isDraft", Box::new(|| json!(m.is_draft))),
            (
                "webLink",
                Box::new(|| {
                    json!(format!(
                        "https://outlook.office365.com/owa/?ItemID={}&exvsurl=1&viewmodel=ReadMessageItem",
                        query_encode(id)
                    ))
                }),
            ),
            ("inferenceClassification", Box::new(|| json!("focused"))),
            ("body", Box::new(|| self.body_json(m))),
            ("uniqueBody", Box::new(|| self.body_json(m))),
            ("sender", Box::new(|| recipient(&s.from))),
            ("from", Box::new(|| recipient(&s.from))),
            (
                "toRecipients",
                Box::new(|| json!(s.to.iter().map(recipient).collect::<Vec<_>>())),
            ),
            (
                "ccRecipients",
                Box::new(|| json!(s.cc.iter().map(recipient).collect::<Vec<_>>())),
            ),
            ("bccRecipients", Box::new(|| json!([]))),
            ("replyTo", Box::new(|| json!([]))),
            (
                "flag",
                Box::new(|| match &m.flag {
                    Some(f) => f.as_ref().clone(),
                    None => json!({"flagStatus": "notFlagged"}),
                }),
            ),
            (
                "internetMessageHeaders",
                Box::new(|| {
                    json!([
                        {"name": "Message-ID", "value": s.message_id},
                        {"name": "Subject", "value": synth::encode_word(&s.subject)},
                        {"name": "From", "value": format!("{} <{}>", s.from.name, s.from.address)},
                        {"name": "Date", "value": m.sent.to_rfc2822()},
                        {"name": "MIME-Version", "value": "1.0"},
                    ])
                }),
            ),
        ];
        for (k, f) in fields {
            if want(k) {
                o.insert(k.into(), f());
            }
        }
        Value::Object(o)
    }

    /// `body`/`uniqueBody`: HTML, or plain text when the client prefers it. A message created
    /// from JSON keeps the body it was given (HTML turns into text on request).
    pub(super) fn body_json(&self, m: &Message) -> Value {
        let s = &m.synth;
        if let Content::Composed(c) = &m.content {
            return match (c.body.html, self.text_body) {
                (true, false) => json!({"contentType": "html", "content": c.body.content}),
                (true, true) => json!({"contentType": "text", "content": s.body_text}),
                (false, _) => json!({"contentType": "text", "content": c.body.content}),
            };
        }
        if self.text_body {
            json!({"contentType": "text", "content": s.body_text})
        } else {
            json!({"contentType": "html", "content": synth::body_html(s)})
        }
    }
}
