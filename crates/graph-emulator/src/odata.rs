//! The OData query options the emulator understands: `$filter` (comparisons joined with `and`),
//! `$select`, `$orderby`, `$top`, `$skip`, and the `Prefer: odata.maxpagesize` header.
//!
//! Unsupported syntax is rejected with a Graph-shaped 400 whose message says what is wrong,
//! never silently ignored, so a client bug shows up in tests. Supported `$filter` properties:
//! `receivedDateTime`, `createdDateTime`, `lastModifiedDateTime`, `sentDateTime` (operators
//! `eq ne ge gt le lt`, unquoted DateTimeOffset literals), `parentFolderId` (`eq`, id or
//! well-known name in quotes), `isRead` (`eq`/`ne` `true`/`false`), `from/emailAddress/address`
//! and `subject` (`eq`, quoted). No `or`, `not`, parentheses or functions.

use chrono::{DateTime, NaiveDate, Utc};

/// A 400 answer: Graph error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

fn bad(message: impl Into<String>) -> QueryError {
    QueryError {
        code: "BadRequest",
        message: message.into(),
    }
}

/// Filterable and sortable properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prop {
    Received,
    Created,
    LastModified,
    Sent,
    ParentFolderId,
    IsRead,
    FromAddress,
    Subject,
}

impl Prop {
    fn parse(s: &str) -> Option<Prop> {
        Some(match s.to_ascii_lowercase().as_str() {
            "receiveddatetime" => Prop::Received,
            "createddatetime" => Prop::Created,
            "lastmodifieddatetime" => Prop::LastModified,
            "sentdatetime" => Prop::Sent,
            "parentfolderid" => Prop::ParentFolderId,
            "isread" => Prop::IsRead,
            "from/emailaddress/address" => Prop::FromAddress,
            "subject" => Prop::Subject,
            _ => return None,
        })
    }

    fn is_date(self) -> bool {
        matches!(
            self,
            Prop::Received | Prop::Created | Prop::LastModified | Prop::Sent
        )
    }
}

/// Comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Ge,
    Gt,
    Le,
    Lt,
}

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Date(DateTime<Utc>),
    Str(String),
    Bool(bool),
}

/// One comparison.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cond {
    pub(crate) prop: Prop,
    pub(crate) op: Op,
    pub(crate) value: Value,
}

/// A conjunction of comparisons.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Filter {
    pub(crate) conds: Vec<Cond>,
}

/// The values of a message a filter looks at.
pub(crate) struct Subject<'a> {
    pub(crate) received: DateTime<Utc>,
    pub(crate) created: DateTime<Utc>,
    pub(crate) last_modified: DateTime<Utc>,
    pub(crate) sent: DateTime<Utc>,
    /// Folder id and well-known name.
    pub(crate) folder_id: &'a str,
    pub(crate) folder_well_known: Option<&'a str>,
    pub(crate) is_read: bool,
    pub(crate) from_address: &'a str,
    pub(crate) subject: &'a str,
}

impl Filter {
    /// Whether a message matches every condition.
    pub(crate) fn matches(&self, s: &Subject<'_>) -> bool {
        self.conds.iter().all(|c| c.matches(s))
    }
}

fn cmp_op<T: PartialOrd>(a: T, op: Op, b: T) -> bool {
    match op {
        Op::Eq => a == b,
        Op::Ne => a != b,
        Op::Ge => a >= b,
        Op::Gt => a > b,
        Op::Le => a <= b,
        Op::Lt => a < b,
    }
}

impl Cond {
    fn matches(&self, s: &Subject<'_>) -> bool {
        match (&self.prop, &self.value) {
            (Prop::Received, Value::Date(d)) => cmp_op(s.received, self.op, *d),
            (Prop::Created, Value::Date(d)) => cmp_op(s.created, self.op, *d),
            (Prop::LastModified, Value::Date(d)) => cmp_op(s.last_modified, self.op, *d),
            (Prop::Sent, Value::Date(d)) => cmp_op(s.sent, self.op, *d),
            (Prop::IsRead, Value::Bool(b)) => cmp_op(s.is_read, self.op, *b),
            (Prop::ParentFolderId, Value::Str(v)) => {
                let hit = s.folder_id == v
                    || s.folder_well_known
                        .is_some_and(|w| w.eq_ignore_ascii_case(v));
                hit == (self.op == Op::Eq)
            }
            (Prop::FromAddress, Value::Str(v)) => {
                s.from_address.eq_ignore_ascii_case(v) == (self.op == Op::Eq)
            }
            (Prop::Subject, Value::Str(v)) => (s.subject == v) == (self.op == Op::Eq),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, QueryError> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            out.push(Tok::Open);
            i += 1;
        } else if c == ')' {
            out.push(Tok::Close);
            i += 1;
        } else if c == '\'' {
            let mut v = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(bad("Invalid filter clause: unterminated string literal.")),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        v.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        v.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(v));
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !"()'".contains(chars[i]) {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        }
    }
    Ok(out)
}

