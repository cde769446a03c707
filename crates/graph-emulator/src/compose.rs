//! MIME of messages created over HTTP: parsing the MIME posted to `POST .../messages`
//! (`Content-Type: text/plain`, base64) into the fields Graph shows (subject, addresses,
//! `sentDateTime` from `Date`, body, attachments), and generating the MIME that `$value`
//! returns for messages created from JSON.
//!
//! Parsing uses `mail-parser` (lenient, as Exchange is with real-world mail). Generation is
//! deterministic: the same message state gives the same bytes (the boundary derives from the
//! immutable id), with `multipart/mixed` only when there are attachments, the body as
//! quoted-printable UTF-8 and attachments in base64 with RFC 2231 file names.

use chrono::{DateTime, Utc};
use mail_parser::{MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

use crate::mailbox::{Composed, Message};
use crate::synth::{
    AttachmentSpec, Person, SynthMessage, address_list, base64_lines, encode_word, mailbox_header,
    quoted_printable, rfc2231_filename,
};

/// The fields of a message posted as MIME.
#[derive(Debug)]
pub(crate) struct ParsedMime {
    pub(crate) synth: SynthMessage,
    /// The `Date` header (Graph's `sentDateTime`).
    pub(crate) date: Option<DateTime<Utc>>,
}

/// Headers that show that the bytes are a message (at least one is needed).
const MESSAGE_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
];

