//! `mailbackup restore`: flags, the run, the summary and the exit code.

use crate::config::{self, AuthArgs, FileConfig, RunArgs};
use crate::select::SelectArgs;
use crate::{auth, ui};
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use mailbackup::{Placement, Restore, RestoreMode, RestoreReport, RestoreRequest};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// How messages are created (see README, "Restore: JSON or MIME").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// Not drafts, original received/sent dates and read state, attachments re-attached; the
    /// MIME is rebuilt by Exchange (some headers lost, signatures broken).
    Json,
    /// The backed-up bytes exactly (signed mail stays valid), but drafts received at restore
    /// time; messages over 3 MB are created from JSON instead.
    Mime,
}

/// Flags of `restore`.
#[derive(Debug, Clone, Args)]
pub(crate) struct RestoreArgs {
    #[command(flatten)]
    backup: config::BackupArg,
    /// Folder of the lock file [config: working_folder] (default DATA/.meta).
    #[arg(long)]
    working_folder: Option<PathBuf>,
    #[command(flatten)]
    select: SelectArgs,
    /// Restore into this mailbox (id or UPN) instead of the source mailbox.
    #[arg(long)]
    to_user: Option<String>,
    /// Restore into the original folders (created when missing) instead of one new folder.
    #[arg(long, conflicts_with = "into_folder")]
    original_folders: bool,
    /// Name of the new top-level folder the messages go below, their folder tree kept
    /// (default "Restored YYYY-MM-DD"). Give the same name to resume on another day.
    #[arg(long)]
    into_folder: Option<String>,
    /// json (default: not drafts, original dates and read state) or mime (exact bytes, drafts).
    #[arg(long, value_enum, default_value = "json")]
    mode: Mode,
    /// Graph base URL [config: graph_url].
    #[arg(long)]
    graph_url: Option<String>,
    /// Requests in flight per mailbox, at most 4 [config: max_connections].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Retries of a failed create [config: max_retry_count].
    #[arg(long)]
    max_retry_count: Option<u32>,
    /// Seconds between retries [config: retry_interval].
    #[arg(long)]
    retry_interval: Option<f64>,
    /// Total time limit in seconds [config: time_limit].
    #[arg(long)]
    time_limit: Option<u64>,
    /// Do not show progress bars.
    #[arg(long)]
    no_progress: bool,
}

/// Runs `restore`.
pub(crate) async fn run(
    a: RestoreArgs,
    auth_args: &AuthArgs,
    file: &FileConfig,
    store_url: Option<&str>,
    log_level: &str,
) -> Result<ExitCode> {
    let selection = a.select.selection("")?;
    let bars = ui::Bars::new(!a.no_progress);
    crate::init_logs(log_level, Some(bars.clone()));
    let settings = auth::with_cached_sign_in(config::merge_auth(auth_args, &file.auth))?;
    let tokens = auth::token_source(&settings)?;
    let run_args = RunArgs {
        data_folder: a.backup.data_folder.clone(),
        working_folder: a.working_folder.clone(),
        graph_url: a.graph_url.clone(),
        max_connections: a.max_connections,
        max_retry_count: a.max_retry_count,
        retry_interval: a.retry_interval,
        time_limit: a.time_limit,
        ..Default::default()
    };
    let opts = config::backup_builder(&run_args, file, tokens.clone())?
        .build()?
        .options()
        .clone();
    let store = config::open_store(store_url, file, &opts.data_folder, None).await?;
    let index = a.backup.index.open(file).await?;
    if a.into_folder
        .as_deref()
        .is_some_and(|n| n.trim().is_empty())
    {
        bail!("--into-folder needs a folder name");
    }
    let placement = if a.original_folders {
        Placement::Original
    } else {
        Placement::Under(
            a.into_folder
                .clone()
                .unwrap_or_else(|| format!("Restored {}", chrono::Local::now().format("%Y-%m-%d"))),
        )
    };
    let request = RestoreRequest {
        selection,
        to_user: a.to_user.clone(),
        placement,
        mode: match a.mode {
            Mode::Json => RestoreMode::Json,
            Mode::Mime => RestoreMode::Mime,
        },
    };
    let mut restore = Restore::new(opts, tokens, request).message_store(store);
    if let Some(ix) = index {
        restore = restore.index(ix);
    }
    let cancel = restore.cancel_token();
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("aborting: messages being created are finished and recorded...");
                cancel.cancel();
            }
        }
    });
    let done = CancellationToken::new();
    let ui_task = tokio::spawn(bars.follow_restore(restore.progress(), done.clone()));
    let result = restore.run().await;
    done.cancel();
    let _ = ui_task.await;
    let report = result.context("restore")?;
    print_summary(&report);
    Ok(if report.is_success() {
        ExitCode::SUCCESS
    } else if cancel.is_cancelled() {
        ExitCode::from(130)
    } else {
        ExitCode::from(1)
    })
}

fn print_summary(r: &RestoreReport) {
    println!(
        "restore {} -> {}: {} selected: {} restored, {} already restored, {} found created by an interrupted run, {} failed; {} drafts (mime), {} too large for mime created from json; {} folders created; {} requests, {} throttled; {:.1}s",
        r.source,
        r.target,
        r.selected,
        r.restored,
        r.already_restored,
        r.adopted,
        r.failed.len(),
        r.drafts,
        r.mime_fallbacks,
        r.folders_created,
        r.requests,
        r.throttled,
        r.elapsed.as_secs_f64()
    );
    if !r.failed.is_empty() {
        println!("failed messages:");
        for f in &r.failed {
            println!("  {}: {} {}", f.id, f.code, f.message);
        }
    }
    if let Some(why) = &r.stopped {
        println!("restore stopped: {why} (run the same command again to continue)");
    }
}
