//! [`Gateway`]: the running gateway of `oftp serve`. It takes files over from the partners'
//! outboxes into the journal's queue, calls each partner with an `address` on its schedule, on
//! new files and on demand, and settles every queued file by what its call reported.
//!
//! - **Intake**: one [`outbox::watch`](crate::outbox::watch) over every outbox; each file taken
//!   over is enqueued (`Journal::enqueue`, idempotent on partner + source path) before anything
//!   else happens to it. At start, the files a dead daemon renamed but never recorded
//!   ([`Outbox::queued`]) are enqueued again, and the rows a killed daemon had in a call go back
//!   to queued (`Journal::requeue_in_transfer`); the client's journal keeps their wire
//!   identity, so the partner restarts them or confirms it has them, and none is sent twice.
//! - **Call loops**: one task per partner with an `address`. It sleeps until the earliest of
//!   the next scheduled call ([`Schedule::next_call`] from the last call recorded in the
//!   journal, so a restart keeps the rhythm) and the earliest due retry of its files; a new
//!   file (`call_on_new_file`), [`GatewayRuntime::call_now`] and
//!   [`GatewayRuntime::files_due`] wake it at once. A call waits for a session slot
//!   (`max_sessions`, counting the partner's calls to us), claims the due files, runs the
//!   [`Dialer`], and settles each file with [`settle`](crate::settle::settle). After
//!   `alert_after_failed_calls` calls in a row that never got to the files, one
//!   `partner_unreachable` alert is raised (not one per call).
//! - **Shutdown**: a call in progress is interrupted (ESID at the next step; the partner keeps
//!   what is durable) and its unsettled files go back to queued, due at once.
//! - **Reload**: [`Gateway::reload`] replaces the partners: loops of unchanged partners go on,
//!   those of changed or removed partners stop after their current call, new ones start; the
//!   outbox watcher is restarted with the new list.
//!
//! Every time comes from the [`Clock`] the gateway is given, so tests control it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use oftp::handler::{Direction, Disconnected, SessionInfo, TransferInfo};
use oftp::journal::{
    AlertKind, CallRecord, FileKey, Journal, JournalError, NewAlert, QueueChange, QueueState,
    QueuedFile, QueuedSend,
};
use oftp::oftp_proto::codec::FileFormat;
use oftp::{ClientReport, ConnectionId, ConnectionInfo, OutgoingFile, SessionHandle};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::PartnerGateway;
use crate::dialer::Dialer;
use crate::handler::GatewayHandler;
use crate::ops::{CallNowError, CallSummary, GatewayEvent, GatewayRuntime, PartnerState};
use crate::outbox::{Outbox, OutboxError, OutboxEvent, TakenOver, WatchSettings, watch};
use crate::retry::RetryPolicy;
use crate::schedule::Schedule;
use crate::settle::{Attempt, Settlement, settle};

/// Files one call claims at most; the loop calls again at once while more are due.
const CLAIM_LIMIT: u32 = 1000;
/// Longest sleep of a call loop: a wall clock that jumps is noticed within this.
const MAX_SLEEP: Duration = Duration::from_secs(300);
/// How long an interrupted call may take to end at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pause after a journal error in a call loop, so a broken journal is not hammered.
const ERROR_PAUSE: Duration = Duration::from_secs(5);
/// Live events kept for a slow subscriber.
const EVENT_BUFFER: usize = 1024;

/// The time the gateway works with.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A partner as the gateway runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerPlan {
    /// The configured name.
    pub name: String,
    /// Where we call it; `None` = it calls us (no call loop).
    pub address: Option<String>,
    /// Its outbox (`outbox`, default `<data_dir>/outbox/<name>`).
    pub outbox: PathBuf,
    /// Its gateway keys.
    pub gateway: PartnerGateway,
}

