//! How [`SqliteIndex`] counts a selection's hits up to a limit (`count`). Two ways, the same
//! count:
//! - the full-text index row by row, each match looked up for the other terms, stopping at
//!   the limit (`count_sql`): its cost is the matches walked;
//! - for a full-text search whose other terms are only `after:`/`before:`, the rows of the
//!   date range read from the date index into a set of `seq` first, then the full-text
//!   matches tested against the set (`in_date_range`): its cost is the rows of the range.
//!
//! The second is taken when a sample of the index says the range holds fewer rows than the
//! first would look up (`range_budget`): `zoe@example.test after:2024-06-01
//! before:2024-07-01` over a million messages has 97,550 matches and 1,581 hits, so its count
//! never reaches the cap and looks up every match's date (0.35 µs each), where the range's
//! 16,567 rows are read at 0.075 µs each.

use super::search::{Drive, date_condition, fts_match, select_sql};
use super::*;

/// The index is sampled in this many windows of consecutive `seq` ...
const SAMPLE_WINDOWS: i64 = 8;

/// ... of this many each, spread evenly over it (4,096 rows: about a millisecond over a
/// million messages, mostly FTS5 seeking the words' lists to each window).
const SAMPLE_WIDTH: i64 = 512;

/// Looking a match's date up in `headers_dates` costs about this many times reading a row of
/// the date range into the set (0.35 µs against 0.075 µs over a million messages, measured
/// with `synthetic_backup`; a little less than the ratio, so a close call keeps the lookups).
const LOOKUP_COST: f64 = 4.0;

/// Whether the terms of `selection` other than the full-text ones need nothing of a row but
/// its date (`after:`, `before:`), so that [`Drive::FullTextDates`] can count it.
pub(super) fn dates_suffice(selection: &Selection) -> bool {
    selection.messages.is_empty()
        && selection.created_bounds() == (None, None)
        && selection
            .terms()
            .iter()
            .all(|t| matches!(t, Term::Text { .. } | Term::After(_) | Term::Before(_)))
}

/// The number of `selection`'s hits, counted up to `at_most`: by the date range when it is a
/// full-text search narrowed by dates only and the range is the cheaper side
/// ([`range_budget`], [`in_date_range`]), else by the full-text index ([`count_sql`]).
pub(super) fn count(c: &Connection, selection: &Selection, at_most: u64) -> rusqlite::Result<u64> {
    let fts = fts_match(c, selection)?;
    if let Some(m) = &fts
        && dates_suffice(selection)
        && selection
            .terms()
            .iter()
            .any(|t| matches!(t, Term::After(_) | Term::Before(_)))
        && let Some(budget) = range_budget(c, selection, m, at_most)?
        && let Some(range) = SeqSet::of_dates(c, selection, budget)?
    {
        return in_date_range(c, m, &range, at_most);
    }
    let (sql, p) = count_sql(selection, fts.as_deref(), at_most);
    c.query_row(&sql, rusqlite::params_from_iter(p), |r| r.get::<_, i64>(0))
        .map(|n| n.max(0) as u64)
}

/// The SQL and parameters counting a selection's matches up to `at_most`, `fts` its MATCH
/// expression ([`fts_match`]): the full-text index drives ([`Drive::FullText`]), so counting
/// stops at the limit instead of after the list of every match is built (50,000 matches of a
/// common word in a million messages), and reads the dates from the covering index when
/// nothing else of a row is needed ([`Drive::FullTextDates`]: `zoe@example.test
/// before:2021-01-01` looks some 50,000 rows up before it has counted 10,001).
fn count_sql(
    selection: &Selection,
    fts: Option<&str>,
    at_most: u64,
) -> (String, Vec<rusqlite::types::Value>) {
    let limit = usize::try_from(at_most).unwrap_or(usize::MAX);
    let (sql, p) = select_sql(
        selection,
        fts,
        None,
        None,
        limit,
        if dates_suffice(selection) {
            Drive::FullTextDates
        } else {
            Drive::FullText
        },
    );
    (format!("SELECT COUNT(*) FROM ({sql})"), p)
}

