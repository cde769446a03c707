//! `export`, `search`, `show` and `prune`: the commands that read a backup back.
//!
//! They open the backup's index — the PostgreSQL one given with `--index`, else the data
//! folder's SQLite index (refusing a folder without one) — and back-fill the header fields
//! once for a backup made before they were indexed. `export` and `search` take the selection
//! options of `restore` ([`crate::select`]); `--query` uses the search syntax of
//! `mailbackup::search`. `search` counts its hits up to [`COUNT_CAP`] ("50 of more than
//! 10,000 shown") unless `--count` asks for all.

use crate::select::SelectArgs;
use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mailbackup::export::{Durability, ExportProgress, Format};
use mailbackup::search::{COUNT_CAP, Order, Selection, Total};
use mailbackup::{Hit, Index, MessageStore, ObjectKey, SqliteIndex};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Output format of `export`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ExportFormat {
    /// mboxrd files.
    Mbox,
    /// Maildir folders.
    Maildir,
}

/// With `--format mbox`: one file per folder or per mailbox.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub(crate) enum MboxPer {
    /// `<out>/<mailbox>/<folder path>.mbox`.
    #[default]
    Folder,
    /// `<out>/<mailbox>.mbox`.
    Mailbox,
}

/// The index `--index` opened (`None`: the data folder's SQLite index).
pub(crate) type GivenIndex = Option<Arc<dyn Index>>;

/// A backup as the commands open it: its data folder, the index `--index` gave (`None`: the
/// folder's SQLite index) and its message store (`--store`).
pub(crate) struct Backup {
    pub(crate) data: PathBuf,
    pub(crate) index: GivenIndex,
    pub(crate) store: Arc<dyn MessageStore>,
}

impl Backup {
    /// Opens the index (the given one, else the data folder's) and back-fills its header
    /// fields once from the messages in the store.
    fn open_index(&self) -> Result<Arc<dyn Index>> {
        let index = match &self.index {
            Some(ix) => ix.clone(),
            None => open_sqlite(&self.data)?,
        };
        let n = mailbackup::headers::backfill(index.as_ref(), &*self.store)?;
        if n > 0 {
            eprintln!(
                "indexed the header fields of {n} message(s) saved by an earlier version (once)"
            );
        }
        Ok(index)
    }
}

/// The SQLite index of a data folder, refused when the folder holds none.
fn open_sqlite(data: &Path) -> Result<Arc<dyn Index>> {
    let path = data
        .join(mailbackup::META_DIR)
        .join(mailbackup::index::INDEX_FILE);
    if !path.is_file() {
        bail!(
            "{} holds no backup (no {}): give the data folder of a backup with --data-folder",
            data.display(),
            path.display()
        );
    }
    Ok(Arc::new(SqliteIndex::open(&path)?))
}

/// What `export` writes, and where.
pub(crate) struct ExportTo {
    pub(crate) format: ExportFormat,
    pub(crate) per: MboxPer,
    pub(crate) durability: Durability,
    pub(crate) out: PathBuf,
}

