//! The local-disk [`MessageStore`]: an object is the file `<root>/<key>`.
//!
//! Writes go through `durable-write` (temporary file `.<name>.tmp-<pid>-<n>` in the target
//! folder, fsync, rename, folder fsync; removed on any failure). Folders whose name starts with
//! `.` (the `.meta` folder of the index and lock) are not part of the store. The quarantine area,
//! when configured, is a second root where an object keeps its key.

use super::{MessageStore, ObjectKey, Stored};
use crate::error::Error;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Messages as files under a folder.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    quarantine: Option<PathBuf>,
}

impl LocalStore {
    /// A store rooted at `root` (the data folder), without quarantine area.
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore {
            root: root.into(),
            quarantine: None,
        }
    }

    /// Moves quarantined objects below `dir` (keeping their key) instead of nowhere.
    pub fn with_quarantine(mut self, dir: impl Into<PathBuf>) -> LocalStore {
        self.quarantine = Some(dir.into());
        self
    }

    /// The file of a key.
    pub fn path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    /// Every file under the root, as keys, skipping hidden folders.
    fn walk(&self) -> Result<Vec<ObjectKey>, Error> {
        self.walk_from(self.root.clone())
    }

    /// Every file under `start` (the root or a folder below it), as keys, skipping hidden folders.
    fn walk_from(&self, start: PathBuf) -> Result<Vec<ObjectKey>, Error> {
        let mut out = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("cannot list {}", dir.display()), e)),
            };
            for entry in rd {
                let entry =
                    entry.map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
                let p = entry.path();
                let ft = entry
                    .file_type()
                    .map_err(|e| Error::io(format!("cannot stat {}", p.display()), e))?;
                if ft.is_dir() {
                    if !entry.file_name().to_string_lossy().starts_with('.') {
                        stack.push(p);
                    }
                } else if ft.is_file()
                    && let Some(key) = self.key_of(&p)
                {
                    out.push(key);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn key_of(&self, path: &Path) -> Option<ObjectKey> {
        let rel = path.strip_prefix(&self.root).ok()?;
        let parts: Vec<&str> = rel
            .components()
            .map(|c| c.as_os_str().to_str())
            .collect::<Option<_>>()?;
        ObjectKey::new(parts.join("/")).ok()
    }
}

/// Copies `body` into `f` while hashing it.
fn copy_hashing(body: &mut dyn Read, f: &mut File) -> io::Result<Stored> {
    let mut h = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        f.write_all(&buf[..n])?;
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Stored {
        size,
        sha256: hex::encode(h.finalize()),
    })
}

impl MessageStore for LocalStore {
    fn put(
        &self,
        key: &ObjectKey,
        body: &mut dyn Read,
        expected_sha256: Option<&str>,
    ) -> Result<Stored, Error> {
        let path = self.path(key);
        durable_write::write_with(&path, &durable_write::Options::default(), |f| {
            let stored = copy_hashing(body, f)?;
            super::check_expected(&stored.sha256, expected_sha256)?;
            Ok(stored)
        })
        .map_err(Error::durable)
    }

