//! [`Gateway`]: the running gateway of `oftp serve`. It takes files over from the partners'
//! outboxes into the journal's queue, calls each partner with an `address` on its schedule, on
//! new files and on demand, and settles every queued file by what its call reported.
//!
//! - **Intake**: one [`outbox::watch`](crate::outbox::watch) over the outboxes of the partners
//!   we call (those with an `address`; the server hands the others their outbox when they
//!   call, until it offers them queued files); each file taken
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

mod call;
mod observer;
mod responder;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use oftp::OutgoingFile;
use oftp::journal::{Journal, JournalError, QueueState, QueuedFile, QueuedSend};
use oftp::oftp_proto::codec::FileFormat;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::PartnerGateway;
use crate::dialer::Dialer;
use crate::ops::{CallNowError, GatewayEvent, GatewayRuntime, PartnerState};
use crate::outbox::{Outbox, OutboxError, OutboxEvent, TakenOver, WatchSettings, watch};
use call::{Loop, call_loop};
pub use observer::Observer;
use observer::Shared;

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
    f.queue_row = Some(row.id);
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
            dialer: RwLock::new(dialer.clone()),
            shared: Arc::new(Shared::new(EVENT_BUFFER)),
            partners: RwLock::new(Vec::new()),
            shutdown: CancellationToken::new(),
            watcher: Mutex::new(None),
            outbox_events: tx,
            tasks: Mutex::new(Vec::new()),
        });
        let gateway = Gateway { inner };
        let intake = tokio::spawn(intake(gateway.inner.clone(), rx));
        gateway.inner.tasks.lock().expect("tasks lock").push(intake);
        gateway.reload(partners, dialer, watch_settings).await?;
        Ok(gateway)
    }

    /// What [`GatewayHandler::with_runtime`] needs for the server's sessions.
    pub fn observer(&self) -> Observer {
        Observer {
            shared: self.inner.shared.clone(),
            call: None,
        }
    }

    /// Replaces the partners and the dialer (a reloaded configuration): unchanged partners
    /// keep their loops; changed and removed ones stop after their current call (no session is
    /// dropped); new and changed ones start. Calls that start from now on use `dialer`; the
    /// swap and the retirement of the old loops are one step, so no retired loop starts a call
    /// with a dialer that no longer knows its partner. The outbox watcher restarts with the
    /// new outboxes, whose files not yet recorded are enqueued first. On an error nothing was
    /// changed.
    pub async fn reload(
        &self,
        partners: Vec<PartnerPlan>,
        dialer: Arc<dyn Dialer>,
        watch_settings: WatchSettings,
    ) -> Result<(), GatewayError> {
        let inner = &self.inner;
        let mut outboxes = Vec::new();
        let mut loops = Vec::new();
        {
            let old = inner.partners.read().expect("partners lock");
            for plan in partners {
                // Every outbox: files of a partner we call go out in our calls, those of a
                // partner that calls us when it does (the server claims them through
                // `outbound_queue`).
                outboxes.push(open_outbox(&plan)?);
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
        {
            // Calls read the dialer and check `retire` under the read lock of the partners.
            let mut current = inner.partners.write().expect("partners lock");
            *inner.dialer.write().expect("dialer lock") = dialer;
            let old = std::mem::replace(
                &mut *current,
                loops.iter().map(|(l, _)| l.clone()).collect(),
            );
            for gone in old
                .iter()
                .filter(|o| !loops.iter().any(|(l, _)| Arc::ptr_eq(l, o)))
            {
                gone.retire.cancel();
            }
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

    /// The queue the server offers calling partners from (`Server::outbound_queue`): their due
    /// queued files instead of their outbox, settled like the files of our calls.
    pub fn outbound_queue(&self) -> Arc<dyn oftp::outbound::OutboundQueue> {
        Arc::new(responder::ResponderQueue {
            inner: self.inner.clone(),
        })
    }

    fn find(&self, partner: &str) -> Option<Arc<Loop>> {
        self.inner.find(partner)
    }
}

impl Inner {
    /// The loop (plan, policy, state) of the configured partner `name`.
    fn find(&self, name: &str) -> Option<Arc<Loop>> {
        self.partners
            .read()
            .expect("partners lock")
            .iter()
            .find(|l| l.plan.name == name)
            .cloned()
    }
}

/// The live event of a queued file's change of state.
fn changed(id: i64, partner: &str, state: QueueState) -> GatewayEvent {
    GatewayEvent::TransferChanged {
        transfer_id: id,
        partner: partner.to_owned(),
        state: state.as_str().to_owned(),
    }
}

/// The live events of rows just claimed for a session: each is in transfer now, and one
/// tried before is retried.
fn claimed(shared: &Shared, partner: &str, rows: &[QueuedFile]) {
    for row in rows {
        shared.publish(changed(row.id, partner, row.state));
        if row.attempts > 1 {
            shared.publish(GatewayEvent::TransferRetried {
                transfer_id: row.id,
                partner: partner.to_owned(),
                attempt: row.attempts,
            });
        }
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
                        inner
                            .shared
                            .publish(changed(id, &t.partner, QueueState::Queued));
                        if let Some(l) = inner
                            .find(&t.partner)
                            .filter(|l| l.plan.gateway.call_on_new_file)
                        {
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

#[cfg(test)]
mod tests {
    use oftp::journal::{QueueChange, SqliteJournal};

    use super::*;

    #[test]
    fn a_file_claimed_again_after_a_failed_attempt_is_a_retry_event() {
        let j = SqliteJournal::in_memory().unwrap();
        let now = Utc::now();
        let id = j
            .enqueue(
                &queued_send(&TakenOver {
                    partner: "acme".into(),
                    name: "order.edi".into(),
                    path: "/q/1/order.edi".into(),
                }),
                now,
            )
            .unwrap();
        let shared = Shared::new(8);
        let mut rx = shared.events.subscribe();
        let first = j.claim_due("acme", now, 10).unwrap();
        claimed(&shared, "acme", &first);
        assert_eq!(
            rx.try_recv().unwrap(),
            changed(id, "acme", QueueState::InTransfer)
        );
        assert!(rx.try_recv().is_err(), "the first attempt is no retry");
        j.transition(id, &QueueChange::to(QueueState::Queued, now))
            .unwrap();
        let again = j.claim_due("acme", now, 10).unwrap();
        claimed(&shared, "acme", &again);
        assert_eq!(
            rx.try_recv().unwrap(),
            changed(id, "acme", QueueState::InTransfer)
        );
        assert_eq!(
            rx.try_recv().unwrap(),
            GatewayEvent::TransferRetried {
                transfer_id: id,
                partner: "acme".into(),
                attempt: 2,
            }
        );
    }
}
