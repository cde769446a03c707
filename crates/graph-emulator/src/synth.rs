//! Deterministic synthetic messages: who, what, when, and their RFC 822 / MIME rendering.
//!
//! A message is fully determined by (mailbox seed, message number, revision), so ids, JSON and
//! MIME bytes are identical across runs. Rendering covers what a backup client must preserve:
//! realistic headers (Message-ID, Date, threading), non-ASCII subjects as RFC 2047 encoded-words,
//! `multipart/alternative` text and HTML bodies (quoted-printable), base64 attachments with RFC
//! 2231 non-ASCII file names, and occasional attachments larger than 1 MiB. Content is generated
//! on demand, never stored, so large mailboxes stay cheap. This module does not parse MIME.

use base64::Engine;
use chrono::{DateTime, Utc};

use crate::rng::SplitMix64;

/// A correspondent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Person {
    pub(crate) name: String,
    pub(crate) address: String,
}

/// An attachment description; bytes are generated from `seed` when rendered.
#[derive(Debug, Clone)]
pub(crate) struct AttachmentSpec {
    pub(crate) name: String,
    pub(crate) content_type: &'static str,
    pub(crate) size: usize,
    pub(crate) seed: u64,
}

/// Everything about a synthetic message except its mailbox state (folder, dates, read flag).
#[derive(Debug, Clone)]
pub(crate) struct SynthMessage {
    pub(crate) subject: String,
    pub(crate) from: Person,
    pub(crate) to: Vec<Person>,
    pub(crate) cc: Vec<Person>,
    pub(crate) message_id: String,
    pub(crate) in_reply_to: Option<String>,
    pub(crate) body_text: String,
    pub(crate) attachments: Vec<AttachmentSpec>,
    pub(crate) importance: &'static str,
    pub(crate) is_read: bool,
    pub(crate) categories: Vec<String>,
}

/// Per-mailbox generation parameters.
#[derive(Debug, Clone)]
pub(crate) struct SynthContext {
    pub(crate) seed: u64,
    pub(crate) owner: Person,
    pub(crate) large_every: u32,
    pub(crate) attachment_ratio: f64,
}

const FIRST: &[&str] = &[
    "Jörg", "Zoë", "Ana", "Liam", "Mei", "Olu", "Søren", "Chloé", "Ivan", "Priya", "Elena",
    "Tomás", "Yuki", "Noah", "Fatima", "Björn",
];
const LAST: &[&str] = &[
    "Müller",
    "Ångström",
    "García",
    "O'Brien",
    "Li",
    "Adeyemi",
    "Kowalski",
    "Dubois",
    "Petrov",
    "Nair",
    "Papadopoulou",
    "Hernández",
    "Tanaka",
    "Smith",
    "Haddad",
    "Løkke",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "example.net",
    "lieferant.example",
];
const SUBJECTS: &[&str] = &[
    "Quarterly report",
    "Grüße aus München",
    "Réunion budgétaire — ordre du jour",
    "会议纪要：第三季度",
    "Invoice #{n} overdue",
    "Lunch on Friday?",
    "Προσφορά για το έργο",
    "Your order has shipped",
    "Build failed on main (again)",
    "Встреча в понедельник",
    "Draft contract v{n}",
    "Photos from the trip 📷",
    "Ärger mit der Abrechnung für Äpfel, Öl und Übergrößen im Sommer — bitte dringend prüfen",
    "Weekly newsletter",
    "Re: question about the API",
    "Security alert: new sign-in",
];
const SENTENCES: &[&str] = &[
    "Please find the details below.",
    "Let me know if you have any questions.",
    "Die Zahlen für das dritte Quartal liegen jetzt vor.",
    "Merci de confirmer votre présence avant vendredi.",
    "The meeting moved to room 4.12 at 10:30.",
    "We need a decision by the end of the week.",
    "请查看附件中的文件。",
    "This line contains a long run of text that will need soft line breaks when it is encoded as quoted-printable because it is longer than seventy-six characters.",
    "Price: 42 € (incl. VAT = 19 %).",
    "Thanks, and have a great weekend!",
];
const CATEGORIES: &[&str] = &["Blue category", "Red category", "Projekt Ü"];

