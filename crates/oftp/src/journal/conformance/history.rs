//! The rules of the operator's history (the listing over both directions, session trails,
//! partner counters: the [`history`](crate::journal::history) operations of [`Journal`]), run
//! by [`journal`](super::journal) and [`reopened`](super::reopened). Each case uses partners of
//! its own, so cases do not see each other's rows.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::queue::{enqueue, send};
use super::{key, receive};
use crate::journal::{
    Direction, HistoryEntry, HistoryPosition, HistoryQuery, HistoryState, InboundState, Journal,
    PartnerCounters, QueueChange, QueueState, SessionBatch, SessionCommand, SessionEnd,
    SessionRole, SessionStart, SessionTransfer,
};

pub(super) fn rules(j: &dyn Journal) {
    both_directions_newest_first_paged_by_cursor(j);
    filters_by_partner_name_state_time_and_id(j);
    sessions_are_recorded_in_batches_and_found_by_their_transfers(j);
    counters_add_up_confirmed_files_and_carried_octets(j);
    old_sessions_are_pruned_and_counters_kept(j);
}

fn year(y: i32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid time")
}

fn start(partner: &str, code: &str, at: DateTime<Utc>) -> SessionStart {
    SessionStart {
        partner: partner.into(),
        partner_code: code.into(),
        role: SessionRole::Responder,
        remote: "127.0.0.1:4711".into(),
        started_at: at,
    }
}

fn command(at: DateTime<Utc>, direction: Direction, name: &str) -> SessionCommand {
    SessionCommand {
        at,
        direction,
        command: name.into(),
        description: format!("{name} and its fields"),
    }
}

fn batch(session: Option<i64>, start: SessionStart) -> SessionBatch {
    SessionBatch {
        session,
        start,
        commands: Vec::new(),
        transfers: Vec::new(),
        end: None,
    }
}

fn page(j: &dyn Journal, q: &HistoryQuery) -> (Vec<(Direction, i64)>, Option<HistoryPosition>) {
    let p = j.transfer_page(q).expect("transfer_page");
    let rows = p
        .entries
        .iter()
        .map(|e| {
            let pos = e.position();
            (pos.direction, pos.id)
        })
        .collect();
    (rows, p.next)
}

fn of(partner: &str) -> HistoryQuery {
    HistoryQuery {
        partner: Some(partner.into()),
        ..HistoryQuery::default()
    }
}

fn both_directions_newest_first_paged_by_cursor(j: &dyn Journal) {
    let now = Utc::now();
    let old = enqueue(j, &send("hist-walk", "old"), now - Duration::hours(1));
    let received = receive(j, "HWALK", &key("HIST.WALK", 1));
    j.record_session(&batch(None, start("hist-walk", "HWALK", now)))
        .expect("record_session");
    let new = enqueue(j, &send("hist-walk", "new"), now + Duration::hours(1));
    let (out, inb) = (Direction::Sent, Direction::Received);
    assert_eq!(
        page(j, &of("hist-walk")),
        (vec![(out, new), (inb, received), (out, old)], None),
        "both directions, newest (created) first; the last page has no cursor"
    );
    let mut q = HistoryQuery {
        limit: 1,
        ..of("hist-walk")
    };
    let mut walked = Vec::new();
    loop {
        let (rows, next) = page(j, &q);
        walked.extend(rows);
        match next {
            Some(cursor) => {
                let text = cursor.to_string();
                q.after = Some(text.parse().expect("a cursor reads back"));
            }
            None => break,
        }
    }
    assert_eq!(
        walked,
        [(out, new), (inb, received), (out, old)],
        "pages of one row walk every row once, in order"
    );
    // A change of state does not move a row.
    j.transition(
        old,
        &QueueChange::to(QueueState::Cancelled, now + Duration::hours(2)),
    )
    .expect("transition");
    assert_eq!(
        page(j, &of("hist-walk")).0,
        [(out, new), (inb, received), (out, old)],
        "the order is by creation, not by the last change"
    );
    let shown = j.inbound_transfer(received).expect("inbound_transfer");
    let shown = shown.expect("the received file is there");
    assert_eq!(
        (shown.partner.as_str(), shown.partner_code.as_str()),
        ("hist-walk", "HWALK"),
        "a received file lists under the name its partner's session logged in with"
    );
    assert_eq!(shown.key, key("HIST.WALK", 1));
    assert_eq!(shown.state, InboundState::Received);
    assert_eq!(
        j.inbound_transfer(i64::MAX).expect("inbound_transfer"),
        None
    );
}

