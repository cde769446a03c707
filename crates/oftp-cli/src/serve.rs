//! `oftp serve`: the server with the gateway (calls, queue, post-processing, archive), alert
//! delivery and the control socket; SIGHUP reloads the partners, SIGTERM/Ctrl-C stops.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use oftp::journal::Journal;
use oftp::server::RunningServer;
use oftp::{Server, ServerConfig};
use oftp_gateway::alerts;
use oftp_gateway::control::{ControlSocket, Operations};
use oftp_gateway::{Dialer, Gateway, GatewayRuntime, PartnerPlan, SystemClock};

use crate::{config, receive, security, session};

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Configuration file (default: ./oftp-data/oftp.toml, created if missing).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address, overriding [server] listen (e.g. 127.0.0.1:3305).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Address of the HTTP API and console, overriding [http] listen (port 0 = any free
    /// port; the address in use is printed).
    #[arg(long, env = "OFTP_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
}

pub(crate) async fn serve(args: ServeArgs) -> Result<()> {
    let path = match &args.config {
        Some(p) => p.clone(),
        None => {
            let p = PathBuf::from(config::DEFAULT_CONFIG);
            if !p.exists() {
                let listen = args.listen.unwrap_or_else(|| {
                    SocketAddr::from(([0, 0, 0, 0], oftp::config::DEFAULT_PORT))
                });
                let g = config::generate(&p, listen)?;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "Created {} with a new local identity and one example partner.\n\
                     Created {} for that partner, to try sending from another terminal:\n\n    \
                     oftp send --config {} --partner server FILE\n",
                    g.server_config.display(),
                    g.client_config.display(),
                    g.client_config.display()
                );
            }
            p
        }
    };
    let loaded = config::load(&path)?;
    let mut settings = loaded.server_settings();
    if let Some(l) = args.listen {
        settings.listen = l;
    }
    let f = &loaded.file;
    let mut cfg = ServerConfig::new(
        f.local.clone(),
        loaded.partners.clone(),
        loaded.data_dir.clone(),
    );
    cfg.settings = settings;
    cfg.limits = f.session.clone();
    cfg.name_format = loaded.name_format.clone();
    cfg.store = f.server.store_policy();
    std::fs::create_dir_all(&loaded.data_dir)
        .with_context(|| format!("cannot create data directory {}", loaded.data_dir.display()))?;
    // First: a second daemon on this data directory stops here, before it touches anything.
    let control = ControlSocket::bind(
        &loaded.data_dir,
        &f.gateway.control.socket_path(&loaded.data_dir),
    )?;
    let sec = security::context(
        f.local.sfid(),
        &f.security,
        loaded.partners.iter(),
        &loaded.data_dir,
    )
    .with_context(|| format!("{}: [security] / partners' security", path.display()))?;
    let tls = &f.tls;
    let base = Server::new(cfg)
        .with_context(|| format!("cannot start the server with {}", path.display()))?
        .security(sec.clone());
    // The gateway shares the server's journal: one queue, one record of sends.
    let journal = base.journal().clone();
    let gateway = Gateway::start(
        journal.clone(),
        Arc::new(SystemClock),
        dialer(&loaded, &journal),
        partner_plans(&loaded),
        f.gateway.outbox.clone(),
    )
    .await
    .with_context(|| format!("cannot start the gateway with {}", path.display()))?;
    let received = receive::start(&loaded, &journal).await?;
    if let Some(pp) = &received.handler.post_processing {
        // A released EERP for a partner we call starts a call at once.
        pp.attach_runtime(Arc::new(gateway.clone()));
    }
    // A partner that calls us collects its queued files (not its outbox: the gateway has it).
    let base = base
        .handler(received.handler.clone().with_runtime(gateway.observer()))
        .outbound_queue(gateway.outbound_queue());
    // The TLS listener belongs to the same server: one journal, one guard against receiving a
    // file twice at once, one set of connection ids.
    let tls_server = if tls.enabled {
        let acceptor = security::acceptor(&f.security, tls, &sec)
            .with_context(|| format!("{}: [tls]", path.display()))?;
        Some(base.another_listener(tls.listen, acceptor))
    } else {
        None
    };
    let alerts =
        start_alerts(&loaded, &journal, &sec).with_context(|| path.display().to_string())?;
    // Shared with the HTTP face's readiness check, which holds them weakly.
    let mut running = Vec::new();
    if !tls.enabled || tls.plain {
        running.push(("plain", Arc::new(base.start().await?)));
    }
    if let Some(server) = tls_server {
        running.push(("TLS", Arc::new(server.start().await?)));
    }
    {
        let mut out = std::io::stdout().lock();
        for (kind, server) in &running {
            let addr = server
                .local_addr()
                .ok_or_else(|| anyhow!("the {kind} listener is not listening"))?;
            let _ = writeln!(
                out,
                "listening on {addr}{} as {} ({} partners, data in {})",
                if *kind == "TLS" { " (TLS)" } else { "" },
                f.local.ssid,
                loaded.partners.len(),
                loaded.data_dir.display()
            );
        }
        let _ = out.flush();
    }
    let runtime: Arc<dyn GatewayRuntime> = Arc::new(gateway.clone());
    let ops = Operations::new(journal.clone(), runtime.clone(), Arc::new(SystemClock));
    let control = control.serve(ops.clone());
    let http = start_http(
        &loaded,
        args.http_listen,
        ops,
        runtime,
        &journal,
        &sec,
        listeners(&running),
    )
    .await
    .with_context(|| format!("{}: [http]", path.display()))?;
    let mut signals = Signals::new();
    while let Signal::Reload = signals.next().await {
        reload(&path, &gateway, &journal, &running, http.as_ref()).await;
    }
    tracing::info!("shutting down");
    if let Some(http) = http {
        http.shutdown().await;
    }
    control.shutdown().await;
    // Calls first: each is interrupted and its files queued again.
    gateway.shutdown().await;
    received.stop.cancel();
    for (_, server) in running {
        // The HTTP face is down, so nothing else holds the server any more.
        if let Some(server) = Arc::into_inner(server) {
            server.shutdown().await;
        }
    }
    alerts.shutdown().await;
    Ok(())
}