/// Parses a DateTimeOffset literal (`2024-01-01T00:00:00Z`, offsets, fractions) or a date
/// (`2024-01-01`, midnight UTC).
pub(crate) fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|n| n.and_utc());
    }
    None
}

/// Parses a `$filter` value.
pub(crate) fn parse_filter(s: &str) -> Result<Filter, QueryError> {
    let toks = tokenize(s)?;
    if toks.iter().any(|t| matches!(t, Tok::Open | Tok::Close)) {
        return Err(bad(format!(
            "Invalid filter clause: '{s}'. The emulator supports only comparisons joined with 'and' (no parentheses or functions such as contains())."
        )));
    }
    let mut conds = Vec::new();
    let mut i = 0;
    loop {
        let (Some(Tok::Word(p)), Some(Tok::Word(op)), Some(lit)) =
            (toks.get(i), toks.get(i + 1), toks.get(i + 2))
        else {
            return Err(bad(format!(
                "Invalid filter clause: '{s}'. Expected '<property> <operator> <value>' near token {}.",
                i + 1
            )));
        };
        let prop = Prop::parse(p).ok_or_else(|| {
            bad(format!(
                "Invalid filter clause: property '{p}' is not supported in $filter by the emulator (supported: receivedDateTime, createdDateTime, lastModifiedDateTime, sentDateTime, parentFolderId, isRead, from/emailAddress/address, subject)."
            ))
        })?;
        let op = match op.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "ge" => Op::Ge,
            "gt" => Op::Gt,
            "le" => Op::Le,
            "lt" => Op::Lt,
            other => {
                return Err(bad(format!(
                    "Invalid filter clause: unknown operator '{other}' (use eq, ne, ge, gt, le, lt)."
                )));
            }
        };
        let value = match (prop, lit) {
            (pr, Tok::Word(w)) if pr.is_date() => Value::Date(parse_datetime(w).ok_or_else(|| {
                bad(format!(
                    "Invalid filter clause: '{w}' is not a valid DateTimeOffset literal (use e.g. 2024-01-31T00:00:00Z, unquoted)."
                ))
            })?),
            (pr, Tok::Str(_)) if pr.is_date() => {
                return Err(bad(format!(
                    "A binary operator with incompatible types was detected. Found operand types 'Edm.DateTimeOffset' and 'Edm.String' for operator kind '{}'.",
                    op_kind(op)
                )));
            }
            (Prop::IsRead, Tok::Word(w)) if w == "true" || w == "false" => Value::Bool(w == "true"),
            (Prop::ParentFolderId | Prop::FromAddress | Prop::Subject, Tok::Str(v)) => {
                Value::Str(v.clone())
            }
            _ => {
                return Err(bad(format!(
                    "Invalid filter clause: the value for '{p}' has the wrong type (dates unquoted, strings in single quotes, booleans true/false)."
                )));
            }
        };
        if matches!(
            prop,
            Prop::ParentFolderId | Prop::FromAddress | Prop::Subject | Prop::IsRead
        ) && !matches!(op, Op::Eq | Op::Ne)
        {
            return Err(bad(format!(
                "Invalid filter clause: '{p}' supports only eq and ne."
            )));
        }
        conds.push(Cond { prop, op, value });
        i += 3;
        match toks.get(i) {
            None => break,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("and") => i += 1,
            Some(other) => {
                return Err(bad(format!(
                    "Invalid filter clause: expected 'and' after a comparison, found {other:?}; the emulator does not support 'or' or 'not'."
                )));
            }
        }
    }
    Ok(Filter { conds })
}

fn op_kind(op: Op) -> &'static str {
    match op {
        Op::Eq => "Equal",
        Op::Ne => "NotEqual",
        Op::Ge => "GreaterThanOrEqual",
        Op::Gt => "GreaterThan",
        Op::Le => "LessThanOrEqual",
        Op::Lt => "LessThan",
    }
}

