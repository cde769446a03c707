//! How [`SqliteIndex`] answers a search: the MATCH expression, with prefixes spelled out as
//! the words of the index they begin (`fts_match`), the SQL of a [`Selection`] (`select_sql`),
//! the plan between the full-text index and the date index (`select_planned`, `walk_first`),
//! the walk of the date index that checks rows in a small in-memory FTS5 table
//! (`walk_newest`). Counting is in `count.rs`. Results are the same whichever way is taken;
//! only the cost differs.

use super::*;

const FOLDER_PATH: &str = "COALESCE(f.name, h.folder_id)";

/// Above this many full-text matches, newest-first results are found by walking the date index
/// and testing each row against the matches (stopping at the limit), instead of fetching every
/// match and sorting them.
const WALK_BY_DATE_ABOVE: i64 = 2000;

/// A prefix whose word is in more rows than this costs FTS5 a merge worth avoiding.
const PREFIX_MERGE_ABOVE: i64 = 100_000;

/// Rows of the date index [`walk_newest`] tests at most before it leaves the query to the
/// full-text index.
const WALK_BUDGET: usize = 2048;

/// A prefix is spelled out as the indexed words it begins ([`fts_match`]) when they are at most
/// this many.
const SPELL_OUT_AT_MOST: usize = 16;

/// Which table the SQL of [`select_sql`] reads first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Drive {
    /// SQLite's choice: the full-text terms are a list of matching rows (`h.seq IN (SELECT
    /// rowid ...)`), built whole before the first row is returned.
    Planner,
    /// The date index (`INDEXED BY headers_by_date`), newest first.
    DateIndex,
    /// The full-text index, row by row (`headers_fts CROSS JOIN headers`): a `LIMIT` stops it
    /// at the limit instead of after every match.
    FullText,
    /// As [`Drive::FullText`], each row's date read from the covering index `headers_dates`
    /// (`seq, date`) instead of the table: for a count whose only terms besides the full-text
    /// ones are `after:`/`before:` ([`super::count::dates_suffice`]). An entry is about 30
    /// bytes, a table row some 200, so rows a few apart in `seq` share an index page where
    /// each needed a table page of its own.
    FullTextDates,
}

/// The condition on `h.date` of an `after:` or `before:` term (`None`: another term) and its
/// parameter, the day's first second as dates are stored (`YYYY-MM-DDTHH:MM:SSZ`, compared as
/// text; a row without a date is neither).
pub(super) fn date_condition(term: &Term) -> Option<(&'static str, rusqlite::types::Value)> {
    let (condition, day) = match term {
        Term::After(d) => (" AND h.date >= ?", d),
        Term::Before(d) => (" AND h.date < ?", d),
        _ => return None,
    };
    Some((
        condition,
        rusqlite::types::Value::Text(format!("{}T00:00:00Z", day.format("%Y-%m-%d"))),
    ))
}

