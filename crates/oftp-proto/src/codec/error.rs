//! Errors of the command codec and their mapping to ESID reasons.

use super::types::{EsidReason, ProtocolLevel, VirtualFileTime};

/// An exchange buffer could not be decoded.
///
/// "Need more bytes" never appears here: exchange buffers arrive whole out of
/// the STH framing ([`crate::sth`]), so every decode error means the peer sent
/// something malformed. [`DecodeError::esid_reason`] gives the End Session reason
/// to answer it with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The exchange buffer was empty.
    #[error("empty exchange buffer")]
    Empty,
    /// The first octet is not a command code of any ODETTE-FTP revision.
    #[error("command code {code:#04x} is not recognised")]
    UnknownCommand {
        /// The first octet.
        code: u8,
    },
    /// The command exists but not at the session's protocol level.
    #[error("{command} is not defined at protocol level {level:?}")]
    NotAtLevel {
        /// Command name.
        command: &'static str,
        /// Level the buffer was decoded at.
        level: ProtocolLevel,
    },
    /// The buffer length differs from the length implied by the command.
    #[error("{command} has {actual} octets where its layout implies {expected}")]
    Length {
        /// Command name.
        command: &'static str,
        /// Length implied by the command code and length fields.
        expected: usize,
        /// Length received.
        actual: usize,
    },
    /// A field holds a value its format does not allow.
    #[error("{command} field {field} is invalid: {problem}")]
    InvalidField {
        /// Command name.
        command: &'static str,
        /// Field name as in the RFC (e.g. `SSIDSDEB`).
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A date or time stamp field holds digits that are no calendar date, no
    /// time of day, or a counter outside 0001-9999 (RFC 5024 5.3.3).
    #[error("{command} field {field} {value:?} is invalid: {problem}")]
    InvalidDateTime {
        /// Command name.
        command: &'static str,
        /// Field name as in the RFC (e.g. `SFIDDATE`).
        field: &'static str,
        /// The field as received (digits only).
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// SSIDLEV is not a protocol release level (0, 3 or not a digit): the
    /// SSID negotiation fails (RFC 5024 9.8.2 D and G, ESID 10).
    #[error("SSID field SSIDLEV {value:?} is not a protocol release level (1, 2, 4, 5 or higher)")]
    UnsupportedLevel {
        /// The octet received (shown escaped).
        value: String,
    },
}

impl DecodeError {
    /// The End Session reason to send when a peer's buffer fails to decode
    /// (RFC 5024 5.3.11): unknown command 01, wrong length 07, bad field 06,
    /// an SSID level that is no release level 10 (the negotiation fails).
    pub fn esid_reason(&self) -> EsidReason {
        match self {
            DecodeError::Empty | DecodeError::UnknownCommand { .. } => {
                EsidReason::COMMAND_NOT_RECOGNISED
            }
            DecodeError::NotAtLevel { .. } => EsidReason::COMMAND_NOT_RECOGNISED,
            DecodeError::Length { .. } => EsidReason::BUFFER_SIZE_ERROR,
            DecodeError::InvalidField { .. } | DecodeError::InvalidDateTime { .. } => {
                EsidReason::INVALID_DATA
            }
            DecodeError::UnsupportedLevel { .. } => EsidReason::MODE_INCOMPATIBLE,
        }
    }
}

/// A command could not be encoded because a field does not fit its wire format.
///
/// Encoding is where this side's values are checked: names longer than their
/// field, characters outside the alphanumeric set, numbers wider than their
/// digits, or values the negotiated level cannot carry (security fields below
/// 2.0) are refused rather than truncated or dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A text field is longer than its fixed width.
    #[error("{command} field {field} is {len} octets long; at most {max} fit")]
    TooLong {
        /// Command name.
        command: &'static str,
        /// Field name.
        field: &'static str,
        /// Length given.
        len: usize,
        /// Maximum length.
        max: usize,
    },
    /// A field contains a character its format does not allow.
    #[error(
        "{command} field {field} contains {ch:?}; allowed are A-Z, 0-9, space (not leading) and / - . & ( ) _"
    )]
    InvalidCharacter {
        /// Command name.
        command: &'static str,
        /// Field name.
        field: &'static str,
        /// The offending character.
        ch: char,
    },
    /// A number does not fit its digits or range.
    #[error("{command} field {field} value {value} is out of range (max {max})")]
    OutOfRange {
        /// Command name.
        command: &'static str,
        /// Field name.
        field: &'static str,
        /// Value given.
        value: u64,
        /// Largest allowed value.
        max: u64,
    },
    /// The command or a non-default field value does not exist at this level.
    #[error("{what} cannot be sent at protocol level {} (needs {needs})", level.0)]
    NotAtLevel {
        /// What could not be expressed.
        what: &'static str,
        /// The level requested.
        level: ProtocolLevel,
        /// The revision that introduced it (e.g. "ODETTE-FTP 2.0").
        needs: &'static str,
    },
    /// A date/time stamp is no calendar date, no time of day, or its counter
    /// is outside what the level carries (0001-9999 at levels 4 and 5).
    #[error("{command} field {field} {stamp} is invalid: {problem}")]
    InvalidDateTime {
        /// Command name.
        command: &'static str,
        /// Field names.
        field: &'static str,
        /// The stamp given.
        stamp: VirtualFileTime,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The encoded buffer would exceed the 99999-octet exchange buffer maximum.
    #[error("{command} would be {len} octets; an exchange buffer holds at most 99999")]
    BufferTooLarge {
        /// Command name.
        command: &'static str,
        /// Encoded length.
        len: usize,
    },
}
