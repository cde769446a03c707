//! One session with a partner as `oftp send` runs it, also used by the gateway's calls in
//! `oftp serve` ([`ConfigDialer`]): the partner's TLS connector and OFTP 2.0 security context
//! from the configuration, a client on the journal, one run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use oftp::config::{LocalIdentity, Partner, SessionLimits};
use oftp::journal::Journal;
use oftp::security::SecurityContext;
use oftp::store::StorePolicy;
use oftp::tls::TlsConnector;
use oftp::{Client, ClientConfig, ClientError, ClientReport, Handler, OutgoingFile};
use oftp_gateway::{Dialer, Dialing, GatewayHandler};

use crate::config::Loaded;
use crate::security;

/// What a session with one partner needs, from the configuration and `oftp send`'s flags.
pub(crate) struct SendSetup {
    pub(crate) local: LocalIdentity,
    pub(crate) partner: Partner,
    pub(crate) limits: SessionLimits,
    pub(crate) address: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) receive_dir: PathBuf,
    pub(crate) name_format: oftp::store::NameFormat,
    pub(crate) store: StorePolicy,
    pub(crate) security: oftp::security::LocalSecurityConfig,
    pub(crate) tls: security::TlsSection,
}

impl SendSetup {
    /// The setup for calling `partner` of `loaded` at `address`: files it sends us go to its
    /// `inbox` (default `<data_dir>/inbox/<name>`).
    pub(crate) fn from_config(loaded: &Loaded, partner: Partner, address: String) -> Self {
        let receive_dir = partner
            .inbox
            .clone()
            .unwrap_or_else(|| loaded.data_dir.join("inbox").join(&partner.name));
        SendSetup {
            local: loaded.file.local.clone(),
            partner,
            limits: loaded.file.session.clone(),
            address,
            data_dir: loaded.data_dir.clone(),
            receive_dir,
            name_format: loaded.name_format.clone(),
            store: loaded.file.server.store_policy(),
            security: loaded.file.security.clone(),
            tls: loaded.file.tls.clone(),
        }
    }

    /// Loads the partner's certificates and TLS settings: a session ready to run.
    pub(crate) fn prepare(
        self,
        journal: impl Into<Arc<dyn Journal>>,
        inactivity_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Session> {
        let sec = security::context(
            self.local.sfid(),
            &self.security,
            [&self.partner],
            &self.data_dir,
        )?;
        let connector = if self.partner.tls.enabled {
            Some(security::connector(
                &self.security,
                &self.tls,
                &self.partner,
            )?)
        } else {
            None
        };
        let mut cfg = ClientConfig::new(self.local, self.partner, self.receive_dir);
        cfg.limits = self.limits;
        cfg.inactivity_timeout = inactivity_timeout;
        cfg.connect_timeout = connect_timeout;
        cfg.name_format = self.name_format;
        cfg.store = self.store;
        Ok(Session {
            cfg,
            journal: journal.into(),
            sec,
            connector,
            address: self.address,
        })
    }
}

/// A prepared session ([`SendSetup::prepare`]).
pub(crate) struct Session {
    cfg: ClientConfig,
    journal: Arc<dyn Journal>,
    sec: Arc<SecurityContext>,
    connector: Option<TlsConnector>,
    address: String,
}

impl Session {
    /// Calls the partner and sends `files`, with `handler` for the session's events.
    pub(crate) async fn run<H: Handler>(
        self,
        handler: H,
        files: Vec<OutgoingFile>,
    ) -> Result<ClientReport, ClientError> {
        let client = Client::new(self.cfg, self.journal)?
            .security(self.sec)
            .handler(handler);
        match self.connector {
            Some(c) => client.connector(c).run(&self.address, files).await,
            None => client.run(&self.address, files).await,
        }
    }
}

/// The gateway's calls of `oftp serve`: each partner called as `oftp send --config FILE
/// --partner NAME` would call it, with `oftp send`'s default timeouts. A reloaded
/// configuration gets a new dialer.
pub(crate) struct ConfigDialer {
    pub(crate) loaded: Arc<Loaded>,
    pub(crate) journal: Arc<dyn Journal>,
}

impl Dialer for ConfigDialer {
    fn dial<'a>(
        &'a self,
        partner: &'a str,
        files: Vec<OutgoingFile>,
        handler: GatewayHandler,
    ) -> Dialing<'a> {
        Box::pin(async move {
            let config = |text: String| ClientError::Config(text);
            let p = self
                .loaded
                .partners
                .by_name(partner)
                .cloned()
                .ok_or_else(|| config(format!("no partner named {partner:?}")))?;
            let address = p
                .address
                .clone()
                .ok_or_else(|| config(format!("partner {partner:?} has no address")))?;
            let session = SendSetup::from_config(&self.loaded, p, address)
                .prepare(
                    self.journal.clone(),
                    Duration::from_secs(DEFAULT_TIMEOUT_SECS),
                    oftp::client::DEFAULT_CONNECT_TIMEOUT,
                )
                .map_err(|e| config(format!("partner {partner:?}: {e:#}")))?;
            session.run(handler, files).await
        })
    }
}

/// `oftp send --timeout`'s default, also the gateway's calls' inactivity timeout.
pub(crate) const DEFAULT_TIMEOUT_SECS: u64 = 60;
