//! End responses between the runtime's [`EndResponse`] and the codec's EERP/NERP: our EERP and
//! our NERP for a received file (one constructor each), the command that goes on the wire for
//! a response, and a received command as the handler sees it. Pure conversions, no I/O.

use oftp_proto::codec::{Eerp, Nerp, NerpReason};
use oftp_proto::session::EndResponse as WireEndResponse;

use crate::handler::{EndResponse, NegativeResponse};
use crate::identity::{IdentityError, OdetteId};
use crate::journal::{Direction as JournalDirection, EndResponseEntry, FileKey};

/// Our EERP for a file we received: to its originator, from us (`local_sfid`), with the user
/// data of its SFID; hash and signature are added when it is sent, if the file asked for a
/// signed response.
pub(super) fn our_eerp(key: &FileKey, local_sfid: &OdetteId, user_data: String) -> EndResponse {
    EndResponse {
        virtual_file_name: key.dsn.clone(),
        stamp: key.stamp,
        destination: key.originator.clone(),
        originator: local_sfid.clone(),
        user_data,
        negative: None,
        file_hash: Vec::new(),
        signature: Vec::new(),
        signature_verified: false,
    }
}

/// Our NERP for a file we received but cannot process: like [`our_eerp`], with the reason and
/// text, and us as its creator (NERPCREA, RFC 5024 5.3.14).
pub(super) fn our_nerp(
    key: &FileKey,
    local_sfid: &OdetteId,
    user_data: String,
    reason: NerpReason,
    text: String,
) -> EndResponse {
    EndResponse {
        negative: Some(NegativeResponse {
            reason,
            creator: local_sfid.to_string(),
            text,
        }),
        ..our_eerp(key, local_sfid, user_data)
    }
}

/// The EERP or NERP command for `r`.
pub(super) fn to_wire(r: &EndResponse) -> WireEndResponse {
    let time = r.stamp;
    match &r.negative {
        None => WireEndResponse::Positive(Eerp {
            dsn: r.virtual_file_name.clone(),
            date_time: time,
            user_data: r.user_data.clone(),
            destination: r.destination.to_string(),
            originator: r.originator.to_string(),
            hash: r.file_hash.clone(),
            signature: r.signature.clone(),
        }),
        Some(n) => WireEndResponse::Negative(Nerp {
            dsn: r.virtual_file_name.clone(),
            date_time: time,
            destination: r.destination.to_string(),
            originator: r.originator.to_string(),
            creator: n.creator.clone(),
            reason: n.reason,
            text: n.text.clone(),
            hash: r.file_hash.clone(),
            signature: r.signature.clone(),
        }),
    }
}

/// A received EERP or NERP as the handler sees it (the codec has taken the padding off its
/// fields; the signature not verified yet), with the date and time strings as they came, over
/// which the signature is made. Its destination and originator become identification codes
/// here; a blank one (no file can be answered by it) is the error.
pub(super) fn from_wire(
    r: WireEndResponse,
) -> Result<(EndResponse, String, String), IdentityError> {
    let (date, time) = match &r {
        WireEndResponse::Positive(e) => (e.date_time.date_string(), e.date_time.time_string()),
        WireEndResponse::Negative(n) => (n.date_time.date_string(), n.date_time.time_string()),
    };
    let resp = match r {
        WireEndResponse::Positive(e) => EndResponse {
            virtual_file_name: e.dsn,
            stamp: e.date_time,
            destination: OdetteId::new(&e.destination)?,
            originator: OdetteId::new(&e.originator)?,
            user_data: e.user_data,
            negative: None,
            file_hash: e.hash,
            signature: e.signature,
            signature_verified: false,
        },
        WireEndResponse::Negative(n) => EndResponse {
            virtual_file_name: n.dsn,
            stamp: n.date_time,
            destination: OdetteId::new(&n.destination)?,
            originator: OdetteId::new(&n.originator)?,
            user_data: String::new(),
            negative: Some(NegativeResponse {
                reason: n.reason,
                creator: n.creator,
                text: n.text,
            }),
            file_hash: n.hash,
            signature: n.signature,
            signature_verified: false,
        },
    };
    Ok((resp, date, time))
}

