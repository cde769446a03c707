//! Configuration types: local identity, partners, server limits and address rules.
//!
//! These are plain data with serde derives, so the `oftp` command can read them from TOML (the
//! library itself does not parse files). Every field has the seed's default where the seed has
//! one. What the runtime *decides* with them lives elsewhere: the partner table is consulted by
//! the default [`Handler`](crate::Handler) decisions, the limits by the [`Server`](crate::Server).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::identity::{IdentityError, OdetteId};

mod address;
pub use address::{AddressPolicy, AddressRule, AddressRuleError};

/// Well-known OFTP port for plain TCP (RFC 5024, seed `LocalPort` default).
pub const DEFAULT_PORT: u16 = 3305;

/// Free space a receiver keeps in the target file system by default (64 MiB): see
/// [`ServerSettings::free_space_reserve`].
pub const DEFAULT_FREE_SPACE_RESERVE: u64 = 64 * 1024 * 1024;

/// A password (SSIDPSWD, up to 8 characters). `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret text. Call only to put it on the wire or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with a received (blank-padded, case-insensitive per OFTP practice of upper-case
    /// fields) password in time independent of where they differ.
    pub fn matches(&self, received: &str) -> bool {
        let a = self.0.trim_end().to_ascii_uppercase();
        let b = received.trim_end().to_ascii_uppercase();
        let mut diff = a.len() ^ b.len();
        for (x, y) in a.bytes().zip(b.bytes()) {
            diff |= usize::from(x ^ y);
        }
        diff == 0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Who we are: SSID code (session), SFID code (files), password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalIdentity {
    /// Our SSID code (up to 25 characters), seed `ServerSSIDCode`.
    pub ssid: String,
    /// Our SFID code (up to 25 characters), seed `ServerSFIDCode`; defaults to the SSID.
    #[serde(default)]
    pub sfid: String,
    /// Our password (up to 8 characters), seed `ServerPassword`.
    pub password: Password,
}

impl LocalIdentity {
    /// The SFID code, falling back to the SSID code when none is set.
    pub fn sfid(&self) -> &str {
        if self.sfid.is_empty() {
            &self.ssid
        } else {
            &self.sfid
        }
    }
}

/// Which directions a session may be used for (SSIDSR), seed `ConnectionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Send and receive (default).
    #[default]
    Both,
    /// Send only.
    Send,
    /// Receive only.
    Receive,
}

/// A trading partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partner {
    /// Local name used on the command line and in logs.
    pub name: String,
    /// The partner's SSID code: who may log in.
    pub ssid: String,
    /// The password the partner must present.
    pub password: Password,
    /// The partner's SFID code (file originator/destination); defaults to the SSID.
    #[serde(default)]
    pub sfid: String,
    /// The password we present when we call the partner; defaults to `password`.
    #[serde(default)]
    pub our_password: Option<Password>,
    /// Where files from this partner land; defaults to `<data_dir>/inbox/<name>`.
    #[serde(default)]
    pub inbox: Option<PathBuf>,
    /// Files waiting to go to this partner when it calls and hands us the speaker role; defaults
    /// to `<data_dir>/outbox/<name>`.
    #[serde(default)]
    pub outbox: Option<PathBuf>,
    /// Protocol levels this partner may use (1 = 1.2, 2 = 1.3, 4 = 1.4, 5 = 2.0); empty means all.
    #[serde(default)]
    pub allowed_levels: Vec<u8>,
    /// Host and port to call the partner at (client side), e.g. `oftp.example.com:3305`.
    #[serde(default)]
    pub address: Option<String>,
    /// OFTP 2.0 security: the partner's certificates and policy (used when the server or
    /// client runs with a [`SecurityContext`](crate::security::SecurityContext)).
    #[serde(default, skip_serializing_if = "is_default")]
    pub security: crate::security::PartnerSecurityConfig,
    /// How to call the partner over TLS (client side).
    #[serde(default, skip_serializing_if = "is_default")]
    pub tls: crate::tls::PartnerTls,
    /// How the records of F and V files are laid out in local files, for files sent to and
    /// received from this partner (default [`RecordMapping::Raw`]).
    #[serde(default, skip_serializing_if = "is_default")]
    pub record_mapping: RecordMapping,
}

