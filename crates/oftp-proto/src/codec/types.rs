//! Wire codes and small value types shared by the commands.
//!
//! Reason codes, protocol levels, cipher suites and the other numeric codes are
//! newtypes over their wire value with named constants (the rustls pattern): a
//! value this crate does not know is kept as-is instead of failing the decode, so
//! a partner running a newer revision can still be answered and logged.
//! Closed sets whose unknown values make a command meaningless (file format,
//! send/receive mode) are plain enums and an unknown value is invalid data.

use std::fmt;

macro_rules! wire_code {
    (
        $(#[$meta:meta])*
        $name:ident($inner:ty), digits = $digits:expr;
        $( $(#[$cmeta:meta])* $konst:ident = $value:expr => $desc:expr ),* $(,)?
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $inner);

        impl $name {
            $( $(#[$cmeta])* pub const $konst: Self = Self($value); )*

            /// All codes defined by the specifications, in wire order.
            pub const KNOWN: &'static [Self] = &[$(Self::$konst),*];

            /// The specification's description of this code, `None` if unknown.
            pub fn description(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some($desc), )*
                    _ => None,
                }
            }

            /// Whether the specifications define this code.
            pub fn is_known(self) -> bool {
                self.description().is_some()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:0width$})", stringify!($name), self.0, width = $digits)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.description() {
                    Some(d) => write!(f, "{} ({:0width$})", d, self.0, width = $digits),
                    None => write!(f, "unknown code {:0width$}", self.0, width = $digits),
                }
            }
        }
    };
}

wire_code! {
    /// ODETTE-FTP protocol release level (SSIDLEV), RFC 5024 5.3.2.
    ///
    /// RFC 2204 implementations (revision 1.3) send `1`; the lower level of the two
    /// SSIDs is used for the session.
    ProtocolLevel(u8), digits = 1;
    /// Revision 1.2 (and RFC 2204 "1.3" implementations, which send 1).
    V1_2 = 1 => "ODETTE-FTP 1.2",
    /// Revision 1.3.
    V1_3 = 2 => "ODETTE-FTP 1.3",
    /// Revision 1.4.
    V1_4 = 4 => "ODETTE-FTP 1.4",
    /// Revision 2.0 (RFC 5024).
    V2_0 = 5 => "ODETTE-FTP 2.0",
}

impl ProtocolLevel {
    /// Whether the RFC 5024 (2.0) command layouts apply: security fields,
    /// reason texts, 9(13)/9(17) counts, signed EERP/NERP. Levels below 5 use
    /// the RFC 2204 sizes for all of these.
    pub fn is_v2(self) -> bool {
        self.0 >= 5
    }

    /// Whether SFID, EERP and NERP carry the extended date and time stamp
    /// (`CCYYMMDD` + `HHMMSScccc`) that revision 1.4 introduced (RFC 5024
    /// 1.2): levels 4 and up. Levels 1 and 2 carry `YYMMDD` + `HHMMSS`.
    pub fn has_extended_stamp(self) -> bool {
        self.0 >= 4
    }

    /// Whether the Negative End Response exists at this level: it came with
    /// revision 1.4 (RFC 5024 1.2), so levels 4 and up.
    pub fn has_nerp(self) -> bool {
        self.0 >= 4
    }

    /// Whether a peer may offer this SSIDLEV: a defined release level (1, 2,
    /// 4, 5) or a future, higher one (RFC 5024 5.3.2: "Future release levels
    /// will have higher numbers"; the lower of the two is used). 0 and 3 are
    /// no release level.
    pub fn is_release_level(self) -> bool {
        matches!(self.0, 1 | 2) || self.0 >= 4
    }
}

