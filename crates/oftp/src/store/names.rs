//! Names of received files: the configurable format with the seed's macros, and the
//! sanitising that keeps every rendered name one file name inside the target directory.

use super::StoreError;
use crate::identity::OdetteId;
use crate::stamp::{FileStamp, FileStampExt};

/// Seed default of `ReceivedFileNameFormat`: the virtual file name as sent.
pub const DEFAULT_NAME_FORMAT: &str = "%VirtualFileName%";

/// Values the name macros expand to.
#[derive(Debug, Clone)]
pub struct NameContext<'a> {
    /// `%VirtualFileName%`: the dataset name (SFIDDSN), as sent.
    pub virtual_file_name: &'a str,
    /// `%VirtualFileDate%` / `%VirtualFileDate:FORMAT%`.
    pub stamp: FileStamp,
    /// `%Originator%`: SFIDORIG.
    pub originator: &'a OdetteId,
    /// `%Destination%`: SFIDDEST.
    pub destination: &'a OdetteId,
    /// `%UserData%`: SFIDUSER.
    pub user_data: &'a str,
}

/// A received-file name format such as `%Originator%_%VirtualFileName%_%VirtualFileDate%`.
///
/// The rendered result is always one file name: every character that could name another
/// directory is replaced (see [`sanitize_file_name`]), so a format cannot place files outside the
/// target directory either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameFormat(String);

impl Default for NameFormat {
    fn default() -> Self {
        Self(DEFAULT_NAME_FORMAT.to_owned())
    }
}

impl NameFormat {
    /// Checks the macros of `format` and keeps it.
    pub fn new(format: impl Into<String>) -> Result<Self, StoreError> {
        let format = Self(format.into());
        // Render once with dummy values so a typo is reported at start-up, not per file.
        let code = OdetteId::new("O").expect("\"O\" is an identification code");
        let probe = NameContext {
            virtual_file_name: "X",
            stamp: FileStamp::now(),
            originator: &code,
            destination: &code,
            user_data: "",
        };
        format.expand(&probe)?;
        Ok(format)
    }

    /// The format text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Expands the macros and sanitises the result into a single safe file name.
    pub fn render(&self, ctx: &NameContext<'_>) -> Result<String, StoreError> {
        let raw = self.expand(ctx)?;
        sanitize_file_name(&raw)
    }

