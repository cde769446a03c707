//! The `oftp.toml` configuration file: reading, checking, and first-run generation.
//!
//! Relative paths in the file are relative to the directory that holds the file, so a data
//! directory can be moved as a whole. Every key is documented in the root README (section "oftp").

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use oftp::config::{
    AddressPolicy, AddressRule, LocalIdentity, Partner, PartnerTable, Password, ServerSettings,
    SessionLimits,
};
use oftp::security::LocalSecurityConfig;
use oftp::store::NameFormat;
use oftp_gateway::{GatewaySection, PartnerEntry};

use crate::security::TlsSection;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Default location of the generated configuration.
pub(crate) const DEFAULT_CONFIG: &str = "oftp-data/oftp.toml";

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// Who we are.
    pub(crate) local: LocalIdentity,
    /// Server and storage settings.
    #[serde(default)]
    pub(crate) server: ServerSection,
    /// Session parameters we offer.
    #[serde(default)]
    pub(crate) session: SessionLimits,
    /// Trading partners: the runtime's keys and the gateway's, one entry each.
    #[serde(default)]
    pub(crate) partners: Vec<PartnerEntry>,
    /// `[security]`: our certificates per purpose, trusted CAs, CRLs.
    #[serde(default, skip_serializing_if = "is_default")]
    pub(crate) security: LocalSecurityConfig,
    /// `[tls]`: the TLS listener.
    #[serde(default, skip_serializing_if = "TlsSection::is_default")]
    pub(crate) tls: TlsSection,
    /// `[gateway]`: outbox watching and the other gateway-wide keys.
    #[serde(default, skip_serializing_if = "GatewaySection::is_default")]
    pub(crate) gateway: GatewaySection,
    /// `[http]`: the REST API, metrics, health checks and web console of `oftp serve`.
    #[serde(default, skip_serializing_if = "oftp_http::HttpSettings::is_default")]
    pub(crate) http: oftp_http::HttpSettings,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServerSection {
    pub(crate) listen: SocketAddr,
    pub(crate) data_dir: PathBuf,
    pub(crate) max_connections: usize,
    pub(crate) backlog: u32,
    pub(crate) inactivity_timeout_secs: u64,
    pub(crate) idle_timeout_secs: u64,
    pub(crate) shutdown_grace_secs: u64,
    pub(crate) login_timeout_secs: u64,
    pub(crate) max_unauthenticated_per_address: usize,
    pub(crate) max_sessions_per_address: usize,
    pub(crate) free_space_reserve_mib: u64,
    pub(crate) allowed_clients: Vec<AddressRule>,
    pub(crate) blocked_clients: Vec<AddressRule>,
    pub(crate) received_file_name_format: String,
    pub(crate) overwrite: bool,
    pub(crate) delete_on_error: bool,
    /// Days after which a partial reception nobody resumed is removed; 0 keeps them.
    pub(crate) partial_retention_days: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        let s = ServerSettings::default();
        Self {
            listen: s.listen,
            data_dir: PathBuf::from("."),
            max_connections: s.max_connections,
            backlog: s.backlog,
            inactivity_timeout_secs: s.inactivity_timeout.as_secs(),
            idle_timeout_secs: 0,
            shutdown_grace_secs: s.shutdown_grace.as_secs(),
            login_timeout_secs: s.login_timeout.as_secs(),
            max_unauthenticated_per_address: s.max_unauthenticated_per_address,
            max_sessions_per_address: s.max_sessions_per_address,
            free_space_reserve_mib: s.free_space_reserve >> 20,
            allowed_clients: Vec::new(),
            blocked_clients: Vec::new(),
            received_file_name_format: oftp::store::DEFAULT_NAME_FORMAT.to_owned(),
            overwrite: false,
            delete_on_error: true,
            partial_retention_days: oftp::partials::DEFAULT_PARTIAL_RETENTION.as_secs() / 86_400,
        }
    }
}

impl ServerSection {
    /// How received files are stored: `overwrite`, `delete_on_error`,
    /// `partial_retention_days` (0 = never remove).
    pub(crate) fn store_policy(&self) -> oftp::store::StorePolicy {
        oftp::store::StorePolicy {
            overwrite: self.overwrite,
            delete_on_error: self.delete_on_error,
            partial_retention: (self.partial_retention_days > 0)
                .then(|| Duration::from_secs(self.partial_retention_days.saturating_mul(86_400))),
        }
    }
}

