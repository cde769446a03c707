//! The run lock: one run per backup folder.
//!
//! The lock is the file `lock` in the working folder (default `DataFolder/.meta`). It is held with
//! an OS advisory lock (`File::try_lock`, i.e. `flock` on Unix), which the kernel releases when the
//! holder dies, even by `kill -9`; its content (pid, host, start time) is for messages only.
//! A lock file left by a dead process is therefore detected (it is not locked, and its pid no
//! longer runs) and taken over with a log line. The file is removed when the run ends.

use crate::error::Error;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside the working folder.
pub const LOCK_FILE: &str = "lock";

/// A held lock; released (and its file removed) on drop.
#[derive(Debug)]
pub struct RunLock {
    file: Option<File>,
    path: PathBuf,
    /// Holder recorded in a lock file left by a process that is gone, if any.
    pub taken_over_from: Option<String>,
}

/// State of a folder's lock, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// No lock file.
    Free,
    /// A running process holds it.
    Held(String),
    /// A lock file left by a process that is no longer running; the next run takes it over.
    Stale(String),
}

pub(crate) fn host() -> String {
    fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

fn pid_of(holder: &str) -> Option<u32> {
    holder
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pid=")?.parse().ok())
}

/// Whether a process with this pid runs on this host (Linux: `/proc/<pid>`; elsewhere assumed).
pub(crate) fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

fn describe(holder: &str) -> String {
    if holder.trim().is_empty() {
        "an unknown process".to_string()
    } else {
        holder.trim().to_string()
    }
}

/// Who holds a lock we could not take. A run that has just taken the lock writes its pid right
/// after; give it a moment (bounded) so the refusal can name it.
fn holder_of_held_lock(file: &mut File) -> String {
    for attempt in 0..20 {
        let mut text = String::new();
        let _ = file.seek(SeekFrom::Start(0));
        let _ = file.read_to_string(&mut text);
        if !text.trim().is_empty() {
            return describe(&text);
        }
        if attempt < 19 {
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
    }
    "another run that started at the same moment (it has not written its pid yet)".to_string()
}

impl RunLock {
    /// Takes the lock in `working_folder`, creating the folder if needed.
    pub fn acquire(working_folder: &Path) -> Result<RunLock, Error> {
        durable_write::create_dir_all(working_folder).map_err(Error::durable)?;
        let path = working_folder.join(LOCK_FILE);
        // Bounded: a retry is only needed when a releasing run removed the file between our open
        // and our lock.
        for _ in 0..5 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| Error::io(format!("cannot open lock file {}", path.display()), e))?;
            let mut previous = String::new();
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(Error::Locked {
                        holder: holder_of_held_lock(&mut file),
                        path,
                    });
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(Error::io(format!("cannot lock {}", path.display()), e));
                }
            }
            // The file we locked must still be the one at `path` (a releasing run unlinks it).
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                let same = match (file.metadata(), fs::metadata(&path)) {
                    (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                    _ => false,
                };
                if !same {
                    continue;
                }
            }
            let _ = file.read_to_string(&mut previous);
            let taken_over_from = if previous.trim().is_empty() {
                None
            } else {
                Some(describe(&previous))
            };
            if let Some(h) = &taken_over_from {
                let alive = pid_of(h).is_some_and(|p| p != std::process::id() && pid_alive(p));
                tracing::warn!(
                    "taking over the lock {} left by {h}{}",
                    path.display(),
                    if alive {
                        " (that pid runs but does not hold the lock)"
                    } else {
                        " (process no longer running)"
                    }
                );
            }
            let me = format!(
                "pid={} host={} started={}\n",
                std::process::id(),
                host(),
                chrono::Utc::now().to_rfc3339()
            );
            file.set_len(0)
                .and_then(|_| file.seek(SeekFrom::Start(0)))
                .and_then(|_| file.write_all(me.as_bytes()))
                .and_then(|_| file.sync_all())
                .map_err(|e| Error::io(format!("cannot write lock file {}", path.display()), e))?;
            return Ok(RunLock {
                file: Some(file),
                path,
                taken_over_from,
            });
        }
        Err(Error::Locked {
            path,
            holder: "another run that keeps replacing the lock file".into(),
        })
    }

    /// Inspects the lock of a working folder without taking it.
    pub fn state(working_folder: &Path) -> LockState {
        let path = working_folder.join(LOCK_FILE);
        let Ok(mut file) = OpenOptions::new().read(true).write(true).open(&path) else {
            return LockState::Free;
        };
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                LockState::Stale(describe(&holder))
            }
            Err(_) => LockState::Held(describe(&holder)),
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Remove while still holding the lock, so no other run can have locked this inode.
        let _ = fs::remove_file(&self.path);
        if let Some(f) = self.file.take() {
            let _ = f.unlock();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_then_free_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let a = RunLock::acquire(dir.path()).unwrap();
        assert!(a.taken_over_from.is_none());
        let e = RunLock::acquire(dir.path()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("in use") && msg.contains(&format!("pid={}", std::process::id())),
            "{msg}"
        );
        assert!(matches!(RunLock::state(dir.path()), LockState::Held(_)));
        drop(a);
        assert_eq!(RunLock::state(dir.path()), LockState::Free);
        RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_run_started_at_the_same_instant_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        // The other run has locked the file but not written its pid yet.
        let other = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.path().join(LOCK_FILE))
            .unwrap();
        other.try_lock().unwrap();
        let msg = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(!msg.contains("unknown process"), "{msg}");
        assert!(msg.contains("started at the same moment"), "{msg}");
    }

    #[test]
    fn stale_lock_of_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // A pid far above pid_max on Linux: certainly not running.
        fs::write(
            dir.path().join(LOCK_FILE),
            "pid=4294967 host=x started=then\n",
        )
        .unwrap();
        assert!(matches!(RunLock::state(dir.path()), LockState::Stale(_)));
        let l = RunLock::acquire(dir.path()).unwrap();
        assert!(
            l.taken_over_from
                .as_deref()
                .unwrap()
                .contains("pid=4294967")
        );
    }
}
