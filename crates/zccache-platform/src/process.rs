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

/// Whether `path` is a file this user may run (on Windows: any file; PATHEXT names them).
pub fn runnable(path: &Path) -> bool {
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

/// The program a wrapper should run for `name`: a path as given (made absolute against
/// `cwd`), or the first match on PATH that is not this very executable (so zccache installed
/// under a compiler's name earlier on PATH does not call itself). The flag says whether such
/// an entry was skipped.
pub fn resolve_program_skipping_self(
    name: &std::ffi::OsStr,
    cwd: &Path,
) -> Option<(PathBuf, bool)> {
    let has_separator = name
        .as_encoded_bytes()
        .iter()
        .any(|b| *b == b'/' || (cfg!(windows) && (*b == b'\\' || *b == b':')));
    if has_separator {
        let path = Path::new(name);
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            cwd.join(path)
        };
        return Some((path, false));
    }
    let path_var = std::env::var_os("PATH")?;
    let dirs = std::env::split_paths(&path_var)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                cwd.join(dir)
            }
        });
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // This executable by (device, inode): one stat per candidate instead of resolving
        // every symlink of every path on the hit path.
        let own = std::env::current_exe()
            .and_then(std::fs::metadata)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let mut shadowed = false;
        for dir in dirs {
            let candidate = dir.join(name);
            let Ok(meta) = std::fs::metadata(&candidate) else {
                continue;
            };
            if !(meta.is_file() && meta.permissions().mode() & 0o111 != 0) {
                continue;
            }
            if own == Some((meta.dev(), meta.ino())) {
                shadowed = true;
                continue;
            }
            return Some((candidate, shadowed));
        }
        None
    }
    #[cfg(not(unix))]
    {
        let own = std::env::current_exe().ok();
        let mut shadowed = false;
        for dir in dirs {
            for candidate in candidates(&dir.join(name)) {
                if !runnable(&candidate) {
                    continue;
                }
                if own
                    .as_ref()
                    .is_some_and(|own| crate::stamp::same_file(own, &candidate))
                {
                    shadowed = true;
                    continue;
                }
                return Some((candidate, shadowed));
            }
        }
        None
    }
}

/// Runs `command` in this process's place: on Unix by `exec` (same pid, stdio and signals as a
/// direct call); Windows has no `exec`, so the program runs as a child with this process's
/// stdio and this process exits with its exit code. Returns only when it cannot be started.
pub fn exec_replace(command: &mut Command) -> io::Error {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.exec()
    }
    #[cfg(not(unix))]
    {
        match command.status() {
            Ok(status) => std::process::exit(exit_code(&status)),
            Err(e) => e,
        }
    }
}

/// The pid of this process's parent (on Windows the process that created it, which may have
/// exited since; 0 when unknown).
pub fn parent_pid() -> u32 {
    #[cfg(unix)]
    {
        std::os::unix::process::parent_id()
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::Foundation::{CloseHandle, INVALID_HANDLE_VALUE};
        use windows_sys::Win32::System::Diagnostics::ToolHelp::{
            CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W,
            TH32CS_SNAPPROCESS,
        };
        let me = std::process::id();
        // SAFETY: a snapshot handle opened and closed here, and a plain-data entry the calls
        // fill (its size set first, as the API requires).
        unsafe {
            let snapshot = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
            if snapshot == INVALID_HANDLE_VALUE {
                return 0;
            }
            let mut entry: PROCESSENTRY32W = std::mem::zeroed();
            entry.dwSize = std::mem::size_of::<PROCESSENTRY32W>() as u32;
            let mut parent = 0;
            let mut more = Process32FirstW(snapshot, &mut entry) != 0;
            while more {
                if entry.th32ProcessID == me {
                    parent = entry.th32ParentProcessID;
                    break;
                }
                more = Process32NextW(snapshot, &mut entry) != 0;
            }
            CloseHandle(snapshot);
            parent
        }
    }
}