wire_code! {
    /// End Session reason (ESIDREAS), RFC 5024 5.3.11.
    EsidReason(u8), digits = 2;
    /// Normal session termination.
    NORMAL = 0 => "normal session termination",
    /// Command not recognised.
    COMMAND_NOT_RECOGNISED = 1 => "command not recognised",
    /// Protocol violation.
    PROTOCOL_VIOLATION = 2 => "protocol violation",
    /// User code not known.
    USER_CODE_NOT_KNOWN = 3 => "user code not known",
    /// Invalid password.
    INVALID_PASSWORD = 4 => "invalid password",
    /// Local site emergency close down.
    EMERGENCY_CLOSE_DOWN = 5 => "local site emergency close down",
    /// Command contained invalid data.
    INVALID_DATA = 6 => "command contained invalid data",
    /// Exchange buffer size error.
    BUFFER_SIZE_ERROR = 7 => "exchange buffer size error",
    /// Resources not available.
    RESOURCES_NOT_AVAILABLE = 8 => "resources not available",
    /// Time out.
    TIME_OUT = 9 => "time out",
    /// Mode or capabilities incompatible.
    MODE_INCOMPATIBLE = 10 => "mode or capabilities incompatible",
    /// Invalid challenge response (2.0 only).
    INVALID_CHALLENGE_RESPONSE = 11 => "invalid challenge response",
    /// Secure authentication requirements incompatible (2.0 only).
    SECURE_AUTH_INCOMPATIBLE = 12 => "secure authentication requirements incompatible",
    /// Unspecified abort code.
    UNSPECIFIED = 99 => "unspecified abort code",
}

wire_code! {
    /// Start File negative answer reason (SFNAREAS), RFC 5024 5.3.5.
    SfnaReason(u8), digits = 2;
    /// Invalid filename.
    INVALID_FILENAME = 1 => "invalid filename",
    /// Invalid destination.
    INVALID_DESTINATION = 2 => "invalid destination",
    /// Invalid origin.
    INVALID_ORIGIN = 3 => "invalid origin",
    /// Storage record format not supported.
    RECORD_FORMAT_NOT_SUPPORTED = 4 => "storage record format not supported",
    /// Maximum record length not supported.
    RECORD_LENGTH_NOT_SUPPORTED = 5 => "maximum record length not supported",
    /// File size is too big.
    FILE_TOO_BIG = 6 => "file size is too big",
    /// Invalid record count.
    INVALID_RECORD_COUNT = 10 => "invalid record count",
    /// Invalid byte count.
    INVALID_BYTE_COUNT = 11 => "invalid byte count",
    /// Access method failure.
    ACCESS_METHOD_FAILURE = 12 => "access method failure",
    /// Duplicate file.
    DUPLICATE_FILE = 13 => "duplicate file",
    /// File direction refused.
    FILE_DIRECTION_REFUSED = 14 => "file direction refused",
    /// Cipher suite not supported.
    CIPHER_SUITE_NOT_SUPPORTED = 15 => "cipher suite not supported",
    /// Encrypted file not allowed.
    ENCRYPTED_FILE_NOT_ALLOWED = 16 => "encrypted file not allowed",
    /// Unencrypted file not allowed.
    UNENCRYPTED_FILE_NOT_ALLOWED = 17 => "unencrypted file not allowed",
    /// Compression not allowed.
    COMPRESSION_NOT_ALLOWED = 18 => "compression not allowed",
    /// Signed file not allowed.
    SIGNED_FILE_NOT_ALLOWED = 19 => "signed file not allowed",
    /// Unsigned file not allowed.
    UNSIGNED_FILE_NOT_ALLOWED = 20 => "unsigned file not allowed",
    /// Unspecified reason.
    UNSPECIFIED = 99 => "unspecified reason",
}

wire_code! {
    /// End File negative answer reason (EFNAREAS), RFC 5024 5.3.10.
    EfnaReason(u8), digits = 2;
    /// Invalid filename.
    INVALID_FILENAME = 1 => "invalid filename",
    /// Invalid destination.
    INVALID_DESTINATION = 2 => "invalid destination",
    /// Invalid origin.
    INVALID_ORIGIN = 3 => "invalid origin",
    /// Storage record format not supported.
    RECORD_FORMAT_NOT_SUPPORTED = 4 => "storage record format not supported",
    /// Maximum record length not supported.
    RECORD_LENGTH_NOT_SUPPORTED = 5 => "maximum record length not supported",
    /// File size is too big.
    FILE_TOO_BIG = 6 => "file size is too big",
    /// Invalid record count.
    INVALID_RECORD_COUNT = 10 => "invalid record count",
    /// Invalid byte count.
    INVALID_BYTE_COUNT = 11 => "invalid byte count",
    /// Access method failure.
    ACCESS_METHOD_FAILURE = 12 => "access method failure",
    /// Duplicate file.
    DUPLICATE_FILE = 13 => "duplicate file",
    /// File direction refused.
    FILE_DIRECTION_REFUSED = 14 => "file direction refused",
    /// Cipher suite not supported.
    CIPHER_SUITE_NOT_SUPPORTED = 15 => "cipher suite not supported",
    /// Encrypted file not allowed.
    ENCRYPTED_FILE_NOT_ALLOWED = 16 => "encrypted file not allowed",
    /// Unencrypted file not allowed.
    UNENCRYPTED_FILE_NOT_ALLOWED = 17 => "unencrypted file not allowed",
    /// Compression not allowed.
    COMPRESSION_NOT_ALLOWED = 18 => "compression not allowed",
    /// Signed file not allowed.
    SIGNED_FILE_NOT_ALLOWED = 19 => "signed file not allowed",
    /// Unsigned file not allowed.
    UNSIGNED_FILE_NOT_ALLOWED = 20 => "unsigned file not allowed",
    /// Invalid file signature.
    INVALID_SIGNATURE = 21 => "invalid file signature",
    /// File decryption failure.
    DECRYPTION_FAILURE = 22 => "file decryption failure",
    /// File decompression failure.
    DECOMPRESSION_FAILURE = 23 => "file decompression failure",
    /// Unspecified reason.
    UNSPECIFIED = 99 => "unspecified reason",
}

