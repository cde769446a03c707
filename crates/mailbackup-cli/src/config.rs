//! Settings: command-line flags merged over the TOML config file (`--config`).
//!
//! Every run option exists both as a flag and as a config key (documented in README.md);
//! a flag wins over the file. Secrets are never flags: they come from environment variables or
//! files (`client_secret_file`, `password_file`, `authorization_file`).

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use mailbackup::Index;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Environment variable holding the client secret.
pub(crate) const ENV_CLIENT_SECRET: &str = "MAILBACKUP_CLIENT_SECRET";
/// Environment variable holding the password (password flow).
pub(crate) const ENV_PASSWORD: &str = "MAILBACKUP_PASSWORD";
/// Environment variable holding a ready authorization (`Bearer ...`, the seed's Authorization).
pub(crate) const ENV_AUTHORIZATION: &str = "MAILBACKUP_AUTHORIZATION";

/// The OAuth flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Flow {
    /// `login`: device code without a display, browser otherwise; `run`: the token cache.
    Auto,
    /// Authorization code with PKCE through the system browser and a loopback redirect.
    Browser,
    /// Device code (sign in on another device).
    DeviceCode,
    /// Client credentials (app-only; needs a client secret and a specific tenant).
    ClientCredentials,
    /// Resource owner password (needs username and password; insecure, tenant-specific).
    Password,
    /// Implicit grant (insecure; no refresh token).
    Implicit,
    /// Web profile: print the authorization URL, then paste the redirect URL (or code).
    Web,
}

/// OAuth settings (flags shared by `login` and `run`).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct AuthArgs {
    /// Authority URL without tenant [config: auth.authority] (default https://login.microsoftonline.com).
    #[arg(long)]
    pub(crate) authority: Option<String>,
    /// Tenant id or domain, or common/organizations [config: auth.tenant] (default common).
    #[arg(long)]
    pub(crate) tenant: Option<String>,
    /// Application (client) id of the app registration [config: auth.client_id].
    #[arg(long)]
    pub(crate) client_id: Option<String>,
    /// Scopes, space or comma separated [config: auth.scopes].
    #[arg(long)]
    pub(crate) scopes: Option<String>,
    /// OAuth flow [config: auth.flow].
    #[arg(long, value_enum)]
    pub(crate) flow: Option<Flow>,
    /// Token cache file [config: auth.token_cache] (default ~/.config/mailbackup/token-cache.json).
    #[arg(long)]
    pub(crate) token_cache: Option<PathBuf>,
    /// Username for the password flow [config: auth.username].
    #[arg(long)]
    pub(crate) username: Option<String>,
    /// File holding the client secret [config: auth.client_secret_file] (or env MAILBACKUP_CLIENT_SECRET).
    #[arg(long)]
    pub(crate) client_secret_file: Option<PathBuf>,
    /// File holding the password [config: auth.password_file] (or env MAILBACKUP_PASSWORD).
    #[arg(long)]
    pub(crate) password_file: Option<PathBuf>,
    /// File holding a ready `Bearer ...` authorization [config: auth.authorization_file] (or env MAILBACKUP_AUTHORIZATION).
    #[arg(long)]
    pub(crate) authorization_file: Option<PathBuf>,
    /// Loopback redirect port for browser logins, 0 = any [config: auth.redirect_port].
    #[arg(long)]
    pub(crate) redirect_port: Option<u16>,
    /// Redirect URI of the web flow [config: auth.redirect_uri].
    #[arg(long)]
    pub(crate) redirect_uri: Option<String>,
    /// Do not open a browser; print the URL [config: auth.no_browser].
    #[arg(long)]
    pub(crate) no_browser: bool,
    /// Seconds to wait for the browser to come back [config: auth.browser_timeout] (default 300).
    #[arg(long)]
    pub(crate) browser_timeout: Option<u64>,
    /// PKCE method for the browser flow: S256, plain or none [config: auth.pkce].
    #[arg(long)]
    pub(crate) pkce: Option<String>,
}