fn person(rng: &mut SplitMix64) -> Person {
    let first = *rng.pick(FIRST);
    let last = *rng.pick(LAST);
    let domain = *rng.pick(DOMAINS);
    let local: String = format!("{first}.{last}")
        .chars()
        .filter_map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                Some(c.to_ascii_lowercase())
            } else if c.is_alphabetic() {
                Some('x')
            } else {
                None
            }
        })
        .collect();
    Person {
        name: format!("{first} {last}"),
        address: format!("{local}@{domain}"),
    }
}

/// Generates message number `number` of a mailbox. `outgoing` messages (sent items, drafts)
/// are from the owner.
pub(crate) fn synthesize(ctx: &SynthContext, number: u64, outgoing: bool) -> SynthMessage {
    let mut rng = SplitMix64::from_parts(&[ctx.seed, number, 0x6d61_696c]);
    let other = person(&mut rng);
    let (from, mut to) = if outgoing {
        (ctx.owner.clone(), vec![other])
    } else {
        (other, vec![ctx.owner.clone()])
    };
    if rng.chance(0.3) {
        to.push(person(&mut rng));
    }
    let cc = if rng.chance(0.25) {
        vec![person(&mut rng)]
    } else {
        Vec::new()
    };
    let subject = rng
        .pick(SUBJECTS)
        .replace("{n}", &(number % 997).to_string());
    let mut msgid_rand = [0u8; 8];
    rng.fill(&mut msgid_rand);
    let domain = from.address.split('@').nth(1).unwrap_or("example.com");
    let message_id = format!("<{}.{number}@{domain}>", hex8(&msgid_rand));
    let in_reply_to = if subject.starts_with("Re:") {
        Some(format!("<thread-{}@{domain}>", number / 3))
    } else {
        None
    };
    let n_sentences = 2 + rng.below(6);
    let mut body_text = format!("Hello {},\r\n\r\n", to[0].name);
    for _ in 0..n_sentences {
        let sentence: &&str = rng.pick(SENTENCES);
        body_text.push_str(sentence);
        body_text.push(' ');
    }
    body_text.push_str(&format!(
        "\r\n\r\n-- \r\n{}\r\n(message {number})\r\n",
        from.name
    ));

    let mut attachments = Vec::new();
    let large = ctx.large_every > 0
        && number % u64::from(ctx.large_every) == u64::from(ctx.large_every) - 1;
    if large {
        attachments.push(AttachmentSpec {
            name: format!("scan-{number}.pdf"),
            content_type: "application/pdf",
            size: 1_100_000 + rng.below(600_000) as usize,
            seed: rng.next_u64(),
        });
    } else if rng.chance(ctx.attachment_ratio) {
        let count = 1 + rng.below(2);
        for i in 0..count {
            let (name, ct) = match rng.below(3) {
                0 => (format!("report-{number}-{i}.pdf"), "application/pdf"),
                1 => (
                    format!("Übersicht {number}.xlsx"),
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                ),
                _ => (format!("photo_{number}_{i}.jpg"), "image/jpeg"),
            };
            attachments.push(AttachmentSpec {
                name,
                content_type: ct,
                size: 500 + rng.below(60_000) as usize,
                seed: rng.next_u64(),
            });
        }
    }
    let importance = match rng.below(10) {
        0 => "high",
        1 => "low",
        _ => "normal",
    };
    let is_read = outgoing || rng.chance(0.7);
    let categories = if rng.chance(0.1) {
        vec![(*rng.pick(CATEGORIES)).to_owned()]
    } else {
        Vec::new()
    };
    SynthMessage {
        subject,
        from,
        to,
        cc,
        message_id,
        in_reply_to,
        body_text,
        attachments,
        importance,
        is_read,
        categories,
    }
}