// The export command's options, passed through from main.rs as they are (landed with #14 §2).
pub(crate) async fn export(
    backup: Backup,
    select: &SelectArgs,
    to: ExportTo,
    no_progress: bool,
) -> Result<ExitCode> {
    let ExportTo {
        format,
        per,
        durability,
        out,
    } = to;
    let selection = select.selection("")?;
    if matches!(format, ExportFormat::Maildir) {
        // Export starts no other process, so no child inherits the raised limit.
        let limit = mailbackup::export::raise_open_file_limit();
        tracing::debug!(?limit, "soft limit of open files for the Maildir export");
    }
    let format = match (format, per) {
        (ExportFormat::Maildir, _) => Format::Maildir,
        (ExportFormat::Mbox, MboxPer::Folder) => Format::MboxPerFolder,
        (ExportFormat::Mbox, MboxPer::Mailbox) => Format::MboxPerMailbox,
    };
    let progress = Arc::new(ExportProgress::default());
    let bar = if !no_progress && std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(5))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("export [{bar:30}] {pos}/{len} {msg} {per_sec} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let work = {
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || -> Result<_> {
            let index = backup.open_index()?;
            Ok(mailbackup::export::export(
                index.as_ref(),
                &*backup.store,
                &selection,
                format,
                durability,
                &out,
                &progress,
            )?)
        })
    };
    tokio::pin!(work);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    let report = loop {
        tokio::select! {
            r = &mut work => break r??,
            _ = tick.tick() => {
                bar.set_length(progress.total.load(Ordering::Relaxed));
                bar.set_position(progress.done.load(Ordering::Relaxed));
                bar.set_message(indicatif::HumanBytes(progress.bytes.load(Ordering::Relaxed)).to_string());
            }
        }
    };
    bar.finish_and_clear();
    for key in &report.missing {
        println!("missing: {key} (in the index, not in the backup; run `mailbackup verify`)");
    }
    for o in &report.outputs {
        println!("wrote {}", o.display());
    }
    println!(
        "export: {} messages, {}",
        report.messages,
        indicatif::HumanBytes(report.bytes)
    );
    Ok(if report.missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

pub(crate) fn search(
    backup: &Backup,
    words: &[String],
    select: &SelectArgs,
    limit: usize,
    exact_count: bool,
    json: bool,
) -> Result<ExitCode> {
    let selection = select.selection(&words.join(" "))?;
    let index = backup.open_index()?;
    let hits = index.select(&selection, Order::Newest, None, limit)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&hits)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16}  {:<28}  {:<44}  {:<16}  KEY",
        "DATE", "FROM", "SUBJECT", "FOLDER"
    );
    for h in &hits {
        let d = h.headers.date.as_deref().unwrap_or("-");
        let d = d.get(..16).unwrap_or(d).replace('T', " ");
        println!(
            "{:<16}  {:<28}  {:<44}  {:<16}  {}",
            d,
            cut(&h.headers.from, 28),
            cut(&h.headers.subject, 44),
            cut(&h.folder_path, 16),
            h.headers.key
        );
    }
    let cap = (!exact_count).then_some(COUNT_CAP);
    let total = Total::of(index.as_ref(), &selection, hits.len(), limit, cap)?;
    match total {
        Total::Exact(n) if n as usize <= hits.len() => println!("({n} found)"),
        Total::Exact(_) => println!("({} of {total} shown; --limit N shows more)", hits.len()),
        Total::MoreThan(_) => println!(
            "({} of {total} shown; --limit N shows more, --count counts them all)",
            hits.len()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn show(backup: &Backup, key: &str) -> Result<ExitCode> {
    let key = ObjectKey::new(key.to_string())?;
    let index = backup.open_index()?;
    let selection = Selection {
        messages: vec![key.as_str().to_string()],
        ..Default::default()
    };
    let Some(h): Option<Hit> = index.select(&selection, Order::Newest, None, 1)?.pop() else {
        eprintln!(
            "error: no message with key {key} in the backup (keys as `mailbackup search` prints them)"
        );
        return Ok(ExitCode::from(1));
    };
    let r = &h.headers;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    println!("Mailbox:     {}", r.mailbox);
    println!("Folder:      {}", h.folder_path);
    println!("From:        {}", r.from);
    println!("To:          {}", r.to);
    println!("Cc:          {}", r.cc);
    println!("Subject:     {}", r.subject);
    println!("Date:        {}", r.date.as_deref().unwrap_or("-"));
    println!("Message-ID:  {}", r.message_id.as_deref().unwrap_or("-"));
    println!("Size:        {} bytes", r.size);
    println!("Attachments: {}", yes_no(r.has_attachment));
    println!(
        "Read:        {}",
        r.is_read.map_or("unknown", |b| yes_no(b))
    );
    println!("Graph id:    {}", r.id);
    println!("Key:         {key}");
    println!("Path:        {}", backup.store.locate(&key));
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn prune(
    backup: &Backup,
    working_folder: Option<PathBuf>,
    keep_days: u32,
    dry_run: bool,
) -> Result<ExitCode> {
    let wf = working_folder.unwrap_or_else(|| backup.data.join(mailbackup::META_DIR));
    // Not while a run moves copies into the quarantine area.
    let _lock = mailbackup::lock::RunLock::acquire(&wf).context("prune needs the run lock")?;
    let index = backup.open_index()?;
    let rows = mailbackup::retention::prune(
        index.as_ref(),
        &*backup.store,
        chrono::Utc::now(),
        keep_days,
        dry_run,
    )?;
    for r in &rows {
        println!(
            "{} {} ({}, quarantined {})",
            if dry_run { "would remove" } else { "removed" },
            r.location,
            r.mailbox,
            r.since
        );
    }
    println!(
        "prune: {} quarantined cop{} older than {keep_days} days {}",
        rows.len(),
        if rows.len() == 1 { "y" } else { "ies" },
        if dry_run {
            "would be removed (dry run)"
        } else {
            "removed"
        }
    );
    Ok(ExitCode::SUCCESS)
}
