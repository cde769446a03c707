//! Full-text matching for the PostgreSQL index, word for word the way SQLite's FTS5
//! (`unicode61` tokenizer) matches in [`super::super::SqliteIndex`].
//!
//! A field is stored as its words between spaces (`" march invoice "`): a word is a run of
//! Unicode letters and digits, lower-cased, with diacritics removed (`Café` → `cafe`);
//! everything else separates words (`alice@x.test` → `alice x test`). A query value becomes a
//! `LIKE` pattern over that text: its words in a row, the last one a prefix unless the value was
//! a quoted phrase (FTS5's `"alice x"*` and `"march invoice"`). Words hold no `%`, `_` or `\`, so
//! a pattern needs no escaping, and a `pg_trgm` GIN index answers it.

use unicode_normalization::char::{decompose_canonical, is_combining_mark};

/// The words of `text` (see the module docs).
pub(crate) fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        // FTS5 removes diacritics from Latin letters only (`remove_diacritics=1`).
        let latin = matches!(c, '\u{c0}'..='\u{24f}' | '\u{1e00}'..='\u{1eff}');
        let mut each = |d: char| {
            if latin && is_combining_mark(d) {
                // A diacritic of a Latin letter: dropped, and it does not end the word.
            } else if d.is_alphanumeric() {
                word.extend(d.to_lowercase());
            } else if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
        };
        if latin {
            decompose_canonical(c, each);
        } else {
            each(c);
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// What is stored for a field: its words, each between spaces.
pub(crate) fn stored(text: &str) -> String {
    let mut s = String::from(" ");
    for w in tokens(text) {
        s.push_str(&w);
        s.push(' ');
    }
    s
}

/// The `LIKE` pattern of a query value over [`stored`] text; `None` when the value has no word
/// (FTS5 matches nothing then).
pub(crate) fn pattern(value: &str, phrase: bool) -> Option<String> {
    let words = tokens(value);
    if words.is_empty() {
        return None;
    }
    let end = if phrase { " %" } else { "%" };
    Some(format!("% {}{end}", words.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `LIKE` of [`pattern`]s over [`stored`] text: a leading and trailing `%` around a literal.
    fn like(stored: &str, pattern: &str) -> bool {
        stored.contains(&pattern[1..pattern.len() - 1])
    }

    #[test]
    fn words_are_letter_and_digit_runs_folded_like_fts5() {
        assert_eq!(
            tokens("Alice <alice@X.test>"),
            ["alice", "alice", "x", "test"]
        );
        assert_eq!(tokens("Café—Zoë's 2024"), ["cafe", "zoe", "s", "2024"]);
        assert_eq!(tokens("o'neil_x"), ["o", "neil", "x"]);
        assert_eq!(stored(""), " ");
        assert_eq!(stored("March invoice"), " march invoice ");
        assert_eq!(pattern("@@", false), None);
        assert_eq!(pattern("alice@x.t", false).as_deref(), Some("% alice x t%"));
        assert_eq!(
            pattern("March invoice", true).as_deref(),
            Some("% march invoice %")
        );
    }

    #[test]
    fn patterns_match_what_fts5_matches() {
        let texts = [
            "March invoice",
            "Invoice for April",
            "Alice <alice@x.test>, O'Neil <oneil@y.test>",
            "Café à la carte",
            "re: RE: fw: budget-2024 (final)",
            "",
            "日本語 テキスト デ",
        ];
        let queries = [
            ("invoice", false),
            ("inv", false),
            ("march invoice", true),
            ("invoice march", true),
            ("march inv", true),
            ("alice@x.test", false),
            ("alice@x", false),
            ("x.test", true),
            ("o'neil", false),
            ("neil", false),
            ("eil", false),
            ("cafe", false),
            ("CAFÉ", true),
            ("a la", true),
            ("budget-2024", false),
            ("2024 final", true),
            ("@@", false),
            ("日本語", false),
            ("テ", false),
            ("re re", true),
        ];
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch("CREATE VIRTUAL TABLE t USING fts5(v)")
            .unwrap();
        for (i, t) in texts.iter().enumerate() {
            db.execute(
                "INSERT INTO t(rowid, v) VALUES(?1, ?2)",
                rusqlite::params![i as i64, t],
            )
            .unwrap();
        }
        for (value, phrase) in queries {
            let q = crate::search::Term::Text {
                field: crate::search::TextField::Subject,
                value: value.into(),
                phrase,
            };
            let m = crate::search::Query { terms: vec![q] }
                .fts_match()
                .unwrap()
                .replace("subject", "v");
            let mut st = db
                .prepare("SELECT rowid FROM t WHERE t MATCH ?1 ORDER BY rowid")
                .unwrap();
            let fts: Vec<usize> = st
                .query_map([&m], |r| r.get::<_, i64>(0))
                .unwrap()
                .map(|r| r.unwrap() as usize)
                .collect();
            let ours: Vec<usize> = match pattern(value, phrase) {
                None => Vec::new(),
                Some(p) => (0..texts.len())
                    .filter(|&i| like(&stored(texts[i]), &p))
                    .collect(),
            };
            assert_eq!(ours, fts, "{value:?} (phrase: {phrase})");
        }
    }
}
