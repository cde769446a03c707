//! `oftp serve`: what happens to received and sent files ([`oftp_gateway::postprocess`] and
//! [`oftp_gateway::archive`]), started beside the listeners.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use oftp::journal::Journal;
use oftp_gateway::postprocess::PartnerPostProcessing;
use oftp_gateway::{Archive, GatewayHandler, PostProcessor};
use tokio_util::sync::CancellationToken;

use crate::config::Loaded;

/// The handler of the server and what stops the background work.
pub(crate) struct Receiving {
    pub(crate) handler: GatewayHandler,
    pub(crate) stop: CancellationToken,
}

/// Runs the `on_receive` commands left over by the last daemon, and the archive sweep.
pub(crate) async fn start(loaded: &Loaded, journal: &Arc<dyn Journal>) -> Result<Receiving> {
    let f = &loaded.file;
    let clock: oftp_gateway::postprocess::Clock = Arc::new(chrono::Utc::now);
    let partners: HashMap<String, PartnerPostProcessing> = f
        .partners
        .iter()
        .filter(|e| e.gateway.on_receive.is_some())
        .map(|e| {
            let p = PartnerPostProcessing {
                name: e.partner.name.clone(),
                callable: e.partner.address.is_some(),
                on_receive: e.gateway.on_receive.clone(),
                eerp_after: e.gateway.eerp_after,
            };
            (e.partner.ssid.trim_end().to_owned(), p)
        })
        .collect();
    let mut handler = GatewayHandler::new();
    if !partners.is_empty() {
        let pp = PostProcessor::new(
            Arc::clone(journal),
            partners,
            f.local.codes().context("[local]")?.sfid,
            &f.gateway.post_processing,
            Arc::clone(&clock),
        );
        let resumed = pp
            .resume()
            .await
            .context("cannot resume the post-processing of received files")?;
        if resumed > 0 {
            tracing::info!("running {resumed} on_receive command(s) left by the last run");
        }
        handler.post_processing = Some(pp);
    }
    let stop = CancellationToken::new();
    if f.gateway.archive.is_active() {
        let names = f
            .partners
            .iter()
            .map(|e| (e.partner.ssid.trim_end().to_owned(), e.partner.name.clone()))
            .collect();
        let archive = Archive::new(
            Arc::clone(journal),
            f.gateway.archive.clone(),
            &loaded.data_dir,
            names,
        );
        tokio::spawn(Arc::new(archive).run(clock, stop.clone()));
    }
    Ok(Receiving { handler, stop })
}