wire_code! {
    /// Negative End Response reason (NERPREAS), RFC 5024 5.3.14.
    NerpReason(u8), digits = 2;
    /// ESID received with reason 03 (user code not known).
    USER_CODE_NOT_KNOWN = 3 => "ESID 03 received (user code not known)",
    /// ESID received with reason 04 (invalid password).
    INVALID_PASSWORD = 4 => "ESID 04 received (invalid password)",
    /// ESID received with reason 99 (unspecified).
    ESID_UNSPECIFIED = 9 => "ESID 99 received (unspecified reason)",
    /// SFNA(retry=N) 01: invalid file name.
    INVALID_FILENAME = 11 => "SFNA 01 received (invalid file name)",
    /// SFNA(retry=N) 02: invalid destination.
    INVALID_DESTINATION = 12 => "SFNA 02 received (invalid destination)",
    /// SFNA(retry=N) 03: invalid origin.
    INVALID_ORIGIN = 13 => "SFNA 03 received (invalid origin)",
    /// SFNA(retry=N) 04: invalid storage record format.
    INVALID_RECORD_FORMAT = 14 => "SFNA 04 received (invalid storage record format)",
    /// SFNA(retry=N) 05: maximum record length not supported.
    RECORD_LENGTH_NOT_SUPPORTED = 15 => "SFNA 05 received (maximum record length not supported)",
    /// SFNA(retry=N) 06: file size too big.
    FILE_TOO_BIG = 16 => "SFNA 06 received (file size too big)",
    /// SFNA(retry=N) 10: invalid record count.
    INVALID_RECORD_COUNT = 20 => "SFNA 10 received (invalid record count)",
    /// SFNA(retry=N) 11: invalid byte count.
    INVALID_BYTE_COUNT = 21 => "SFNA 11 received (invalid byte count)",
    /// SFNA(retry=N) 12: access method failure.
    ACCESS_METHOD_FAILURE = 22 => "SFNA 12 received (access method failure)",
    /// SFNA(retry=N) 13: duplicate file.
    DUPLICATE_FILE = 23 => "SFNA 13 received (duplicate file)",
    /// SFNA(retry=N) 14: file direction refused.
    FILE_DIRECTION_REFUSED = 24 => "SFNA 14 received (file direction refused)",
    /// SFNA(retry=N) 15: cipher suite not supported.
    CIPHER_SUITE_NOT_SUPPORTED = 25 => "SFNA 15 received (cipher suite not supported)",
    /// SFNA(retry=N) 16: encrypted file not allowed.
    ENCRYPTED_FILE_NOT_ALLOWED = 26 => "SFNA 16 received (encrypted file not allowed)",
    /// SFNA(retry=N) 17: unencrypted file not allowed.
    UNENCRYPTED_FILE_NOT_ALLOWED = 27 => "SFNA 17 received (unencrypted file not allowed)",
    /// SFNA(retry=N) 18: compression not allowed.
    COMPRESSION_NOT_ALLOWED = 28 => "SFNA 18 received (compression not allowed)",
    /// SFNA(retry=N) 19: signed file not allowed.
    SIGNED_FILE_NOT_ALLOWED = 29 => "SFNA 19 received (signed file not allowed)",
    /// SFNA(retry=N) 20: unsigned file not allowed.
    UNSIGNED_FILE_NOT_ALLOWED = 30 => "SFNA 20 received (unsigned file not allowed)",
    /// File signature not valid.
    INVALID_SIGNATURE = 31 => "file signature not valid",
    /// File decompression failed.
    DECOMPRESSION_FAILED = 32 => "file decompression failed",
    /// File decryption failed.
    DECRYPTION_FAILED = 33 => "file decryption failed",
    /// File processing failed.
    PROCESSING_FAILED = 34 => "file processing failed",
    /// Not delivered to recipient.
    NOT_DELIVERED = 35 => "not delivered to recipient",
    /// Not acknowledged by recipient.
    NOT_ACKNOWLEDGED = 36 => "not acknowledged by recipient",
    /// Transmission stopped by the operator.
    STOPPED_BY_OPERATOR = 50 => "transmission stopped by the operator",
    /// File size incompatible with recipient's protocol version.
    FILE_SIZE_INCOMPATIBLE = 90 => "file size incompatible with recipient's protocol version",
    /// Unspecified reason.
    UNSPECIFIED = 99 => "unspecified reason",
}