/// Why the gateway cannot start or reload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// An outbox cannot be used.
    #[error("partner {partner:?}: {error}")]
    Outbox {
        /// The partner.
        partner: String,
        /// What is wrong with its outbox.
        error: OutboxError,
    },
    /// A partner's gateway keys cannot be used (the configuration check should have said).
    #[error("partner {partner:?}: {error}")]
    Config {
        /// The partner.
        partner: String,
        /// What is wrong.
        error: crate::config::GatewayConfigError,
    },
}

/// The running gateway. Cheap to clone; [`Gateway::shutdown`] stops it.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

struct Inner {
    journal: Arc<dyn Journal>,
    clock: Arc<dyn Clock>,
    dialer: RwLock<Arc<dyn Dialer>>,
    shared: Arc<Shared>,
    partners: RwLock<Vec<Arc<Loop>>>,
    shutdown: CancellationToken,
    watcher: Mutex<Option<CancellationToken>>,
    outbox_events: mpsc::Sender<OutboxEvent>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// What the handler of every session reaches: session counts and live events.
#[derive(Debug)]
struct Shared {
    events: broadcast::Sender<GatewayEvent>,
    sessions: Mutex<Sessions>,
    freed: Notify,
}

#[derive(Debug, Default)]
struct Sessions {
    by_partner: HashMap<String, u32>,
    /// Sessions partners opened with us, by connection.
    incoming: HashMap<ConnectionId, String>,
}

impl Shared {
    fn publish(&self, event: GatewayEvent) {
        // No subscriber is no error.
        let _ = self.events.send(event);
    }

    fn count(&self, partner: &str) -> u32 {
        let s = self.sessions.lock().expect("sessions lock");
        s.by_partner.get(partner).copied().unwrap_or(0)
    }

    /// Takes a session slot of `partner` once fewer than `max` sessions run.
    async fn acquire(&self, partner: &str, max: u32) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut s = self.sessions.lock().expect("sessions lock");
                let n = s.by_partner.entry(partner.to_owned()).or_default();
                if *n < max {
                    *n += 1;
                    return;
                }
            }
            freed.await;
        }
    }

    fn release(&self, partner: &str) {
        let mut s = self.sessions.lock().expect("sessions lock");
        if let Some(n) = s.by_partner.get_mut(partner) {
            *n = n.saturating_sub(1);
        }
        drop(s);
        self.freed.notify_waiters();
    }
}

/// The gateway's part of [`GatewayHandler`]: for the server's sessions it counts each
/// partner's sessions with us; for a call it also follows its files.
#[derive(Debug, Clone)]
pub struct Observer {
    shared: Arc<Shared>,
    call: Option<Arc<CallContext>>,
}

/// What a call's handler learns about the call.
#[derive(Debug)]
struct CallContext {
    partner: String,
    /// Queue row of each file of the call, by its local path.
    rows: HashMap<PathBuf, i64>,
    /// The wire identity each file was offered under.
    keys: Mutex<HashMap<PathBuf, FileKey>>,
    /// The session, once it started: to end it at shutdown.
    handle: Mutex<Option<SessionHandle>>,
}

impl Observer {
    pub(crate) fn session_started(&self, session: &SessionInfo) {
        match &self.call {
            Some(call) => {
                *call.handle.lock().expect("call lock") = Some(session.handle.clone());
            }
            None => {
                let mut s = self.shared.sessions.lock().expect("sessions lock");
                *s.by_partner
                    .entry(session.partner_name.clone())
                    .or_default() += 1;
                s.incoming.insert(session.id, session.partner_name.clone());
            }
        }
        self.shared.publish(GatewayEvent::SessionStarted {
            partner: session.partner_name.clone(),
            outgoing_call: self.call.is_some(),
        });
    }

    pub(crate) fn start_transfer(&self, _session: &SessionInfo, transfer: &TransferInfo) {
        if let (Some(call), Direction::Outgoing) = (&self.call, &transfer.direction) {
            let key = FileKey::new(
                &transfer.originator,
                &transfer.virtual_file_name,
                transfer.stamp,
            );
            call.keys
                .lock()
                .expect("call lock")
                .insert(transfer.local_file.clone(), key);
        }
    }

