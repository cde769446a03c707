//! A reception in progress: the hidden temporary file in the target directory, its
//! checkpoints (fsync), its commit under the final name and its removal.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{StoreError, StorePolicy, blocking, durable, place};

/// A reception in progress: a temporary file in the target directory.
///
/// Writes go straight to the file, unbuffered: the writer pool (`super::pool`) hands it pieces
/// of 8 KiB and more (small pieces are gathered first), so a buffer per reception would only
/// cost memory.
#[derive(Debug)]
pub struct PartialFile {
    file: File,
    partial_path: PathBuf,
    final_path: PathBuf,
    written: u64,
}

/// Path of a new temporary file for `final_path` (same directory, hidden, unique).
pub fn partial_path_for(final_path: &Path) -> PathBuf {
    let dir = final_path.parent().unwrap_or_else(|| Path::new("."));
    dir.join(format!(".oftp-{}.part", uuid::Uuid::new_v4().simple()))
}

impl PartialFile {
    /// Creates a new, empty temporary file for `final_path` (its directory is created if missing).
    pub fn create(final_path: &Path) -> Result<Self, StoreError> {
        let dir = final_path.parent().unwrap_or_else(|| Path::new("."));
        durable_write::create_dir_all(dir).map_err(durable)?;
        let partial_path = partial_path_for(final_path);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial_path)
            .map_err(|e| StoreError::io("creating temporary file", &partial_path, e))?;
        Ok(Self {
            file,
            partial_path,
            final_path: final_path.to_owned(),
            written: 0,
        })
    }

    /// Reopens the temporary file of an interrupted reception and cuts it to `keep` bytes (the
    /// durable position agreed with the sender); later writes continue there.
    pub fn resume(partial_path: &Path, final_path: &Path, keep: u64) -> Result<Self, StoreError> {
        let mut file = OpenOptions::new()
            .write(true)
            .open(partial_path)
            .map_err(|e| StoreError::io("reopening temporary file", partial_path, e))?;
        let len = file
            .metadata()
            .map_err(|e| StoreError::io("reading temporary file", partial_path, e))?
            .len();
        if len < keep {
            return Err(StoreError::io(
                "resuming temporary file",
                partial_path,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("it holds {len} bytes, the journal says {keep} are durable"),
                ),
            ));
        }
        file.set_len(keep)
            .and_then(|()| file.seek(SeekFrom::Start(keep)).map(|_| ()))
            .map_err(|e| StoreError::io("truncating temporary file", partial_path, e))?;
        Ok(Self {
            file,
            partial_path: partial_path.to_owned(),
            final_path: final_path.to_owned(),
            written: keep,
        })
    }

    /// Appends bytes (in the page cache; not durable until [`checkpoint`](Self::checkpoint) or
    /// [`commit`](Self::commit)).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        #[cfg(test)]
        super::faults::check_write(&self.partial_path, self.written + bytes.len() as u64)?;
        self.file
            .write_all(bytes)
            .map_err(|e| StoreError::io("writing", &self.partial_path, e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far (including any not yet durable).
    pub fn len(&self) -> u64 {
        self.written
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// The temporary file.
    pub fn partial_path(&self) -> &Path {
        &self.partial_path
    }

    /// Where the file will appear after [`commit`](Self::commit).
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Fsyncs the temporary file: all bytes written so far are durable when this returns.
    pub async fn checkpoint(&mut self) -> Result<u64, StoreError> {
        let job = self.sync_job()?;
        blocking(move || job.run()).await
    }

    /// A job that fsyncs what was written, to run on a blocking thread while reception goes
    /// on: when the job returns, at least everything written before this call is durable.
    pub fn sync_job(&mut self) -> Result<SyncJob, StoreError> {
        let file = self
            .file
            .try_clone()
            .map_err(|e| StoreError::io("syncing", &self.partial_path, e))?;
        Ok(SyncJob {
            file,
            path: self.partial_path.clone(),
            len: self.written,
        })
    }

    /// Makes the file durable under its final name: fsync, no-clobber rename (unless
    /// `policy.overwrite`), fsync of the directory. Returns the final path.
    pub async fn commit(self, policy: &StorePolicy) -> Result<PathBuf, StoreError> {
        let overwrite = policy.overwrite;
        let Self {
            file,
            partial_path,
            final_path,
            ..
        } = self;
        blocking(move || {
            file.sync_all()
                .map_err(|e| StoreError::io("syncing", &partial_path, e))?;
            drop(file);
            place(&partial_path, &final_path, overwrite)?;
            Ok(final_path)
        })
        .await
    }

    /// Gives up this reception: with `delete`, the temporary file is removed; otherwise it is
    /// fsynced and left (for inspection or a later restart).
    pub async fn abandon(self, delete: bool) -> Result<(), StoreError> {
        let Self {
            file, partial_path, ..
        } = self;
        blocking(move || {
            if delete {
                drop(file);
                remove_partial(&partial_path)
            } else {
                file.sync_data()
                    .map_err(|e| StoreError::io("syncing", &partial_path, e))
            }
        })
        .await
    }
}

/// Removes the temporary file of a reception; a file already gone is fine. Every removal of a
/// partial file goes through here (blocking: call from a blocking thread).
pub fn remove_partial(path: &Path) -> Result<(), StoreError> {
    #[cfg(test)]
    super::faults::check_removal(path)?;
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("removing", path, e)),
    }
}