/// Checks the restrictions of message delta: only `receivedDateTime` with `ge` or `gt`.
pub(crate) fn check_delta_filter(f: &Filter) -> Result<(), QueryError> {
    for c in &f.conds {
        if c.prop != Prop::Received || !matches!(c.op, Op::Ge | Op::Gt) {
            return Err(bad(
                "The $filter for a delta query on messages supports only 'receivedDateTime ge <date>' or 'receivedDateTime gt <date>'.",
            ));
        }
    }
    Ok(())
}

/// One `$orderby` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OrderBy {
    pub(crate) prop: Prop,
    pub(crate) descending: bool,
}

/// Parses `$orderby` (`receivedDateTime desc,subject`).
pub(crate) fn parse_orderby(s: &str) -> Result<Vec<OrderBy>, QueryError> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let mut words = part.split_whitespace();
        let Some(p) = words.next() else {
            return Err(bad(format!("Invalid $orderby clause: '{s}'.")));
        };
        let prop = Prop::parse(p)
            .filter(|p| p.is_date() || *p == Prop::Subject)
            .ok_or_else(|| {
                bad(format!(
                    "Invalid $orderby clause: sorting by '{p}' is not supported by the emulator (use receivedDateTime, createdDateTime, lastModifiedDateTime, sentDateTime or subject)."
                ))
            })?;
        let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(bad(format!(
                    "Invalid $orderby clause: unknown direction '{other}' (use asc or desc)."
                )));
            }
        };
        if words.next().is_some() {
            return Err(bad(format!("Invalid $orderby clause: '{s}'.")));
        }
        out.push(OrderBy { prop, descending });
    }
    Ok(out)
}

/// Graph's rule for `$filter` with `$orderby` on messages: the sorted properties must appear in
/// the filter, in the same order, before any other property; otherwise 400 InefficientFilter.
pub(crate) fn check_filter_orderby(f: &Filter, order: &[OrderBy]) -> Result<(), QueryError> {
    if f.conds.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut filter_props: Vec<Prop> = Vec::new();
    for c in &f.conds {
        if !filter_props.contains(&c.prop) {
            filter_props.push(c.prop);
        }
    }
    let ok = order.len() <= filter_props.len()
        && order
            .iter()
            .zip(filter_props.iter())
            .all(|(o, p)| o.prop == *p);
    if ok {
        Ok(())
    } else {
        Err(QueryError {
            code: "InefficientFilter",
            message: "The restriction or sort order is too complex for this operation.".to_owned(),
        })
    }
}

/// Message properties `$select` accepts.
pub(crate) const MESSAGE_PROPERTIES: &[&str] = &[
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "conversationIndex",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "body",
    "uniqueBody",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
    "internetMessageHeaders",
];

/// Parses `$select` against a list of known properties (case-insensitive; returns canonical
/// names).
pub(crate) fn parse_select(
    s: &str,
    known: &[&'static str],
    type_name: &str,
) -> Result<Vec<&'static str>, QueryError> {
    let mut out = Vec::new();
    for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let canon = known
            .iter()
            .find(|k| k.eq_ignore_ascii_case(p))
            .ok_or_else(|| QueryError {
                code: "RequestBroker--ParseUri",
                message: format!(
                    "Could not find a property named '{p}' on type 'microsoft.graph.{type_name}'."
                ),
            })?;
        if !out.contains(canon) {
            out.push(*canon);
        }
    }
    Ok(out)
}

/// Parses a non-negative integer option (`$top`, `$skip`).
pub(crate) fn parse_count(name: &str, s: &str) -> Result<usize, QueryError> {
    s.trim().parse::<usize>().map_err(|_| {
        bad(format!(
            "Invalid value '{s}' for query option '{name}': expected a non-negative integer."
        ))
    })
}

/// Reads `odata.maxpagesize=N` from a `Prefer` header value.
pub(crate) fn prefer_maxpagesize(prefer: &str) -> Option<usize> {
    prefer.split(',').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        if k.trim().eq_ignore_ascii_case("odata.maxpagesize") {
            v.trim().trim_matches('"').parse().ok()
        } else {
            None
        }
    })
}

/// Whether a `Prefer` header asks for plain-text bodies (`outlook.body-content-type="text"`).
pub(crate) fn prefer_text_body(prefer: &str) -> bool {
    prefer.split(',').any(|p| {
        p.trim().split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("outlook.body-content-type")
                && v.trim().trim_matches('"').eq_ignore_ascii_case("text")
        })
    })
}