/// `[auth]` table of the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthFile {
    pub(crate) authority: Option<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) scopes: Option<Vec<String>>,
    pub(crate) flow: Option<Flow>,
    pub(crate) token_cache: Option<PathBuf>,
    pub(crate) username: Option<String>,
    pub(crate) client_secret_file: Option<PathBuf>,
    pub(crate) password_file: Option<PathBuf>,
    pub(crate) authorization_file: Option<PathBuf>,
    pub(crate) redirect_port: Option<u16>,
    pub(crate) redirect_uri: Option<String>,
    pub(crate) no_browser: Option<bool>,
    pub(crate) browser_timeout: Option<u64>,
    pub(crate) pkce: Option<String>,
}

/// Where a backup is, for the commands that read one (`status`, `verify`, `export`, `search`,
/// `show`, `prune`, `restore`): its folder and its index.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct BackupArg {
    /// The backup folder [config: data_folder].
    #[arg(long, short = 'd')]
    pub(crate) data_folder: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) index: IndexArg,
}

/// The data folder of the flag, else of the config file.
pub(crate) fn data_folder(flag: Option<PathBuf>, file: &FileConfig) -> Result<PathBuf> {
    flag.or_else(|| file.data_folder.clone())
        .context("no data folder: give --data-folder DIR or data_folder in the config file")
}

/// `--index`: where a backup's index is, for every command that opens one.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct IndexArg {
    /// The index in PostgreSQL, shared by several machines:
    /// postgres://USER@HOST:PORT/DATABASE?OPTIONS (password after USER: or in PGPASSWORD)
    /// [config: index]. TLS options: sslmode=disable|prefer|require|verify-ca|verify-full
    /// (default prefer; use verify-full across networks), sslrootcert=FILE (PEM CA certificates
    /// that signed the server's certificate, or `system`), sslcert=FILE and sslkey=FILE (a
    /// client certificate and its key, PEM, when the server asks for one); README.md, "The
    /// index in PostgreSQL". Default: DATA/.meta/index.sqlite.
    #[arg(long = "index", value_name = "URL")]
    pub(crate) index: Option<String>,
}

impl IndexArg {
    /// Opens the PostgreSQL index of the flag, else of the config file's `index`; `None`: the
    /// data folder's SQLite index. Connects on a blocking thread.
    pub(crate) async fn open(&self, file: &FileConfig) -> Result<Option<Arc<dyn Index>>> {
        let Some(url) = self.index.clone().or_else(|| file.index.clone()) else {
            return Ok(None);
        };
        let ix =
            tokio::task::spawn_blocking(move || mailbackup::PostgresIndex::open(&url)).await??;
        Ok(Some(Arc::new(ix)))
    }
}

