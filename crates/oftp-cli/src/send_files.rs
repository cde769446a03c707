//! What `oftp send` puts in the SFID of each file besides its content: the virtual file name
//! (`--dsn`), the user data (`--user-data`) and the description (`--description`), checked
//! against RFC 5024 section 5.3.3 before the partner is called, so a name the partner could
//! not take never costs a session.
//!
//! - SFIDDSN is a String(26), SFIDUSER a String(8). RFC 5024 5.3 defines a String as the
//!   numerals 0-9, the upper-case letters A-Z and `/ - . & ( )` and space, with no embedded
//!   space; fields are right-padded with spaces. So a name is 1 to 26 of those characters
//!   without spaces (trailing ones are padding). Lower-case letters are refused rather than
//!   upper-cased, so the name the partner sees is exactly the one given. `_` is accepted as
//!   well, as the codec does: the Odette certificate-exchange names
//!   (`ODETTE_CERTIFICATE_DELIVER`, ...) use it, and local file names such as `order_1.edi`
//!   were always sent as `ORDER_1.EDI`.
//! - SFIDDESC is `T(n)`: UTF-8, its length in octets in the 9(3) SFIDDESCL, so at most 999
//!   octets. It exists only in OFTP 2.0 (level 5): with `--level` below 5 it is refused before
//!   the call; when the partner answers with a lower level, the files go without it (the
//!   RFC 2204 SFID has no such field) and `oftp send` says so.
//! - Without `--dsn`, a file's name is its local file name in upper case, cut to 26 characters
//!   ([`oftp::OutgoingFile::new`]); that name is checked the same way, and a file whose name
//!   does not make a valid one needs `--dsn FILE=NAME`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// SFIDDSN: String(26).
pub(crate) const DSN_MAX: usize = 26;
/// SFIDUSER: String(8).
pub(crate) const USER_DATA_MAX: usize = 8;
/// SFIDDESC: its length is the 9(3) SFIDDESCL.
pub(crate) const DESCRIPTION_MAX: usize = 999;

/// Checks `value` as an RFC 5024 5.3 String field of at most `max` characters (trailing spaces
/// are padding and not counted). The error says what is wrong and what is allowed.
pub(crate) fn check_string(value: &str, max: usize, field: &str) -> Result<(), String> {
    let v = value.trim_end_matches(' ');
    let allowed = "0-9, A-Z and / - . & ( ) _";
    if v.is_empty() {
        return Err(format!("{field} is empty"));
    }
    if let Some(ch) = v.chars().find(|c| c.is_ascii_lowercase()) {
        return Err(format!(
            "{v:?} has the lower-case letter {ch:?}; {field} is upper case \
             (RFC 5024 5.3): use {:?}",
            v.to_ascii_uppercase()
        ));
    }
    if let Some(ch) = v
        .chars()
        .find(|&c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || "/-.&()_ ".contains(c)))
    {
        return Err(format!(
            "{v:?} has {ch:?}, which {field} cannot contain: only {allowed} (RFC 5024 5.3)"
        ));
    }
    if v.contains(' ') {
        return Err(format!(
            "{v:?} contains a space, which {field} cannot have inside (RFC 5024 5.3)"
        ));
    }
    let len = v.chars().count();
    if len > max {
        return Err(format!(
            "{v:?} has {len} characters; {field} has at most {max} (RFC 5024 5.3.3)"
        ));
    }
    Ok(())
}

/// Checks `--description`: UTF-8 (a Rust string is) of at most 999 octets.
pub(crate) fn check_description(text: &str) -> Result<()> {
    if text.len() > DESCRIPTION_MAX {
        bail!(
            "--description has {} octets; SFIDDESC holds at most {DESCRIPTION_MAX} \
             (its length is the 3-digit SFIDDESCL, RFC 5024 5.3.3)",
            text.len()
        );
    }
    Ok(())
}

/// The virtual file name of each of `files`, in order, from the `--dsn` values: `NAME` when
/// exactly one file is sent, or `FILE=NAME` (repeatable) for any of them. A name never
/// contains `=`, so everything before the last `=` is the file, as given on the command line
/// (or the same file by another path). Files without a `--dsn` get `None`.
pub(crate) fn virtual_names(files: &[PathBuf], dsn: &[String]) -> Result<Vec<Option<String>>> {
    let mut names: Vec<Option<String>> = vec![None; files.len()];
    for value in dsn {
        let (index, name) = match value.rsplit_once('=') {
            Some((file, name)) => (file_index(files, Path::new(file), value)?, name),
            None if files.len() == 1 => (0, value.as_str()),
            None if files.is_empty() => bail!("--dsn {value}: there is no file to send"),
            None => bail!(
                "--dsn {value}: {} files are sent; name each one with --dsn FILE=NAME",
                files.len()
            ),
        };
        if let Err(e) = check_string(name, DSN_MAX, "a virtual file name (SFIDDSN)") {
            bail!("--dsn {value}: {e}");
        }
        if names[index].is_some() {
            bail!(
                "--dsn {value}: {} already has a virtual file name",
                files[index].display()
            );
        }
        names[index] = Some(name.to_owned());
    }
    Ok(names)
}

