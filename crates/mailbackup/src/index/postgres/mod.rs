//! The PostgreSQL [`Index`]: one database shared by every machine backing up a tenant
//! (`--index postgres://user@host/db`).
//!
//! Same tables and semantics as [`super::SqliteIndex`] (the conformance suite
//! [`super::conformance`] runs on both), in a schema with versioned migrations
//! ([`schema`]). Header search answers the same query language with the same results: FTS5's
//! word matching is reproduced over stored word lists with `LIKE` patterns backed by `pg_trgm`
//! GIN indexes ([`words`]).
//!
//! Client: the synchronous `postgres` crate (rust-postgres). Index calls already run on
//! blocking threads (see [`crate::index`]), so an async client and pool would only add a runtime
//! hop; the sync client drives its own small runtime. It must not be dropped on an async worker
//! thread (tokio refuses to drop a runtime there), so [`PostgresIndex`] drops its connection on
//! a thread of its own. One connection behind a mutex, like SQLite's; a connection found closed
//! (server restarted) is opened again on the next call.
//!
//! Mailbox leases for several workers: `leases.rs` (`FOR UPDATE SKIP LOCKED`, the server's
//! clock).
//!
//! Every call commits before it returns (PostgreSQL's default `synchronous_commit=on`: the
//! commit is flushed to the server's WAL).
//!
//! TLS (`tls.rs`): libpq's `sslmode` (`disable`, `prefer` the default, `require`, `verify-ca`,
//! `verify-full`), `sslrootcert` and a client certificate (`sslcert`, `sslkey`) over rustls;
//! CRLs are refused with what to do instead.
//!
//! The password may be left out of the URL and given in `PGPASSWORD` instead (not visible in
//! `ps`).

mod leases;
mod schema;
mod search;
mod tls;
mod words;

use super::lease::{Acquired, WorkerRow, in_use, ttl_millis};
use super::{HeaderRow, Hit, Index, QuarantinedRow, RestoreRow, RunRow, SavedRow};
use crate::error::Error;
use crate::hooks::MessageInfo;
use crate::report::BackupReport;
use crate::search::{Cursor, Order, Selection};
use crate::store::ObjectKey;
use postgres::types::ToSql;
use postgres::{Client, Config, GenericClient, NoTls, Row};
use search::{FOLDER_PATH, HIT_COLUMNS, hit, select_from};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Mutex;

