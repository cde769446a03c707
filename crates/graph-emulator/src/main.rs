//! `graph-emulator`: runs the Graph mail and identity emulator on a local address and prints
//! the URLs and credentials to use. Stops on Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use graph_emulator::{
    AppRegistration, DEFAULT_CLIENT_SECRET, DEFAULT_CONFIDENTIAL_CLIENT_ID, DEFAULT_PASSWORD,
    DEFAULT_PUBLIC_CLIENT_ID, DEFAULT_TENANT_DOMAIN, Emulator, EmulatorConfig, FaultConfig,
    MailboxSpec, RateLimit, Trigger,
};

/// Local emulator of the Microsoft Graph mail and Microsoft identity platform endpoints.
#[derive(Debug, Parser)]
#[command(name = "graph-emulator", version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8787", env = "GRAPH_EMULATOR_LISTEN")]
    listen: SocketAddr,
    /// Number of mailboxes (user1@DOMAIN, user2@DOMAIN, ...; with 1: adele.vance@DOMAIN).
    #[arg(long, default_value_t = 1)]
    mailboxes: usize,
    /// Messages per mailbox.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Seed of the synthetic content (same seed = same ids and bytes).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Date span of the messages in years.
    #[arg(long, default_value_t = 3)]
    years: u32,
    /// Every N-th message gets an attachment over 1 MiB (0 = none).
    #[arg(long, default_value_t = 50)]
    large_every: u32,
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Concurrent requests allowed per mailbox (Graph: 4; 0 = unlimited).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    token_lifetime: u64,
    /// Delta token lifetime in seconds (default: no expiry).
    #[arg(long)]
    delta_token_lifetime: Option<u64>,
    /// Probability (0..1) of an injected 429 on Graph requests.
    #[arg(long, default_value_t = 0.0)]
    throttle_probability: f64,
    /// Probability (0..1) of an injected 503 on Graph requests.
    #[arg(long, default_value_t = 0.0)]
    unavailable_probability: f64,
    /// Probability (0..1) of a dropped connection on Graph requests.
    #[arg(long, default_value_t = 0.0)]
    drop_probability: f64,
    /// Probability (0..1) that a `$value` download is cut after half of its bytes.
    #[arg(long, default_value_t = 0.0)]
    truncate_probability: f64,
    /// Deliver `$value` bodies at most this many bytes per second (default: full speed).
    #[arg(long)]
    value_bytes_per_sec: Option<u64>,
    /// Request budget per mailbox per 10 minutes, like Graph's 10,000 (default: none).
    #[arg(long)]
    requests_per_10_min: Option<u32>,
    /// Retry-After seconds for injected 429 and 503 answers.
    #[arg(long, default_value_t = 1)]
    retry_after: u64,
    /// Extra redirect URI for the public client (loopback URIs on any port are always allowed).
    #[arg(long)]
    redirect_uri: Vec<String>,
}

fn probability(name: &str, p: f64) -> anyhow::Result<Trigger> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&p),
        "--{name} must be between 0 and 1, got {p}"
    );
    Ok(if p == 0.0 {
        Trigger::Never
    } else {
        Trigger::Probability(p)
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "graph_emulator=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    anyhow::ensure!(args.mailboxes >= 1, "--mailboxes must be at least 1");
    let mailboxes: Vec<MailboxSpec> = (0..args.mailboxes)
        .map(|i| {
            let upn = if args.mailboxes == 1 {
                format!("adele.vance@{DEFAULT_TENANT_DOMAIN}")
            } else {
                format!("user{}@{DEFAULT_TENANT_DOMAIN}", i + 1)
            };
            MailboxSpec::new(&upn)
                .messages(args.messages)
                .seed(args.seed.wrapping_add(i as u64))
                .years(args.years)
                .large_every(args.large_every)
        })
        .collect();
    let mut config = EmulatorConfig::default()
        .with_listen(args.listen)
        .with_mailboxes(mailboxes)
        .with_latency(Duration::from_millis(args.latency_ms))
        .with_concurrency_limit((args.concurrency > 0).then_some(args.concurrency))
        .with_access_token_lifetime(Duration::from_secs(args.token_lifetime))
        .with_delta_token_lifetime(args.delta_token_lifetime.map(Duration::from_secs))
        .with_faults(FaultConfig {
            throttle: probability("throttle-probability", args.throttle_probability)?,
            throttle_retry_after_secs: args.retry_after,
            unavailable: probability("unavailable-probability", args.unavailable_probability)?,
            unavailable_retry_after_secs: Some(args.retry_after),
            drop_connection: probability("drop-probability", args.drop_probability)?,
            truncate_value: probability("truncate-probability", args.truncate_probability)?,
            value_bytes_per_sec: args.value_bytes_per_sec,
            ..FaultConfig::default()
        });
    config.mailbox_rate_limit = args.requests_per_10_min.map(|requests| RateLimit {
        requests,
        window: Duration::from_secs(600),
    });
    config.apps = vec![
        args.redirect_uri.iter().fold(
            AppRegistration::public_client(DEFAULT_PUBLIC_CLIENT_ID),
            |a, u| a.with_redirect_uri(u),
        ),
        AppRegistration::confidential_client(DEFAULT_CONFIDENTIAL_CLIENT_ID, DEFAULT_CLIENT_SECRET),
    ];
    let emu = Emulator::start(config)
        .await
        .with_context(|| format!("starting the emulator on {}", args.listen))?;
    let users: Vec<String> = emu
        .mailboxes()
        .iter()
        .map(|m| {
            format!(
                "{} ({} messages)",
                m.user_principal_name(),
                m.message_count()
            )
        })
        .collect();
    // These are the emulator's fixed, public test credentials, not secrets.
    println!("Graph emulator running");
    println!("  Graph URL:        {}", emu.graph_url());
    println!("  Authority URL:    {}", emu.authority_url());
    println!("  Tenant id:        {}", emu.tenant_id());
    println!("  Token URL:        {}", emu.token_url());
    println!("  Authorize URL:    {}", emu.authorize_url());
    println!("  Device code URL:  {}", emu.devicecode_url());
    println!(
        "  Public client id: {DEFAULT_PUBLIC_CLIENT_ID} (no secret; redirect http://localhost:any-port)"
    );
    println!(
        "  Confidential client: {DEFAULT_CONFIDENTIAL_CLIENT_ID} / secret {DEFAULT_CLIENT_SECRET}"
    );
    println!("  Users (password {DEFAULT_PASSWORD}):");
    for u in users {
        println!("    {u}");
    }
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    emu.shutdown().await;
    Ok(())
}