/// The SQL and parameters of a selection: every term, the full-text ones as the MATCH
/// expression `fts` ([`fts_match`]; none: left out), read in the way `drive` says.
pub(super) fn select_sql(
    selection: &Selection,
    fts: Option<&str>,
    order: Option<Order>,
    after: Option<&Cursor>,
    limit: usize,
    drive: Drive,
) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let fts_drives = matches!(drive, Drive::FullText | Drive::FullTextDates) && fts.is_some();
    // The folder's name is read for the folder path shown and for folder terms only (a folder
    // row is unique per mailbox and id: the join never adds or removes a row).
    let folders = order.is_some()
        || selection
            .terms()
            .iter()
            .any(|t| matches!(t, Term::Folder(_)));
    let mut sql = format!(
        "SELECT {} FROM {}{} WHERE 1=1",
        match order {
            // Counting, or the rows of a date range (`count::SeqSet`): the `seq` only, which
            // every index holds (nor the folder, unless a term needs it).
            None => "h.seq".to_string(),
            Some(_) => format!(
                "h.seq, h.mailbox, h.id, h.path, h.from_addr, h.to_addr, h.cc_addr, h.subject,
                 h.date, h.message_id, h.folder_id, h.size, h.has_attachment, h.is_read,
                 {FOLDER_PATH}, h.created"
            ),
        },
        match drive {
            Drive::FullTextDates if fts_drives => {
                "headers_fts CROSS JOIN headers h INDEXED BY headers_dates
                   ON h.seq = headers_fts.rowid"
            }
            _ if fts_drives => "headers_fts CROSS JOIN headers h ON h.seq = headers_fts.rowid",
            Drive::DateIndex => "headers h INDEXED BY headers_by_date",
            _ => "headers h",
        },
        if folders {
            " LEFT JOIN folders f ON f.mailbox=h.mailbox AND f.folder_id=h.folder_id"
        } else {
            ""
        }
    );
    let mut p: Vec<Value> = Vec::new();
    let mut bind = |sql: &mut String, text: &str, v: Value| {
        p.push(v);
        sql.push_str(&text.replace('?', &format!("?{}", p.len())));
    };
    if let Some(m) = fts {
        bind(
            &mut sql,
            if fts_drives {
                " AND headers_fts MATCH ?"
            } else {
                " AND h.seq IN (SELECT rowid FROM headers_fts WHERE headers_fts MATCH ?)"
            },
            Value::Text(m.to_string()),
        );
    }
    for t in &selection.terms() {
        match t {
            Term::Text { .. } => {}
            Term::After(_) | Term::Before(_) => {
                if let Some((condition, day)) = date_condition(t) {
                    bind(&mut sql, condition, day);
                }
            }
            // The rule is evaluated once per folder, not once per message: a message's path is
            // its folder's name, or its folder id when the folder has no row (`f.name` is NULL).
            Term::Folder(path) => {
                bind(
                    &mut sql,
                    " AND ((h.mailbox, h.folder_id) IN (SELECT mailbox, folder_id FROM folders
                       WHERE folder_within(name, ?))",
                    Value::Text(path.clone()),
                );
                bind(
                    &mut sql,
                    " OR (f.name IS NULL AND folder_within(h.folder_id, ?)))",
                    Value::Text(path.clone()),
                );
            }
            Term::Mailbox(m) => bind(&mut sql, " AND h.mailbox = ?", Value::Text(m.clone())),
            Term::HasAttachment => sql.push_str(" AND h.has_attachment = 1"),
            Term::Read(r) => bind(&mut sql, " AND h.is_read = ?", Value::Integer(*r as i64)),
        }
    }
    let (from, before) = selection.created_bounds();
    if let Some(t) = from {
        bind(&mut sql, " AND h.created >= ?", Value::Text(t));
    }
    if let Some(t) = before {
        bind(&mut sql, " AND h.created < ?", Value::Text(t));
    }
    if !selection.messages.is_empty() {
        // Each is a key or a Graph id: both lists hold them all (the path and the id indexes
        // answer them).
        for column in [" AND (h.path IN (", ") OR h.id IN ("] {
            sql.push_str(column);
            for (i, m) in selection.messages.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                bind(&mut sql, "?", Value::Text(m.clone()));
            }
        }
        sql.push_str("))");
    }
    match order {
        // Counting: any order.
        None => {}
        Some(Order::Newest) => sql.push_str(" ORDER BY h.date DESC, h.seq DESC"),
        Some(Order::Folder) => {
            if let Some(c) = after {
                bind(
                    &mut sql,
                    " AND (h.mailbox, h.folder_id, h.seq) > (?",
                    Value::Text(c.mailbox.clone()),
                );
                bind(&mut sql, ", ?", Value::Text(c.folder_id.clone()));
                bind(&mut sql, ", ?)", Value::Integer(c.seq));
            }
            sql.push_str(" ORDER BY h.mailbox, h.folder_id, h.seq");
        }
    }
    bind(
        &mut sql,
        " LIMIT ?",
        Value::Integer(limit.min(i64::MAX as usize) as i64),
    );
    (sql, p)
}

