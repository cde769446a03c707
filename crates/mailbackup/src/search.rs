//! Search queries and selections over the header index.
//!
//! A [`Query`] is what a person types:
//!
//! ```text
//! from:alice subject:"march invoice" after:2024-01-01 folder:Inbox has:attachment invoice
//! ```
//!
//! Terms (all must match):
//! - `from:`, `to:`, `cc:`, `subject:` — words (or a `"quoted phrase"`) in that field, full-text
//!   (SQLite FTS5, case-insensitive, a word matches as a prefix: `from:ali` finds `alice@x.test`);
//! - a bare word or `"phrase"` — in the subject or any address;
//! - `after:YYYY-MM-DD` (on or after that day, UTC), `before:YYYY-MM-DD` (before that day), on
//!   the message's `Date` (Graph's `sentDateTime`, else `receivedDateTime`, else the `Date`
//!   header);
//! - `folder:PATH` — the folder or any folder below it (`folder:Inbox` includes `Inbox/Clients`),
//!   case-insensitive;
//! - `mailbox:NAME`, `has:attachment`, `is:read`, `is:unread`.
//!
//! A malformed query (unknown field, empty value, bad date, unclosed quote) is refused with a
//! [`QueryError`] that says what to write instead.
//!
//! A [`Selection`] is a query plus the options `search`, `export` and `restore` share (mailbox,
//! folder, creation date range, messages by key or Graph id); the index answers it
//! ([`crate::Index::select`]).

use chrono::NaiveDate;

/// A full-text field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    /// `From` addresses.
    From,
    /// `To` addresses.
    To,
    /// `Cc` addresses.
    Cc,
    /// The subject.
    Subject,
    /// Subject or any address (a bare word).
    Any,
}

impl TextField {
    /// The FTS5 column filter of the field.
    pub fn fts_columns(self) -> &'static str {
        match self {
            TextField::From => "from_addr",
            TextField::To => "to_addr",
            TextField::Cc => "cc_addr",
            TextField::Subject => "subject",
            TextField::Any => "{subject from_addr to_addr cc_addr}",
        }
    }
}

/// One term of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// Words (or a phrase when `phrase`) in a full-text field.
    Text {
        /// Where.
        field: TextField,
        /// The words.
        value: String,
        /// Quoted: the words must follow each other.
        phrase: bool,
    },
    /// On or after this day (UTC).
    After(NaiveDate),
    /// Before this day (UTC).
    Before(NaiveDate),
    /// The folder or one below it.
    Folder(String),
    /// The mailbox.
    Mailbox(String),
    /// Messages with attachments.
    HasAttachment,
    /// Read (`true`) or unread (`false`) when backed up.
    Read(bool),
}

/// A parsed search query: every term must match. The empty query matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// The terms.
    pub terms: Vec<Term>,
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid search query at `{at}`: {reason}")]
pub struct QueryError {
    /// The offending part of the query.
    pub at: String,
    /// What is wrong and what to write instead.
    pub reason: String,
}

fn refuse(at: &str, reason: impl Into<String>) -> QueryError {
    QueryError {
        at: at.to_string(),
        reason: reason.into(),
    }
}

const FIELDS: &str = "from:, to:, cc:, subject:, after:, before:, folder:, mailbox:, has:attachment, is:read, is:unread";

/// Splits a query into (token, quoted) pairs; `field:"quoted value"` stays one token.
fn tokens(input: &str) -> Result<Vec<(String, bool)>, QueryError> {
    let mut out = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut tok = String::new();
        let mut quoted = false;
        while let Some(&(_, c)) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            if c == '"' {
                quoted = true;
                let mut closed = false;
                for (_, c) in chars.by_ref() {
                    if c == '"' {
                        closed = true;
                        break;
                    }
                    tok.push(c);
                }
                if !closed {
                    return Err(refuse(
                        &input[start..],
                        "the quote is not closed: end the phrase with `\"`",
                    ));
                }
            } else {
                tok.push(c);
            }
        }
        out.push((tok, quoted));
    }
    Ok(out)
}

/// Parses a day written `YYYY-MM-DD` (`at` names where it was written, for the error).
pub fn parse_day(at: &str, v: &str) -> Result<NaiveDate, QueryError> {
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .map_err(|_| refuse(at, "the date must be written YYYY-MM-DD, e.g. 2024-01-31"))
}

