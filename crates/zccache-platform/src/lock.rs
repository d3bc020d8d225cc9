//! Whole-file locks through std's `File::lock` family: `flock` on Unix (so a lock is held by
//! the open file, shared with children that inherit it, and released when the last copy
//! closes), `LockFileEx` on Windows.

use std::fs::File;
use std::io;

/// Takes an exclusive lock on `file` without waiting; `WouldBlock` while another open file
/// holds a lock on it. Released when `file` is closed.
pub fn try_lock_exclusive(file: &File) -> io::Result<()> {
    file.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => io::ErrorKind::WouldBlock.into(),
        std::fs::TryLockError::Error(e) => e,
    })
}

/// Takes an exclusive lock on `file`, waiting for other holders to let go.
pub fn lock_exclusive(file: &File) -> io::Result<()> {
    file.lock()
}

/// Takes a shared lock on `file`, waiting for an exclusive holder to let go.
pub fn lock_shared(file: &File) -> io::Result<()> {
    file.lock_shared()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exclusive_lock_excludes_other_opens_until_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.lock");
        let first = File::create(&path).unwrap();
        try_lock_exclusive(&first).unwrap();
        let second = File::open(&path).unwrap();
        let err = try_lock_exclusive(&second).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(first);
        try_lock_exclusive(&second).unwrap();
    }

    #[test]
    fn shared_locks_coexist_and_keep_an_exclusive_one_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        let a = File::create(&path).unwrap();
        let b = File::open(&path).unwrap();
        lock_shared(&a).unwrap();
        lock_shared(&b).unwrap();
        let c = File::open(&path).unwrap();
        assert!(try_lock_exclusive(&c).is_err());
        drop((a, b));
        lock_exclusive(&c).unwrap();
    }
}