/// A pending fsync of a [`PartialFile`] (see [`PartialFile::sync_job`]).
#[derive(Debug)]
pub struct SyncJob {
    file: File,
    path: PathBuf,
    len: u64,
}

impl SyncJob {
    /// Fsyncs (blocking); returns the length that is now durable.
    pub fn run(self) -> Result<u64, StoreError> {
        self.file
            .sync_data()
            .map_err(|e| StoreError::io("syncing", &self.path, e))?;
        Ok(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commit_makes_the_file_appear_only_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("in").join("FILE.EDI");
        let mut p = PartialFile::create(&target).unwrap();
        p.write(b"hello ").unwrap();
        assert!(!target.exists());
        assert_eq!(p.checkpoint().await.unwrap(), 6);
        p.write(b"world").unwrap();
        let partial = p.partial_path().to_owned();
        assert!(partial.starts_with(dir.path().join("in")));
        let placed = p.commit(&StorePolicy::default()).await.unwrap();
        assert_eq!(placed, target);
        assert_eq!(fs::read(&target).unwrap(), b"hello world");
        assert!(!partial.exists());
    }

    #[tokio::test]
    async fn no_overwrite_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("F");
        fs::write(&target, b"old").unwrap();
        let mut p = PartialFile::create(&target).unwrap();
        p.write(b"new").unwrap();
        let partial = p.partial_path().to_owned();
        let err = p.commit(&StorePolicy::default()).await.unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists(_)), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert!(partial.exists(), "the data is kept for the operator");

        let mut p = PartialFile::create(&target).unwrap();
        p.write(b"new").unwrap();
        let policy = StorePolicy {
            overwrite: true,
            ..StorePolicy::default()
        };
        p.commit(&policy).await.unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
    }

    #[tokio::test]
    async fn resume_truncates_to_the_durable_position() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("F");
        let mut p = PartialFile::create(&target).unwrap();
        p.write(&[1u8; 3000]).unwrap();
        p.checkpoint().await.unwrap();
        let partial = p.partial_path().to_owned();
        p.abandon(false).await.unwrap();
        assert_eq!(fs::metadata(&partial).unwrap().len(), 3000);

        let mut r = PartialFile::resume(&partial, &target, 2048).unwrap();
        assert_eq!(r.len(), 2048);
        r.write(&[2u8; 10]).unwrap();
        r.commit(&StorePolicy::default()).await.unwrap();
        let data = fs::read(&target).unwrap();
        assert_eq!(data.len(), 2058);
        assert!(data[..2048].iter().all(|&b| b == 1) && data[2048..].iter().all(|&b| b == 2));

        assert!(PartialFile::resume(&dir.path().join("missing"), &target, 0).is_err());
    }

    #[tokio::test]
    async fn abandon_with_delete_removes_the_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = PartialFile::create(&dir.path().join("F")).unwrap();
        p.write(b"x").unwrap();
        let partial = p.partial_path().to_owned();
        p.abandon(true).await.unwrap();
        assert!(!partial.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