    pub(crate) fn progress(&self, session: &SessionInfo, transfer: &TransferInfo, bytes: u64) {
        let outgoing = matches!(transfer.direction, Direction::Outgoing);
        let transfer_id = self
            .call
            .as_ref()
            .filter(|_| outgoing)
            .and_then(|c| c.rows.get(&transfer.local_file).copied());
        self.shared.publish(GatewayEvent::Progress {
            partner: session.partner_name.clone(),
            outgoing,
            virtual_file_name: transfer.virtual_file_name.clone(),
            bytes,
            transfer_id,
        });
    }

    pub(crate) fn disconnected(&self, info: &ConnectionInfo, why: &Disconnected) {
        let partner = match &self.call {
            // Only a call that logged in had a session to end.
            Some(call) => call
                .handle
                .lock()
                .expect("call lock")
                .is_some()
                .then(|| call.partner.clone()),
            None => {
                let mut s = self.shared.sessions.lock().expect("sessions lock");
                let p = s.incoming.remove(&info.id);
                if let Some(n) = p.as_ref().and_then(|p| s.by_partner.get_mut(p)) {
                    *n = n.saturating_sub(1);
                }
                drop(s);
                self.shared.freed.notify_waiters();
                p
            }
        };
        if let Some(partner) = partner {
            self.shared.publish(GatewayEvent::SessionEnded {
                partner,
                text: why.description.clone(),
            });
        }
    }
}

/// One partner's call loop and its state.
struct Loop {
    plan: PartnerPlan,
    schedule: Option<Schedule>,
    policy: RetryPolicy,
    wake: Notify,
    call_now: AtomicBool,
    state: Mutex<LoopState>,
    /// Stops the loop between calls (reload); shutdown also interrupts a call.
    retire: CancellationToken,
}

#[derive(Default)]
struct LoopState {
    last_call: Option<CallSummary>,
    next_call: Option<DateTime<Utc>>,
    /// Calls in a row that never got to the files.
    failed_calls: u32,
    /// The earliest retry this loop set (partners without `call_on_new_file`, whose new files
    /// wait for the schedule).
    retry_due: Option<DateTime<Utc>>,
}