fn hex8(b: &[u8; 8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// HTML version of the body.
pub(crate) fn body_html(m: &SynthMessage) -> String {
    let mut html = String::from(
        "<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\"></head><body>",
    );
    for para in m.body_text.split("\r\n\r\n") {
        html.push_str("<p>");
        html.push_str(&html_escape(para).replace("\r\n", "<br>"));
        html.push_str("</p>");
    }
    html.push_str("</body></html>");
    html
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// First 255 characters of the plain text body, as Graph's `bodyPreview`.
pub(crate) fn body_preview(m: &SynthMessage) -> String {
    let flat = m.body_text.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.chars().take(255).collect()
}

/// Whether a header text can go out as it is: ASCII without control characters (a CR or LF
/// would start a new header) and without `=?` (a reader would decode it as an encoded-word).
fn plain_header_text(s: &str) -> bool {
    s.is_ascii() && !s.contains("=?") && !s.chars().any(|c| c.is_control() && c != '\t')
}

/// Encodes a header value as RFC 2047 `B` encoded-words unless it is plain ASCII text. Words
/// stay under 75 characters and never split a UTF-8 character (RFC 2047 section 5).
pub(crate) fn encode_word(s: &str) -> String {
    if plain_header_text(s) {
        return s.to_owned();
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in s.chars() {
        // 45 bytes of UTF-8 -> 60 base64 chars + 12 of framing = 72 <= 75.
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", b64.encode(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", b64.encode(chunk.as_bytes())));
    }
    words.join("\r\n ")
}

/// `name <address>`: the name as atoms, as a quoted string (RFC 5322 specials), or as
/// encoded-words (non-ASCII or control characters).
pub(crate) fn mailbox_header(p: &Person) -> String {
    let atoms = p
        .name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " !#$%&*+-/=?^_`{|}~".contains(c));
    if plain_header_text(&p.name) && atoms {
        format!("{} <{}>", p.name, p.address)
    } else if plain_header_text(&p.name) {
        let quoted = p.name.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{quoted}\" <{}>", p.address)
    } else {
        format!("{} <{}>", encode_word(&p.name), p.address)
    }
}

pub(crate) fn address_list(ps: &[Person]) -> String {
    ps.iter()
        .map(mailbox_header)
        .collect::<Vec<_>>()
        .join(",\r\n ")
}

/// Quoted-printable encoding (RFC 2045 section 6.7) of UTF-8 text with CRLF line breaks.
pub(crate) fn quoted_printable(text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.split("\r\n").enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let mut col = 0;
        let bytes = line.as_bytes();
        for (j, &b) in bytes.iter().enumerate() {
            let last = j + 1 == bytes.len();
            let trailing_space = (b == b' ' || b == b'\t') && last;
            let enc = if trailing_space || b == b'=' || !(32..=126).contains(&b) && b != b'\t' {
                format!("={b:02X}")
            } else {
                (b as char).to_string()
            };
            if col + enc.len() > 75 {
                out.push_str("=\r\n");
                col = 0;
            }
            col += enc.len();
            out.push_str(&enc);
        }
    }
    out
}

pub(crate) fn base64_lines(data: &[u8]) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::with_capacity(enc.len() + enc.len() / 76 * 2 + 2);
    for chunk in enc.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

fn attachment_bytes(a: &AttachmentSpec) -> Vec<u8> {
    let mut rng = SplitMix64::new(a.seed);
    let mut data = vec![0u8; a.size];
    rng.fill(&mut data);
    let magic: &[u8] = match a.content_type {
        "application/pdf" => b"%PDF-1.7\n",
        "image/jpeg" => &[0xFF, 0xD8, 0xFF, 0xE0],
        _ => b"PK\x03\x04",
    };
    let n = magic.len().min(data.len());
    data[..n].copy_from_slice(&magic[..n]);
    data
}

pub(crate) fn rfc2231_filename(name: &str) -> String {
    // Names a quoted string cannot carry as they are take the RFC 2231 form as well.
    if name.is_ascii() && !name.contains(['"', '\\']) && !name.chars().any(|c| c.is_control()) {
        format!("filename=\"{name}\"")
    } else {
        let enc: String = name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("filename*=UTF-8''{enc}")
    }
}

/// Mutable state that shows in the MIME rendering.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RenderState {
    pub(crate) sent: DateTime<Utc>,
    pub(crate) received: DateTime<Utc>,
    pub(crate) revision: u32,
}

