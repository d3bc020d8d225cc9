//! Reaching the daemon: connect, or start it and connect. Used by the `zccache` command and
//! by the Python module (which names the daemon binary it ships with).

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};
use zccache_core::{CacheRoot, Config};
use zccache_ipc::Connection;
use zccache_protocol::PROTOCOL_VERSION;

/// How long a client waits for a daemon it started before compiling by itself.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Where this configuration's daemon listens.
pub struct Endpoint {
    pub root: CacheRoot,
    pub socket: PathBuf,
    idle_timeout: Option<Duration>,
    /// A gcc/clang the call is for: a daemon this client starts identifies it while it starts
    /// up, before the call arrives.
    compiler: Option<PathBuf>,
    /// The `zccache-daemon` to start; by default the one beside this executable, else on PATH.
    daemon: Option<PathBuf>,
}

impl Endpoint {
    pub fn new(config: &Config) -> Endpoint {
        let root = CacheRoot::new(&config.cache_dir);
        let socket = root.socket_path(PROTOCOL_VERSION);
        Endpoint {
            root,
            socket,
            idle_timeout: config.idle_timeout,
            compiler: None,
            daemon: None,
        }
    }

    /// Starts the daemon at `daemon` when one is needed (a library's host process is not
    /// installed beside it).
    pub fn with_daemon_binary(mut self, daemon: PathBuf) -> Endpoint {
        self.daemon = Some(daemon);
        self
    }

    /// Sends `request` (starting the daemon first if `start` and none runs) and reads its
    /// reply, within 60 s.
    pub fn request(
        &self,
        start: bool,
        request: &zccache_protocol::Request,
    ) -> Result<zccache_protocol::Response, String> {
        let connection = if start {
            self.connect_or_start()
        } else {
            self.connect()
        };
        let mut connection = connection.map_err(|e| e.to_string())?;
        connection
            .set_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        connection.call(request).map_err(|e| e.to_string())
    }

    /// Has a daemon that this endpoint starts identify the gcc/clang at `compiler` at once.
    pub fn identifying(mut self, compiler: &Path) -> Endpoint {
        self.compiler = Some(compiler.to_path_buf());
        self
    }

    /// True while a daemon holds this root's lock (it may be shutting down).
    pub fn daemon_holds_lock(&self) -> bool {
        let Ok(file) = std::fs::File::open(self.root.lock_path(PROTOCOL_VERSION)) else {
            return false;
        };
        zccache_core::try_lock_exclusive(&file).is_err()
    }