/// A configuration read from disk, with its paths resolved.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub(crate) file: FileConfig,
    /// Absolute data directory.
    pub(crate) data_dir: PathBuf,
    pub(crate) partners: PartnerTable,
    pub(crate) name_format: NameFormat,
}

impl Loaded {
    /// Listener settings.
    pub(crate) fn server_settings(&self) -> ServerSettings {
        let s = &self.file.server;
        ServerSettings {
            listen: s.listen,
            backlog: s.backlog,
            max_connections: s.max_connections,
            addresses: AddressPolicy {
                allowed: s.allowed_clients.clone(),
                blocked: s.blocked_clients.clone(),
            },
            inactivity_timeout: Duration::from_secs(s.inactivity_timeout_secs),
            idle_timeout: (s.idle_timeout_secs > 0)
                .then(|| Duration::from_secs(s.idle_timeout_secs)),
            shutdown_grace: Duration::from_secs(s.shutdown_grace_secs),
            login_timeout: Duration::from_secs(s.login_timeout_secs),
            max_unauthenticated_per_address: s.max_unauthenticated_per_address,
            max_sessions_per_address: s.max_sessions_per_address,
            free_space_reserve: s.free_space_reserve_mib.saturating_mul(1 << 20),
        }
    }
}

/// Reads and checks a configuration file.
pub(crate) fn load(path: &Path) -> Result<Loaded> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration {}", path.display()))?;
    let mut file: FileConfig = toml::from_str(&text)
        .with_context(|| format!("invalid configuration {}", path.display()))?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let base = std::path::absolute(base)
        .with_context(|| format!("cannot resolve the directory of {}", path.display()))?;
    // `base.join(".")` would print as `dir/.`; drop `.` components for readable paths.
    let data_dir: PathBuf = base
        .join(&file.server.data_dir)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    crate::security::resolve_paths(
        &base,
        &mut file.security,
        &mut file.tls,
        file.partners.iter_mut().map(|e| &mut e.partner),
    );
    file.gateway.alerts.resolve_paths(&base);
    for e in file.partners.iter_mut() {
        let processed = e
            .gateway
            .on_receive
            .as_mut()
            .and_then(|c| c.processed_dir.as_mut());
        let p = &mut e.partner;
        for dir in [&mut p.inbox, &mut p.outbox]
            .into_iter()
            .flatten()
            .chain(processed)
        {
            if dir.is_relative() {
                *dir = data_dir.join(&*dir);
            }
        }
    }
    let ctx = |what: &str| format!("{}: {what}", path.display());
    file.local.validate().with_context(|| ctx("[local]"))?;
    file.session.validate().with_context(|| ctx("[session]"))?;
    let server = &file.server;
    for (key, value) in [
        ("max_connections", server.max_connections as u64),
        (
            "max_unauthenticated_per_address",
            server.max_unauthenticated_per_address as u64,
        ),
        (
            "max_sessions_per_address",
            server.max_sessions_per_address as u64,
        ),
        ("login_timeout_secs", server.login_timeout_secs),
    ] {
        if value == 0 {
            bail!("{}: [server] {key} must be at least 1", path.display());
        }
    }
    for entry in &file.partners {
        entry
            .gateway
            .check()
            .with_context(|| ctx(&format!("[[partners]] {:?}", entry.partner.name)))?;
    }
    file.gateway
        .archive
        .check()
        .with_context(|| ctx("[gateway.archive]"))?;
    if file.gateway.post_processing.max_concurrent == 0 {
        bail!(
            "{}: [gateway.post_processing] max_concurrent must be at least 1",
            path.display()
        );
    }
    file.gateway
        .alerts
        .check()
        .with_context(|| path.display().to_string())?;
    let partners = PartnerTable::new(file.partners.iter().map(|e| e.partner.clone()))
        .with_context(|| ctx("[[partners]]"))?;
    let name_format = NameFormat::new(file.server.received_file_name_format.clone())
        .with_context(|| ctx("[server] received_file_name_format"))?;
    Ok(Loaded {
        file,
        data_dir,
        partners,
        name_format,
    })
}