/// Parses posted MIME; `owner` is the `from` when the MIME has no `From`. `Err` = not a
/// message (empty, or no header line a message has).
pub(crate) fn parse_mime(raw: &[u8], owner: &Person) -> Result<ParsedMime, ()> {
    let msg = MessageParser::default().parse(raw).ok_or(())?;
    let known = msg.headers().iter().any(|h| {
        MESSAGE_HEADERS
            .iter()
            .any(|k| h.name().eq_ignore_ascii_case(k))
    });
    if raw.iter().all(u8::is_ascii_whitespace) || !known {
        return Err(());
    }
    let people = |a: Option<&mail_parser::Address<'_>>| -> Vec<Person> {
        a.map(|a| {
            a.iter()
                .filter_map(|x| {
                    let address = x.address()?.to_owned();
                    Some(Person {
                        name: x.name().map_or_else(|| address.clone(), str::to_owned),
                        address,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let from = people(msg.from())
        .into_iter()
        .next()
        .unwrap_or(owner.clone());
    let message_id = match msg.message_id() {
        Some(id) => format!("<{id}>"),
        None => {
            let d = Sha256::digest(raw);
            let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("<{hex}@emulator.test>")
        }
    };
    let body_text = msg
        .body_text(0)
        .map(|t| t.into_owned())
        .or_else(|| msg.body_html(0).map(|h| html_to_text(&h)))
        .unwrap_or_default();
    let header = |name: &str| msg.header_raw(name).map(|v| v.trim().to_ascii_lowercase());
    let importance = match (header("importance").as_deref(), header("x-priority")) {
        (Some("high"), _) => "high",
        (Some("low"), _) => "low",
        (Some(_), _) => "normal",
        (None, Some(p)) if p.starts_with('1') || p.starts_with('2') => "high",
        (None, Some(p)) if p.starts_with('4') || p.starts_with('5') => "low",
        _ => "normal",
    };
    let attachments = msg
        .attachments()
        .map(|a| AttachmentSpec {
            name: a.attachment_name().unwrap_or("attachment").to_owned(),
            content_type: "application/octet-stream",
            size: a.contents().len(),
            seed: 0,
        })
        .collect();
    let synth = SynthMessage {
        subject: msg.subject().unwrap_or_default().to_owned(),
        from,
        to: people(msg.to()),
        cc: people(msg.cc()),
        message_id,
        in_reply_to: msg.in_reply_to().as_text().map(|t| format!("<{t}>")),
        body_text,
        attachments,
        importance,
        is_read: true,
        categories: Vec::new(),
    };
    let date = msg
        .date()
        .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0));
    Ok(ParsedMime { synth, date })
}

/// Plain text of an HTML body, for `bodyPreview` and `Prefer: outlook.body-content-type="text"`:
/// tags dropped, a line break for `br` and the end of block elements, head/style/script content
/// dropped, common entities decoded.
pub(crate) fn html_to_text(html: &str) -> String {
    const BREAKS: &[&str] = &[
        "br", "/p", "/div", "/li", "/tr", "/h1", "/h2", "/h3", "/h4", "/h5", "/h6", "/title",
    ];
    const HIDDEN: &[&str] = &["head", "style", "script"];
    let mut out = String::with_capacity(html.len());
    let mut tag: Option<String> = None;
    let mut hidden: Option<&str> = None;
    for c in html.chars() {
        match (&mut tag, c) {
            (None, '<') => tag = Some(String::new()),
            (Some(t), '>') => {
                let t = t.trim();
                let (slash, rest) = t.strip_prefix('/').map_or(("", t), |r| ("/", r));
                let word = rest
                    .split(|c: char| c.is_whitespace() || c == '/')
                    .next()
                    .unwrap_or_default();
                let name = format!("{slash}{}", word.to_ascii_lowercase());
                match hidden {
                    Some(h) if name.strip_prefix('/') == Some(h) => hidden = None,
                    Some(_) => {}
                    None => {
                        if let Some(h) = HIDDEN.iter().find(|h| **h == name) {
                            hidden = Some(h);
                        } else if BREAKS.contains(&name.as_str()) {
                            out.push('\n');
                        }
                    }
                }
                tag = None;
            }
            (Some(t), c) => t.push(c),
            (None, c) if hidden.is_none() => out.push(c),
            (None, _) => {}
        }
    }
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Text with every line break as CRLF.
fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// MIME of a message created from JSON, from its current state.
pub(crate) fn render(m: &Message, c: &Composed) -> Vec<u8> {
    let s = &m.synth;
    let mut h = String::new();
    h.push_str(&format!("From: {}\r\n", mailbox_header(&s.from)));
    for (name, list) in [
        ("To", &s.to),
        ("Cc", &s.cc),
        ("Bcc", &c.bcc),
        ("Reply-To", &c.reply_to),
    ] {
        if !list.is_empty() {
            h.push_str(&format!("{name}: {}\r\n", address_list(list)));
        }
    }
    h.push_str(&format!("Subject: {}\r\n", encode_word(&s.subject)));
    h.push_str(&format!("Date: {}\r\n", m.sent.to_rfc2822()));
    h.push_str(&format!("Message-ID: {}\r\n", s.message_id));
    if let Some(r) = &s.in_reply_to {
        h.push_str(&format!("In-Reply-To: {r}\r\nReferences: {r}\r\n"));
    }
    for (name, value) in &c.headers {
        h.push_str(&format!("{name}: {}\r\n", encode_word(value)));
    }
    if s.importance != "normal" {
        h.push_str(&format!("Importance: {}\r\n", s.importance));
    }
    h.push_str("MIME-Version: 1.0\r\n");
    let body = format!(
        "Content-Type: text/{}; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n",
        if c.body.html { "html" } else { "plain" },
        quoted_printable(&crlf(&c.body.content)),
    );
    let mut out = h.into_bytes();
    if c.attachments.is_empty() {
        out.extend_from_slice(body.as_bytes());
        return out;
    }
    let d = Sha256::digest(m.immutable_id.as_bytes());
    let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
    let boundary = format!("----=_Emu_{hex}");
    out.extend_from_slice(
        format!(
            "Content-Type: multipart/mixed;\r\n boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n{body}"
        )
        .as_bytes(),
    );
    for a in &c.attachments {
        let mut part = format!(
            "\r\n--{boundary}\r\nContent-Type: {}\r\nContent-Disposition: {};\r\n {}\r\n",
            a.content_type,
            if a.is_inline { "inline" } else { "attachment" },
            rfc2231_filename(&a.name),
        );
        if let Some(cid) = &a.content_id {
            part.push_str(&format!("Content-ID: <{cid}>\r\n"));
        }
        part.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
        out.extend_from_slice(part.as_bytes());
        out.extend_from_slice(base64_lines(&a.bytes).as_bytes());
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Person {
        Person {
            name: "Adele Vance".into(),
            address: "adele.vance@emulator.test".into(),
        }
    }

    #[test]
    fn parses_headers_dates_body_and_attachments() {
        let raw = b"From: =?UTF-8?B?SsO2cmc=?= <joerg@example.com>\r\nTo: a@example.com, B <b@example.com>\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nDate: Tue, 02 Jan 2024 03:04:05 +0100\r\nMessage-ID: <m1@example.com>\r\nImportance: High\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHallo Welt\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b--\r\n";
        let p = parse_mime(raw, &owner()).expect("parses");
        assert_eq!(p.synth.subject, "Grüße");
        assert_eq!(p.synth.from.name, "Jörg");
        assert_eq!(p.synth.to.len(), 2);
        assert_eq!(p.synth.to[0].name, "a@example.com");
        assert_eq!(p.synth.message_id, "<m1@example.com>");
        assert_eq!(p.synth.importance, "high");
        assert_eq!(p.synth.body_text.trim(), "Hallo Welt");
        assert_eq!(p.synth.attachments.len(), 1);
        assert_eq!(p.synth.attachments[0].name, "a.pdf");
        assert_eq!(p.synth.attachments[0].size, 4);
        assert_eq!(
            p.date.map(|d| d.to_rfc3339()).as_deref(),
            Some("2024-01-02T02:04:05+00:00")
        );
    }

    #[test]
    fn refuses_what_is_not_a_message() {
        assert!(parse_mime(b"", &owner()).is_err());
        assert!(parse_mime(b"  \r\n", &owner()).is_err());
        assert!(parse_mime(b"just some words, no header at all", &owner()).is_err());
        // A message without From gets the mailbox owner, as a draft would.
        let p = parse_mime(b"Subject: hi\r\n\r\nbody", &owner()).expect("parses");
        assert_eq!(p.synth.from, owner());
        assert!(p.synth.message_id.ends_with("@emulator.test>"));
    }

    fn composed_message(synth: SynthMessage, composed: Composed) -> Message {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        Message {
            number: 1,
            immutable_id: "AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0AAAA=".into(),
            rest_id: "AAMkAGI2AAA=".into(),
            moves: 0,
            folder: 1,
            created: t,
            received: t,
            sent: t,
            last_modified: t,
            revision: 0,
            is_read: true,
            is_draft: false,
            flag: None,
            change_seq: 1,
            synth: std::sync::Arc::new(synth),
            content: crate::mailbox::Content::Composed(std::sync::Arc::new(composed.clone())),
        }
    }

    fn synth(subject: &str, from: Person, to: Vec<Person>, body: &str) -> SynthMessage {
        SynthMessage {
            subject: subject.to_owned(),
            from,
            to,
            cc: Vec::new(),
            message_id: "<x@example.com>".into(),
            in_reply_to: None,
            body_text: body.to_owned(),
            attachments: Vec::new(),
            importance: "normal",
            is_read: true,
            categories: Vec::new(),
        }
    }

    fn composed(body: &str, attachments: Vec<crate::mailbox::Attachment>) -> Composed {
        Composed {
            body: crate::mailbox::Body {
                html: false,
                content: body.to_owned(),
            },
            bcc: Vec::new(),
            reply_to: Vec::new(),
            headers: Vec::new(),
            attachments,
        }
    }

    #[test]
    fn control_characters_cannot_inject_headers() {
        let evil = Person {
            name: "Mallory\r\nBcc: victim@example.com".into(),
            address: "m@example.com".into(),
        };
        let s = synth(
            "hi\r\nBcc: victim@example.com",
            evil.clone(),
            vec![owner()],
            "x",
        );
        let c = composed("x", Vec::new());
        let mime = render(&composed_message(s, c.clone()), &c);
        let text = String::from_utf8(mime.clone()).expect("ASCII");
        assert!(!text.contains("\r\nBcc:"), "{text}");
        let back = parse_mime(&mime, &owner()).expect("parses");
        assert_eq!(back.synth.subject, "hi\r\nBcc: victim@example.com");
        assert_eq!(back.synth.from, evil);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = parse_mime(&raw, &owner());
        }

        #[test]
        fn rendered_messages_parse_back_to_their_fields(
            subject in "\\PC{1,60}",
            name in "[A-Za-zÀ-ÿ'\".,@ ]{1,20}",
            body in "[^\r]{0,200}",
            attachment in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        ) {
            let from = Person { name: name.trim().to_owned(), address: "a@example.com".into() };
            let att = crate::mailbox::Attachment {
                id: "1".into(),
                name: "f.bin".into(),
                content_type: "application/octet-stream".into(),
                content_id: None,
                is_inline: false,
                bytes: std::sync::Arc::new(attachment.clone()),
                last_modified: DateTime::from_timestamp(0, 0).unwrap_or_default(),
            };
            let c = composed(&body, vec![att]);
            let m = composed_message(synth(&subject, from.clone(), vec![owner()], &body), c.clone());
            let back = parse_mime(&render(&m, &c), &owner()).expect("parses");
            proptest::prop_assert_eq!(back.synth.subject.trim(), subject.trim());
            if !from.name.is_empty() {
                proptest::prop_assert_eq!(&back.synth.from, &from);
            }
            proptest::prop_assert_eq!(&back.synth.to, &vec![owner()]);
            let (got, want) = (back.synth.body_text.replace("\r\n", "\n"), body.replace("\r\n", "\n"));
            proptest::prop_assert_eq!(got.trim_end(), want.trim_end());
            let parsed = MessageParser::default().parse(&render(&m, &c)).map(|p| {
                p.attachments().map(|a| a.contents().to_vec()).collect::<Vec<_>>()
            });
            proptest::prop_assert_eq!(parsed, Some(vec![attachment]));
        }
    }

    #[test]
    fn html_to_text_drops_tags_and_decodes_entities() {
        assert_eq!(
            html_to_text("<p>They were <b>awesome</b> &amp; fast&nbsp;!</p>"),
            "They were awesome & fast !\n"
        );
        assert_eq!(
            html_to_text(
                "<html><head><style>p {}</style></head><body><p>a</p><P>b<br/>c<BR>d</P></body></html>"
            ),
            "a\nb\nc\nd\n"
        );
    }
}
