//! `oftp`: OFTP server daemon and client.
//!
//! - `oftp serve [--config FILE]`: runs the server; without a configuration it creates
//!   `./oftp-data/oftp.toml` (plus a client configuration for the example partner) and prints
//!   the command to try it.
//! - `oftp send ... FILE...`: calls a partner, sends files, waits for their end-to-end
//!   responses, receives what the partner has for us. Exit code 0 only when every file got an
//!   EERP; 3 when the session ran but some file did not; 1 on any other error; 2 on bad usage.
//!
//! Errors are printed as one line a person can act on, never as a backtrace.

mod config;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use oftp::config::{LocalIdentity, Partner, Password, SessionLimits};
use oftp::journal::Journal;
use oftp::oftp_proto::codec::FileFormat;
use oftp::store::StorePolicy;
use oftp::{Client, ClientConfig, FileOutcome, OutgoingFile, Server, ServerConfig};

#[derive(Parser, Debug)]
#[command(
    name = "oftp",
    version,
    about = "OFTP (Odette File Transfer Protocol) server and client"
)]
struct Cli {
    /// More log output (repeat for debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (creates ./oftp-data/oftp.toml on first run when no --config is given).
    Serve(ServeArgs),
    /// Send files to a partner and receive what it has for us.
    Send(Box<SendArgs>),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Configuration file (default: ./oftp-data/oftp.toml, created if missing).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address, overriding [server] listen (e.g. 127.0.0.1:3305).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum Format {
    /// Unstructured (binary).
    U,
    /// Text.
    T,
    /// Fixed-length records (one line each).
    F,
    /// Variable-length records (one line each).
    V,
}

impl From<Format> for FileFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::U => FileFormat::Unstructured,
            Format::T => FileFormat::Text,
            Format::F => FileFormat::Fixed,
            Format::V => FileFormat::Variable,
        }
    }
}

#[derive(Args, Debug)]
struct SendArgs {
    /// Configuration file with [local] and [[partners]] (see the README).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Partner name in the configuration.
    #[arg(long, requires = "config")]
    partner: Option<String>,

    /// Partner host (without a configuration, or to override the partner's address).
    #[arg(long)]
    host: Option<String>,
    /// Partner port.
    #[arg(long, default_value_t = oftp::config::DEFAULT_PORT)]
    port: u16,
    /// Our SSID code.
    #[arg(long)]
    ssid: Option<String>,
    /// Our SFID code (default: our SSID code).
    #[arg(long)]
    sfid: Option<String>,
    /// Our password (prefer OFTP_PASSWORD or --password-file: arguments are visible to others).
    #[arg(long, env = "OFTP_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// File holding our password (first line).
    #[arg(long, conflicts_with = "password")]
    password_file: Option<PathBuf>,
    /// The partner's SSID code.
    #[arg(long)]
    partner_ssid: Option<String>,
    /// The partner's SFID code (default: its SSID code).
    #[arg(long)]
    partner_sfid: Option<String>,
    /// The password the partner presents (or OFTP_PARTNER_PASSWORD).
    #[arg(long, env = "OFTP_PARTNER_PASSWORD", hide_env_values = true)]
    partner_password: Option<String>,
    /// File holding the partner's password (first line).
    #[arg(long, conflicts_with = "partner_password")]
    partner_password_file: Option<PathBuf>,

    /// Highest protocol level: 5 (2.0), 4 (1.4), 2 (1.3), 1 (1.2).
    #[arg(long)]
    level: Option<u8>,
    /// Exchange buffer size (128..=99999).
    #[arg(long)]
    buffer_size: Option<u32>,
    /// Credit window (1..=999).
    #[arg(long)]
    credit: Option<u16>,
    /// Offer buffer compression.
    #[arg(long)]
    compression: bool,
    /// Do not offer restart.
    #[arg(long)]
    no_restart: bool,
    /// Virtual file format.
    #[arg(long, value_enum, default_value = "u")]
    format: Format,
    /// Maximum record length for F and V files.
    #[arg(long, default_value_t = 0)]
    record_length: u32,
    /// Seconds without an answer before giving up (ESID 09).
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Where files the partner sends us are stored.
    #[arg(long)]
    receive_dir: Option<PathBuf>,
    /// Data directory for the journal (default: the configuration's, else ./oftp-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,

