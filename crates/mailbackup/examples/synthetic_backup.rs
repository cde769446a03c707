//! Benchmark fixtures (not a test): a synthetic backup folder, or a synthetic header index and
//! the time searches over it take.
//!
//! ```text
//! synthetic_backup backup DIR N    # N .eml files (2-12 KiB) in 6 folders, with their index rows
//! synthetic_backup search DIR N    # N header rows in DIR/.meta/index.sqlite, then timed queries
//! synthetic_backup query DIR        # the timed queries again, over the index search made
//! ```
//!
//! Each query is timed as `mailbackup search` answers it (the median of 5): the 50 newest hits
//! (`select`) and, when there may be more, their number counted up to `COUNT_CAP` (its "50 of
//! N shown" line), printed with its ratio to the 100 ms limit; the exact count of every hit
//! (`search --count`) is timed apart.
//!
//! Rows are inserted with plain SQL in one transaction (the index schema is created by
//! `SqliteIndex::open`; the FTS5 table is filled by its triggers), which is how a fixture of a
//! million rows is made in seconds rather than through a million durable commits.

use mailbackup::Index as _;
use mailbackup::search::{COUNT_CAP, Order, Query, Selection, Total};
use mailbackup::store::{BackupHeader, ObjectKey};
use mailbackup::{SqliteIndex, headers::BACKFILL_FLAG};
use std::path::Path;
use std::time::Instant;

const WORDS: &[&str] = &[
    "invoice", "march", "report", "meeting", "budget", "holiday", "project", "review", "contract",
    "order", "shipment", "agenda", "minutes", "offer", "quote", "payment", "reminder", "update",
    "release", "planning", "draft", "summary", "feedback", "request", "approval", "delivery",
    "schedule", "training", "workshop", "launch",
];
const PEOPLE: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "zoe",
];
const FOLDERS: &[&str] = &[
    "Inbox",
    "Inbox/Clients",
    "Inbox/Clients/Acme",
    "Sent Items",
    "Archive",
    "Deleted Items",
];

/// Hits a search shows (`mailbackup search`'s default `--limit`).
const LIMIT: usize = 50;

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[(self.next() % v.len() as u64) as usize]
    }
}

struct Fake {
    id: String,
    from: String,
    to: String,
    subject: String,
    date: String,
    folder: usize,
    attach: bool,
    read: bool,
}

fn fake(r: &mut Rng, i: usize) -> Fake {
    let from = r.pick(PEOPLE);
    let to = r.pick(PEOPLE);
    let subject = format!("{} {} {}", r.pick(WORDS), r.pick(WORDS), i % 997);
    let day = r.next() % (5 * 365);
    let date = chrono::DateTime::from_timestamp(
        1_577_836_800 + (day * 86_400 + r.next() % 86_400) as i64,
        0,
    )
    .unwrap_or_default()
    .format("%Y-%m-%dT%H:%M:%SZ")
    .to_string();
    Fake {
        id: format!("AAMkSynthetic{i:08}"),
        from: format!(
            "{} <{from}@example.test>",
            from[..1].to_uppercase() + &from[1..]
        ),
        to: format!("{to}@example.test"),
        subject,
        date,
        folder: (r.next() % FOLDERS.len() as u64) as usize,
        attach: r.next().is_multiple_of(5),
        read: !r.next().is_multiple_of(3),
    }
}