/// The MATCH expression of a selection's full-text terms (`None`: there are none), each
/// unquoted term's prefix spelled out as the whole words of the index it begins when they are
/// at most [`SPELL_OUT_AT_MOST`] (`Query::fts_match_spelled_out`): `zoe@example.test` is the
/// phrase `zoe example test*`, which FTS5 answers by merging the lists of every word starting
/// with `test` over the whole index (a domain is in almost every message) before the first
/// row; `"zoe example test" OR "zoe example testing"` is read row by row. The same rows match.
///
/// The term's words are FTS5's own (the value tokenized in `walk.query_text`, same tokenizer
/// as `headers_fts`); the index's words starting with the last one are read in order from
/// `temp.headers_words` (an `fts5vocab` of `headers_fts`), one seek each.
pub(super) fn fts_match(c: &Connection, selection: &Selection) -> rusqlite::Result<Option<String>> {
    selection.query.fts_match_spelled_out(|value| {
        c.prepare_cached("DELETE FROM walk.query_text")?
            .execute([])?;
        c.prepare_cached("INSERT INTO walk.query_text(rowid, value) VALUES(1, ?1)")?
            .execute([value])?;
        let words: Vec<String> = c
            .prepare_cached("SELECT term FROM walk.query_words ORDER BY offset")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let Some((prefix, before)) = words.split_last() else {
            return Ok(None);
        };
        let mut next =
            c.prepare_cached("SELECT term FROM temp.headers_words WHERE term >= ?1 LIMIT 1")?;
        let mut from = prefix.clone();
        let mut phrases = Vec::new();
        while let Some(word) = next
            .query_row([&from], |r| r.get::<_, String>(0))
            .optional()?
            .filter(|w| w.starts_with(prefix.as_str()))
        {
            if phrases.len() == SPELL_OUT_AT_MOST {
                return Ok(None);
            }
            let mut phrase = before.to_vec();
            phrase.push(word.clone());
            phrases.push(phrase.join(" "));
            // The next word after `word` (a word never holds a NUL: FTS5's tokenizer splits
            // at control characters).
            from = format!("{word}\0");
        }
        Ok(Some(phrases))
    })
}

/// A hit from a row of [`select_sql`]'s columns.
fn hit(r: &rusqlite::Row<'_>) -> rusqlite::Result<Hit> {
    let key = ObjectKey::new(r.get::<_, String>(3)?).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Hit {
        seq: r.get(0)?,
        headers: HeaderRow {
            mailbox: r.get(1)?,
            id: r.get(2)?,
            key,
            from: r.get(4)?,
            to: r.get(5)?,
            cc: r.get(6)?,
            subject: r.get(7)?,
            date: r.get(8)?,
            created: r.get(15)?,
            message_id: r.get(9)?,
            folder_id: r.get(10)?,
            size: r.get::<_, i64>(11)?.max(0) as u64,
            has_attachment: r.get(12)?,
            is_read: r.get(13)?,
        },
        folder_path: r.get(14)?,
    })
}

/// A selection answered by one query over the full-text index: its matches fetched and sorted,
/// or, newest first with many matches, the date index walked and each row looked up in them.
pub(super) fn select_planned(
    c: &Connection,
    selection: &Selection,
    fts: Option<&str>,
    order: Order,
    after: Option<&Cursor>,
    limit: usize,
) -> rusqlite::Result<Vec<Hit>> {
    let by_date = match (fts, order) {
        (Some(m), Order::Newest) => {
            c.query_row(
                "SELECT COUNT(*) FROM (SELECT rowid FROM headers_fts WHERE headers_fts MATCH ?1 LIMIT ?2)",
                params![m, WALK_BY_DATE_ABOVE + 1],
                |r| r.get::<_, i64>(0),
            )? > WALK_BY_DATE_ABOVE
        }
        _ => false,
    };
    let drive = if by_date {
        Drive::DateIndex
    } else {
        Drive::Planner
    };
    let (sql, p) = select_sql(selection, fts, Some(order), after, limit, drive);
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(p), hit)?;
    rows.collect()
}

