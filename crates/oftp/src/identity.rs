//! OFTP identification codes, normalised once where they enter.
//!
//! SSIDCODE (RFC 5024 5.3.2), SFIDDEST and SFIDORIG (5.3.3) and their copies in EERP and NERP
//! are `String(25)` fields in the format of an Identification Code (5.4): left justified and
//! padded with spaces, of upper-case letters, digits and a few special characters. An
//! [`OdetteId`] is such a code as the runtime compares it: trailing spaces off, upper case, 1
//! to 25 characters of printable ASCII.
//!
//! Where codes enter, they become an [`OdetteId`] once, and the runtime passes and compares
//! that (equality of `OdetteId`, never of text):
//! - from the wire: the codec keeps raw fields (it takes printable ASCII, upper-cases it and
//!   drops the padding); the connection converts them where the command is handled: SSIDCODE
//!   at login ([`SessionRequest`](crate::handler::SessionRequest),
//!   [`SessionInfo`](crate::handler::SessionInfo); blank: ESID 03), SFIDORIG and SFIDDEST at
//!   the offer ([`FileOffer`](crate::handler::FileOffer),
//!   [`FileKey`](crate::journal::FileKey); blank: SFNA 03 / 02), EERP/NERP destination and
//!   originator when one arrives ([`EndResponse`](crate::handler::EndResponse); blank:
//!   reported and ignored, it answers no file);
//! - from the configuration: [`LocalIdentity::codes`](crate::config::LocalIdentity::codes),
//!   [`PartnerTable`](crate::config::PartnerTable) (each partner with its SFID code) and
//!   [`SecurityContext`](crate::security::SecurityContext) build them, refusing a code no
//!   partner could send;
//! - from the application: [`OutgoingFile`](crate::OutgoingFile) and
//!   [`EndResponse`](crate::handler::EndResponse) take `OdetteId`s.
//!
//! Going out, the codec's encoder gets the text and refuses the characters outside the RFC set.
//! The journal stores the text (see its module doc).

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

/// An OFTP identification code (SSID code, SFID originator or destination), normalised: no
/// trailing spaces, upper case, 1 to [`OdetteId::MAX_LEN`] printable ASCII characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OdetteId(String);

/// Why a text is not an OFTP identification code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Nothing but spaces.
    #[error("the OFTP identification code is empty: give 1 to 25 characters")]
    Empty,
    /// More than 25 characters once trailing spaces are off.
    #[error(
        "the OFTP identification code {code:?} has {len} characters: at most 25 fit \
         (RFC 5024 5.3.2 SSIDCODE, 5.3.3 SFIDDEST/SFIDORIG)"
    )]
    TooLong {
        /// The code given (trailing spaces off).
        code: String,
        /// Its length in characters.
        len: usize,
    },
    /// A character that is not printable ASCII.
    #[error(
        "the OFTP identification code {code:?} contains {ch:?}: use upper-case letters, digits \
         and / - . & ( ) (RFC 5024 5.3, String)"
    )]
    InvalidCharacter {
        /// The code given (trailing spaces off).
        code: String,
        /// The first character that is not allowed.
        ch: char,
    },
}

impl OdetteId {
    /// The width of the code fields (`String(25)`).
    pub const MAX_LEN: usize = 25;

    /// Normalises and checks `code`: trailing spaces off, upper case, 1 to 25 printable ASCII
    /// characters.
    pub fn new(code: &str) -> Result<Self, IdentityError> {
        let code = code.trim_end_matches(' ');
        if code.is_empty() {
            return Err(IdentityError::Empty);
        }
        if let Some(ch) = code.chars().find(|c| !(' '..='~').contains(c)) {
            return Err(IdentityError::InvalidCharacter {
                code: code.to_owned(),
                ch,
            });
        }
        if code.len() > Self::MAX_LEN {
            return Err(IdentityError::TooLong {
                code: code.to_owned(),
                len: code.len(),
            });
        }
        Ok(Self(code.to_ascii_uppercase()))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for OdetteId {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for OdetteId {
    type Error = IdentityError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl fmt::Display for OdetteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OdetteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for OdetteId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for OdetteId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for OdetteId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for OdetteId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_padding_is_dropped_and_letters_are_upper_cased() {
        let id = OdetteId::new("o0013acme    ").unwrap();
        assert_eq!(id.as_str(), "O0013ACME");
        assert_eq!(id, OdetteId::new("O0013ACME").unwrap());
        assert_eq!(id.to_string(), "O0013ACME");
    }

    #[test]
    fn a_full_width_code_padded_with_spaces_is_accepted() {
        let code = "O0013000000ACME-EDI-PROD1";
        assert_eq!(code.len(), OdetteId::MAX_LEN);
        let padded = format!("{code}      ");
        assert_eq!(OdetteId::new(&padded).unwrap(), code);
    }

    #[test]
    fn embedded_and_leading_spaces_stay_as_the_partner_sent_them() {
        assert_eq!(OdetteId::new("ACME SITE ").unwrap(), "ACME SITE");
        assert_eq!(OdetteId::new(" ACME").unwrap(), " ACME");
    }

    #[test]
    fn an_empty_or_blank_code_is_refused() {
        assert_eq!(OdetteId::new(""), Err(IdentityError::Empty));
        assert_eq!(OdetteId::new("     "), Err(IdentityError::Empty));
    }

    #[test]
    fn a_code_longer_than_25_characters_is_refused() {
        let e = OdetteId::new("O0013000000ACME-EDI-PROD12").unwrap_err();
        assert_eq!(
            e,
            IdentityError::TooLong {
                code: "O0013000000ACME-EDI-PROD12".into(),
                len: 26
            }
        );
        assert!(e.to_string().contains("at most 25"), "{e}");
    }

    #[test]
    fn a_code_with_a_character_outside_printable_ascii_is_refused() {
        for (code, ch) in [("ÄCME", 'Ä'), ("AC\tME", '\t'), ("ACME\r", '\r')] {
            assert_eq!(
                OdetteId::new(code),
                Err(IdentityError::InvalidCharacter {
                    code: code.into(),
                    ch
                }),
                "{code:?}"
            );
        }
    }

    #[test]
    fn codes_look_up_by_their_text() {
        let mut map = std::collections::HashMap::new();
        map.insert(OdetteId::new("ACME  ").unwrap(), 1);
        assert_eq!(map.get("ACME"), Some(&1));
        assert_eq!("ACME".parse::<OdetteId>().unwrap(), "ACME");
    }
}