fn filters_by_partner_name_state_time_and_id(j: &dyn Journal) {
    let now = Utc::now();
    let early = enqueue(j, &send("hist-f", "early"), now - Duration::hours(3));
    let late = enqueue(j, &send("hist-f", "late"), now + Duration::hours(3));
    let done = receive(j, "HFILT", &key("HIST.DONE", 1));
    let held = receive(j, "HFILT", &key("HIST.HELD", 1));
    j.defer_end_response("HFILT", &key("HIST.HELD", 1))
        .expect("defer");
    let answered = receive(j, "HFILT", &key("HIST.ANS", 1));
    j.mark_end_response_sent("HFILT", &key("HIST.ANS", 1))
        .expect("mark_end_response_sent");
    let busy = j
        .begin_receive(
            "HFILT",
            &key("HIST.BUSY", 1),
            std::path::Path::new("/in/.busy"),
            std::path::Path::new("/in/BUSY"),
            "",
        )
        .expect("begin_receive");
    let (out, inb) = (Direction::Sent, Direction::Received);
    assert_eq!(
        page(j, &of("hist-f")).0,
        [(out, late), (out, early)],
        "before a session names the partner, its received files list under its code only"
    );
    assert_eq!(
        page(j, &of("HFILT")).0,
        [(inb, busy), (inb, answered), (inb, held), (inb, done)]
    );
    j.record_session(&batch(None, start("hist-f", "HFILT", now)))
        .expect("record_session");
    assert_eq!(page(j, &of("hist-f")).0.len(), 6, "now under its name too");
    let state = |s: &str| HistoryQuery {
        state: HistoryState::parse(s),
        ..of("hist-f")
    };
    assert_eq!(page(j, &state("queued")).0, [(out, late), (out, early)]);
    assert_eq!(page(j, &state("received")).0, [(inb, done)]);
    assert_eq!(page(j, &state("held")).0, [(inb, held)]);
    assert_eq!(page(j, &state("end_response_sent")).0, [(inb, answered)]);
    assert_eq!(page(j, &state("receiving")).0, [(inb, busy)]);
    let dir = |d| HistoryQuery {
        direction: Some(d),
        ..of("hist-f")
    };
    assert_eq!(page(j, &dir(out)).0, [(out, late), (out, early)]);
    assert_eq!(page(j, &dir(inb)).0.len(), 4);
    assert!(
        page(
            j,
            &HistoryQuery {
                direction: Some(inb),
                ..state("queued")
            }
        )
        .0
        .is_empty(),
        "an outbound state lists no inbound rows"
    );
    // Time range: by the last change (queue rows changed when enqueued here).
    let range = HistoryQuery {
        since: Some(now - Duration::hours(1)),
        until: Some(now + Duration::hours(1)),
        ..of("hist-f")
    };
    let rows = page(j, &range).0;
    assert!(
        rows.iter().all(|(d, _)| *d == inb) && rows.len() == 4,
        "only the received files changed within the hour: {rows:?}"
    );
    assert_eq!(
        page(
            j,
            &HistoryQuery {
                until: Some(now - Duration::hours(1)),
                ..of("hist-f")
            }
        )
        .0,
        [(out, early)]
    );
    assert_eq!(
        page(
            j,
            &HistoryQuery {
                before_id: Some(late),
                ..of("hist-f")
            }
        )
        .0,
        [(out, early)],
        "before_id pages the outbound rows by id"
    );
}