impl Loop {
    fn new(plan: PartnerPlan) -> Result<Self, GatewayError> {
        let config = |error| GatewayError::Config {
            partner: plan.name.clone(),
            error,
        };
        let schedule = plan
            .gateway
            .schedule
            .as_ref()
            .map(Schedule::try_from)
            .transpose()
            .map_err(|e| config(e.into()))?;
        let policy = RetryPolicy::try_from(&plan.gateway.retry).map_err(|e| config(e.into()))?;
        Ok(Loop {
            plan,
            schedule,
            policy,
            wake: Notify::new(),
            call_now: AtomicBool::new(false),
            state: Mutex::new(LoopState::default()),
            retire: CancellationToken::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LoopState> {
        self.state.lock().expect("loop state lock")
    }
}

/// The queue row of a file taken over from an outbox: sent as `oftp send FILE` would send it
/// (format U, the file name in upper case as virtual file name).
fn queued_send(t: &TakenOver) -> QueuedSend {
    let file = OutgoingFile::new(&t.path);
    QueuedSend {
        partner: t.partner.to_string(),
        source_path: t.path.clone(),
        virtual_file_name: file.virtual_file_name,
        destination: file.destination,
        originator: file.originator,
        format: FileFormat::Unstructured,
        max_record_len: 0,
        user_data: String::new(),
        description: String::new(),
    }
}

/// The file a queue row sends.
fn outgoing(row: &QueuedFile) -> OutgoingFile {
    let s = &row.send;
    let mut f = OutgoingFile::new(&s.source_path)
        .virtual_name(s.virtual_file_name.clone())
        .format(s.format, s.max_record_len);
    f.destination = s.destination.clone();
    f.originator = s.originator.clone();
    f.user_data = s.user_data.clone();
    f.description = s.description.clone();
    f
}

impl Gateway {
    /// Starts the gateway: rows a killed daemon had in a call go back to queued, files taken
    /// over but not recorded are enqueued, the outboxes are watched, and every partner with an
    /// address gets its call loop.
    pub async fn start(
        journal: Arc<dyn Journal>,
        clock: Arc<dyn Clock>,
        dialer: Arc<dyn Dialer>,
        partners: Vec<PartnerPlan>,
        watch_settings: WatchSettings,
    ) -> Result<Gateway, GatewayError> {
        let now = clock.now();
        let requeued = journal
            .call(move |j| {
                j.requeue_in_transfer(now, "the daemon restarted; the call that had it is gone")
            })
            .await?;
        if !requeued.is_empty() {
            tracing::info!(
                count = requeued.len(),
                "files a stopped daemon had in a call are queued again"
            );
        }
        let (tx, rx) = mpsc::channel(256);
        let inner = Arc::new(Inner {
            journal,
            clock,
            dialer: RwLock::new(dialer),
            shared: Arc::new(Shared {
                events: broadcast::channel(EVENT_BUFFER).0,
                sessions: Mutex::new(Sessions::default()),
                freed: Notify::new(),
            }),
            partners: RwLock::new(Vec::new()),
            shutdown: CancellationToken::new(),
            watcher: Mutex::new(None),
            outbox_events: tx,
            tasks: Mutex::new(Vec::new()),
        });
        let gateway = Gateway { inner };
        let intake = tokio::spawn(intake(gateway.inner.clone(), rx));
        gateway.inner.tasks.lock().expect("tasks lock").push(intake);
        gateway.reload(partners, watch_settings).await?;
        Ok(gateway)
    }

    /// What [`GatewayHandler::with_runtime`] needs for the server's sessions.
    pub fn observer(&self) -> Observer {
        Observer {
            shared: self.inner.shared.clone(),
            call: None,
        }
    }

    /// Uses `dialer` for the calls that start from now on (a reloaded configuration).
    pub fn set_dialer(&self, dialer: Arc<dyn Dialer>) {
        *self.inner.dialer.write().expect("dialer lock") = dialer;
    }

    /// Replaces the partners: unchanged ones keep their loops; changed and removed ones stop
    /// after their current call (no session is dropped); new and changed ones start. The
    /// outbox watcher restarts with the new outboxes, whose files not yet recorded are
    /// enqueued first. On an error nothing was changed.
    pub async fn reload(
        &self,
        partners: Vec<PartnerPlan>,
        watch_settings: WatchSettings,
    ) -> Result<(), GatewayError> {
        let inner = &self.inner;
        let mut outboxes = Vec::new();
        let mut loops = Vec::new();
        {
            let old = inner.partners.read().expect("partners lock");
            for plan in partners {
                let outbox = open_outbox(&plan)?;
                outboxes.push(outbox);
                match old.iter().find(|l| l.plan == plan) {
                    Some(same) => loops.push((same.clone(), false)),
                    None => loops.push((Arc::new(Loop::new(plan)?), true)),
                }
            }
        }
        // Files renamed into a queue but not recorded when a daemon died.
        for outbox in &outboxes {
            let queued = outbox.queued().map_err(|error| GatewayError::Outbox {
                partner: outbox.partner().to_string(),
                error,
            })?;
            let now = inner.clock.now();
            inner
                .journal
                .call(move |j| {
                    for t in &queued {
                        j.enqueue(&queued_send(t), now)?;
                    }
                    Ok(())
                })
                .await?;
        }
        let new: Vec<Arc<Loop>> = loops.iter().map(|(l, _)| l.clone()).collect();
        let old = std::mem::replace(&mut *inner.partners.write().expect("partners lock"), new);
        for gone in old
            .iter()
            .filter(|o| !loops.iter().any(|(l, _)| Arc::ptr_eq(l, o)))
        {
            gone.retire.cancel();
        }
        for (l, fresh) in loops {
            if fresh && l.plan.address.is_some() {
                let task = tokio::spawn(call_loop(inner.clone(), l));
                inner.tasks.lock().expect("tasks lock").push(task);
            }
        }
        let token = inner.shutdown.child_token();
        if let Some(previous) = inner
            .watcher
            .lock()
            .expect("watcher lock")
            .replace(token.clone())
        {
            previous.cancel();
        }
        let task = tokio::spawn(watch(
            outboxes,
            watch_settings,
            inner.outbox_events.clone(),
            token,
        ));
        inner.tasks.lock().expect("tasks lock").push(task);
        Ok(())
    }

    /// Stops the gateway: calls in progress are interrupted and their unsettled files queued
    /// again; returns when every task has ended.
    pub async fn shutdown(self) {
        self.inner.shutdown.cancel();
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().expect("tasks lock"));
        for t in tasks {
            let _ = t.await;
        }
        // A call that did not end within the grace left its rows in transfer.
        let now = self.inner.clock.now();
        if let Err(e) = self
            .inner
            .journal
            .call(move |j| j.requeue_in_transfer(now, "the daemon stopped during the call"))
            .await
        {
            tracing::error!("cannot queue the files of interrupted calls again: {e}");
        }
    }

    fn find(&self, partner: &str) -> Option<Arc<Loop>> {
        self.inner
            .partners
            .read()
            .expect("partners lock")
            .iter()
            .find(|l| l.plan.name == partner)
            .cloned()
    }
}

fn open_outbox(plan: &PartnerPlan) -> Result<Outbox, GatewayError> {
    let err = |error| GatewayError::Outbox {
        partner: plan.name.clone(),
        error,
    };
    std::fs::create_dir_all(&plan.outbox).map_err(|e| {
        err(OutboxError::Io {
            action: "cannot create outbox",
            path: plan.outbox.clone(),
            source: e,
        })
    })?;
    Outbox::new(&plan.name, &plan.outbox).map_err(err)
}

impl GatewayRuntime for Gateway {
    fn partners(&self) -> Vec<PartnerState> {
        self.inner
            .partners
            .read()
            .expect("partners lock")
            .iter()
            .map(|l| {
                let s = l.state();
                PartnerState {
                    name: l.plan.name.clone(),
                    address: l.plan.address.clone(),
                    last_call: s.last_call.clone(),
                    next_call: s.next_call,
                    sessions: self.inner.shared.count(&l.plan.name),
                    max_sessions: l.plan.gateway.max_sessions,
                }
            })
            .collect()
    }

    fn call_now(&self, partner: &str) -> Result<(), CallNowError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(CallNowError::ShuttingDown);
        }
        let l = self
            .find(partner)
            .ok_or_else(|| CallNowError::UnknownPartner(partner.to_owned()))?;
        if l.plan.address.is_none() {
            return Err(CallNowError::NoAddress(partner.to_owned()));
        }
        l.call_now.store(true, Ordering::SeqCst);
        l.wake.notify_one();
        Ok(())
    }

