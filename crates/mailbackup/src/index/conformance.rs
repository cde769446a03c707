//! The behaviour every [`Index`] must have. A backend's test calls [`index`] with an empty
//! index; it panics with a message naming the broken rule when the backend misbehaves.

mod leases;

use super::{HeaderRow, Index, QuarantinedRow, RestoreRow, SavedRow};
use crate::hooks::MessageInfo;
use crate::report::{BackupReport, RunStatus};
use crate::search::{Order, Query, Selection};
use crate::store::ObjectKey;
use std::collections::HashSet;
use std::time::Duration;

fn info(mailbox: &str, id: &str, subject: &str) -> MessageInfo {
    MessageInfo {
        mailbox: mailbox.into(),
        id: id.into(),
        subject: Some(subject.into()),
        ..Default::default()
    }
}

fn row(mailbox: &str, id: &str, key: &str, last_modified: &str, size: u64) -> SavedRow {
    SavedRow {
        mailbox: mailbox.into(),
        id: id.into(),
        key: ObjectKey::new(key).expect("key"),
        last_modified: last_modified.into(),
        size,
        sha256: format!("hash-of-{id}-{last_modified}"),
    }
}

fn ids(v: &[MessageInfo]) -> Vec<&str> {
    v.iter().map(|m| m.id.as_str()).collect()
}

/// Runs every check against `ix`, which must be empty.
pub fn index(ix: &dyn Index) {
    runs(ix);
    saved_copies(ix);
    remote_mirror(ix);
    folders(ix);
    headers_and_search(ix);
    search_words(ix);
    full_text_in_date_ranges(ix);
    flags_and_quarantine(ix);
    leases::leases(ix);
}

fn headers(mailbox: &str, id: &str, subject: &str, from: &str, date: &str) -> HeaderRow {
    HeaderRow {
        mailbox: mailbox.into(),
        id: id.into(),
        key: ObjectKey::new(format!("{mailbox}/{id}.eml")).expect("key"),
        from: from.into(),
        to: "Bob <bob@x.test>".into(),
        cc: String::new(),
        subject: subject.into(),
        date: Some(date.into()),
        // Created a day after it was sent.
        created: Some(
            (chrono::DateTime::parse_from_rfc3339(date).expect("date") + chrono::Duration::days(1))
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        ),
        message_id: Some(format!("<{id}@x.test>")),
        folder_id: "inbox-id".into(),
        size: 10,
        has_attachment: id == "h2",
        is_read: Some(id != "h3"),
    }
}

fn search(ix: &dyn Index, q: &str) -> Vec<String> {
    select(
        ix,
        &Selection {
            query: Query::parse(q).expect("query"),
            ..Default::default()
        },
    )
}

/// The ids `selection` selects, newest first; checks that counting agrees, up to any limit.
fn select(ix: &dyn Index, sel: &Selection) -> Vec<String> {
    let hits = ix.select(sel, Order::Newest, None, 100).expect("select");
    let n = hits.len() as u64;
    assert_eq!(
        ix.count(sel, u64::MAX).expect("count"),
        n,
        "count agrees with select for {sel:?}"
    );
    for at_most in [0, 1, 2] {
        assert_eq!(
            ix.count(sel, at_most).expect("count"),
            n.min(at_most),
            "count stops at {at_most} for {sel:?}"
        );
    }
    hits.into_iter().map(|h| h.headers.id).collect()
}

