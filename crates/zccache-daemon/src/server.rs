//! Daemon lifecycle: lock, socket, accepting threads, idle exit, shutdown.

use crate::journal::Journal;
use crate::session::{Lookup, Sessions};
use crate::{Daemon, Stats, Toolchains};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zccache_artifact::Store;
use zccache_core::CacheRoot;
use zccache_fscache::FsCache;
use zccache_ipc::{Listener, ServerConnection};
use zccache_protocol::{Request, Response, SessionStartRequest, StatusReport, PROTOCOL_VERSION};

/// How the daemon was asked to run.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub cache_dir: PathBuf,
    /// `None`: never exit for idleness.
    pub idle_timeout: Option<Duration>,
    /// The store's size limit in bytes.
    pub max_size: u64,
    /// How long an abandoned session lingers (see `session.rs`).
    pub session_timeout: Duration,
    /// Size at which the compile journal is rotated; 0 turns it off.
    pub journal_max_size: u64,
    /// Write one byte to stdout (a pipe from the client that started this daemon) once the
    /// socket accepts connections, then close it: the client waits for that instead of polling.
    pub notify_ready: bool,
    /// A gcc/clang to identify at once, beside the start-up, with this process's environment:
    /// the client that started the daemon is about to send a call for it (and passed on its
    /// environment). A new daemon's first call otherwise waited ~3-4 ms for that probe.
    pub identify: Option<PathBuf>,
}

/// Runs the daemon until it is stopped or idle. Returns the process exit code. When another
/// daemon already serves this root, returns 0 at once.
pub fn run(options: DaemonOptions) -> i32 {
    let root = CacheRoot::new(&options.cache_dir);
    if let Err(e) = root.ensure() {
        eprintln!("zccache-daemon: {e}");
        return 2;
    }
    let lock_path = root.lock_path(PROTOCOL_VERSION);
    let lock = match zccache_platform::fs::private_file_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
    {
        Ok(file) => file,
        Err(e) => {
            eprintln!("zccache-daemon: {}: {e}", lock_path.display());
            return 2;
        }
    };
    if !take_lock(&lock, &root.socket_path(PROTOCOL_VERSION)) {
        // Another daemon holds the lock and serves this root.
        return 0;
    }
    init_logging(&root);
    let compilers_lock = hold_compilers_lock(&root);
    let output_mode = 0o666 & !zccache_platform::fs::umask();
    let remote = crate::remote::open(&root);
    let daemon = Arc::new(Daemon {
        root: root.clone(),
        store: Default::default(),
        // Checked before the store opens (and creates it); one daemon per root creates it.
        index_was_absent: !root.index_path().exists(),
        fs: file_cache(&root),
        toolchains: Toolchains::default(),
        analysis: Default::default(),
        derived_shadows: Default::default(),
        verified: Default::default(),
        stats: Stats::default(),
        sessions: Sessions::new(options.session_timeout, output_mode),
        journal: Journal::start(&root, options.journal_max_size),
        fresh: Default::default(),
        pending: Default::default(),
        store_queue: crate::pending::StoreQueue::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        ),
        evicting: Default::default(),
        started: Instant::now(),
        output_mode,
        scratch: match root.ensure_scratch_dir(PROTOCOL_VERSION) {
            Some(dir) => crate::scratch::ScratchFiles::new(dir, true),
            None => crate::scratch::ScratchFiles::new(root.tmp_dir(), false),
        },
        fp_trees: Default::default(),
        remote: remote.0,
        remote_problem: remote.1,
    });
    if let Some(compiler) = options.identify.clone() {
        identify_at_start(&daemon, compiler);
    }
    // The store opens beside the first requests (see `Daemon::store`); what a killed
    // predecessor left half-written is then cleaned up, off the request path.
    let opening = daemon.clone();
    let max_size = options.max_size;
    let started_at = std::time::SystemTime::now();
    let opened = std::thread::Builder::new()
        .name("zccache-store".into())
        .spawn(move || {
            hold_store_back_for_tests();
            if opening.index_was_absent {
                // Creating an index costs a few ms of CPU that a new cache's first compiles,
                // which do not wait for it, need more on a machine with few cores.
                yield_cpu_to_requests();
            }
            // Requests wait for the outcome, so there must be one even if opening panics.
            let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                open_store(&opening.root, output_mode, max_size)
            }))
            .unwrap_or_else(|_| crate::OpenedStore {
                store: None,
                problem: Some("cache store unavailable: opening it failed".into()),
            });
            let _ = opening.store.set(opened);
            if let Some(store) = opening.store() {
                if let Err(e) = store.repair(started_at) {
                    tracing::warn!("store repair failed: {e}");
                }
                if let Err(e) = store.make_fanout_dirs() {
                    tracing::warn!("cache store: {e}");
                }
            }
            remove_stale_compilers_locks(&opening.root);
        });
    if opened.is_err() {
        let _ = daemon
            .store
            .set(open_store(&root, output_mode, options.max_size));
    }
    // Entries are committed unsynced; they reach the disk together once the store is quiet
    // (see `sync_is_due`).
    let syncing = daemon.clone();
    let _ = std::thread::Builder::new()
        .name("zccache-sync".into())
        .spawn(move || loop {
            std::thread::sleep(SYNC_CHECK);
            if let Some(store) = syncing.store() {
                if store.unsynced_age().is_some_and(sync_is_due) {
                    syncing.sync_store();
                }
            }
        });
    let socket = root.socket_path(PROTOCOL_VERSION);
    let exiting = daemon.clone();
    let code = serve(daemon, &socket, options.idle_timeout, options.notify_ready);
    // Results stored after their reply, then their uploads (within a time limit).
    exiting.pending.wait_all();
    if let Some(remote) = &exiting.remote {
        let left = remote.flush(Duration::from_secs(5));
        if left > 0 {
            tracing::warn!("{left} remote uploads abandoned at exit");
        }
    }
    let _ = std::fs::remove_file(&socket);
    exiting.scratch.remove_unused();
    if let Some(file) = compilers_lock {
        // A compile that outlasted the drain still holds it, for its client to wait on; the
        // next daemon removes it then.
        drop(file);
        remove_unless_held(&root.compilers_lock_path(std::process::id()));
    }
    tracing::info!("daemon exiting");
    drop(lock);
    code
}