/// The PostgreSQL index.
pub struct PostgresIndex {
    config: Config,
    location: String,
    tls_options: tls::TlsOptions,
    /// The TLS connector; `None` for `sslmode=disable`.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    conn: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PostgresIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the config: it holds the password.
        f.debug_struct("PostgresIndex")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresIndex {
    fn drop(&mut self) {
        let conn = self
            .conn
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(c) = conn {
            // The client owns a runtime, which must not be dropped on an async worker thread.
            let _ = std::thread::spawn(move || drop(c)).join();
        }
    }
}

/// Why a database call failed, in words that say what to do.
#[derive(Debug, thiserror::Error)]
enum PgError {
    #[error("{advice} ({source})")]
    Connect {
        advice: String,
        source: postgres::Error,
    },
    #[error(transparent)]
    Query(#[from] postgres::Error),
    #[error(transparent)]
    Migrate(#[from] schema::MigrateError),
}

/// The URL without its password: `postgres://user@host:port/db`.
fn location(config: &Config) -> String {
    use postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(h, p)| match h {
            Host::Tcp(name) => format!("{name}:{p}"),
            Host::Unix(path) => format!("{}:{p}", path.display()),
        })
        .collect();
    format!(
        "postgres://{}@{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// Advice for a failed connection.
fn connect_advice(config: &Config, tls_options: &tls::TlsOptions, e: &postgres::Error) -> String {
    use postgres::error::SqlState;
    use rustls::CertificateError;
    let user = config.get_user().unwrap_or("?");
    let db = config.get_dbname().unwrap_or("?");
    if let Some(tls_error) = tls::rustls_error(e) {
        return match tls_error {
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => "the PostgreSQL server's certificate is not valid for the host name in the \
             --index URL: connect with a name the certificate holds, or use \
             sslmode=verify-ca to check the chain only"
                .into(),
            rustls::Error::InvalidCertificate(_) => format!(
                "the PostgreSQL server's certificate is not trusted: it does not chain to {}, \
                 or is expired or unusable; give the CA that signed it with sslrootcert=FILE (PEM)",
                tls_options.roots_described()
            ),
            _ => "the TLS handshake with PostgreSQL failed: check that the server's ssl \
             settings work (its log says why), or use sslmode=disable on loopback or a \
             trusted network"
                .into(),
        };
    }
    if let Some(db_error) = e.as_db_error()
        && db_error.message().contains("no encryption")
    {
        return format!(
            "PostgreSQL admits no connection without TLS for user {user} from here (pg_hba.conf \
             has no such entry): use sslmode=verify-full (or require) in the --index URL when \
             the server takes TLS (hostssl), else have pg_hba.conf admit this host"
        );
    }
    if let Some(db_error) = e.as_db_error()
        && db_error
            .message()
            .contains("requires a valid client certificate")
    {
        return format!(
            "PostgreSQL admits user {user} only with a client certificate: give \
             sslcert=FILE and sslkey=FILE (PEM) in the --index URL, with sslmode=verify-full"
        );
    }
    if let Some(code) = e.code() {
        if *code == SqlState::INVALID_PASSWORD {
            return format!(
                "PostgreSQL refused the password of user {user}: correct the password in the --index URL or in PGPASSWORD"
            );
        }
        if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            return format!(
                "PostgreSQL does not let user {user} in: check the user in the --index URL and the server's pg_hba.conf"
            );
        }
        if *code == SqlState::INVALID_CATALOG_NAME {
            return format!(
                "database {db} does not exist: create it (createdb {db}) or correct the database name in the --index URL"
            );
        }
    }
    let io = std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>());
    if let Some(io) = io {
        return format!(
            "cannot reach PostgreSQL ({}): start the server, or correct host and port in the --index URL",
            io.kind()
        );
    }
    // tokio-postgres says so in the source of its "error performing TLS handshake".
    let no_tls_offered = std::iter::successors(std::error::Error::source(e), |s| s.source())
        .any(|s| s.to_string().contains("server does not support TLS"));
    if no_tls_offered {
        return "the PostgreSQL server does not offer TLS: turn on ssl in its postgresql.conf, \
                or use sslmode=disable on loopback or a trusted network"
            .into();
    }
    "cannot open the PostgreSQL index: check the --index URL and the server".into()
}

impl PostgresIndex {
    /// Connects to the database of `url` (`postgres://user[:password]@host[:port]/db[?sslmode=..]`;
    /// the password may come from `PGPASSWORD`) and brings its schema to this version.
    pub fn open(url: &str) -> Result<PostgresIndex, Error> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::InvalidOption {
                option: "index",
                reason:
                    "the index is given as a PostgreSQL URL, postgres://USER@HOST:PORT/DATABASE; \
                         leave the option out to use the data folder's SQLite index"
                        .into(),
            });
        }
        let (url, tls_options) = tls::split(url)?;
        let tls = tls_options.connector()?;
        let mut config = Config::from_str(&url).map_err(|e| Error::InvalidOption {
            option: "index",
            reason: format!(
                "the index URL is not a PostgreSQL URL ({e}); write postgres://USER@HOST:PORT/DATABASE \
                 (password in PGPASSWORD or after USER:)"
            ),
        })?;
        if config.get_password().is_none()
            && let Ok(pw) = std::env::var("PGPASSWORD")
        {
            config.password(pw);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        config.application_name("mailbackup");
        let ix = PostgresIndex {
            location: location(&config),
            config,
            tls_options,
            tls,
            conn: Mutex::new(None),
        };
        ix.with(|c| {
            schema::migrate(c)?;
            Ok(())
        })?;
        Ok(ix)
    }

    fn connect(&self) -> Result<Client, PgError> {
        let connected = match &self.tls {
            Some(tls) => match self.config.connect(tls.clone()) {
                // libpq's prefer: a failed handshake is retried in plain TCP.
                Err(e)
                    if self.tls_options.mode == tls::Mode::Prefer
                        && tls::rustls_error(&e).is_some() =>
                {
                    tracing::warn!(
                        index = %self.location,
                        "TLS handshake with PostgreSQL failed ({e}); sslmode=prefer: connecting \
                         without TLS"
                    );
                    self.config.connect(NoTls)
                }
                other => other,
            },
            None => self.config.connect(NoTls),
        };
        connected.map_err(|source| PgError::Connect {
            advice: connect_advice(&self.config, &self.tls_options, &source),
            source,
        })
    }

