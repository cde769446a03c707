//! Post-processing of received files (issue #11 §3, §4): a partner's `on_receive` command runs
//! for each file it sends us once the file is durable, and with `eerp_after = "processed"` the
//! file's EERP goes out only after that command succeeded.
//!
//! ```toml
//! [[partners]]
//! name = "acme"
//! eerp_after = "processed"      # default "stored": the EERP goes out when the file is durable
//!
//! [partners.on_receive]
//! command = ["/usr/local/bin/import", "--fast"]   # argv, no shell
//! timeout_secs = 300                               # killed (its process group) after this
//! processed_dir = "/srv/edi/acme/done"            # optional: moved here after success
//!
//! [gateway.post_processing]
//! max_concurrent = 4            # commands running at once, all partners together
//! ```
//!
//! How a file goes (every step durable in the journal before the next, see
//! [`oftp::journal::processing`]):
//! 1. The runtime has stored the file and its journal entry; `end_transfer` reaches
//!    [`PostProcessor::file_stored`], which records a *pending* row (holding the EERP with
//!    `eerp_after = "processed"`) and starts a task. The answer to the runtime is
//!    `EndResponseTiming::Later` for a held EERP, so it is not sent now.
//! 2. The task waits for one of `max_concurrent` slots, marks the row *running* (one more
//!    attempt) and runs the command: no shell, no stdin, in a process group of its own, with
//!    the file's metadata in the environment ([`ENV_VARS`]). Standard output and error are
//!    kept up to [`OUTPUT_LIMIT`] octets (the rest is read and dropped, so the command never
//!    blocks on a full pipe).
//! 3. Exit status 0 is success: the row is *succeeded*, which releases a held EERP in the same
//!    transaction; it is then sent at once on a live session with the partner (through its
//!    `SessionHandle`), else at the next session (we call a partner with an `address` at once
//!    when a [`GatewayRuntime`] is attached). With `processed_dir` the file is then moved
//!    there (durably); a crash between the two leaves it where it was, which the archive then
//!    takes.
//! 4. A non-zero exit, a timeout (the whole process group is killed with SIGKILL) or a command
//!    that cannot start is *failed*: an alert [`AlertKind::PostProcessingFailed`] is raised, the
//!    file stays where it is and a held EERP stays held. An operator runs it again with
//!    [`PostProcessor::rerun`] (the control channel's "run again").
//!
//! A daemon that stops while a command runs runs it again at start ([`PostProcessor::resume`]:
//! the journal says *running*), so **commands must be idempotent**. When the command's main
//! process exits, what is left of its process group is killed too.
//!
//! No NERP is sent when the command fails, after any number of attempts. RFC 5024 4.3.7 lets
//! the final node send a NERP when it "is unable to process the file because of
//! non-recoverable syntax or semantic errors in the file, or because of the failure of any
//! other processing" (reason 34 "File processing failed", 5.3.14), and 4.3.7 says a NERP lets
//! the originator stop and delete the file: it is final. A failing import is usually ours to
//! fix (a full disk, a database down), and after a fix the file is processed and confirmed with
//! the EERP; a NERP sent first could not be taken back. So the EERP stays held and a person
//! decides (the alert says so).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use oftp::ConnectionId;
use oftp::SessionHandle;
use oftp::handler::{
    EndResponse, EndResponseTiming, FileOffer, SessionInfo, TransferInfo, TransferResult,
};
use oftp::identity::OdetteId;
use oftp::journal::{
    AlertKind, FileKey, Journal, JournalError, NewAlert, Processing, ProcessingRun, ReceivedFile,
};
use oftp::stamp::FileStampExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Semaphore;

use crate::ops::GatewayRuntime;

/// Octets of a command's standard output and error kept in the journal (each).
pub const OUTPUT_LIMIT: usize = 16 * 1024;