    fn files_due(&self, partner: &str) {
        if let Some(l) = self.find(partner) {
            if !l.plan.gateway.call_on_new_file {
                l.state().retry_due = Some(self.inner.clock.now());
            }
            l.wake.notify_one();
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<GatewayEvent> {
        self.inner.shared.events.subscribe()
    }
}

/// Enqueues every file taken over, then wakes its partner's loop.
async fn intake(inner: Arc<Inner>, mut events: mpsc::Receiver<OutboxEvent>) {
    while let Some(event) = tokio::select! {
        e = events.recv() => e,
        () = inner.shutdown.cancelled() => None,
    } {
        match event {
            OutboxEvent::TakenOver(t) => {
                let send = queued_send(&t);
                let now = inner.clock.now();
                match inner.journal.call(move |j| j.enqueue(&send, now)).await {
                    Ok(id) => {
                        tracing::info!(partner = %t.partner, file = %t.path.display(), id, "queued");
                        inner.shared.publish(GatewayEvent::TransferChanged {
                            transfer_id: id,
                            partner: t.partner.to_string(),
                            state: QueueState::Queued.as_str().to_owned(),
                        });
                        let l = inner
                            .partners
                            .read()
                            .expect("partners lock")
                            .iter()
                            .find(|l| *l.plan.name == *t.partner)
                            .cloned();
                        if let Some(l) = l.filter(|l| l.plan.gateway.call_on_new_file) {
                            l.wake.notify_one();
                        }
                    }
                    // The file stays in the queue folder; the next start enqueues it.
                    Err(e) => tracing::error!(
                        partner = %t.partner,
                        file = %t.path.display(),
                        "cannot record a file taken over from the outbox (it is kept and \
                         queued at the next start): {e}"
                    ),
                }
            }
            OutboxEvent::Problem { partner, error } => {
                tracing::warn!(%partner, "outbox: {error}");
            }
        }
    }
}

/// One partner's loop: sleep until something is due, call, repeat.
async fn call_loop(inner: Arc<Inner>, l: Arc<Loop>) {
    let name = l.plan.name.clone();
    let n = name.clone();
    match inner.journal.call(move |j| j.last_call(&n)).await {
        Ok(last) => {
            l.state().last_call = last.map(|c| CallSummary {
                started_at: c.started_at,
                ended_at: Some(c.ended_at),
                ok: c.ok,
                text: c.text,
            });
        }
        Err(e) => tracing::error!(partner = %name, "cannot read the last call: {e}"),
    }
    if !l.plan.gateway.call_on_new_file {
        let n = name.clone();
        l.state().retry_due = inner
            .journal
            .call(move |j| j.next_due(&n))
            .await
            .ok()
            .flatten();
    }
    // A partner never called: its first scheduled time, fixed once (computed again from
    // `now` it would move on as `now` reaches it).
    let mut first_call: Option<Option<DateTime<Utc>>> = None;
    loop {
        let now = inner.clock.now();
        let last = l.state().last_call.as_ref().map(|c| c.started_at);
        let scheduled = match (&l.schedule, last) {
            (None, _) => None,
            (Some(s), Some(_)) => s.next_call(last, now),
            (Some(s), None) => *first_call.get_or_insert_with(|| s.next_call(None, now)),
        };
        let due = if l.plan.gateway.call_on_new_file {
            let n = name.clone();
            match inner.journal.call(move |j| j.next_due(&n)).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::error!(partner = %name, "cannot read the queue: {e}");
                    Some(now + chrono::TimeDelta::from_std(ERROR_PAUSE).unwrap_or_default())
                }
            }
        } else {
            l.state().retry_due
        };
        let next = scheduled.into_iter().chain(due).min();
        l.state().next_call = next;
        let now = inner.clock.now();
        let asked = l.call_now.swap(false, Ordering::SeqCst);
        if !asked && next.is_none_or(|t| t > now) {
            let wait = next
                .and_then(|t| (t - now).to_std().ok())
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = l.wake.notified() => {}
                () = l.retire.cancelled() => return,
                () = inner.shutdown.cancelled() => return,
            }
            continue;
        }
        tokio::select! {
            () = inner.shared.acquire(&name, l.plan.gateway.max_sessions) => {}
            () = l.retire.cancelled() => return,
            () = inner.shutdown.cancelled() => return,
        }
        let result = call(&inner, &l).await;
        inner.shared.release(&name);
        if let Err(e) = result {
            tracing::error!(partner = %name, "call: {e}");
            tokio::select! {
                () = tokio::time::sleep(ERROR_PAUSE) => {}
                () = inner.shutdown.cancelled() => return,
            }
        }
    }
}

