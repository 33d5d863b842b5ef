//! A storage that can lose power (test-only, feature `test-util`).
//!
//! SIGKILL keeps the page cache, so killing a process never shows a missing fsync.
//! [`PowerLossFs`] does: it sits on the real filesystem and keeps, in memory, an undo
//! record of every change that the storage contract (`crate::storage`) does not yet
//! promise to be durable: file writes and length changes since that file's last
//! `sync_data`/`sync_all`, and entry changes (creations, renames, removals) since the
//! last `sync_dir` of their directory. [`PowerLossFs::power_cut`] then undoes, per file
//! and per directory, a random suffix of those changes (the last kept write possibly
//! torn at a random byte), so the files on disk are what a machine could hold after a
//! power loss at that instant. The instance is dead from then on: every call fails, so
//! the tasks of a "powered off" node cannot write behind the cut. A new node process (or
//! a new instance in the same process) starts on what is left, exactly as after a reboot.
//!
//! Because the durable state is plain files, the same storage serves in-process cluster
//! tests and a node process driven by the chaos runner.
//!
//! It also injects I/O errors ([`PowerLossFs::inject`]): EIO on writes or fsyncs under a
//! path, as a failing disk answers.
//!
//! What it models and what it does not: it keeps the contract's promises and no more,
//! the strictest reading a POSIX filesystem allows, except that it keeps the order of
//! changes within one file and within one directory (no reordering of writes between two
//! fsyncs; a kept change implies every earlier change of that file was kept). Directory
//! creation is durable when `create_dir_all` returns (the contract says so). Real fsyncs
//! are not issued: the durable state lives through a process crash, not a host crash.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::storage::{OpenMode, Storage, StorageFile};

/// Names starting with this are the storage's own (removed entries kept for undo).
const STASH_PREFIX: &str = ".powerloss-stash-";

/// Which operations an injected fault fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOn {
    /// Writes and length changes.
    Writes,
    /// `sync_data`, `sync_all` and `sync_dir`.
    Syncs,
}

/// An injected I/O error: every `on` operation on a path under `under` fails with EIO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoFault {
    /// Files (or directories) at or below this path.
    pub under: PathBuf,
    /// The operations that fail.
    pub on: FaultOn,
}

/// What a power cut undid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutReport {
    /// File writes and length changes undone (a torn write counts once).
    pub data_changes_undone: usize,
    /// Writes kept only in part.
    pub torn_writes: usize,
    /// Directory entry changes undone.
    pub entry_changes_undone: usize,
}

/// A filesystem that forgets what was never made durable when its power is cut.
#[derive(Debug, Default)]
pub struct PowerLossFs {
    inner: Arc<Inner>,
}

/// The storage's state, shared with its open files.
#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    dead: AtomicBool,
    faults: Mutex<Vec<IoFault>>,
}

#[derive(Debug, Default)]
struct State {
    next_inode: u64,
    next_stash: u64,
    /// Sequence number of the next change: undo runs in reverse order of it.
    next_seq: u64,
    files: HashMap<u64, Inode>,
    by_path: HashMap<PathBuf, u64>,
    /// Entry changes not yet made durable, per directory.
    dirs: HashMap<PathBuf, Vec<(u64, EntryChange)>>,
}

#[derive(Debug)]
struct Inode {
    path: PathBuf,
    undo: Vec<(u64, DataChange)>,
}

/// How to take a file change back.
#[derive(Debug)]
enum DataChange {
    /// `len` bytes were written at `pos`; before that the file was `len_before` long and
    /// held `old` at `pos` (only the part below `len_before`).
    Write {
        pos: u64,
        len: u64,
        len_before: u64,
        old: Vec<u8>,
    },
    /// The length was set; before that it was `len_before` and the bytes cut off were
    /// `cut` (from the new length on).
    SetLen { len_before: u64, cut: Vec<u8> },
}

/// How to take a directory entry change back.
#[derive(Debug)]
enum EntryChange {
    /// A file was created.
    Created { path: PathBuf },
    /// `from` was renamed to `to`; an entry `to` replaced was kept at `stash`.
    Renamed {
        from: PathBuf,
        to: PathBuf,
        stash: Option<PathBuf>,
    },
    /// `path` was removed and kept at `stash`.
    Removed { path: PathBuf, stash: PathBuf },
}

fn eio(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Other,
        format!("{what}: Input/output error (os error 5, injected)"),
    )
}

