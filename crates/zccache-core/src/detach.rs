//! Starting a background daemon the way every zccache client does: found beside the running
//! executable or on PATH, in its own session, with no inherited descriptors, and waited for
//! until it says it listens. Shared by the compiler-cache client and the download client.

use std::io;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Instant;

/// `program` if it is an executable file, or, for a bare name, the first one on PATH.
pub fn executable_on_path(program: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |path: &Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 || program.is_absolute() {
        return runnable(program).then(|| program.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|candidate| runnable(candidate))
}

/// The executable `name` beside the running one (installed together), else the bare name
/// (looked up on PATH when started).
pub fn sibling_executable(name: &str) -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        let exe = exe.canonicalize().unwrap_or(exe);
        let sibling = exe.with_file_name(name);
        if sibling.is_file() {
            return sibling;
        }
    }
    PathBuf::from(name)
}

/// Starts `exe args…` detached: its own session, stdin and stderr on /dev/null, stdout a pipe
/// on which it reports readiness (see [`wait_until_ready`]), no other inherited descriptors (a
/// build tool waiting on a pipe must not wait for the daemon), working directory `/`.
pub fn spawn_detached<I, S>(exe: &Path, args: I) -> io::Result<Child>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    // Said here: the child closes every inherited descriptor before exec, the one through
    // which a failed exec would be reported included.
    let exe = executable_on_path(exe).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} not found (nor on PATH)", exe.display()),
        )
    })?;
    let mut command = Command::new(&exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .current_dir("/");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    command
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("starting {}: {e}", exe.display())))
}

/// Waits until the daemon says it accepts connections (a byte on `ready`), exits or closes
/// the pipe (another daemon serves, or it failed), or `deadline` passes; the caller's connect
/// loop that follows finds out which.
pub fn wait_until_ready(mut ready: ChildStdout, deadline: Instant) {
    use std::io::Read;
    let mut fds = libc::pollfd {
        fd: ready.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        // SAFETY: one pollfd for a descriptor this function owns.
        let polled = unsafe { libc::poll(&mut fds, 1, left.as_millis().max(1) as i32) };
        if polled < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if polled > 0 {
            let _ = ready.read(&mut [0u8; 1]);
        }
        return;
    }
}