/// The environment variables a command gets, and what each holds (also in the README).
pub const ENV_VARS: &[(&str, &str)] = &[
    ("OFTP_FILE", "absolute path of the received file"),
    ("OFTP_DSN", "virtual file name (SFIDDSN)"),
    ("OFTP_ORIGINATOR", "originator (SFIDORIG)"),
    ("OFTP_DESTINATION", "destination (SFIDDEST)"),
    ("OFTP_DATE", "virtual file date, CCYYMMDD (SFIDDATE)"),
    ("OFTP_TIME", "virtual file time, HHMMSScccc (SFIDTIME)"),
    ("OFTP_SIZE", "octets of user data received"),
    ("OFTP_FORMAT", "record format: F, V, U or T (SFIDFMT)"),
    (
        "OFTP_SECURITY",
        "file services the originator applied, as SFID codes: \"SFIDSEC=00 SFIDCIPH=00 SFIDCOMP=0 SFIDENV=0 SFIDSIGN=N\"",
    ),
    ("OFTP_USER_DATA", "SFIDUSER"),
    ("OFTP_PARTNER", "the partner's configured name"),
    ("OFTP_PARTNER_SSID", "the partner's SSID code"),
    ("OFTP_ATTEMPT", "1 for the first run, 2 for the next ..."),
];

fn default_timeout() -> u64 {
    300
}

/// `[partners.on_receive]`: the command run for each file received from the partner.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OnReceive {
    /// Program and arguments (no shell); the program is looked up in `PATH` if it has no `/`.
    pub command: Vec<String>,
    /// Seconds before the command's process group is killed (at least 1).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Where a file goes after its command succeeded; none = it stays. `oftp serve` reads a
    /// relative path as relative to the data directory (like `inbox`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_dir: Option<PathBuf>,
}

/// `eerp_after`: when the EERP of a received file goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EerpAfter {
    /// When the file is durable (the runtime's default).
    #[default]
    Stored,
    /// Only after the `on_receive` command succeeded.
    Processed,
}

/// `[gateway.post_processing]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostProcessingSettings {
    /// Commands running at once, all partners together (at least 1).
    pub max_concurrent: u32,
}

impl Default for PostProcessingSettings {
    fn default() -> Self {
        PostProcessingSettings { max_concurrent: 4 }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostProcessConfigError {
    /// `command = []`.
    #[error(
        "[partners.on_receive]: command is empty; write the program and its arguments, e.g. command = [\"/usr/local/bin/import\", \"--fast\"]"
    )]
    EmptyCommand,
    /// `timeout_secs = 0`.
    #[error("[partners.on_receive]: timeout_secs must be at least 1")]
    NoTimeout,
    /// `eerp_after = "processed"` without a command.
    #[error(
        "eerp_after = \"processed\" needs a [partners.on_receive] command (else no EERP would ever go out)"
    )]
    NothingToWaitFor,
}

impl OnReceive {
    /// Checks what serde cannot.
    pub fn check(&self) -> Result<(), PostProcessConfigError> {
        if self.command.first().is_none_or(|p| p.is_empty()) {
            return Err(PostProcessConfigError::EmptyCommand);
        }
        if self.timeout_secs == 0 {
            return Err(PostProcessConfigError::NoTimeout);
        }
        Ok(())
    }
}

/// Checks a partner's `on_receive` and `eerp_after` together.
pub fn check(
    on_receive: Option<&OnReceive>,
    eerp_after: EerpAfter,
) -> Result<(), PostProcessConfigError> {
    match on_receive {
        Some(c) => c.check(),
        None if eerp_after == EerpAfter::Processed => Err(PostProcessConfigError::NothingToWaitFor),
        None => Ok(()),
    }
}

/// The environment of a run, in [`ENV_VARS`] order.
pub fn environment(file: &ReceivedFile, attempt: u32) -> Vec<(&'static str, String)> {
    let path = std::path::absolute(&file.path).unwrap_or_else(|_| file.path.clone());
    let values = [
        path.to_string_lossy().into_owned(),
        file.key.dsn.clone(),
        file.key.originator.as_str().to_owned(),
        file.destination.clone(),
        file.key.stamp.date_string(),
        file.key.stamp.time_string(),
        file.size.to_string(),
        file.format.clone(),
        file.security.clone(),
        file.user_data.clone(),
        file.partner_name.clone(),
        file.partner.clone(),
        attempt.to_string(),
    ];
    ENV_VARS.iter().map(|(n, _)| *n).zip(values).collect()
}