/// Whether a file named `name` in an outbox is ready to go: not temporary (`*.tmp`, any
/// case) and not hidden (`.*`). A program writing into an outbox writes under such a name,
/// then renames it to its final name in the same directory; the server's outbox scan and the
/// gateway's take-over both leave other names alone.
pub fn is_ready_outbox_name(name: &std::ffi::OsStr) -> bool {
    let b = name.as_encoded_bytes();
    let temporary = b
        .len()
        .checked_sub(4)
        .is_some_and(|start| b[start..].eq_ignore_ascii_case(b".tmp"));
    !(b.is_empty() || b.starts_with(b".") || temporary)
}

/// How the records of fixed (F) and variable (V) format virtual files map to the octets of a
/// local file. Files to send are read this way, received files are stored this way; U and T
/// files are never affected.
///
/// The default is [`Raw`](Self::Raw) because it never changes an octet: any record (binary,
/// packed decimal, EBCDIC) is sent, received and sent again identically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RecordMapping {
    /// F: records of exactly the record length (SFIDLRECL), back to back. V: each record
    /// preceded by its length in 2 octets, big-endian, not counting itself (the record header
    /// of RFC 5024 section 6.5), so a V record holds at most 65535 octets.
    #[default]
    #[serde(rename = "raw")]
    Raw,
    /// One record per line, written with CR LF; lines read may end in CR LF or LF (the line
    /// end is not part of the record). A record that contains LF cannot be a line: such files
    /// are refused.
    #[serde(rename = "lines", alias = "lines-crlf")]
    Lines,
    /// One record per line, written and read with LF only (a CR before the LF stays in the
    /// record).
    #[serde(rename = "lines-lf")]
    LinesLf,
}

impl RecordMapping {
    /// The name used in configuration files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Lines => "lines",
            Self::LinesLf => "lines-lf",
        }
    }

    /// The line end written after each record, `None` for [`Raw`](Self::Raw).
    pub fn line_end(self) -> Option<&'static [u8]> {
        match self {
            Self::Raw => None,
            Self::Lines => Some(b"\r\n"),
            Self::LinesLf => Some(b"\n"),
        }
    }
}

impl fmt::Display for RecordMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordMapping {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(Self::Raw),
            "lines" | "lines-crlf" => Ok(Self::Lines),
            "lines-lf" => Ok(Self::LinesLf),
            other => Err(format!(
                "unknown record mapping {other:?}: use raw, lines (CR LF) or lines-lf"
            )),
        }
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl Partner {
    /// A partner named `name` that logs in as `ssid` with `password`, with the defaults of a
    /// `[[partners]]` entry that gives only these three keys for everything else (SFID = SSID,
    /// our password = theirs, default inbox and outbox, all levels, no address, default
    /// security, TLS and record mapping).
    pub fn new(name: impl Into<String>, ssid: impl Into<String>, password: Password) -> Self {
        Self {
            name: name.into(),
            ssid: ssid.into(),
            password,
            sfid: String::new(),
            our_password: None,
            inbox: None,
            outbox: None,
            allowed_levels: vec![],
            address: None,
            security: Default::default(),
            tls: Default::default(),
            record_mapping: RecordMapping::default(),
        }
    }

    /// The SFID code, falling back to the SSID code.
    pub fn sfid(&self) -> &str {
        if self.sfid.is_empty() {
            &self.ssid
        } else {
            &self.sfid
        }
    }

    /// The SSID and SFID codes, normalised ([`PartnerTable::new`] refuses a partner whose
    /// codes are not identification codes).
    pub fn codes(&self) -> Result<IdentityCodes, IdentityError> {
        Ok(IdentityCodes {
            ssid: OdetteId::new(&self.ssid)?,
            sfid: OdetteId::new(self.sfid())?,
        })
    }

    /// Whether the partner may use protocol `level`.
    pub fn allows_level(&self, level: u8) -> bool {
        self.allowed_levels.is_empty() || self.allowed_levels.contains(&level)
    }

    /// The password we present to this partner.
    pub fn our_password<'a>(&'a self, fallback: &'a Password) -> &'a Password {
        self.our_password.as_ref().unwrap_or(fallback)
    }
}

