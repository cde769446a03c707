//! The runtime's default decisions: who may log in, where a file goes, what is a duplicate.
//!
//! These are pure functions of the configuration, the journal lookup and the request, so they
//! are tested without a socket. The handler receives their result as `default_decision()` and
//! may override it.

use std::path::{Path, PathBuf};

use oftp_proto::codec::{EsidReason, ProtocolLevel, SfnaReason};

use crate::config::{IdentityCodes, LocalIdentity, Mode, PartnerTable, SessionLimits};
use crate::handler::{FileDecision, SessionAcceptance, SessionDecision};
use crate::identity::OdetteId;
use crate::journal::{ReceiveState, ReceivedEntry};
use crate::stamp::FileStamp;
use crate::store::{NameContext, NameFormat, StorePolicy};

/// What a peer's SSID offered, as far as the default decision needs it.
#[derive(Debug, Clone)]
pub(crate) struct PeerOffer<'a> {
    pub(crate) ssid: &'a OdetteId,
    pub(crate) password: &'a str,
    pub(crate) level: ProtocolLevel,
    pub(crate) buffer_size: u32,
    pub(crate) credit: u16,
    pub(crate) compression: bool,
    pub(crate) restart: bool,
}

/// The partner table's answer to an SSID.
pub(crate) fn session_decision(
    local: &LocalIdentity,
    codes: &IdentityCodes,
    partners: &PartnerTable,
    limits: &SessionLimits,
    data_dir: &Path,
    offer: &PeerOffer<'_>,
) -> SessionDecision {
    let Some((partner, partner_sfid)) = partners.by_code(offer.ssid) else {
        return SessionDecision::Reject {
            reason: EsidReason::USER_CODE_NOT_KNOWN,
            text: format!("unknown SSID code {}", offer.ssid),
        };
    };
    if !partner.password.matches(offer.password) {
        return SessionDecision::Reject {
            reason: EsidReason::INVALID_PASSWORD,
            text: "invalid password".into(),
        };
    }
    let level = ProtocolLevel(offer.level.0.min(limits.level));
    if !partner.allows_level(level.0) {
        return SessionDecision::Reject {
            reason: EsidReason::MODE_INCOMPATIBLE,
            text: format!("protocol level {} is not allowed for this partner", level.0),
        };
    }
    SessionDecision::Accept(SessionAcceptance {
        partner_name: partner.name.clone(),
        partner_sfid: partner_sfid.clone(),
        inbox: partner
            .inbox
            .clone()
            .unwrap_or_else(|| data_dir.join("inbox").join(&partner.name)),
        outbox: Some(
            partner
                .outbox
                .clone()
                .unwrap_or_else(|| data_dir.join("outbox").join(&partner.name)),
        ),
        local_ssid: codes.ssid.clone(),
        local_sfid: codes.sfid.clone(),
        local_password: partner.our_password(&local.password).clone(),
        level,
        buffer_size: offer.buffer_size.min(limits.buffer_size),
        credit: offer.credit.min(limits.credit),
        mode: limits.mode,
        compression: offer.compression && limits.compression,
        restart: offer.restart && limits.restart,
    })
}

/// What a file offer looks like to the default decision.
#[derive(Debug, Clone)]
pub(crate) struct FileRequest<'a> {
    pub(crate) dsn: &'a str,
    pub(crate) stamp: FileStamp,
    pub(crate) originator: &'a OdetteId,
    pub(crate) destination: &'a OdetteId,
    pub(crate) user_data: &'a str,
}

