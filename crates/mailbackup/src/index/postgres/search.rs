//! The SQL of header search: a [`Selection`] as `FROM ... WHERE ...` with its parameters over
//! the stored word lists ([`super::words`]), and a result row as a [`Hit`].

use super::words;
use crate::error::Error;
use crate::index::{HeaderRow, Hit};
use crate::search::{Cursor, Selection, Term, TextField};
use crate::store::ObjectKey;
use postgres::Row;
use postgres::types::ToSql;

pub(super) const FOLDER_PATH: &str = "COALESCE(f.name, h.folder_id)";

/// The word columns a text field is matched in.
fn word_columns(field: TextField) -> &'static [&'static str] {
    match field {
        TextField::From => &["from_words"],
        TextField::To => &["to_words"],
        TextField::Cc => &["cc_words"],
        TextField::Subject => &["subject_words"],
        TextField::Any => &["subject_words", "from_words", "to_words", "cc_words"],
    }
}

/// A statement being built with its parameters.
pub(super) struct Sql {
    pub(super) text: String,
    params: Vec<Box<dyn ToSql + Sync>>,
}

impl Sql {
    /// Adds a parameter; returns its placeholder (`$n`).
    pub(super) fn bind(&mut self, v: impl ToSql + Sync + 'static) -> String {
        self.params.push(Box::new(v));
        format!("${}", self.params.len())
    }

    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|p| p.as_ref()).collect()
    }
}

pub(super) const HIT_COLUMNS: &str =
    "h.seq, h.mailbox, h.id, h.path, h.from_addr, h.to_addr, h.cc_addr,
  h.subject, h.date, h.message_id, h.folder_id, h.size, h.has_attachment, h.is_read, h.created";

/// `FROM ... WHERE ...` of a selection (and, for [`Order::Folder`](crate::search::Order::Folder), the cursor).
pub(super) fn select_from(selection: &Selection, after: Option<&Cursor>) -> Sql {
    let mut q = Sql {
        text:
            "FROM headers h LEFT JOIN folders f ON f.mailbox=h.mailbox AND f.folder_id=h.folder_id
               WHERE TRUE"
                .into(),
        params: Vec::new(),
    };
    for t in &selection.terms() {
        let cond = match t {
            Term::Text {
                field,
                value,
                phrase,
            } => match words::pattern(value, *phrase) {
                None => "FALSE".to_string(),
                Some(p) => {
                    let p = q.bind(p);
                    let any: Vec<String> = word_columns(*field)
                        .iter()
                        .map(|c| format!("h.{c} LIKE {p}"))
                        .collect();
                    format!("({})", any.join(" OR "))
                }
            },
            Term::After(d) => format!(
                "h.date >= {}",
                q.bind(format!("{}T00:00:00Z", d.format("%Y-%m-%d")))
            ),
            Term::Before(d) => format!(
                "h.date < {}",
                q.bind(format!("{}T00:00:00Z", d.format("%Y-%m-%d")))
            ),
            Term::Folder(path) => {
                let lower = path.to_lowercase();
                let below = format!("{lower}/");
                format!(
                    "(lower({FOLDER_PATH}) = {} OR starts_with(lower({FOLDER_PATH}), {}))",
                    q.bind(lower),
                    q.bind(below)
                )
            }
            Term::Mailbox(m) => format!("h.mailbox = {}", q.bind(m.clone())),
            Term::HasAttachment => "h.has_attachment".to_string(),
            Term::Read(r) => format!("h.is_read = {}", q.bind(*r)),
        };
        q.text.push_str(" AND ");
        q.text.push_str(&cond);
    }
    let (from, before) = selection.created_bounds();
    if let Some(t) = from {
        let p = q.bind(t);
        q.text.push_str(&format!(" AND h.created >= {p}"));
    }
    if let Some(t) = before {
        let p = q.bind(t);
        q.text.push_str(&format!(" AND h.created < {p}"));
    }
    if !selection.messages.is_empty() {
        // Each is a key or a Graph id.
        let p = q.bind(selection.messages.clone());
        q.text
            .push_str(&format!(" AND (h.path = ANY({p}) OR h.id = ANY({p}))"));
    }
    if let Some(c) = after {
        let (m, f, s) = (
            q.bind(c.mailbox.clone()),
            q.bind(c.folder_id.clone()),
            q.bind(c.seq),
        );
        q.text.push_str(&format!(
            " AND (h.mailbox, h.folder_id, h.seq) > ({m}, {f}, {s})"
        ));
    }
    q
}

pub(super) fn hit(r: &Row) -> Result<Hit, Error> {
    Ok(Hit {
        seq: r.get(0),
        headers: HeaderRow {
            mailbox: r.get(1),
            id: r.get(2),
            key: ObjectKey::new(r.get::<_, String>(3))?,
            from: r.get(4),
            to: r.get(5),
            cc: r.get(6),
            subject: r.get(7),
            date: r.get(8),
            created: r.get(14),
            message_id: r.get(9),
            folder_id: r.get(10),
            size: r.get::<_, i64>(11).max(0) as u64,
            has_attachment: r.get(12),
            is_read: r.get(13),
        },
        folder_path: r.get(15),
    })
}