/// Whether a `Prefer` header asks for immutable ids.
pub(crate) fn prefer_immutable(prefer: &str) -> bool {
    prefer.split(',').any(|p| {
        p.trim().split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("IdType")
                && v.trim()
                    .trim_matches('"')
                    .eq_ignore_ascii_case("ImmutableId")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_parses_dates_and_and() {
        let f = parse_filter(
            "receivedDateTime ge 2024-01-01T00:00:00Z and receivedDateTime lt 2024-02-01",
        )
        .expect("parse");
        assert_eq!(f.conds.len(), 2);
        assert_eq!(f.conds[0].op, Op::Ge);
        assert_eq!(f.conds[1].op, Op::Lt);
    }

    #[test]
    fn filter_rejections_say_why() {
        let e = parse_filter("receivedDateTime ge '2024-01-01'").expect_err("quoted date");
        assert!(e.message.contains("incompatible types"), "{}", e.message);
        let e = parse_filter("address eq 'a@b.c'").expect_err("unknown prop");
        assert!(e.message.contains("'address'"), "{}", e.message);
        let e = parse_filter("isRead eq true or isRead eq false").expect_err("or");
        assert!(e.message.contains("'or'"), "{}", e.message);
        assert!(parse_filter("contains(subject,'x')").is_err());
        assert!(parse_filter("subject eq 'it''s'").is_ok());
        assert!(parse_filter("subject gt 'a'").is_err());
        assert!(parse_filter("receivedDateTime ge").is_err());
    }

    #[test]
    fn delta_filter_restrictions() {
        let ok = parse_filter("receivedDateTime gt 2024-01-01T00:00:00Z").expect("parse");
        assert!(check_delta_filter(&ok).is_ok());
        let le = parse_filter("receivedDateTime le 2024-01-01T00:00:00Z").expect("parse");
        assert!(check_delta_filter(&le).is_err());
        let other = parse_filter("isRead eq false").expect("parse");
        assert!(check_delta_filter(&other).is_err());
    }

    #[test]
    fn inefficient_filter_rule() {
        let f = parse_filter("isRead eq false and receivedDateTime ge 2024-01-01").expect("f");
        let o = parse_orderby("receivedDateTime desc").expect("o");
        assert_eq!(
            check_filter_orderby(&f, &o).expect_err("inefficient").code,
            "InefficientFilter"
        );
        let f = parse_filter("receivedDateTime ge 2024-01-01 and isRead eq false").expect("f");
        assert!(check_filter_orderby(&f, &o).is_ok());
    }

    #[test]
    fn select_and_prefer() {
        let s = parse_select("ID,subject", MESSAGE_PROPERTIES, "message").expect("select");
        assert_eq!(s, vec!["id", "subject"]);
        let e = parse_select("nope", MESSAGE_PROPERTIES, "message").expect_err("unknown");
        assert_eq!(e.code, "RequestBroker--ParseUri");
        assert_eq!(
            prefer_maxpagesize("IdType=\"ImmutableId\", odata.maxpagesize=50"),
            Some(50)
        );
        assert!(prefer_immutable(
            "odata.maxpagesize=5, IdType=\"ImmutableId\""
        ));
        assert!(!prefer_immutable("odata.maxpagesize=5"));
        assert!(prefer_text_body("outlook.body-content-type=\"text\""));
        assert!(!prefer_text_body("outlook.body-content-type=\"html\""));
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(input in ".{0,80}") {
            let _ = parse_filter(&input);
            let _ = parse_orderby(&input);
            let _ = parse_select(&input, MESSAGE_PROPERTIES, "message");
            let _ = parse_count("$top", &input);
            let _ = prefer_maxpagesize(&input);
        }

        #[test]
        fn date_filters_match_like_comparisons(secs in 0i64..4_000_000_000, cut in 0i64..4_000_000_000) {
            let t = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
            let c = chrono::DateTime::from_timestamp(cut, 0).unwrap_or_default();
            let f = parse_filter(&format!(
                "receivedDateTime ge {}",
                c.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ))
            .expect("valid filter");
            let s = Subject {
                received: t,
                created: t,
                last_modified: t,
                sent: t,
                folder_id: "f",
                folder_well_known: None,
                is_read: false,
                from_address: "a@b.c",
                subject: "s",
            };
            proptest::prop_assert_eq!(f.matches(&s), t >= c);
        }
    }
}