impl Query {
    /// Parses what a person typed.
    pub fn parse(input: &str) -> Result<Query, QueryError> {
        let mut terms = Vec::new();
        for (tok, quoted) in tokens(input)? {
            // A quoted token has its field (if any) before the quote: `subject:"a b"` is
            // tokenised as `subject:a b`.
            let split = tok
                .split_once(':')
                .filter(|(f, _)| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphabetic()));
            let Some((field, value)) = split else {
                if tok.trim().is_empty() {
                    return Err(refuse("\"\"", "an empty phrase matches nothing: remove it"));
                }
                terms.push(Term::Text {
                    field: TextField::Any,
                    value: tok,
                    phrase: quoted,
                });
                continue;
            };
            let at = tok.as_str();
            if value.trim().is_empty() {
                return Err(refuse(
                    at,
                    format!(
                        "`{field}:` needs a value, e.g. `{field}:alice` or `{field}:\"two words\"`"
                    ),
                ));
            }
            let text = |field| Term::Text {
                field,
                value: value.to_string(),
                phrase: quoted,
            };
            terms.push(match field.to_ascii_lowercase().as_str() {
                "from" => text(TextField::From),
                "to" => text(TextField::To),
                "cc" => text(TextField::Cc),
                "subject" => text(TextField::Subject),
                "after" => Term::After(parse_day(at, value)?),
                "before" => Term::Before(parse_day(at, value)?),
                "folder" => Term::Folder(value.trim_matches('/').to_string()),
                "mailbox" => Term::Mailbox(value.to_string()),
                "has" if value.eq_ignore_ascii_case("attachment") => Term::HasAttachment,
                "has" => return Err(refuse(at, "only `has:attachment` is known")),
                "is" if value.eq_ignore_ascii_case("read") => Term::Read(true),
                "is" if value.eq_ignore_ascii_case("unread") => Term::Read(false),
                "is" => return Err(refuse(at, "only `is:read` and `is:unread` are known")),
                other => {
                    return Err(refuse(
                        at,
                        format!(
                            "unknown field `{other}:`; the fields are {FIELDS} (quote a bare word containing `:`)"
                        ),
                    ));
                }
            });
        }
        Ok(Query { terms })
    }

    /// The FTS5 MATCH expression of the full-text terms; `None` when there are none. Every word
    /// is quoted (FTS5 syntax in the input is plain text) and, outside phrases, a prefix.
    pub fn fts_match(&self) -> Option<String> {
        self.fts_expression(true, |_| Ok::<_, std::convert::Infallible>(None))
            .unwrap_or_else(|e| match e {})
    }

    /// [`Query::fts_match`] with no prefix: words match whole words only. Not the query's
    /// meaning, but cheap to evaluate (FTS5 merges every word a prefix covers, over the whole
    /// index), so an index can use it to guess how many rows match.
    pub fn fts_match_whole_words(&self) -> Option<String> {
        self.fts_expression(false, |_| Ok::<_, std::convert::Infallible>(None))
            .unwrap_or_else(|e| match e {})
    }

    /// [`Query::fts_match`] with the prefix of an unquoted term spelled out where `phrases`
    /// can: given the term's value, it returns the whole-word phrases the term stands for (the
    /// value's words with its last word replaced by each indexed word it begins; none when no
    /// word does), or `None` to keep the prefix. The same rows match either way when the
    /// phrases are complete; only the cost differs (FTS5 answers a prefix by merging the lists
    /// of every word it begins, over the whole index).
    pub fn fts_match_spelled_out<E>(
        &self,
        phrases: impl FnMut(&str) -> Result<Option<Vec<String>>, E>,
    ) -> Result<Option<String>, E> {
        self.fts_expression(true, phrases)
    }

    /// The words FTS5 reads as prefixes: the last word of each unquoted full-text term
    /// (`zoe@example.test` is the phrase `zoe example test*`), as an FTS5 expression matching
    /// any of them as whole words; `None` when there are none. Split at ASCII punctuation as
    /// FTS5's default tokenizer does; for an estimate only.
    pub fn fts_prefix_words(&self) -> Option<String> {
        let words: Vec<String> = self
            .terms
            .iter()
            .filter_map(|t| match t {
                Term::Text {
                    value,
                    phrase: false,
                    ..
                } => value
                    .split(|c: char| c.is_ascii() && !c.is_ascii_alphanumeric())
                    .rfind(|w| !w.is_empty())
                    .map(|w| format!("\"{w}\"")),
                _ => None,
            })
            .collect();
        (!words.is_empty()).then(|| words.join(" OR "))
    }

    fn fts_expression<E>(
        &self,
        prefix: bool,
        mut phrases: impl FnMut(&str) -> Result<Option<Vec<String>>, E>,
    ) -> Result<Option<String>, E> {
        let quoted = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
        let mut parts = Vec::new();
        for t in &self.terms {
            let Term::Text {
                field,
                value,
                phrase,
            } = t
            else {
                continue;
            };
            let words = if *phrase || !prefix {
                quoted(value)
            } else if let Some(spelled) = phrases(value)? {
                if spelled.is_empty() {
                    // No indexed word begins with the prefix: the term matches nothing, as
                    // the prefix would (kept: FTS5 finds no list to merge).
                    format!("{}*", quoted(value))
                } else {
                    spelled
                        .iter()
                        .map(|p| quoted(p))
                        .collect::<Vec<_>>()
                        .join(" OR ")
                }
            } else {
                // FTS5 splits `alice@x.test` into words itself; quoting keeps `@`, `.` and `-`
                // from being read as syntax.
                format!("{}*", quoted(value))
            };
            parts.push(format!("{} : ({words})", field.fts_columns()));
        }
        Ok((!parts.is_empty()).then(|| parts.join(" AND ")))
    }
}