    /// Stops a running daemon and waits until it has let go of the cache (so a following
    /// start gets a new one, and its index may be read or replaced); false when none answered.
    pub fn stop_daemon(&self) -> bool {
        let Ok(mut connection) = self.connect() else {
            return false;
        };
        if connection
            .set_timeout(Some(Duration::from_secs(60)))
            .is_err()
            || connection
                .call::<zccache_protocol::Request, zccache_protocol::Response>(
                    &zccache_protocol::Request::Shutdown,
                )
                .is_err()
        {
            return false;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.daemon_holds_lock() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Connects to a running daemon.
    pub fn connect(&self) -> io::Result<Connection> {
        Connection::connect(&self.socket)
    }

    /// Connects, starting the daemon first if none is running. Concurrent clients serialize on
    /// a spawn lock so that one of them starts it and the others wait for it.
    pub fn connect_or_start(&self) -> io::Result<Connection> {
        if let Ok(connection) = self.connect() {
            return Ok(connection);
        }
        self.start()
    }

    /// Sends an encoded request to the daemon, started if none runs, and reads its first reply.
    /// A daemon that hangs up before any reply (one killed a moment ago: its listener still
    /// takes connections until its last thread is gone) is replaced once and asked again.
    pub fn call_encoded<Resp: for<'de> serde::Deserialize<'de>>(
        &self,
        frame: &[u8],
    ) -> io::Result<(Connection, io::Result<Resp>)> {
        let mut connection = self.connect_or_start()?;
        let reply = connection.call_encoded(frame);
        if matches!(&reply, Err(e) if hung_up(e)) {
            self.await_compilers_of(&connection);
            let mut fresh = self.start()?;
            let reply = fresh.call_encoded(frame);
            if reply.is_err() {
                self.await_compilers_of(&fresh);
            }
            return Ok((fresh, reply));
        }
        if reply.is_err() {
            self.await_compilers_of(&connection);
        }
        Ok((connection, reply))
    }

    /// For a call whose daemon went away before answering it: waits until every compiler that
    /// daemon started has exited. One may still be writing this call's outputs, and the
    /// object a build links must not be rewritten (or truncated for a moment) after the
    /// client has returned, nor be read half-written by another daemon storing its own
    /// compile of it. A daemon still running only dropped this call and is not waited for.
    pub fn await_compilers_of(&self, connection: &Connection) {
        let Some(pid) = connection.peer_pid() else {
            return;
        };
        let path = self.root.compilers_lock_path(pid);
        if zccache_platform::fs::this_process_holds_open(&path) {
            // This client runs under that daemon (a tool it started calls zccache): the lock
            // is partly this client's own, and its parent waits for it.
            return;
        }
        let Ok(lock) = std::fs::File::open(&path) else {
            // No lock: the daemon is older than it, or its compilers are gone already.
            return;
        };
        let started = Instant::now();
        let mut told = false;
        let mut daemon_checked = false;
        loop {
            match zccache_core::try_lock_exclusive(&lock) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&path);
                    return;
                }
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return,
                Err(_) => {}
            }
            let waited = started.elapsed();
            // A killed daemon shows as running until its last thread is gone. Asked once
            // only: later, its pid may belong to another process.
            if !daemon_checked && waited >= DAEMON_EXIT_GRACE {
                daemon_checked = true;
                if zccache_core::process_is_running(pid) {
                    return;
                }
            }
            if waited >= COMPILERS_WAIT {
                return;
            }
            if !told && waited >= Duration::from_secs(2) {
                eprintln!(
                    "zccache: the daemon (pid {pid}) went away during the compile; waiting for \
                     the compilers it started to finish"
                );
                told = true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts a daemon unless one appeared meanwhile, and connects to it.
    fn start(&self) -> io::Result<Connection> {
        self.root
            .ensure()
            .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e.to_string()))?;
        let lock = zccache_platform::fs::private_file_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.path().join("spawn.lock"))?;
        // Released when `lock` is dropped. A failure to lock only means two clients may
        // both start a daemon; the daemon's own lock keeps all but one from serving.
        let _ = zccache_core::lock_exclusive(&lock);
        if let Ok(connection) = self.connect() {
            return Ok(connection);
        }
        let mut daemon = spawn_daemon(
            self.daemon.clone().unwrap_or_else(daemon_executable),
            &self.root,
            self.idle_timeout,
            self.compiler.as_deref(),
        )?;
        let deadline = Instant::now() + START_TIMEOUT;
        if let Some(ready) = daemon.stdout.take() {
            zccache_core::detach::wait_until_ready(ready, deadline);
        }
        let mut pause = Duration::from_millis(1);
        loop {
            match self.connect() {
                Ok(connection) => return Ok(connection),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    // The daemon died (crashed, killed, or found another one serving): one
                    // last try, then compile without it rather than wait out the timeout.
                    if let Ok(Some(status)) = daemon.try_wait() {
                        if matches!(status.code(), Some(MISMATCH_EXIT | USAGE_EXIT)) {
                            return Err(self.daemon_mismatch(status));
                        }
                        std::thread::sleep(Duration::from_millis(5));
                        return self.connect().map_err(|_| {
                            io::Error::new(e.kind(), format!("the daemon exited ({status})"))
                        });
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
            }
        }
    }
}

/// How long a client waits for the compilers of a daemon that went away (they can hold the
/// lock longer only by leaving a background process of their own behind).
const COMPILERS_WAIT: Duration = Duration::from_secs(120);

/// How long a daemon that hung up may still show as running while it is being torn down.
const DAEMON_EXIT_GRACE: Duration = Duration::from_millis(200);

