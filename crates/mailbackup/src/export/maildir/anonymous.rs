//! Anonymous files (`O_TMPFILE`, Linux): a message's file created on the Maildir's file system
//! with no name, given its name in `cur/` by a link once durable. Elsewhere, or where the file
//! system or a missing `/proc` refuses, the export goes through `tmp/`.

use super::MAILDIR_SUFFIX;
use std::fs::File;
use std::io;
use std::path::Path;

/// Opens an anonymous file (`O_TMPFILE`, Linux) on the file system of `dir`.
pub(super) fn open_anonymous(dir: &Path) -> io::Result<File> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(
            dir,
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )?;
        Ok(File::from(fd))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Gives the anonymous `file` the name `to` (through `/proc/self/fd`, which needs no
/// privilege, where `AT_EMPTY_PATH` does).
pub(super) fn link_anonymous(file: &File, to: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
        rustix::fs::linkat(
            rustix::fs::CWD,
            proc_path.as_str(),
            rustix::fs::CWD,
            to,
            rustix::fs::AtFlags::SYMLINK_FOLLOW,
        )?;
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, to);
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Whether anonymous files work in `cur/` (the file system has `O_TMPFILE`, `/proc` is
/// mounted): one is created, linked into `tmp/` and removed. Otherwise every message goes
/// through `tmp/`.
pub(super) fn anonymous_files_work(cur: &Path, tmp: &Path) -> bool {
    let Ok(file) = open_anonymous(cur) else {
        return false;
    };
    let probe = tmp.join(format!(".probe-{}{MAILDIR_SUFFIX}", std::process::id()));
    let _ = std::fs::remove_file(&probe);
    let linked = link_anonymous(&file, &probe).is_ok();
    linked && std::fs::remove_file(&probe).is_ok()
}