/// Which messages of a backup `search`, `export` and `restore` take: every criterion set must
/// match; none set selects everything. The index answers it ([`crate::Index::select`],
/// [`crate::Index::count`]); `restore` takes its messages from that answer too, so the same
/// selection means the same messages for every command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// A search query: every term must match.
    pub query: Query,
    /// Only this mailbox (its key, as `status` lists it).
    pub mailbox: Option<String>,
    /// Only this folder and those below it (`Inbox/Clients`), case-insensitive: as the query
    /// term `folder:`.
    pub folder: Option<String>,
    /// Only messages created (Graph's `createdDateTime`) on or after this day, UTC.
    pub created_from: Option<NaiveDate>,
    /// Only messages created on or before this day, UTC.
    pub created_to: Option<NaiveDate>,
    /// Only these messages, each named by its object key (as `search` prints it) or its Graph
    /// id; all when empty.
    pub messages: Vec<String>,
}

impl Selection {
    /// Every term the index has to match: the query's, then `mailbox` and `folder` as the
    /// terms `mailbox:` and `folder:` would be.
    pub fn terms(&self) -> Vec<Term> {
        let mut terms = self.query.terms.clone();
        terms.extend(self.mailbox.clone().map(Term::Mailbox));
        terms.extend(
            self.folder
                .as_deref()
                .map(|f| Term::Folder(f.trim_matches('/').to_string())),
        );
        terms
    }

    /// The creation-time bounds as index times (`YYYY-MM-DDTHH:MM:SSZ`, compared as text):
    /// on or after the first, before the second (the day after `created_to`).
    pub fn created_bounds(&self) -> (Option<String>, Option<String>) {
        let at_midnight = |d: NaiveDate| format!("{}T00:00:00Z", d.format("%Y-%m-%d"));
        (
            self.created_from.map(at_midnight),
            self.created_to
                .map(|d| at_midnight(d.succ_opt().unwrap_or(NaiveDate::MAX))),
        )
    }
}

/// Above this many hits, `search` says "more than" instead of counting on: counting every
/// match of a common word over a million messages takes longer than the page of results
/// (see [`crate::Index::count`]).
pub const COUNT_CAP: u64 = 10_000;

/// How many messages a selection matches, as `search` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    /// Exactly this many.
    Exact(u64),
    /// More than this many (counting stopped there).
    MoreThan(u64),
}

impl Total {
    /// The total of a search that showed `shown` hits of at most `limit`: fewer than `limit`
    /// are all of them (nothing to count); else the matches are counted, exactly up to `cap`
    /// (all of them when `None`).
    pub fn of(
        index: &dyn crate::Index,
        selection: &Selection,
        shown: usize,
        limit: usize,
        cap: Option<u64>,
    ) -> Result<Total, crate::Error> {
        if shown < limit {
            return Ok(Total::Exact(shown as u64));
        }
        match cap {
            None => Ok(Total::Exact(index.count(selection, u64::MAX)?)),
            Some(cap) => {
                let n = index.count(selection, cap.saturating_add(1))?;
                Ok(if n > cap {
                    Total::MoreThan(cap)
                } else {
                    Total::Exact(n)
                })
            }
        }
    }
}

impl std::fmt::Display for Total {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Total::Exact(n) => write!(f, "{n}"),
            Total::MoreThan(n) => write!(f, "more than {}", thousands(*n)),
        }
    }
}

/// `10000` as `10,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Order of [`crate::Index::select`] results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Newest first (search output).
    Newest,
    /// By mailbox, folder, then the order they were indexed (export; pageable).
    Folder,
}