/// This process's resident memory in bytes, as the OS counts it; `None` where it cannot say.
pub fn resident_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        // statm: size, resident, ... in pages.
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf only reads a configuration value.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Some(pages * u64::try_from(page).ok()?)
    }
    #[cfg(target_os = "macos")]
    {
        // SAFETY: a plain-data struct proc_pidinfo fills, its size passed with it.
        unsafe {
            let mut info: libc::proc_taskinfo = std::mem::zeroed();
            let size = std::mem::size_of::<libc::proc_taskinfo>() as libc::c_int;
            let got = libc::proc_pidinfo(
                libc::getpid(),
                libc::PROC_PIDTASKINFO,
                0,
                (&mut info as *mut libc::proc_taskinfo).cast(),
                size,
            );
            (got == size).then_some(info.pti_resident_size)
        }
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::ProcessStatus::{
            GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS,
        };
        use windows_sys::Win32::System::Threading::GetCurrentProcess;
        // SAFETY: the pseudo-handle of this process, and a plain-data struct the call fills
        // (its size passed with it).
        unsafe {
            let mut counters: PROCESS_MEMORY_COUNTERS = std::mem::zeroed();
            let size = std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
            (GetProcessMemoryInfo(GetCurrentProcess(), &mut counters, size) != 0)
                .then_some(counters.WorkingSetSize as u64)
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    {
        None
    }
}

/// Caps the allocator's arenas for a long-lived process. glibc gives threads up to eight
/// arenas per core, each holding on to what was freed in it: the daemon's resident size at 4000
/// warm hits was 100 MB with the default and 60 MB with one arena. Call before threads start.
/// A no-op with other allocators.
pub fn limit_allocator_arenas(arenas: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets a tunable of the allocator; it is called before other threads run.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas;
}

/// Hands memory the allocator holds free back to the OS. glibc keeps what a long-lived
/// multi-threaded process frees in its arenas: after a memo starts over, the daemon's resident
/// size stayed at its peak. A no-op where the allocator returns memory by itself.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Whether this process's stdin is the null device (what cargo gives its probes). `false`
/// where that cannot be told (Windows).
pub fn stdin_is_null_device() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let (Ok(stdin), Ok(null)) = (
            std::fs::metadata("/dev/stdin"),
            std::fs::metadata("/dev/null"),
        ) else {
            return false;
        };
        stdin.file_type().is_char_device() && stdin.rdev() == null.rdev()
    }
    #[cfg(not(unix))]
    {
        false
    }
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
    use windows_sys::Win32::Foundation::{
        SetHandleInformation, HANDLE_FLAG_INHERIT, INVALID_HANDLE_VALUE,
    };
    use windows_sys::Win32::System::Console::{
        GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
    };
    use windows_sys::Win32::System::Threading::{
        CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW, DETACHED_PROCESS,
    };
    // DETACHED_PROCESS: no console at all (CREATE_NO_WINDOW is the fallback where a console
    // program insists); a group of its own, so the build's Ctrl+C does not reach it.
    command.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW);
    // std starts every child with all inheritable handles, and this process's own stdio are
    // inheritable: the pipes of the build tool that started it (cargo reading `rustc -vV`).
    // A daemon holding them keeps the tool waiting for an end of output that never comes. A
    // child that is given stdio later gets duplicates made for it, so this process loses
    // nothing by keeping its own out of inheritance.
    for which in [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE] {
        // SAFETY: plain Win32 calls on this process's standard handles.
        unsafe {
            let handle = GetStdHandle(which);
            if !handle.is_null() && handle != INVALID_HANDLE_VALUE {
                SetHandleInformation(handle, HANDLE_FLAG_INHERIT, 0);
            }
        }
    }
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

/// Gives the program started by `command` the name `arg0` as its `argv[0]` (a compiler
/// reached through a symlink named `g++` behaves as g++). Windows has no separate
/// `argv[0]`: the program's own path is passed, and a driver there is found by its file name.
pub fn set_arg0(command: &mut Command, arg0: &std::ffi::OsStr) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.arg0(arg0);
    }
    #[cfg(not(unix))]
    let _ = (command, arg0);
}

/// Sets the calling thread's nice value, which the processes it starts then inherit (Linux,
/// where a nice value belongs to a thread). Elsewhere: `Unsupported`, and tools run at the
/// daemon's own priority.
pub fn set_thread_nice(nice: i32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority only read and set this thread's priority.
        let set = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as _, nice) };
        if set == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "per-thread nice values are Linux's",
        ))
    }
}

/// The nice value of thread `tid` (0: the calling thread; a process id: its main thread);
/// `None` where it cannot be read.
pub fn thread_nice(tid: u32) -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        // getpriority may return -1 as a value: errno tells it from an error.
        // SAFETY: errno is this thread's; getpriority only reads.
        unsafe {
            *libc::__errno_location() = 0;
            let nice = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
            (nice != -1 || *libc::__errno_location() == 0).then_some(nice)
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tid;
        None
    }
}

