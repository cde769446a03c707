//! Configuration of an emulator run: mailboxes, users, app registrations, limits, lifetimes and
//! the initial fault settings.
//!
//! Everything has a default that gives a small, realistic tenant (one mailbox with 50 messages,
//! a public client and a confidential client); tests change only what they care about, either
//! through the public fields with `..Default::default()` or through the `with_*` builder methods.
//! This module only describes; [`crate::Emulator::start`] validates and builds the state.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crate::faults::FaultConfig;

/// Tenant id used when the configuration does not name one.
pub const DEFAULT_TENANT_ID: &str = "6e1b4a6c-0c84-4c2c-9d4a-3e0f2b1c5d7a";
/// Verified domain of the default tenant; default user principal names end with it.
pub const DEFAULT_TENANT_DOMAIN: &str = "emulator.test";
/// Client id of the default public client (no secret; redirect URIs `http://localhost` and
/// `http://127.0.0.1`, any port, as Entra ID allows for loopback redirects).
pub const DEFAULT_PUBLIC_CLIENT_ID: &str = "4b1f6c1e-6a8e-4c62-9f0a-1f5d7e3c2a01";
/// Client id of the default confidential client (secret [`DEFAULT_CLIENT_SECRET`]).
pub const DEFAULT_CONFIDENTIAL_CLIENT_ID: &str = "9c2e7d4b-3f1a-4e8b-8d6c-5a0b9e2f1c02";
/// Client secret of the default confidential client.
pub const DEFAULT_CLIENT_SECRET: &str = "emulator-client-secret";
/// Password of every default user (for the ROPC `password` grant).
pub const DEFAULT_PASSWORD: &str = "emulator-password";
/// User principal name of the default mailbox owner.
pub const DEFAULT_USER: &str = "adele.vance@emulator.test";

/// Complete configuration of one emulator instance.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Address to bind; the default `127.0.0.1:0` picks a free port.
    pub listen: SocketAddr,
    /// Tenant id (GUID) accepted in identity URLs besides `common`, `organizations` and
    /// [`EmulatorConfig::tenant_domain`].
    pub tenant_id: String,
    /// Verified domain of the tenant (also accepted in identity URLs).
    pub tenant_domain: String,
    /// Mailboxes and their owners.
    pub mailboxes: Vec<MailboxSpec>,
    /// Users without a mailbox (Graph answers `MailboxNotEnabledForRESTAPI` for them).
    pub users_without_mailbox: Vec<UserSpec>,
    /// Registered applications.
    pub apps: Vec<AppRegistration>,
    /// Largest page of `GET /users`, whatever `$top` asks for (Graph may send fewer items than
    /// `$top`; clients must follow `@odata.nextLink`). Default 999, Graph's maximum `$top`.
    pub user_list_max_page: usize,
    /// User who signs in at the authorize endpoint and approves device codes when the request
    /// names nobody (`login_hint` picks another known user). `None` = first mailbox owner.
    pub default_user: Option<String>,
    /// Delay added to every request (Graph and identity), while the request counts as in flight.
    pub latency: Duration,
    /// Maximum concurrent Graph requests per mailbox; more get 429 `ApplicationThrottled`
    /// "MailboxConcurrency". Real Graph: 4. `None` = unlimited.
    pub mailbox_concurrency_limit: Option<usize>,
    /// `Retry-After` (seconds) sent with concurrency 429s.
    pub concurrency_retry_after_secs: u64,
    /// Request budget per mailbox and fixed time window; beyond it, 429 `ApplicationThrottled`
    /// with `Retry-After` = seconds until the window ends. Real Graph: about 10,000 requests per
    /// 10 minutes ([`RateLimit::GRAPH`]). `None` (default) = no budget.
    pub mailbox_rate_limit: Option<RateLimit>,
    /// Lifetime of access tokens (Entra ID: 60-90 minutes). Make it short for expiry tests.
    pub access_token_lifetime: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_token_lifetime: Duration,
    /// Lifetime of authorization codes (Entra ID: 10 minutes).
    pub authorization_code_lifetime: Duration,
    /// Lifetime of delta and skip tokens; `None` = they never expire on their own (they can
    /// still be invalidated with [`crate::FaultsHandle::expire_delta_tokens`]).
    pub delta_token_lifetime: Option<Duration>,
    /// Number of polls answered `authorization_pending` before a device code is approved
    /// automatically (default 1: the first poll is pending, the second succeeds).
    pub device_code_polls_before_approval: u32,
    /// `interval` (seconds) announced by the device code endpoint (Entra ID: 5).
    pub device_code_interval_secs: u64,
    /// Lifetime of device codes (Entra ID: 900 s).
    pub device_code_lifetime: Duration,
    /// Fault injection active from the start (change it at run time with
    /// [`crate::Emulator::faults`]).
    pub faults: FaultConfig,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tenant_id: DEFAULT_TENANT_ID.to_owned(),
            tenant_domain: DEFAULT_TENANT_DOMAIN.to_owned(),
            mailboxes: vec![MailboxSpec::new(DEFAULT_USER)],
            users_without_mailbox: Vec::new(),
            apps: vec![
                AppRegistration::public_client(DEFAULT_PUBLIC_CLIENT_ID),
                AppRegistration::confidential_client(
                    DEFAULT_CONFIDENTIAL_CLIENT_ID,
                    DEFAULT_CLIENT_SECRET,
                ),
            ],
            user_list_max_page: 999,
            default_user: None,
            latency: Duration::ZERO,
            mailbox_concurrency_limit: Some(4),
            concurrency_retry_after_secs: 1,
            mailbox_rate_limit: None,
            access_token_lifetime: Duration::from_secs(3600),
            refresh_token_lifetime: Duration::from_secs(90 * 24 * 3600),
            authorization_code_lifetime: Duration::from_secs(600),
            delta_token_lifetime: None,
            device_code_polls_before_approval: 1,
            device_code_interval_secs: 1,
            device_code_lifetime: Duration::from_secs(900),
            faults: FaultConfig::default(),
        }
    }
}