/// Reads `from` to its end, keeping the first [`OUTPUT_LIMIT`] octets.
async fn read_bounded(mut from: impl AsyncRead + Unpin) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut cut = false;
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return (kept, cut),
            Ok(n) => {
                let room = OUTPUT_LIMIT - kept.len();
                kept.extend_from_slice(&buf[..n.min(room)]);
                cut |= n > room;
            }
        }
    }
}

fn kill_group(pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        // ESRCH (nothing left) is the normal case after a clean exit.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// Runs `cmd` for `file` (attempt number `attempt`) and says how it ended; never panics, never
/// waits longer than the timeout (plus the time to reap the killed group).
pub async fn run_command(cmd: &OnReceive, file: &ReceivedFile, attempt: u32) -> ProcessingRun {
    let Some((program, args)) = cmd.command.split_first() else {
        return ProcessingRun {
            error: Some("no command configured".into()),
            ..Default::default()
        };
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(environment(file, attempt))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            return ProcessingRun {
                exit_code: None,
                output: String::new(),
                error: Some(format!(
                    "cannot start {program}: {e}; check the path and that it is executable"
                )),
            };
        }
    };
    let pid = child.id();
    let out = tokio::spawn(read_bounded(child.stdout.take().expect("piped")));
    let err = tokio::spawn(read_bounded(child.stderr.take().expect("piped")));
    let limit = Duration::from_secs(cmd.timeout_secs);
    let status = tokio::time::timeout(limit, child.wait()).await;
    // The whole group: also what the command left running (it would hold the pipes open).
    kill_group(pid);
    let status = match status {
        Ok(s) => Some(s),
        Err(_) => {
            let _ = child.wait().await;
            None
        }
    };
    let (out, out_cut) = out.await.unwrap_or_default();
    let (err, err_cut) = err.await.unwrap_or_default();
    let mut output = String::from_utf8_lossy(&out).into_owned();
    if out_cut {
        output.push_str("\n[stdout cut]");
    }
    if !err.is_empty() {
        output.push_str("\n--- stderr ---\n");
        output.push_str(&String::from_utf8_lossy(&err));
    }
    if err_cut {
        output.push_str("\n[stderr cut]");
    }
    match status {
        None => ProcessingRun {
            exit_code: None,
            output,
            error: Some(format!(
                "{program} did not finish within {} s and was killed with its process group",
                cmd.timeout_secs
            )),
        },
        Some(Err(e)) => ProcessingRun {
            exit_code: None,
            output,
            error: Some(format!("waiting for {program} failed: {e}")),
        },
        Some(Ok(s)) if s.success() => ProcessingRun {
            exit_code: Some(0),
            output,
            error: None,
        },
        Some(Ok(s)) => ProcessingRun {
            exit_code: s.code(),
            output,
            error: Some(match s.code() {
                Some(c) => format!("{program} exited with status {c}"),
                None => format!("{program} was ended by a signal ({s})"),
            }),
        },
    }
}

/// A partner's post-processing keys, as [`PostProcessor`] needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerPostProcessing {
    /// The configured name.
    pub name: String,
    /// Whether we can call it (`address` set).
    pub callable: bool,
    /// Its command, if any.
    pub on_receive: Option<OnReceive>,
    /// When its EERPs go out.
    pub eerp_after: EerpAfter,
}

/// Why an operator's re-run was not started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RerunError {
    /// No such row.
    #[error("no post-processing with id {0}")]
    Unknown(i64),
    /// Its partner has no `on_receive` any more.
    #[error("partner {0:?} has no [partners.on_receive] command any more; configure one first")]
    NoCommand(String),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// An offered file: its connection, virtual file name and stamp digits.
type OfferKey = (ConnectionId, String, String);

