//! zccache-core: where the cache lives and how it is configured.
//!
//! Every other crate asks this one for paths ([`CacheRoot`]) and settings ([`Config`]) so that
//! the layout on disk is defined once. Configuration is read from an environment passed in by
//! the caller, never from process globals deep inside, so tests can run side by side with a
//! private root each. This crate does no networking and knows nothing of compilers or redb.

mod config;
pub mod detach;
pub mod journal;
pub mod paths;
mod root;

pub use config::{
    parse_duration, parse_size, Config, ConfigError, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_JOURNAL_MAX_SIZE, DEFAULT_MAX_SIZE, DEFAULT_SESSION_TIMEOUT,
};
pub use root::{make_private_dir, CacheRoot, RootError};

/// The version of zccache, shown by `--version` and `status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The exit code a shell reports for a process that ended with `status` (128 + the signal
/// when it was killed), which the client passes on as the compiler's own.
pub fn exit_code(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Whether process `pid` exists and has not yet exited (a zombie has). Reads `/proc`, where
/// an exited process that nobody has reaped yet still shows.
pub fn process_is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // pid (comm) state …; comm may itself hold ") ".
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Takes an exclusive `flock` on `file` without waiting; `WouldBlock` while another open
/// file holds a lock on it. Released when `file` is closed.
pub fn try_lock_exclusive(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a descriptor `file` owns.
    match unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Takes an exclusive `flock` on `file`, waiting for another holder to let go. Released when
/// `file` is closed.
pub fn lock_exclusive(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor `file` owns.
        match unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } {
            0 => return Ok(()),
            _ => {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
}

/// A 32-byte blake3 digest, the unit of identity for files, keys and blobs.
pub type Hash = [u8; 32];

/// Lower-case hex of a digest, for file names and logs.
pub fn hex(hash: &Hash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for byte in hash {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    out
}

#[cfg(test)]
mod process_tests {
    use super::process_is_running;

    #[test]
    fn running_exited_and_unreaped_processes_are_told_apart() {
        assert!(process_is_running(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited but not yet reaped: a zombie, no longer running.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while process_is_running(pid) {
            assert!(std::time::Instant::now() < deadline, "`true` never exited");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(
            std::fs::metadata(format!("/proc/{pid}")).is_ok(),
            "reaped early"
        );
        child.wait().unwrap();
        assert!(!process_is_running(pid));
    }
}