impl EmulatorConfig {
    /// Replaces all mailboxes by the given ones.
    pub fn with_mailboxes(mut self, mailboxes: Vec<MailboxSpec>) -> Self {
        self.mailboxes = mailboxes;
        self
    }

    /// Adds one mailbox.
    pub fn with_mailbox(mut self, mailbox: MailboxSpec) -> Self {
        self.mailboxes.push(mailbox);
        self
    }

    /// Adds an application registration.
    pub fn with_app(mut self, app: AppRegistration) -> Self {
        self.apps.push(app);
        self
    }

    /// Sets the per-request latency.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Sets the per-mailbox concurrency limit (`None` = unlimited).
    pub fn with_concurrency_limit(mut self, limit: Option<usize>) -> Self {
        self.mailbox_concurrency_limit = limit;
        self
    }

    /// Sets the access token lifetime.
    pub fn with_access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.access_token_lifetime = lifetime;
        self
    }

    /// Sets the delta token lifetime.
    pub fn with_delta_token_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.delta_token_lifetime = lifetime;
        self
    }

    /// Sets the listen address.
    pub fn with_listen(mut self, listen: SocketAddr) -> Self {
        self.listen = listen;
        self
    }

    /// Sets the initial faults.
    pub fn with_faults(mut self, faults: FaultConfig) -> Self {
        self.faults = faults;
        self
    }
}

/// A request budget: at most `requests` Graph requests per mailbox in each `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub requests: u32,
    /// Window length (fixed windows, starting with the first request).
    pub window: Duration,
}

impl RateLimit {
    /// Graph's documented ceiling for mail: 10,000 requests per 10 minutes per app and mailbox.
    pub const GRAPH: RateLimit = RateLimit {
        requests: 10_000,
        window: Duration::from_secs(600),
    };
}

/// A user account without a mailbox.
#[derive(Debug, Clone)]
pub struct UserSpec {
    /// User principal name (sign-in name), e.g. `megan@emulator.test`.
    pub user_principal_name: String,
    /// Display name.
    pub display_name: String,
    /// Password for the ROPC grant; `None` = the password grant is refused for this user.
    pub password: Option<String>,
}