/// The caller's clock.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Runs the `on_receive` commands and releases held EERPs (see the module doc).
pub struct PostProcessor {
    journal: Arc<dyn Journal>,
    /// By SSID code (the journal's partner key).
    partners: HashMap<String, PartnerPostProcessing>,
    local_sfid: OdetteId,
    slots: Arc<Semaphore>,
    clock: Clock,
    /// Live sessions by SSID code.
    sessions: Mutex<HashMap<String, Vec<SessionHandle>>>,
    /// Format and services of offered files until they end.
    offers: Mutex<HashMap<OfferKey, (String, String)>>,
    runtime: OnceLock<Arc<dyn GatewayRuntime>>,
}

impl std::fmt::Debug for PostProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostProcessor")
            .field("partners", &self.partners)
            .field("local_sfid", &self.local_sfid)
            .finish_non_exhaustive()
    }
}

impl PostProcessor {
    /// A processor for `partners` (by SSID code, any case), answering as `local_sfid`, with
    /// `settings.max_concurrent` slots.
    pub fn new(
        journal: Arc<dyn Journal>,
        partners: HashMap<String, PartnerPostProcessing>,
        local_sfid: OdetteId,
        settings: &PostProcessingSettings,
        clock: Clock,
    ) -> Arc<Self> {
        let partners = partners
            .into_iter()
            .map(|(code, p)| (code.trim_end().to_ascii_uppercase(), p))
            .collect();
        Arc::new(PostProcessor {
            journal,
            partners,
            local_sfid,
            slots: Arc::new(Semaphore::new(settings.max_concurrent.max(1) as usize)),
            clock,
            sessions: Mutex::default(),
            offers: Mutex::default(),
            runtime: OnceLock::new(),
        })
    }

    /// A partner by its SSID code (compared as the partner table does: without trailing
    /// blanks, in upper case).
    fn partner(&self, code: &str) -> Option<&PartnerPostProcessing> {
        self.partners.get(&code.trim_end().to_ascii_uppercase())
    }

    /// Lets a released EERP for a partner we can call start a call at once.
    pub fn attach_runtime(&self, runtime: Arc<dyn GatewayRuntime>) {
        let _ = self.runtime.set(runtime);
    }

    /// A session started: held EERPs released while it runs go out on it.
    pub fn session_started(&self, session: &SessionInfo) {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.entry(session.peer_ssid.as_str().to_owned())
            .or_default()
            .push(session.handle.clone());
    }