/// How many rows of `selection`'s date range [`in_date_range`] may read before it costs more
/// than [`count_sql`] would (`None`: counting by the range is not the cheaper way).
///
/// Estimated from [`SAMPLE_WINDOWS`] windows of [`SAMPLE_WIDTH`] `seq`, spread evenly over the
/// index (the whole index when it is smaller): in them, the full-text matches `F` and the rows
/// of the date range `R`, scaled to the index of `N` rows. `count_sql` walks the matches until
/// `at_most` are in the range: about `W = min(F, at_most * N / R)` of them, each looked up
/// ([`LOOKUP_COST`]); `in_date_range` reads the `R` rows of the range (the full-text matches
/// are walked alike by both). The range is read when `R < LOOKUP_COST * W`, at most
/// `2 * LOOKUP_COST * W` rows of it: a sample can miss, and a range beyond that is left to the
/// lookups (the rows read are wasted, at most twice what the lookups were to cost).
fn range_budget(
    c: &Connection,
    selection: &Selection,
    fts: &str,
    at_most: u64,
) -> rusqlite::Result<Option<u64>> {
    let last: i64 = c.query_row("SELECT COALESCE(MAX(seq), 0) FROM headers", [], |r| {
        r.get(0)
    })?;
    if last < 1 || at_most == 0 {
        return Ok(None);
    }
    let windows: Vec<(i64, i64)> = if last <= SAMPLE_WINDOWS * SAMPLE_WIDTH {
        vec![(i64::MIN, i64::MAX)]
    } else {
        (0..SAMPLE_WINDOWS)
            .map(|i| {
                let first = 1 + i * (last / SAMPLE_WINDOWS);
                (first, first + SAMPLE_WIDTH - 1)
            })
            .collect()
    };
    let sampled = if windows.len() == 1 {
        last
    } else {
        SAMPLE_WINDOWS * SAMPLE_WIDTH
    };
    let mut in_range_sql =
        "SELECT COUNT(*) FROM headers h INDEXED BY headers_dates WHERE h.seq BETWEEN ?1 AND ?2"
            .to_string();
    let mut days = Vec::new();
    for t in selection.terms() {
        if let Some((condition, day)) = date_condition(&t) {
            days.push(day);
            in_range_sql.push_str(&condition.replace('?', &format!("?{}", days.len() + 2)));
        }
    }
    let mut matches_in = c.prepare_cached(
        "SELECT COUNT(*) FROM headers_fts WHERE headers_fts MATCH ?1 AND rowid BETWEEN ?2 AND ?3",
    )?;
    let mut in_range = c.prepare_cached(&in_range_sql)?;
    let (mut matches, mut rows) = (0i64, 0i64);
    for (first, end) in windows {
        matches += matches_in.query_row(params![fts, first, end], |r| r.get::<_, i64>(0))?;
        let mut p: Vec<rusqlite::types::Value> = vec![first.into(), end.into()];
        p.extend(days.iter().cloned());
        rows += in_range.query_row(rusqlite::params_from_iter(p), |r| r.get::<_, i64>(0))?;
    }
    let scale = last as f64 / sampled as f64;
    let (matches, rows) = (matches as f64 * scale, rows as f64 * scale);
    let walked = if rows > 0.0 {
        matches.min(at_most as f64 * last as f64 / rows)
    } else {
        matches
    };
    Ok((rows < LOOKUP_COST * walked).then(|| (2.0 * LOOKUP_COST * walked).ceil() as u64))
}

/// The `seq` of a set of rows, one bit each from the lowest.
#[derive(Debug)]
struct SeqSet {
    /// The lowest `seq` (bit 0) and the highest.
    first: i64,
    last: i64,
    bits: Vec<u64>,
}