fn fill(dir: &Path, n: usize, files: bool) -> Result<(), Box<dyn std::error::Error>> {
    let index_path = dir.join(".meta").join(mailbackup::index::INDEX_FILE);
    drop(SqliteIndex::open(&index_path)?);
    let mut conn = rusqlite::Connection::open(&index_path)?;
    let tx = conn.transaction()?;
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    for (i, f) in FOLDERS.iter().enumerate() {
        tx.execute(
            "INSERT OR REPLACE INTO folders(mailbox, folder_id, name, delta_link, updated_at)
             VALUES('me', ?1, ?2, 'link', 'now')",
            rusqlite::params![format!("folder-{i}"), f],
        )?;
    }
    {
        let mut saved = tx.prepare(
            "INSERT INTO saved(mailbox, id, path, last_modified, size, sha256, saved_at)
             VALUES('me', ?1, ?2, ?3, ?4, '', 'now')",
        )?;
        let mut headers = tx.prepare(
            "INSERT INTO headers(mailbox, id, path, from_addr, to_addr, cc_addr, subject, date,
               message_id, folder_id, size, has_attachment, is_read)
             VALUES('me', ?1, ?2, ?3, ?4, '', ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for i in 0..n {
            let m = fake(&mut r, i);
            let key = ObjectKey::for_message("", &m.id, Some(&m.date));
            let mut size = 0u64;
            if files {
                let head = BackupHeader {
                    id: m.id.clone(),
                    last_modified: m.date.clone(),
                }
                .to_line("\r\n");
                let mut body = format!(
                    "{head}From: {}\r\nTo: {}\r\nSubject: {}\r\nMessage-ID: <{}@example.test>\r\nDate: {}\r\nContent-Type: text/plain\r\n\r\n",
                    m.from, m.to, m.subject, m.id, m.date
                );
                let lines = 30 + (r.next() % 150) as usize;
                for l in 0..lines {
                    if l % 40 == 7 {
                        body.push_str("From the desk of the sender, a line mbox must quote.\r\n");
                    } else {
                        body.push_str("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n");
                    }
                }
                let path = dir.join(key.as_str());
                std::fs::create_dir_all(path.parent().ok_or("no parent")?)?;
                std::fs::write(&path, body.as_bytes())?;
                size = body.len() as u64;
            }
            saved.execute(rusqlite::params![m.id, key.as_str(), m.date, size as i64])?;
            headers.execute(rusqlite::params![
                m.id,
                key.as_str(),
                m.from,
                m.to,
                m.subject,
                m.date,
                format!("<{}@example.test>", m.id),
                format!("folder-{}", m.folder),
                size as i64,
                m.attach,
                m.read
            ])?;
        }
    }
    tx.execute(
        "INSERT OR REPLACE INTO flags(name, done_at) VALUES(?1, 'now')",
        rusqlite::params![BACKFILL_FLAG],
    )?;
    tx.commit()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: synthetic_backup backup|search DIR N, or synthetic_backup query DIR";
    let (Some(mode), Some(dir)) = (args.get(1), args.get(2)) else {
        return Err(usage.into());
    };
    let dir = Path::new(dir);
    if mode != "query" {
        let n: usize = args.get(3).ok_or(usage)?.parse()?;
        let started = Instant::now();
        fill(dir, n, mode == "backup")?;
        eprintln!(
            "made {n} messages in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        if mode != "search" {
            return Ok(());
        }
    }
    let ix = SqliteIndex::open(&dir.join(".meta").join(mailbackup::index::INDEX_FILE))?;
    for q in [
        "from:alice",
        "subject:\"march invoice\"",
        "from:alice subject:\"march invoice\" after:2024-01-01 folder:Inbox has:attachment",
        "budget",
        "zoe@example.test before:2021-01-01",
        // A full-text term with many matches and a date range keeping few of them: the count
        // never reaches COUNT_CAP.
        "zoe@example.test before:2020-07-01",
        "zoe@example.test after:2024-06-01 before:2024-07-01",
        "budget after:2024-06-01 before:2024-07-01",
        "folder:Archive is:unread",
        "after:2024-06-01 before:2024-06-02",
    ] {
        let sel = Selection {
            query: Query::parse(q)?,
            ..Default::default()
        };
        // As `mailbackup search` answers: the 50 newest, then (when there may be more) the
        // count up to COUNT_CAP. The exact count (`search --count`) is timed apart.
        let (mut whole, mut pages, mut exact_times) = (Vec::new(), Vec::new(), Vec::new());
        let (mut hits, mut total, mut exact) = (0, Total::Exact(0), 0);
        for _ in 0..5 {
            let t = Instant::now();
            hits = ix.select(&sel, Order::Newest, None, LIMIT)?.len();
            pages.push(ms(t));
            total = Total::of(&ix, &sel, hits, LIMIT, Some(COUNT_CAP))?;
            whole.push(ms(t));
            let t = Instant::now();
            exact = ix.count(&sel, u64::MAX)?;
            exact_times.push(ms(t));
        }
        let (whole, page, exact_ms) = (median(whole), median(pages), median(exact_times));
        println!(
            "{whole:>6.1} ms = {:.2} of the 100 ms limit ({hits} shown in {page:.1} ms, {total} found; exact count {exact} in {exact_ms:.1} ms)  {q}",
            whole / 100.0
        );
    }
    Ok(())
}
