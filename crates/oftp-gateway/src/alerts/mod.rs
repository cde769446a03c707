//! Alerts that reach a person (issue #11 §5): the delivery of the journal's alert rows to
//! webhooks and mail, and the watchdogs that raise the alerts coming from watching over time.
//!
//! - [`config`]: `[gateway.alerts]` (channels, the delivery retry schedule, the watchdogs).
//! - [`channel`]: a signed webhook (`crates/webhook`) or mail over SMTP (`crates/smtp-mail`);
//!   one attempt each.
//! - [`delivery`]: the durable delivery queue in the journal: every alert to every channel at
//!   least once, retried with back-off and jitter across restarts, given up after an age.
//! - [`watchdog`]: EERP overdue, certificates expiring, disk space low; each condition one
//!   alert, not one per sweep.
//!
//! Alerts raised anywhere else (failed files, NERPs, unreachable partners, failed
//! post-processing) are plain [`Journal::raise_alert`](oftp::journal::Journal::raise_alert)
//! rows; the delivery queue finds them at its next pass.
//!
//! [`Alerts::start`] runs both loops as tasks until [`Alerts::shutdown`].

pub mod channel;
pub mod config;
pub mod delivery;
pub mod watchdog;

use std::sync::Arc;
use std::time::Duration;

use oftp::journal::Journal;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use channel::{AlertBody, Channel, channels_from_config};
pub use config::{AlertsConfig, AlertsConfigError};
pub use delivery::{Deliverer, DeliverySchedule};
pub use watchdog::{Watchdog, WatchedCert, certificates_of};

/// The running alert tasks (delivery and watchdogs).
#[derive(Debug)]
pub struct Alerts {
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Alerts {
    /// Builds the channels (reading their secrets) and starts the delivery loop and the
    /// watchdogs. An error names the `[gateway.alerts]` key to fix.
    pub fn start(
        journal: Arc<dyn Journal>,
        config: &AlertsConfig,
        watchdog: Watchdog,
    ) -> Result<Alerts, AlertsConfigError> {
        let channels = channels_from_config(config)?;
        let schedule = DeliverySchedule::try_from(&config.delivery)
            .map_err(|e| AlertsConfigError(format!(" delivery: {e}")))?;
        if channels.is_empty() {
            tracing::info!(
                "no alert channels configured ([[gateway.alerts.webhook]], \
                 [[gateway.alerts.mail]]): alerts are only kept in the journal (oftp alerts)"
            );
        }
        let shutdown = CancellationToken::new();
        let wake = Arc::new(Notify::new());
        let mut tasks = JoinSet::new();
        tasks.spawn(delivery::run(
            Deliverer::new(journal, channels, schedule),
            Duration::from_secs(config.poll_interval_secs),
            wake.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(watchdog::run(
            watchdog,
            Duration::from_secs(config.watchdog.interval_secs),
            wake,
            shutdown.clone(),
        ));
        Ok(Alerts { shutdown, tasks })
    }

    /// Stops both loops (an attempt under way is abandoned; it is made again at the next
    /// start, as its outcome was not recorded).
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}
