//! The schema of the PostgreSQL index and its versioned migrations.
//!
//! `schema_version` holds one row per migration applied. [`migrate`] takes a transaction-level
//! advisory lock (so workers starting at the same time do not race), and applies each missing
//! migration in a transaction of its own together with its `schema_version` row: a migration is
//! applied once, completely or not at all. A database whose version is newer than
//! [`MIGRATIONS`] knows is refused ([`MigrateError::Newer`]) and left untouched.
//!
//! Every text column that is compared or ordered uses the `"C"` collation: byte order, as in
//! SQLite (`BINARY`), whatever the database's locale, and `lower()` folds ASCII only, as
//! SQLite's does.

use postgres::Client;

/// Migrations, in order: migration `n` (1-based) is `MIGRATIONS[n - 1]`. Never edit one that
/// was released; add the next.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the tables of the SQLite index, plus the words of the full-text fields (see `words`).
    r#"
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE saved(
  mailbox TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL, path TEXT COLLATE "C" NOT NULL,
  last_modified TEXT NOT NULL, size BIGINT NOT NULL, sha256 TEXT NOT NULL,
  saved_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY(mailbox, id));
CREATE TABLE remote(
  seq BIGSERIAL NOT NULL, mailbox TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL,
  folder_id TEXT COLLATE "C" NOT NULL, info TEXT NOT NULL, PRIMARY KEY(mailbox, id));
CREATE INDEX remote_by_folder ON remote(mailbox, folder_id);
CREATE INDEX remote_by_seq ON remote(mailbox, seq);
CREATE TABLE folders(
  mailbox TEXT COLLATE "C" NOT NULL, folder_id TEXT COLLATE "C" NOT NULL,
  name TEXT COLLATE "C" NOT NULL, delta_link TEXT, updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY(mailbox, folder_id));
CREATE TABLE restored(
  seq BIGSERIAL NOT NULL, source_mailbox TEXT COLLATE "C" NOT NULL,
  source_id TEXT COLLATE "C" NOT NULL, source_key TEXT COLLATE "C" NOT NULL,
  target_mailbox TEXT COLLATE "C" NOT NULL, target_id TEXT, complete BOOLEAN NOT NULL,
  started TEXT NOT NULL, mode TEXT NOT NULL,
  PRIMARY KEY(source_mailbox, source_id, target_mailbox));
CREATE TABLE runs(
  run_id BIGSERIAL PRIMARY KEY, started TEXT NOT NULL, finished TEXT, status TEXT NOT NULL,
  report TEXT);
CREATE TABLE headers(
  seq BIGSERIAL PRIMARY KEY, mailbox TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL,
  path TEXT COLLATE "C" NOT NULL, from_addr TEXT NOT NULL, to_addr TEXT NOT NULL,
  cc_addr TEXT NOT NULL, subject TEXT NOT NULL, date TEXT COLLATE "C", message_id TEXT,
  folder_id TEXT COLLATE "C" NOT NULL, size BIGINT NOT NULL, has_attachment BOOLEAN NOT NULL,
  is_read BOOLEAN,
  subject_words TEXT NOT NULL, from_words TEXT NOT NULL, to_words TEXT NOT NULL,
  cc_words TEXT NOT NULL,
  UNIQUE(mailbox, id));
CREATE INDEX headers_by_date ON headers(date DESC NULLS LAST, seq DESC);
CREATE INDEX headers_by_path ON headers(path);
CREATE INDEX headers_by_folder ON headers(mailbox, folder_id, seq);
CREATE INDEX headers_subject_words ON headers USING gin(subject_words gin_trgm_ops);
CREATE INDEX headers_from_words ON headers USING gin(from_words gin_trgm_ops);
CREATE INDEX headers_to_words ON headers USING gin(to_words gin_trgm_ops);
CREATE INDEX headers_cc_words ON headers USING gin(cc_words gin_trgm_ops);
CREATE TABLE flags(name TEXT COLLATE "C" PRIMARY KEY, done_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE quarantined(
  path TEXT COLLATE "C" PRIMARY KEY, mailbox TEXT COLLATE "C" NOT NULL, location TEXT NOT NULL,
  since TEXT COLLATE "C" NOT NULL);
"#,
    // 2: workers and mailbox leases (`leases`); times on the server's clock.
    r#"
CREATE TABLE workers(
  worker TEXT COLLATE "C" PRIMARY KEY, started TIMESTAMPTZ NOT NULL, round TIMESTAMPTZ NOT NULL,
  heartbeat TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ NOT NULL, finished TIMESTAMPTZ);
CREATE TABLE leases(
  mailbox TEXT COLLATE "C" PRIMARY KEY, worker TEXT COLLATE "C", since TIMESTAMPTZ,
  heartbeat TIMESTAMPTZ, expires_at TIMESTAMPTZ, messages BIGINT NOT NULL DEFAULT 0,
  done_at TIMESTAMPTZ);
CREATE INDEX leases_by_worker ON leases(worker);
"#,
    // 3: the creation time of each header row (`--created-from`/`--created-to` of search,
    // export and restore), filled from the remote mirror for messages still listed, and the
    // Graph id indexed (a selection names messages by key or id).
    r#"
ALTER TABLE headers ADD COLUMN created TEXT COLLATE "C";
UPDATE headers h
  SET created = to_char((r.info::json ->> 'created')::timestamptz AT TIME ZONE 'UTC',
                        'YYYY-MM-DD"T"HH24:MI:SS"Z"')
  FROM remote r
  WHERE r.mailbox = h.mailbox AND r.id = h.id
    AND r.info::json ->> 'created' ~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}';
CREATE INDEX headers_by_created ON headers(created);
CREATE INDEX headers_by_id ON headers(id);
"#,
];

/// Key of the advisory lock held while migrating (any constant unique to this schema).
const MIGRATION_LOCK: i64 = 0x6d61_696c_6278; // "mailbx"

/// Why [`migrate`] failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum MigrateError {
    /// The database was migrated by a newer mailbackup.
    #[error(
        "the index schema is version {found}, newer than this mailbackup knows (version {known}); \
         upgrade mailbackup on this machine (every worker sharing the index needs the same or a newer version)"
    )]
    Newer {
        /// The version found.
        found: i32,
        /// The newest version this build knows.
        known: i32,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] postgres::Error),
}

/// The version the database is at (0: empty).
fn version(tx: &mut postgres::Transaction<'_>) -> Result<i32, postgres::Error> {
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version(
           version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )?;
    tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])?
        .try_get(0)
}

/// Brings the database to the newest version; returns the migrations applied.
pub(super) fn migrate(c: &mut Client) -> Result<Vec<i32>, MigrateError> {
    let known = MIGRATIONS.len() as i32;
    let mut applied = Vec::new();
    loop {
        let mut tx = c.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        let found = version(&mut tx)?;
        if found > known {
            return Err(MigrateError::Newer { found, known });
        }
        if found == known {
            tx.commit()?;
            return Ok(applied);
        }
        let next = found + 1;
        tx.batch_execute(MIGRATIONS[(next - 1) as usize])?;
        tx.execute("INSERT INTO schema_version(version) VALUES($1)", &[&next])?;
        tx.commit()?;
        tracing::info!("index schema migrated to version {next}");
        applied.push(next);
    }
}