/// Run options (flags of `run`).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) index: IndexArg,
    /// Folder the messages are saved into (seed DataFolder) [config: data_folder].
    #[arg(long, short = 'd')]
    pub(crate) data_folder: Option<PathBuf>,
    /// Folder of the lock file (seed WorkingFolder) [config: working_folder] (default DATA/.meta).
    #[arg(long)]
    pub(crate) working_folder: Option<PathBuf>,
    /// First creation date to back up, yyyy/MM/dd inclusive (seed StartDate) [config: start_date].
    #[arg(long)]
    pub(crate) start_date: Option<String>,
    /// Last creation date to back up, yyyy/MM/dd inclusive (seed EndDate) [config: end_date].
    #[arg(long)]
    pub(crate) end_date: Option<String>,
    /// OData $filter sent to Graph (seed Filter) [config: filter].
    #[arg(long)]
    pub(crate) filter: Option<String>,
    /// One mailbox by id or UPN, e.g. a shared mailbox (seed UserId) [config: user_id].
    #[arg(long)]
    pub(crate) user_id: Option<String>,
    /// Several mailboxes, comma separated or repeated [config: users].
    #[arg(long, value_delimiter = ',')]
    pub(crate) users: Vec<String>,
    /// Every user of the tenant (app-only token) [config: all_users].
    #[arg(long)]
    pub(crate) all_users: bool,
    /// Simultaneous connections, at most 4 used per mailbox (seed MaxConnections, default 5) [config: max_connections].
    #[arg(long)]
    pub(crate) max_connections: Option<usize>,
    /// Mailboxes backed up at once (default 2) [config: parallel_mailboxes].
    #[arg(long)]
    pub(crate) parallel_mailboxes: Option<usize>,
    /// Page size of listings (seed MessagePageSize, default 500) [config: message_page_size].
    #[arg(long)]
    pub(crate) message_page_size: Option<u32>,
    /// Retries of a failing request (seed MaxRetryCount, default 5) [config: max_retry_count].
    #[arg(long)]
    pub(crate) max_retry_count: Option<u32>,
    /// Seconds between retries (seed RetryInterval, default 3) [config: retry_interval].
    #[arg(long)]
    pub(crate) retry_interval: Option<f64>,
    /// Remove local copies of messages deleted remotely (seed SyncDeletes) [config: sync_deletes].
    #[arg(long)]
    pub(crate) sync_deletes: bool,
    /// With --sync-deletes: move local copies here instead of deleting them [config: quarantine_folder].
    #[arg(long)]
    pub(crate) quarantine_folder: Option<PathBuf>,
    /// With --quarantine-folder: purge quarantined copies after N days, at the end of each run
    /// [config: keep_deleted_days].
    #[arg(long, value_name = "N")]
    pub(crate) keep_deleted_days: Option<u32>,
    /// Total time limit of the run in seconds (default 86400) [config: time_limit].
    #[arg(long)]
    pub(crate) time_limit: Option<u64>,
    /// Timeout of one request in seconds (default 600) [config: request_timeout].
    #[arg(long)]
    pub(crate) request_timeout: Option<u64>,
    /// Graph base URL [config: graph_url] (default https://graph.microsoft.com/v1.0).
    #[arg(long)]
    pub(crate) graph_url: Option<String>,
    /// Use REST ids instead of immutable ids [config: immutable_ids = false]. A message moved to
    /// another folder then gets a new id and is saved again; its old file stays unless
    /// --sync-deletes removes it (reported as moved).
    #[arg(long)]
    pub(crate) no_immutable_ids: bool,
    /// Continue an aborted or crashed run (seed ResumeBackup; every run resumes anyway).
    #[arg(long)]
    pub(crate) resume: bool,
    /// This worker's id among workers sharing the mailboxes through the index (default:
    /// HOST:PID) [config: worker_id]. Workers always share with --index postgres://...; with
    /// the SQLite index, giving an id turns the leases on (one machine).
    #[arg(long, value_name = "ID")]
    pub(crate) worker_id: Option<String>,
    /// Seconds a worker's mailbox lease lasts without renewal: a killed worker's mailboxes are
    /// taken over that long after its last heartbeat (default 60) [config: lease_seconds].
    #[arg(long, value_name = "SECS")]
    pub(crate) lease_seconds: Option<f64>,
    /// Graph requests per second that all workers of the app share, split evenly between the
    /// live workers (default 2000) [config: tenant_requests_per_second].
    #[arg(long, value_name = "N")]
    pub(crate) tenant_requests_per_second: Option<u32>,
    /// Write a JSON summary of the run here, also when it fails (README.md, "Run reports")
    /// [config: report].
    #[arg(long, value_name = "FILE.json")]
    pub(crate) report: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) notify: crate::notify::NotifyArgs,
}

/// The config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) data_folder: Option<PathBuf>,
    pub(crate) index: Option<String>,
    pub(crate) working_folder: Option<PathBuf>,
    pub(crate) start_date: Option<String>,
    pub(crate) end_date: Option<String>,
    pub(crate) filter: Option<String>,
    pub(crate) user_id: Option<String>,
    pub(crate) users: Option<Vec<String>>,
    pub(crate) all_users: Option<bool>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) parallel_mailboxes: Option<usize>,
    pub(crate) message_page_size: Option<u32>,
    pub(crate) max_retry_count: Option<u32>,
    pub(crate) retry_interval: Option<f64>,
    pub(crate) sync_deletes: Option<bool>,
    pub(crate) quarantine_folder: Option<PathBuf>,
    pub(crate) keep_deleted_days: Option<u32>,
    pub(crate) time_limit: Option<u64>,
    pub(crate) request_timeout: Option<u64>,
    pub(crate) graph_url: Option<String>,
    pub(crate) immutable_ids: Option<bool>,
    pub(crate) store: Option<String>,
    pub(crate) report: Option<PathBuf>,
    pub(crate) worker_id: Option<String>,
    pub(crate) lease_seconds: Option<f64>,
    pub(crate) tenant_requests_per_second: Option<u32>,
    #[serde(default)]
    pub(crate) auth: AuthFile,
    #[serde(default)]
    pub(crate) notify: crate::notify::NotifyFile,
}