    /// A connection closed.
    pub fn session_ended(&self, id: ConnectionId) {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.retain(|_, handles| {
            handles.retain(|h| h.id() != id);
            !handles.is_empty()
        });
        self.offers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(c, _, _), _| *c != id);
    }

    /// A file is offered: its format and services are kept for its command's environment.
    pub fn offered(&self, session: &SessionInfo, offer: &FileOffer) {
        if self.partner(session.peer_ssid.as_str()).is_none() {
            return;
        }
        let s = &offer.services;
        let security = format!(
            "SFIDSEC={:02} SFIDCIPH={:02} SFIDCOMP={} SFIDENV={} SFIDSIGN={}",
            s.security.0,
            s.cipher_suite.0,
            s.compression.0,
            s.envelope.0,
            if s.signed_eerp { 'Y' } else { 'N' }
        );
        let format = char::from(offer.format.as_byte()).to_string();
        self.offers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                (
                    session.id,
                    offer.virtual_file_name.trim_end().to_owned(),
                    offer.stamp.digits(),
                ),
                (format, security),
            );
    }

    /// A transfer ended (the runtime's `end_transfer`). For a file received complete from a
    /// partner with `on_receive`: records its post-processing and starts it; the answer holds
    /// the EERP with `eerp_after = "processed"`.
    pub async fn file_stored(
        self: &Arc<Self>,
        session: &SessionInfo,
        transfer: &TransferInfo,
        result: &TransferResult,
    ) -> EndResponseTiming {
        if transfer.direction != oftp::handler::Direction::Incoming {
            return EndResponseTiming::Now;
        }
        let ssid = session.peer_ssid.as_str().to_owned();
        let offer_key = (
            session.id,
            transfer.virtual_file_name.trim_end().to_owned(),
            transfer.stamp.digits(),
        );
        let offer = self
            .offers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&offer_key);
        let TransferResult::Completed { units, .. } = result else {
            return EndResponseTiming::Now;
        };
        let Some(partner) = self.partner(&ssid) else {
            return EndResponseTiming::Now;
        };
        if partner.on_receive.is_none() {
            return EndResponseTiming::Now;
        }
        let hold = partner.eerp_after == EerpAfter::Processed;
        let (format, security) = offer.unwrap_or_else(|| ("?".into(), "?".into()));
        let file = ReceivedFile {
            partner: ssid,
            partner_name: partner.name.clone(),
            key: FileKey::new(
                transfer.originator.clone(),
                &transfer.virtual_file_name,
                transfer.stamp,
            ),
            destination: transfer.destination.as_str().to_owned(),
            path: transfer.local_file.clone(),
            size: *units,
            format,
            security,
            user_data: String::new(),
        };
        self.add(file, hold).await;
        if hold {
            EndResponseTiming::Later
        } else {
            EndResponseTiming::Now
        }
    }

    async fn add(self: &Arc<Self>, mut file: ReceivedFile, hold: bool) {
        let now = (self.clock)();
        let (p, k) = (file.partner.clone(), file.key.clone());
        // SFIDUSER of the file, repeated in the EERP we send for it later.
        if let Ok(Some(entry)) = self.journal.call(move |j| j.received(&p, &k)).await {
            file.user_data = entry.user_data;
        }
        let name = file.path.display().to_string();
        match self
            .journal
            .call(move |j| j.add_processing(&file, hold, now))
            .await
        {
            Ok(row) => self.spawn(row),
            Err(e) if hold => tracing::error!(
                file = %name,
                "cannot record the post-processing of a received file: {e}; its command does \
                 not run and its EERP stays held: run the command by hand, then send the EERP \
                 (or restart the daemon once the journal works if the EERP was not held yet)"
            ),
            Err(e) => tracing::error!(
                file = %name,
                "cannot record the post-processing of a received file: {e}; it runs when the \
                 daemon starts again"
            ),
        }
    }

    fn spawn(self: &Arc<Self>, row: Processing) {
        let me = Arc::clone(self);
        tokio::spawn(async move { me.run(row).await });
    }

    /// What a starting daemon does: runs every row pending or running (a command the last
    /// daemon did not see end runs again), and records the post-processing of files received
    /// complete before the last daemon could (whose EERP has not gone out yet).
    pub async fn resume(self: &Arc<Self>) -> Result<usize, JournalError> {
        for (ssid, partner) in &self.partners {
            if partner.on_receive.is_none() {
                continue;
            }
            let s = ssid.clone();
            let owed = self
                .journal
                .call(move |j| j.pending_end_responses(&s))
                .await?;
            for entry in owed {
                let (s, k) = (ssid.clone(), entry.key.clone());
                if self
                    .journal
                    .call(move |j| j.processing_of(&s, &k))
                    .await?
                    .is_some()
                {
                    continue;
                }
                let size = std::fs::metadata(&entry.final_path).map_or(0, |m| m.len());
                let file = ReceivedFile {
                    partner: ssid.clone(),
                    partner_name: partner.name.clone(),
                    key: entry.key.clone(),
                    destination: self.local_sfid.as_str().to_owned(),
                    path: entry.final_path.clone(),
                    size,
                    format: "?".into(),
                    security: "?".into(),
                    user_data: entry.user_data.clone(),
                };
                let hold = partner.eerp_after == EerpAfter::Processed;
                let now = (self.clock)();
                self.journal
                    .call(move |j| j.add_processing(&file, hold, now))
                    .await?;
            }
        }
        let rows = self.journal.call(|j| j.unfinished_processing()).await?;
        let n = rows.len();
        for row in rows {
            self.spawn(row);
        }
        Ok(n)
    }

    /// The operator's "run it again" for post-processing row `id` (also one that succeeded).
    /// Returns the row as it was queued; the run happens in the background.
    pub async fn rerun(self: &Arc<Self>, id: i64) -> Result<Processing, RerunError> {
        let now = (self.clock)();
        let row = self
            .journal
            .call(move |j| j.rerun_processing(id, now))
            .await?
            .ok_or(RerunError::Unknown(id))?;
        if self
            .partner(&row.file.partner)
            .is_none_or(|p| p.on_receive.is_none())
        {
            return Err(RerunError::NoCommand(row.file.partner_name));
        }
        if row.state == oftp::journal::ProcessingState::Pending {
            self.spawn(row.clone());
        }
        Ok(row)
    }

    async fn run(self: Arc<Self>, row: Processing) {
        let Some(cmd) = self
            .partner(&row.file.partner)
            .and_then(|p| p.on_receive.clone())
        else {
            tracing::warn!(
                id = row.id,
                partner = %row.file.partner_name,
                "post-processing not run: the partner has no [partners.on_receive] any more"
            );
            return;
        };
        let Ok(_slot) = Arc::clone(&self.slots).acquire_owned().await else {
            return;
        };
        let id = row.id;
        let now = (self.clock)();
        let row = match self
            .journal
            .call(move |j| j.start_processing(id, now))
            .await
        {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(id, "post-processing not started: journal: {e}");
                return;
            }
        };
        let file = row.file.clone();
        tracing::info!(partner = %row.file.partner_name, file = %file.path.display(), attempt = row.attempts, "running on_receive");
        let run = run_command(&cmd, &file, row.attempts).await;
        if let Some(problem) = &run.error {
            // Raised before the failure is recorded: a crash between the two runs the command
            // again (and may alert twice) rather than lose the alert.
            self.failed(&row, problem).await;
        }
        let now = (self.clock)();
        let r = run.clone();
        let done = match self
            .journal
            .call(move |j| j.finish_processing(id, &r, now))
            .await
        {
            Ok(Some(done)) => done,
            Ok(None) => return,
            Err(e) => {
                // Still "running" in the journal: it runs again at the next start.
                tracing::error!(id, "post-processing result not recorded: journal: {e}");
                return;
            }
        };
        if run.error.is_none() {
            self.succeeded(&done, &cmd).await;
        }
    }

    async fn failed(&self, row: &Processing, problem: &str) {
        let text = format!(
            "on_receive for {} from {} (post-processing {}, attempt {}) failed: {problem}. The \
             file stays at {}{}. Fix the cause, then run it again (post-processing {}).",
            row.file.key.dsn,
            row.file.partner_name,
            row.id,
            row.attempts,
            row.file.path.display(),
            if row.hold_end_response {
                "; its EERP is held until a run succeeds (no NERP is sent)"
            } else {
                ""
            },
            row.id
        );
        tracing::warn!("{text}");
        let alert = NewAlert {
            kind: AlertKind::PostProcessingFailed,
            partner: Some(row.file.partner_name.clone()),
            file: Some(row.file.path.display().to_string()),
            text,
        };
        let now = (self.clock)();
        if let Err(e) = self.journal.call(move |j| j.raise_alert(&alert, now)).await {
            tracing::error!("cannot raise the post-processing alert: journal: {e}");
        }
    }

    async fn succeeded(&self, row: &Processing, cmd: &OnReceive) {
        if row.hold_end_response {
            self.send_released(row);
        }
        if let Some(dir) = &cmd.processed_dir {
            let Some(name) = row.file.path.file_name() else {
                return;
            };
            let (from, target) = (row.file.path.clone(), dir.join(name));
            let moved = tokio::task::spawn_blocking(move || move_into(&from, &target)).await;
            match moved {
                Ok(Ok(to)) => {
                    let (id, now) = (row.id, (self.clock)());
                    if let Err(e) = self
                        .journal
                        .call(move |j| j.processing_moved(id, &to, now))
                        .await
                    {
                        tracing::error!(
                            id,
                            "moved to processed_dir but not recorded: journal: {e}"
                        );
                    }
                }
                Ok(Err(e)) => tracing::error!(
                    file = %row.file.path.display(),
                    "cannot move the processed file to {}: {e}; it stays where it is",
                    dir.display()
                ),
                Err(e) => tracing::error!("move task failed: {e}"),
            }
        }
    }

    /// Sends a released EERP on a live session with the partner, or gets a call going.
    fn send_released(&self, row: &Processing) {
        let eerp = EndResponse {
            virtual_file_name: row.file.key.dsn.clone(),
            stamp: row.file.key.stamp,
            destination: row.file.key.originator.clone(),
            originator: self.local_sfid.clone(),
            user_data: row.file.user_data.clone(),
            negative: None,
            file_hash: Vec::new(),
            signature: Vec::new(),
            signature_verified: false,
        };
        let handles = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&row.file.partner)
            .cloned()
            .unwrap_or_default();
        for h in handles {
            if h.send_end_response(eerp.clone()).is_ok() {
                return;
            }
        }
        let partner = &row.file.partner_name;
        match self.runtime.get() {
            Some(rt)
                if self
                    .partners
                    .get(&row.file.partner)
                    .is_some_and(|p| p.callable) =>
            {
                if let Err(e) = rt.call_now(partner) {
                    tracing::info!(%partner, "released EERP waits for the next session: {e}");
                }
            }
            _ => tracing::info!(%partner, "released EERP goes out at the next session"),
        }
    }
}