    /// Files to send (none: only receive).
    files: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(&cli);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve(a) => serve(a).await.map(|()| ExitCode::SUCCESS),
            Command::Send(a) => send(*a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(cli: &Cli) {
    let default = match (&cli.command, cli.verbose) {
        (_, 0) if matches!(cli.command, Command::Send(_)) => "warn",
        (_, 0) => "info",
        (_, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OFTP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn serve(args: ServeArgs) -> Result<()> {
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
    cfg.store = StorePolicy {
        overwrite: f.server.overwrite,
        delete_on_error: f.server.delete_on_error,
    };
    std::fs::create_dir_all(&loaded.data_dir)
        .with_context(|| format!("cannot create data directory {}", loaded.data_dir.display()))?;
    let server = Server::new(cfg)
        .with_context(|| format!("cannot start the server with {}", path.display()))?
        .start()
        .await?;
    let addr = server
        .local_addr()
        .ok_or_else(|| anyhow!("the server is not listening"))?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "listening on {addr} as {} ({} partners, data in {})",
            f.local.ssid,
            loaded.partners.len(),
            loaded.data_dir.display()
        );
        let _ = out.flush();
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn read_secret(
    inline: Option<String>,
    file: Option<&Path>,
    what: &str,
) -> Result<Option<Password>> {
    if let Some(p) = inline {
        return Ok(Some(Password::new(p)));
    }
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read {what} file {}", f.display()))?;
        let first = text.lines().next().unwrap_or("").trim_end().to_owned();
        if first.is_empty() {
            bail!("{what} file {} is empty", f.display());
        }
        return Ok(Some(Password::new(first)));
    }
    Ok(None)
}

struct SendSetup {
    local: LocalIdentity,
    partner: Partner,
    limits: SessionLimits,
    address: String,
    data_dir: PathBuf,
    receive_dir: PathBuf,
    name_format: oftp::store::NameFormat,
}

fn send_setup(a: &SendArgs) -> Result<SendSetup> {
    let our_pw = read_secret(a.password.clone(), a.password_file.as_deref(), "password")?;
    let their_pw = read_secret(
        a.partner_password.clone(),
        a.partner_password_file.as_deref(),
        "partner password",
    )?;
    let mut s = if let Some(path) = &a.config {
        let name = a
            .partner
            .as_deref()
            .ok_or_else(|| anyhow!("--partner NAME is needed with --config"))?;
        let loaded = config::load(path)?;
        let partner = loaded.partners.by_name(name).cloned().ok_or_else(|| {
            let names: Vec<&str> = loaded.partners.iter().map(|p| p.name.as_str()).collect();
            anyhow!(
                "no partner named {name:?} in {} (partners: {})",
                path.display(),
                names.join(", ")
            )
        })?;
        let address = match (&a.host, &partner.address) {
            (Some(h), _) => format!("{h}:{}", a.port),
            (None, Some(addr)) => addr.clone(),
            (None, None) => bail!(
                "partner {name:?} has no address in {}; add `address = \"host:port\"` or pass --host",
                path.display()
            ),
        };
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
        }
    } else {
        let missing = |flag: &str| anyhow!("{flag} is needed without --config");
        let host = a.host.clone().ok_or_else(|| missing("--host"))?;
        let ssid = a.ssid.clone().ok_or_else(|| missing("--ssid"))?;
        let partner_ssid = a
            .partner_ssid
            .clone()
            .ok_or_else(|| missing("--partner-ssid"))?;
        let our = our_pw
            .clone()
            .ok_or_else(|| missing("--password (or OFTP_PASSWORD or --password-file)"))?;
        let theirs = their_pw.clone().ok_or_else(|| {
            missing("--partner-password (or OFTP_PARTNER_PASSWORD or --partner-password-file)")
        })?;
        let data_dir = a
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("oftp-data"));
        let partner = Partner {
            name: partner_ssid.clone(),
            ssid: partner_ssid.clone(),
            password: theirs,
            sfid: a.partner_sfid.clone().unwrap_or_default(),
            our_password: None,
            inbox: None,
            outbox: None,
            allowed_levels: vec![],
            address: None,
            security: Default::default(),
            tls: Default::default(),
        };
        let receive_dir = data_dir.join("inbox").join(
            oftp::store::sanitize_file_name(&partner_ssid).unwrap_or_else(|_| "partner".into()),
        );
        SendSetup {
            local: LocalIdentity {
                ssid: ssid.clone(),
                sfid: a.sfid.clone().unwrap_or_default(),
                password: our,
            },
            partner,
            limits: SessionLimits::default(),
            address: format!("{host}:{}", a.port),
            data_dir,
            receive_dir,
            name_format: oftp::store::NameFormat::default(),
        }
    };
    // Flags override the configuration.
    if a.config.is_some() {
        if let Some(pw) = our_pw {
            s.local.password = pw;
        }
        if let Some(pw) = their_pw {
            s.partner.password = pw;
        }
        if let Some(d) = &a.data_dir {
            s.data_dir = d.clone();
        }
    }
    if let Some(v) = a.level {
        s.limits.level = v;
    }
    if let Some(v) = a.buffer_size {
        s.limits.buffer_size = v;
    }
    if let Some(v) = a.credit {
        s.limits.credit = v;
    }
    if a.compression {
        s.limits.compression = true;
    }
    if a.no_restart {
        s.limits.restart = false;
    }
    if let Some(d) = &a.receive_dir {
        s.receive_dir = d.clone();
    }
    s.limits.validate()?;
    s.local.validate()?;
    Ok(s)
}

async fn send(a: SendArgs) -> Result<ExitCode> {
    let s = send_setup(&a)?;
    let format: FileFormat = a.format.into();
    if format.is_record_oriented() && a.record_length == 0 {
        bail!("--record-length is needed for F and V files");
    }
    for f in &a.files {
        let meta = std::fs::metadata(f).with_context(|| format!("cannot read {}", f.display()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file", f.display());
        }
    }
    std::fs::create_dir_all(&s.data_dir)
        .with_context(|| format!("cannot create data directory {}", s.data_dir.display()))?;
    let journal = Journal::open_in_dir(&s.data_dir)?;
    let mut cfg = ClientConfig::new(s.local, s.partner, s.receive_dir);
    cfg.limits = s.limits;
    cfg.inactivity_timeout = Duration::from_secs(a.timeout.max(1));
    cfg.name_format = s.name_format;
    let client = Client::new(cfg, journal)?;
    let files: Vec<OutgoingFile> = a
        .files
        .iter()
        .map(|p| OutgoingFile::new(p).format(format, a.record_length))
        .collect();
    let report = client.run(&s.address, files).await?;
    let mut out = std::io::stdout().lock();
    for (file, outcome) in &report.files {
        let name = file.path.display();
        let line = match outcome {
            FileOutcome::Delivered => format!("delivered      {name} (EERP received)"),
            FileOutcome::AwaitingEndResponse => format!(
                "not confirmed  {name}: the partner stored it but sent no EERP in this session"
            ),
            FileOutcome::NotDelivered { reason, text } => format!(
                "NOT delivered  {name}: {} (NERP {:02}) {text}",
                reason.description().unwrap_or("unknown reason"),
                reason.0
            ),
            FileOutcome::Rejected {
                reason,
                retry,
                text,
            } => format!(
                "rejected       {name}: {} (SFNA {:02}){}",
                if text.is_empty() {
                    reason.description().unwrap_or("unknown reason")
                } else {
                    text.as_str()
                },
                reason.0,
                if *retry { ", may be retried later" } else { "" }
            ),
            FileOutcome::Refused { reason, text } => format!(
                "refused        {name}: {} (EFNA {:02})",
                if text.is_empty() {
                    reason.description().unwrap_or("unknown reason")
                } else {
                    text.as_str()
                },
                reason.0
            ),
            FileOutcome::EndResponseRejected { text } => {
                format!("not confirmed  {name}: end response not accepted: {text}")
            }
            FileOutcome::NotSent { reason } => format!("not sent       {name}: {reason}"),
        };
        let _ = writeln!(out, "{line}");
    }
    for r in &report.received {
        let _ = writeln!(out, "received       {}", r.display());
    }
    let _ = out.flush();
    Ok(if report.all_delivered() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
