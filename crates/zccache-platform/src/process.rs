//! Processes: exit codes as a shell reports them, whether a process still runs, and starting
//! a daemon the way every zccache client does (found beside the running executable or on
//! PATH, detached from the caller's session and console, no inherited descriptors, and waited
//! for until it says it listens).

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Instant;

/// The exit code a shell reports for a process that ended with `status`: on Unix 128 + the
/// signal when it was killed, which the client passes on as the compiler's own.
pub fn exit_code(status: &ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
    }
    #[cfg(not(unix))]
    {
        status.code().unwrap_or(1)
    }
}

/// Whether process `pid` exists and has not yet exited.
#[cfg(target_os = "linux")]
pub fn process_is_running(pid: u32) -> bool {
    // /proc still shows an exited process that nobody has reaped yet (a zombie): not running.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // pid (comm) state …; comm may itself hold ") ".
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Whether process `pid` exists and has not yet exited (a zombie counts as running here).
#[cfg(all(unix, not(target_os = "linux")))]
pub fn process_is_running(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    found || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether process `pid` exists and has not yet exited.
#[cfg(windows)]
pub fn process_is_running(pid: u32) -> bool {
    use windows_sys::Win32::Foundation::{CloseHandle, STILL_ACTIVE};
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };
    // SAFETY: plain Win32 calls on a handle this function opens and closes.
    unsafe {
        let handle = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
        if handle.is_null() {
            return false;
        }
        let mut code = 0u32;
        let ok = GetExitCodeProcess(handle, &mut code) != 0;
        CloseHandle(handle);
        ok && code == STILL_ACTIVE as u32
    }
}

/// Whether `path` is a file this user may run.
fn runnable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// The names `program` may have on disk: itself, and on Windows, without an extension, with
/// each of PATHEXT's (`.COM;.EXE;.BAT;.CMD` by default).
fn candidates(program: &Path) -> Vec<PathBuf> {
    let mut names = vec![program.to_path_buf()];
    if cfg!(windows) && program.extension().is_none() {
        let exts = std::env::var("PATHEXT").unwrap_or_else(|_| ".COM;.EXE;.BAT;.CMD".into());
        for ext in exts.split(';').filter(|e| !e.is_empty()) {
            let mut name = program.as_os_str().to_owned();
            name.push(ext.to_ascii_lowercase());
            names.insert(names.len() - 1, PathBuf::from(name));
        }
    }
    names
}

/// `program` if it names an executable file, or, for a bare name, the first one on PATH
/// (with PATHEXT's extensions on Windows).
pub fn executable_on_path(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 || program.is_absolute() {
        return candidates(program).into_iter().find(|c| runnable(c));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .flat_map(|dir| candidates(&dir.join(program)))
        .find(|candidate| runnable(candidate))
}

/// The executable `name` (`.exe` added on Windows) beside the running one, as they are
/// installed together; else the bare name, looked up on PATH when started.
pub fn sibling_executable(name: &str) -> PathBuf {
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    if let Ok(exe) = std::env::current_exe() {
        let exe = exe.canonicalize().unwrap_or(exe);
        let sibling = exe.with_file_name(&file);
        if sibling.is_file() {
            return sibling;
        }
    }
    PathBuf::from(name)
}

/// Starts `exe args…` detached: on Unix in a session of its own with no descriptor but
/// stdio inherited (a build tool waiting on a pipe must not wait for the daemon); on Windows
/// as a detached process in a group of its own, without a console window. stdin and stderr
/// are null; stdout is a pipe on which it reports readiness (see [`wait_until_ready`]); the
/// working directory is the file-system root.
pub fn spawn_detached<I, S>(exe: &Path, args: I) -> io::Result<Child>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    // Said here: on Unix the child closes every inherited descriptor before exec, the one
    // through which a failed exec would be reported included.
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
        .current_dir(filesystem_root());
    detach(&mut command);
    command
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("starting {}: {e}", exe.display())))
}

fn filesystem_root() -> PathBuf {
    #[cfg(windows)]
    {
        // The system drive's root: a directory that always exists and is never removed.
        let drive = std::env::var("SystemDrive").unwrap_or_else(|_| "C:".into());
        PathBuf::from(format!("{drive}\\"))
    }
    #[cfg(not(windows))]
    {
        PathBuf::from("/")
    }
}