/// Partners by SSID code (compared case-insensitively, trailing blanks ignored).
#[derive(Debug, Clone, Default)]
pub struct PartnerTable {
    /// Each partner with its SFID code (normalised once, here).
    by_ssid: HashMap<OdetteId, (Partner, OdetteId)>,
}

/// Two partners with one SSID code, or one with an empty one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartnerTableError {
    /// Two partners share an SSID code.
    #[error("partners {first:?} and {second:?} both use SSID code {ssid:?}")]
    DuplicateSsid {
        /// The code.
        ssid: String,
        /// First partner name.
        first: String,
        /// Second partner name.
        second: String,
    },
    /// A partner has no SSID code.
    #[error("partner {0:?} has an empty SSID code")]
    EmptySsid(String),
    /// A partner code is not an OFTP identification code (a character other than printable
    /// ASCII).
    #[error("partner {name:?}: {field}: {error}")]
    InvalidCode {
        /// Partner name.
        name: String,
        /// Field name.
        field: &'static str,
        /// What is wrong with it.
        #[source]
        error: IdentityError,
    },
    /// A partner code is longer than OFTP allows.
    #[error("partner {name:?}: {field} {value:?} is longer than {max} characters")]
    TooLong {
        /// Partner name.
        name: String,
        /// Field name.
        field: &'static str,
        /// The value.
        value: String,
        /// Maximum length.
        max: usize,
    },
}

impl PartnerTable {
    /// Builds the table, rejecting duplicate or empty SSID codes and over-long fields.
    pub fn new(partners: impl IntoIterator<Item = Partner>) -> Result<Self, PartnerTableError> {
        let mut by_ssid: HashMap<OdetteId, (Partner, OdetteId)> = HashMap::new();
        for p in partners {
            if p.ssid.trim().is_empty() {
                return Err(PartnerTableError::EmptySsid(p.name));
            }
            for (field, value, max) in [
                ("ssid", p.ssid.as_str(), 25),
                ("sfid", p.sfid.as_str(), 25),
                ("password", p.password.expose(), 8),
            ] {
                if value.trim_end().chars().count() > max {
                    let value = if field == "password" {
                        "***".into()
                    } else {
                        value.into()
                    };
                    return Err(PartnerTableError::TooLong {
                        name: p.name.clone(),
                        field,
                        value,
                        max,
                    });
                }
            }
            let code = |field, value: &str| {
                OdetteId::new(value).map_err(|error| PartnerTableError::InvalidCode {
                    name: p.name.clone(),
                    field,
                    error,
                })
            };
            let key = code("ssid", &p.ssid)?;
            let sfid = if p.sfid.is_empty() {
                key.clone()
            } else {
                code("sfid", &p.sfid)?
            };
            if let Some((prev, _)) = by_ssid.get(&key) {
                return Err(PartnerTableError::DuplicateSsid {
                    ssid: p.ssid.clone(),
                    first: prev.name.clone(),
                    second: p.name,
                });
            }
            by_ssid.insert(key, (p, sfid));
        }
        Ok(Self { by_ssid })
    }

    /// The partner with SSID code `ssid`.
    pub fn by_ssid(&self, ssid: &str) -> Option<&Partner> {
        self.by_code(&OdetteId::new(ssid).ok()?).map(|(p, _)| p)
    }

    /// The partner with SSID code `ssid`, and its SFID code.
    pub fn by_code(&self, ssid: &OdetteId) -> Option<(&Partner, &OdetteId)> {
        self.by_ssid.get(ssid).map(|(p, sfid)| (p, sfid))
    }

    /// The partner called `name`.
    pub fn by_name(&self, name: &str) -> Option<&Partner> {
        self.iter().find(|p| p.name == name)
    }

    /// All partners (in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = &Partner> {
        self.by_ssid.values().map(|(p, _)| p)
    }

    /// Number of partners.
    pub fn len(&self) -> usize {
        self.by_ssid.len()
    }

    /// Whether there are no partners.
    pub fn is_empty(&self) -> bool {
        self.by_ssid.is_empty()
    }
}

