//! The operator commands (`oftp status`, `oftp transfers`, `oftp transfer show|retry|cancel`,
//! `oftp call`, `oftp alerts`): parse, ask the daemon over its control socket
//! ([`oftp_gateway::control`]), print a table for people or JSON with `--json`.
//!
//! Commands that change state (retry, cancel, call, `alerts --ack`) and `status` need the
//! daemon; when it is not running they say so and fail. The read-only ones (transfers,
//! transfer show, alerts) then read the journal directly and say so on stderr.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Subcommand};
use oftp::journal::{JOURNAL_FILE, Journal, SqliteJournal};
use oftp_gateway::SystemClock;
use oftp_gateway::control::{
    AlertView, ClientError, Op, Operations, StatusView, TransferDetailView, TransferId,
    TransferPage, TransferQuery, TransferView, client,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config;

/// Options every operator command takes.
#[derive(Args, Debug, Clone)]
pub(crate) struct Common {
    /// Configuration file, to find the data directory and the control socket (default:
    /// ./oftp-data/oftp.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Machine-readable output (JSON) instead of a table.
    #[arg(long)]
    json: bool,
}

/// `oftp transfers`.
#[derive(Args, Debug)]
pub(crate) struct TransfersArgs {
    #[command(flatten)]
    common: Common,
    /// Only this partner's files.
    #[arg(long)]
    partner: Option<String>,
    /// Only files in this state: queued, in_transfer, sent, delivered, not_delivered,
    /// rejected, failed, cancelled (outbound); receiving, received, held, end_response_sent
    /// (inbound).
    #[arg(long)]
    state: Option<String>,
    /// Only received files (in) or only the outbound queue (out); both if not given.
    #[arg(long, value_name = "in|out")]
    direction: Option<String>,
    /// Only files changed since: an RFC 3339 time, a date (YYYY-MM-DD, UTC) or a duration ago
    /// (30m, 12h, 7d).
    #[arg(long, value_parser = parse_since)]
    since: Option<DateTime<Utc>>,
    /// Only files changed before: as --since.
    #[arg(long, value_parser = parse_since)]
    until: Option<DateTime<Utc>>,
    /// At most this many rows (default 50, at most 1000).
    #[arg(long)]
    limit: Option<u32>,
    /// The next page: the cursor the previous page printed.
    #[arg(long, conflicts_with = "before")]
    cursor: Option<String>,
    /// Only outbound rows with a smaller id (the next page of the outbound queue after the
    /// row with this id).
    #[arg(long)]
    before: Option<i64>,
}

/// `oftp transfer`.
#[derive(Subcommand, Debug)]
pub(crate) enum TransferCommand {
    /// A transfer with its history and the sessions that moved it (with their commands).
    Show(ShowArgs),
    /// Queue a failed, rejected or not delivered file again, due now.
    Retry(IdArgs),
    /// Cancel a queued, failed, rejected or not delivered file.
    Cancel(IdArgs),
}

/// A command on one row.
#[derive(Args, Debug)]
pub(crate) struct IdArgs {
    #[command(flatten)]
    common: Common,
    /// The transfer's id (see `oftp transfers`).
    id: i64,
}

/// `oftp transfer show`.
#[derive(Args, Debug)]
pub(crate) struct ShowArgs {
    #[command(flatten)]
    common: Common,
    /// The transfer's id (see `oftp transfers`): a number for an outbound file, in-NUMBER for
    /// a received one.
    id: String,
}

/// `oftp call`.
#[derive(Args, Debug)]
pub(crate) struct CallArgs {
    #[command(flatten)]
    common: Common,
    /// The partner's configured name.
    partner: String,
}

/// `oftp alerts`.
#[derive(Args, Debug)]
pub(crate) struct AlertsArgs {
    #[command(flatten)]
    common: Common,
    /// Acknowledged alerts too (the newest 1000).
    #[arg(long)]
    all: bool,
    /// Acknowledge this alert.
    #[arg(long, value_name = "ID", conflicts_with = "all")]
    ack: Option<i64>,
}

/// Where the daemon of a configuration keeps its journal and socket.
struct Target {
    data_dir: PathBuf,
    socket: PathBuf,
    json: bool,
}

impl Target {
    fn of(common: &Common) -> Result<Self> {
        let path = common
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG));
        let loaded = config::load(&path)?;
        Ok(Self {
            socket: loaded.file.gateway.control.socket_path(&loaded.data_dir),
            data_dir: loaded.data_dir,
            json: common.json,
        })
    }

    /// Asks the daemon; `None` if it is not running.
    async fn ask<T: DeserializeOwned>(&self, op: Op) -> Result<Option<T>> {
        match client::request(&self.socket, op).await {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::NotRunning { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Asks the daemon, which must be running.
    async fn must<T: DeserializeOwned>(&self, op: Op) -> Result<T> {
        Ok(client::request(&self.socket, op).await?)
    }

    /// The read-only operations over the journal, for when the daemon is not running.
    fn offline(&self) -> Result<Operations> {
        eprintln!(
            "note: the daemon is not running (nothing listens on {}); reading the journal \
             directly",
            self.socket.display()
        );
        if !self.data_dir.join(JOURNAL_FILE).exists() {
            bail!(
                "no journal in {}; has oftp serve run with this configuration?",
                self.data_dir.display()
            );
        }
        let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open_in_dir(&self.data_dir)?);
        Ok(Operations::offline(journal, Arc::new(SystemClock)))
    }

    fn print<T: Serialize>(&self, value: &T, table: impl FnOnce(&T) -> String) -> Result<()> {
        let text = if self.json {
            serde_json::to_string_pretty(value)? + "\n"
        } else {
            table(value)
        };
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    }
}

pub(crate) async fn status(common: Common) -> Result<()> {
    let t = Target::of(&common)?;
    let status: StatusView = t.must(Op::Status).await?;
    t.print(&status, status_table)
}

pub(crate) async fn transfers(a: TransfersArgs) -> Result<()> {
    let t = Target::of(&a.common)?;
    let query = TransferQuery {
        partner: a.partner,
        state: a.state,
        since: a.since,
        before_id: a.before,
        limit: a.limit,
        direction: a.direction,
        until: a.until,
        cursor: a.cursor,
    };
    let page: TransferPage = match t.ask(Op::TransferPage(query.clone())).await? {
        Some(page) => page,
        None => t.offline()?.transfer_page(query).await?,
    };
    if let Some(cursor) = page.next_cursor.as_deref().filter(|_| !t.json) {
        eprintln!("(page full; the next page: --cursor {cursor})");
    }
    t.print(&page.items, |rows| transfers_table(rows))
}

pub(crate) async fn transfer(command: TransferCommand) -> Result<()> {
    match command {
        TransferCommand::Show(a) => {
            let t = Target::of(&a.common)?;
            let id: TransferId = a.id.parse()?;
            let op = Op::TransferDetail {
                transfer: id.to_string(),
            };
            let detail: TransferDetailView = match t.ask(op).await? {
                Some(d) => d,
                None => t.offline()?.transfer_detail(id).await?,
            };
            t.print(&detail, detail_table)
        }
        TransferCommand::Retry(a) => {
            let t = Target::of(&a.common)?;
            let row: TransferView = t.must(Op::Retry { id: a.id }).await?;
            t.print(&row, |r| {
                format!(
                    "transfer {}: queued again, due now; {} is called at its next call \
                     (or now, if it calls on new files)\n",
                    r.id, r.partner
                )
            })
        }
        TransferCommand::Cancel(a) => {
            let t = Target::of(&a.common)?;
            let row: TransferView = t.must(Op::Cancel { id: a.id }).await?;
            t.print(&row, |r| format!("transfer {}: cancelled\n", r.id))
        }
    }
}

pub(crate) async fn call(a: CallArgs) -> Result<()> {
    let t = Target::of(&a.common)?;
    let () = t
        .must(Op::Call {
            partner: a.partner.clone(),
        })
        .await?;
    t.print(&serde_json::json!({ "called": a.partner }), |_| {
        format!("calling {} now\n", a.partner)
    })
}

pub(crate) async fn alerts(a: AlertsArgs) -> Result<()> {
    let t = Target::of(&a.common)?;
    if let Some(id) = a.ack {
        let alert: AlertView = t.must(Op::Ack { id }).await?;
        return t.print(&alert, |a| format!("alert {} acknowledged\n", a.id));
    }
    let rows: Vec<AlertView> = match t.ask(Op::Alerts { all: a.all }).await? {
        Some(rows) => rows,
        None => t.offline()?.alerts(a.all).await?,
    };
    t.print(&rows, |rows| {
        if rows.is_empty() {
            return if a.all {
                "no alerts\n"
            } else {
                "no open alerts\n"
            }
            .to_owned();
        }
        alerts_table(rows, a.all)
    })
}

// ---- output --------------------------------------------------------------------------------

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".to_owned(), time)
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn status_table(s: &StatusView) -> String {
    let mut out = format!(
        "daemon: running, pid {}, version {}, since {} UTC\n\n",
        s.daemon.pid,
        s.daemon.version,
        time(s.daemon.started_at)
    );
    let rows: Vec<Vec<String>> = s
        .partners
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.address.clone().unwrap_or_else(|| "(calls us)".into()),
                format!("{}/{}", p.sessions, p.max_sessions),
                opt_time(p.last_call.as_ref().map(|c| c.started_at)),
                p.last_call.as_ref().map_or_else(
                    || "-".to_owned(),
                    |c| format!("{}: {}", if c.ok { "ok" } else { "failed" }, c.text),
                ),
                opt_time(p.next_call),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "PARTNER",
            "ADDRESS",
            "SESSIONS",
            "LAST CALL",
            "LAST RESULT",
            "NEXT CALL",
        ],
        &rows,
    ));
    out.push_str("\nqueue: ");
    if s.queue.is_empty() {
        out.push_str("empty\n");
    } else {
        let parts: Vec<String> = s
            .queue
            .iter()
            .map(|q| format!("{} {}", q.state, q.count))
            .collect();
        out.push_str(&parts.join(", "));
        out.push('\n');
    }
    out.push_str(&format!("open alerts: {}\n", s.open_alerts.len()));
    if !s.open_alerts.is_empty() {
        out.push_str(&alerts_table(&s.open_alerts, false));
    }
    out
}

