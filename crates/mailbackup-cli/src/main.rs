//! `mailbackup`: back up Microsoft 365 mailboxes into .eml files.
//!
//! Commands: `login` (sign in and cache tokens), `run` (back up), `status` (last run, counts,
//! lock), `verify` (re-hash files against the index), `export` (mbox, Maildir), `search`,
//! `show`, `prune` (quarantine retention), `restore` (messages back into a mailbox). See
//! README.md for every flag and config key. `run --report FILE.json` writes the run report
//! (`run_report`); `notify` sends it to a webhook and by mail at the end of a run.
//!
//! Exit codes: 0 success; 1 a message or mailbox finally failed, or verify found problems;
//! 2 the run could not start (options, lock) or sign-in failed, also during the run (no token
//! could be obtained or renewed); 130 aborted with Ctrl-C. Logs carry colour codes only on a
//! terminal and without `NO_COLOR`.

mod auth;
mod config;
mod find;
mod notify;
mod restore_cmd;
mod run_report;
mod select;
mod ui;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use config::{AuthArgs, FileConfig, RunArgs};
use mailbackup::export::Durability;
use mailbackup::{LockState, RunStatus};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "mailbackup",
    version,
    about = "Back up Microsoft 365 mailboxes over Microsoft Graph into .eml files"
)]
struct Cli {
    /// TOML config file (keys documented in README.md); flags override it.
    #[arg(long, short = 'c', global = true, env = "MAILBACKUP_CONFIG")]
    config: Option<PathBuf>,
    /// Where messages are kept: file:///PATH (default: the data folder), s3://BUCKET/PREFIX,
    /// az://CONTAINER/PREFIX or gs://BUCKET/PREFIX, options as ?key=value (README.md, "Object
    /// storage") [config: store]. The index stays in the data folder.
    #[arg(long, global = true, env = "MAILBACKUP_STORE", value_name = "URL")]
    store: Option<String>,
    /// Log level: error, warn, info, debug, trace (or RUST_LOG syntax).
    #[arg(long, global = true, default_value = "warn")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign in and store the tokens in the token cache.
    Login {
        #[command(flatten)]
        auth: Box<AuthArgs>,
    },
    /// Back up the mailbox(es).
    Run {
        #[command(flatten)]
        run: Box<RunArgs>,
        #[command(flatten)]
        auth: Box<AuthArgs>,
        /// Do not show progress bars.
        #[arg(long)]
        no_progress: bool,
    },
    /// Show the last run, counts per mailbox and the lock state.
    Status {
        #[command(flatten)]
        backup: config::BackupArg,
        /// Folder of the lock file [config: working_folder].
        #[arg(long)]
        working_folder: Option<PathBuf>,
    },
    /// Restore backed-up messages into a mailbox (needs Mail.ReadWrite).
    Restore {
        #[command(flatten)]
        restore: Box<restore_cmd::RestoreArgs>,
        #[command(flatten)]
        auth: Box<AuthArgs>,
    },
    /// Re-hash every file against the index; list missing, corrupt and extra files.
    Verify {
        #[command(flatten)]
        backup: config::BackupArg,
    },
    /// Export messages of the backup to mbox (mboxrd) or Maildir, without the X-NS-Backup line.
    Export {
        #[command(flatten)]
        backup: config::BackupArg,
        /// Output format.
        #[arg(long, value_enum, default_value = "mbox")]
        format: find::ExportFormat,
        /// With --format mbox: one file per folder or per mailbox.
        #[arg(long, value_enum, default_value = "folder")]
        mbox_per: find::MboxPer,
        /// Where to write (created when missing; existing files of the same name are replaced).
        #[arg(long, short = 'o')]
        out: PathBuf,
        #[command(flatten)]
        select: select::SelectArgs,
        /// Do not show a progress bar.
        #[arg(long)]
        no_progress: bool,
        /// Do not wait for the files to be on the disk (no fsync), like cp: faster, still never
        /// a partial message if the export is killed, but a crash of the machine may lose
        /// what it reported written.
        #[arg(long)]
        no_fsync: bool,
    },
    /// Search the backup's header index: `from:alice subject:"march invoice" after:2024-01-01
    /// before:2024-04-01 folder:Inbox mailbox:NAME has:attachment is:unread` and bare words.
    Search {
        #[command(flatten)]
        backup: config::BackupArg,
        /// The query (several words are joined with spaces; quote phrases for the shell too).
        words: Vec<String>,
        #[command(flatten)]
        select: select::SelectArgs,
        /// At most this many results, newest first.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Count every hit (slower over millions of messages); without it, counting stops
        /// above 10,000 ("50 of more than 10,000 shown").
        #[arg(long)]
        count: bool,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the indexed headers of one message and the path of its file.
    Show {
        #[command(flatten)]
        backup: config::BackupArg,
        /// The message's key (as `search` prints it).
        key: String,
    },
    /// Purge quarantined copies of remotely deleted messages older than N days.
    Prune {
        #[command(flatten)]
        backup: config::BackupArg,
        /// Folder of the lock file [config: working_folder].
        #[arg(long)]
        working_folder: Option<PathBuf>,
        /// The quarantine folder [config: quarantine_folder].
        #[arg(long)]
        quarantine_folder: Option<PathBuf>,
        /// Keep copies quarantined less than N days ago [config: keep_deleted_days].
        #[arg(long, value_name = "N")]
        keep_deleted_days: Option<u32>,
        /// List what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn init_logs(level: &str, writer: Option<ui::Bars>) {
    // HTTP internals are capped at info even at debug/trace: their traces can carry request
    // headers, i.e. bearer tokens, which must never reach a log.
    const CAPS: &str = "h2=info,hyper=info,hyper_util=info,reqwest=info,rustls=info";
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{directives},{CAPS}"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("warn,{CAPS}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colour_on_stderr());
    let _ = match writer {
        Some(bars) => builder.with_writer(move || bars.writer()).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}

/// Colours only for a person at a terminal: not when stderr is a file or a pipe, and not when
/// `NO_COLOR` is set to anything non-empty (no-color.org).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The backup a command reads: the data folder, the index `--index` (or the config) names, and
/// the message store `--store` (or the config) names, with `quarantine` as its quarantine area.
async fn open_backup(
    store_url: Option<&str>,
    file: &config::FileConfig,
    data: PathBuf,
    index: &config::IndexArg,
    quarantine: Option<&Path>,
) -> Result<find::Backup> {
    let store = config::open_store(store_url, file, &data, quarantine).await?;
    let index = index.open(file).await?;
    Ok(find::Backup { data, index, store })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, each said once (library errors often quote their cause already).
fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

async fn real_main(cli: Cli) -> Result<ExitCode> {
    let file = FileConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Login { auth } => {
            init_logs(&cli.log_level, None);
            let settings = config::merge_auth(&auth, &file.auth);
            let flow = auth::login(&settings).await?;
            println!(
                "signed in ({flow:?} flow); tokens cached in {}",
                settings.token_cache.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            run,
            auth,
            no_progress,
        } => {
            let bars = ui::Bars::new(!no_progress);
            init_logs(&cli.log_level, Some(bars.clone()));
            let report_path = run.report.clone().or_else(|| file.report.clone());
            let started = chrono::Utc::now();
            // A notification setting that cannot work fails the run before the backup starts.
            let notifier = notify::Notifier::new(&run.notify, &file.notify);
            let result = match &notifier {
                Ok(_) => backup(&run, &auth, &file, cli.store.as_deref(), bars).await,
                Err(e) => Err(anyhow::anyhow!("{}", error_text(e))),
            };
            let summary = run_report::RunSummary::new(
                started,
                chrono::Utc::now(),
                result.as_ref().map_err(error_text),
            );
            // A scheduler reads the report: a run whose report is missing did not succeed.
            let report_failed = match report_path
                .as_deref()
                .map(|p| run_report::write(p, &summary))
            {
                Some(Err(e)) => {
                    eprintln!("error: {}", error_text(&e));
                    true
                }
                _ => false,
            };
            if let Ok(n) = &notifier {
                n.notify(&summary).await;
            }
            let report = result?;
            print_summary(&report);
            let code = match report.status {
                RunStatus::Aborted => 130,
                _ if report.is_success() => 0,
                // Sign-in failures exit like a run that could not start: nothing can be done
                // until the user signs in again.
                _ if report.mailboxes.iter().any(|m| m.sign_in_failed) => 2,
                _ => 1,
            };
            Ok(ExitCode::from(if report_failed {
                code.max(1)
            } else {
                code
            }))
        }
        Command::Status {
            backup:
                config::BackupArg {
                    data_folder: d,
                    index,
                },
            working_folder,
        } => {
            init_logs(&cli.log_level, None);
            let d = config::data_folder(d, &file)?;
            let wf = working_folder.or_else(|| file.working_folder.clone());
            let s = match index.open(&file).await? {
                Some(ix) => {
                    tokio::task::spawn_blocking(move || {
                        mailbackup::status_of(&*ix, &d, wf.as_deref())
                    })
                    .await??
                }
                None => mailbackup::status(&d, wf.as_deref())?,
            };
            match &s.last_run {
                Some(r) => println!(
                    "last run: #{} {} (started {}, finished {})",
                    r.run_id,
                    if r.status == "Running"
                        && !matches!(s.lock, LockState::Held(_))
                        && !s
                            .workers
                            .iter()
                            .any(|w| w.state == mailbackup::index::WorkerState::Working)
                    {
                        "interrupted (crashed or killed; the next run resumes it)"
                    } else {
                        r.status.as_str()
                    },
                    r.started,
                    r.finished.as_deref().unwrap_or("-")
                ),
                None => println!("last run: none"),
            }
            for (mb, n, bytes) in &s.mailboxes {
                let tokens = s
                    .folders_with_token
                    .iter()
                    .find(|(m, _)| m == mb)
                    .map_or(0, |(_, n)| *n);
                println!(
                    "mailbox {mb}: {n} messages, {}, {tokens} folders with a delta token",
                    indicatif::HumanBytes(*bytes)
                );
            }
            print_workers(&s.workers);
            match s.lock {
                LockState::Free => println!("lock: free"),
                LockState::Held(h) => println!("lock: held by {h} (a run is in progress)"),
                LockState::Stale(h) => {
                    println!("lock: left by {h}, no longer running (the next run takes it over)")
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { restore, auth } => {
            restore_cmd::run(*restore, &auth, &file, cli.store.as_deref(), &cli.log_level).await
        }
        Command::Verify {
            backup:
                config::BackupArg {
                    data_folder: d,
                    index,
                },
        } => {
            init_logs(&cli.log_level, None);
            let d = config::data_folder(d, &file)?;
            let store = config::open_store(cli.store.as_deref(), &file, &d, None).await?;
            let ix = index.open(&file).await?;
            let st = store.clone();
            let v = tokio::task::spawn_blocking(move || match ix {
                Some(ix) => mailbackup::verify_store(&*st, &*ix),
                None => mailbackup::verify_store(&*st, &mailbackup::verify::open_index(&d)?),
            })
            .await??;
            for (mb, id, key) in &v.missing {
                println!("missing: {} ({mb} message {id})", store.locate(key));
            }
            for c in &v.corrupt {
                println!(
                    "corrupt: {} ({}: {})",
                    store.locate(&c.key),
                    c.mailbox,
                    c.reason
                );
            }
            for key in &v.extra {
                println!("extra: {}", store.locate(key));
            }
            println!(
                "verify: {} ok, {} missing, {} corrupt, {} extra",
                v.ok,
                v.missing.len(),
                v.corrupt.len(),
                v.extra.len()
            );
            Ok(if v.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Export {
            backup:
                config::BackupArg {
                    data_folder: d,
                    index,
                },
            format,
            mbox_per,
            out,
            select,
            no_progress,
            no_fsync,
        } => {
            init_logs(&cli.log_level, None);
            let d = config::data_folder(d, &file)?;
            let backup = open_backup(cli.store.as_deref(), &file, d, &index, None).await?;
            let durability = match no_fsync {
                true => Durability::NoFsync,
                false => Durability::Durable,
            };
            let to = find::ExportTo {
                format,
                per: mbox_per,
                durability,
                out,
            };
            find::export(backup, &select, to, no_progress).await
        }
        Command::Search {
            backup:
                config::BackupArg {
                    data_folder: d,
                    index,
                },
            words,
            select,
            limit,
            count,
            json,
        } => {
            init_logs(&cli.log_level, None);
            let d = config::data_folder(d, &file)?;
            let backup = open_backup(cli.store.as_deref(), &file, d, &index, None).await?;
            tokio::task::spawn_blocking(move || {
                find::search(&backup, &words, &select, limit, count, json)
            })
            .await?
        }
        Command::Show {
            backup:
                config::BackupArg {
                    data_folder: d,
                    index,
                },
            key,
        } => {
            init_logs(&cli.log_level, None);
            let d = config::data_folder(d, &file)?;
            let backup = open_backup(cli.store.as_deref(), &file, d, &index, None).await?;
            tokio::task::spawn_blocking(move || find::show(&backup, &key)).await?
        }
        Command::Prune {
            backup:
                config::BackupArg {
                    data_folder: d,
                    index,
                },
            working_folder,
            quarantine_folder,
            keep_deleted_days,
            dry_run,
        } => {
            init_logs(&cli.log_level, None);
            let d = config::data_folder(d, &file)?;
            let q = quarantine_folder
                .or_else(|| file.quarantine_folder.clone())
                .context("no quarantine folder: give --quarantine-folder DIR or quarantine_folder in the config file")?;
            let days = keep_deleted_days.or(file.keep_deleted_days).context(
                "no retention: give --keep-deleted-days N or keep_deleted_days in the config file",
            )?;
            let wf = working_folder.or_else(|| file.working_folder.clone());
            let backup = open_backup(cli.store.as_deref(), &file, d, &index, Some(&q)).await?;
            tokio::task::spawn_blocking(move || find::prune(&backup, wf, days, dry_run)).await?
        }
    }
}

/// Signs in, builds the backup from the flags and config, and runs it.
async fn backup(
    run: &RunArgs,
    auth: &AuthArgs,
    file: &FileConfig,
    store_flag: Option<&str>,
    bars: ui::Bars,
) -> Result<mailbackup::BackupReport> {
    let settings = auth::with_cached_sign_in(config::merge_auth(auth, &file.auth))?;
    let tokens = auth::token_source(&settings)?;
    let mut builder = config::backup_builder(run, file, tokens)?;
    if config::store_url(store_flag, file).is_some() {
        // Without a URL the builder keeps its own local store, exactly as before.
        let d = config::data_folder(run.data_folder.clone(), file)?;
        let q = run
            .quarantine_folder
            .clone()
            .or_else(|| file.quarantine_folder.clone());
        let store = config::open_store(store_flag, file, &d, q.as_deref());
        builder = builder.message_store(store.await?);
    }
    if let Some(ix) = run.index.open(file).await? {
        builder = builder.index(ix);
    }
    let backup = builder.build()?;
    let cancel = backup.cancel_token();
    let worker = backup.options().worker.as_ref().map(|w| w.id.clone());
    tokio::spawn({
        let cancel = cancel.clone();
        let leases = if worker.is_some() {
            ", then releasing this worker's mailbox leases"
        } else {
            ""
        };
        async move {
            if let Some(signal) = stop_signal().await {
                eprintln!(
                    "aborting ({signal}): letting requests in flight finish (at most 5 s) and completing files being written{leases}..."
                );
                cancel.cancel();
            }
        }
    });
    let done = CancellationToken::new();
    let ui_task = tokio::spawn(bars.follow(backup.progress(), done.clone()));
    let result = if run.resume {
        backup.resume().await
    } else {
        backup.run().await
    };
    done.cancel();
    let _ = ui_task.await;
    Ok(result?)
}

/// `status`: the workers sharing the index and what each holds.
fn print_workers(workers: &[mailbackup::index::WorkerRow]) {
    use mailbackup::index::WorkerState;
    for w in workers {
        match w.state {
            WorkerState::Working => println!(
                "worker {}: working since {}, last heartbeat {}",
                w.worker, w.started, w.heartbeat
            ),
            WorkerState::Finished => println!(
                "worker {}: finished {} (started {})",
                w.worker,
                w.finished.as_deref().unwrap_or("-"),
                w.started
            ),
            WorkerState::Dead => println!(
                "worker {}: dead (no heartbeat since {}; started {}); its mailboxes are taken over by other workers once their leases expire",
                w.worker, w.heartbeat, w.started
            ),
        }
        for l in &w.leases {
            println!(
                "  mailbox {}: held since {}, {} messages so far, renewed {}{}",
                l.mailbox,
                l.since,
                l.messages,
                l.heartbeat,
                if l.expired {
                    " (lease expired: free for another worker)"
                } else {
                    ""
                }
            );
        }
    }
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM (what `kill`, systemd and Kubernetes send to stop a
/// process); says which arrived. `None` when no handler could be installed.
async fn stop_signal() -> Option<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok()?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.ok().map(|_| "Ctrl-C"),
            _ = term.recv() => Some("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.ok().map(|_| "Ctrl-C")
    }
}

fn print_summary(report: &mailbackup::BackupReport) {
    for m in &report.mailboxes {
        if let Some(why) = &m.skipped_reason {
            println!("mailbox {}: skipped ({why})", m.mailbox);
            continue;
        }
        let moved = m.removed.iter().filter(|r| r.moved_to.is_some()).count();
        println!(
            "mailbox {}: {} messages: {} saved ({}), {} unchanged, {} skipped, {} deleted before fetch, {} failed, {} removed locally{}; {} requests, {} throttled",
            m.mailbox,
            m.message_count,
            m.saved,
            indicatif::HumanBytes(m.bytes),
            m.unchanged,
            m.skipped,
            m.gone_in_flight,
            m.failed.len(),
            m.removed.len(),
            if moved > 0 {
                format!(" ({moved} moved to another folder and saved again under their new id)")
            } else {
                String::new()
            },
            m.requests,
            m.throttled
        );
        for r in &m.removed {
            let why = match &r.moved_to {
                Some(new) => format!(
                    "message {} moved to another folder, saved again as {new}",
                    r.id
                ),
                None => format!("message {} deleted remotely", r.id),
            };
            match &r.quarantined_to {
                Some(to) => println!("  moved {} to {to} ({why})", r.location),
                None => println!("  removed {} ({why})", r.location),
            }
        }
        if let Some(e) = &m.error {
            println!("  ERROR: {e}");
        }
        if m.sync_skipped {
            println!("  sync phase skipped (the listing or backup was incomplete)");
        }
    }
    let failures: Vec<_> = report.failures().collect();
    if !failures.is_empty() {
        println!("failed messages:");
        for (mb, f) in failures {
            println!("  {mb} {}: {} {}", f.id, f.code, f.message);
        }
    }
    println!(
        "backup {}: {:.1}s",
        match report.status {
            RunStatus::Completed if report.is_success() => "completed",
            RunStatus::Completed => "completed with failures",
            RunStatus::Aborted => "aborted (run again to continue)",
            RunStatus::Failed => "failed",
        },
        report.elapsed.as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_says_each_cause_once() {
        let io = std::io::Error::from_raw_os_error(20);
        let lib = mailbackup::Error::Io {
            context: "cannot create /x".into(),
            source: io,
        };
        let e = anyhow::Error::new(lib).context("starting the run");
        let t = error_text(&e);
        assert_eq!(t.matches("Not a directory").count(), 1, "{t}");
        assert!(t.starts_with("starting the run: cannot create /x"), "{t}");
    }
}
