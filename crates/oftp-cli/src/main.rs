//! `oftp`: OFTP server daemon and client.
//!
//! - `oftp serve [--config FILE]`: runs the server; without a configuration it creates
//!   `./oftp-data/oftp.toml` (plus a client configuration for the example partner) and prints
//!   the command to try it.
//! - `oftp send ... FILE...`: calls a partner, sends files, waits for their end-to-end
//!   responses, receives what the partner has for us. Exit code 0 only when every file got an
//!   EERP; 3 when the session got past login but some file did not; 1 when the session was
//!   refused or failed before the first file (TLS, login, secure authentication) and on any
//!   other error; 2 on bad usage.
//!   Running it again with the same files converges (the journal keeps each file's identity):
//!   a file the partner stored is not sent twice, its EERP is collected; end responses for
//!   earlier runs are printed too.
//!
//! - `oftp http token create|list|revoke`, `oftp http hash-password`: the HTTP API's tokens
//!   and console password hashes ([`http_commands`]).
//!
//! Errors are printed as one line a person can act on, never as a backtrace.

mod check_config;
mod config;
mod http_commands;
mod ops_commands;
mod receive;
mod security;
mod send_files;
mod serve;
mod session;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use oftp::config::{LocalIdentity, Partner, Password, SessionLimits};
use oftp::journal::SqliteJournal;
use oftp::oftp_proto::codec::FileFormat;
use oftp::stamp::FileStampExt;
use oftp::store::StorePolicy;
use oftp::{FileOutcome, OutgoingFile};
use session::SendSetup;

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
    Serve(serve::ServeArgs),
    /// Send files to a partner and receive what it has for us.
    Send(Box<SendArgs>),
    /// Show a certificate or PKCS#12 file: fields and SHA-1/SHA-256 thumbprints.
    Cert(security::CertArgs),
    /// The running daemon: partners with their last and next call, queue depth, open alerts.
    Status(ops_commands::Common),
    /// The outbound queue, newest first.
    Transfers(ops_commands::TransfersArgs),
    /// One queued file: show it with its history, retry or cancel it.
    #[command(subcommand)]
    Transfer(ops_commands::TransferCommand),
    /// Call a partner now.
    Call(ops_commands::CallArgs),
    /// Open alerts (--all: acknowledged ones too); --ack ID acknowledges one.
    Alerts(ops_commands::AlertsArgs),
    /// Check a configuration and its certificates without starting anything; print what the
    /// daemon would do and every problem.
    CheckConfig(check_config::CheckArgs),
    /// The HTTP API's tokens (create, list, revoke) and console password hashes.
    #[command(subcommand)]
    Http(http_commands::HttpCommand),
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum Format {
    /// Unstructured (binary).
    U,
    /// Text.
    T,
    /// Fixed-length records (laid out as --record-mapping says).
    F,
    /// Variable-length records (laid out as --record-mapping says).
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

#[derive(Copy, Clone, Debug, ValueEnum)]
enum SecurityArg {
    None,
    Signed,
    Encrypted,
    SignedEncrypted,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum ExchangeArg {
    Request,
    Replace,
    Deliver,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum SecureAuthArg {
    Disallowed,
    Required,
    Automatic,
}

#[derive(Args, Debug)]
struct SendArgs {
    /// Configuration file with [local] and [[partners]] (see the README).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Partner name in the configuration.
    #[arg(long, requires = "config")]
    partner: Option<String>,

    /// Call the partner over TLS (default port then 6619; see also the partner's `tls` table).
    #[arg(long)]
    tls: bool,
    /// Trust this CA file for the partner's TLS certificate (repeatable).
    #[arg(long = "tls-ca")]
    tls_ca: Vec<PathBuf>,
    /// Trust exactly this TLS server certificate (pinning; no chain or name check).
    #[arg(long)]
    tls_pin: Option<PathBuf>,
    /// Name to check the TLS server certificate against (default: the host).
    #[arg(long)]
    tls_server_name: Option<String>,
    /// Present our certificate (our identity) in the TLS handshake.
    #[arg(long)]
    tls_client_cert: bool,
    /// File security for the files sent: none, signed, encrypted or signed-encrypted.
    #[arg(long, value_enum)]
    security: Option<SecurityArg>,
    /// Cipher suite 1-6 for file security and receipts (default 4: AES-256, SHA-256).
    #[arg(long)]
    cipher_suite: Option<u8>,
    /// Compress files (CMS CompressedData) before encrypting.
    #[arg(long)]
    compress_file: bool,
    /// Ask for signed end-to-end responses (and check them).
    #[arg(long)]
    signed_receipt: bool,
    /// Secure authentication with the partner: disallowed, required or automatic.
    #[arg(long, value_enum)]
    secure_auth: Option<SecureAuthArg>,
    /// The partner's certificate for file services and receipts: encrypting files for it,
    /// checking its file and receipt signatures (partner `security.certificate`). It does not
    /// turn secure authentication on; with `--secure-auth required` it is also the
    /// authentication certificate, unless `--auth-cert` names one.
    #[arg(long)]
    partner_cert: Option<PathBuf>,
    /// The partner's certificate for secure authentication (partner
    /// `security.authentication_cert`): with it, secure authentication is asked for unless
    /// `--secure-auth disallowed`.
    #[arg(long)]
    auth_cert: Option<PathBuf>,
    /// Our certificate (PEM/DER) with --key, or use --pkcs12.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Our private key (PEM/DER, optionally encrypted).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Our PKCS#12 file.
    #[arg(long, conflicts_with_all = ["cert", "key"])]
    pkcs12: Option<PathBuf>,
    /// File with the password of --key or --pkcs12.
    #[arg(long)]
    key_password_file: Option<PathBuf>,
    /// Environment variable with the password of --key or --pkcs12.
    #[arg(long, conflicts_with = "key_password_file")]
    key_password_env: Option<String>,

    /// Send the FILEs as certificates (seed ExchangeCertificate): request, replace or deliver
    /// (virtual file names ODETTE_CERTIFICATE_REQUEST / _REPLACE / _DELIVER).
    #[arg(long, value_enum)]
    exchange_certificate: Option<ExchangeArg>,

    /// Partner host (without a configuration, or to override the partner's address).
    #[arg(long)]
    host: Option<String>,
    /// Partner port (default 3305, 6619 with --tls).
    #[arg(long)]
    port: Option<u16>,
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
    /// Virtual file name (SFIDDSN: 1-26 of 0-9 A-Z / - . & ( )): `NAME` when one file is sent,
    /// `FILE=NAME` for any of several (repeatable). Default: the file name in upper case.
    #[arg(
        long,
        value_name = "[FILE=]NAME",
        conflicts_with = "exchange_certificate"
    )]
    dsn: Vec<String>,
    /// User data of every file sent (SFIDUSER: up to 8 of 0-9 A-Z / - . & ( )).
    #[arg(long)]
    user_data: Option<String>,
    /// Description of every file sent (SFIDDESC: UTF-8, up to 999 octets; OFTP 2.0 only).
    #[arg(long)]
    description: Option<String>,
    /// How F and V records lie in local files (overrides the partner's record_mapping): raw
    /// (F back to back, V after a 2-octet length; default), lines (CR LF) or lines-lf.
    #[arg(long, value_parser = clap::value_parser!(oftp::config::RecordMapping))]
    record_mapping: Option<oftp::config::RecordMapping>,
    /// Seconds without an answer before giving up (ESID 09).
    #[arg(long, default_value_t = session::DEFAULT_TIMEOUT_SECS)]
    timeout: u64,
    /// Seconds to wait for the connection to the partner.
    #[arg(long, default_value_t = 30)]
    connect_timeout: u64,
    /// Where files the partner sends us are stored.
    #[arg(long)]
    receive_dir: Option<PathBuf>,
    /// Data directory for the journal (default: the configuration's, else ./oftp-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,

    /// Files to send (none: only receive).
    files: Vec<PathBuf>,
}

/// Threads of the runtime's blocking pool (journal, file system, certificate checks). Tokio's
/// default of 512 lets a burst of sessions start hundreds of threads that mostly wait for the
/// one journal lock or the one disk; more tasks than threads queue instead (see README,
/// "Memory with many sessions").
const BLOCKING_THREADS: usize = 32;

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
        .max_blocking_threads(BLOCKING_THREADS)
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
            Command::Serve(a) => serve::serve(a).await.map(|()| ExitCode::SUCCESS),
            Command::Send(a) => send(*a).await,
            Command::Cert(a) => security::cert_command(&a).map(|()| ExitCode::SUCCESS),
            Command::Status(a) => ops_commands::status(a).await.map(|()| ExitCode::SUCCESS),
            Command::Transfers(a) => ops_commands::transfers(a).await.map(|()| ExitCode::SUCCESS),
            Command::Transfer(a) => ops_commands::transfer(a).await.map(|()| ExitCode::SUCCESS),
            Command::Call(a) => ops_commands::call(a).await.map(|()| ExitCode::SUCCESS),
            Command::Alerts(a) => ops_commands::alerts(a).await.map(|()| ExitCode::SUCCESS),
            Command::CheckConfig(a) => check_config::check_config(&a),
            Command::Http(a) => http_commands::http(a).map(|()| ExitCode::SUCCESS),
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
        // What goes wrong in the session is in the file lines or the one error line; the
        // session's own warnings (the same, in other words) need -v.
        (_, 0) if matches!(cli.command, Command::Send(_)) => {
            "warn,oftp::connection=error,oftp_proto=error"
        }
        // The operator commands print their answer; log lines only when something is wrong.
        (_, 0) if !matches!(cli.command, Command::Serve(_) | Command::Cert(_)) => "warn",
        (_, 0) => "info",
        (_, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OFTP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_on_stderr())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Colours only for a person at a terminal: not when the log goes to a file, a pipe or the
/// journal (a daemon's usual place), and not when `NO_COLOR` is set (no-color.org).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
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

impl SendArgs {
    fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.tls {
            oftp::tls::DEFAULT_TLS_PORT
        } else {
            oftp::config::DEFAULT_PORT
        })
    }

    /// Applies the TLS and security flags over the configuration.
    fn apply_security(&self, s: &mut SendSetup) -> Result<()> {
        use oftp::security::{FileSecurity, IdentityConfig, SecureAuthentication};
        let t = &mut s.partner.tls;
        t.enabled |= self.tls;
        if !self.tls_ca.is_empty() {
            t.trusted_cas = self.tls_ca.clone();
        }
        if let Some(p) = &self.tls_pin {
            t.pinned_cert = Some(p.clone());
        }
        if let Some(n) = &self.tls_server_name {
            t.server_name = Some(n.clone());
        }
        t.client_certificate |= self.tls_client_cert;
        let p = &mut s.partner.security;
        if let Some(level) = self.security {
            p.send.security = match level {
                SecurityArg::None => FileSecurity::None,
                SecurityArg::Signed => FileSecurity::Signed,
                SecurityArg::Encrypted => FileSecurity::Encrypted,
                SecurityArg::SignedEncrypted => FileSecurity::SignedEncrypted,
            };
        }
        if let Some(c) = self.cipher_suite {
            if !(1..=6).contains(&c) {
                bail!("--cipher-suite must be 1 to 6");
            }
            p.send.cipher_suite = c;
        }
        p.send.compress |= self.compress_file;
        p.send.signed_receipt |= self.signed_receipt;
        if let Some(a) = self.secure_auth {
            p.secure_authentication = match a {
                SecureAuthArg::Disallowed => SecureAuthentication::Disallowed,
                SecureAuthArg::Required => SecureAuthentication::Required,
                SecureAuthArg::Automatic => SecureAuthentication::Automatic,
            };
        }
        if let Some(c) = &self.partner_cert {
            // As `certificate` in the configuration: every purpose without its own file, and
            // authentication only when that is required (Automatic asks for it only with an
            // explicit authentication certificate, see SecureAuthentication::Automatic).
            for slot in [
                &mut p.certificate,
                &mut p.encryption_cert,
                &mut p.signature_cert,
                &mut p.receipt_cert,
            ] {
                *slot = Some(c.clone());
            }
        }
        if let Some(c) = &self.auth_cert {
            p.authentication_cert = Some(c.clone());
        }
        if self.cert.is_some() || self.pkcs12.is_some() {
            s.security.identity = Some(IdentityConfig {
                pkcs12: self.pkcs12.clone(),
                cert: self.cert.clone(),
                key: self.key.clone(),
                password_file: self.key_password_file.clone(),
                password_env: self.key_password_env.clone(),
                subject: None,
            });
        }
        Ok(())
    }
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
            (Some(h), _) => format!("{h}:{}", a.port_or_default()),
            (None, Some(addr)) => addr.clone(),
            (None, None) => bail!(
                "partner {name:?} has no address in {}; add `address = \"host:port\"` or pass --host",
                path.display()
            ),
        };
        SendSetup::from_config(&loaded, partner, address)
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
            sfid: a.partner_sfid.clone().unwrap_or_default(),
            ..Partner::new(partner_ssid.clone(), partner_ssid.clone(), theirs)
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
            address: format!("{host}:{}", a.port_or_default()),
            data_dir,
            receive_dir,
            name_format: oftp::store::NameFormat::default(),
            store: StorePolicy::default(),
            security: oftp::security::LocalSecurityConfig::default(),
            tls: security::TlsSection::default(),
        }
    };
    a.apply_security(&mut s)?;
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
    if let Some(m) = a.record_mapping {
        s.partner.record_mapping = m;
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
    let names = send_files::virtual_names(&a.files, &a.dsn)?;
    for (f, name) in a.files.iter().zip(&names) {
        let meta = std::fs::metadata(f).with_context(|| format!("cannot read {}", f.display()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file", f.display());
        }
        if name.is_none() && a.exchange_certificate.is_none() {
            send_files::check_default_name(f, &OutgoingFile::new(f).virtual_file_name)?;
        }
    }
    if let Some(u) = &a.user_data {
        send_files::check_string(u, send_files::USER_DATA_MAX, "user data (SFIDUSER)")
            .map_err(|e| anyhow!("--user-data: {e}"))?;
    }
    if let Some(d) = &a.description {
        send_files::check_description(d)?;
        if s.limits.level < 5 {
            bail!(
                "--description needs OFTP 2.0 (level 5), but the highest level offered is {} \
                 (--level or [session] level): the OFTP 1.x SFID has no description field",
                s.limits.level
            );
        }
    }
    std::fs::create_dir_all(&s.data_dir)
        .with_context(|| format!("cannot create data directory {}", s.data_dir.display()))?;
    let journal = SqliteJournal::open_in_dir(&s.data_dir)?;
    let session = s.prepare(
        journal,
        Duration::from_secs(a.timeout.max(1)),
        Duration::from_secs(a.connect_timeout.max(1)),
    )?;
    let files: Vec<OutgoingFile> = a
        .files
        .iter()
        .zip(names)
        .map(|(p, name)| {
            let mut f = match a.exchange_certificate {
                Some(kind) => {
                    use oftp::security::CertificateExchange as X;
                    let kind = match kind {
                        ExchangeArg::Request => X::Request,
                        ExchangeArg::Replace => X::Replace,
                        ExchangeArg::Deliver => X::Deliver,
                    };
                    OutgoingFile::certificate_exchange(kind, p)
                }
                None => OutgoingFile::new(p).format(format, a.record_length),
            };
            if let Some(name) = name {
                f = f.virtual_name(name);
            }
            f.user_data = a.user_data.clone().unwrap_or_default();
            f.description = a.description.clone().unwrap_or_default();
            f
        })
        .collect();
    let report = session.run((), files).await?;
    let mut out = std::io::stdout().lock();
    for (file, outcome) in &report.files {
        let name = file.path.display();
        let line = match outcome {
            FileOutcome::Delivered => format!("delivered      {name} (EERP received)"),
            FileOutcome::AwaitingEndResponse => format!(
                "not confirmed  {name}: the partner stored it (EFPA) but sent no EERP in this session; \
                 run the same command again to collect it (the file is not sent twice)"
            ),
            FileOutcome::NotDelivered { reason, text } => format!(
                "NOT delivered  {name}: the partner could not deliver it: {} (NERP {:02}){}",
                reason.description().unwrap_or("unknown reason"),
                reason.0,
                if text.is_empty() {
                    String::new()
                } else {
                    format!(" {text}")
                }
            ),
            FileOutcome::Rejected {
                reason,
                retry,
                text,
            } => format!(
                "rejected       {name}: the partner refused the offer (SFID): {} (SFNA {:02}){}",
                if text.is_empty() {
                    reason.description().unwrap_or("unknown reason")
                } else {
                    text.as_str()
                },
                reason.0,
                if *retry { ", may be retried later" } else { "" }
            ),
            FileOutcome::Refused { reason, text } => format!(
                "refused        {name}: the partner refused it after the transfer (EFID): {} (EFNA {:02})",
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
    for e in &report.earlier {
        let r = &e.response;
        let name = match &e.local_file {
            Some(p) => p.display().to_string(),
            None => format!("{} {}", r.virtual_file_name, r.stamp.digits()),
        };
        let line = match &r.negative {
            None => format!("delivered      {name} (EERP received for an earlier run)"),
            Some(n) => format!(
                "NOT delivered  {name}: {} (NERP {:02}) {} (for an earlier run)",
                n.reason.description().unwrap_or("unknown reason"),
                n.reason.0,
                n.text
            ),
        };
        let _ = writeln!(out, "{line}");
    }
    for r in &report.received {
        let _ = writeln!(out, "received       {}", r.display());
    }
    let _ = out.flush();
    let level = report.negotiated.level;
    if a.description.is_some() && !level.is_v2() && !report.files.is_empty() {
        eprintln!(
            "warning: the partner answered with OFTP level {}, whose SFID has no description: \
             the files were offered without --description",
            level.0
        );
    }
    Ok(if report.all_delivered() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