wire_code! {
    /// Cipher suite (SFIDCIPH), RFC 5024 10.2 and Odette OP09.
    CipherSuite(u8), digits = 2;
    /// No security services.
    NONE = 0 => "no security services",
    /// 3DES-EDE-CBC-3KEY, RSA PKCS#1 v1.5, SHA-1.
    TDES_RSA_SHA1 = 1 => "3DES_EDE_CBC_3KEY / RSA_PKCS1_15 / SHA1",
    /// AES-256-CBC, RSA PKCS#1 v1.5, SHA-1 (mandatory to implement).
    AES256_RSA_SHA1 = 2 => "AES_256_CBC / RSA_PKCS1_15 / SHA1",
    /// 3DES-EDE-CBC-3KEY, RSA PKCS#1 v1.5, SHA-256 (Odette OP09).
    TDES_RSA_SHA256 = 3 => "3DES_EDE_CBC_3KEY / RSA_PKCS1_15 / SHA256",
    /// AES-256-CBC, RSA PKCS#1 v1.5, SHA-256 (Odette OP09).
    AES256_RSA_SHA256 = 4 => "AES_256_CBC / RSA_PKCS1_15 / SHA256",
    /// 3DES-EDE-CBC-3KEY, RSA PKCS#1 v1.5, SHA-512 (Odette OP09).
    TDES_RSA_SHA512 = 5 => "3DES_EDE_CBC_3KEY / RSA_PKCS1_15 / SHA512",
    /// AES-256-CBC, RSA PKCS#1 v1.5, SHA-512 (Odette OP09).
    AES256_RSA_SHA512 = 6 => "AES_256_CBC / RSA_PKCS1_15 / SHA512",
}

wire_code! {
    /// File security level (SFIDSEC), RFC 5024 5.3.3.
    SecurityLevel(u8), digits = 2;
    /// No security services.
    NONE = 0 => "no security services",
    /// Encrypted.
    ENCRYPTED = 1 => "encrypted",
    /// Signed.
    SIGNED = 2 => "signed",
    /// Encrypted and signed.
    ENCRYPTED_AND_SIGNED = 3 => "encrypted and signed",
}

wire_code! {
    /// File compression algorithm (SFIDCOMP), RFC 5024 5.3.3.
    FileCompression(u8), digits = 1;
    /// No compression.
    NONE = 0 => "no compression",
    /// Compressed with zlib (as CMS CompressedData).
    ZLIB = 1 => "zlib",
}

wire_code! {
    /// File enveloping format (SFIDENV), RFC 5024 5.3.3.
    FileEnvelope(u8), digits = 1;
    /// No envelope.
    NONE = 0 => "no envelope",
    /// Enveloped using CMS.
    CMS = 1 => "CMS",
}

/// Virtual file format (SFIDFMT), RFC 5024 1.5.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileFormat {
    /// `F`: fixed-length records of SFIDLRECL octets.
    Fixed,
    /// `V`: variable-length records up to SFIDLRECL octets.
    Variable,
    /// `U`: unstructured stream of octets.
    Unstructured,
    /// `T`: text; lines delimited by CR LF, carried as a stream.
    Text,
}

impl FileFormat {
    /// The wire letter.
    pub fn as_byte(self) -> u8 {
        match self {
            FileFormat::Fixed => b'F',
            FileFormat::Variable => b'V',
            FileFormat::Unstructured => b'U',
            FileFormat::Text => b'T',
        }
    }