/// Lowers the calling thread's CPU priority to the lowest (nice 19); it still runs, at a
/// small share, on a machine every core of which is busy.
fn yield_cpu_to_requests() {
    if let Err(e) = zccache_platform::process::set_thread_nice(19) {
        tracing::debug!("cannot lower the store opener's priority: {e}");
    }
}

/// `ZCCACHE_TEST_STORE_GATE`: tests hold the store's opening back while the file it names
/// exists, to see what calls do meanwhile.
fn hold_store_back_for_tests() {
    if let Some(gate) = std::env::var_os("ZCCACHE_TEST_STORE_GATE") {
        while Path::new(&gate).exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Tells a test holding the store back (`ZCCACHE_TEST_STORE_GATE`) that a result's inputs
/// have been checked and its store is waiting for the index: `<gate>.waiting` appears.
pub(crate) fn note_store_wait_for_tests() {
    if let Some(gate) = std::env::var_os("ZCCACHE_TEST_STORE_GATE") {
        let mut waiting = gate;
        waiting.push(".waiting");
        let _ = std::fs::write(waiting, "");
    }
}

/// Identifies the compiler the starting client named, on a thread of its own; the first call
/// for it waits for this probe instead of running another (see `Toolchains::identify`).
fn identify_at_start(daemon: &Arc<Daemon>, compiler: PathBuf) {
    let daemon = daemon.clone();
    let _ = std::thread::Builder::new()
        .name("zccache-probe".into())
        .spawn(move || {
            let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
            if let Err(why) =
                daemon
                    .toolchains
                    .identify(&daemon.fs, &compiler, &env, daemon.fs.sync())
            {
                tracing::debug!("start-up probe of {}: {why}", compiler.display());
            }
        });
}

/// Opens the store, first stopping the daemons of older zccache versions that hold it.
fn open_store(root: &CacheRoot, output_mode: u32, max_size: u64) -> crate::OpenedStore {
    let stopped = stop_older_daemons(root);
    let (store, store_problem) = match Store::open(root, output_mode) {
        Ok(store) => {
            store.set_max_bytes(max_size);
            store.set_manifest_budget(manifest_budget());
            (Some(store), None)
        }
        Err(e) => {
            let message = format!(
                "cache store unavailable, compiling uncached: {e} (if another zccache version \
                 serves this cache, stop it or let it idle out)"
            );
            tracing::error!("{message}");
            (None, Some(message))
        }
    };
    let store_problem = store_problem.or_else(|| {
        (!stopped.is_empty()).then(|| {
            format!(
                "stopped the daemon of an older zccache (protocol {}) that was using this cache",
                stopped
                    .iter()
                    .map(|v| format!("v{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    });
    crate::OpenedStore {
        store,
        problem: store_problem,
    }
}

/// Bytes of manifests kept in memory: `ZCCACHE_MEMO_MB` (MiB, at least 1), else the store's
/// default. Past it the least recently used are read back from the index when needed.
fn manifest_budget() -> usize {
    std::env::var("ZCCACHE_MEMO_MB")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map(|mb| mb.max(1) << 20)
        .unwrap_or(zccache_artifact::DEFAULT_MANIFEST_BUDGET)
}

/// The file cache, with a file watcher where the platform has one on by default, or with
/// `ZCCACHE_WATCH=1`; `ZCCACHE_WATCH=0` turns it off.
/// `ZCCACHE_TEST_WATCH_DELAY_MS` holds the watcher's own thread back, for tests: requests
/// read the events they depend on themselves.
fn file_cache(root: &CacheRoot) -> FsCache {
    let on = match std::env::var("ZCCACHE_WATCH").as_deref() {
        Ok("0" | "off" | "no") => false,
        Ok("1" | "on" | "yes") => true,
        _ => zccache_fscache::WATCHER_ON_BY_DEFAULT,
    };
    if !on {
        return FsCache::new();
    }
    let delay = std::env::var("ZCCACHE_TEST_WATCH_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or_default();
    FsCache::with_watcher(delay, &root.watch_barrier_dir())
}

/// Asks daemons of older protocol versions serving this root to stop, so this one can use
/// the index (only one process can hold it). Returns the versions asked.
fn stop_older_daemons(root: &CacheRoot) -> Vec<u16> {
    let mut stopped = Vec::new();
    for version in 1..PROTOCOL_VERSION {
        let socket = root.socket_path(version);
        let Ok(mut connection) = zccache_ipc::Connection::connect(&socket) else {
            continue;
        };
        let _ = connection.set_timeout(Some(Duration::from_secs(2)));
        // Its reply (in its own format) means it is stopping; the index follows shortly.
        if connection
            .exchange_raw(&zccache_protocol::shutdown_frame(version), &mut [0u8; 64])
            .is_ok()
        {
            tracing::warn!(
                "asked the daemon for protocol v{version} at {} to stop: this cache is now served \
                 by protocol v{PROTOCOL_VERSION}",
                socket.display()
            );
            stopped.push(version);
        }
    }
    stopped
}

/// Takes this daemon's share of its compilers lock ([`CacheRoot::compilers_lock_path`]) on a
/// descriptor every process it starts inherits: a compiler outlives a killed daemon and may
/// still be writing its caller's outputs, and the client waits for the lock before it
/// compiles them itself. Nothing is done per compile.
fn hold_compilers_lock(root: &CacheRoot) -> Option<std::fs::File> {
    let path = root.compilers_lock_path(std::process::id());
    let file = match zccache_platform::fs::private_file_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) => {
            tracing::warn!("{}: {e}", path.display());
            return None;
        }
    };
    if let Err(e) = zccache_platform::lock::hold_shared_for_children(&file) {
        tracing::warn!("{}: cannot hold it for compilers: {e}", path.display());
        let _ = std::fs::remove_file(&path);
        return None;
    }
    Some(file)
}

/// Removes the compilers locks of daemons that are gone and whose compilers have all exited.
fn remove_stale_compilers_locks(root: &CacheRoot) {
    let own = std::process::id();
    for entry in std::fs::read_dir(root.path())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("compilers-")?.strip_suffix(".lock"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own || zccache_core::process_is_running(pid) {
            continue;
        }
        remove_unless_held(&entry.path());
    }
}

/// Removes the compilers lock at `path` unless a process still holds it.
fn remove_unless_held(path: &Path) {
    let Ok(file) = std::fs::File::open(path) else {
        return;
    };
    if zccache_core::try_lock_exclusive(&file).is_ok() {
        let _ = std::fs::remove_file(path);
    }
}

/// How long a starting daemon waits for the lock of one that is still going away.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Takes the per-root lock. While it is held by a daemon that does not answer on the socket
/// (one that crashed or was killed and whose threads are still being torn down, which keeps
/// its descriptors open for a moment), waits for it instead of leaving the client without a
/// daemon.
fn take_lock(lock: &std::fs::File, socket: &Path) -> bool {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        // The lock lives as long as `lock`.
        if zccache_core::try_lock_exclusive(lock).is_ok() {
            return true;
        }
        if answers_ping(socket) || Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a daemon answers on `socket`. Connecting is not enough: the listener of a daemon
/// whose threads are still being torn down takes connections into its backlog, and no one
/// will ever answer them.
fn answers_ping(socket: &Path) -> bool {
    let Ok(mut connection) = zccache_ipc::Connection::connect(socket) else {
        return false;
    };
    if connection.set_timeout(Some(PING_TIMEOUT)).is_err() {
        return false;
    }
    matches!(
        connection.call::<Request, Response>(&Request::Ping),
        Ok(Response::Pong { .. })
    )
}

/// How long a starting daemon waits for another one to answer a ping.
const PING_TIMEOUT: Duration = Duration::from_millis(500);

fn init_logging(root: &CacheRoot) {
    let Ok(file) = zccache_platform::fs::private_file_options()
        .create(true)
        .append(true)
        .open(root.daemon_log_path())
    else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZCCACHE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}

/// How long a connected client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `status` waits for queued remote uploads before it reports the counters.
const STATUS_UPLOAD_WAIT: Duration = Duration::from_secs(2);

/// How often the sync thread looks for entries to make durable.
const SYNC_CHECK: Duration = Duration::from_millis(250);

/// How long the store must have had no new entry before the entries not yet on disk are synced.
const SYNC_QUIET: Duration = Duration::from_millis(500);

/// How long an entry may stay unsynced during a build that never pauses.
const SYNC_MAX_DELAY: Duration = Duration::from_secs(15);

/// Whether to sync now, given how long ago the oldest and the newest unsynced entry were
/// committed. A sync ends in a flush of the disk, which a virtual disk may serve by flushing
/// the host's file, and the compiler's own writes (and, on a disk mounted `discard`, its
/// truncation of the object it replaces) wait behind it: a flush every 250 ms during a build
/// once held a cold gcc build up for half a second. So entries are synced when the store has
/// been quiet for a moment, and during a build that never pauses, every `SYNC_MAX_DELAY`. A
/// daemon killed before then loses those entries (never the index's consistency); `status`
/// and a stopping daemon sync at once.
fn sync_is_due((oldest, newest): (Duration, Duration)) -> bool {
    newest >= SYNC_QUIET || oldest >= SYNC_MAX_DELAY
}

/// How long a stopping daemon waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the accepting threads and the lifecycle loop share.
struct Activity {
    /// Threads waiting in `accept`.
    idle_acceptors: AtomicUsize,
    /// Requests being handled.
    in_flight: AtomicUsize,
    /// Milliseconds since start when the last request finished.
    last_ms: AtomicU64,
    stop: AtomicBool,
}

/// How long the daemon is quiet before it hands freed memory back to the OS.
const QUIET_BEFORE_TRIM_MS: u64 = 2000;

/// Serves until stopped, idle, or the socket disappears. Requests are handled by a pool of
/// threads that each wait in `accept`: the kernel wakes one of them per client, and it reads,
/// handles and replies without handing the work to another thread. The pool grows so that one
/// thread is always waiting, however many compiles run.
fn serve(
    daemon: Arc<Daemon>,
    socket: &Path,
    idle_timeout: Option<Duration>,
    notify_ready: bool,
) -> i32 {
    let listener = match Listener::bind(socket) {
        Ok(listener) => Arc::new(listener),
        Err(e) => {
            tracing::error!("cannot bind {}: {e}", socket.display());
            return 2;
        }
    };
    if notify_ready {
        // Connections queue from here on, even before the first accept.
        // SAFETY: plain writes and descriptor moves on this process's own stdout.
        unsafe {
            libc::write(1, b"r".as_ptr().cast(), 1);
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            if null >= 0 {
                libc::dup2(null, 1);
                libc::close(null);
            }
        }
    }
    tracing::info!(
        "zccache-daemon {} (pid {}) serving {}",
        zccache_core::VERSION,
        std::process::id(),
        socket.display()
    );
    warn_if_scanned(&daemon.root);
    let activity = Arc::new(Activity {
        idle_acceptors: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        last_ms: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    for _ in 0..2 {
        spawn_acceptor(&daemon, &listener, &activity);
    }
    let mut ticks: u64 = 0;
    // The activity stamp at the last trim: memory is handed back once per quiet spell.
    let mut trimmed_at = 0;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        ticks += 1;
        if activity.stop.load(Ordering::SeqCst) {
            tracing::info!("shutdown requested");
            break;
        }
        if ticks.is_multiple_of(10) {
            daemon.expire_sessions();
            // Quiet for a while after requests: what they freed goes back to the OS, off the
            // request path.
            let last = activity.last_ms.load(Ordering::SeqCst);
            let now = daemon.started.elapsed().as_millis() as u64;
            if last != trimmed_at
                && now.saturating_sub(last) >= QUIET_BEFORE_TRIM_MS
                && activity.in_flight.load(Ordering::SeqCst) == 0
            {
                trimmed_at = last;
                zccache_platform::process::release_free_memory();
            }
        }
        if let Some(limit) = idle_timeout.filter(|_| !daemon.sessions.any_open()) {
            let now = daemon.started.elapsed().as_millis() as u64;
            let idle = now.saturating_sub(activity.last_ms.load(Ordering::SeqCst));
            if activity.in_flight.load(Ordering::SeqCst) == 0 && idle >= limit.as_millis() as u64 {
                tracing::info!("idle for {idle} ms, exiting");
                break;
            }
        }
        if !Listener::still_reachable(socket) {
            tracing::warn!("socket {} was removed, exiting", socket.display());
            break;
        }
        // Where the endpoint cannot be removed (a named pipe), a removed cache root says the
        // same; it is checked once a second.
        if ticks.is_multiple_of(10) && !daemon.root.path().exists() {
            tracing::warn!(
                "cache root {} was removed, exiting",
                daemon.root.path().display()
            );
            break;
        }
    }
    activity.stop.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while activity.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Stores queued after a reply finish too, so the cache keeps what was compiled.
    daemon.pending.wait_all();
    daemon.sync_store();
    daemon.journal.barrier();
    0
}

/// Where Defender scans what the cache writes (Windows), says once that the root is not
/// excluded, on stderr and in the log, from a thread of its own (PowerShell takes a second
/// to answer). `ZCCACHE_QUIET=1` silences it.
fn warn_if_scanned(root: &CacheRoot) {
    if !zccache_platform::defender::APPLIES
        || std::env::var_os("ZCCACHE_QUIET").is_some_and(|v| v == "1")
    {
        return;
    }
    let dir = root.path().to_path_buf();
    let _ = std::thread::Builder::new()
        .name("zccache-defender".into())
        .spawn(move || match zccache_platform::defender::check(&dir) {
            Ok(zccache_platform::defender::Exclusion::NotExcluded) => {
                let message = format!(
                    "zccache: warning: Windows Defender scans every file written under {} (run `zccache defender-exclusions add` from an elevated shell; ZCCACHE_QUIET=1 silences this)",
                    dir.display()
                );
                eprintln!("{message}");
                tracing::warn!("{message}");
            }
            Ok(state) => tracing::info!("Defender exclusion of {}: {state:?}", dir.display()),
            Err(e) => tracing::info!("cannot check Defender's exclusions: {e}"),
        });
}

/// Starts one more thread waiting for clients.
fn spawn_acceptor(daemon: &Arc<Daemon>, listener: &Arc<Listener>, activity: &Arc<Activity>) {
    let (daemon, listener, activity) = (daemon.clone(), listener.clone(), activity.clone());
    activity.idle_acceptors.fetch_add(1, Ordering::SeqCst);
    let spawned = std::thread::Builder::new()
        .name("zccache-conn".into())
        .spawn({
            let activity = activity.clone();
            move || acceptor(daemon, listener, activity)
        });
    if spawned.is_err() {
        activity.idle_acceptors.fetch_sub(1, Ordering::SeqCst);
    }
}

fn acceptor(daemon: Arc<Daemon>, listener: Arc<Listener>, activity: Arc<Activity>) {
    loop {
        let accepted = listener.accept();
        if activity.idle_acceptors.fetch_sub(1, Ordering::SeqCst) == 1 {
            // This was the last waiting thread: start another before handling.
            spawn_acceptor(&daemon, &listener, &activity);
        }
        match accepted {
            Ok(connection) => {
                activity.in_flight.fetch_add(1, Ordering::SeqCst);
                handle_connection(&daemon, connection, &activity);
                activity.last_ms.store(
                    daemon.started.elapsed().as_millis() as u64,
                    Ordering::SeqCst,
                );
                activity.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Keep a few threads waiting; let the rest of a burst's threads end.
        if activity.idle_acceptors.load(Ordering::SeqCst) >= 4 {
            return;
        }
        activity.idle_acceptors.fetch_add(1, Ordering::SeqCst);
    }
}

fn handle_connection(daemon: &Arc<Daemon>, mut connection: ServerConnection, activity: &Activity) {
    loop {
        let request: Request = match connection.read_request(REQUEST_TIMEOUT) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("bad request: {e}");
                let _ = connection.reply(&Response::Error(e.to_string()));
                return;
            }
        };
        if activity.stop.load(Ordering::SeqCst) {
            // Stopping: the client compiles by itself.
            let _ = connection.reply(&Response::Error("daemon is stopping".into()));
            return;
        }
        let shutdown = matches!(request, Request::Shutdown);
        // The threads this request hands work to are woken once the reply is out.
        let held_wakes = crate::after_reply::hold_wakes();
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            daemon.handle(request, &connection)
        }));
        let response = handled.unwrap_or_else(|_| {
            tracing::error!("request handler panicked");
            daemon.stats.error();
            Response::Error("internal error".into())
        });
        let replied = connection.reply(&response);
        drop(held_wakes);
        if replied.is_err() {
            return;
        }
        if shutdown {
            activity.stop.store(true, Ordering::SeqCst);
            return;
        }
    }
}

/// The message for an id that names no session this daemon knows.
fn unknown_session(id: &str) -> String {
    format!(
        "unknown session {id:?}: it was never started, already ended, or started under another \
         daemon (the daemon restarts after an upgrade or a crash)"
    )
}

impl Daemon {
    fn handle(self: &Arc<Self>, request: Request, connection: &ServerConnection) -> Response {
        match request {
            Request::Compile(compile) => self.compile(compile, Some(connection.sink())),
            Request::Status => Response::Status(self.status()),
            Request::Ping => Response::Pong {
                version: zccache_core::VERSION.to_string(),
                pid: std::process::id(),
            },
            Request::Clear => match self.store() {
                Some(store) => match store.clear() {
                    Ok(()) => Response::Done,
                    Err(e) => Response::Error(e.to_string()),
                },
                None => Response::Error("store unavailable".into()),
            },
            Request::Shutdown => Response::Done,
            Request::SessionStart(start) => self.session_start(&start),
            Request::SessionStats { id } => self.session_stats(&id),
            Request::SessionEnd { id } => self.session_end(&id),
            Request::Inspect(call) => self.inspect(call),
            Request::InspectSource { path } => self.inspect_source(&path),
            Request::FpCheck(check) => self.fp_check(&check),
        }
    }

    fn session_start(&self, request: &SessionStartRequest) -> Response {
        match self.sessions.start(request) {
            Ok(session) => Response::SessionStarted {
                id: session.id.clone(),
            },
            Err(message) => Response::Error(message),
        }
    }

    fn session_stats(&self, id: &str) -> Response {
        match self.sessions.lookup(id) {
            Lookup::Open(session) => {
                // Counters are exact once the stores in flight have finished.
                self.pending.wait_all();
                Response::Session(session.report(false, None))
            }
            Lookup::Expired(report) => Response::Session(*report),
            Lookup::Unknown => Response::Error(unknown_session(id)),
        }
    }

    fn session_end(&self, id: &str) -> Response {
        match self.sessions.take(id) {
            Lookup::Open(session) => {
                self.pending.wait_all();
                self.journal.barrier();
                self.sessions.close(&session);
                tracing::info!("session {id} ended");
                Response::Session(session.report(true, None))
            }
            Lookup::Expired(report) => Response::Session(*report),
            Lookup::Unknown => Response::Error(unknown_session(id)),
        }
    }

    /// Closes sessions whose build went away without ending them.
    fn expire_sessions(&self) {
        let expired = self.sessions.expire_abandoned();
        if expired.is_empty() {
            return;
        }
        self.journal.barrier();
        for session in expired {
            self.sessions.close(&session);
        }
    }

    /// Syncs the entries stored since the last sync.
    fn sync_store(&self) {
        if let Some(store) = self.store() {
            if let Err(e) = store.sync() {
                tracing::warn!("cannot sync the cache index: {e}");
            }
        }
    }

    fn status(&self) -> StatusReport {
        use std::sync::atomic::Ordering::Relaxed;
        // Counters are final once the stores in flight have finished, and the journal holds
        // every call counted; what `status` counts as stored is on disk.
        self.pending.wait_all();
        self.sync_store();
        self.journal.barrier();
        // And the uploads those stores queued, within a short limit (a slow remote's are
        // reported as they stand).
        if let Some(remote) = &self.remote {
            remote.flush(STATUS_UPLOAD_WAIT);
        }
        let (artifact_count, artifact_bytes) = self.store().map(|s| s.usage()).unwrap_or_default();
        let mut warnings: Vec<String> = match self.opened_store() {
            Some(opened) => opened.problem.iter().cloned().collect(),
            None => vec!["the cache store is still opening: compiles run uncached".into()],
        };
        if let Some(store) = self.store() {
            warnings.extend(store.warnings());
        }
        warnings.extend(self.remote_problem.iter().cloned());
        if let Some(problem) = self.remote.as_ref().and_then(|r| r.problem()) {
            warnings.push(problem);
        }
        StatusReport {
            version: zccache_core::VERSION.to_string(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            cache_root: self.root.path().display().to_string(),
            hits: self.stats.hits.load(Relaxed),
            worktree_hits: self.stats.worktree_hits.load(Relaxed),
            misses: self.stats.misses.load(Relaxed),
            not_stored: self.stats.not_stored_counts(),
            non_cacheable: self.stats.non_cacheable_counts(),
            worktree_fallbacks: self.stats.worktree_fallback_counts(),
            errors: self.stats.errors.load(Relaxed),
            time_saved_ms: self.stats.time_saved_ms.load(Relaxed),
            queries_answered: self.stats.queries_answered.load(Relaxed),
            queries_run: self.stats.queries_run.load(Relaxed),
            artifact_count,
            artifact_bytes,
            max_size: self.store().map(|s| s.max_bytes()).unwrap_or(0),
            evictions: self.store().map(|s| s.evictions()).unwrap_or(0),
            watching: self
                .fs
                .watch_counts()
                .map(|(dirs, files)| (dirs as u64, files as u64)),
            warnings,
            resident_bytes: zccache_platform::process::resident_bytes().unwrap_or(0),
            memos: self.memo_report(),
            ..self.remote_status()
        }
    }

    /// What the in-memory memos hold (see [`zccache_protocol::MemoReport`]).
    fn memo_report(&self) -> zccache_protocol::MemoReport {
        let manifests = self
            .store()
            .map(|s| s.manifest_memory())
            .unwrap_or_default();
        zccache_protocol::MemoReport {
            manifests: manifests.items as u64,
            manifest_bytes: manifests.bytes as u64,
            manifest_budget: manifests.budget as u64,
            manifests_dropped: manifests.dropped,
            file_digests: self.fs.digest_count() as u64,
            verified: self.verified.len() as u64,
            shadow_candidates: self.derived_shadows.len() as u64,
            shadow_candidate_bytes: self.derived_shadows.bytes() as u64,
        }
    }

    /// The remote tier's part of `status`.
    fn remote_status(&self) -> StatusReport {
        let Some(remote) = &self.remote else {
            return StatusReport::default();
        };
        let stats = remote.stats();
        StatusReport {
            remote: Some(remote.config().to_string()),
            remote_hits: self.stats.remote_hits.load(Ordering::Relaxed),
            remote_misses: self.stats.remote_misses.load(Ordering::Relaxed),
            remote_errors: stats.errors + stats.corrupt,
            remote_corrupt: stats.corrupt,
            remote_uploads: stats.uploads,
            remote_dropped: stats.dropped,
            remote_bytes_down: stats.bytes_down,
            remote_bytes_up: stats.bytes_up,
            remote_latency_us: stats.mean_latency_us,
            ..StatusReport::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_synced_once_the_store_is_quiet_or_after_the_longest_delay() {
        let ms = Duration::from_millis;
        // A build storing an entry every few milliseconds: no flush competes with it.
        assert!(!sync_is_due((ms(1000), ms(5))));
        assert!(!sync_is_due((ms(14_000), ms(100))));
        // Quiet for a moment: synced.
        assert!(sync_is_due((ms(600), SYNC_QUIET)));
        assert!(sync_is_due((SYNC_QUIET, SYNC_QUIET)));
        // A build that never pauses still gets its entries on disk.
        assert!(sync_is_due((SYNC_MAX_DELAY, ms(1))));
    }
}
