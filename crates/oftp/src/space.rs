//! Free space of the file system a received file goes to, so that a file that cannot fit is
//! refused at its offer (SFNA 12, retry later) instead of after the whole transfer.
//!
//! The file's size is the offer's SFIDFSIZ: "space in 1K (1024 octet) blocks required ... to
//! store the actual Virtual File that is to be transmitted" (RFC 5024 5.3.3; RFC 2204 the
//! same in 7 digits), which the RFC calls "a good estimate", and "the Transmitted File Size
//! ... indicates to the receiver how much storage space is needed to receive the file". It is
//! what the temporary file of a reception holds.
//!
//! The free space comes from `statvfs(3)` through `rustix`, which the workspace already builds
//! (tempfile uses it): a safe, well-kept binding, no `unsafe` or `libc` here, and no new crate
//! in the tree. `f_bavail` counts the blocks an unprivileged process may use, the right figure
//! for a daemon that should not eat the root reserve. [`FreeSpace`] is the seam to replace the
//! probe (tests; a storage with quotas of its own).

use std::fmt;
use std::io;
use std::path::Path;

/// Tells how many octets may still be written in the file system that holds a directory.
pub trait FreeSpace: fmt::Debug + Send + Sync + 'static {
    /// Octets available to us in the file system of `dir` (an existing directory).
    fn available(&self, dir: &Path) -> io::Result<u64>;
}

/// The operating system's figure (`statvfs`: available blocks times fragment size).
#[derive(Debug, Clone, Copy, Default)]
pub struct StatVfs;

impl FreeSpace for StatVfs {
    #[cfg(unix)]
    fn available(&self, dir: &Path) -> io::Result<u64> {
        let s = rustix::fs::statvfs(dir)?;
        Ok(s.f_bavail.saturating_mul(s.f_frsize))
    }

    #[cfg(not(unix))]
    fn available(&self, _dir: &Path) -> io::Result<u64> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "free space is only known on Unix",
        ))
    }
}

/// Why a file does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NoRoom {
    /// Octets the file still needs.
    pub(crate) needed: u64,
    /// Octets available.
    pub(crate) available: u64,
    /// Octets kept free.
    pub(crate) reserve: u64,
}

impl fmt::Display for NoRoom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the file needs {} KiB, the receiver has {} KiB free and keeps {} KiB in reserve",
            self.needed.div_ceil(1024),
            self.available / 1024,
            self.reserve / 1024
        )
    }
}

/// Octets a file offered with SFIDFSIZ `size_kib` still needs when `stored` octets of it are
/// already on disk (a restarted transfer).
pub(crate) fn still_needed(size_kib: u64, stored: u64) -> u64 {
    size_kib.saturating_mul(1024).saturating_sub(stored)
}

/// Whether `needed` octets fit in the file system of `target` (the final path of the file)
/// leaving `reserve` octets free. An unknown free space (the probe failed) does not refuse:
/// the writer still notices a full disk, only later.
pub(crate) fn check(
    probe: &dyn FreeSpace,
    target: &Path,
    needed: u64,
    reserve: u64,
) -> Result<(), NoRoom> {
    if needed == 0 {
        return Ok(());
    }
    // The inbox may not exist yet: it will be made in the nearest directory that does.
    let Some(dir) = target.ancestors().skip(1).find(|d| d.is_dir()) else {
        return Ok(());
    };
    let available = match probe.available(dir) {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(dir = %dir.display(), error = %e, "free space unknown");
            return Ok(());
        }
    };
    if needed.saturating_add(reserve) > available {
        return Err(NoRoom {
            needed,
            available,
            reserve,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(u64);

    impl FreeSpace for Fixed {
        fn available(&self, _dir: &Path) -> io::Result<u64> {
            Ok(self.0)
        }
    }

    #[derive(Debug)]
    struct Broken;

    impl FreeSpace for Broken {
        fn available(&self, _dir: &Path) -> io::Result<u64> {
            Err(io::ErrorKind::PermissionDenied.into())
        }
    }

    #[test]
    fn sizes_are_in_kib_and_a_restart_needs_only_the_rest() {
        assert_eq!(still_needed(1, 0), 1024);
        assert_eq!(still_needed(10, 4096), 10 * 1024 - 4096);
        assert_eq!(still_needed(1, 5000), 0);
        assert_eq!(still_needed(9_999_999_999_999, 0), 9_999_999_999_999 * 1024);
    }

    #[test]
    fn a_file_that_would_eat_into_the_reserve_does_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("inbox/partner/FILE");
        let probe = Fixed(10 << 20);
        assert!(
            check(&probe, &target, 6 << 20, 4 << 20).is_ok(),
            "exactly fits"
        );
        let no = check(&probe, &target, (6 << 20) + 1, 4 << 20).unwrap_err();
        assert_eq!(no.available, 10 << 20);
        let text = no.to_string();
        assert!(
            text.contains("6145 KiB") && text.contains("4096 KiB"),
            "{text}"
        );
        assert!(
            check(&probe, &target, 0, u64::MAX).is_ok(),
            "nothing to store"
        );
    }

    #[test]
    fn an_unknown_free_space_does_not_refuse() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check(&Broken, &dir.path().join("F"), u64::MAX, 0).is_ok());
    }

    #[test]
    fn the_system_probe_sees_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let free = StatVfs.available(dir.path()).unwrap();
        assert!(free > 0);
        assert!(check(&StatVfs, &dir.path().join("F"), 1, u64::MAX / 2).is_err());
    }
}
