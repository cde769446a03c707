//! Test-only fault injection for the file store: makes writes into, and removals from, one
//! directory fail as an inbox that became unwritable does (tests run as root, whom file
//! permissions do not stop), stall as a slow disk does, or panic. Faults are per directory, so
//! tests running in parallel in other directories are not affected.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::StoreError;

struct Fault {
    dir: PathBuf,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    /// Writes that would make a file longer than this fail; removals fail.
    Unwritable { writes_after: u64 },
    /// Writes wait until the fault is disarmed.
    Stalled,
    /// Writes panic.
    Panics,
}

static FAULTS: Mutex<Vec<Fault>> = Mutex::new(Vec::new());

/// Disarms the fault when dropped.
pub(crate) struct Armed(PathBuf);

impl Drop for Armed {
    fn drop(&mut self) {
        let mut f = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
        f.retain(|x| x.dir != self.0);
    }
}

/// From now on, files in `dir` cannot grow beyond `writes_after` octets and cannot be
/// removed ("read-only file system").
pub(crate) fn unwritable_dir(dir: &Path, writes_after: u64) -> Armed {
    let mut f = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
    f.push(Fault {
        dir: dir.to_owned(),
        kind: Kind::Unwritable { writes_after },
    });
    Armed(dir.to_owned())
}

/// Until the returned guard is dropped, writes into files in `dir` wait (a disk that stalls).
pub(crate) fn stalled_dir(dir: &Path) -> Armed {
    arm(dir, Kind::Stalled)
}

/// Until the returned guard is dropped, writes into files in `dir` panic.
pub(crate) fn panicking_dir(dir: &Path) -> Armed {
    arm(dir, Kind::Panics)
}

fn arm(dir: &Path, kind: Kind) -> Armed {
    let mut f = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
    f.push(Fault {
        dir: dir.to_owned(),
        kind,
    });
    Armed(dir.to_owned())
}

fn armed(path: &Path) -> Option<Kind> {
    let f = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
    f.iter()
        .find(|x| path.parent() == Some(x.dir.as_path()))
        .map(|x| x.kind)
}

fn read_only(action: &'static str, path: &Path) -> StoreError {
    StoreError::io(
        action,
        path,
        std::io::Error::from_raw_os_error(30), // EROFS
    )
}

pub(super) fn check_write(path: &Path, new_len: u64) -> Result<(), StoreError> {
    loop {
        match armed(path) {
            Some(Kind::Unwritable { writes_after }) if new_len > writes_after => {
                return Err(read_only("writing", path));
            }
            Some(Kind::Stalled) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Some(Kind::Panics) => panic!("injected panic writing {}", path.display()),
            _ => return Ok(()),
        }
    }
}

pub(super) fn check_removal(path: &Path) -> Result<(), StoreError> {
    match armed(path) {
        Some(Kind::Unwritable { .. }) => Err(read_only("removing", path)),
        _ => Ok(()),
    }
}