fn dead() -> io::Error {
    io::Error::new(
        io::ErrorKind::Other,
        "the storage lost power (simulated): Input/output error",
    )
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl PowerLossFs {
    /// A storage on the real filesystem, powered on, with no faults.
    pub fn new() -> Arc<PowerLossFs> {
        Arc::new(PowerLossFs::default())
    }

    /// Fails matching operations with EIO from now on.
    pub fn inject(&self, fault: IoFault) {
        self.inner.faults.lock().push(fault);
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.inner.faults.lock().clear();
    }

    /// Whether the power was cut.
    pub fn is_dead(&self) -> bool {
        self.inner.dead.load(Ordering::SeqCst)
    }

    /// Cuts the power: undoes a random suffix (chosen by `seed`) of every change not yet
    /// durable, and refuses every call from now on.
    pub fn power_cut(&self, seed: u64) -> io::Result<CutReport> {
        self.inner.power_cut(seed)
    }
}

impl Inner {
    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    fn power_cut(&self, seed: u64) -> io::Result<CutReport> {
        let mut state = self.state.lock();
        if self.dead.swap(true, Ordering::SeqCst) {
            return Ok(CutReport::default());
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut report = CutReport::default();
        // File data first, at each file's current path; then entries, newest first.
        let mut inodes: Vec<&mut Inode> = state.files.values_mut().collect();
        inodes.sort_by(|a, b| a.path.cmp(&b.path));
        for inode in inodes {
            let keep = rng.random_range(0..=inode.undo.len());
            let tear = keep < inode.undo.len() && rng.random_bool(0.5);
            let undone = inode.undo.split_off(keep);
            if undone.is_empty() {
                continue;
            }
            let file = OpenOptions::new().write(true).open(&inode.path);
            let Ok(file) = file else {
                // Its entry is gone (removed, never durable): nothing left to undo.
                continue;
            };
            for (i, (_, change)) in undone.iter().enumerate().rev() {
                let torn_at = (i == 0 && tear).then(|| match change {
                    DataChange::Write { len, .. } if *len > 1 => rng.random_range(1..*len),
                    _ => 0,
                });
                undo_data(&file, change, torn_at.filter(|k| *k > 0))?;
                if torn_at.is_some_and(|k| k > 0) {
                    report.torn_writes += 1;
                }
                report.data_changes_undone += 1;
            }
        }
        let mut entries = Vec::new();
        let mut dirs: Vec<_> = state.dirs.iter_mut().collect();
        dirs.sort_by(|a, b| a.0.cmp(b.0));
        for (_, changes) in dirs {
            let keep = rng.random_range(0..=changes.len());
            entries.extend(changes.split_off(keep));
        }
        entries.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        for (_, change) in &entries {
            undo_entry(change)?;
            report.entry_changes_undone += 1;
        }
        // Stashes whose removal was durable are garbage now.
        for (_, changes) in state.dirs.iter() {
            for (_, change) in changes {
                if let EntryChange::Removed { stash, .. }
                | EntryChange::Renamed {
                    stash: Some(stash), ..
                } = change
                {
                    remove_any(stash)?;
                }
            }
        }
        sweep_stashes(&state)?;
        state.files.clear();
        state.by_path.clear();
        state.dirs.clear();
        Ok(report)
    }

    fn check(&self, path: &Path, on: Option<FaultOn>) -> io::Result<()> {
        if self.is_dead() {
            return Err(dead());
        }
        if let Some(on) = on {
            let faults = self.faults.lock();
            if faults
                .iter()
                .any(|f| f.on == on && path.starts_with(&f.under))
            {
                return Err(eio(&path.display().to_string()));
            }
        }
        Ok(())
    }

    fn inode_for(state: &mut State, path: &Path) -> u64 {
        if let Some(id) = state.by_path.get(path) {
            return *id;
        }
        let id = state.next_inode;
        state.next_inode += 1;
        state.files.insert(
            id,
            Inode {
                path: path.to_path_buf(),
                undo: Vec::new(),
            },
        );
        state.by_path.insert(path.to_path_buf(), id);
        id
    }

    fn record_entry(state: &mut State, dir: &Path, change: EntryChange) {
        let seq = state.next_seq;
        state.next_seq += 1;
        state
            .dirs
            .entry(dir.to_path_buf())
            .or_default()
            .push((seq, change));
    }

    fn stash_path(state: &mut State, near: &Path) -> PathBuf {
        let n = state.next_stash;
        state.next_stash += 1;
        parent_of(near).join(format!("{STASH_PREFIX}{n}"))
    }

    /// Moves everything tracked at or below `from` (files, and the pending entry changes
    /// of directories in that tree) to the same place below `to`.
    fn move_tree(state: &mut State, from: &Path, to: &Path) {
        let moved: Vec<(PathBuf, u64)> = state
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, id)| (p.clone(), *id))
            .collect();
        for (old, id) in moved {
            state.by_path.remove(&old);
            let new = rebase(&old, from, to);
            if let Some(inode) = state.files.get_mut(&id) {
                inode.path = new.clone();
            }
            state.by_path.insert(new, id);
        }
        let dirs: Vec<PathBuf> = state
            .dirs
            .keys()
            .filter(|d| d.starts_with(from))
            .cloned()
            .collect();
        for dir in dirs {
            let Some(mut changes) = state.dirs.remove(&dir) else {
                continue;
            };
            for (_, change) in &mut changes {
                change.rebase(from, to);
            }
            state.dirs.insert(rebase(&dir, from, to), changes);
        }
    }

    /// Forgets everything at or below `path` (its data went with its entry).
    fn forget_tree(state: &mut State, path: &Path) {
        let gone: Vec<PathBuf> = state
            .by_path
            .keys()
            .filter(|p| p.starts_with(path))
            .cloned()
            .collect();
        for p in gone {
            if let Some(id) = state.by_path.remove(&p) {
                state.files.remove(&id);
            }
        }
        state.dirs.retain(|d, _| !d.starts_with(path));
    }

    /// Removes `path` from its directory, keeping it for undo until the directory is
    /// synced.
    fn remove_entry(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        self.check(path, Some(FaultOn::Writes))?;
        fs::symlink_metadata(path)?;
        let stash = Self::stash_path(&mut state, path);
        fs::rename(path, &stash)?;
        Self::move_tree(&mut state, path, &stash);
        Self::record_entry(
            &mut state,
            &parent_of(path),
            EntryChange::Removed {
                path: path.to_path_buf(),
                stash,
            },
        );
        Ok(())
    }
}