/// The journal's record of end response `r`, sent to or received from `partner` (its SSID
/// code): the file it answers is named by its originator, the response's destination.
pub(super) fn journal_entry(
    direction: JournalDirection,
    r: &EndResponse,
    partner: String,
) -> EndResponseEntry {
    EndResponseEntry {
        direction,
        key: FileKey::new(r.destination.clone(), &r.virtual_file_name, r.stamp),
        destination: r.destination.to_string(),
        negative: r
            .negative
            .as_ref()
            .map(|n| (u16::from(n.reason.0), n.text.clone())),
        partner,
        at: chrono::Utc::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::{FileStamp, FileStampExt};

    fn me() -> OdetteId {
        "ME".parse().unwrap()
    }

    fn key() -> FileKey {
        let stamp = FileStamp::parse("202612061122330012").unwrap();
        FileKey::new("PARTNER".parse().unwrap(), "INVOICES", stamp)
    }

    #[test]
    fn our_eerp_goes_from_us_to_the_originator_of_the_file() {
        let k = key();
        let r = our_eerp(&k, &me(), "ud".into());
        assert_eq!(r.virtual_file_name, "INVOICES");
        assert_eq!(r.stamp, k.stamp);
        assert_eq!(r.destination, "PARTNER");
        assert_eq!(r.originator, "ME");
        assert_eq!(r.user_data, "ud");
        assert!(r.negative.is_none() && r.file_hash.is_empty() && r.signature.is_empty());
    }

    #[test]
    fn our_nerp_names_us_as_its_creator_and_carries_the_reason() {
        let r = our_nerp(
            &key(),
            &me(),
            String::new(),
            NerpReason::DECRYPTION_FAILED,
            "bad key".into(),
        );
        let n = r.negative.as_ref().unwrap();
        assert_eq!(n.reason, NerpReason::DECRYPTION_FAILED);
        assert_eq!(n.creator, "ME");
        assert_eq!(n.text, "bad key");
        assert_eq!(
            (r.destination.as_str(), r.originator.as_str()),
            ("PARTNER", "ME")
        );
    }

    #[test]
    fn an_end_response_survives_the_wire_both_ways() {
        let mut eerp = our_eerp(&key(), &me(), "ud".into());
        eerp.file_hash = vec![1, 2];
        eerp.signature = vec![3];
        let (back, date, time) = from_wire(to_wire(&eerp)).unwrap();
        assert_eq!(back, eerp);
        assert_eq!((date.as_str(), time.as_str()), ("20261206", "1122330012"));
        let nerp = our_nerp(
            &key(),
            &me(),
            String::new(),
            NerpReason::INVALID_SIGNATURE,
            "why".into(),
        );
        assert!(matches!(to_wire(&nerp), WireEndResponse::Negative(_)));
        assert_eq!(from_wire(to_wire(&nerp)).unwrap().0, nerp);
    }

    #[test]
    fn a_received_end_response_with_a_blank_destination_names_no_file() {
        let mut eerp = to_wire(&our_eerp(&key(), &me(), String::new()));
        if let WireEndResponse::Positive(e) = &mut eerp {
            e.destination = String::new();
        }
        assert!(from_wire(eerp).is_err());
    }

    #[test]
    fn the_journal_records_an_end_response_under_the_file_it_answers() {
        let nerp = our_nerp(
            &key(),
            &me(),
            String::new(),
            NerpReason::INVALID_SIGNATURE,
            "why".into(),
        );
        let e = journal_entry(JournalDirection::Sent, &nerp, "PEER".into());
        assert_eq!(e.key, key());
        assert_eq!(e.destination, "PARTNER");
        assert_eq!(
            e.negative,
            Some((u16::from(NerpReason::INVALID_SIGNATURE.0), "why".into()))
        );
        assert_eq!(e.partner, "PEER");
        let e = journal_entry(
            JournalDirection::Received,
            &our_eerp(&key(), &me(), String::new()),
            "PEER".into(),
        );
        assert_eq!(e.negative, None);
    }
}