    /// Runs `f` on the connection (opened again when it was closed).
    fn with<T>(&self, f: impl FnOnce(&mut Client) -> Result<T, PgError>) -> Result<T, Error> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let result = (|| {
            if guard.as_ref().is_none_or(|c| c.is_closed()) {
                *guard = Some(self.connect()?);
            }
            f(guard.as_mut().expect("connected above"))
        })();
        result.map_err(|source| Error::Index {
            location: self.location.clone(),
            source: Box::new(source),
        })
    }

    /// Runs `f` in a transaction.
    fn in_tx<T>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, postgres::Error>,
    ) -> Result<T, Error> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let v = f(&mut tx)?;
            tx.commit()?;
            Ok(v)
        })
    }

    /// Runs one statement.
    fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<(), Error> {
        self.with(|c| {
            c.execute(sql, params)?;
            Ok(())
        })
    }

    /// Runs one query.
    fn rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        self.with(|c| Ok(c.query(sql, params)?))
    }
}

fn upsert_saved(c: &mut impl GenericClient, row: &SavedRow) -> Result<(), postgres::Error> {
    c.execute(
        "INSERT INTO saved(mailbox, id, path, last_modified, size, sha256)
         VALUES($1, $2, $3, $4, $5, $6)
         ON CONFLICT(mailbox, id) DO UPDATE SET path=excluded.path,
           last_modified=excluded.last_modified, size=excluded.size,
           sha256=excluded.sha256, saved_at=now()",
        &[
            &row.mailbox,
            &row.id,
            &row.key.as_str(),
            &row.last_modified,
            &(row.size as i64),
            &row.sha256,
        ],
    )?;
    Ok(())
}

fn upsert_headers(c: &mut impl GenericClient, h: &HeaderRow) -> Result<(), postgres::Error> {
    c.execute(
        "INSERT INTO headers(mailbox, id, path, from_addr, to_addr, cc_addr, subject, date,
           message_id, folder_id, size, has_attachment, is_read,
           subject_words, from_words, to_words, cc_words, created)
         VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
         ON CONFLICT(mailbox, id) DO UPDATE SET path=excluded.path, from_addr=excluded.from_addr,
           to_addr=excluded.to_addr, cc_addr=excluded.cc_addr, subject=excluded.subject,
           date=excluded.date, message_id=excluded.message_id, folder_id=excluded.folder_id,
           size=excluded.size, has_attachment=excluded.has_attachment, is_read=excluded.is_read,
           subject_words=excluded.subject_words, from_words=excluded.from_words,
           to_words=excluded.to_words, cc_words=excluded.cc_words, created=excluded.created",
        &[
            &h.mailbox,
            &h.id,
            &h.key.as_str(),
            &h.from,
            &h.to,
            &h.cc,
            &h.subject,
            &h.date,
            &h.message_id,
            &h.folder_id,
            &(h.size as i64),
            &h.has_attachment,
            &h.is_read,
            &words::stored(&h.subject),
            &words::stored(&h.from),
            &words::stored(&h.to),
            &words::stored(&h.cc),
            &h.created,
        ],
    )?;
    Ok(())
}

