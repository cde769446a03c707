//! Restart positions, as pure arithmetic (no I/O, no clock): the position we ask for when we
//! offer a file again (SFIDREST), the durable point we resume a reception from and answer with
//! (SFPAACNT), and the restart point a checkpoint records.
//!
//! The rules, from RFC 5024 (checked against the text in `/work/shared/specs/rfc5024.txt`):
//! - 1.5.4 and 5.3.3 (SFIDREST): the position counts records for F and V files and 1 KiB
//!   (1024 octet) blocks of the file for U and T files, always from the start of the virtual
//!   file; a file that was signed, compressed or encrypted is treated as U whatever SFIDFMT
//!   says (`Sfid::transmitted_format`).
//! - 3.3.1 note 3 and 4.3.3: a position other than 0 is only valid when restart was agreed at
//!   the session start; without it the count is 0.
//! - 5.3.4 (SFPAACNT) and 3.3.1 note 4: the receiver answers a count lower than or equal to
//!   the one the sender asked for, counting the user data it received; 0 when it cannot
//!   restart. Retransmission then starts at that (lowest) value.
//!
//! What is durable is decided elsewhere: a checkpoint only records a point after the temporary
//! file was fsynced that far (`receive::data`), and the temporary file is cut back to the
//! point before the SFPA goes out (`crate::store::PartialFile::resume`). Reading a local file
//! from a position is `crate::source`'s job.

use oftp_proto::codec::FileFormat;
use oftp_proto::data::{restart_byte_offset, restart_units};

use crate::journal::Checkpoint;

/// The restart position a received SFID asks for, as far as this session may restart: the
/// SFIDREST value when restart was agreed at the session start, otherwise 0 (RFC 5024 3.3.1
/// note 3).
pub(super) fn requested(restart_agreed: bool, sfidrest: u64) -> u64 {
    if restart_agreed { sfidrest } else { 0 }
}

/// The durable point to resume a reception from, given the last durable `checkpoint` of an
/// earlier reception of the same file and the position the sender `asked` for (already
/// through [`requested`]); its `position` is what we answer in SFPAACNT. `None` starts afresh
/// (SFPAACNT 0).
///
/// SFPAACNT must not exceed SFIDREST (RFC 5024 5.3.4): a checkpoint at or below the asked
/// position is answered as it is; one beyond it is cut back to the asked position for U/T
/// (any 1 KiB block boundary is a restart point), but not for F/V, whose local file offset of
/// an earlier record is not known, so the file starts again from 0. Nothing is resumed when
/// the sender asks for 0 or the durable point is 0.
pub(super) fn resume_point(
    checkpoint: Checkpoint,
    asked: u64,
    format: FileFormat,
) -> Option<Checkpoint> {
    if asked == 0 {
        return None;
    }
    let base = if checkpoint.position <= asked {
        checkpoint
    } else if !format.is_record_oriented() {
        let off = restart_byte_offset(asked);
        Checkpoint {
            position: asked,
            file_offset: off,
            records: 0,
            units: off,
        }
    } else {
        return None;
    };
    (base.position > 0).then_some(base)
}

/// What a reception holds so far, for [`durable_point`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Received {
    /// The durable point the transfer started from.
    pub(super) base: Checkpoint,
    /// Records received in this transfer (F/V).
    pub(super) records: u64,
    /// User-data octets received in this transfer.
    pub(super) units: u64,
    /// F/V: local file length at the end of the last complete record.
    pub(super) record_end_offset: u64,
    /// F/V: octets of this transfer at the end of the last complete record.
    pub(super) record_end_units: u64,
}

/// The restart point a checkpoint records for what was received: only complete records (F/V)
/// or complete 1 KiB blocks of user data (U/T) count (RFC 5024 1.5.4, 5.3.3); the rest is cut
/// off when the transfer restarts.
pub(super) fn durable_point(format: FileFormat, r: Received) -> Checkpoint {
    if format.is_record_oriented() {
        Checkpoint {
            position: r.base.records + r.records,
            file_offset: r.record_end_offset,
            records: r.base.records + r.records,
            units: r.base.units + r.record_end_units,
        }
    } else {
        let blocks = restart_units(format, r.base.units + r.units, 0);
        Checkpoint {
            position: blocks,
            file_offset: restart_byte_offset(blocks),
            records: 0,
            units: restart_byte_offset(blocks),
        }
    }
}