/// Session parameters we offer (SSID fields), seed `ExchangeBufferSize`, `CreditCount`, etc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionLimits {
    /// Highest protocol level we speak (5 = OFTP 2.0).
    pub level: u8,
    /// Data exchange buffer size (128..=99999).
    pub buffer_size: u32,
    /// Credit window (1..=999).
    pub credit: u16,
    /// Offer buffer compression.
    pub compression: bool,
    /// Offer restart.
    pub restart: bool,
    /// Directions we allow.
    pub mode: Mode,
}

impl Default for SessionLimits {
    fn default() -> Self {
        // RFC 5024 typical values; the peer's smaller values win during negotiation.
        Self {
            level: 5,
            buffer_size: 4096,
            credit: 64,
            compression: false,
            restart: true,
            mode: Mode::Both,
        }
    }
}

/// Problems with a configuration that would otherwise show up only at the first connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value is out of the range OFTP allows.
    #[error("{field} = {value} is out of range ({range})")]
    OutOfRange {
        /// Which setting.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The allowed range.
        range: &'static str,
    },
    /// A required text is missing or too long.
    #[error("{field} {problem}")]
    BadText {
        /// Which setting.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

impl SessionLimits {
    /// Checks the ranges RFC 5024 sets.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if ![1, 2, 4, 5].contains(&self.level) {
            return Err(ConfigError::OutOfRange {
                field: "level",
                value: u64::from(self.level),
                range: "1, 2, 4 or 5",
            });
        }
        if !(128..=99_999).contains(&self.buffer_size) {
            return Err(ConfigError::OutOfRange {
                field: "buffer_size",
                value: u64::from(self.buffer_size),
                range: "128..=99999",
            });
        }
        if !(1..=999).contains(&self.credit) {
            return Err(ConfigError::OutOfRange {
                field: "credit",
                value: u64::from(self.credit),
                range: "1..=999",
            });
        }
        Ok(())
    }
}

impl LocalIdentity {
    /// Checks what OFTP allows: SSID and SFID codes are identification codes ([`OdetteId`]:
    /// 1 to 25 printable ASCII characters), the password 1 to 8 ASCII characters.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.codes().map(|_| ())
    }

    /// Our SSID and SFID codes, normalised, once [`validate`](Self::validate) would pass.
    pub fn codes(&self) -> Result<IdentityCodes, ConfigError> {
        let bad = |field, max| ConfigError::BadText {
            field,
            problem: format!("must be 1 to {max} ASCII characters"),
        };
        let code =
            |field, code: &str| OdetteId::new(code).map_err(|_| bad(field, OdetteId::MAX_LEN));
        let ssid = code("local.ssid", &self.ssid)?;
        let sfid = code("local.sfid", self.sfid())?;
        let password = self.password.expose();
        let n = password.trim_end().chars().count();
        if n == 0 || n > 8 || !password.is_ascii() {
            return Err(bad("local.password", 8));
        }
        Ok(IdentityCodes { ssid, sfid })
    }
}

/// The identification codes of a party (we, or a partner) as the runtime compares them:
/// [`LocalIdentity::codes`], [`Partner::codes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityCodes {
    /// The SSID code.
    pub ssid: OdetteId,
    /// The SFID code (the SSID code when none is configured).
    pub sfid: OdetteId,
}