/// A page position for [`Order::Folder`]: the last hit seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Mailbox of the last hit.
    pub mailbox: String,
    /// Folder id of the last hit.
    pub folder_id: String,
    /// Index position of the last hit.
    pub seq: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_query_parses_into_its_terms() {
        let q = Query::parse(
            r#"from:alice subject:"march invoice" after:2024-01-01 folder:Inbox has:attachment budget"#,
        )
        .unwrap();
        assert_eq!(
            q.terms,
            vec![
                Term::Text {
                    field: TextField::From,
                    value: "alice".into(),
                    phrase: false
                },
                Term::Text {
                    field: TextField::Subject,
                    value: "march invoice".into(),
                    phrase: true
                },
                Term::After(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()),
                Term::Folder("Inbox".into()),
                Term::HasAttachment,
                Term::Text {
                    field: TextField::Any,
                    value: "budget".into(),
                    phrase: false
                },
            ]
        );
        assert_eq!(
            q.fts_match().unwrap(),
            "from_addr : (\"alice\"*) AND subject : (\"march invoice\") AND {subject from_addr to_addr cc_addr} : (\"budget\"*)"
        );
        assert_eq!(Query::parse("  ").unwrap(), Query::default());
    }

    #[test]
    fn malformed_queries_are_refused_with_what_to_write() {
        for (q, says) in [
            ("subject:\"march", "quote is not closed"),
            ("frm:alice", "unknown field `frm:`"),
            ("after:2024-13-01", "YYYY-MM-DD"),
            ("before:yesterday", "YYYY-MM-DD"),
            ("from:", "needs a value"),
            ("has:pdf", "has:attachment"),
            ("is:flagged", "is:unread"),
            ("\"\"", "empty phrase"),
        ] {
            let e = Query::parse(q).unwrap_err().to_string();
            assert!(e.contains(says), "{q}: {e}");
        }
    }

    #[test]
    fn whole_word_expressions_drop_only_the_prefix_stars() {
        let q = Query::parse(r#"from:zoe@example.test subject:"march invoice" budget"#).unwrap();
        assert_eq!(
            q.fts_match_whole_words().unwrap(),
            "from_addr : (\"zoe@example.test\") AND subject : (\"march invoice\") AND {subject from_addr to_addr cc_addr} : (\"budget\")"
        );
        assert_eq!(
            Query::parse("is:read").unwrap().fts_match_whole_words(),
            None
        );
        assert_eq!(q.fts_prefix_words().unwrap(), "\"test\" OR \"budget\"");
        assert_eq!(Query::parse("\"a b\" -").unwrap().fts_prefix_words(), None);
    }

    #[test]
    fn a_total_is_counted_only_past_a_full_page_and_only_up_to_the_cap() {
        use crate::Index as _;
        let dir = tempfile::tempdir().unwrap();
        let ix = crate::SqliteIndex::open(&dir.path().join("index.sqlite")).unwrap();
        for i in 0..5 {
            ix.record_headers(&crate::HeaderRow {
                mailbox: "me".into(),
                id: format!("m{i}"),
                key: crate::ObjectKey::new(format!("2024-01/m{i}.eml")).unwrap(),
                from: String::new(),
                to: String::new(),
                cc: String::new(),
                subject: "budget".into(),
                date: None,
                created: None,
                message_id: None,
                folder_id: "f".into(),
                size: 1,
                has_attachment: false,
                is_read: None,
            })
            .unwrap();
        }
        let all = Selection::default();
        let total = |shown, cap| Total::of(&ix, &all, shown, 3, cap).unwrap();
        assert_eq!(
            total(2, Some(10)),
            Total::Exact(2),
            "a page not full is all"
        );
        assert_eq!(total(3, Some(10)), Total::Exact(5));
        assert_eq!(total(3, Some(5)), Total::Exact(5), "as many as the cap");
        assert_eq!(total(3, Some(4)), Total::MoreThan(4));
        assert_eq!(total(3, None), Total::Exact(5));
        assert_eq!(Total::MoreThan(10_000).to_string(), "more than 10,000");
        assert_eq!(Total::Exact(123_456).to_string(), "123456");
    }

    #[test]
    fn fts_syntax_in_the_input_is_plain_text() {
        let q = Query::parse("from:o'neil AND -x").unwrap();
        assert_eq!(
            q.fts_match().unwrap(),
            "from_addr : (\"o'neil\"*) AND {subject from_addr to_addr cc_addr} : (\"AND\"*) AND {subject from_addr to_addr cc_addr} : (\"-x\"*)"
        );
    }
}