/// One mailbox and its owner.
#[derive(Debug, Clone)]
pub struct MailboxSpec {
    /// User principal name; also the primary SMTP address. Graph accepts it (case-insensitive)
    /// in `/users/{id}` besides the object id.
    pub user_principal_name: String,
    /// Display name of the owner.
    pub display_name: String,
    /// Object id (GUID) of the owner; `None` = derived deterministically from the UPN.
    pub object_id: Option<String>,
    /// Password for the ROPC grant (default [`DEFAULT_PASSWORD`]); `None` = refused.
    pub password: Option<String>,
    /// Folder tree below `msgfolderroot` (default: [`FolderSpec::default_tree`]).
    pub folders: Vec<FolderSpec>,
    /// Number of synthetic messages spread over the mail folders.
    pub messages: usize,
    /// Seed: the same seed (and spec) gives the same ids, dates and MIME bytes.
    pub seed: u64,
    /// Messages are received over this many years before [`MailboxSpec::end_date`].
    pub years: u32,
    /// End of the synthetic date range (fixed by default, so runs are deterministic).
    pub end_date: DateTime<Utc>,
    /// Every n-th message carries an attachment larger than 1 MiB (0 = none).
    pub large_every: u32,
    /// Share (0.0..=1.0) of messages that carry small attachments.
    pub attachment_ratio: f64,
}