/// The restart position we ask for (SFIDREST) when offering a file: 0 for a first attempt or
/// when restart was not agreed (RFC 5024 3.3.1 note 3); for an attempt resumed under the
/// identity of an earlier one, the whole local file (`records` for F/V, its complete 1 KiB
/// blocks for U/T, read as `format`), so the partner answers with what it holds durably
/// (SFPAACNT, at most this). A processed form (signed, compressed, encrypted) is produced anew
/// at each attempt and always asks for 0 (see `send`).
pub(super) fn offered_position(
    resumed: bool,
    restart_agreed: bool,
    format: FileFormat,
    file_len: u64,
    records: u64,
) -> u64 {
    if resumed && restart_agreed {
        restart_units(format, file_len, records)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: FileFormat = FileFormat::Unstructured;
    const T: FileFormat = FileFormat::Text;
    const F: FileFormat = FileFormat::Fixed;
    const V: FileFormat = FileFormat::Variable;

    fn cp(position: u64, file_offset: u64, records: u64, units: u64) -> Checkpoint {
        Checkpoint {
            position,
            file_offset,
            records,
            units,
        }
    }

    #[test]
    fn a_restart_position_is_only_asked_for_when_restart_was_agreed() {
        assert_eq!(requested(true, 17), 17);
        assert_eq!(requested(false, 17), 0);
        assert_eq!(requested(true, 0), 0);
    }

    #[test]
    fn a_checkpoint_within_the_asked_position_is_answered_as_it_is() {
        let durable = cp(5, 5 * 1024, 0, 5 * 1024);
        assert_eq!(resume_point(durable, 5, U), Some(durable));
        assert_eq!(resume_point(durable, 9, T), Some(durable));
        let records = cp(3, 300, 3, 290);
        assert_eq!(resume_point(records, 3, F), Some(records));
        assert_eq!(resume_point(records, 10, V), Some(records));
    }

    #[test]
    fn a_checkpoint_beyond_the_asked_position_is_cut_back_to_it_for_blocks() {
        // SFPAACNT never exceeds SFIDREST (RFC 5024 5.3.4).
        let durable = cp(8, 8 * 1024, 0, 8 * 1024);
        assert_eq!(resume_point(durable, 3, U), Some(cp(3, 3072, 0, 3072)));
        assert_eq!(resume_point(durable, 1, T), Some(cp(1, 1024, 0, 1024)));
    }

    #[test]
    fn a_record_checkpoint_beyond_the_asked_position_starts_afresh() {
        // The local offset of an earlier record is not known: from 0.
        assert_eq!(resume_point(cp(8, 800, 8, 780), 3, F), None);
        assert_eq!(resume_point(cp(8, 816, 8, 800), 7, V), None);
    }

    #[test]
    fn nothing_is_resumed_from_zero() {
        assert_eq!(resume_point(cp(4, 4096, 0, 4096), 0, U), None);
        assert_eq!(resume_point(Checkpoint::default(), 6, U), None);
        assert_eq!(resume_point(Checkpoint::default(), 6, F), None);
    }

    #[test]
    fn a_block_checkpoint_counts_complete_kib_of_all_user_data() {
        let r = Received {
            base: cp(2, 2048, 0, 2048),
            records: 0,
            units: 3000,
            record_end_offset: 0,
            record_end_units: 0,
        };
        // 2048 + 3000 = 5048 octets: 4 complete blocks; the rest is received again.
        assert_eq!(durable_point(U, r), cp(4, 4096, 0, 4096));
        assert_eq!(durable_point(T, r), cp(4, 4096, 0, 4096));
        let under_one_block = Received {
            base: Checkpoint::default(),
            units: 1023,
            ..r
        };
        assert_eq!(durable_point(U, under_one_block), Checkpoint::default());
    }

    #[test]
    fn a_record_checkpoint_ends_at_the_last_complete_record() {
        let r = Received {
            base: cp(10, 1000, 10, 990),
            records: 4,
            // Octets past the last record end are not counted.
            units: 450,
            record_end_offset: 1410,
            record_end_units: 400,
        };
        assert_eq!(durable_point(F, r), cp(14, 1410, 14, 1390));
        assert_eq!(durable_point(V, r), cp(14, 1410, 14, 1390));
    }

    #[test]
    fn a_resent_file_asks_for_all_of_itself_in_its_own_units() {
        assert_eq!(offered_position(true, true, U, 5000, 0), 4);
        assert_eq!(offered_position(true, true, T, 1024, 0), 1);
        assert_eq!(offered_position(true, true, F, 5000, 12), 12);
        assert_eq!(offered_position(true, true, V, 5000, 7), 7);
    }

    #[test]
    fn a_first_attempt_or_a_session_without_restart_asks_for_zero() {
        assert_eq!(offered_position(false, true, U, 5000, 0), 0);
        assert_eq!(offered_position(true, false, U, 5000, 0), 0);
        assert_eq!(offered_position(false, false, F, 5000, 12), 0);
    }
}