fn headers_and_search(ix: &dyn Index) {
    let h1 = headers(
        "hx",
        "h1",
        "March invoice",
        "Alice <alice@x.test>",
        "2024-03-05T09:00:00Z",
    );
    let h2 = headers(
        "hx",
        "h2",
        "Holiday photos",
        "Carol <carol@y.test>",
        "2024-06-01T09:00:00Z",
    );
    let h3 = headers(
        "hx",
        "h3",
        "Invoice for April",
        "Alice <alice@x.test>",
        "2023-12-31T23:59:59Z",
    );
    for h in [&h1, &h2, &h3] {
        let saved = row(&h.mailbox, &h.id, h.key.as_str(), "t1", h.size);
        ix.record_message(&saved, h).expect("record_message");
    }
    assert!(
        ix.saved(Some("hx")).expect("saved").len() == 3,
        "record_message records the saved copy"
    );
    assert_eq!(search(ix, ""), ["h2", "h1", "h3"], "newest first");
    assert_eq!(search(ix, "from:alice"), ["h1", "h3"]);
    assert_eq!(
        search(ix, "from:ali"),
        ["h1", "h3"],
        "words match as prefixes"
    );
    assert_eq!(search(ix, "invoice"), ["h1", "h3"], "bare words: subject");
    assert_eq!(search(ix, "carol@y.test"), ["h2"], "bare words: addresses");
    assert_eq!(search(ix, "subject:\"march invoice\""), ["h1"]);
    assert_eq!(
        search(ix, "subject:\"invoice march\""),
        Vec::<String>::new()
    );
    assert_eq!(search(ix, "after:2024-01-01 invoice"), ["h1"]);
    assert_eq!(search(ix, "before:2024-01-01"), ["h3"]);
    assert_eq!(search(ix, "has:attachment"), ["h2"]);
    assert_eq!(search(ix, "is:unread"), ["h3"]);
    assert_eq!(search(ix, "mailbox:other"), Vec::<String>::new());
    assert_eq!(
        search(ix, "folder:inbox-id"),
        ["h2", "h1", "h3"],
        "folder id until named"
    );
    ix.set_delta_link("hx", "inbox-id", "Inbox/Clients", Some("link"))
        .expect("set_delta_link");
    assert_eq!(
        search(ix, "folder:inbox"),
        ["h2", "h1", "h3"],
        "a folder includes those below"
    );
    assert_eq!(search(ix, "folder:Inbox/clients"), ["h2", "h1", "h3"]);
    assert_eq!(
        search(ix, "folder:Inb"),
        Vec::<String>::new(),
        "not a prefix of a name"
    );
    let sel = Selection {
        messages: vec![h3.key.as_str().to_string()],
        ..Default::default()
    };
    let hits = ix.select(&sel, Order::Newest, None, 10).expect("select");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].headers, h3, "a hit gives back what was recorded");
    assert_eq!(hits[0].folder_path, "Inbox/Clients");

    selection_options(ix, &h1, &h3);

    // Folder order pages through every hit once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = ix
            .select(&Selection::default(), Order::Folder, after.as_ref(), 2)
            .expect("select");
        seen.extend(page.iter().map(|h| h.headers.id.clone()));
        match page.last() {
            Some(h) if page.len() == 2 => after = Some(h.cursor()),
            _ => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["h1", "h2", "h3"]);

    // A changed subject is found under its new words only.
    let mut h1b = h1.clone();
    h1b.subject = "Budget".into();
    ix.record_headers(&h1b).expect("record_headers");
    assert_eq!(search(ix, "march"), Vec::<String>::new());
    assert_eq!(search(ix, "budget"), ["h1"]);
    // Forgetting a saved copy forgets its header row.
    ix.remove_saved("hx", "h1").expect("remove_saved");
    assert_eq!(search(ix, "budget"), Vec::<String>::new());
    assert_eq!(search(ix, "from:alice"), ["h3"]);
    // Back-fill support: saved copies without header rows.
    ix.record_saved(&row("hx", "h4", "hx/h4.eml", "t1", 1))
        .expect("record_saved");
    let missing: Vec<String> = ix
        .saved_without_headers()
        .expect("saved_without_headers")
        .into_iter()
        .filter(|r| r.mailbox == "hx")
        .map(|r| r.id)
        .collect();
    assert_eq!(missing, ["h4"]);
}