    /// Parses the wire letter (lowercase accepted).
    pub fn from_byte(b: u8) -> Option<Self> {
        match b.to_ascii_uppercase() {
            b'F' => Some(FileFormat::Fixed),
            b'V' => Some(FileFormat::Variable),
            b'U' => Some(FileFormat::Unstructured),
            b'T' => Some(FileFormat::Text),
            _ => None,
        }
    }

    /// Whether the restart position and EFID record count are expressed in
    /// records (F, V) rather than 1 KiB blocks / octets (U, T).
    pub fn is_record_oriented(self) -> bool {
        matches!(self, FileFormat::Fixed | FileFormat::Variable)
    }
}

/// Send/receive capability (SSIDSR), RFC 5024 5.3.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionMode {
    /// `S`: the location can only send files.
    Send,
    /// `R`: the location can only receive files.
    Receive,
    /// `B`: the location can both send and receive files.
    Both,
}

impl SessionMode {
    /// The wire letter.
    pub fn as_byte(self) -> u8 {
        match self {
            SessionMode::Send => b'S',
            SessionMode::Receive => b'R',
            SessionMode::Both => b'B',
        }
    }

    /// Parses the wire letter (lowercase accepted).
    pub fn from_byte(b: u8) -> Option<Self> {
        match b.to_ascii_uppercase() {
            b'S' => Some(SessionMode::Send),
            b'R' => Some(SessionMode::Receive),
            b'B' => Some(SessionMode::Both),
            _ => None,
        }
    }

    /// Whether this location may send files.
    pub fn can_send(self) -> bool {
        matches!(self, SessionMode::Send | SessionMode::Both)
    }

    /// Whether this location may receive files.
    pub fn can_receive(self) -> bool {
        matches!(self, SessionMode::Receive | SessionMode::Both)
    }

    /// Whether two adjacent locations can work together: an error occurs if
    /// both specify only send or only receive (RFC 5024 5.3.2 SSIDSR).
    pub fn compatible_with(self, peer: SessionMode) -> bool {
        !matches!(
            (self, peer),
            (SessionMode::Send, SessionMode::Send) | (SessionMode::Receive, SessionMode::Receive)
        )
    }
}

/// Virtual file date and time stamp (SFIDDATE + SFIDTIME and the EERP/NERP copies).
///
/// Together with the dataset name it identifies a virtual file. From revision
/// 1.4 on (levels 4 and 5) the commands carry `CCYYMMDD` and `HHMMSScccc` (cccc
/// a counter 0001-9999 for higher resolution, RFC 5024 5.3.3); the RFC 2204
/// layouts (levels 1 and 2) carry `YYMMDD` and `HHMMSS` only: the century is
/// then inferred (years 00-69 are 20xx, 70-99 are 19xx) and the counter is 0.
///
/// The decoder only lets through stamps that are a calendar date and a time of
/// day ([`is_calendar_date`](Self::is_calendar_date),
/// [`is_time_of_day`](Self::is_time_of_day)), with a counter of 0001-9999 at
/// levels 4 and 5; the encoder refuses anything else. [`VirtualFileTime::new`]
/// checks the same for values this side creates (counter 0 allowed: it is the
/// counter of a stamp that came through a level without one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VirtualFileTime {
    /// Year with century (0..=9999).
    pub year: u16,
    /// Month (1..=12).
    pub month: u8,
    /// Day of month (1..=28/29/30/31 as the month has).
    pub day: u8,
    /// Hour (0..=23).
    pub hour: u8,
    /// Minute (0..=59).
    pub minute: u8,
    /// Second (0..=59; 60 accepted for leap seconds).
    pub second: u8,
    /// Sub-second counter (1..=9999 on the wire at levels 4 and 5; 0 for a
    /// stamp from a level without one).
    pub counter: u16,
}

impl VirtualFileTime {
    /// Builds a stamp: `None` unless the date is a calendar date, the time a
    /// time of day and the counter at most 9999.
    pub fn new(
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
        counter: u16,
    ) -> Option<Self> {
        let t = Self {
            year,
            month,
            day,
            hour,
            minute,
            second,
            counter,
        };
        (t.is_calendar_date() && t.is_time_of_day()).then_some(t)
    }