/// Whether [`walk_newest`] is the cheaper way to the newest hits: a word the query reads as a
/// prefix is in more than [`PREFIX_MERGE_ABOVE`] rows (FTS5 would merge all their lists, twice:
/// [`select_planned`] counts the matches, then fetches them), and the query, read as whole
/// words, matches more than [`WALK_BY_DATE_ABOVE`] rows (so the newest hits are likely among
/// the first rows of the date index). The first is estimated from the last `SAMPLE` (5,000) rows of
/// the index, the second counted up to the limit: whole words cost little (FTS5 skips through
/// the lists of common words). Only a guess: either way the hits are the same.
pub(super) fn walk_first(c: &Connection, selection: &Selection) -> rusqlite::Result<bool> {
    const SAMPLE: i64 = 5000;
    let (Some(prefixes), Some(whole)) = (
        selection.query.fts_prefix_words(),
        selection.query.fts_match_whole_words(),
    ) else {
        return Ok(false);
    };
    let last: i64 = c.query_row("SELECT COALESCE(MAX(seq), 0) FROM headers", [], |r| {
        r.get(0)
    })?;
    if last <= PREFIX_MERGE_ABOVE {
        return Ok(false);
    }
    let in_sample: i64 = c.query_row(
        "SELECT COUNT(*) FROM headers_fts WHERE headers_fts MATCH ?1 AND rowid > ?2",
        params![prefixes, last - SAMPLE],
        |r| r.get(0),
    )?;
    if in_sample * last / SAMPLE <= PREFIX_MERGE_ABOVE {
        return Ok(false);
    }
    Ok(c.query_row(
        "SELECT COUNT(*) FROM (SELECT rowid FROM headers_fts WHERE headers_fts MATCH ?1 LIMIT ?2)",
        params![whole, WALK_BY_DATE_ABOVE + 1],
        |r| r.get::<_, i64>(0),
    )? > WALK_BY_DATE_ABOVE)
}