fn random_text(len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

/// What [`generate`] wrote.
#[derive(Debug)]
pub(crate) struct Generated {
    /// The server configuration.
    pub(crate) server_config: PathBuf,
    /// A client configuration for the example partner (to try `oftp send`).
    pub(crate) client_config: PathBuf,
}

/// Writes a new server configuration at `path` with a generated local identity and one example
/// partner with a random password, plus a matching client configuration for that partner in the
/// same directory. Fails if `path` exists.
pub(crate) fn generate(path: &Path, listen: SocketAddr) -> Result<Generated> {
    if path.exists() {
        bail!("{} already exists; not overwriting it", path.display());
    }
    let suffix = random_text(4);
    let local = LocalIdentity {
        ssid: format!("O0013LOCAL{suffix}"),
        sfid: format!("O0013LOCAL{suffix}"),
        password: Password::new(random_text(8)),
    };
    let partner_id = LocalIdentity {
        ssid: format!("O0013PARTNER{suffix}"),
        sfid: format!("O0013PARTNER{suffix}"),
        password: Password::new(random_text(8)),
    };
    let connect_host = if listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    };

    let server = FileConfig {
        local: local.clone(),
        server: ServerSection {
            listen,
            ..ServerSection::default()
        },
        session: SessionLimits::default(),
        partners: vec![PartnerEntry::new(Partner {
            sfid: partner_id.sfid.clone(),
            ..Partner::new(
                "example",
                partner_id.ssid.clone(),
                partner_id.password.clone(),
            )
        })],
        security: LocalSecurityConfig::default(),
        tls: TlsSection::default(),
        gateway: GatewaySection::default(),
        http: oftp_http::HttpSettings::default(),
    };
    let client = FileConfig {
        local: partner_id,
        server: ServerSection {
            data_dir: PathBuf::from("example-partner"),
            ..ServerSection::default()
        },
        session: SessionLimits::default(),
        partners: vec![PartnerEntry::new(Partner {
            sfid: local.sfid.clone(),
            address: Some(connect_host.to_string()),
            ..Partner::new("server", local.ssid.clone(), local.password.clone())
        })],
        security: LocalSecurityConfig::default(),
        tls: TlsSection::default(),
        gateway: GatewaySection::default(),
        http: oftp_http::HttpSettings::default(),
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let client_path = dir.join("example-partner.toml");
    write(
        path,
        &server,
        "OFTP server configuration, generated on first run. Every key is described in the README\n\
         (section \"oftp command\"). Relative paths are relative to this file's directory.",
    )?;
    write(
        &client_path,
        &client,
        "Client configuration of the example partner, generated with the server configuration,\n\
         to try `oftp send --config <this file> --partner server FILE`.",
    )?;
    Ok(Generated {
        server_config: path.to_owned(),
        client_config: client_path,
    })
}

fn write(path: &Path, cfg: &FileConfig, header: &str) -> Result<()> {
    let body = toml::to_string_pretty(cfg).context("cannot encode the configuration")?;
    let mut text = String::new();
    for line in header.lines() {
        let _ = writeln!(text, "# {line}");
    }
    text.push('\n');
    text.push_str(&body);
    oftp::store::write_atomic(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    // The file holds passwords: keep it to its owner.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict permissions of {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_configs_load_and_match_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oftp-data").join("oftp.toml");
        let g = generate(&path, "0.0.0.0:3305".parse().unwrap()).unwrap();
        let server = load(&g.server_config).unwrap();
        let client = load(&g.client_config).unwrap();
        let example = server.partners.by_name("example").unwrap();
        assert_eq!(example.ssid, client.file.local.ssid);
        assert!(
            example
                .password
                .matches(client.file.local.password.expose())
        );
        let srv = client.partners.by_name("server").unwrap();
        assert_eq!(srv.ssid, server.file.local.ssid);
        assert_eq!(srv.address.as_deref(), Some("127.0.0.1:3305"));
        assert_eq!(
            server.data_dir,
            std::path::absolute(dir.path().join("oftp-data")).unwrap()
        );
        assert!(client.data_dir.ends_with("example-partner"));
        assert!(generate(&path, "0.0.0.0:3305".parse().unwrap()).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0);
        }
    }

    #[test]
    fn minimal_file_gets_defaults_and_resolves_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"
[local]
ssid = "O0013ME"
password = "PW"

[server]
data_dir = "data"
allowed_clients = ["10.0.0.0/8"]

[[partners]]
name = "acme"
ssid = "O0013ACME"
password = "SECRET"
inbox = "in/acme"
allowed_levels = [5]
"#,
        )
        .unwrap();
        let c = load(&path).unwrap();
        assert_eq!(c.file.local.sfid(), "O0013ME");
        assert_eq!(c.file.server.listen.port(), 3305);
        assert_eq!(c.file.session.credit, SessionLimits::default().credit);
        let acme = c.partners.by_ssid("O0013ACME").unwrap();
        assert_eq!(
            acme.inbox.as_deref(),
            Some(c.data_dir.join("in/acme").as_path())
        );
        let s = c.server_settings();
        assert!(s.addresses.permits("10.1.2.3".parse().unwrap()));
        assert!(!s.addresses.permits("11.1.2.3".parse().unwrap()));
        assert_eq!(s.inactivity_timeout, Duration::from_secs(60));
        assert_eq!(s.idle_timeout, None);
    }

    #[test]
    fn record_mapping_and_partial_retention_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let base = "[local]\nssid = \"O0013ME\"\npassword = \"PW\"\n";
        let partner = "[[partners]]\nname = \"a\"\nssid = \"A\"\npassword = \"P\"\n";
        std::fs::write(&path, format!("{base}{partner}")).unwrap();
        let c = load(&path).unwrap();
        let store = c.file.server.store_policy();
        assert_eq!(
            store.partial_retention,
            Some(Duration::from_secs(7 * 86_400))
        );
        let a = c.partners.by_name("a").unwrap();
        assert_eq!(a.record_mapping, oftp::config::RecordMapping::Raw);
        std::fs::write(
            &path,
            format!(
                "{base}[server]\npartial_retention_days = 0\n{partner}\
                 record_mapping = \"lines-lf\"\n"
            ),
        )
        .unwrap();
        let c = load(&path).unwrap();
        assert_eq!(c.file.server.store_policy().partial_retention, None);
        let a = c.partners.by_name("a").unwrap();
        assert_eq!(a.record_mapping, oftp::config::RecordMapping::LinesLf);
        std::fs::write(
            &path,
            format!("{base}{partner}record_mapping = \"binary\"\n"),
        )
        .unwrap();
        let e = format!("{:#}", load(&path).unwrap_err());
        assert!(e.contains("record_mapping") || e.contains("binary"), "{e}");
    }

    #[test]
    fn gateway_keys_in_a_partner_entry_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let base = "[local]\nssid = \"O0013ME\"\npassword = \"PW\"\n";
        let partner =
            "[[partners]]\nname = \"a\"\nssid = \"A\"\npassword = \"P\"\nmax_sessions = 2\n";
        std::fs::write(
            &path,
            format!("{base}[gateway.outbox]\npoll_interval_secs = 9\n{partner}"),
        )
        .unwrap();
        let c = load(&path).unwrap();
        assert_eq!(c.file.partners[0].gateway.max_sessions, 2);
        assert_eq!(c.file.gateway.outbox.poll_interval_secs, 9);
        assert!(c.partners.by_name("a").is_some());
        std::fs::write(&path, format!("{base}{partner}[partners.schedule]\n")).unwrap();
        let e = format!("{:#}", load(&path).unwrap_err());
        assert!(
            e.contains("\"a\"") && e.contains("[partners.schedule]"),
            "{e}"
        );
    }

    #[test]
    fn post_processing_and_archive_keys_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let base = "[local]\nssid = \"O0013ME\"\npassword = \"PW\"\n[server]\ndata_dir = \"d\"\n";
        let partner = "[[partners]]\nname = \"a\"\nssid = \"A\"\npassword = \"P\"\n\
                       eerp_after = \"processed\"\n[partners.on_receive]\ncommand = [\"imp\"]\n\
                       processed_dir = \"done\"\n";
        std::fs::write(
            &path,
            format!("{base}[gateway.archive]\nenabled = true\nhistory_days = 9\n{partner}"),
        )
        .unwrap();
        let c = load(&path).unwrap();
        let on_receive = c.file.partners[0].gateway.on_receive.clone().unwrap();
        assert_eq!(on_receive.timeout_secs, 300);
        assert_eq!(on_receive.processed_dir, Some(dir.path().join("d/done")));
        assert!(c.file.gateway.archive.enabled);
        assert_eq!(c.file.gateway.archive.history_days, 9);
        assert_eq!(c.file.gateway.post_processing.max_concurrent, 4);
        for (bad, says) in [
            (
                "[gateway.archive]\nsweep_interval_minutes = 0\n",
                "sweep_interval_minutes",
            ),
            (
                "[gateway.post_processing]\nmax_concurrent = 0\n",
                "max_concurrent",
            ),
            ("[gateway.archive]\nkeep = 1\n", "keep"),
        ] {
            std::fs::write(&path, format!("{base}{bad}")).unwrap();
            let e = format!("{:#}", load(&path).unwrap_err());
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn revocation_keys_load_with_their_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let base = "[local]\nssid = \"O0013ME\"\npassword = \"PW\"\n";
        std::fs::write(&path, base).unwrap();
        let c = load(&path).unwrap();
        assert!(c.file.security.crl_distribution_points);
        assert!(!c.file.security.require_revocation_check);
        std::fs::write(
            &path,
            format!(
                "{base}[security]\ncrl_distribution_points = false\n\
                 require_revocation_check = true\n"
            ),
        )
        .unwrap();
        let c = load(&path).unwrap();
        assert!(!c.file.security.crl_distribution_points);
        assert!(c.file.security.require_revocation_check);
        // The combination is refused where the trust policy is built.
        let e = c
            .file
            .security
            .revocation_settings(oftp_security::TrustPolicy::new(), None)
            .unwrap_err();
        assert!(e.to_string().contains("crl_distribution_points"), "{e}");
    }

    #[test]
    fn connection_limit_keys_load_with_their_defaults_and_zero_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let base = "[local]\nssid = \"O0013ME\"\npassword = \"PW\"\n[server]\n";
        std::fs::write(&path, base).unwrap();
        let s = load(&path).unwrap().server_settings();
        let d = ServerSettings::default();
        assert_eq!(s.login_timeout, Duration::from_secs(10));
        assert_eq!(
            s.max_unauthenticated_per_address,
            d.max_unauthenticated_per_address
        );
        assert_eq!(s.max_sessions_per_address, d.max_sessions_per_address);
        assert_eq!(s.free_space_reserve, 64 << 20);
        std::fs::write(
            &path,
            format!(
                "{base}login_timeout_secs = 3\nmax_unauthenticated_per_address = 2\n\
                 max_sessions_per_address = 5\nfree_space_reserve_mib = 0\n"
            ),
        )
        .unwrap();
        let s = load(&path).unwrap().server_settings();
        assert_eq!(s.login_timeout, Duration::from_secs(3));
        assert_eq!(s.max_unauthenticated_per_address, 2);
        assert_eq!(s.max_sessions_per_address, 5);
        assert_eq!(s.free_space_reserve, 0);
        for key in [
            "login_timeout_secs",
            "max_unauthenticated_per_address",
            "max_sessions_per_address",
        ] {
            std::fs::write(&path, format!("{base}{key} = 0\n")).unwrap();
            let e = format!("{:#}", load(&path).unwrap_err());
            assert!(e.contains(key) && e.contains("at least 1"), "{e}");
        }
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[local]\nssid = \"X\"\npassword = \"P\"\nbogus = 1\n",
        )
        .unwrap();
        let e = format!("{:#}", load(&path).unwrap_err());
        assert!(e.contains("c.toml") && e.contains("bogus"), "{e}");

        std::fs::write(
            &path,
            "[local]\nssid = \"X\"\npassword = \"P\"\n[session]\ncredit = 0\n",
        )
        .unwrap();
        let e = format!("{:#}", load(&path).unwrap_err());
        assert!(e.contains("credit"), "{e}");

        std::fs::write(
            &path,
            "[local]\nssid = \"X\"\npassword = \"P\"\n[server]\nreceived_file_name_format = \"%Bad%\"\n",
        )
        .unwrap();
        let e = format!("{:#}", load(&path).unwrap_err());
        assert!(e.contains("Bad"), "{e}");

        let e = format!("{:#}", load(&dir.path().join("missing.toml")).unwrap_err());
        assert!(e.contains("missing.toml"), "{e}");
    }
}