#[cfg(unix)]
fn detach(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            close_inherited();
            Ok(())
        });
    }
}

/// Closes every descriptor above stderr (in the child, between fork and exec).
#[cfg(target_os = "linux")]
fn close_inherited() {
    // SAFETY: close_range on this (child) process's own descriptor table.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
}

/// Closes every descriptor above stderr (in the child, between fork and exec).
#[cfg(all(unix, not(target_os = "linux")))]
fn close_inherited() {
    // SAFETY: getdtablesize and close are async-signal-safe; closing a descriptor that is not
    // open only fails with EBADF.
    unsafe {
        let top = libc::getdtablesize().max(3);
        for fd in 3..top {
            libc::close(fd);
        }
    }
}

#[cfg(windows)]
fn detach(command: &mut Command) {
    use std::os::windows::process::CommandExt;
    use windows_sys::Win32::System::Threading::{
        CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW, DETACHED_PROCESS,
    };
    // DETACHED_PROCESS: no console at all (CREATE_NO_WINDOW is the fallback where a console
    // program insists); a group of its own, so the build's Ctrl+C does not reach it.
    command.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW);
}

/// Waits until the daemon says it accepts connections (a byte on `ready`), exits or closes
/// the pipe (another daemon serves, or it failed), or `deadline` passes; the caller's connect
/// loop that follows finds out which.
#[cfg(unix)]
pub fn wait_until_ready(mut ready: ChildStdout, deadline: Instant) {
    use std::io::Read;
    use std::os::unix::io::AsRawFd;
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

/// Waits until the daemon says it accepts connections (a byte on `ready`), exits or closes
/// the pipe, or `deadline` passes. An anonymous pipe cannot be polled on Windows: a thread
/// reads it, and is left to finish on its own if the deadline passes first.
#[cfg(not(unix))]
pub fn wait_until_ready(mut ready: ChildStdout, deadline: Instant) {
    use std::io::Read;
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = ready.read(&mut [0u8; 1]);
        let _ = done.send(());
    });
    let _ = wait.recv_timeout(deadline.saturating_duration_since(Instant::now()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_and_an_exited_child_does_not() {
        assert!(process_is_running(std::process::id()));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--list")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let status = child.wait().unwrap();
        assert_eq!(exit_code(&status), 0);
        assert!(!process_is_running(pid));
    }

    #[test]
    fn executables_are_found_on_path_and_missing_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("zccache-test-tool{}", std::env::consts::EXE_SUFFIX);
        let tool = dir.path().join(&name);
        std::fs::copy(std::env::current_exe().unwrap(), &tool).unwrap();
        let path = std::env::join_paths([dir.path()]).unwrap();
        // No other test of this binary looks anything up on PATH.
        let old = std::env::var_os("PATH");
        std::env::set_var("PATH", &path);
        let found = executable_on_path(Path::new("zccache-test-tool"));
        let missing = executable_on_path(Path::new("zccache-no-such-tool"));
        match old {
            Some(old) => std::env::set_var("PATH", old),
            None => std::env::remove_var("PATH"),
        }
        assert_eq!(found.as_deref(), Some(tool.as_path()));
        assert_eq!(missing, None);
        assert_eq!(executable_on_path(&tool).as_deref(), Some(tool.as_path()));
    }

    #[test]
    fn waiting_for_a_detached_child_ends_with_its_first_output() {
        // The test binary itself, asked to list its tests: its first byte of output ends the
        // wait, as a daemon's ready byte does.
        let mut child = spawn_detached(
            &std::env::current_exe().unwrap(),
            ["--list", "--format=terse"],
        )
        .unwrap();
        let stdout = child.stdout.take().unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        wait_until_ready(stdout, deadline);
        assert!(Instant::now() < deadline);
        // The rest of its output goes to a closed pipe: it may end by SIGPIPE.
        child.wait().unwrap();
    }
}

#[cfg(all(test, target_os = "linux"))]
mod linux_tests {
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