/// One call: claim, dial, settle, record.
async fn call(inner: &Arc<Inner>, l: &Arc<Loop>) -> Result<(), JournalError> {
    let name = l.plan.name.clone();
    let started_at = inner.clock.now();
    let n = name.clone();
    let rows = inner
        .journal
        .call(move |j| j.claim_due(&n, started_at, CLAIM_LIMIT))
        .await?;
    l.state().retry_due = None;
    for r in &rows {
        inner
            .shared
            .publish(changed(r.id, &name, QueueState::InTransfer));
    }
    let ctx = Arc::new(CallContext {
        partner: name.clone(),
        rows: rows
            .iter()
            .map(|r| (r.send.source_path.clone(), r.id))
            .collect(),
        keys: Mutex::new(HashMap::new()),
        handle: Mutex::new(None),
    });
    let handler = GatewayHandler::new().with_runtime(Observer {
        shared: inner.shared.clone(),
        call: Some(ctx.clone()),
    });
    let dialer = inner.dialer.read().expect("dialer lock").clone();
    tracing::info!(partner = %name, files = rows.len(), "calling");
    let files = rows.iter().map(outgoing).collect();
    let dialing = dialer.dial(&name, files, handler);
    tokio::pin!(dialing);
    let (result, stopped) = tokio::select! {
        r = &mut dialing => (Some(r), false),
        () = inner.shutdown.cancelled() => {
            if let Some(h) = ctx.handle.lock().expect("call lock").as_ref() {
                h.interrupt();
                let _ = h.logoff();
            }
            (tokio::time::timeout(SHUTDOWN_GRACE, &mut dialing).await.ok(), true)
        }
    };
    let Some(result) = result else {
        // Still running after the grace: `shutdown` queues its rows again.
        return Ok(());
    };
    let now = inner.clock.now();
    let mut rng = rng();
    let keys = std::mem::take(&mut *ctx.keys.lock().expect("call lock"));
    let mut settlements: Vec<(i64, Settlement)> = Vec::new();
    let (ok, text) = match &result {
        Ok(report) => {
            for (file, outcome) in &report.files {
                let Some(row) = rows.iter().find(|r| r.send.source_path == file.path) else {
                    continue;
                };
                let attempt = Attempt::File {
                    outcome,
                    ended: &report.ended,
                };
                let mut s = settle(attempt, row, &l.policy, now, &mut rng);
                if let Some(k) = keys.get(&file.path) {
                    s.change.key = Some(k.clone());
                }
                settlements.push((row.id, s));
            }
            (true, summary(report))
        }
        Err(e) => {
            for row in &rows {
                settlements.push((
                    row.id,
                    settle(Attempt::CallFailed(e), row, &l.policy, now, &mut rng),
                ));
            }
            (false, e.to_string())
        }
    };
    // Claimed rows the report does not name (it names every file asked for) go back.
    for row in &rows {
        if !settlements.iter().any(|(id, _)| *id == row.id) {
            settlements.push((
                row.id,
                Settlement {
                    change: QueueChange::to(QueueState::Queued, now)
                        .note("the call did not report this file"),
                    alert: None,
                },
            ));
        }
    }
    if stopped {
        // Shutdown is no failure of the file: due again at once.
        for (_, s) in &mut settlements {
            if s.change.to == QueueState::Queued || s.change.to == QueueState::Failed {
                s.change = QueueChange::to(QueueState::Queued, now)
                    .note("the daemon stopped during the call");
                s.alert = None;
            }
        }
    }
    let earlier = match &result {
        Ok(report) => earlier_settlements(inner, l, report, now).await,
        Err(_) => Vec::new(),
    };
    settlements.extend(earlier);
    let mut retry_due: Option<DateTime<Utc>> = None;
    for (id, s) in settlements {
        if s.change.to == QueueState::Queued {
            let due = s.change.next_attempt_at.unwrap_or(s.change.at);
            retry_due = Some(retry_due.map_or(due, |d| d.min(due)));
        }
        apply(inner, &name, id, s).await?;
    }
    let alert_after = l.plan.gateway.alert_after_failed_calls;
    let failed_calls = {
        let mut st = l.state();
        st.failed_calls = if ok { 0 } else { st.failed_calls + 1 };
        st.retry_due = retry_due;
        st.failed_calls
    };
    if !ok && !stopped && alert_after > 0 && failed_calls == alert_after {
        let alert = NewAlert {
            kind: AlertKind::PartnerUnreachable,
            partner: Some(name.clone()),
            file: None,
            text: format!(
                "partner {name:?} could not be reached in {failed_calls} calls in a row (last: \
                 {text}); check its address, network and whether its server runs"
            ),
        };
        raise(inner, alert, now).await?;
    }
    let ended_at = inner.clock.now();
    let record = CallRecord {
        partner: name.clone(),
        started_at,
        ended_at,
        ok,
        text: text.clone(),
    };
    inner.journal.call(move |j| j.record_call(&record)).await?;
    tracing::info!(partner = %name, ok, "call ended: {text}");
    l.state().last_call = Some(CallSummary {
        started_at,
        ended_at: Some(ended_at),
        ok,
        text,
    });
    Ok(())
}

