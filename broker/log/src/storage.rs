//! The storage seam: every byte the log reads or writes goes through [`Storage`] and
//! [`StorageFile`], so a test can put the log on a simulated filesystem (one that forgets
//! what was not fsynced when the "power" is cut) without touching the log's code.
//! [`LocalFs`] is the real filesystem; [`LogDir`] is one partition directory on a storage,
//! with the few directory-level operations the log needs.
//!
//! The contract the log relies on, and a simulated storage must keep
//! (`power_loss::PowerLossFs` keeps exactly this much and no more):
//! - `create_dir_all` is durable when it returns;
//! - `write_all_at` data is durable once a later `sync_data`/`sync_all` of that file
//!   returned; a file's creation, rename or removal once `sync_dir` of its directory did;
//! - `rename` replaces the target atomically;
//! - reads see every completed write, durable or not.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// Suffix of files being written (a crash may leave them; recovery removes them).
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// How [`Storage::open`] opens a file; files are always readable and writable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist.
    Existing,
    /// Create the file, or empty an existing one.
    CreateTruncate,
}

/// A filesystem the log lives on.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Creates `dir` and its missing parents, durably: the parent of each directory it
    /// creates is fsynced, so a power loss cannot take a new partition directory (and the
    /// acknowledged data in it) away.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries of `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>>;
    /// Opens a file for positioned reads and writes.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>>;
    /// The whole content of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Renames `from` to `to`, replacing `to` atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes the creations, renames and removals of entries in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file: positioned I/O only (no cursor), so one handle can be read through a
/// shared reference while another thread fsyncs it.
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Reads exactly `buf.len()` bytes at `pos`.
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()>;
    /// Writes all of `buf` at `pos`.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Last modification time in ms since the epoch, if the storage knows it.
    fn modified_ms(&self) -> Option<i64>;
    /// Cuts (or extends) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Makes the file's data and metadata durable (fsync).
    fn sync_all(&self) -> io::Result<()>;
}

/// The operating system's filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalFs;

impl LocalFs {
    /// The process-wide real filesystem, as a shared storage handle.
    pub fn shared() -> Arc<dyn Storage> {
        Arc::new(LocalFs)
    }
}

impl Storage for LocalFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.is_dir()).collect();
        fs::create_dir_all(dir)?;
        // Outermost first: each new entry is made durable in its parent.
        for created in missing.iter().rev() {
            if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent)?.sync_all()?;
            }
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        if mode == OpenMode::CreateTruncate {
            options.create(true).truncate(true);
        }
        Ok(Arc::new(LocalFile(options.open(path)?)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// A file of [`LocalFs`].
#[derive(Debug)]
struct LocalFile(File);

impl StorageFile for LocalFile {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, pos)
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.0.write_all_at(buf, pos)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn modified_ms(&self) -> Option<i64> {
        let modified = self.0.metadata().ok()?.modified().ok()?;
        let since = modified.duration_since(UNIX_EPOCH).ok()?;
        i64::try_from(since.as_millis()).ok()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }
}

/// One partition directory on a [`Storage`]: file names are relative to it.
#[derive(Debug, Clone)]
pub struct LogDir {
    path: PathBuf,
    storage: Arc<dyn Storage>,
}

impl LogDir {
    /// The directory `path` on `storage`.
    pub fn new(storage: Arc<dyn Storage>, path: impl Into<PathBuf>) -> LogDir {
        LogDir {
            path: path.into(),
            storage,
        }
    }

    /// The directory `path` on the real filesystem.
    pub fn local(path: impl Into<PathBuf>) -> LogDir {
        LogDir::new(LocalFs::shared(), path)
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The storage it lives on.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The path of `name` in this directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Creates the directory (and parents) if missing.
    pub fn create(&self) -> io::Result<()> {
        self.storage.create_dir_all(&self.path)
    }

    /// Names of the directory's entries.
    pub fn list(&self) -> io::Result<Vec<OsString>> {
        self.storage.list_dir(&self.path)
    }

    /// Opens `name`.
    pub(crate) fn open(&self, name: &str, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        self.storage.open(&self.join(name), mode)
    }

    /// The content of `name`.
    pub(crate) fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.storage.read(&self.join(name))
    }

    /// The content of `name`, `None` when it does not exist.
    pub fn read_if_present(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match self.read(name) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Renames `from` to `to` within the directory.
    pub(crate) fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.storage.rename(&self.join(from), &self.join(to))
    }

    /// Removes `name`.
    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        self.storage.remove_file(&self.join(name))
    }

    /// Removes `name`; a missing file is fine.
    pub(crate) fn remove_if_present(&self, name: &str) -> io::Result<()> {
        match self.remove(name) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes the directory and everything in it.
    pub fn remove_all(&self) -> io::Result<()> {
        self.storage.remove_dir_all(&self.path)
    }

    /// Makes entry changes in the directory durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.storage.sync_dir(&self.path)
    }

    /// The directory `name` below this one, on the same storage.
    pub fn child(&self, name: &str) -> LogDir {
        LogDir::new(self.storage.clone(), self.join(name))
    }

    /// Replaces `name` with `contents` atomically and durably: a crash leaves either the
    /// old file or the new one (write a temporary file, fsync it, rename it over `name`,
    /// fsync the directory).
    pub fn write_atomic(&self, name: &str, contents: &[u8]) -> io::Result<()> {
        self.write_replace(name, contents)?;
        self.sync()
    }

    /// Replaces `name` with fsynced `contents` through a rename; the caller fsyncs the
    /// directory (once for several files).
    pub(crate) fn write_replace(&self, name: &str, contents: &[u8]) -> io::Result<()> {
        let tmp = format!("{name}{TMP_SUFFIX}");
        {
            let f = self.open(&tmp, OpenMode::CreateTruncate)?;
            f.write_all_at(contents, 0)?;
            f.sync_all()?;
        }
        self.rename(&tmp, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_files_do_positioned_io_and_directories_list_renames() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LogDir::local(tmp.path().join("p-0"));
        dir.create().unwrap();
        let f = dir.open("a.log", OpenMode::CreateTruncate).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.write_all_at(b"HE", 0).unwrap();
        f.sync_data().unwrap();
        let mut buf = [0u8; 5];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"HEllo");
        assert_eq!(f.len().unwrap(), 5);
        assert!(f.modified_ms().is_some());
        f.set_len(2).unwrap();
        assert_eq!(dir.read("a.log").unwrap(), b"HE");
        dir.rename("a.log", "b.log").unwrap();
        dir.sync().unwrap();
        assert_eq!(dir.list().unwrap(), vec![OsString::from("b.log")]);
        assert_eq!(dir.read_if_present("a.log").unwrap(), None);
        assert!(dir.open("a.log", OpenMode::Existing).is_err());
        dir.remove_if_present("a.log").unwrap();
        dir.remove("b.log").unwrap();
        dir.remove_all().unwrap();
        assert!(!tmp.path().join("p-0").exists());
    }
}