/// Moves `from` into `to` durably, never replacing a file there (a file of that name is kept
/// and this one gets `.1`, `.2`, ... appended), and returns where it went.
pub(crate) fn move_into(from: &Path, to: &Path) -> Result<PathBuf, durable_write::Error> {
    durable_write::create_dir_all(to.parent().unwrap_or(Path::new(".")))?;
    let mut n = 0u32;
    loop {
        let target = if n == 0 {
            to.to_owned()
        } else {
            let mut name = to.as_os_str().to_owned();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        match durable_write::place(from, &target, durable_write::Existing::Keep) {
            Ok(placed) => {
                if let Some(e) = placed.leftover {
                    tracing::warn!("{e}");
                }
                return Ok(target);
            }
            Err(_) if n < 999 && target.exists() && from.exists() => n += 1,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oftp::stamp::FileStamp;

    fn file(path: &Path) -> ReceivedFile {
        let stamp = FileStamp::parse("202605060708090001").unwrap();
        ReceivedFile {
            partner: "O0013ACME".into(),
            partner_name: "acme".into(),
            key: FileKey::new(OdetteId::new("ORIGIN").unwrap(), "INVOICE.42", stamp),
            destination: "US".into(),
            path: path.to_owned(),
            size: 1234,
            format: "V".into(),
            security: "SFIDSEC=03 SFIDCIPH=01 SFIDCOMP=1 SFIDENV=0 SFIDSIGN=Y".into(),
            user_data: "UD".into(),
        }
    }

    fn sh(script: &str, timeout_secs: u64) -> OnReceive {
        OnReceive {
            command: vec!["/bin/sh".into(), "-c".into(), script.into()],
            timeout_secs,
            processed_dir: None,
        }
    }

    #[tokio::test]
    async fn the_command_gets_the_files_metadata_in_the_documented_variables() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(&dir.path().join("in.edi"));
        let names: Vec<&str> = ENV_VARS.iter().map(|(n, _)| *n).collect();
        let script = names
            .iter()
            .map(|n| format!("echo \"{n}=${n}\""))
            .collect::<Vec<_>>()
            .join("; ");
        let run = run_command(&sh(&script, 10), &f, 2).await;
        assert_eq!(run.error, None, "{run:?}");
        let got: Vec<&str> = run.output.lines().collect();
        let want = [
            format!("OFTP_FILE={}", dir.path().join("in.edi").display()),
            "OFTP_DSN=INVOICE.42".into(),
            "OFTP_ORIGINATOR=ORIGIN".into(),
            "OFTP_DESTINATION=US".into(),
            "OFTP_DATE=20260506".into(),
            "OFTP_TIME=0708090001".into(),
            "OFTP_SIZE=1234".into(),
            "OFTP_FORMAT=V".into(),
            "OFTP_SECURITY=SFIDSEC=03 SFIDCIPH=01 SFIDCOMP=1 SFIDENV=0 SFIDSIGN=Y".into(),
            "OFTP_USER_DATA=UD".into(),
            "OFTP_PARTNER=acme".into(),
            "OFTP_PARTNER_SSID=O0013ACME".into(),
            "OFTP_ATTEMPT=2".into(),
        ];
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_non_zero_exit_fails_with_its_status_and_output() {
        let f = file(Path::new("/nonexistent"));
        let run = run_command(&sh("echo out; echo err >&2; exit 7", 10), &f, 1).await;
        assert_eq!(run.exit_code, Some(7));
        assert!(
            run.error.as_deref().unwrap().contains("status 7"),
            "{run:?}"
        );
        assert_eq!(run.output, "out\n\n--- stderr ---\nerr\n");
    }

    #[tokio::test]
    async fn a_command_that_cannot_start_fails_with_what_to_check() {
        let f = file(Path::new("/nonexistent"));
        let cmd = OnReceive {
            command: vec!["/nonexistent/import".into()],
            timeout_secs: 10,
            processed_dir: None,
        };
        let run = run_command(&cmd, &f, 1).await;
        assert_eq!(run.exit_code, None);
        let e = run.error.unwrap();
        assert!(
            e.contains("cannot start /nonexistent/import") && e.contains("executable"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_command_that_hangs_is_killed_with_its_process_group_at_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let f = file(Path::new("/nonexistent"));
        // A child that would outlive the shell, holding the output pipe open.
        let script = format!("sleep 60 & echo $! > {}; sleep 60", pids.display());
        let started = std::time::Instant::now();
        let run = run_command(&sh(&script, 1), &f, 1).await;
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(run.exit_code, None);
        assert!(
            run.error
                .as_deref()
                .unwrap()
                .contains("did not finish within 1 s"),
            "{run:?}"
        );
        let child = std::fs::read_to_string(&pids).unwrap();
        let proc_dir = PathBuf::from(format!("/proc/{}", child.trim()));
        // Killed (at most a zombie until init reaps it).
        for _ in 0..50 {
            let state = std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
            if state.is_empty() || state.contains(") Z ") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the command's background child {} still runs", child.trim());
    }

    #[tokio::test]
    async fn output_is_kept_up_to_the_limit_and_the_rest_is_drained() {
        let f = file(Path::new("/nonexistent"));
        // 1 MiB of output: more than a pipe holds, so the command blocks unless it is read.
        let run = run_command(&sh("head -c 1048576 /dev/zero | tr '\\0' x", 20), &f, 1).await;
        assert_eq!(run.error, None, "{}", run.output.len());
        assert!(run.output.starts_with(&"x".repeat(OUTPUT_LIMIT)));
        assert!(
            run.output.ends_with("[stdout cut]"),
            "{}",
            &run.output[OUTPUT_LIMIT..]
        );
        assert_eq!(run.output.len(), OUTPUT_LIMIT + "\n[stdout cut]".len());
    }

    #[test]
    fn configuration_errors_say_what_to_write() {
        let mut c = sh("true", 1);
        assert_eq!(check(Some(&c), EerpAfter::Processed), Ok(()));
        c.timeout_secs = 0;
        assert_eq!(
            check(Some(&c), EerpAfter::Stored),
            Err(PostProcessConfigError::NoTimeout)
        );
        c.command.clear();
        let e = check(Some(&c), EerpAfter::Stored).unwrap_err();
        assert!(e.to_string().contains("command = ["), "{e}");
        assert_eq!(
            check(None, EerpAfter::Processed),
            Err(PostProcessConfigError::NothingToWaitFor)
        );
        assert_eq!(check(None, EerpAfter::Stored), Ok(()));
    }

    #[test]
    fn a_moved_file_never_replaces_one_already_there() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("done/a"));
        std::fs::create_dir_all(b.parent().unwrap()).unwrap();
        std::fs::write(&b, "old").unwrap();
        std::fs::write(&a, "new").unwrap();
        let to = move_into(&a, &b).unwrap();
        assert_eq!(to, dir.path().join("done/a.1"));
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "old");
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "new");
        assert!(!a.exists());
    }
}