/// End responses the call brought for files of earlier calls: the rows still waiting for them
/// (state sent) are settled.
async fn earlier_settlements(
    inner: &Arc<Inner>,
    l: &Arc<Loop>,
    report: &ClientReport,
    now: DateTime<Utc>,
) -> Vec<(i64, Settlement)> {
    let mut out = Vec::new();
    for e in &report.earlier {
        let r = &e.response;
        let key = FileKey::new(&r.destination, &r.virtual_file_name, r.stamp);
        let row = match inner.journal.call(move |j| j.transfer_by_key(&key)).await {
            Ok(Some(row)) if row.state == QueueState::Sent => row,
            Ok(_) => continue,
            Err(e) => {
                tracing::error!("cannot match an end response to the queue: {e}");
                continue;
            }
        };
        let attempt = Attempt::EndResponse(r.negative.as_ref());
        out.push((row.id, settle(attempt, &row, &l.policy, now, &mut rng())));
    }
    out
}

async fn apply(
    inner: &Arc<Inner>,
    partner: &str,
    id: i64,
    s: Settlement,
) -> Result<(), JournalError> {
    let change = s.change.clone();
    match inner.journal.call(move |j| j.transition(id, &change)).await {
        Ok(_) => {}
        // Settled already (an end response recorded by the journal itself): nothing to do.
        Err(JournalError::TransitionRefused { refused, .. }) => {
            tracing::debug!(id, "queue row not moved: {refused}");
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    inner.shared.publish(changed(id, partner, s.change.to));
    if let Some(alert) = s.alert {
        raise(inner, alert, s.change.at).await?;
    }
    Ok(())
}

async fn raise(inner: &Arc<Inner>, alert: NewAlert, at: DateTime<Utc>) -> Result<(), JournalError> {
    tracing::warn!(kind = alert.kind.as_str(), "alert: {}", alert.text);
    let alert_id = inner
        .journal
        .call(move |j| j.raise_alert(&alert, at))
        .await?;
    inner.shared.publish(GatewayEvent::AlertRaised { alert_id });
    Ok(())
}

/// A random number generator a task may hold across an await.
fn rng() -> rand::rngs::StdRng {
    use rand::SeedableRng;
    rand::rngs::StdRng::from_rng(&mut rand::rng())
}

fn changed(id: i64, partner: &str, state: QueueState) -> GatewayEvent {
    GatewayEvent::TransferChanged {
        transfer_id: id,
        partner: partner.to_owned(),
        state: state.as_str().to_owned(),
    }
}

/// "2 delivered, 1 sent, 1 failed, 3 received" (only the counts that are not 0).
fn summary(report: &ClientReport) -> String {
    use oftp::FileOutcome as O;
    let count = |f: fn(&O) -> bool| report.files.iter().filter(|(_, o)| f(o)).count();
    let parts = [
        (count(|o| matches!(o, O::Delivered)), "delivered"),
        (
            count(|o| matches!(o, O::AwaitingEndResponse | O::EndResponseRejected { .. })),
            "sent",
        ),
        (
            count(|o| {
                !matches!(
                    o,
                    O::Delivered | O::AwaitingEndResponse | O::EndResponseRejected { .. }
                )
            }),
            "not sent or refused",
        ),
        (report.received.len(), "received"),
    ];
    let text: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if text.is_empty() {
        "nothing to send or receive".to_owned()
    } else {
        text.join(", ")
    }
}