fn transfers_table(rows: &[TransferView]) -> String {
    if rows.is_empty() {
        return "no transfers\n".to_owned();
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.transfer_id.clone(),
                r.partner.clone(),
                r.virtual_file_name.clone(),
                r.state.clone(),
                r.attempts.to_string(),
                time(r.updated_at),
                r.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "PARTNER",
            "FILE",
            "STATE",
            "ATTEMPTS",
            "UPDATED",
            "LAST ERROR",
        ],
        &rows,
    )
}

fn detail_table(d: &TransferDetailView) -> String {
    let r = &d.transfer;
    let mut out = format!(
        "transfer {}\n  partner:      {}\n  file:         {}\n  source:       {}\n  \
         state:        {}\n  attempts:     {}\n  queued at:    {}\n  next attempt: {}\n  \
         updated at:   {}\n",
        r.transfer_id,
        r.partner,
        r.virtual_file_name,
        r.source_path,
        r.state,
        r.attempts,
        time(r.queued_at),
        time(r.next_attempt_at),
        time(r.updated_at)
    );
    if let Some(e) = &r.last_error {
        out.push_str(&format!("  last error:   {e}\n"));
    }
    out.push_str("\nhistory:\n");
    let rows: Vec<Vec<String>> = d
        .history
        .iter()
        .map(|h| {
            vec![
                time(h.at),
                h.from.clone().unwrap_or_else(|| "-".into()),
                h.to.clone(),
                h.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(&["AT", "FROM", "TO", "NOTE"], &rows));
    for s in &d.sessions {
        out.push_str(&format!(
            "\nsession {} ({} with {} at {}), {} to {}: {}\n",
            s.id,
            s.role,
            s.partner,
            s.remote,
            time(s.started_at),
            opt_time(s.ended_at),
            s.result.as_deref().unwrap_or("not ended")
        ));
        let rows: Vec<Vec<String>> = s
            .commands
            .iter()
            .map(|c| vec![time(c.at), c.direction.clone(), c.description.clone()])
            .collect();
        out.push_str(&table(&["AT", "DIR", "COMMAND"], &rows));
    }
    out
}

fn alerts_table(rows: &[AlertView], with_ack: bool) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|a| {
            let mut row = vec![
                a.id.to_string(),
                time(a.raised_at),
                a.kind.clone(),
                a.partner.clone().unwrap_or_else(|| "-".into()),
            ];
            if with_ack {
                row.push(opt_time(a.acknowledged_at));
            }
            row.push(a.text.clone());
            row
        })
        .collect();
    let mut headers = vec!["ID", "RAISED", "KIND", "PARTNER"];
    if with_ack {
        headers.push("ACKNOWLEDGED");
    }
    headers.push("TEXT");
    table(&headers, &rows)
}