/// A `saved` row (`mailbox, id, path, last_modified, size, sha256`); `None` (with a warning)
/// for a key that is not a valid object key.
fn saved_row(r: &Row) -> Option<SavedRow> {
    SavedRow::from_columns((r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
}

fn count(v: i64) -> u64 {
    v.max(0) as u64
}

impl Index for PostgresIndex {
    // ---- runs ----

    fn start_run(&self) -> Result<i64, Error> {
        let now = chrono::Utc::now().to_rfc3339();
        let rows = self.rows(
            "INSERT INTO runs(started, status) VALUES($1, 'Running') RETURNING run_id",
            &[&now],
        )?;
        Ok(rows[0].get(0))
    }

    fn finish_run(&self, report: &BackupReport) -> Result<(), Error> {
        let now = chrono::Utc::now().to_rfc3339();
        let json = serde_json::to_string(report).unwrap_or_default();
        let status = format!("{:?}", report.status);
        self.exec(
            "UPDATE runs SET finished=$1, status=$2, report=$3 WHERE run_id=$4",
            &[&now, &status, &json, &report.run_id],
        )
    }

    fn last_run(&self) -> Result<Option<RunRow>, Error> {
        let rows = self.rows(
            "SELECT run_id, started, finished, status, report FROM runs ORDER BY run_id DESC LIMIT 1",
            &[],
        )?;
        Ok(rows.first().map(|r| RunRow {
            run_id: r.get(0),
            started: r.get(1),
            finished: r.get(2),
            status: r.get(3),
            report: r.get(4),
        }))
    }

    // ---- saved copies ----

    fn record_saved(&self, row: &SavedRow) -> Result<(), Error> {
        self.with(|c| Ok(upsert_saved(c, row)?))
    }

    fn remove_saved(&self, mailbox: &str, id: &str) -> Result<(), Error> {
        self.in_tx(|tx| {
            tx.execute(
                "DELETE FROM saved WHERE mailbox=$1 AND id=$2",
                &[&mailbox, &id],
            )?;
            tx.execute(
                "DELETE FROM headers WHERE mailbox=$1 AND id=$2",
                &[&mailbox, &id],
            )?;
            Ok(())
        })
    }

    fn saved(&self, mailbox: Option<&str>) -> Result<Vec<SavedRow>, Error> {
        let rows = self.rows(
            "SELECT mailbox, id, path, last_modified, size, sha256 FROM saved
             WHERE $1::text IS NULL OR mailbox=$1 ORDER BY mailbox, id",
            &[&mailbox],
        )?;
        Ok(rows.iter().filter_map(saved_row).collect())
    }

    fn saved_counts(&self) -> Result<Vec<(String, u64, u64)>, Error> {
        let rows = self.rows(
            "SELECT mailbox, COUNT(*), COALESCE(SUM(size), 0)::BIGINT FROM saved
             GROUP BY mailbox ORDER BY mailbox",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), count(r.get(1)), count(r.get(2))))
            .collect())
    }

    // ---- remote mirror ----

    fn apply_remote(
        &self,
        mailbox: &str,
        folder: &str,
        items: &[MessageInfo],
        removed: &[String],
    ) -> Result<(), Error> {
        self.in_tx(|tx| {
            let up = tx.prepare(
                "INSERT INTO remote(mailbox, id, folder_id, info) VALUES($1, $2, $3, $4)
                 ON CONFLICT(mailbox, id) DO UPDATE SET folder_id=excluded.folder_id, info=excluded.info",
            )?;
            for m in items {
                let info = serde_json::to_string(m).unwrap_or_default();
                tx.execute(&up, &[&mailbox, &m.id, &folder, &info])?;
            }
            if !removed.is_empty() {
                tx.execute(
                    "DELETE FROM remote WHERE mailbox=$1 AND folder_id=$2 AND id = ANY($3)",
                    &[&mailbox, &folder, &removed],
                )?;
            }
            Ok(())
        })
    }

    fn remote_ids_in_folder(&self, mailbox: &str, folder: &str) -> Result<HashSet<String>, Error> {
        let rows = self.rows(
            "SELECT id FROM remote WHERE mailbox=$1 AND folder_id=$2",
            &[&mailbox, &folder],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn remove_remote(&self, mailbox: &str, id: &str) -> Result<(), Error> {
        self.exec(
            "DELETE FROM remote WHERE mailbox=$1 AND id=$2",
            &[&mailbox, &id],
        )
    }

    fn remote_messages(&self, mailbox: &str) -> Result<Vec<MessageInfo>, Error> {
        let rows = self.rows(
            "SELECT info FROM remote WHERE mailbox=$1 ORDER BY seq",
            &[&mailbox],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str(r.get::<_, &str>(0)).ok())
            .collect())
    }

    // ---- folders ----

    fn delta_link(&self, mailbox: &str, folder: &str) -> Result<Option<String>, Error> {
        let rows = self.rows(
            "SELECT delta_link FROM folders WHERE mailbox=$1 AND folder_id=$2",
            &[&mailbox, &folder],
        )?;
        Ok(rows.first().and_then(|r| r.get(0)))
    }

    fn set_delta_link(
        &self,
        mailbox: &str,
        folder: &str,
        name: &str,
        link: Option<&str>,
    ) -> Result<(), Error> {
        self.exec(
            "INSERT INTO folders(mailbox, folder_id, name, delta_link) VALUES($1, $2, $3, $4)
             ON CONFLICT(mailbox, folder_id) DO UPDATE SET name=excluded.name,
               delta_link=excluded.delta_link, updated_at=now()",
            &[&mailbox, &folder, &name, &link],
        )
    }

    fn known_folders(&self, mailbox: &str) -> Result<Vec<String>, Error> {
        let rows = self.rows(
            "SELECT folder_id FROM folders WHERE mailbox=$1
             UNION SELECT folder_id FROM remote WHERE mailbox=$1",
            &[&mailbox],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn drop_folder(&self, mailbox: &str, folder: &str) -> Result<(), Error> {
        self.in_tx(|tx| {
            tx.execute(
                "DELETE FROM remote WHERE mailbox=$1 AND folder_id=$2",
                &[&mailbox, &folder],
            )?;
            tx.execute(
                "DELETE FROM folders WHERE mailbox=$1 AND folder_id=$2",
                &[&mailbox, &folder],
            )?;
            Ok(())
        })
    }

    fn folder_counts(&self) -> Result<Vec<(String, u64)>, Error> {
        let rows = self.rows(
            "SELECT mailbox, COUNT(delta_link) FROM folders GROUP BY mailbox ORDER BY mailbox",
            &[],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), count(r.get(1)))).collect())
    }

    // ---- headers and search ----

    fn record_message(&self, row: &SavedRow, headers: &HeaderRow) -> Result<(), Error> {
        self.in_tx(|tx| {
            upsert_saved(tx, row)?;
            upsert_headers(tx, headers)
        })
    }

    fn record_headers(&self, headers: &HeaderRow) -> Result<(), Error> {
        self.with(|c| Ok(upsert_headers(c, headers)?))
    }

    fn saved_without_headers(&self) -> Result<Vec<SavedRow>, Error> {
        let rows = self.rows(
            "SELECT s.mailbox, s.id, s.path, s.last_modified, s.size, s.sha256 FROM saved s
             WHERE NOT EXISTS (SELECT 1 FROM headers h WHERE h.mailbox=s.mailbox AND h.id=s.id)
             ORDER BY s.mailbox, s.id",
            &[],
        )?;
        Ok(rows.iter().filter_map(saved_row).collect())
    }

    fn select(
        &self,
        selection: &Selection,
        order: Order,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<Hit>, Error> {
        let cursor = match order {
            Order::Folder => after,
            Order::Newest => None,
        };
        let mut q = select_from(selection, cursor);
        let order_by = match order {
            Order::Newest => "h.date DESC NULLS LAST, h.seq DESC",
            Order::Folder => "h.mailbox, h.folder_id, h.seq",
        };
        let limit = q.bind(limit.min(i64::MAX as usize) as i64);
        let sql = format!(
            "SELECT {HIT_COLUMNS}, {FOLDER_PATH} {} ORDER BY {order_by} LIMIT {limit}",
            q.text
        );
        self.rows(&sql, &q.params())?.iter().map(hit).collect()
    }

    fn count(&self, selection: &Selection, at_most: u64) -> Result<u64, Error> {
        let mut q = select_from(selection, None);
        let limit = q.bind(i64::try_from(at_most).unwrap_or(i64::MAX));
        let rows = self.rows(
            &format!(
                "SELECT COUNT(*) FROM (SELECT 1 {} LIMIT {limit}) AS hits",
                q.text
            ),
            &q.params(),
        )?;
        Ok(count(rows[0].get(0)))
    }

    // ---- flags ----

    fn flag(&self, name: &str) -> Result<bool, Error> {
        Ok(!self
            .rows("SELECT 1 FROM flags WHERE name=$1", &[&name])?
            .is_empty())
    }

    fn set_flag(&self, name: &str) -> Result<(), Error> {
        self.exec(
            "INSERT INTO flags(name) VALUES($1) ON CONFLICT(name) DO UPDATE SET done_at=now()",
            &[&name],
        )
    }

    // ---- quarantine ----

    fn record_quarantined(&self, row: &QuarantinedRow) -> Result<(), Error> {
        self.exec(
            "INSERT INTO quarantined(path, mailbox, location, since) VALUES($1, $2, $3, $4)
             ON CONFLICT(path) DO UPDATE SET mailbox=excluded.mailbox,
               location=excluded.location, since=excluded.since",
            &[&row.key.as_str(), &row.mailbox, &row.location, &row.since],
        )
    }

    fn quarantined(&self) -> Result<Vec<QuarantinedRow>, Error> {
        self.rows(
            "SELECT path, mailbox, location, since FROM quarantined ORDER BY since, path",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(QuarantinedRow {
                key: ObjectKey::new(r.get::<_, String>(0))?,
                mailbox: r.get(1),
                location: r.get(2),
                since: r.get(3),
            })
        })
        .collect()
    }

    fn remove_quarantined(&self, key: &ObjectKey) -> Result<(), Error> {
        self.exec("DELETE FROM quarantined WHERE path=$1", &[&key.as_str()])
    }

    fn folder_paths(&self, mailbox: &str) -> Result<HashMap<String, String>, Error> {
        let rows = self.rows(
            "SELECT folder_id, name FROM folders WHERE mailbox=$1",
            &[&mailbox],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    // ---- restore log ----

    fn record_restore(&self, row: &RestoreRow) -> Result<(), Error> {
        self.exec(
            "INSERT INTO restored(source_mailbox, source_id, source_key, target_mailbox,
               target_id, complete, started, mode) VALUES($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT(source_mailbox, source_id, target_mailbox) DO UPDATE SET
               source_key=excluded.source_key, target_id=excluded.target_id,
               complete=excluded.complete, mode=excluded.mode
             WHERE restored.target_id IS NULL OR excluded.target_id IS NOT NULL",
            &[
                &row.source_mailbox,
                &row.source_id,
                &row.source_key.as_str(),
                &row.target_mailbox,
                &row.target_id,
                &row.complete,
                &row.started,
                &row.mode,
            ],
        )
    }

    fn restore_log(
        &self,
        source_mailbox: &str,
        target_mailbox: &str,
    ) -> Result<Vec<RestoreRow>, Error> {
        let rows = self.rows(
            "SELECT source_mailbox, source_id, source_key, target_mailbox, target_id,
               complete, started, mode FROM restored
             WHERE source_mailbox=$1 AND target_mailbox=$2 ORDER BY seq",
            &[&source_mailbox, &target_mailbox],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(RestoreRow {
                    source_key: ObjectKey::new(r.get::<_, String>(2)).ok()?,
                    source_mailbox: r.get(0),
                    source_id: r.get(1),
                    target_mailbox: r.get(3),
                    target_id: r.get(4),
                    complete: r.get(5),
                    started: r.get(6),
                    mode: r.get(7),
                })
            })
            .collect())
    }

    // ---- workers and leases ----

    fn register_worker(&self, worker: &str, ttl: std::time::Duration) -> Result<(), Error> {
        let ttl = ttl_millis(ttl)?;
        self.with(|c| Ok(leases::register(c, worker, ttl)?))?
            .map_err(|heartbeat| in_use(worker, heartbeat))
    }

    fn acquire_lease(
        &self,
        worker: &str,
        mailboxes: &[String],
        ttl: std::time::Duration,
    ) -> Result<Acquired, Error> {
        let ttl = ttl_millis(ttl)?;
        self.with(|c| Ok(leases::acquire(c, worker, mailboxes, ttl)?))
    }

    fn heartbeat(
        &self,
        worker: &str,
        progress: &[(String, u64)],
        ttl: std::time::Duration,
    ) -> Result<Vec<String>, Error> {
        let ttl = ttl_millis(ttl)?;
        self.with(|c| Ok(leases::heartbeat(c, worker, progress, ttl)?))
    }

    fn release_lease(&self, worker: &str, mailbox: &str, done: bool) -> Result<(), Error> {
        self.with(|c| Ok(leases::release(c, worker, mailbox, done)?))
    }

    fn finish_worker(&self, worker: &str) -> Result<(), Error> {
        self.with(|c| Ok(leases::finish(c, worker)?))
    }

    fn workers(&self) -> Result<Vec<WorkerRow>, Error> {
        self.with(|c| Ok(leases::workers(c)?))
    }
}

#[cfg(test)]
mod tests;
