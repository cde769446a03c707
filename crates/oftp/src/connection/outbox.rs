//! The partner's outbox: the files in it are offered at our first turn of a session in which
//! we may send. Names a program is still writing are left alone: ending in `.tmp` (any case)
//! or starting with a dot (see
//! [`is_ready_outbox_name`]: write, then rename). Moving a sent file to `sent/` happens when its EFPA arrives (see `send`).

use std::path::PathBuf;

use crate::config::is_ready_outbox_name;
use crate::connection::{Connection, Work};
use crate::handle::OutgoingFile;
use crate::handler::Handler;
use crate::transport::{FileServices, Transport};

impl<T: Transport, H: Handler, F: FileServices> Connection<T, H, F> {
    pub(super) async fn scan_outbox(&mut self) {
        // A partner that only sends (or a session we may not send in) gets nothing offered.
        if !self.negotiated.as_ref().is_some_and(|n| n.can_send) {
            return;
        }
        let Some(dir) = self.params.as_ref().and_then(|p| p.outbox.clone()) else {
            return;
        };
        // Listing a directory is a blocking call: on the blocking pool.
        let listed = tokio::task::spawn_blocking(move || {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return Vec::new();
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(is_ready_outbox_name))
                .collect();
            files.sort();
            files
        })
        .await
        .unwrap_or_default();
        for path in listed {
            self.queue.push_back(Work::File {
                file: OutgoingFile::new(path),
                job: None,
                from_outbox: true,
            });
        }
    }
}