fn sessions_are_recorded_in_batches_and_found_by_their_transfers(j: &dyn Journal) {
    let t0 = year(2030);
    let row = enqueue(j, &send("hist-s", "trail"), t0);
    let received = receive(j, "HSESS", &key("HIST.TRAIL", 1));
    let mut first = batch(None, start("", "", t0));
    first.commands = vec![
        command(t0, Direction::Sent, "SSRM"),
        command(t0, Direction::Received, "SSID"),
    ];
    let id = j.record_session(&first).expect("record_session");
    assert!(id > 0, "session ids are positive");
    let mut second = batch(Some(id), start("hist-s", "HSESS", t0));
    second.commands = vec![
        command(t0 + Duration::seconds(1), Direction::Sent, "SFID"),
        command(t0 + Duration::seconds(2), Direction::Received, "SFPA"),
    ];
    second.transfers = vec![
        SessionTransfer {
            direction: Direction::Sent,
            row: Some(row),
            octets: 100,
            done: true,
        },
        SessionTransfer {
            direction: Direction::Received,
            row: Some(received),
            octets: 50,
            done: true,
        },
    ];
    second.end = Some(SessionEnd {
        at: t0 + Duration::seconds(3),
        result: "OK".into(),
    });
    assert_eq!(j.record_session(&second).expect("record_session"), id);
    let other = j
        .record_session(&batch(None, start("hist-s", "HSESS", t0)))
        .expect("record_session");
    assert_ne!(other, id, "a first batch makes a new session");

    for (direction, row) in [(Direction::Sent, row), (Direction::Received, received)] {
        let trails = j.sessions_of(direction, row).expect("sessions_of");
        assert_eq!(trails.len(), 1, "the one session that moved it");
        let s = &trails[0];
        assert_eq!(s.id, id);
        assert_eq!(
            s.start,
            start("hist-s", "HSESS", t0),
            "the last batch's start"
        );
        assert_eq!(
            s.end,
            Some(SessionEnd {
                at: t0 + Duration::seconds(3),
                result: "OK".into()
            })
        );
        let names: Vec<_> = s.commands.iter().map(|c| c.command.as_str()).collect();
        assert_eq!(
            names,
            ["SSRM", "SSID", "SFID", "SFPA"],
            "both batches, in order"
        );
        assert_eq!(s.commands[1], command(t0, Direction::Received, "SSID"));
    }
    assert!(
        j.sessions_of(Direction::Received, row)
            .expect("sessions_of")
            .iter()
            .all(|s| s.id != id),
        "a queue row's id does not name a received file"
    );

    // A reception dropped (to start again from zero) takes its links along: its id may be
    // given to another file. A link to a row that is gone is not written.
    let dropped = j
        .begin_receive(
            "HSESS",
            &key("HIST.DROP", 1),
            std::path::Path::new("/in/.drop"),
            std::path::Path::new("/in/DROP"),
            "",
        )
        .expect("begin_receive");
    let mut b = batch(None, start("hist-s", "HSESS", t0));
    b.transfers = vec![SessionTransfer {
        direction: Direction::Received,
        row: Some(dropped),
        octets: 1,
        done: false,
    }];
    j.record_session(&b).expect("record_session");
    assert_eq!(
        j.sessions_of(Direction::Received, dropped)
            .expect("sessions_of")
            .len(),
        1
    );
    j.drop_receive(dropped).expect("drop_receive");
    assert!(
        j.sessions_of(Direction::Received, dropped)
            .expect("sessions_of")
            .is_empty(),
        "a dropped reception has no sessions"
    );
    j.record_session(&b).expect("record_session");
    assert!(
        j.sessions_of(Direction::Received, dropped)
            .expect("sessions_of")
            .is_empty(),
        "no link to a reception that is gone"
    );
}

fn counter(j: &dyn Journal, partner: &str) -> PartnerCounters {
    j.partner_counters()
        .expect("partner_counters")
        .into_iter()
        .find(|c| c.partner == partner)
        .unwrap_or_default()
}