impl FileConfig {
    pub(crate) fn load(path: Option<&Path>) -> Result<FileConfig> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("config file {} is not valid", path.display()))
    }
}

/// OAuth settings after merging.
#[derive(Debug, Clone)]
pub(crate) struct AuthSettings {
    pub(crate) authority: Option<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) scopes: Option<Vec<String>>,
    pub(crate) flow: Flow,
    pub(crate) token_cache: PathBuf,
    pub(crate) username: Option<String>,
    pub(crate) client_secret_file: Option<PathBuf>,
    pub(crate) password_file: Option<PathBuf>,
    pub(crate) authorization_file: Option<PathBuf>,
    pub(crate) redirect_port: Option<u16>,
    pub(crate) redirect_uri: Option<String>,
    pub(crate) no_browser: bool,
    pub(crate) browser_timeout: Option<u64>,
    pub(crate) pkce: Option<String>,
}

fn default_token_cache() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("mailbackup").join("token-cache.json")
}

fn split_scopes(s: &str) -> Vec<String> {
    s.split([' ', ','])
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

pub(crate) fn merge_auth(a: &AuthArgs, f: &AuthFile) -> AuthSettings {
    AuthSettings {
        authority: a.authority.clone().or_else(|| f.authority.clone()),
        tenant: a.tenant.clone().or_else(|| f.tenant.clone()),
        client_id: a.client_id.clone().or_else(|| f.client_id.clone()),
        scopes: a
            .scopes
            .as_deref()
            .map(split_scopes)
            .or_else(|| f.scopes.clone()),
        flow: a.flow.or(f.flow).unwrap_or(Flow::Auto),
        token_cache: a
            .token_cache
            .clone()
            .or_else(|| f.token_cache.clone())
            .unwrap_or_else(default_token_cache),
        username: a.username.clone().or_else(|| f.username.clone()),
        client_secret_file: a
            .client_secret_file
            .clone()
            .or_else(|| f.client_secret_file.clone()),
        password_file: a.password_file.clone().or_else(|| f.password_file.clone()),
        authorization_file: a
            .authorization_file
            .clone()
            .or_else(|| f.authorization_file.clone()),
        redirect_port: a.redirect_port.or(f.redirect_port),
        redirect_uri: a.redirect_uri.clone().or_else(|| f.redirect_uri.clone()),
        no_browser: a.no_browser || f.no_browser.unwrap_or(false),
        browser_timeout: a.browser_timeout.or(f.browser_timeout),
        pkce: a.pkce.clone().or_else(|| f.pkce.clone()),
    }
}

/// The `--store` URL, else the `store` key.
pub(crate) fn store_url<'a>(flag: Option<&'a str>, f: &'a FileConfig) -> Option<&'a str> {
    flag.or(f.store.as_deref())
}

/// The message store of `--store URL` (or the `store` key; default: files in `data_folder`,
/// quarantining into `quarantine`). An object store is checked to answer before it is used.
pub(crate) async fn open_store(
    flag: Option<&str>,
    f: &FileConfig,
    data_folder: &Path,
    quarantine: Option<&Path>,
) -> Result<std::sync::Arc<dyn mailbackup::MessageStore>> {
    let url = store_url(flag, f);
    Ok(mailbackup::store::url::open(url, data_folder, quarantine).await?)
}

/// Builds the backup from flags over file values.
pub(crate) fn backup_builder(
    r: &RunArgs,
    f: &FileConfig,
    tokens: std::sync::Arc<dyn mailbackup::TokenSource>,
) -> Result<mailbackup::BackupBuilder> {
    let data_folder = data_folder(r.data_folder.clone(), f)?;
    let users: Vec<String> = if !r.users.is_empty() {
        r.users.clone()
    } else {
        f.users.clone().unwrap_or_default()
    };
    let user_id = r.user_id.clone().or_else(|| f.user_id.clone());
    let all_users = r.all_users || f.all_users.unwrap_or(false);
    let chosen = [user_id.is_some(), !users.is_empty(), all_users]
        .iter()
        .filter(|x| **x)
        .count();
    if chosen > 1 {
        bail!("choose one of user_id, users and all_users");
    }
    let mailboxes = if all_users {
        mailbackup::Mailboxes::AllUsers
    } else if let Some(u) = user_id {
        mailbackup::Mailboxes::User(u)
    } else if !users.is_empty() {
        mailbackup::Mailboxes::Users(users)
    } else {
        mailbackup::Mailboxes::Me
    };
    let mut b = mailbackup::Backup::builder(data_folder, tokens).mailboxes(mailboxes);
    if let Some(v) = r
        .working_folder
        .clone()
        .or_else(|| f.working_folder.clone())
    {
        b = b.working_folder(v);
    }
    if let Some(v) = r.start_date.clone().or_else(|| f.start_date.clone()) {
        b = b.start_date(v);
    }
    if let Some(v) = r.end_date.clone().or_else(|| f.end_date.clone()) {
        b = b.end_date(v);
    }
    if let Some(v) = r.filter.clone().or_else(|| f.filter.clone()) {
        b = b.filter(v);
    }
    if let Some(v) = r.max_connections.or(f.max_connections) {
        b = b.max_connections(v);
    }
    if let Some(v) = r.parallel_mailboxes.or(f.parallel_mailboxes) {
        b = b.parallel_mailboxes(v);
    }
    if let Some(v) = r.message_page_size.or(f.message_page_size) {
        b = b.message_page_size(v);
    }
    if let Some(v) = r.max_retry_count.or(f.max_retry_count) {
        b = b.max_retry_count(v);
    }
    if let Some(v) = r.retry_interval.or(f.retry_interval) {
        if !(0.0..=3600.0).contains(&v) {
            bail!("retry_interval must be between 0 and 3600 seconds, not {v}");
        }
        b = b.retry_interval(std::time::Duration::from_secs_f64(v));
    }
    if r.sync_deletes || f.sync_deletes.unwrap_or(false) {
        b = b.sync_deletes(true);
    }
    if let Some(v) = r
        .quarantine_folder
        .clone()
        .or_else(|| f.quarantine_folder.clone())
    {
        b = b.quarantine_folder(v);
    }
    if let Some(v) = r.keep_deleted_days.or(f.keep_deleted_days) {
        b = b.keep_deleted_days(v);
    }
    if let Some(v) = r.time_limit.or(f.time_limit) {
        b = b.time_limit(std::time::Duration::from_secs(v));
    }
    if let Some(v) = r.request_timeout.or(f.request_timeout) {
        b = b.request_timeout(std::time::Duration::from_secs(v.max(1)));
    }
    if let Some(v) = r.graph_url.clone().or_else(|| f.graph_url.clone()) {
        b = b.graph_url(v);
    }
    if r.no_immutable_ids || f.immutable_ids == Some(false) {
        b = b.immutable_ids(false);
    }
    if let Some(w) = worker_options(r, f)? {
        b = b.worker(w);
    }
    Ok(b)
}

/// The worker settings: on with a PostgreSQL index or a worker id.
fn worker_options(r: &RunArgs, f: &FileConfig) -> Result<Option<mailbackup::WorkerOptions>> {
    let id = r.worker_id.clone().or_else(|| f.worker_id.clone());
    let shared = r.index.index.is_some() || f.index.is_some();
    let lease = r.lease_seconds.or(f.lease_seconds);
    let budget = r
        .tenant_requests_per_second
        .or(f.tenant_requests_per_second);
    if id.is_none() && !shared {
        if lease.is_some() || budget.is_some() {
            bail!(
                "lease_seconds and tenant_requests_per_second apply to workers sharing an index: \
                 give --index postgres://... (or --worker-id ID)"
            );
        }
        return Ok(None);
    }
    let mut w =
        mailbackup::WorkerOptions::new(id.unwrap_or_else(mailbackup::WorkerOptions::default_id));
    if let Some(v) = lease {
        if !v.is_finite() || !(0.0..=86_400.0).contains(&v) {
            bail!("lease_seconds must be between 1 and 86400 seconds, not {v}");
        }
        w.lease = std::time::Duration::from_secs_f64(v);
    }
    if let Some(v) = budget {
        w.tenant_requests_per_second = v;
    }
    Ok(Some(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `mailbackup.toml: |` blocks of a Kubernetes example (a ConfigMap's data): the
    /// lines indented below the key, unindented.
    fn embedded_configs(yaml: &str) -> Vec<String> {
        let mut configs = Vec::new();
        let mut lines = yaml.lines().peekable();
        while let Some(line) = lines.next() {
            let key = line.trim_start();
            if !(key.ends_with(".toml: |")) {
                continue;
            }
            let indent = line.len() - key.len();
            let mut block = Vec::new();
            while let Some(next) = lines.peek() {
                let deeper = next.len() - next.trim_start().len() > indent;
                if !(next.trim().is_empty() || deeper) {
                    break;
                }
                block.push(next.get(indent + 2..).unwrap_or("").to_owned());
                lines.next();
            }
            configs.push(block.join("\n"));
        }
        configs
    }

    /// Every configuration the Kubernetes examples in `contrib/` carry is one this build
    /// accepts (unknown keys are refused), so the examples cannot drift from the options.
    #[test]
    fn the_configurations_of_the_kubernetes_examples_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/kubernetes");
        for name in ["cronjob.yaml", "indexed-job.yaml"] {
            let yaml = std::fs::read_to_string(dir.join(name)).unwrap();
            let configs = embedded_configs(&yaml);
            assert!(!configs.is_empty(), "{name}: no mailbackup.toml found");
            for text in configs {
                let file = tempfile::NamedTempFile::new().unwrap();
                std::fs::write(file.path(), &text).unwrap();
                let config = FileConfig::load(Some(file.path()))
                    .unwrap_or_else(|e| panic!("{name}: {e:#}\n{text}"));
                assert!(config.all_users == Some(true), "{name}: all_users");
                let index = config.index.as_deref().unwrap_or_default();
                assert!(
                    index.contains("sslmode=verify-full"),
                    "{name}: the index URL checks the server's certificate: {index}"
                );
            }
        }
    }

    #[test]
    fn index_help_lists_the_postgres_tls_options() {
        use clap::CommandFactory;
        let mut cli = crate::Cli::command();
        for sub in ["run", "status", "verify", "restore"] {
            let help = cli
                .find_subcommand_mut(sub)
                .unwrap()
                .render_long_help()
                .to_string();
            let index = &help[help.find("--index <URL>").expect("--index in help")..];
            let index = &index[..index.find("\n\n").unwrap_or(index.len())];
            for option in [
                "sslmode=disable|prefer|require|verify-ca|verify-full",
                "sslrootcert=FILE",
                "sslcert=FILE",
                "sslkey=FILE",
            ] {
                assert!(index.contains(option), "{sub} --help: {option} in {index}");
            }
        }
    }

    #[test]
    fn config_file_parses_and_rejects_unknown_keys() {
        let f: FileConfig = toml::from_str(
            "data_folder = '/b'\nmax_connections = 3\nquarantine_folder = '/q'\n[auth]\nclient_id = 'x'\nflow = 'device-code'\n",
        )
        .unwrap();
        assert_eq!(f.max_connections, Some(3));
        assert_eq!(f.quarantine_folder, Some(PathBuf::from("/q")));
        assert_eq!(f.auth.flow, Some(Flow::DeviceCode));
        let f: FileConfig = toml::from_str("store = 's3://bucket/mail?region=eu-west-1'").unwrap();
        assert_eq!(
            f.store.as_deref(),
            Some("s3://bucket/mail?region=eu-west-1")
        );
        assert!(toml::from_str::<FileConfig>("data_fodler = '/b'").is_err());
    }

    #[test]
    fn flags_win_over_file() {
        let f: FileConfig = toml::from_str("[auth]\ntenant = 'file'\nscopes = ['a']").unwrap();
        let a = AuthArgs {
            tenant: Some("flag".into()),
            ..Default::default()
        };
        let m = merge_auth(&a, &f.auth);
        assert_eq!(m.tenant.as_deref(), Some("flag"));
        assert_eq!(m.scopes, Some(vec!["a".to_string()]));
        assert_eq!(
            split_scopes("Mail.Read, offline_access"),
            vec!["Mail.Read", "offline_access"]
        );
    }
}