/// `path` with its prefix `from` replaced by `to`.
fn rebase(path: &Path, from: &Path, to: &Path) -> PathBuf {
    match path.strip_prefix(from) {
        Ok(rest) if rest.as_os_str().is_empty() => to.to_path_buf(),
        Ok(rest) => to.join(rest),
        Err(_) => path.to_path_buf(),
    }
}

impl EntryChange {
    fn rebase(&mut self, from: &Path, to: &Path) {
        let paths: Vec<&mut PathBuf> = match self {
            EntryChange::Created { path } => vec![path],
            EntryChange::Renamed {
                from: a,
                to: b,
                stash,
            } => {
                let mut v = vec![a, b];
                v.extend(stash.as_mut());
                v
            }
            EntryChange::Removed { path, stash } => vec![path, stash],
        };
        for p in paths {
            *p = rebase(p, from, to);
        }
    }
}

fn undo_data(file: &File, change: &DataChange, torn_at: Option<u64>) -> io::Result<()> {
    match change {
        DataChange::Write {
            pos,
            len,
            len_before,
            old,
        } => {
            // A torn write keeps its first `k` bytes; the rest is taken back.
            let kept = torn_at.unwrap_or(0).min(*len);
            let old_from = kept.min(old.len() as u64);
            if old_from < old.len() as u64 {
                file.write_all_at(&old[old_from as usize..], pos + old_from)?;
            }
            file.set_len((*len_before).max(pos + kept))?;
        }
        DataChange::SetLen { len_before, cut } => {
            file.set_len(*len_before)?;
            if !cut.is_empty() {
                file.write_all_at(cut, len_before - cut.len() as u64)?;
            }
        }
    }
    Ok(())
}

fn undo_entry(change: &EntryChange) -> io::Result<()> {
    match change {
        EntryChange::Created { path } => remove_any(path),
        EntryChange::Renamed { from, to, stash } => {
            fs::rename(to, from)?;
            if let Some(stash) = stash {
                fs::rename(stash, to)?;
            }
            Ok(())
        }
        EntryChange::Removed { path, stash } => fs::rename(stash, path),
    }
}

fn remove_any(path: &Path) -> io::Result<()> {
    let removed = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes stashes left in the directories the storage touched.
fn sweep_stashes(state: &State) -> io::Result<()> {
    for dir in state.dirs.keys() {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(STASH_PREFIX)
            {
                remove_any(&entry.path())?;
            }
        }
    }
    Ok(())
}