fn counters_add_up_confirmed_files_and_carried_octets(j: &dyn Journal) {
    let t0 = year(2031);
    let moved = |direction, row, octets, done| SessionTransfer {
        direction,
        row,
        octets,
        done,
    };
    let mut b = batch(None, start("hist-c", "HCOUNT", t0));
    b.transfers = vec![
        moved(Direction::Sent, None, 1000, true),
        moved(Direction::Sent, Some(-7), 300, false),
        moved(Direction::Received, Some(-8), 20, true),
    ];
    j.record_session(&b).expect("record_session");
    let mut again = batch(None, start("hist-c", "HCOUNT", t0));
    again.transfers = vec![moved(Direction::Sent, Some(-7), 700, true)];
    j.record_session(&again).expect("record_session");
    let mut unnamed = batch(None, start("", "HANON", t0));
    unnamed.transfers = vec![moved(Direction::Received, None, 5, true)];
    j.record_session(&unnamed).expect("record_session");
    assert_eq!(
        counter(j, "hist-c"),
        PartnerCounters {
            partner: "hist-c".into(),
            files_sent: 2,
            octets_sent: 2000,
            files_received: 1,
            octets_received: 20,
        },
        "files whose EFPA was exchanged; every octet carried, also of a cut attempt"
    );
    assert_eq!(
        (
            counter(j, "HANON").files_received,
            counter(j, "HANON").octets_received
        ),
        (1, 5),
        "a partner that never logged in under a name counts under its code"
    );
}

fn old_sessions_are_pruned_and_counters_kept(j: &dyn Journal) {
    let (old_at, new_at) = (year(2001), year(2003));
    let row = enqueue(j, &send("hist-p", "pruned"), year(2026));
    let mut old = batch(None, start("hist-p", "HPRUNE", old_at));
    old.commands = vec![command(old_at, Direction::Sent, "SSID")];
    old.transfers = vec![SessionTransfer {
        direction: Direction::Sent,
        row: Some(row),
        octets: 9,
        done: true,
    }];
    old.end = Some(SessionEnd {
        at: old_at,
        result: "OK".into(),
    });
    j.record_session(&old).expect("record_session");
    let mut new = old.clone();
    new.start.started_at = new_at;
    new.end = Some(SessionEnd {
        at: new_at,
        result: "OK".into(),
    });
    let kept = j.record_session(&new).expect("record_session");
    let before = counter(j, "hist-p");
    let pruned = j.prune_history(year(2002)).expect("prune_history");
    assert!(pruned.sessions >= 1, "{pruned:?}");
    let left: Vec<_> = j
        .sessions_of(Direction::Sent, row)
        .expect("sessions_of")
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        left,
        [kept],
        "the session that ended before the cut-off is gone"
    );
    assert_eq!(counter(j, "hist-p"), before, "counters are never pruned");
}

/// Records a session for [`check_reopened`]: its id and the queue row it moved.
pub(super) fn record(j: &dyn Journal) -> (i64, i64) {
    let t0 = year(2032);
    let row = enqueue(j, &send("hist-r", "reopened"), t0);
    let mut b = batch(None, start("hist-r", "HREOPEN", t0));
    b.commands = vec![command(t0, Direction::Received, "SSID")];
    b.transfers = vec![SessionTransfer {
        direction: Direction::Sent,
        row: Some(row),
        octets: 3,
        done: true,
    }];
    (j.record_session(&b).expect("record_session"), row)
}

pub(super) fn check_reopened(j: &dyn Journal, (id, row): (i64, i64)) {
    let trails = j.sessions_of(Direction::Sent, row).expect("sessions_of");
    assert_eq!(
        trails.iter().map(|s| s.id).collect::<Vec<_>>(),
        [id],
        "a recorded session survives reopening"
    );
    assert_eq!(trails[0].commands.len(), 1);
    assert_eq!(
        counter(j, "hist-r").octets_sent,
        3,
        "and so do the counters"
    );
    assert!(
        j.transfer_page(&HistoryQuery::default())
            .expect("transfer_page")
            .entries
            .iter()
            .any(|e| matches!(e, HistoryEntry::Out(_))),
        "the listing reads the reopened journal"
    );
}
