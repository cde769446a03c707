//! The received files of [`SqliteJournal`] (table `received`, and the end responses we owe):
//! receptions begun, checkpointed, completed or dropped, partial receptions, end responses to
//! send. The `Journal` trait's received-file operations delegate here.

use super::*;

impl SqliteJournal {
    pub(super) fn reception_received(
        &self,
        partner: &str,
        key: &FileKey,
    ) -> Result<Option<ReceivedEntry>, JournalError> {
        let conn = self.lock();
        let row = conn
            .query_row(
                "SELECT id, state, partial_path, final_path, position, file_offset, records, units,
                        end_response_sent, user_data
                 FROM received
                 WHERE partner = ?4 AND originator = ?1 AND dsn = ?2 AND stamp = ?3",
                params![
                    key.originator.as_str(),
                    key.dsn,
                    key.stamp.digits(),
                    partner.trim_end()
                ],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        [r.get::<_, i64>(4)?, r.get(5)?, r.get(6)?, r.get(7)?],
                        r.get::<_, bool>(8)?,
                        r.get::<_, String>(9)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((id, state, partial, fin, nums, eerp, user_data)) = row else {
            return Ok(None);
        };
        let state = match state.as_str() {
            "receiving" => ReceiveState::Receiving,
            "complete" => ReceiveState::Complete,
            other => return Err(self.corrupt(format!("unknown receive state {other:?}"))),
        };
        let n = |i: usize| u64::try_from(nums[i]).map_err(|_| self.corrupt("negative count"));
        Ok(Some(ReceivedEntry {
            id,
            key: key.clone(),
            state,
            partial_path: PathBuf::from(partial),
            final_path: PathBuf::from(fin),
            checkpoint: Checkpoint {
                position: n(0)?,
                file_offset: n(1)?,
                records: n(2)?,
                units: n(3)?,
            },
            end_response_sent: eerp,
            user_data,
        }))
    }

    pub(super) fn reception_begin_receive(
        &self,
        partner: &str,
        key: &FileKey,
        partial_path: &Path,
        final_path: &Path,
        user_data: &str,
    ) -> Result<i64, JournalError> {
        let stamp = self.stamp_to_store(key)?;
        // RETURNING gives the id of the row inserted or, for a file begun before, updated.
        self.lock()
            .query_row(
                "INSERT INTO received (originator, dsn, stamp, state, partial_path, final_path,
                                       updated_at, user_data, partner, received_at)
                 VALUES (?1, ?2, ?3, 'receiving', ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (partner, originator, dsn, stamp) DO UPDATE SET
                    state = 'receiving', partial_path = excluded.partial_path,
                    final_path = excluded.final_path, position = 0, file_offset = 0,
                    records = 0, units = 0, end_response_sent = 0, end_response_deferred = 0,
                    updated_at = excluded.updated_at, user_data = excluded.user_data
                 RETURNING id",
                params![
                    key.originator.as_str(),
                    key.dsn,
                    stamp,
                    partial_path.to_string_lossy(),
                    final_path.to_string_lossy(),
                    now_text(),
                    user_data.trim_end(),
                    partner.trim_end(),
                    chrono::Utc::now().timestamp_millis()
                ],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    pub(super) fn reception_checkpoint_receive(
        &self,
        id: i64,
        checkpoint: Checkpoint,
    ) -> Result<(), JournalError> {
        let c = checkpoint;
        self.lock()
            .execute(
                "UPDATE received SET position = ?2, file_offset = ?3, records = ?4, units = ?5,
                        updated_at = ?6 WHERE id = ?1 AND state = 'receiving'",
                params![
                    id,
                    c.position as i64,
                    c.file_offset as i64,
                    c.records as i64,
                    c.units as i64,
                    now_text()
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(super) fn reception_complete_receive(
        &self,
        id: i64,
        final_path: &Path,
    ) -> Result<(), JournalError> {
        self.lock()
            .execute(
                "UPDATE received SET state = 'complete', final_path = ?2, updated_at = ?3
                 WHERE id = ?1",
                params![id, final_path.to_string_lossy(), now_text()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(super) fn reception_drop_receive(&self, id: i64) -> Result<(), JournalError> {
        // Its session links go with it: SQLite may give its id to the next reception.
        self.lock()
            .execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 DELETE FROM session_transfers WHERE direction = 'in' AND row_id = {id}
                     AND EXISTS (SELECT 1 FROM received WHERE id = {id} AND state = 'receiving');
                 DELETE FROM received WHERE id = {id} AND state = 'receiving';
                 COMMIT;"
            ))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(super) fn reception_partial_receptions(
        &self,
    ) -> Result<Vec<PartialReception>, JournalError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT id, partner, originator, dsn, stamp, partial_path, updated_at
                 FROM received WHERE state = 'receiving' ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    [
                        r.get::<_, String>(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ],
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, [partner, originator, dsn, stamp, partial, updated]) =
                row.map_err(|e| self.err(e))?;
            let parsed = FileStamp::parse(&stamp)
                .ok()
                .zip(
                    chrono::DateTime::parse_from_rfc3339(&updated)
                        .ok()
                        .map(|t| t.to_utc()),
                )
                .zip(OdetteId::new(&originator).ok());
            let Some(((stamp, updated_at), originator)) = parsed else {
                tracing::debug!(
                    journal = %self.path.display(),
                    id,
                    partial = %partial,
                    "journal: partial reception with an unreadable stamp, time or originator left \
                     alone"
                );
                continue;
            };
            out.push(PartialReception {
                id,
                partner,
                key: FileKey::new(originator, &dsn, stamp),
                partial_path: PathBuf::from(partial),
                updated_at,
            });
        }
        Ok(out)
    }

    pub(super) fn reception_partial_paths(&self) -> Result<HashSet<PathBuf>, JournalError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT partial_path FROM received WHERE state = 'receiving'")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        rows.map(|r| r.map(PathBuf::from).map_err(|e| self.err(e)))
            .collect()
    }

    pub(super) fn reception_mark_end_response_sent(
        &self,
        partner: &str,
        key: &FileKey,
    ) -> Result<(), JournalError> {
        flag_reception(&self.lock(), "end_response_sent", partner, key).map_err(|e| self.err(e))
    }

    pub(super) fn reception_defer_end_response(
        &self,
        partner: &str,
        key: &FileKey,
    ) -> Result<(), JournalError> {
        let conn = self.lock();
        // The post-processing may have succeeded (and released it) before the runtime got here.
        if self.released_by_processing(&conn, partner, key)? {
            return Ok(());
        }
        flag_reception(&conn, "end_response_deferred", partner, key).map_err(|e| self.err(e))
    }

    pub(super) fn reception_pending_end_responses(
        &self,
        partner: &str,
    ) -> Result<Vec<ReceivedEntry>, JournalError> {
        let keys: Vec<(String, String, String)> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare(
                    "SELECT originator, dsn, stamp FROM received
                     WHERE state = 'complete' AND end_response_sent = 0
                       AND end_response_deferred = 0 AND partner = ?1 ORDER BY id",
                )
                .map_err(|e| self.err(e))?;
            stmt.query_map(params![partner.trim_end()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?
        };
        let mut out = Vec::with_capacity(keys.len());
        for (o, d, s) in keys {
            let stamp = FileStamp::parse(&s).map_err(|e| self.corrupt(e.to_string()))?;
            if let Some(entry) = self.received(partner, &self.file_key(&o, &d, stamp)?)? {
                out.push(entry);
            }
        }
        Ok(out)
    }
}