/// Newest-first hits found without asking the full-text index: the date index is walked with
/// every other term applied, and the rows walked are tested against the full-text terms in a
/// small FTS5 table of the same definition (in the attached in-memory database `walk`), in
/// steps of 64, 128, 256... rows. `None` when [`WALK_BUDGET`] rows gave fewer than `limit` hits
/// (the caller then asks the full-text index: [`select_planned`]).
///
/// Why: a term such as `zoe@example.test` is the phrase `zoe example test*`; its last word is
/// a prefix, which FTS5 answers by merging the lists of every word starting with `test` over
/// the whole index (a domain is in almost every message: 1,000,000 entries), on every query.
/// Matching the same MATCH expression over the rows walked costs the rows walked instead, and
/// gives the same answer (a row's match depends on its own text only).
pub(super) fn walk_newest(
    c: &Connection,
    selection: &Selection,
    fts: &str,
    limit: usize,
) -> rusqlite::Result<Option<Vec<Hit>>> {
    // Same columns and (default) tokenizer as `headers_fts` in SCHEMA. One transaction: the
    // rows copied stay in FTS5's pending list instead of becoming one segment each.
    c.execute_batch("SAVEPOINT walk")?;
    let result = (|| -> rusqlite::Result<Option<Vec<Hit>>> {
        c.execute_batch(
            "DROP TABLE IF EXISTS walk.fts;
             CREATE VIRTUAL TABLE walk.fts USING fts5(subject, from_addr, to_addr, cc_addr);",
        )?;
        let (sql, p) = select_sql(
            selection,
            None,
            Some(Order::Newest),
            None,
            WALK_BUDGET,
            Drive::DateIndex,
        );
        let mut walk = c.prepare_cached(&sql)?;
        let mut rows = walk.query(rusqlite::params_from_iter(p))?;
        let mut insert = c.prepare_cached(
            "INSERT INTO walk.fts(rowid, subject, from_addr, to_addr, cc_addr)
             VALUES(?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut test = c.prepare_cached("SELECT rowid FROM walk.fts WHERE fts MATCH ?1")?;
        let mut walked: Vec<Hit> = Vec::new();
        let mut check_at = 64;
        let matched: HashSet<i64> = loop {
            let row = rows.next()?;
            let end = row.is_none();
            if let Some(r) = row {
                let h = hit(r)?;
                let x = &h.headers;
                insert.execute(params![h.seq, x.subject, x.from, x.to, x.cc])?;
                walked.push(h);
            }
            if end || walked.len() == check_at || walked.len() == WALK_BUDGET {
                let matched: HashSet<i64> = test
                    .query_map([fts], |r| r.get::<_, i64>(0))?
                    .collect::<rusqlite::Result<_>>()?;
                if end || matched.len() >= limit || walked.len() == WALK_BUDGET {
                    break matched;
                }
                check_at *= 2;
            }
        };
        if matched.len() < limit && walked.len() >= WALK_BUDGET {
            return Ok(None);
        }
        Ok(Some(
            walked
                .into_iter()
                .filter(|h| matched.contains(&h.seq))
                .take(limit)
                .collect(),
        ))
    })();
    // The table goes in any case (the next walk drops it too); the savepoint must end.
    let dropped = c.execute_batch("DROP TABLE IF EXISTS walk.fts");
    c.execute_batch("RELEASE walk")?;
    let hits = result?;
    dropped?;
    Ok(hits)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn many_full_text_matches_give_the_newest_first_like_few_do() {
        let dir = tempfile::tempdir().unwrap();
        let ix = SqliteIndex::open(&dir.path().join(".meta/index.sqlite")).unwrap();
        // 2,500 matches of `alpha` (more than WALK_BY_DATE_ABOVE), dates in scrambled order.
        let mut dates = Vec::new();
        ix.with(|c| {
            let tx = c.transaction()?;
            for i in 0..2500u64 {
                let day = (i * 7919) % 2500;
                let date = format!("2020-01-01T00:00:00Z+{day:05}");
                tx.execute(
                    "INSERT INTO headers(mailbox, id, path, from_addr, to_addr, cc_addr, subject,
                       date, folder_id, size, has_attachment)
                     VALUES('me', ?1, ?2, '', '', '', ?3, ?4, 'f', 1, 0)",
                    params![
                        format!("m{i}"),
                        format!("k/{i}.eml"),
                        if i % 2 == 0 {
                            "alpha even"
                        } else {
                            "alpha odd"
                        },
                        date
                    ],
                )?;
            }
            tx.commit()
        })
        .unwrap();
        for i in 0..2500u64 {
            dates.push((format!("2020-01-01T00:00:00Z+{:05}", (i * 7919) % 2500), i));
        }
        let ids = |q: &str| -> Vec<String> {
            let sel = Selection {
                query: crate::search::Query::parse(q).unwrap(),
                ..Default::default()
            };
            ix.select(&sel, Order::Newest, None, 5)
                .unwrap()
                .into_iter()
                .map(|h| h.headers.id)
                .collect()
        };
        dates.sort_by(|a, b| b.cmp(a));
        let want: Vec<String> = dates.iter().take(5).map(|(_, i)| format!("m{i}")).collect();
        assert_eq!(ids("alpha"), want, "walked by date");
        let want_even: Vec<String> = dates
            .iter()
            .filter(|(_, i)| i % 2 == 0)
            .take(5)
            .map(|(_, i)| format!("m{i}"))
            .collect();
        assert_eq!(
            ids("alpha even"),
            want_even,
            "1,250 matches: fetched and sorted"
        );
    }

    /// 6,000 generated rows: a few names at a few domains, subjects from a few words,
    /// scrambled dates (some missing, some equal), folders, attachments, read states.
    pub(in crate::index::sqlite) fn generated_index() -> (tempfile::TempDir, SqliteIndex) {
        let dir = tempfile::tempdir().unwrap();
        let ix = SqliteIndex::open(&dir.path().join(".meta/index.sqlite")).unwrap();
        let people = ["alice", "bob", "carol", "zoe", "zoë", "o'neil", "Ärger"];
        let domains = ["example.test", "example.testing", "other.test"];
        let words = ["march", "invoice", "report", "budget", "März", "test"];
        ix.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO folders(mailbox, folder_id, name, updated_at)
                 VALUES('me', 'f0', 'Inbox', 'now'), ('me', 'f1', 'Inbox/Überblick', 'now')",
                [],
            )?;
            for i in 0..6000u64 {
                let r = i.wrapping_mul(2_654_435_761) % 1_000_003;
                let pick = |v: &[&'static str], k: u64| v[((r / k) % v.len() as u64) as usize];
                let from = format!(
                    "{} <{}@{}>",
                    pick(&people, 1),
                    pick(&people, 7),
                    pick(&domains, 3)
                );
                let to = format!("{}@{}", pick(&people, 11), pick(&domains, 13));
                let subject = format!("{} {} {}", pick(&words, 17), pick(&words, 19), r % 97);
                let date = (r % 50 != 0)
                    .then(|| format!("2020-{:02}-{:02}T00:00:00Z", 1 + r % 12, 1 + r % 28));
                tx.execute(
                    "INSERT INTO headers(mailbox, id, path, from_addr, to_addr, cc_addr, subject,
                       date, folder_id, size, has_attachment, is_read)
                     VALUES('me', ?1, ?2, ?3, ?4, '', ?5, ?6, ?7, 1, ?8, ?9)",
                    params![
                        format!("m{i}"),
                        format!("k/{i}.eml"),
                        from,
                        to,
                        subject,
                        date,
                        format!("f{}", r % 3),
                        r % 5 == 0,
                        r % 3 != 0
                    ],
                )?;
            }
            tx.commit()
        })
        .unwrap();
        (dir, ix)
    }

    #[test]
    fn walking_the_date_index_finds_what_the_full_text_index_finds() {
        let (_dir, ix) = generated_index();
        let (mut walked, mut left) = (0, 0);
        for q in [
            "zoe@example.test",
            "zoe@example.test before:2020-06-01",
            "zoe@example.test after:2020-03-01 before:2020-04-01",
            "example.test is:unread has:attachment",
            "from:alice",
            "from:ali to:zoe",
            "from:zoe",
            "to:\"bob@other.test\"",
            "subject:\"march invoice\"",
            "subject:\"march invoice\" from:carol folder:INBOX/überblick",
            "budget",
            "märz",
            "o'neil",
            "ärger@example",
            "test",
            "folder:inbox invoice",
            "nobody",
            "mailbox:other alice",
        ] {
            let sel = Selection {
                query: crate::search::Query::parse(q).unwrap(),
                ..Default::default()
            };
            let m = sel.query.fts_match().unwrap();
            let spelled = ix.with(|c| fts_match(c, &sel)).unwrap().unwrap();
            for limit in [0, 1, 7, 50, 500, 5000] {
                let (old, spelled_out, new) = ix
                    .with(|c| {
                        Ok((
                            select_planned(c, &sel, Some(&m), Order::Newest, None, limit)?,
                            select_planned(c, &sel, Some(&spelled), Order::Newest, None, limit)?,
                            walk_newest(c, &sel, &m, limit)?,
                        ))
                    })
                    .unwrap();
                assert_eq!(spelled_out, old, "{q} as {spelled} (limit {limit})");
                assert_eq!(
                    ix.count(&sel, limit as u64).unwrap(),
                    old.len() as u64,
                    "{q} counted (limit {limit})"
                );
                match new {
                    Some(new) => {
                        walked += 1;
                        assert_eq!(new, old, "{q} (limit {limit})");
                    }
                    None => left += 1,
                }
                assert_eq!(
                    ix.select(&sel, Order::Newest, None, limit).unwrap(),
                    old,
                    "{q} (limit {limit})"
                );
            }
        }
        assert!(
            walked > 40 && left > 5,
            "both ways are compared: {walked} walked, {left} left"
        );
    }

    #[test]
    fn prefixes_are_spelled_out_as_the_indexed_words_they_begin() {
        let dir = tempfile::tempdir().unwrap();
        let ix = SqliteIndex::open(&dir.path().join(".meta/index.sqlite")).unwrap();
        let mut subjects: Vec<String> = (0..20).map(|i| format!("many{i:02} report")).collect();
        subjects.push("o'neil wrote".into());
        ix.with(|c| {
            let tx = c.transaction()?;
            let from = [
                "Zoë <zoe@example.test>",
                "zoe@example.testing",
                "zoe@example.tester",
                "zoe@example.tes",
                "zoe@other.test",
            ];
            for (i, subject) in subjects.iter().enumerate() {
                tx.execute(
                    "INSERT INTO headers(mailbox, id, path, from_addr, to_addr, cc_addr, subject,
                       date, folder_id, size, has_attachment)
                     VALUES('me', ?1, ?2, ?3, '', '', ?4, NULL, 'f', 1, 0)",
                    params![
                        format!("m{i}"),
                        format!("k/{i}.eml"),
                        from[i % from.len()],
                        subject
                    ],
                )?;
            }
            tx.commit()
        })
        .unwrap();
        let spelled = |q: &str| {
            let sel = Selection {
                query: crate::search::Query::parse(q).unwrap(),
                ..Default::default()
            };
            ix.with(|c| fts_match(c, &sel)).unwrap().unwrap()
        };
        const ANY: &str = "{subject from_addr to_addr cc_addr}";
        // Folded as FTS5 folds (case, diacritics), every word after `test` that begins with it.
        assert_eq!(
            spelled("Zoë@Example.TEST"),
            format!(
                "{ANY} : (\"zoe example test\" OR \"zoe example tester\" OR \"zoe example testing\")"
            )
        );
        assert_eq!(
            spelled("from:o'nx subject:\"march invoice\""),
            "from_addr : (\"o'nx\"*) AND subject : (\"march invoice\")",
            "no word begins with `nx` in the index: kept, a phrase is never a prefix"
        );
        assert_eq!(spelled("o'ne"), format!("{ANY} : (\"o neil\")"));
        assert_eq!(
            spelled("many"),
            format!("{ANY} : (\"many\"*)"),
            "20 words begin with `many`: more than spelled out"
        );
        assert_eq!(
            spelled("@."),
            format!("{ANY} : (\"@.\"*)"),
            "no word at all"
        );
        // The same messages either way.
        for q in [
            "zoe@example.test",
            "Zoë@Example.TEST",
            "o'ne",
            "example.tes",
            "many",
        ] {
            let sel = Selection {
                query: crate::search::Query::parse(q).unwrap(),
                ..Default::default()
            };
            let m = sel.query.fts_match().unwrap();
            let by_prefix = ix
                .with(|c| select_planned(c, &sel, Some(&m), Order::Folder, None, 100))
                .unwrap();
            assert!(!by_prefix.is_empty(), "{q}");
            assert_eq!(
                ix.select(&sel, Order::Folder, None, 100).unwrap(),
                by_prefix,
                "{q}"
            );
        }
    }
}