/// The gateway's calls, with the partners' settings of `loaded`.
fn dialer(loaded: &config::Loaded, journal: &Arc<dyn Journal>) -> Arc<dyn Dialer> {
    Arc::new(session::ConfigDialer {
        loaded: Arc::new(loaded.clone()),
        journal: journal.clone(),
    })
}

/// Every configured partner as the gateway runs it.
fn partner_plans(loaded: &config::Loaded) -> Vec<PartnerPlan> {
    loaded
        .file
        .partners
        .iter()
        .map(|e| PartnerPlan {
            name: e.partner.name.clone(),
            address: e.partner.address.clone(),
            outbox: outbox_of(loaded, e),
            gateway: e.gateway.clone(),
        })
        .collect()
}

/// A partner's outbox: `outbox` of its entry, else `<data_dir>/outbox/<name>` (as the
/// server's).
fn outbox_of(loaded: &config::Loaded, e: &oftp_gateway::PartnerEntry) -> PathBuf {
    e.partner
        .outbox
        .clone()
        .unwrap_or_else(|| loaded.data_dir.join("outbox").join(&e.partner.name))
}

/// The OFTP listeners as `/readyz` asks about them; held weakly, so the daemon still owns
/// (and shuts down) its servers.
fn listeners(running: &[(&'static str, Arc<RunningServer>)]) -> oftp_http::ListenerSource {
    let servers: Vec<(&'static str, std::sync::Weak<RunningServer>)> = running
        .iter()
        .map(|(kind, s)| (*kind, Arc::downgrade(s)))
        .collect();
    Arc::new(move || {
        servers
            .iter()
            .map(|(kind, s)| oftp_http::Listener {
                kind,
                addr: s.upgrade().and_then(|s| s.local_addr()),
            })
            .collect()
    })
}

/// Starts the HTTP face (`[http]`, on by default on loopback) and says where it is; on the
/// first run also the admin token, once.
async fn start_http(
    loaded: &config::Loaded,
    listen: Option<SocketAddr>,
    ops: Operations,
    runtime: Arc<dyn GatewayRuntime>,
    journal: &Arc<dyn Journal>,
    sec: &Arc<oftp::security::SecurityContext>,
    listeners: oftp_http::ListenerSource,
) -> Result<Option<oftp_http::HttpServer>> {
    let f = &loaded.file;
    if !f.http.enabled {
        return Ok(None);
    }
    let partners: Vec<(String, String)> = loaded
        .partners
        .iter()
        .map(|p| (p.name.clone(), p.ssid.to_string()))
        .collect();
    let sec = sec.clone();
    let ctx = oftp_http::HttpContext {
        ops,
        runtime,
        journal: journal.clone(),
        data_dir: loaded.data_dir.clone(),
        partners: partner_infos(loaded),
        certificates: Arc::new(move || alerts::certificates_of(&sec, &partners)),
        disk_low_mib: f.gateway.alerts.watchdog.disk_low_mib,
        listeners,
    };
    let mut settings = f.http.clone();
    if let Some(l) = listen {
        settings.listen = l;
    }
    let http = oftp_http::HttpServer::start(settings, ctx).await?;
    let mut out = std::io::stdout().lock();
    let scheme = if f.http.tls_certificate.is_some() {
        "https"
    } else {
        "http"
    };
    let _ = writeln!(out, "console and API on {scheme}://{}/", http.local_addr());
    if let Some(token) = http.first_admin_token() {
        let _ = writeln!(
            out,
            "Created the admin API token (shown only now; it is stored hashed):\n\n    {token}\n"
        );
    }
    let _ = out.flush();
    Ok(Some(http))
}

/// The partners as the HTTP face shows them: configuration without secrets.
fn partner_infos(loaded: &config::Loaded) -> Vec<oftp_http::PartnerInfo> {
    loaded
        .file
        .partners
        .iter()
        .map(|e| oftp_http::PartnerInfo {
            name: e.partner.name.clone(),
            ssid: e.partner.ssid.clone(),
            address: e.partner.address.clone(),
            outbox: outbox_of(loaded, e),
            settings: oftp_http::without_secrets(serde_json::to_value(e).unwrap_or_default()),
        })
        .collect()
}

/// Starts alert delivery and the watchdogs (`[gateway.alerts]`) on the server's journal.
fn start_alerts(
    loaded: &config::Loaded,
    journal: &Arc<dyn Journal>,
    sec: &Arc<oftp::security::SecurityContext>,
) -> Result<alerts::Alerts> {
    let journal = journal.clone();
    let f = &loaded.file;
    let partners: Vec<(String, String)> = loaded
        .partners
        .iter()
        .map(|p| (p.name.clone(), p.ssid.to_string()))
        .collect();
    let sec = sec.clone();
    let watchdog = alerts::Watchdog::new(
        journal.clone(),
        f.gateway.alerts.watchdog.clone(),
        &f.partners,
        loaded.data_dir.clone(),
    )
    .certificates(Arc::new(move || alerts::certificates_of(&sec, &partners)));
    Ok(alerts::Alerts::start(journal, &f.gateway.alerts, watchdog)?)
}

/// SIGHUP: the partners of the configuration file as it is now. A file that does not load
/// leaves everything as it was.
async fn reload(
    path: &Path,
    gateway: &Gateway,
    journal: &Arc<dyn Journal>,
    servers: &[(&str, Arc<RunningServer>)],
    http: Option<&oftp_http::HttpServer>,
) {
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(
                "configuration not reloaded, the one loaded before stays in use: {e:#}"
            );
            return;
        }
    };
    match gateway
        .reload(
            partner_plans(&loaded),
            dialer(&loaded, journal),
            loaded.file.gateway.outbox.clone(),
        )
        .await
    {
        Ok(()) => {
            // New sessions log in against the new table; sessions in progress keep theirs.
            for (_, server) in servers {
                server.set_partners(loaded.partners.clone());
            }
            if let Some(http) = http {
                http.set_partners(partner_infos(&loaded));
            }
            tracing::info!(
                partners = loaded.partners.len(),
                "configuration {} reloaded",
                path.display()
            );
        }
        Err(e) => {
            tracing::error!("configuration not reloaded, the one loaded before stays in use: {e:#}")
        }
    }
}

/// What a signal asks of `oftp serve`.
enum Signal {
    /// SIGTERM or Ctrl-C.
    Stop,
    /// SIGHUP.
    Reload,
}

/// The signals `oftp serve` answers.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                hup: signal(SignalKind::hangup()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = tokio::signal::ctrl_c() => Signal::Stop,
                () = recv(&mut self.term) => Signal::Stop,
                () = recv(&mut self.hup) => Signal::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop
        }
    }
}