/// The daemon closed the connection before its first reply.
fn hung_up(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// How `zccache-daemon` exits when asked for another protocol version than its own (older
/// daemons, which do not know `--protocol`, exit with the usage code instead).
const MISMATCH_EXIT: i32 = 3;
const USAGE_EXIT: i32 = 2;

/// Name of the file in the cache root that says the daemon binary does not match the client.
pub const MISMATCH_NOTE: &str = "daemon-mismatch";

impl Endpoint {
    /// The daemon binary refused this client's protocol: say so once (the note's creation
    /// decides who prints), keep the reason for `status`, and let the caller compile directly.
    fn daemon_mismatch(&self, status: std::process::ExitStatus) -> io::Error {
        let exe = daemon_executable();
        let message = format!(
            "{} does not speak this zccache's protocol (version {PROTOCOL_VERSION}; it exited \
             with {status}): compiling without the cache. Install zccache and zccache-daemon \
             from the same build.",
            exe.display()
        );
        let note = self.root.path().join(MISMATCH_NOTE);
        let first = zccache_platform::fs::private_file_options()
            .write(true)
            .create_new(true)
            .open(&note)
            .and_then(|mut file| io::Write::write_all(&mut file, message.as_bytes()))
            .is_ok();
        if first {
            eprintln!("zccache: {message}");
        }
        io::Error::new(io::ErrorKind::Unsupported, message)
    }
}

/// `status --json`'s object for a running daemon: the report, `running` and `hit_rate`.
pub fn status_json(report: &zccache_protocol::StatusReport) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("running".into(), true.into());
        map.insert("hit_rate".into(), report.hit_rate().into());
    }
    value
}

/// `status --json`'s object when no daemon answers: why none can run there, if known.
pub fn not_running_json(endpoint: &Endpoint) -> serde_json::Value {
    serde_json::json!({
        "running": false,
        "cache_root": endpoint.root.path().display().to_string(),
        "problem": not_running_problem(endpoint),
    })
}

/// Why no daemon can run for `endpoint`: the root is unusable, or the daemon binary is of
/// another build.
pub fn not_running_problem(endpoint: &Endpoint) -> Option<String> {
    endpoint
        .root
        .path()
        .exists()
        .then(|| endpoint.root.ensure().err())
        .flatten()
        .map(|e| e.to_string())
        .or_else(|| mismatch_problem(&endpoint.root))
}

/// `session-stats --json`'s object: the report and `hit_rate`.
pub fn session_json(report: &zccache_protocol::SessionReport) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap_or_default();
    value["hit_rate"] = report.hit_rate().into();
    value
}

/// Why the daemon binary could not serve this client, if a client found out.
pub fn mismatch_problem(root: &CacheRoot) -> Option<String> {
    std::fs::read_to_string(root.path().join(MISMATCH_NOTE)).ok()
}

/// Starts `zccache-daemon` detached (see [`zccache_core::detach::spawn_detached`]).
fn spawn_daemon(
    exe: PathBuf,
    root: &CacheRoot,
    idle_timeout: Option<Duration>,
    compiler: Option<&Path>,
) -> io::Result<Child> {
    let idle = idle_timeout.map(|d| d.as_secs().max(1)).unwrap_or(0);
    let mut args = vec![
        OsStr::new("--cache-dir").to_os_string(),
        root.path().as_os_str().to_os_string(),
        "--idle-timeout".into(),
        idle.to_string().into(),
        "--protocol".into(),
        PROTOCOL_VERSION.to_string().into(),
        "--notify-ready".into(),
    ];
    if let Some(compiler) = compiler {
        args.push("--identify".into());
        args.push(compiler.as_os_str().to_os_string());
    }
    zccache_core::detach::spawn_detached(&exe, args)
}

/// `zccache-daemon` beside this executable, else on PATH.
fn daemon_executable() -> PathBuf {
    zccache_core::detach::sibling_executable("zccache-daemon")
}

/// Prints `error` as zccache's and gives the exit code of a failed command.
pub fn fail(error: impl std::fmt::Display) -> i32 {
    eprintln!("zccache: {error}");
    1
}
