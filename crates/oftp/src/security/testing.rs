//! Fixtures for the unit tests of this module: contexts, SFIDs, folder listings.

use std::path::Path;

use oftp_proto::codec::{FileFormat, Sfid, VirtualFileTime};

use super::{LocalSecurityConfig, PartnerSecurityConfig, SecurityContext};

pub(super) const ME: &str = "O0013ME";
pub(super) const PARTNER: &str = "O0013PARTNER";

/// Our context (code [`ME`], no keys of our own, work folder `work`) with one partner
/// ([`PARTNER`], named "partner") of this policy.
pub(super) fn context(work: &Path, partner: &PartnerSecurityConfig) -> SecurityContext {
    SecurityContext::builder(ME, &LocalSecurityConfig::default(), work.to_owned())
        .unwrap()
        .partner("partner", PARTNER, PARTNER, partner)
        .unwrap()
        .build()
}

/// An unstructured file from `from` to `to` without services.
pub(super) fn sfid(from: &str, to: &str) -> Sfid {
    let stamp = VirtualFileTime {
        year: 2026,
        month: 12,
        day: 6,
        hour: 12,
        minute: 0,
        second: 0,
        counter: 1,
    };
    Sfid::new("INVOICE", stamp, from, to, FileFormat::Unstructured, 0)
}

/// The names in `dir`, sorted.
pub(super) fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