impl MailboxSpec {
    /// A mailbox with defaults: 50 messages over 3 years, seed 1, default folder tree.
    pub fn new(user_principal_name: &str) -> Self {
        let local = user_principal_name
            .split('@')
            .next()
            .unwrap_or(user_principal_name);
        let display_name = local
            .split(['.', '_', '-'])
            .filter(|s| !s.is_empty())
            .map(|s| {
                let mut c = s.chars();
                match c.next() {
                    Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                    None => String::new(),
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            user_principal_name: user_principal_name.to_owned(),
            display_name,
            object_id: None,
            password: Some(DEFAULT_PASSWORD.to_owned()),
            folders: FolderSpec::default_tree(),
            messages: 50,
            seed: 1,
            years: 3,
            end_date: Utc
                .with_ymd_and_hms(2025, 11, 1, 0, 0, 0)
                .single()
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            large_every: 50,
            attachment_ratio: 0.15,
        }
    }

    /// Sets the number of messages.
    pub fn messages(mut self, n: usize) -> Self {
        self.messages = n;
        self
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the date span in years.
    pub fn years(mut self, years: u32) -> Self {
        self.years = years;
        self
    }

    /// Sets the display name.
    pub fn display_name(mut self, name: &str) -> Self {
        self.display_name = name.to_owned();
        self
    }

    /// Sets the folder tree.
    pub fn folders(mut self, folders: Vec<FolderSpec>) -> Self {
        self.folders = folders;
        self
    }

    /// Sets how often a large (>1 MiB) message occurs (0 = never).
    pub fn large_every(mut self, n: u32) -> Self {
        self.large_every = n;
        self
    }

    /// Sets the ROPC password (`None` = password grant refused).
    pub fn password(mut self, password: Option<&str>) -> Self {
        self.password = password.map(str::to_owned);
        self
    }
}

/// What kind of folder a [`FolderSpec`] creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderKind {
    /// A normal mail folder that holds messages.
    Mail,
    /// A `mailSearchFolder` showing every unread message of the mailbox (from other folders, so
    /// a client that does not skip search folders backs messages up twice).
    UnreadSearch,
}

/// One folder of the tree.
///
/// A top-level folder with well-known name `recoverableitemsdeletions` is placed outside the
/// `msgfolderroot` tree, as in Exchange: `GET mailFolders/recoverableitemsdeletions` works, but
/// no folder listing shows it and `/messages` does not include its messages.
#[derive(Debug, Clone)]
pub struct FolderSpec {
    /// Display name (may contain any character, including `/` and non-ASCII).
    pub display_name: String,
    /// Well-known name (`inbox`, `sentitems`, ...) usable in place of the id.
    pub well_known: Option<String>,
    /// Hidden folders appear only with `includeHiddenFolders=true`.
    pub hidden: bool,
    /// Relative share of the synthetic messages this folder receives (0 = none).
    pub weight: u32,
    /// Mail or search folder.
    pub kind: FolderKind,
    /// Child folders.
    pub children: Vec<FolderSpec>,
}

impl FolderSpec {
    /// A mail folder.
    pub fn mail(display_name: &str, weight: u32) -> Self {
        Self {
            display_name: display_name.to_owned(),
            well_known: None,
            hidden: false,
            weight,
            kind: FolderKind::Mail,
            children: Vec::new(),
        }
    }

    /// A well-known mail folder.
    pub fn well_known(display_name: &str, well_known: &str, weight: u32) -> Self {
        Self {
            well_known: Some(well_known.to_owned()),
            ..Self::mail(display_name, weight)
        }
    }

    /// Adds children.
    pub fn with_children(mut self, children: Vec<FolderSpec>) -> Self {
        self.children = children;
        self
    }

    /// Marks the folder hidden.
    pub fn hidden(mut self) -> Self {
        self.hidden = true;
        self
    }

    /// The default tree: Inbox (with nested folders, one with `/` and non-ASCII in its name),
    /// Sent Items, Drafts, Deleted Items, Archive, Junk Email, Outbox, a hidden folder and an
    /// "Unread Mail" search folder.
    pub fn default_tree() -> Vec<FolderSpec> {
        vec![
            FolderSpec::well_known("Inbox", "inbox", 40).with_children(vec![
                FolderSpec::mail("Projects", 8)
                    .with_children(vec![FolderSpec::mail("2024 / Q1 — Überblick", 4)]),
                FolderSpec::mail("Newsletters", 6),
                FolderSpec::mail("Empty folder", 0),
            ]),
            FolderSpec::well_known("Sent Items", "sentitems", 15),
            FolderSpec::well_known("Drafts", "drafts", 2),
            FolderSpec::well_known("Deleted Items", "deleteditems", 5),
            FolderSpec::well_known("Archive", "archive", 12),
            FolderSpec::well_known("Junk Email", "junkemail", 3),
            FolderSpec::well_known("Outbox", "outbox", 0),
            FolderSpec::mail("Quarantined Notes", 5).hidden(),
            FolderSpec {
                kind: FolderKind::UnreadSearch,
                ..FolderSpec::mail("Unread Mail", 0)
            },
        ]
    }
}

/// A registered application.
#[derive(Debug, Clone)]
pub struct AppRegistration {
    /// Application (client) id.
    pub client_id: String,
    /// Client secret; `None` = public client (no secret accepted or required).
    pub client_secret: Option<String>,
    /// Registered redirect URIs. `http://localhost...` and `http://127.0.0.1...` entries match
    /// any port, as Entra ID does for loopback addresses.
    pub redirect_uris: Vec<String>,
    /// Delegated permissions granted for the `.default` scope.
    pub delegated_permissions: Vec<String>,
    /// Application permissions (roles) of app-only tokens; mail endpoints need `Mail.Read` or
    /// `Mail.ReadWrite`, `GET /users` needs `User.Read.All` (or `User.ReadBasic.All`,
    /// `Directory.Read.All`, ...).
    pub application_permissions: Vec<String>,
}

impl AppRegistration {
    /// A public client with loopback redirect URIs.
    pub fn public_client(client_id: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: None,
            redirect_uris: vec!["http://localhost".to_owned(), "http://127.0.0.1".to_owned()],
            delegated_permissions: vec!["Mail.Read".to_owned(), "User.Read".to_owned()],
            application_permissions: Vec::new(),
        }
    }

    /// A confidential client with a secret, loopback redirect URIs and the application
    /// permissions a tenant-wide backup app is granted: `Mail.Read` and `User.Read.All` (to list
    /// users with `GET /users`).
    pub fn confidential_client(client_id: &str, secret: &str) -> Self {
        Self {
            client_secret: Some(secret.to_owned()),
            application_permissions: vec!["Mail.Read".to_owned(), "User.Read.All".to_owned()],
            ..Self::public_client(client_id)
        }
    }

    /// Adds a redirect URI.
    pub fn with_redirect_uri(mut self, uri: &str) -> Self {
        self.redirect_uris.push(uri.to_owned());
        self
    }
}
