//! Terminal output of `run`: one progress bar per mailbox (phase, counts, bytes, rate, ETA),
//! hidden when standard error is not a terminal, and a log writer that prints above the bars.

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mailbackup::{Phase, Progress};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The bars of a run.
#[derive(Clone)]
pub(crate) struct Bars {
    multi: MultiProgress,
}

impl Bars {
    pub(crate) fn new(enabled: bool) -> Bars {
        let target = if enabled && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(5)
        } else {
            ProgressDrawTarget::hidden()
        };
        Bars {
            multi: MultiProgress::with_draw_target(target),
        }
    }

    /// Updates the bars from the run's counters until `done` is cancelled.
    pub(crate) async fn follow(self, progress: Arc<Progress>, done: CancellationToken) {
        let mut bars: HashMap<String, (ProgressBar, Phase)> = HashMap::new();
        let listing = ProgressStyle::with_template("{prefix:.bold} {spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let counting = counting_style();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            let finished = tokio::select! {
                _ = done.cancelled() => true,
                _ = tick.tick() => false,
            };
            for mb in progress.mailboxes() {
                let entry = bars.entry(mb.mailbox().to_string()).or_insert_with(|| {
                    let b = self.multi.add(ProgressBar::new(0));
                    b.set_prefix(mb.mailbox().to_string());
                    b.set_style(listing.clone());
                    (b, Phase::None)
                });
                let (bar, shown) = entry;
                let phase = mb.phase();
                if phase != *shown {
                    match phase {
                        Phase::Backup | Phase::Sync => {
                            bar.set_style(counting.clone());
                            bar.reset();
                        }
                        _ => bar.set_style(listing.clone()),
                    }
                    *shown = phase;
                }
                match phase {
                    Phase::Initialization => {
                        bar.set_message(format!("initialization: {} messages listed", mb.listed()));
                        bar.tick();
                    }
                    Phase::Backup => {
                        bar.set_length(mb.message_count());
                        bar.set_position(mb.processed());
                        bar.set_message(format!(
                            "backup: {} saved ({}), {} unchanged, {} failed",
                            mb.saved(),
                            HumanBytes(mb.bytes()),
                            mb.unchanged(),
                            mb.failed()
                        ));
                    }
                    Phase::Sync => {
                        bar.set_length(mb.sync_total());
                        bar.set_position(mb.sync_checked());
                        bar.set_message(format!("sync: {} removed", mb.removed()));
                    }
                    Phase::None => {
                        if !bar.is_finished() && mb.requests() > 0 {
                            bar.set_style(listing.clone());
                            bar.finish_with_message(format!(
                                "done: {} saved ({}), {} unchanged, {} failed",
                                mb.saved(),
                                HumanBytes(mb.bytes()),
                                mb.unchanged(),
                                mb.failed()
                            ));
                        }
                    }
                }
            }
            if finished {
                for (b, _) in bars.values() {
                    if !b.is_finished() {
                        b.finish();
                    }
                }
                let _ = self.multi.clear();
                return;
            }
        }
    }

    /// The bar of a restore (one per target mailbox) until `done` is cancelled.
    pub(crate) async fn follow_restore(self, progress: Arc<Progress>, done: CancellationToken) {
        let style = counting_style();
        let mut bars: HashMap<String, ProgressBar> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            let finished = tokio::select! {
                _ = done.cancelled() => true,
                _ = tick.tick() => false,
            };
            for mb in progress.mailboxes() {
                let bar = bars.entry(mb.mailbox().to_string()).or_insert_with(|| {
                    let b = self.multi.add(ProgressBar::new(0));
                    b.set_prefix(format!("restore into {}", mb.mailbox()));
                    b.set_style(style.clone());
                    b
                });
                bar.set_length(mb.message_count());
                bar.set_position(mb.processed());
                bar.set_message(format!("{} restored, {} failed", mb.saved(), mb.failed()));
            }
            if finished {
                for b in bars.values() {
                    b.finish();
                }
                let _ = self.multi.clear();
                return;
            }
        }
    }

    /// A writer for log lines that does not tear the bars.
    pub(crate) fn writer(&self) -> LogWriter {
        LogWriter {
            multi: self.multi.clone(),
        }
    }
}

/// A bar that counts: messages backed up, checked for deletion or restored.
fn counting_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:.bold} {msg} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Writes to standard error while the bars are suspended.
pub(crate) struct LogWriter {
    multi: MultiProgress,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.multi.suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