    fn expand(&self, ctx: &NameContext<'_>) -> Result<String, StoreError> {
        let mut out = String::new();
        let mut rest = self.0.as_str();
        while let Some(start) = rest.find('%') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let end = after
                .find('%')
                .ok_or_else(|| StoreError::UnterminatedMacro(self.0.clone()))?;
            let name = &after[..end];
            match name {
                "" => out.push('%'),
                "VirtualFileName" => out.push_str(ctx.virtual_file_name.trim_end()),
                "VirtualFileDate" => out.push_str(&ctx.stamp.digits()),
                "Originator" => out.push_str(ctx.originator.as_str()),
                "Destination" => out.push_str(ctx.destination.as_str()),
                "UserData" => out.push_str(ctx.user_data.trim_end()),
                "CurrentTime" => {
                    out.push_str(&chrono::Local::now().format("%Y%m%d%H%M%S%3f").to_string())
                }
                "GUID" => out.push_str(&uuid::Uuid::new_v4().to_string()),
                other => match other.strip_prefix("VirtualFileDate:") {
                    Some(pattern) => out.push_str(&ctx.stamp.format(pattern)),
                    None => return Err(StoreError::UnknownMacro(other.to_owned())),
                },
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Device names Windows reserves in every directory (with or without an extension).
const RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM0", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7",
    "COM8", "COM9", "LPT0", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    "CONIN$", "CONOUT$",
];

/// Longest file name (in bytes) most file systems accept.
const MAX_NAME_BYTES: usize = 255;

/// Turns a name received from a peer into one safe file name.
///
/// Path separators (`/`, `\`), NUL, control characters and the characters Windows forbids
/// (`: * ? " < > |`) become `_`; leading dots become `_` (no hidden files, no `..`, and no clash
/// with this store's `.oftp-*.part` temporaries); trailing dots and spaces are removed; reserved
/// device names (`CON`, `NUL`, `COM1`, ... also with an extension) get a `_` prefix; the result is cut
/// to 255 bytes on a character boundary. A name that ends up empty is an error.
pub fn sanitize_file_name(name: &str) -> Result<String, StoreError> {
    let mut out: String = name
        .trim()
        .chars()
        .map(|c| match c {
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    let leading_dots = out.len() - out.trim_start_matches('.').len();
    out.replace_range(..leading_dots, &"_".repeat(leading_dots));
    let trimmed_len = out.trim_end_matches(['.', ' ']).len();
    out.truncate(trimmed_len);
    if out.is_empty() || out.chars().all(|c| c == '_') && name.trim().chars().all(|c| c == '.') {
        return Err(StoreError::UnusableName(name.to_owned()));
    }
    let stem = out.split('.').next().unwrap_or("").trim_end();
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
        out.insert(0, '_');
    }
    if out.len() > MAX_NAME_BYTES {
        let mut cut = MAX_NAME_BYTES;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use std::path::Path;

    static ACME: std::sync::LazyLock<OdetteId> =
        std::sync::LazyLock::new(|| "O0013000000ACME".parse().unwrap());
    static BETA: std::sync::LazyLock<OdetteId> =
        std::sync::LazyLock::new(|| "O0013000000BETA".parse().unwrap());

    fn ctx<'a>(name: &'a str) -> NameContext<'a> {
        let dt = NaiveDate::from_ymd_opt(2026, 1, 2)
            .unwrap()
            .and_hms_opt(3, 4, 5)
            .unwrap();
        NameContext {
            virtual_file_name: name,
            stamp: FileStamp::from_datetime(dt, 7),
            originator: &ACME,
            destination: &BETA,
            user_data: "USR",
        }
    }

    #[test]
    fn default_format_is_the_virtual_file_name() {
        let f = NameFormat::default();
        assert_eq!(f.render(&ctx("INVOICE.EDI")).unwrap(), "INVOICE.EDI");
    }

    #[test]
    fn macros_expand() {
        let f = NameFormat::new(
            "%Originator%-%Destination%-%UserData%-%VirtualFileName%-%VirtualFileDate%-%VirtualFileDate:yyMMdd%-100%%",
        )
        .unwrap();
        assert_eq!(
            f.render(&ctx("A")).unwrap(),
            "O0013000000ACME-O0013000000BETA-USR-A-202601020304050007-260102-100%"
        );
        let g = NameFormat::new("%GUID%").unwrap();
        assert_eq!(g.render(&ctx("A")).unwrap().len(), 36);
        let t = NameFormat::new("%CurrentTime%").unwrap();
        assert_eq!(t.render(&ctx("A")).unwrap().len(), 17);
    }

    #[test]
    fn date_macro_with_slashes_stays_one_name() {
        let f = NameFormat::new("%VirtualFileDate:MM/dd/yyyy%_%VirtualFileName%").unwrap();
        assert_eq!(f.render(&ctx("X")).unwrap(), "01_02_2026_X");
    }

    #[test]
    fn bad_formats_are_reported() {
        assert!(matches!(
            NameFormat::new("%Nope%"),
            Err(StoreError::UnknownMacro(m)) if m == "Nope"
        ));
        assert!(matches!(
            NameFormat::new("%VirtualFileName"),
            Err(StoreError::UnterminatedMacro(_))
        ));
    }

    #[test]
    fn sanitising_keeps_names_inside_the_directory() {
        let cases = [
            ("../../etc/passwd", "___.._etc_passwd"),
            ("..\\..\\boot.ini", "___.._boot.ini"),
            ("/abs/path", "_abs_path"),
            ("a\0b\x07c", "a_b_c"),
            ("CON", "_CON"),
            ("nul.txt", "_nul.txt"),
            ("com1.edi", "_com1.edi"),
            ("COM10", "COM10"),
            (".hidden", "_hidden"),
            ("trailing. . ", "trailing"),
            ("a:b*c?d\"e<f>g|h", "a_b_c_d_e_f_g_h"),
        ];
        for (input, want) in cases {
            assert_eq!(sanitize_file_name(input).unwrap(), want, "{input:?}");
        }
        for unusable in ["", "   ", ".", "..", "..."] {
            assert!(sanitize_file_name(unusable).is_err(), "{unusable:?}");
        }
        let long = "é".repeat(300);
        let cut = sanitize_file_name(&long).unwrap();
        assert!(cut.len() <= 255 && cut.chars().all(|c| c == 'é'));
    }

    proptest::proptest! {
        #[test]
        fn sanitised_names_are_single_components(name in "\\PC{0,40}") {
            if let Ok(out) = sanitize_file_name(&name) {
                let p = Path::new(&out);
                let comps: Vec<_> = p.components().collect();
                proptest::prop_assert_eq!(comps.len(), 1);
                proptest::prop_assert!(matches!(comps[0], std::path::Component::Normal(_)));
                proptest::prop_assert!(!out.starts_with('.'));
                proptest::prop_assert!(!out.contains(['/', '\\', '\0']));
            }
        }
    }
}