/// The default answer to SFID.
pub(crate) fn file_decision(
    local_sfid: &OdetteId,
    inbox: &Path,
    format: &NameFormat,
    store: &StorePolicy,
    journal_entry: Option<&ReceivedEntry>,
    req: &FileRequest<'_>,
) -> FileDecision {
    match journal_entry {
        Some(e) if e.state == ReceiveState::Complete => {
            return FileDecision::Reject {
                reason: SfnaReason::DUPLICATE_FILE,
                retry: false,
                text: "duplicate file: already received".into(),
            };
        }
        // An interrupted reception keeps the name it was given, so a restart completes the
        // same file even when the format has %GUID% or %CurrentTime%.
        Some(e) => {
            return FileDecision::Accept {
                target: e.final_path.clone(),
                overwrite: store.overwrite,
            };
        }
        None => {}
    }
    if local_sfid != req.destination {
        return FileDecision::Reject {
            reason: SfnaReason::INVALID_DESTINATION,
            retry: false,
            text: format!(
                "destination {} is not this system ({local_sfid})",
                req.destination
            ),
        };
    }
    let ctx = NameContext {
        virtual_file_name: req.dsn,
        stamp: req.stamp,
        originator: req.originator,
        destination: req.destination,
        user_data: req.user_data,
    };
    let name = match format.render(&ctx) {
        Ok(n) => n,
        Err(e) => {
            return FileDecision::Reject {
                reason: SfnaReason::INVALID_FILENAME,
                retry: false,
                text: e.to_string(),
            };
        }
    };
    let target: PathBuf = inbox.join(name);
    // A certificate-exchange file is kept per partner in the certificate store when it
    // arrives; the inbox copy is for the application, so a newer one replaces it instead of
    // refusing the partner's next request or delivery.
    let overwrite = store.overwrite
        || crate::security::CertificateExchange::from_virtual_file_name(req.dsn).is_some();
    if !overwrite && target.exists() {
        // A different file (not a duplicate) with a name already taken: the operator has to
        // move the old one, so the sender may retry later.
        return FileDecision::Reject {
            reason: SfnaReason::UNSPECIFIED,
            retry: true,
            text: "a file of this name is waiting in the inbox".into(),
        };
    }
    FileDecision::Accept { target, overwrite }
}

/// Our mode as the wire type.
pub(crate) fn wire_mode(mode: Mode) -> oftp_proto::codec::SessionMode {
    match mode {
        Mode::Both => oftp_proto::codec::SessionMode::Both,
        Mode::Send => oftp_proto::codec::SessionMode::Send,
        Mode::Receive => oftp_proto::codec::SessionMode::Receive,
    }
}

