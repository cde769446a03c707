//! Retention of quarantined copies (`--keep-deleted-days N`, `mailbackup prune`).
//!
//! With `SyncDeletes` and a quarantine folder, the copy of a message deleted remotely is moved
//! to the quarantine area and recorded in the index with the time it was moved
//! ([`crate::Index::record_quarantined`]). [`prune`] purges the copies recorded at least `keep`
//! days before `now` (the caller's clock: tests pass their own), each removed from the store
//! then forgotten by the index, so a crash in between leaves a row whose purge is repeated
//! harmlessly. A dry run lists the same copies and changes nothing.
//!
//! Copies quarantined by versions that did not record the time are not in the index and are
//! never purged; remove them by hand if wanted.

use crate::error::Error;
use crate::index::{Index, QuarantinedRow};
use crate::store::MessageStore;
use chrono::{DateTime, Utc};

/// Purges (or, with `dry_run`, lists) the quarantined copies recorded `keep_days` days or more
/// before `now`; returns them, oldest first.
pub fn prune(
    index: &dyn Index,
    store: &dyn MessageStore,
    now: DateTime<Utc>,
    keep_days: u32,
    dry_run: bool,
) -> Result<Vec<QuarantinedRow>, Error> {
    let limit = now - chrono::Duration::days(i64::from(keep_days));
    let mut due = Vec::new();
    for row in index.quarantined()? {
        // A time that does not parse (edited by hand) is kept: never purge by mistake.
        let Ok(since) = DateTime::parse_from_rfc3339(&row.since) else {
            tracing::warn!(
                "quarantined copy {} has an unreadable time {:?}; kept",
                row.key,
                row.since
            );
            continue;
        };
        if since.with_timezone(&Utc) <= limit {
            due.push(row);
        }
    }
    if !dry_run {
        for row in &due {
            store.purge_quarantined(&row.key)?;
            index.remove_quarantined(&row.key)?;
        }
    }
    Ok(due)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::SqliteIndex;
    use crate::store::{LocalStore, ObjectKey};
    use chrono::TimeZone;

    #[test]
    fn copies_older_than_the_retention_are_purged_and_a_dry_run_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let q = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).with_quarantine(q.path());
        let ix = SqliteIndex::open(&dir.path().join(".meta/index.sqlite")).unwrap();
        let day = |d| Utc.with_ymd_and_hms(2026, 1, d, 12, 0, 0).unwrap();
        for (name, d) in [("old", 1), ("edge", 4), ("young", 6)] {
            let key = ObjectKey::new(format!("2026-01/{name}.eml")).unwrap();
            store.put(&key, &mut &b"x"[..], None).unwrap();
            let location = store.quarantine(&key).unwrap();
            ix.record_quarantined(&QuarantinedRow {
                mailbox: "me".into(),
                key,
                location,
                since: day(d).to_rfc3339(),
            })
            .unwrap();
        }
        let names = |rows: &[QuarantinedRow]| -> Vec<String> {
            rows.iter().map(|r| r.key.to_string()).collect()
        };
        // Day 7, keep 3 days: quarantined on day 4 or before goes.
        let listed = prune(&ix, &store, day(7), 3, true).unwrap();
        assert_eq!(names(&listed), ["2026-01/old.eml", "2026-01/edge.eml"]);
        assert!(
            q.path().join("2026-01/old.eml").exists(),
            "dry run removed a file"
        );
        assert_eq!(ix.quarantined().unwrap().len(), 3);

        let purged = prune(&ix, &store, day(7), 3, false).unwrap();
        assert_eq!(names(&purged), names(&listed));
        assert!(!q.path().join("2026-01/old.eml").exists());
        assert!(!q.path().join("2026-01/edge.eml").exists());
        assert!(q.path().join("2026-01/young.eml").exists());
        assert_eq!(names(&ix.quarantined().unwrap()), ["2026-01/young.eml"]);
        assert!(prune(&ix, &store, day(7), 3, false).unwrap().is_empty());
    }
}