/// An anonymous file in memory (`memfd_create` on Linux), gone when the last descriptor to it
/// closes: a child's output goes there without a pipe. `Unsupported` elsewhere, where callers
/// read the output through pipes.
pub fn memory_file(name: &std::ffi::CStr) -> io::Result<std::fs::File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::FromRawFd;
        // SAFETY: a valid NUL-terminated name; the descriptor returned is new and ours alone.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        Ok(unsafe { std::fs::File::from_raw_fd(fd) })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = name;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "memory files are Linux's",
        ))
    }
}

/// Reads a child's stdout and stderr to their ends, handing each piece of stderr to
/// `on_stderr` (with the length of stderr so far) as it comes. On Unix both are read on this
/// thread with `poll`: a reader thread per compile cost its creation, and at the compiler's
/// exit a wakeup that could land on another, idle CPU. Windows pipes cannot be polled: stdout
/// is read on a second thread there.
pub fn read_both(
    stdout: std::process::ChildStdout,
    stderr: std::process::ChildStderr,
    mut on_stderr: impl FnMut(usize, &[u8]),
) -> io::Result<(Vec<u8>, Vec<u8>)> {
    use std::io::Read;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        let (mut stdout, mut stderr) = (stdout, stderr);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut chunk = vec![0u8; 16 * 1024];
        let mut fds = [
            libc::pollfd {
                fd: stdout.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stderr.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // A negative descriptor is one `poll` skips: that pipe has ended.
        while fds.iter().any(|fd| fd.fd >= 0) {
            // SAFETY: two valid pollfd structs; the descriptors live as long as the pipes.
            if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for (index, fd) in fds.iter_mut().enumerate() {
                if fd.fd < 0 || fd.revents == 0 {
                    continue;
                }
                // Readable, hung up or in error: a read does not block and tells which.
                let pipe: &mut dyn Read = if index == 0 { &mut stdout } else { &mut stderr };
                match pipe.read(&mut chunk) {
                    Ok(0) => fd.fd = -1,
                    Ok(n) if index == 0 => out.extend_from_slice(&chunk[..n]),
                    Ok(n) => {
                        err.extend_from_slice(&chunk[..n]);
                        on_stderr(err.len(), &chunk[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((out, err))
    }
    #[cfg(not(unix))]
    {
        let mut stdout = stdout;
        let out_reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            stdout.read_to_end(&mut out).map(|_| out)
        });
        let mut stderr = stderr;
        let mut err = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        let read_err = loop {
            match stderr.read(&mut chunk) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    err.extend_from_slice(&chunk[..n]);
                    on_stderr(err.len(), &chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let out = out_reader
            .join()
            .map_err(|_| io::Error::other("the stdout reader panicked"))??;
        read_err.map(|()| (out, err))
    }
}

#[cfg(all(test, unix))] // the child is a shell script
mod read_both_tests {
    use std::process::{Command, Stdio};

    #[test]
    fn stdout_and_stderr_are_read_together_to_their_ends() {
        let script = "i=0; while [ $i -lt 400 ]; do \
            printf 'out %04d %0200d\\n' $i 0; printf 'err %04d %0200d\\n' $i 0 >&2; \
            i=$((i+1)); done; exit 3";
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let mut pieces = Vec::new();
        let mut lengths = Vec::new();
        let (out, err) = super::read_both(stdout, stderr, |so_far, piece| {
            pieces.extend_from_slice(piece);
            lengths.push(so_far);
        })
        .unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(3));
        let line = |kind: &str, i: usize| format!("{kind} {i:04} {:0200}\n", 0);
        let expected_out: String = (0..400).map(|i| line("out", i)).collect();
        let expected_err: String = (0..400).map(|i| line("err", i)).collect();
        assert_eq!(String::from_utf8(out).unwrap(), expected_out);
        assert_eq!(String::from_utf8(err.clone()).unwrap(), expected_err);
        assert_eq!(pieces, err, "every piece of stderr was handed on, in order");
        assert!(lengths.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(lengths.last(), Some(&err.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_grows_with_memory_touched() {
        let before = resident_bytes().expect("the OS reports resident memory");
        // 64 MiB written page by page: resident, not just reserved.
        let touched = vec![1u8; 64 << 20];
        let after = resident_bytes().unwrap();
        assert!(std::hint::black_box(&touched)[12345] == 1);
        assert!(
            after >= before + (48 << 20),
            "{before} bytes resident, then {after} after touching 64 MiB"
        );
    }

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