/// The options `search`, `export` and `restore` share, over the rows of [`headers_and_search`]
/// (h1 created 2024-03-06, h2 2024-06-02, h3 2024-01-01; h3's folder named `Inbox/Clients`).
fn selection_options(ix: &dyn Index, h1: &HeaderRow, h3: &HeaderRow) {
    let sel = |f: &dyn Fn(&mut Selection)| {
        let mut s = Selection::default();
        f(&mut s);
        select(ix, &s)
    };
    let day = |d: &str| Some(chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").expect("day"));
    assert_eq!(
        sel(&|s| s.created_from = day("2024-03-06")),
        ["h2", "h1"],
        "created on or after a day, by the creation time"
    );
    assert_eq!(
        sel(&|s| s.created_to = day("2024-03-06")),
        ["h1", "h3"],
        "created on or before a day: the whole day"
    );
    assert_eq!(
        sel(&|s| s.created_to = day("2024-03-05")),
        ["h3"],
        "sent on 2024-03-05 but created the day after"
    );
    assert_eq!(
        sel(&|s| {
            s.created_from = day("2024-01-01");
            s.created_to = day("2024-01-01");
        }),
        ["h3"]
    );
    assert_eq!(
        sel(&|s| s.messages = vec![h1.id.clone(), h3.key.as_str().to_string()]),
        ["h1", "h3"],
        "messages by Graph id or by key"
    );
    assert_eq!(
        sel(&|s| s.messages = vec!["no-such-id".into()]),
        Vec::<String>::new()
    );
    assert_eq!(sel(&|s| s.mailbox = Some("hx".into())), ["h2", "h1", "h3"]);
    assert_eq!(
        sel(&|s| s.mailbox = Some("other".into())),
        Vec::<String>::new()
    );
    assert_eq!(
        sel(&|s| s.folder = Some("INBOX/clients/".into())),
        ["h2", "h1", "h3"],
        "a folder as `folder:` reads it"
    );
    assert_eq!(
        sel(&|s| {
            s.folder = Some("Inbox".into());
            s.created_from = day("2024-01-02");
            s.query = Query::parse("invoice").expect("query");
        }),
        ["h1"],
        "every option combines with the query"
    );
}

/// How words match (FTS5's `unicode61` words), pinned for every backend; queries are limited
/// to mailbox `sx`.
fn search_words(ix: &dyn Index) {
    let mut s1 = headers(
        "sx",
        "s1",
        "Café meeting: re-planning",
        "O'Neil <oneil@z.test>",
        "2024-02-01T00:00:00Z",
    );
    s1.cc = "Dora <dora@z.test>".into();
    let mut s2 = headers(
        "sx",
        "s2",
        "No date here",
        "Eve <eve@z.test>",
        "2024-01-01T00:00:00Z",
    );
    s2.date = None;
    let s3 = headers(
        "sx",
        "s3",
        "Planning 2024",
        "Frank <frank@z.test>",
        "2023-01-01T00:00:00Z",
    );
    for h in [&s1, &s2, &s3] {
        let saved = row(&h.mailbox, &h.id, h.key.as_str(), "t1", h.size);
        ix.record_message(&saved, h).expect("record_message");
    }
    let q = |query: &str| search(ix, &format!("mailbox:sx {query}"));
    assert_eq!(
        q(""),
        ["s1", "s3", "s2"],
        "a message without a date comes last"
    );
    assert_eq!(
        q("after:2000-01-01"),
        ["s1", "s3"],
        "no date: not after a day"
    );
    assert_eq!(
        q("before:2100-01-01"),
        ["s1", "s3"],
        "no date: not before a day"
    );
    assert_eq!(q("cafe"), ["s1"], "diacritics are ignored");
    assert_eq!(q("CAFÉ"), ["s1"], "case and diacritics are ignored");
    assert_eq!(q("planning"), ["s1", "s3"], "punctuation separates words");
    assert_eq!(q("\"re planning\""), ["s1"], "a phrase across punctuation");
    assert_eq!(
        q("lanning"),
        Vec::<String>::new(),
        "a word matches from its start"
    );
    assert_eq!(q("from:o'neil"), ["s1"]);
    assert_eq!(q("from:neil"), ["s1"], "an apostrophe separates words");
    assert_eq!(q("cc:dora"), ["s1"]);
    assert_eq!(q("to:dora"), Vec::<String>::new(), "fields are apart");
    assert_eq!(q("dora"), ["s1"], "bare words: cc too");
    assert_eq!(
        q("\"planning bob\""),
        Vec::<String>::new(),
        "a phrase does not run from one field into another"
    );
    assert_eq!(
        q("@@"),
        Vec::<String>::new(),
        "a value without words matches nothing"
    );
    assert_eq!(q("2024"), ["s3"], "digits are words");
    assert_eq!(q("z.test"), ["s1", "s3", "s2"], "an address part as words");
    assert_eq!(q("\"meeting re\""), ["s1"]);
    assert_eq!(
        q("\"meeting re\" frank"),
        Vec::<String>::new(),
        "every term must match"
    );
}

/// A full-text term with a date range: rows on and beside the bounds, equal dates, no date,
/// the term inside other words, a removed row, ranges that are empty (rows of mailbox `dx`,
/// 2025; recorded in this order). Counted at every limit by [`select`], as `search` counts.
fn full_text_in_date_ranges(ix: &dyn Index) {
    let rows = [
        ("d1", "Zoe <zoe@example.test>", Some("2025-06-01T00:00:00Z")),
        ("d2", "zoe@example.test", Some("2025-05-31T23:59:59Z")),
        ("d3", "zoe@example.testing", Some("2025-06-15T00:00:00Z")),
        ("d4", "zoey@example.test", Some("2025-06-15T00:00:00Z")),
        ("d5", "bob@zoe.example.test", Some("2025-06-20T12:00:00Z")),
        ("d6", "zoe@example.test", Some("2025-07-01T00:00:00Z")),
        ("d7", "zoe@example.test", None),
        ("d8", "zoe@example.test", Some("2025-06-20T12:00:00Z")),
        ("d9", "zoe@example.test", Some("2025-06-10T00:00:00Z")),
        ("d10", "zoe@example.test", Some("2025-06-30T23:59:59Z")),
        ("d11", "zoe@example.test", Some("2025-08-01T00:00:00Z")),
        ("d12", "zoe@example.test", Some("2025-09-01T00:00:00Z")),
    ];
    for (id, from, date) in rows {
        let mut h = headers("dx", id, "Status", from, "2025-01-01T00:00:00Z");
        h.date = date.map(str::to_string);
        let saved = row(&h.mailbox, &h.id, h.key.as_str(), "t1", h.size);
        ix.record_message(&saved, &h).expect("record_message");
    }
    ix.remove_saved("dx", "d9").expect("remove_saved");
    let june = "after:2025-06-01 before:2025-07-01";
    assert_eq!(
        search(ix, &format!("zoe@example.test {june}")),
        ["d10", "d8", "d5", "d3", "d1"],
        "from the first second of the first day to the last second before the second day, \
         `zoe@example.testing` and `bob@zoe.example.test` too, not `zoey`, equal dates newest \
         recorded first"
    );
    assert_eq!(search(ix, "zoe@example.test before:2025-06-01"), ["d2"]);
    assert_eq!(
        search(ix, "zoe@example.test after:2025-07-01"),
        ["d12", "d11", "d6"]
    );
    assert_eq!(
        search(
            ix,
            "zoe@example.test after:2025-06-15 after:2025-06-02 before:2025-06-21 before:2025-07-01"
        ),
        ["d8", "d5", "d3"],
        "every bound applies"
    );
    assert_eq!(search(ix, &format!("example.testing {june}")), ["d3"]);
    assert_eq!(
        search(ix, &format!("zoe {june}")),
        ["d10", "d8", "d5", "d4", "d3", "d1"],
        "a word begins longer words"
    );
    for empty in [
        "zoe@example.test after:2025-06-01 before:2025-06-01",
        "zoe@example.test after:2025-07-01 before:2025-06-01",
        "zoe@example.test after:2026-01-01",
        "nobody@example.test before:2026-01-01",
    ] {
        assert_eq!(search(ix, empty), Vec::<String>::new(), "{empty}");
    }
}

fn flags_and_quarantine(ix: &dyn Index) {
    assert!(!ix.flag("job").expect("flag"));
    ix.set_flag("job").expect("set_flag");
    ix.set_flag("job").expect("set_flag twice");
    assert!(ix.flag("job").expect("flag"));
    let q = |key: &str, since: &str| QuarantinedRow {
        mailbox: "qx".into(),
        key: ObjectKey::new(key).expect("key"),
        location: format!("/q/{key}"),
        since: since.into(),
    };
    ix.record_quarantined(&q("b.eml", "2026-01-02T00:00:00+00:00"))
        .expect("record_quarantined");
    ix.record_quarantined(&q("a.eml", "2026-01-03T00:00:00+00:00"))
        .expect("record_quarantined");
    assert_eq!(
        ix.quarantined().expect("quarantined"),
        [
            q("b.eml", "2026-01-02T00:00:00+00:00"),
            q("a.eml", "2026-01-03T00:00:00+00:00")
        ],
        "oldest first"
    );
    ix.remove_quarantined(&ObjectKey::new("b.eml").expect("key"))
        .expect("remove_quarantined");
    assert_eq!(ix.quarantined().expect("quarantined").len(), 1);
    restore_log(ix);
}

fn runs(ix: &dyn Index) {
    assert_eq!(ix.last_run().expect("last_run"), None, "no run yet");
    let first = ix.start_run().expect("start_run");
    let last = ix.last_run().expect("last_run").expect("a run");
    assert_eq!((last.run_id, last.status.as_str()), (first, "Running"));
    assert_eq!(last.finished, None, "a running run has no end");
    let report = BackupReport {
        run_id: first,
        status: RunStatus::Aborted,
        mailboxes: Vec::new(),
        elapsed: Duration::from_secs(1),
    };
    ix.finish_run(&report).expect("finish_run");
    let last = ix.last_run().expect("last_run").expect("a run");
    assert_eq!(last.status, "Aborted");
    assert!(last.finished.is_some() && last.report.is_some());
    let second = ix.start_run().expect("start_run");
    assert!(second > first, "run numbers increase");
    assert_eq!(
        ix.last_run().expect("last_run").expect("run").run_id,
        second
    );
}

fn saved_copies(ix: &dyn Index) {
    let a1 = row("alice", "1", "alice/2024-01/1.eml", "t1", 10);
    let a2 = row("alice", "2", "alice/2024-01/2.eml", "t1", 20);
    let b1 = row("bob", "1", "bob/2024-01/1.eml", "t1", 5);
    for r in [&a1, &a2, &b1] {
        ix.record_saved(r).expect("record_saved");
    }
    // Replacing a row (a changed message, perhaps under another key).
    let a1_new = row("alice", "1", "alice/2024-02/1.eml", "t2", 11);
    ix.record_saved(&a1_new).expect("record_saved again");
    let mut alice = ix.saved(Some("alice")).expect("saved");
    alice.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(
        alice,
        vec![a1_new.clone(), a2.clone()],
        "one row per message"
    );
    assert_eq!(ix.saved(None).expect("saved").len(), 3);
    let map = ix.saved_map("alice").expect("saved_map");
    assert_eq!(map.get("1"), Some(&a1_new));
    assert_eq!(
        ix.saved_counts().expect("saved_counts"),
        vec![("alice".into(), 2, 31), ("bob".into(), 1, 5)]
    );
    ix.remove_saved("alice", "2").expect("remove_saved");
    ix.remove_saved("alice", "2")
        .expect("removing twice is fine");
    assert_eq!(ix.saved(Some("alice")).expect("saved"), vec![a1_new]);
    assert_eq!(
        ix.saved(Some("bob")).expect("saved"),
        vec![b1],
        "mailboxes are apart"
    );
}

fn remote_mirror(ix: &dyn Index) {
    ix.apply_remote(
        "me",
        "A",
        &[info("me", "1", "one"), info("me", "2", "two")],
        &[],
    )
    .expect("apply");
    ix.apply_remote("me", "B", &[info("me", "3", "three")], &[])
        .expect("apply");
    assert_eq!(
        ids(&ix.remote_messages("me").expect("remote")),
        ["1", "2", "3"]
    );
    // Properties are kept and updated.
    ix.apply_remote("me", "A", &[info("me", "2", "two, edited")], &[])
        .expect("apply");
    let remote = ix.remote_messages("me").expect("remote");
    assert_eq!(ids(&remote), ["1", "2", "3"], "listing order is kept");
    assert_eq!(remote[1].subject.as_deref(), Some("two, edited"));

    // 1 moves to B; B's round is seen before A's removal: the newer folder wins.
    ix.apply_remote("me", "B", &[info("me", "1", "one")], &[])
        .expect("apply");
    ix.apply_remote("me", "A", &[], &["1".into(), "2".into()])
        .expect("apply");
    assert_eq!(ids(&ix.remote_messages("me").expect("remote")), ["1", "3"]);
    assert_eq!(
        ix.remote_ids_in_folder("me", "B").expect("ids"),
        HashSet::from(["1".to_string(), "3".to_string()])
    );
    assert!(ix.remote_ids_in_folder("me", "A").expect("ids").is_empty());
    ix.remove_remote("me", "3").expect("remove_remote");
    assert_eq!(ids(&ix.remote_messages("me").expect("remote")), ["1"]);
    assert!(
        ix.remote_messages("other").expect("remote").is_empty(),
        "mailboxes are apart"
    );
}

fn folders(ix: &dyn Index) {
    assert_eq!(ix.delta_link("me", "B").expect("delta_link"), None);
    ix.set_delta_link("me", "B", "Inbox", Some("link-1"))
        .expect("set");
    ix.set_delta_link("me", "C", "Empty", Some("link-c"))
        .expect("set");
    ix.set_delta_link("me", "B", "Inbox", Some("link-2"))
        .expect("set");
    assert_eq!(
        ix.delta_link("me", "B").expect("delta_link").as_deref(),
        Some("link-2")
    );
    assert_eq!(ix.folder_counts().expect("counts"), vec![("me".into(), 2)]);
    let paths = ix.folder_paths("me").expect("folder_paths");
    assert_eq!(paths.get("B").map(String::as_str), Some("Inbox"));
    assert_eq!(paths.len(), 2);
    ix.set_delta_link("me", "C", "Empty", None).expect("clear");
    assert_eq!(ix.delta_link("me", "C").expect("delta_link"), None);
    assert_eq!(ix.folder_counts().expect("counts"), vec![("me".into(), 1)]);
    let mut known = ix.known_folders("me").expect("known");
    known.sort();
    assert_eq!(known, ["B", "C"]);
    // Dropping a folder forgets its link and its messages.
    ix.drop_folder("me", "B").expect("drop");
    assert_eq!(ix.delta_link("me", "B").expect("delta_link"), None);
    assert!(ix.remote_messages("me").expect("remote").is_empty());
    assert_eq!(ix.known_folders("me").expect("known"), ["C"]);
}

fn restore_log(ix: &dyn Index) {
    let attempt = |id: &str, started: &str| RestoreRow {
        source_mailbox: "a".into(),
        source_id: id.into(),
        source_key: ObjectKey::new(format!("2024-01/{id}.eml")).expect("key"),
        target_mailbox: "b".into(),
        target_id: None,
        complete: false,
        started: started.into(),
        mode: "json".into(),
    };
    assert!(ix.restore_log("a", "b").expect("log").is_empty());
    ix.record_restore(&attempt("1", "t1")).expect("record");
    ix.record_restore(&attempt("2", "t1")).expect("record");
    // A second attempt keeps the first start: an orphan of the first was created after it.
    ix.record_restore(&attempt("1", "t2"))
        .expect("record again");
    let log = ix.restore_log("a", "b").expect("log");
    assert_eq!(log, vec![attempt("1", "t1"), attempt("2", "t1")]);
    let created = RestoreRow {
        target_id: Some("new-1".into()),
        ..attempt("1", "t3")
    };
    ix.record_restore(&created).expect("created");
    // A later attempt row must not erase the target id of a created message.
    ix.record_restore(&attempt("1", "t4"))
        .expect("stale attempt");
    let done = RestoreRow {
        complete: true,
        ..created.clone()
    };
    ix.record_restore(&done).expect("complete");
    let log = ix.restore_log("a", "b").expect("log");
    assert_eq!(
        log[0],
        RestoreRow {
            started: "t1".into(),
            ..done
        },
        "target id kept, first start kept"
    );
    assert!(
        ix.restore_log("a", "c").expect("log").is_empty(),
        "target mailboxes are apart"
    );
    assert!(ix.restore_log("b", "b").expect("log").is_empty());
}