/// `--since`: an RFC 3339 time, a date (midnight UTC) or a duration ago (`30m`, `12h`, `7d`).
fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .map_or_else(Utc::now, |t| t.and_utc()));
    }
    let (number, unit) = s.split_at(s.len().saturating_sub(1));
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(n) if seconds > 0 && n >= 0 => Ok(Utc::now() - chrono::Duration::seconds(n * seconds)),
        _ => Err(format!(
            "{s:?} is not a time: give an RFC 3339 time (2026-12-06T12:00:00Z), a date \
             (2026-12-06) or a duration ago (30m, 12h, 7d)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_a_date_or_a_duration_ago() {
        assert_eq!(
            parse_since("2026-12-06T12:00:00Z").unwrap(),
            DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z").unwrap()
        );
        assert_eq!(
            parse_since("2026-12-06").unwrap(),
            DateTime::parse_from_rfc3339("2026-12-06T00:00:00Z").unwrap()
        );
        let ago = Utc::now() - parse_since("2h").unwrap();
        assert!((ago.num_seconds() - 7200).abs() < 5, "{ago}");
        let e = parse_since("yesterday").unwrap_err();
        assert!(e.contains("duration ago (30m, 12h, 7d)"), "{e}");
        assert!(parse_since("-5h").is_err());
    }

    #[test]
    fn tables_align_columns_and_leave_the_last_unpadded() {
        let t = table(
            &["ID", "NAME", "TEXT"],
            &[vec!["1".into(), "acme".into(), "x".into()]],
        );
        assert_eq!(t, "ID  NAME  TEXT\n1   acme  x\n");
    }
}