impl SeqSet {
    /// The rows of `selection`'s date range (its `after:`/`before:` terms; it must have no
    /// other terms than those and full-text ones: [`dates_suffice`]), read from the date index
    /// (`headers_by_date`, which holds the `seq`); `None` when there are more than `at_most`.
    fn of_dates(
        c: &Connection,
        selection: &Selection,
        at_most: u64,
    ) -> rusqlite::Result<Option<SeqSet>> {
        let (sql, p) = select_sql(
            selection,
            None,
            None,
            None,
            usize::try_from(at_most.saturating_add(1)).unwrap_or(usize::MAX),
            Drive::DateIndex,
        );
        let mut st = c.prepare_cached(&sql)?;
        let seqs: Vec<i64> = st
            .query_map(rusqlite::params_from_iter(p), |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if seqs.len() as u64 > at_most {
            return Ok(None);
        }
        let (Some(&first), Some(&last)) = (seqs.iter().min(), seqs.iter().max()) else {
            return Ok(Some(SeqSet {
                first: 1,
                last: 0,
                bits: Vec::new(),
            }));
        };
        // This index numbers its rows 1, 2, 3... (`seq` is the rowid): a span this wide is not
        // one it made, and is left to the lookups rather than allocated.
        let span = last.abs_diff(first);
        if span >= 1 << 32 {
            return Ok(None);
        }
        let mut bits = vec![0u64; (span / 64 + 1) as usize];
        for s in seqs {
            let i = s.abs_diff(first);
            bits[(i / 64) as usize] |= 1 << (i % 64);
        }
        Ok(Some(SeqSet { first, last, bits }))
    }

    /// Whether there are no rows (`first > last`).
    fn is_empty(&self) -> bool {
        self.first > self.last
    }

    fn contains(&self, seq: i64) -> bool {
        (self.first..=self.last).contains(&seq) && {
            let i = seq.abs_diff(self.first);
            self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0
        }
    }
}

/// The full-text matches of `fts` (a MATCH expression) among the rows of `range`, counted up
/// to `at_most`: FTS5 walks its matches between the range's lowest and highest `seq` (all of
/// them when the dates are scattered over the index, few when a range was backed up in one
/// go), each tested against the set.
fn in_date_range(c: &Connection, fts: &str, range: &SeqSet, at_most: u64) -> rusqlite::Result<u64> {
    let mut n = 0;
    if range.is_empty() {
        return Ok(n);
    }
    let mut st = c.prepare_cached(
        "SELECT rowid FROM headers_fts WHERE headers_fts MATCH ?1 AND rowid BETWEEN ?2 AND ?3",
    )?;
    let mut rows = st.query(params![fts, range.first, range.last])?;
    while n < at_most
        && let Some(r) = rows.next()?
    {
        if range.contains(r.get(0)?) {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::super::search::tests::generated_index;
    use super::*;

    fn selection(q: &str) -> Selection {
        Selection {
            query: crate::search::Query::parse(q).unwrap(),
            ..Default::default()
        }
    }

    /// The count of `selection` up to `at_most` by looking each match up ([`count_sql`]) and by
    /// reading the date range first ([`in_date_range`]), whatever [`range_budget`] says.
    fn both_ways(c: &Connection, selection: &Selection, at_most: u64) -> (u64, u64) {
        let fts = fts_match(c, selection).unwrap().unwrap();
        let (sql, p) = count_sql(selection, Some(&fts), at_most);
        let looked_up: i64 = c
            .query_row(&sql, rusqlite::params_from_iter(p), |r| r.get(0))
            .unwrap();
        let range = SeqSet::of_dates(c, selection, u64::MAX).unwrap().unwrap();
        let by_range = in_date_range(c, &fts, &range, at_most).unwrap();
        (looked_up as u64, by_range)
    }

    #[test]
    fn a_term_with_many_matches_in_a_narrow_date_range_is_counted_by_the_range() {
        let (_dir, ix) = generated_index();
        let budget = |q: &str, at_most: u64| {
            ix.with(|c| {
                let sel = selection(q);
                let fts = fts_match(c, &sel)?.unwrap();
                range_budget(c, &sel, &fts, at_most)
            })
            .unwrap()
        };
        // 2,074 matches, 154 of them in March: counting them up to the cap looks every match
        // up, where the range holds 480 rows.
        let narrow = "zoe@example.test after:2020-03-01 before:2020-04-01";
        let rows = budget(narrow, 10_001).expect("the range is read");
        assert!(rows > 1_000, "{narrow}: read up to {rows} rows");
        assert!(
            budget(narrow, u64::MAX).is_some(),
            "{narrow}: counted exactly"
        );
        // Counting up to 5 stops after some 60 matches: fewer than the range's rows.
        assert_eq!(budget(narrow, 5), None, "{narrow} up to 5");
        assert_eq!(budget(narrow, 0), None, "{narrow} up to 0");
        // No match: nothing to look up.
        assert_eq!(budget("nobody before:2020-04-01", 10_001), None);
    }

    #[test]
    fn counting_by_the_date_range_counts_what_looking_dates_up_counts() {
        let (_dir, ix) = generated_index();
        // Gaps in `seq` and rows FTS5 has deleted.
        ix.with(|c| c.execute("DELETE FROM headers WHERE seq % 7 = 3", []))
            .unwrap();
        let (mut by_range, mut looked_up) = (0, 0);
        for q in [
            // Every date is a day's first second: rows on the bounds, many equal dates, and
            // one in 50 has none.
            "zoe@example.test after:2020-03-01 before:2020-04-01",
            "zoe@example.test before:2020-02-01",
            "zoe@example.test after:2020-12-01",
            "zoe@example.test after:2020-03-01 after:2020-05-02 before:2020-09-01 before:2020-06-01",
            // Prefixes: `example.test` begins `example.testing` too; `test` begins
            // `testing`, and is a subject word of its own.
            "example.test after:2020-06-01 before:2020-07-01",
            "example.testing before:2020-03-01",
            "test after:2020-02-01 before:2020-02-15",
            "from:zoe to:bob@other.test after:2020-04-01 before:2020-10-01",
            "subject:\"march invoice\" before:2020-05-01",
            "budget after:2020-01-01",
            "märz after:2020-11-01",
            // Empty ranges, and no match.
            "zoe@example.test after:2020-05-01 before:2020-05-01",
            "zoe@example.test after:2020-06-01 before:2020-03-01",
            "zoe@example.test after:2021-01-01",
            "zoe@example.test before:2019-01-01",
            "nobody before:2020-06-01",
        ] {
            let sel = selection(q);
            let all = ix.with(|c| Ok(both_ways(c, &sel, u64::MAX))).unwrap();
            assert_eq!(all.1, all.0, "{q}: every hit");
            let hits = all.0;
            for at_most in [0, 1, 2, 7, 50, 500, hits.saturating_sub(1), hits, hits + 1] {
                let (lookups, range) = ix.with(|c| Ok(both_ways(c, &sel, at_most))).unwrap();
                assert_eq!(lookups, hits.min(at_most), "{q} up to {at_most}");
                assert_eq!(range, lookups, "{q} up to {at_most}");
                assert_eq!(
                    ix.count(&sel, at_most).unwrap(),
                    lookups,
                    "{q} up to {at_most}"
                );
                let read = ix
                    .with(|c| range_budget(c, &sel, &fts_match(c, &sel)?.unwrap(), at_most))
                    .unwrap();
                match read {
                    Some(_) => by_range += 1,
                    None => looked_up += 1,
                }
            }
        }
        assert!(
            by_range > 30 && looked_up > 30,
            "both ways are taken: {by_range} by the range, {looked_up} by lookups"
        );
    }

    #[test]
    fn a_range_with_more_rows_than_its_budget_is_left_to_the_lookups() {
        let (_dir, ix) = generated_index();
        let sel = selection("zoe@example.test after:2020-03-01 before:2020-04-01");
        let rows: i64 = ix
            .with(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM headers
                     WHERE date >= '2020-03-01T00:00:00Z' AND date < '2020-04-01T00:00:00Z'",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert!(rows > 100, "{rows} rows in March");
        let read = |at_most: u64| {
            ix.with(|c| SeqSet::of_dates(c, &sel, at_most))
                .unwrap()
                .map(|s| s.bits.iter().map(|w| w.count_ones() as i64).sum::<i64>())
        };
        assert_eq!(read(rows as u64), Some(rows), "as many as allowed");
        assert_eq!(read(rows as u64 - 1), None, "one more than allowed");
    }

    #[test]
    fn rows_numbered_far_apart_are_counted_by_lookups_not_a_set_that_wide() {
        let (_dir, ix) = generated_index();
        // `seq` given by hand, 2^40: not how this index numbers rows, but SQLite takes it.
        ix.with(|c| {
            c.execute(
                "INSERT INTO headers(seq, mailbox, id, path, from_addr, to_addr, cc_addr,
                   subject, date, folder_id, size, has_attachment)
                 VALUES(1099511627776, 'me', 'far', 'k/far.eml', 'zoe@example.test', '', '',
                   'far away', '2020-03-15T00:00:00Z', 'f0', 1, 0)",
                [],
            )
        })
        .unwrap();
        let sel = selection("zoe@example.test after:2020-03-01 before:2020-04-01");
        assert!(
            ix.with(|c| SeqSet::of_dates(c, &sel, u64::MAX))
                .unwrap()
                .is_none(),
            "no set of 2^40 bits"
        );
        for at_most in [1, 10_001, u64::MAX] {
            let looked_up = ix
                .with(|c| {
                    let fts = fts_match(c, &sel)?;
                    let (sql, p) = count_sql(&sel, fts.as_deref(), at_most);
                    c.query_row(&sql, rusqlite::params_from_iter(p), |r| r.get::<_, i64>(0))
                })
                .unwrap();
            assert_eq!(ix.count(&sel, at_most).unwrap(), looked_up as u64);
        }
        assert_eq!(
            ix.count(&sel, u64::MAX).unwrap(),
            155,
            "154 and the far one"
        );
    }

    /// The steps of the query plan of `selection`'s count up to 10,001.
    fn count_plan(ix: &SqliteIndex, selection: &Selection) -> Vec<String> {
        ix.with(|c| {
            let fts = fts_match(c, selection)?;
            let (sql, p) = count_sql(selection, fts.as_deref(), 10_001);
            let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
            let rows = st.query_map(rusqlite::params_from_iter(p), |r| r.get(3))?;
            rows.collect()
        })
        .unwrap()
    }

    #[test]
    fn counting_full_text_with_date_bounds_reads_dates_from_the_covering_index() {
        let (_dir, ix) = generated_index();
        for q in [
            "zoe@example.test before:2020-06-01",
            "budget after:2020-03-01 before:2020-09-01",
            "from:alice",
        ] {
            let sel = Selection {
                query: crate::search::Query::parse(q).unwrap(),
                ..Default::default()
            };
            let plan = count_plan(&ix, &sel);
            // Each row of the full-text index looks its date up in `headers_dates` (about 30
            // bytes an entry), not in the table (a page of its own for almost every row).
            assert!(
                plan.iter().any(|s| s.starts_with("SCAN headers_fts"))
                    && plan
                        .iter()
                        .any(|s| s.starts_with("SEARCH h USING COVERING INDEX headers_dates")),
                "{q}: {plan:?}"
            );
            // The same count as the table gives, NULL and equal dates included, at any limit.
            for limit in [0, 1, 7, 50, 500, 5000, u64::MAX] {
                let by_table = ix
                    .with(|c| {
                        let fts = fts_match(c, &sel)?;
                        let (sql, p) = select_sql(
                            &sel,
                            fts.as_deref(),
                            None,
                            None,
                            usize::try_from(limit).unwrap_or(usize::MAX),
                            Drive::FullText,
                        );
                        c.query_row(
                            &format!("SELECT COUNT(*) FROM ({sql})"),
                            rusqlite::params_from_iter(p),
                            |r| r.get::<_, i64>(0),
                        )
                    })
                    .unwrap();
                assert_eq!(
                    ix.count(&sel, limit).unwrap(),
                    by_table as u64,
                    "{q} (limit {limit})"
                );
            }
        }
    }

    #[test]
    fn counting_reads_the_full_text_index_row_by_row_up_to_the_limit() {
        let (_dir, ix) = generated_index();
        for q in [
            "budget",
            "zoe@example.test before:2020-06-01 has:attachment",
        ] {
            let sel = Selection {
                query: crate::search::Query::parse(q).unwrap(),
                folder: Some("Inbox".into()),
                ..Default::default()
            };
            let plan = count_plan(&ix, &sel);
            // The full-text index is the outer loop, each of its rows looked up by rowid (not a
            // list of every match built first, `LIST SUBQUERY` + `SCAN headers_fts`, then the
            // rows read by it).
            let steps: Vec<&String> = plan
                .iter()
                .filter(|s| s.starts_with("SCAN") || s.starts_with("SEARCH"))
                .collect();
            assert!(
                steps[0].starts_with("SCAN headers_fts")
                    && steps[1].starts_with("SEARCH h USING INTEGER PRIMARY KEY"),
                "{q}: {plan:?}"
            );
        }
    }
}