impl Storage for PowerLossFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.inner.list_dir(dir)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let (inode, file) = self.inner.open(path, mode)?;
        Ok(Arc::new(PowerLossFile {
            fs: self.inner.clone(),
            inode,
            file,
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_entry(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.remove_entry(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
}

impl Inner {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.check(dir, Some(FaultOn::Writes))?;
        // Durable by contract: nothing to undo.
        fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.check(dir, None)?;
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            if !name.to_string_lossy().starts_with(STASH_PREFIX) {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<(u64, File)> {
        let on = (mode == OpenMode::CreateTruncate).then_some(FaultOn::Writes);
        let mut state = self.state.lock();
        self.check(path, on)?;
        let existed = fs::symlink_metadata(path).is_ok();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(mode == OpenMode::CreateTruncate)
            .open(path)?;
        if !existed {
            Self::record_entry(
                &mut state,
                &parent_of(path),
                EntryChange::Created {
                    path: path.to_path_buf(),
                },
            );
        }
        let inode = Self::inode_for(&mut state, path);
        if mode == OpenMode::CreateTruncate && existed {
            set_len_tracked(&mut state, inode, &file, 0)?;
        }
        Ok((inode, file))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.check(path, None)?;
        fs::read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if parent_of(from) != parent_of(to) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "renames across directories are not simulated",
            ));
        }
        let mut state = self.state.lock();
        self.check(from, Some(FaultOn::Writes))?;
        fs::symlink_metadata(from)?;
        let stash = if fs::symlink_metadata(to).is_ok() {
            let stash = Self::stash_path(&mut state, to);
            fs::rename(to, &stash)?;
            Self::move_tree(&mut state, to, &stash);
            Some(stash)
        } else {
            None
        };
        fs::rename(from, to)?;
        Self::move_tree(&mut state, from, to);
        Self::record_entry(
            &mut state,
            &parent_of(to),
            EntryChange::Renamed {
                from: from.to_path_buf(),
                to: to.to_path_buf(),
                stash,
            },
        );
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        self.check(dir, Some(FaultOn::Syncs))?;
        let Some(changes) = state.dirs.remove(dir) else {
            return Ok(());
        };
        // Removals are final now: what they kept for undo goes, with its files.
        for (_, change) in changes {
            if let EntryChange::Removed { stash, .. }
            | EntryChange::Renamed {
                stash: Some(stash), ..
            } = change
            {
                Self::forget_tree(&mut state, &stash);
                remove_any(&stash)?;
            }
        }
        Ok(())
    }
}

fn set_len_tracked(state: &mut State, inode: u64, file: &File, len: u64) -> io::Result<()> {
    let len_before = file.metadata()?.len();
    let cut = if len < len_before {
        let mut cut = vec![0u8; (len_before - len) as usize];
        file.read_exact_at(&mut cut, len)?;
        cut
    } else {
        Vec::new()
    };
    file.set_len(len)?;
    let seq = state.next_seq;
    state.next_seq += 1;
    if let Some(node) = state.files.get_mut(&inode) {
        node.undo
            .push((seq, DataChange::SetLen { len_before, cut }));
    }
    Ok(())
}

/// A file of [`PowerLossFs`].
#[derive(Debug)]
struct PowerLossFile {
    fs: Arc<Inner>,
    inode: u64,
    file: File,
}

/// The current path of a file (empty once forgotten).
fn path_of(state: &State, inode: u64) -> PathBuf {
    state
        .files
        .get(&inode)
        .map(|i| i.path.clone())
        .unwrap_or_default()
}

impl StorageFile for PowerLossFile {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.fs.check(Path::new(""), None)?;
        self.file.read_exact_at(buf, pos)
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        let fs = &self.fs;
        let mut state = fs.state.lock();
        fs.check(&path_of(&state, self.inode), Some(FaultOn::Writes))?;
        let len_before = self.file.metadata()?.len();
        let old_len = len_before.saturating_sub(pos).min(buf.len() as u64);
        let mut old = vec![0u8; old_len as usize];
        if old_len > 0 {
            self.file.read_exact_at(&mut old, pos)?;
        }
        self.file.write_all_at(buf, pos)?;
        let seq = state.next_seq;
        state.next_seq += 1;
        if let Some(node) = state.files.get_mut(&self.inode) {
            node.undo.push((
                seq,
                DataChange::Write {
                    pos,
                    len: buf.len() as u64,
                    len_before,
                    old,
                },
            ));
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.fs.check(Path::new(""), None)?;
        Ok(self.file.metadata()?.len())
    }

    fn modified_ms(&self) -> Option<i64> {
        let modified = self.file.metadata().ok()?.modified().ok()?;
        let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
        i64::try_from(since.as_millis()).ok()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let fs = &self.fs;
        let mut state = fs.state.lock();
        fs.check(&path_of(&state, self.inode), Some(FaultOn::Writes))?;
        set_len_tracked(&mut state, self.inode, &self.file, len)
    }

    fn sync_data(&self) -> io::Result<()> {
        let fs = &self.fs;
        let mut state = fs.state.lock();
        fs.check(&path_of(&state, self.inode), Some(FaultOn::Syncs))?;
        if let Some(node) = state.files.get_mut(&self.inode) {
            node.undo.clear();
        }
        Ok(())
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }
}