/// Runtime settings of a [`Server`](crate::Server).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Address to listen on (seed `LocalHost` + `LocalPort`, default `0.0.0.0:3305`).
    pub listen: SocketAddr,
    /// Listen backlog (seed `ConnectionBacklog`, default 5 there; 128 here, as modern servers do).
    pub backlog: u32,
    /// Most simultaneous connections; more are refused at accept (seed `MaxConnections`).
    pub max_connections: usize,
    /// Allowed and blocked client addresses.
    pub addresses: AddressPolicy,
    /// A session that sends and receives nothing for this long is ended with ESID 09 (seed
    /// `DefaultTimeout`, 60 s). The protocol session also enforces it.
    pub inactivity_timeout: Duration,
    /// A session idle (no file in progress) for this long is logged off; `None` = never (seed
    /// `DefaultIdleTimeout`, default 0 = off).
    pub idle_timeout: Option<Duration>,
    /// How long [`RunningServer::shutdown`](crate::RunningServer::shutdown) lets transfers in
    /// progress finish before ending their sessions with ESID.
    pub shutdown_grace: Duration,
    /// A client must log in (its SSID must arrive) within this long of connecting, TLS
    /// handshake included; otherwise the connection is ended with ESID 09 (default 10 s).
    pub login_timeout: Duration,
    /// Most connections from one address that have not logged in yet (no SSID accepted);
    /// further ones are told ESID 08 and closed (default 16). IPv6 addresses count per /64.
    pub max_unauthenticated_per_address: usize,
    /// Most sessions (logged in) from one address at once; a further SSID is answered with
    /// ESID 08 (default 64). IPv6 addresses count per /64.
    pub max_sessions_per_address: usize,
    /// Free space kept in the target file system: a file whose size (SFIDFSIZ) would leave
    /// less than this is refused at its offer with SFNA 12, retry (default 64 MiB).
    pub free_space_reserve: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            backlog: 128,
            max_connections: 256,
            addresses: AddressPolicy::default(),
            inactivity_timeout: Duration::from_secs(60),
            idle_timeout: None,
            shutdown_grace: Duration::from_secs(30),
            login_timeout: Duration::from_secs(10),
            max_unauthenticated_per_address: 16,
            max_sessions_per_address: 64,
            free_space_reserve: DEFAULT_FREE_SPACE_RESERVE,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A partner with password `SECRET` and defaults for everything else.
    pub(crate) fn partner(name: &str, ssid: &str) -> Partner {
        Partner::new(name, ssid, Password::new("SECRET"))
    }

    #[test]
    fn a_new_partner_has_the_defaults_of_an_entry_with_only_name_ssid_and_password() {
        use serde::de::value::{Error, MapDeserializer};
        let entry = [
            ("name", "acme"),
            ("ssid", "O0013ACME"),
            ("password", "SECRET"),
        ];
        let parsed =
            Partner::deserialize(MapDeserializer::<_, Error>::new(entry.into_iter())).unwrap();
        assert_eq!(partner("acme", "O0013ACME"), parsed);
    }

    #[test]
    fn record_mapping_names_and_default() {
        use serde::de::value::{Error, StrDeserializer};
        let de = |text| RecordMapping::deserialize(StrDeserializer::<Error>::new(text));
        for (text, want) in [
            ("raw", RecordMapping::Raw),
            ("lines", RecordMapping::Lines),
            ("lines-crlf", RecordMapping::Lines),
            ("lines-lf", RecordMapping::LinesLf),
        ] {
            assert_eq!(de(text).unwrap(), want);
            assert_eq!(text.parse::<RecordMapping>().unwrap(), want);
            assert_eq!(want.as_str().parse::<RecordMapping>().unwrap(), want);
        }
        assert!(de("text").is_err());
        assert!("text".parse::<RecordMapping>().unwrap_err().contains("raw"));
        assert_eq!(RecordMapping::default(), RecordMapping::Raw);
        assert_eq!(RecordMapping::Raw.line_end(), None);
        assert_eq!(RecordMapping::Lines.line_end(), Some(&b"\r\n"[..]));
    }

    #[test]
    fn password_is_never_shown_and_compares_blank_padded() {
        let p = Password::new("Secret");
        assert_eq!(format!("{p:?}"), "Password(***)");
        assert!(p.matches("SECRET  "));
        assert!(!p.matches("SECRE"));
        assert!(!p.matches("SECRETX"));
    }

    #[test]
    fn partner_table_lookup_and_errors() {
        let t = PartnerTable::new([partner("acme", "O0013ACME"), partner("beta", "O0013BETA")])
            .unwrap();
        assert_eq!(t.by_ssid("o0013acme   ").unwrap().name, "acme");
        assert_eq!(t.by_name("beta").unwrap().sfid(), "O0013BETA");
        assert!(t.by_ssid("nobody").is_none());
        assert_eq!(t.len(), 2);

        let dup = PartnerTable::new([partner("a", "X"), partner("b", "x")]).unwrap_err();
        assert!(matches!(dup, PartnerTableError::DuplicateSsid { .. }));
        assert!(matches!(
            PartnerTable::new([partner("a", " ")]).unwrap_err(),
            PartnerTableError::EmptySsid(_)
        ));
        let mut long = partner("l", "L");
        long.password = Password::new("123456789");
        let e = PartnerTable::new([long]).unwrap_err().to_string();
        assert!(e.contains("password") && !e.contains("123456789"), "{e}");
    }

    #[test]
    fn our_codes_must_be_identification_codes() {
        let local = |ssid: &str, sfid: &str| LocalIdentity {
            ssid: ssid.into(),
            sfid: sfid.into(),
            password: Password::new("PW"),
        };
        assert!(local("O0013ME  ", "").validate().is_ok());
        for (l, field) in [
            (local("", ""), "local.ssid"),
            (local("O0013ME", "O0013000000ACME-EDI-PROD12"), "local.sfid"),
            (local("O0013\tME", ""), "local.ssid"),
        ] {
            let e = l.validate().unwrap_err();
            assert!(
                matches!(e, ConfigError::BadText { field: f, .. } if f == field),
                "{e}"
            );
        }
    }

    #[test]
    fn a_partner_code_no_partner_could_send_is_refused_when_the_table_is_built() {
        // The codec takes only printable ASCII off the wire, so such a partner could never
        // log in or be named as a file's originator.
        let e = PartnerTable::new([partner("tab", "ACME\tEDI")]).unwrap_err();
        assert!(
            matches!(&e, PartnerTableError::InvalidCode { field: "ssid", .. }),
            "{e:?}"
        );
        let mut sfid = partner("umlaut", "O0013ACME");
        sfid.sfid = "ÄCME".into();
        let e = PartnerTable::new([sfid]).unwrap_err().to_string();
        assert!(e.contains("umlaut") && e.contains("sfid"), "{e}");
    }

    #[test]
    fn a_partner_is_found_by_its_code_with_its_sfid_code_normalised() {
        let mut p = partner("acme", "o0013acme ");
        p.sfid = "o0013acme-files".into();
        let table = PartnerTable::new([p, partner("beta", "O0013BETA")]).unwrap();
        let (found, sfid) = table.by_code(&"O0013ACME".parse().unwrap()).unwrap();
        assert_eq!(found.name, "acme");
        assert_eq!(sfid, "O0013ACME-FILES");
        let (_, sfid) = table.by_code(&"O0013BETA".parse().unwrap()).unwrap();
        assert_eq!(sfid, "O0013BETA", "no SFID code: the SSID code");
        let codes = table.by_ssid("o0013acme").unwrap().codes().unwrap();
        assert_eq!(
            (codes.ssid.as_str(), codes.sfid.as_str()),
            ("O0013ACME", "O0013ACME-FILES")
        );
    }

    #[test]
    fn levels() {
        let mut p = partner("a", "A");
        assert!(p.allows_level(1));
        p.allowed_levels = vec![5];
        assert!(p.allows_level(5) && !p.allows_level(4));
    }

    #[test]
    fn address_policy() {
        let open = AddressPolicy::default();
        assert!(open.permits("1.2.3.4".parse().unwrap()));
        let p = AddressPolicy {
            allowed: vec!["127.0.0.0/8".parse().unwrap()],
            blocked: vec!["127.0.0.2".parse().unwrap()],
        };
        assert!(p.permits("127.0.0.1".parse().unwrap()));
        assert!(!p.permits("127.0.0.2".parse().unwrap()));
        assert!(!p.permits("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn limits_and_identity_validation() {
        assert!(SessionLimits::default().validate().is_ok());
        let bad = SessionLimits {
            buffer_size: 127,
            ..SessionLimits::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("buffer_size")
        );
        let bad = SessionLimits {
            credit: 1000,
            ..SessionLimits::default()
        };
        assert!(bad.validate().is_err());
        let bad = SessionLimits {
            level: 3,
            ..SessionLimits::default()
        };
        assert!(bad.validate().is_err());
        let id = LocalIdentity {
            ssid: "O0013ME".into(),
            sfid: String::new(),
            password: Password::new("PW"),
        };
        assert!(id.validate().is_ok());
        assert_eq!(id.sfid(), "O0013ME");
        let long = LocalIdentity {
            password: Password::new("TOOLONGPW"),
            ..id
        };
        assert!(long.validate().is_err());
    }
}