/// Renders the message as RFC 822 bytes with CRLF line endings.
pub(crate) fn render_mime(
    m: &SynthMessage,
    number: u64,
    st: RenderState,
    recipient_host: &str,
) -> Vec<u8> {
    let boundary_alt = format!("----=_Alt_{number:08x}_{:04x}", st.revision);
    let boundary_mix = format!("----=_Mix_{number:08x}_{:04x}", st.revision);
    let mut h = String::new();
    h.push_str(&format!(
        "Received: from mail.{} ([192.0.2.{}]) by {recipient_host} with ESMTPS;\r\n {}\r\n",
        m.from.address.split('@').nth(1).unwrap_or("example.com"),
        number % 250 + 1,
        st.received.to_rfc2822()
    ));
    h.push_str(&format!("From: {}\r\n", mailbox_header(&m.from)));
    h.push_str(&format!("To: {}\r\n", address_list(&m.to)));
    if !m.cc.is_empty() {
        h.push_str(&format!("Cc: {}\r\n", address_list(&m.cc)));
    }
    h.push_str(&format!("Subject: {}\r\n", encode_word(&m.subject)));
    h.push_str(&format!("Date: {}\r\n", st.sent.to_rfc2822()));
    h.push_str(&format!("Message-ID: {}\r\n", m.message_id));
    if let Some(r) = &m.in_reply_to {
        h.push_str(&format!("In-Reply-To: {r}\r\nReferences: {r}\r\n"));
    }
    if m.importance == "high" {
        h.push_str("Importance: high\r\nX-Priority: 1\r\n");
    }
    if st.revision > 0 {
        h.push_str(&format!("X-Emulator-Revision: {}\r\n", st.revision));
    }
    h.push_str("MIME-Version: 1.0\r\n");

    let mut text = m.body_text.clone();
    let mut msg = m.clone();
    if st.revision > 0 {
        text.push_str(&format!("\r\n[edited, revision {}]\r\n", st.revision));
        msg.body_text = text.clone();
    }
    let alt = format!(
        "--{boundary_alt}\r\nContent-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n--{boundary_alt}\r\nContent-Type: text/html; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n--{boundary_alt}--\r\n",
        quoted_printable(&text),
        quoted_printable(&body_html(&msg)),
    );
    let mut out = h.into_bytes();
    if m.attachments.is_empty() {
        out.extend_from_slice(
            format!("Content-Type: multipart/alternative;\r\n boundary=\"{boundary_alt}\"\r\n\r\n")
                .as_bytes(),
        );
        out.extend_from_slice(alt.as_bytes());
    } else {
        out.extend_from_slice(
            format!("Content-Type: multipart/mixed;\r\n boundary=\"{boundary_mix}\"\r\n\r\nThis is a multi-part message in MIME format.\r\n\r\n--{boundary_mix}\r\nContent-Type: multipart/alternative;\r\n boundary=\"{boundary_alt}\"\r\n\r\n").as_bytes(),
        );
        out.extend_from_slice(alt.as_bytes());
        for a in &m.attachments {
            out.extend_from_slice(
                format!(
                    "\r\n--{boundary_mix}\r\nContent-Type: {}\r\nContent-Disposition: attachment;\r\n {}\r\nContent-Transfer-Encoding: base64\r\n\r\n",
                    a.content_type,
                    rfc2231_filename(&a.name)
                )
                .as_bytes(),
            );
            out.extend_from_slice(base64_lines(&attachment_bytes(a)).as_bytes());
        }
        out.extend_from_slice(format!("\r\n--{boundary_mix}--\r\n").as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ctx() -> SynthContext {
        SynthContext {
            seed: 9,
            owner: Person {
                name: "Adele Vance".into(),
                address: "adele@emulator.test".into(),
            },
            large_every: 5,
            attachment_ratio: 0.5,
        }
    }

    fn state() -> RenderState {
        let t = Utc
            .with_ymd_and_hms(2024, 3, 4, 5, 6, 7)
            .single()
            .unwrap_or_default();
        RenderState {
            sent: t,
            received: t,
            revision: 0,
        }
    }

    #[test]
    fn deterministic_and_distinct() {
        let a = render_mime(&synthesize(&ctx(), 3, false), 3, state(), "mx");
        let b = render_mime(&synthesize(&ctx(), 3, false), 3, state(), "mx");
        let c = render_mime(&synthesize(&ctx(), 2, false), 2, state(), "mx");
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn large_every_gives_big_attachment_and_lines_are_short() {
        let m = synthesize(&ctx(), 4, false);
        let mime = render_mime(&m, 4, state(), "mx");
        assert!(mime.len() > 1024 * 1024, "len {}", mime.len());
        let text = String::from_utf8(mime).expect("MIME is ASCII");
        assert!(text.is_ascii());
        for line in text.split("\r\n") {
            assert!(line.len() <= 998, "line too long: {}", line.len());
        }
        assert!(!text.replace("\r\n", "").contains('\n'), "bare LF found");
    }

    #[test]
    fn encoded_words_roundtrip_and_are_short() {
        let s = "Ärger mit der Abrechnung für Äpfel, Öl und Übergrößen — 会议纪要";
        let enc = encode_word(s);
        let mut decoded = Vec::new();
        for w in enc.split("\r\n ") {
            assert!(w.len() <= 75, "{w}");
            let inner = w
                .strip_prefix("=?UTF-8?B?")
                .and_then(|x| x.strip_suffix("?="))
                .expect("encoded word");
            decoded.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(inner)
                    .expect("base64"),
            );
            // Each word must be valid UTF-8 on its own (RFC 2047 section 5).
            assert!(std::str::from_utf8(&decoded).is_ok());
        }
        assert_eq!(String::from_utf8(decoded).expect("utf8"), s);
        assert_eq!(encode_word("plain"), "plain");
    }

    #[test]
    fn quoted_printable_escapes_and_wraps() {
        let qp = quoted_printable("a=b ä trailing \r\nnext");
        assert!(qp.starts_with("a=3Db =C3=A4 trailing=20\r\nnext"), "{qp}");
        let long = quoted_printable(&"x".repeat(200));
        assert!(long.split("\r\n").all(|l| l.len() <= 76));
    }

    #[test]
    fn revision_changes_bytes() {
        let m = synthesize(&ctx(), 1, false);
        let a = render_mime(&m, 1, state(), "mx");
        let b = render_mime(
            &m,
            1,
            RenderState {
                revision: 1,
                ..state()
            },
            "mx",
        );
        assert_ne!(a, b);
        assert!(String::from_utf8_lossy(&b).contains("X-Emulator-Revision: 1"));
    }

    /// Decodes quoted-printable (soft line breaks and =XX escapes) for the round-trip test.
    fn qp_decode(s: &str) -> Vec<u8> {
        let b = s.replace("=\r\n", "").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'=' && i + 2 < b.len() + 1 {
                let hex = std::str::from_utf8(&b[i + 1..(i + 3).min(b.len())]).unwrap_or("");
                if let Ok(v) = u8::from_str_radix(hex, 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn encoded_words_roundtrip_for_any_text(input in "\\PC{1,80}") {
            let enc = encode_word(&input);
            let mut decoded = Vec::new();
            for w in enc.split("\r\n ") {
                proptest::prop_assert!(w.len() <= 75);
                match w.strip_prefix("=?UTF-8?B?").and_then(|x| x.strip_suffix("?=")) {
                    Some(inner) => decoded.extend(
                        base64::engine::general_purpose::STANDARD.decode(inner).expect("base64"),
                    ),
                    None => decoded.extend(w.as_bytes()),
                }
            }
            proptest::prop_assert_eq!(String::from_utf8(decoded).expect("utf8"), input);
        }

        #[test]
        fn quoted_printable_roundtrips(lines in proptest::collection::vec("[^\r\n]{0,120}", 1..5)) {
            let text = lines.join("\r\n");
            let qp = quoted_printable(&text);
            proptest::prop_assert!(qp.is_ascii());
            for l in qp.split("\r\n") {
                proptest::prop_assert!(l.len() <= 76, "line too long: {}", l.len());
            }
            proptest::prop_assert_eq!(qp_decode(&qp), text.into_bytes());
        }
    }
}
