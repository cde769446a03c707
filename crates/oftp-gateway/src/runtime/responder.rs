//! The gateway's [`OutboundQueue`]: a partner that calls us collects its due queued files (the
//! server offers them instead of scanning the outbox), and what became of each is settled
//! with [`settle`] and the partner's retry policy, exactly as for the files of our own calls.

use std::sync::Arc;

use oftp::journal::{JournalError, QueuedFile};
use oftp::outbound::{OutboundQueue, QueueOutcome};

use super::{CLAIM_LIMIT, Inner};
use crate::ops::GatewayEvent;
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

impl OutboundQueue for ResponderQueue {
    fn claim(&self, partner: &str) -> Result<Vec<QueuedFile>, JournalError> {
        let rows = self
            .inner
            .journal
            .claim_due(partner, self.inner.clock.now(), CLAIM_LIMIT)?;
        for row in &rows {
            self.inner.shared.publish(GatewayEvent::TransferChanged {
                transfer_id: row.id,
                partner: partner.to_owned(),
                state: row.state.as_str().to_owned(),
            });
        }
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
                    .partners
                    .read()
                    .expect("partners lock")
                    .iter()
                    .find(|l| l.plan.name == file.send.partner)
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
        self.inner.shared.publish(GatewayEvent::TransferChanged {
            transfer_id: file.id,
            partner: file.send.partner.clone(),
            state: settlement.change.to.as_str().to_owned(),
        });
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