/// Which of `files` is `file`: the same text, else the same file on disk.
fn file_index(files: &[PathBuf], file: &Path, value: &str) -> Result<usize> {
    if let Some(i) = files.iter().position(|f| f == file) {
        return Ok(i);
    }
    let canonical = std::fs::canonicalize(file).ok();
    if let Some(c) = canonical
        && let Some(i) = files
            .iter()
            .position(|f| std::fs::canonicalize(f).is_ok_and(|g| g == c))
    {
        return Ok(i);
    }
    bail!(
        "--dsn {value}: {} is not one of the files to send",
        file.display()
    )
}

/// Checks a virtual file name made from a local file name (no `--dsn`).
pub(crate) fn check_default_name(file: &Path, name: &str) -> Result<()> {
    if let Err(e) = check_string(name, DSN_MAX, "a virtual file name (SFIDDSN)") {
        bail!(
            "{}: no valid virtual file name from the file name: {e}; \
             name it with --dsn {}=NAME",
            file.display(),
            file.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DSN: &str = "SFIDDSN";

    #[test]
    fn strings_take_the_rfc_set_up_to_their_length() {
        for ok in [
            "INVOICE.EDI",
            "A/B-C.D&E(F)",
            "0123456789ABCDEFGHIJKLMNOP",
            "PADDED  ",
            "ORDER_1.EDI",
        ] {
            assert_eq!(check_string(ok, DSN_MAX, DSN), Ok(()), "{ok}");
        }
        let err = |v: &str, max| check_string(v, max, DSN).unwrap_err();
        assert!(err("", 26).contains("empty"));
        assert!(err("   ", 26).contains("empty"));
        assert!(err("invoice.edi", 26).contains("\"INVOICE.EDI\""));
        assert!(err("ORDER;1", 26).contains("';'"));
        assert!(err("ÄPFEL", 26).contains("'Ä'"));
        assert!(err("A B", 26).contains("space"));
        assert!(err(" AB", 26).contains("space"));
        assert!(err("0123456789ABCDEFGHIJKLMNOPQ", 26).contains("27 characters"));
        assert!(err("NINECHARS", USER_DATA_MAX).contains("at most 8"));
    }

    #[test]
    fn descriptions_hold_at_most_999_octets() {
        assert!(check_description(&"é".repeat(499)).is_ok());
        let e = check_description(&"é".repeat(500)).unwrap_err().to_string();
        assert!(e.contains("1000 octets"), "{e}");
    }

    #[test]
    fn names_go_to_their_files() {
        let files = vec![PathBuf::from("a.txt"), PathBuf::from("dir/x=y.txt")];
        let names =
            virtual_names(&files, &["dir/x=y.txt=SECOND".into(), "a.txt=FIRST".into()]).unwrap();
        assert_eq!(names, vec![Some("FIRST".into()), Some("SECOND".into())]);
        // Only some files named; the others keep their default.
        let names = virtual_names(&files, &["a.txt=FIRST".into()]).unwrap();
        assert_eq!(names, vec![Some("FIRST".into()), None]);
        // A bare name for one file.
        let one = vec![PathBuf::from("a.txt")];
        let names = virtual_names(&one, &["ORDERS".into()]).unwrap();
        assert_eq!(names, vec![Some("ORDERS".into())]);

        let err = |files: &[PathBuf], dsn: &[&str]| {
            let dsn: Vec<String> = dsn.iter().map(|s| s.to_string()).collect();
            virtual_names(files, &dsn).unwrap_err().to_string()
        };
        assert!(err(&files, &["ORDERS"]).contains("--dsn FILE=NAME"));
        assert!(err(&files, &["b.txt=B"]).contains("not one of the files"));
        assert!(err(&files, &["a.txt=A", "a.txt=B"]).contains("already has"));
        assert!(err(&one, &["a.txt=lower"]).contains("\"LOWER\""));
        assert!(err(&one, &["ORDERS", "a.txt=B"]).contains("already has"));
        assert!(err(&[], &["ORDERS"]).contains("no file"));
    }

    #[test]
    fn the_same_file_by_another_path_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        std::fs::write(&f, b"x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let files = vec![f];
        let other = format!("{}/sub/../a.txt=NAMED", dir.path().display());
        let names = virtual_names(&files, &[other]).unwrap();
        assert_eq!(names, vec![Some("NAMED".into())]);
    }
}
