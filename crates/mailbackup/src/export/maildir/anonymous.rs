//! Anonymous files (`O_TMPFILE`, Linux): a message's file created on the Maildir's file system
//! with no name, given its name in `cur/` by a link once durable. Elsewhere, or where the file
//! system or a missing `/proc` refuses, the export goes through `tmp/`.

use super::MAILDIR_SUFFIX;
use std::fs::File;
use std::io;
use std::path::Path;

/// Where one Maildir's anonymous files are made and named: `cur/` and `/proc/self/fd` are open
/// once, so a message costs no walk of either path (the walks were a tenth of an export's CPU).
#[derive(Debug)]
pub(super) struct AnonymousDir {
    #[cfg(target_os = "linux")]
    cur: std::os::fd::OwnedFd,
    /// `/proc/self/fd`: linking `<fd>` in it with `AT_SYMLINK_FOLLOW` names an anonymous file
    /// without privilege, where `AT_EMPTY_PATH` needs `CAP_DAC_READ_SEARCH`.
    #[cfg(target_os = "linux")]
    proc_fd: std::os::fd::OwnedFd,
}

impl AnonymousDir {
    /// `cur/`'s, when anonymous files work there (the file system has `O_TMPFILE`, `/proc` is
    /// mounted): one is created, linked into `tmp/` and removed. `None` otherwise: every
    /// message then goes through `tmp/`.
    pub(super) fn open(cur: &Path, tmp: &Path) -> Option<AnonymousDir> {
        #[cfg(target_os = "linux")]
        {
            use rustix::fs::{Mode, OFlags};
            let dir = |path: &Path| {
                rustix::fs::open(
                    path,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ok()
            };
            let anonymous = AnonymousDir {
                cur: dir(cur)?,
                proc_fd: dir(Path::new("/proc/self/fd"))?,
            };
            let file = anonymous.create().ok()?;
            let probe = tmp.join(format!(".probe-{}{MAILDIR_SUFFIX}", std::process::id()));
            let _ = std::fs::remove_file(&probe);
            anonymous.link(&file, &probe).ok()?;
            std::fs::remove_file(&probe).ok()?;
            Some(anonymous)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (cur, tmp);
            None
        }
    }

    /// A new anonymous file on `cur/`'s file system.
    pub(super) fn create(&self) -> io::Result<File> {
        #[cfg(target_os = "linux")]
        {
            use rustix::fs::{Mode, OFlags};
            let fd = rustix::fs::openat(
                &self.cur,
                ".",
                OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o666),
            )?;
            Ok(File::from(fd))
        }
        #[cfg(not(target_os = "linux"))]
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Names `file` `cur/<name>`.
    pub(super) fn link_into_cur(&self, file: &File, name: &str) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            self.link_at(file, &self.cur, Path::new(name))
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (file, name);
            Err(io::ErrorKind::Unsupported.into())
        }
    }

    /// Names `file` `to` (a whole path).
    pub(super) fn link(&self, file: &File, to: &Path) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            self.link_at(file, rustix::fs::CWD, to)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (file, to);
            Err(io::ErrorKind::Unsupported.into())
        }
    }

    #[cfg(target_os = "linux")]
    fn link_at(&self, file: &File, dir: impl std::os::fd::AsFd, to: &Path) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd().to_string();
        rustix::fs::linkat(
            &self.proc_fd,
            fd.as_str(),
            dir,
            to,
            rustix::fs::AtFlags::SYMLINK_FOLLOW,
        )?;
        Ok(())
    }
}
