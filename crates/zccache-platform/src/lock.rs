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

/// Takes a shared lock on `file` and lets every process started from now on inherit the
/// descriptor (Unix: `FD_CLOEXEC` cleared; Windows: the handle made inheritable), so the lock
/// stays held while any of them runs, even after this process is gone.
pub fn hold_shared_for_children(file: &File) -> io::Result<()> {
    lock_shared(file)?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor `file` owns.
        let set = unsafe {
            libc::fcntl(
                fd,
                libc::F_SETFD,
                libc::fcntl(fd, libc::F_GETFD) & !libc::FD_CLOEXEC,
            )
        };
        if set != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::AsRawHandle;
        use windows_sys::Win32::Foundation::{SetHandleInformation, HANDLE_FLAG_INHERIT};
        // SAFETY: a handle `file` owns.
        let set = unsafe {
            SetHandleInformation(
                file.as_raw_handle(),
                HANDLE_FLAG_INHERIT,
                HANDLE_FLAG_INHERIT,
            )
        };
        if set == 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
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
