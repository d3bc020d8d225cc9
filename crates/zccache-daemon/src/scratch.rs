//! Scratch files the daemon hands to a compiler: its own depfile, a repacked response file.

use parking_lot::Mutex;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Scratch files, each used by one compile at a time and then kept for the next one instead
/// of made anew. They live in a private directory on `/dev/shm` when there is one (see
/// [`CacheRoot::ensure_scratch_dir`]), else in the cache's `tmp/`. On disk a new file costs
/// an inode, and ext4 without a journal finds one by scanning past every inode freed in the
/// last minutes (~0.5 ms per miss measured on this machine's VM, and the more files are
/// deleted the slower); a reused one is truncated, which frees its block. In memory neither
/// costs anything.
///
/// [`CacheRoot::ensure_scratch_dir`]: zccache_core::CacheRoot::ensure_scratch_dir
pub(crate) struct ScratchFiles {
    dir: PathBuf,
    dir_is_ours: bool,
    free: Mutex<Vec<PathBuf>>,
    next: AtomicU64,
}

/// What names a scratch file: the daemon's pid keeps daemons of other protocol versions,
/// which share `tmp/`, apart.
const PREFIX: &str = "scratch-";

impl ScratchFiles {
    /// Scratch files in `dir`; when `dir` is this daemon's alone, what a killed predecessor
    /// left there is removed first (in `tmp/`, the store's repair does that).
    pub fn new(dir: PathBuf, dir_is_ours: bool) -> ScratchFiles {
        if dir_is_ours {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry
                    .file_name()
                    .as_encoded_bytes()
                    .starts_with(PREFIX.as_bytes())
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        ScratchFiles {
            dir,
            dir_is_ours,
            free: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
        }
    }

    /// Removes the scratch files not in use, and the directory if it is ours and then
    /// empty, for a daemon that is exiting.
    pub fn remove_unused(&self) {
        for path in self.free.lock().drain(..) {
            let _ = std::fs::remove_file(path);
        }
        if self.dir_is_ours {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }

    /// An empty scratch file, this caller's alone until the returned value is dropped.
    pub fn take(&self) -> io::Result<Scratch<'_>> {
        let reused = self.free.lock().pop();
        let path = reused.unwrap_or_else(|| {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            self.dir.join(format!("scratch-{}-{n}", std::process::id()))
        });
        // Created if a compiler (or anyone) removed it; truncated, so a compiler that writes
        // nothing leaves nothing of the previous use behind.
        let file = zccache_platform::fs::create_or_truncate_no_follow(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Scratch {
            path,
            file,
            pool: self,
        })
    }
}

/// A scratch file in use; back in the pool when dropped.
pub(crate) struct Scratch<'a> {
    path: PathBuf,
    file: File,
    pool: &'a ScratchFiles,
}

impl Scratch<'_> {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` at the end of what was written so far.
    pub fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        (&self.file)
            .write_all(bytes)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        self.pool.free.lock().push(std::mem::take(&mut self.path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_file_is_reused_empty_and_never_shared() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ScratchFiles::new(dir.path().to_path_buf(), true);
        let first = pool.take().unwrap();
        let second = pool.take().unwrap();
        assert_ne!(first.path(), second.path(), "two users never share one");
        std::fs::write(first.path(), b"deps of the first compile").unwrap();
        let inode = zccache_platform::stamp::FileStamp::of_path(first.path())
            .unwrap()
            .ino;
        let first_path = first.path().to_path_buf();
        drop(first);
        let again = pool.take().unwrap();
        assert_eq!(again.path(), first_path, "the returned file is reused");
        assert_eq!(
            zccache_platform::stamp::FileStamp::of_path(again.path())
                .unwrap()
                .ino,
            inode
        );
        assert_eq!(std::fs::read(again.path()).unwrap(), b"", "reused empty");
    }

    #[test]
    fn a_scratch_file_someone_removed_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ScratchFiles::new(dir.path().to_path_buf(), true);
        let scratch = pool.take().unwrap();
        std::fs::remove_file(scratch.path()).unwrap();
        drop(scratch);
        let again = pool.take().unwrap();
        assert!(again.path().is_file());
    }

    #[test]
    fn leftovers_go_at_start_and_unused_files_at_exit() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("scratch-1-0"), b"a killed daemon's").unwrap();
        std::fs::write(dir.path().join("blob-staging"), b"not ours").unwrap();
        let pool = ScratchFiles::new(dir.path().to_path_buf(), true);
        assert!(!dir.path().join("scratch-1-0").exists());
        assert!(dir.path().join("blob-staging").exists());
        let in_use = pool.take().unwrap();
        drop(pool.take().unwrap());
        pool.remove_unused();
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(in_use.path().exists());
    }
}
