//! A partner's call loop and its calls: when to call, claiming the due files, running the
//! dialer, settling each file, recording the call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use oftp::ClientReport;
use oftp::journal::{
    AlertKind, CallRecord, FileKey, JournalError, NewAlert, QueueChange, QueueState,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::observer::{CallContext, Observer};
use super::{
    CLAIM_LIMIT, ERROR_PAUSE, GatewayError, Inner, MAX_SLEEP, PartnerPlan, SHUTDOWN_GRACE, changed,
    claimed, outgoing,
};
use crate::handler::GatewayHandler;
use crate::ops::{CallSummary, GatewayEvent};
use crate::retry::RetryPolicy;
use crate::schedule::Schedule;
use crate::settle::{Attempt, Settlement, settle};

/// One partner's call loop and its state.
pub(super) struct Loop {
    pub(super) plan: PartnerPlan,
    pub(super) schedule: Option<Schedule>,
    pub(super) policy: RetryPolicy,
    pub(super) wake: Notify,
    pub(super) call_now: AtomicBool,
    pub(super) state: Mutex<LoopState>,
    /// Stops the loop between calls (reload); shutdown also interrupts a call.
    pub(super) retire: CancellationToken,
}

#[derive(Default)]
pub(super) struct LoopState {
    pub(super) last_call: Option<CallSummary>,
    pub(super) next_call: Option<DateTime<Utc>>,
    /// Calls in a row that never got to the files.
    pub(super) failed_calls: u32,
    /// The earliest retry this loop set (partners without `call_on_new_file`, whose new files
    /// wait for the schedule).
    pub(super) retry_due: Option<DateTime<Utc>>,
}

impl Loop {
    pub(super) fn new(plan: PartnerPlan) -> Result<Self, GatewayError> {
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

    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, LoopState> {
        self.state.lock().expect("loop state lock")
    }
}

/// One partner's loop: sleep until something is due, call, repeat.
pub(super) async fn call_loop(inner: Arc<Inner>, l: Arc<Loop>) {
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
        // Retired by a reload during a call: the loop of the new configuration takes over.
        if l.retire.is_cancelled() {
            return;
        }
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
    let dialer = {
        let _partners = inner.partners.read().expect("partners lock");
        if l.retire.is_cancelled() {
            // Retired by a reload: the new configuration's loop calls.
            return Ok(());
        }
        inner.dialer.read().expect("dialer lock").clone()
    };
    let started_at = inner.clock.now();
    let n = name.clone();
    let rows = inner
        .journal
        .call(move |j| j.claim_due(&n, started_at, CLAIM_LIMIT))
        .await?;
    l.state().retry_due = None;
    claimed(&inner.shared, &name, &rows);
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
        let key = FileKey::new(r.destination.clone(), &r.virtual_file_name, r.stamp);
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
