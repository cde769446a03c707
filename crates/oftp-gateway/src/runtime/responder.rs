//! The gateway's [`OutboundQueue`]: a partner that calls us collects its due queued files (the
//! server offers them instead of scanning the outbox), and what became of each is settled
//! with [`settle`] and the partner's retry policy, exactly as for the files of our own calls.

use std::sync::Arc;

use oftp::journal::{JournalError, QueueState, QueuedFile};
use oftp::outbound::{OutboundQueue, QueueOutcome};

use super::{CLAIM_LIMIT, Inner, changed, claimed, queued_send};
use crate::ops::GatewayEvent;
use crate::outbox::Outbox;
use crate::settle::{Attempt, Settlement, settle};

/// [`Gateway::outbound_queue`](super::Gateway::outbound_queue).
pub(super) struct ResponderQueue {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for ResponderQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponderQueue").finish_non_exhaustive()
    }
}

impl ResponderQueue {
    /// Takes the partner's outbox over now: a file put there a moment before the partner
    /// called is offered in this session, not left for the watcher's next pass. A file the
    /// watcher takes at the same time is taken by one of them only (the rename decides).
    fn take_over_now(&self, partner: &str) -> Result<(), JournalError> {
        let Some(dir) = self.inner.find(partner).map(|l| l.plan.outbox.clone()) else {
            return Ok(());
        };
        let outbox = match Outbox::new(partner, dir) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(partner, "outbox: {e}");
                return Ok(());
            }
        };
        let now = self.inner.clock.now();
        let mut failed = None;
        let taken =
            outbox.take_over(
                &mut |t| match self.inner.journal.enqueue(&queued_send(&t), now) {
                    Ok(id) => {
                        self.inner
                            .shared
                            .publish(changed(id, partner, QueueState::Queued));
                        true
                    }
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                },
            );
        if let Err(e) = taken {
            // The files stay in the outbox or its queue folder; the watcher tries again.
            tracing::warn!(partner, "outbox: {e}");
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl OutboundQueue for ResponderQueue {
    fn claim(&self, partner: &str) -> Result<Vec<QueuedFile>, JournalError> {
        self.take_over_now(partner)?;
        let rows = self
            .inner
            .journal
            .claim_due(partner, self.inner.clock.now(), CLAIM_LIMIT)?;
        claimed(&self.inner.shared, partner, &rows);
        Ok(rows)
    }

    fn settle(&self, file: &QueuedFile, outcome: &QueueOutcome) -> Result<(), JournalError> {
        let now = self.inner.clock.now();
        let settlement = match (outcome.fixed_change(now), outcome) {
            (Some(change), _) => Settlement {
                change,
                alert: None,
            },
            (
                None,
                QueueOutcome::Failed {
                    outcome,
                    ended,
                    key,
                },
            ) => {
                let policy = self
                    .inner
                    .find(&file.send.partner)
                    .map(|l| l.policy.clone());
                // A partner removed by a reload while its session ran: the defaults.
                let policy = match policy {
                    Some(p) => p,
                    None => crate::retry::RetryPolicy::try_from(&crate::RetryConfig::default())
                        .expect("the default retry configuration is valid"),
                };
                let mut s = settle(
                    Attempt::File { outcome, ended },
                    file,
                    &policy,
                    now,
                    &mut rand::rng(),
                );
                if let Some(k) = key {
                    s.change.key = Some(k.clone());
                }
                s
            }
            (None, other) => {
                tracing::error!(
                    id = file.id,
                    "queue outcome without a transition: {other:?}"
                );
                return Ok(());
            }
        };
        match self.inner.journal.transition(file.id, &settlement.change) {
            Ok(_) => {}
            // Settled already (its end response was recorded by the journal itself).
            Err(JournalError::TransitionRefused { refused, .. }) => {
                tracing::debug!(id = file.id, "queue row not moved: {refused}");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        self.inner
            .shared
            .publish(changed(file.id, &file.send.partner, settlement.change.to));
        if let Some(alert) = settlement.alert {
            tracing::warn!(kind = alert.kind.as_str(), "alert: {}", alert.text);
            let alert_id = self.inner.journal.raise_alert(&alert, now)?;
            self.inner
                .shared
                .publish(GatewayEvent::AlertRaised { alert_id });
        }
        Ok(())
    }
}