/// The wire mode as ours.
pub(crate) fn local_mode(mode: oftp_proto::codec::SessionMode) -> Mode {
    match mode {
        oftp_proto::codec::SessionMode::Both => Mode::Both,
        oftp_proto::codec::SessionMode::Send => Mode::Send,
        oftp_proto::codec::SessionMode::Receive => Mode::Receive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Partner, Password};
    use crate::journal::{Checkpoint, FileKey};
    use crate::stamp::FileStampExt;

    fn setup() -> (LocalIdentity, PartnerTable) {
        let local = LocalIdentity {
            ssid: "O0013ME".into(),
            sfid: "O0013MEFILES".into(),
            password: Password::new("MYPW"),
        };
        let partners = PartnerTable::new([Partner {
            allowed_levels: vec![5, 4],
            ..Partner::new("acme", "O0013ACME", Password::new("SECRET"))
        }])
        .unwrap();
        (local, partners)
    }

    fn offer<'a>(ssid: &'a OdetteId, pw: &'a str, level: u8) -> PeerOffer<'a> {
        PeerOffer {
            ssid,
            password: pw,
            level: ProtocolLevel(level),
            buffer_size: 99_999,
            credit: 999,
            compression: true,
            restart: true,
        }
    }

    #[test]
    fn sessions_are_decided_by_the_partner_table() {
        let (local, partners) = setup();
        let codes = local.codes().unwrap();
        let limits = SessionLimits::default();
        let dd = Path::new("/data");
        let reject =
            |o: PeerOffer<'_>| match session_decision(&local, &codes, &partners, &limits, dd, &o) {
                SessionDecision::Reject { reason, .. } => reason,
                other => panic!("accepted: {other:?}"),
            };
        let code = |s: &str| OdetteId::new(s).unwrap();
        assert_eq!(
            reject(offer(&code("NOBODY"), "SECRET", 5)),
            EsidReason::USER_CODE_NOT_KNOWN
        );
        assert_eq!(
            reject(offer(&code("O0013ACME"), "WRONG", 5)),
            EsidReason::INVALID_PASSWORD
        );
        assert_eq!(
            reject(offer(&code("O0013ACME"), "SECRET", 2)),
            EsidReason::MODE_INCOMPATIBLE
        );

        let SessionDecision::Accept(a) = session_decision(
            &local,
            &codes,
            &partners,
            &limits,
            dd,
            &offer(&code("o0013acme "), "secret  ", 5),
        ) else {
            panic!("rejected")
        };
        assert_eq!(a.partner_name, "acme");
        assert_eq!(a.inbox, Path::new("/data/inbox/acme"));
        assert_eq!(a.local_sfid, "O0013MEFILES");
        assert_eq!(a.buffer_size, limits.buffer_size);
        assert_eq!(a.credit, limits.credit);
        assert_eq!(a.level, ProtocolLevel(5));
        assert!(!a.compression, "we do not offer compression by default");
        assert!(a.restart);
    }

    static ACME: std::sync::LazyLock<OdetteId> =
        std::sync::LazyLock::new(|| "O0013ACME".parse().unwrap());

    fn req(dest: &OdetteId) -> FileRequest<'_> {
        FileRequest {
            dsn: "../INVOICE",
            stamp: FileStamp::parse("20260102030405").unwrap(),
            originator: &ACME,
            destination: dest,
            user_data: "",
        }
    }

    #[test]
    fn files_go_to_the_inbox_under_a_safe_name() {
        let me = OdetteId::new("O0013MEFILES").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let fmt = NameFormat::default();
        let store = StorePolicy::default();
        let d = file_decision(&me, dir.path(), &fmt, &store, None, &req(&me));
        assert_eq!(
            d,
            FileDecision::Accept {
                target: dir.path().join("___INVOICE"),
                overwrite: false
            }
        );

        let wrong = file_decision(
            &me,
            dir.path(),
            &fmt,
            &store,
            None,
            &req(&"OTHER".parse().unwrap()),
        );
        assert!(matches!(
            wrong,
            FileDecision::Reject {
                reason: SfnaReason::INVALID_DESTINATION,
                ..
            }
        ));

        std::fs::write(dir.path().join("___INVOICE"), b"x").unwrap();
        let taken = file_decision(&me, dir.path(), &fmt, &store, None, &req(&me));
        assert!(matches!(taken, FileDecision::Reject { retry: true, .. }));

        // Certificate-exchange files replace the previous one.
        std::fs::write(dir.path().join("ODETTE_CERTIFICATE_REQUEST"), b"x").unwrap();
        let again = file_decision(
            &me,
            dir.path(),
            &fmt,
            &store,
            None,
            &FileRequest {
                dsn: "ODETTE_CERTIFICATE_REQUEST",
                ..req(&me)
            },
        );
        assert_eq!(
            again,
            FileDecision::Accept {
                target: dir.path().join("ODETTE_CERTIFICATE_REQUEST"),
                overwrite: true
            }
        );
    }

    #[test]
    fn journal_decides_duplicates_and_restarts() {
        let me = OdetteId::new("O0013MEFILES").unwrap();
        let fmt = NameFormat::new("%GUID%").unwrap();
        let store = StorePolicy::default();
        let r = req(&me);
        let mut entry = ReceivedEntry {
            id: 1,
            key: FileKey::new(r.originator.clone(), r.dsn, r.stamp),
            state: ReceiveState::Complete,
            partial_path: PathBuf::from("/in/.p"),
            final_path: PathBuf::from("/in/first-name"),
            checkpoint: Checkpoint::default(),
            end_response_sent: true,
            user_data: String::new(),
        };
        let dup = file_decision(&me, Path::new("/in"), &fmt, &store, Some(&entry), &r);
        assert!(matches!(
            dup,
            FileDecision::Reject {
                reason: SfnaReason::DUPLICATE_FILE,
                retry: false,
                ..
            }
        ));
        entry.state = ReceiveState::Receiving;
        let resumed = file_decision(&me, Path::new("/in"), &fmt, &store, Some(&entry), &r);
        assert_eq!(
            resumed,
            FileDecision::Accept {
                target: PathBuf::from("/in/first-name"),
                overwrite: false
            }
        );
    }
}