    fn open(&self, key: &ObjectKey) -> Result<Option<Box<dyn Read + Send>>, Error> {
        let path = self.path(key);
        match File::open(&path) {
            Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => Ok(Some(Box::new(f))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("cannot open {}", path.display()), e)),
        }
    }

    fn size(&self, key: &ObjectKey) -> Result<Option<u64>, Error> {
        let path = self.path(key);
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("cannot stat {}", path.display()), e)),
        }
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), Error> {
        durable_write::remove(&self.path(key)).map_err(Error::durable)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, Error> {
        let mut keys = self.walk()?;
        keys.retain(|k| k.as_str().starts_with(prefix));
        Ok(keys)
    }

    fn quarantine(&self, key: &ObjectKey) -> Result<String, Error> {
        let Some(q) = &self.quarantine else {
            return Err(Error::InvalidOption {
                option: "QuarantineFolder",
                reason: format!("is not set, so {key} cannot be quarantined"),
            });
        };
        let to = q.join(key.as_str());
        durable_write::rename(&self.path(key), &to).map_err(Error::durable)?;
        Ok(to.display().to_string())
    }

    fn purge_quarantined(&self, key: &ObjectKey) -> Result<(), Error> {
        match &self.quarantine {
            Some(q) => durable_write::remove(&q.join(key.as_str())).map_err(Error::durable),
            None => Ok(()),
        }
    }

    fn locate(&self, key: &ObjectKey) -> String {
        self.path(key).display().to_string()
    }

    fn remove_partial(&self, prefix: &str) -> Result<usize, Error> {
        // Only the folder the prefix names is walked (a mailbox's, when workers share the store).
        let start = match prefix.rfind('/') {
            Some(i) => self.root.join(&prefix[..i]),
            None => self.root.clone(),
        };
        let mut n = 0;
        for key in self.walk_from(start)? {
            if !key.as_str().starts_with(prefix) {
                continue;
            }
            let p = self.path(&key);
            if durable_write::is_temp(&p) {
                durable_write::remove(&p).map_err(Error::durable)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let q = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).with_quarantine(q.path());
        crate::store::conformance::message_store(&store);
    }

    #[test]
    fn partial_files_are_removed_below_the_prefix_only() {
        // Workers sharing a folder: one cleans up the mailbox it took, never another's
        // temporary file that its worker is still writing.
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        for mb in ["alice@x.test", "alice@x.test.au"] {
            fs::create_dir_all(dir.path().join(mb).join("2024-01")).unwrap();
            fs::write(dir.path().join(mb).join("2024-01/.a.eml.tmp-1-1"), b"part").unwrap();
        }
        assert_eq!(store.remove_partial("alice@x.test/").unwrap(), 1);
        assert!(
            !dir.path()
                .join("alice@x.test/2024-01/.a.eml.tmp-1-1")
                .exists()
        );
        assert!(
            dir.path()
                .join("alice@x.test.au/2024-01/.a.eml.tmp-1-1")
                .exists()
        );
        assert_eq!(store.remove_partial("").unwrap(), 1);
        assert_eq!(
            store.remove_partial("bob@x.test/").unwrap(),
            0,
            "no folder yet"
        );
    }

    #[test]
    fn keys_are_paths_below_the_root_and_hidden_folders_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let key = ObjectKey::new("2024-01/x.eml").unwrap();
        store.put(&key, &mut &b"abc"[..], None).unwrap();
        assert_eq!(fs::read(dir.path().join("2024-01/x.eml")).unwrap(), b"abc");
        fs::create_dir_all(dir.path().join(".meta")).unwrap();
        fs::write(dir.path().join(".meta/index.sqlite"), b"db").unwrap();
        assert_eq!(store.list("").unwrap(), vec![key.clone()]);
        assert_eq!(
            store.locate(&key),
            dir.path().join("2024-01/x.eml").display().to_string()
        );
    }

    #[test]
    fn temporary_files_of_an_interrupted_put_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let keep = ObjectKey::new("2024-01/x.eml").unwrap();
        store.put(&keep, &mut &b"abc"[..], None).unwrap();
        fs::write(dir.path().join("2024-01/.y.eml.tmp-99-1"), b"half").unwrap();
        assert_eq!(store.remove_partial("").unwrap(), 1);
        assert_eq!(store.list("").unwrap(), vec![keep]);
    }

    #[test]
    fn purging_removes_the_quarantined_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let q = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).with_quarantine(q.path());
        let key = ObjectKey::new("2024-01/x.eml").unwrap();
        store.put(&key, &mut &b"abc"[..], None).unwrap();
        store.quarantine(&key).unwrap();
        store.put(&key, &mut &b"new"[..], None).unwrap();
        assert!(q.path().join("2024-01/x.eml").exists());
        store.purge_quarantined(&key).unwrap();
        assert!(!q.path().join("2024-01/x.eml").exists());
        assert_eq!(fs::read(dir.path().join("2024-01/x.eml")).unwrap(), b"new");
    }

    #[test]
    fn quarantine_without_a_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let key = ObjectKey::new("a.eml").unwrap();
        store.put(&key, &mut &b"abc"[..], None).unwrap();
        let e = store.quarantine(&key).unwrap_err().to_string();
        assert!(e.contains("QuarantineFolder"), "{e}");
        assert_eq!(store.size(&key).unwrap(), Some(3));
    }
}