    /// Whether year, month and day name a day of the (proleptic) Gregorian
    /// calendar, years 0000-9999: 31 February or month 13 do not.
    pub fn is_calendar_date(&self) -> bool {
        let leap = self.year.is_multiple_of(4)
            && (!self.year.is_multiple_of(100) || self.year.is_multiple_of(400));
        let days = match self.month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return false,
        };
        self.year <= 9999 && (1..=days).contains(&self.day)
    }

    /// Whether hour, minute and second are a time of day (00:00:00 to
    /// 23:59:59, second 60 for a leap second) and the counter is at most 9999.
    pub fn is_time_of_day(&self) -> bool {
        self.hour <= 23 && self.minute <= 59 && self.second <= 60 && self.counter <= 9999
    }

    /// The 8-digit `CCYYMMDD` form.
    pub fn date_string(&self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }

    /// The 10-digit `HHMMSScccc` form.
    pub fn time_string(&self) -> String {
        format!(
            "{:02}{:02}{:02}{:04}",
            self.hour, self.minute, self.second, self.counter
        )
    }
}

impl fmt::Display for VirtualFileTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:04}",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.counter
        )
    }
}

/// A password (SSIDPSWD). Its `Debug` output is redacted so it never reaches a log.
///
/// Passwords are compared and sent exactly as given: unlike the other
/// alphanumeric fields they are not upper-cased, because partners configure
/// mixed-case passwords in practice and changing them would fail the login.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Self {
        Password(s.into())
    }

    /// The password text. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with another password without stopping at the first
    /// difference (for checking a partner's SSIDPSWD). Trailing spaces are
    /// padding and do not count.
    pub fn matches(&self, other: &Password) -> bool {
        let a = self.0.trim_end_matches(' ').as_bytes();
        let b = other.0.trim_end_matches(' ').as_bytes();
        let mut diff = a.len() ^ b.len();
        for i in 0..a.len().max(b.len()) {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0);
            diff |= (x ^ y) as usize;
        }
        diff == 0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_are_kept_and_displayed() {
        let r = EsidReason(42);
        assert!(!r.is_known());
        assert_eq!(r.to_string(), "unknown code 42");
        assert_eq!(EsidReason::TIME_OUT.to_string(), "time out (09)");
        assert_eq!(
            format!("{:?}", SfnaReason::DUPLICATE_FILE),
            "SfnaReason(13)"
        );
    }

    #[test]
    fn mode_compatibility() {
        assert!(!SessionMode::Send.compatible_with(SessionMode::Send));
        assert!(!SessionMode::Receive.compatible_with(SessionMode::Receive));
        assert!(SessionMode::Send.compatible_with(SessionMode::Receive));
        assert!(SessionMode::Both.compatible_with(SessionMode::Send));
    }

    #[test]
    fn password_debug_is_redacted() {
        let p = Password::new("SECRET");
        assert!(!format!("{p:?}").contains("SECRET"));
    }

    #[test]
    fn password_matching() {
        let p = Password::new("Secret");
        assert!(p.matches(&Password::new("Secret")));
        assert!(p.matches(&Password::new("Secret  ")));
        assert!(!p.matches(&Password::new("SECRET")));
        assert!(!p.matches(&Password::new("Secre")));
        assert!(!p.matches(&Password::new("Secrets")));
        assert!(!p.matches(&Password::new("")));
    }

    #[test]
    fn file_time_is_a_calendar_date_and_a_time_of_day() {
        assert!(VirtualFileTime::new(2024, 2, 29, 23, 59, 59, 9999).is_some());
        assert!(VirtualFileTime::new(2000, 2, 29, 0, 0, 60, 1).is_some());
        assert!(VirtualFileTime::new(2024, 12, 31, 0, 0, 0, 0).is_some());
        for (y, mo, d) in [
            (2024, 2, 30),
            (2023, 2, 29),
            (1900, 2, 29),
            (2024, 4, 31),
            (2024, 13, 1),
            (2024, 0, 1),
            (2024, 1, 0),
            (2006, 6, 43),
            (10000, 1, 1),
        ] {
            assert!(
                VirtualFileTime::new(y, mo, d, 0, 0, 0, 1).is_none(),
                "{y}-{mo}-{d}"
            );
        }
        for (h, mi, s, c) in [
            (24, 0, 0, 1),
            (23, 60, 0, 1),
            (23, 59, 61, 1),
            (0, 0, 0, 10000),
        ] {
            assert!(
                VirtualFileTime::new(2024, 1, 1, h, mi, s, c).is_none(),
                "{h}:{mi}:{s}.{c}"
            );
        }
    }
}
