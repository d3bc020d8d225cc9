//! The download daemon: one per cache root, apart from the compiler-cache daemon, serving
//! `zccache download`, `zccache-download` and the Python module over its own socket.
//!
//! Why a daemon: several build steps (or several builds) often need the same toolchain or
//! SDK archive at once. Each asking for it through the daemon joins the one transfer running
//! for that destination instead of racing it; a later request for the same URL and path is
//! answered from the record of what was published, without touching the network; and a
//! long transfer outlives the process that asked for it (`get`, then `wait` from another).
//!
//! Threads, not async: a connection is a thread blocked on its socket, a transfer is a thread
//! running the engine (which brings its own tokio runtime for the HTTP work). There are a
//! handful of each, never thousands.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use zccache_core::CacheRoot;
use zccache_download_client::records::{self, Record, Stamp};
use zccache_download_client::{
    DaemonRequest, DaemonResponse, DownloadDaemonStatus, DownloadStatus, FetchRequest, FetchState,
    FetchStatus, Phase, StateKind, WaitMode, DOWNLOAD_PROTOCOL,
};
use zccache_ipc::{Listener, ServerConnection};

use crate::{ArchiveKind, DownloadRequest};

/// A finished transfer's status stays queryable this long.
const KEEP_FINISHED: Duration = Duration::from_secs(3600);
/// A connection that sends nothing for this long is dropped.
const CONNECTION_IDLE: Duration = Duration::from_secs(600);

/// How the daemon was started.
pub struct DaemonOptions {
    pub root: PathBuf,
    /// Write a byte to stdout once listening (the client that started it waits for it).
    pub notify_ready: bool,
    /// Exit after this long with no transfer and no client; `None`: never.
    pub idle_timeout: Option<Duration>,
}

/// One transfer (or unpacking) the daemon runs.
struct Transfer {
    request: FetchRequest,
    status: Mutex<DownloadStatus>,
    cancel: Arc<AtomicBool>,
    finished_at: Mutex<Option<Instant>>,
}

impl Transfer {
    fn snapshot(&self) -> DownloadStatus {
        lock(&self.status).clone()
    }

    fn is_running(&self) -> bool {
        !lock(&self.status).phase.is_terminal()
    }
}

#[derive(Default)]
struct Counters {
    started: u64,
    shared: u64,
    completed: u64,
    failed: u64,
    cached: u64,
    bytes_downloaded: u64,
}

#[derive(Default)]
struct State {
    next_id: u64,
    by_id: HashMap<u64, Arc<Transfer>>,
    /// Destination → the transfer writing it now.
    running: HashMap<PathBuf, u64>,
    counters: Counters,
    last_activity: Option<Instant>,
}

struct Daemon {
    root: CacheRoot,
    socket: PathBuf,
    started: Instant,
    state: Mutex<State>,
    /// Signalled whenever a transfer ends.
    ended: Condvar,
    connections: AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs the daemon until it is told to stop or stays idle past its timeout. Returns an error
/// (for the log and the exit code) when it cannot start: another daemon holds the root's
/// download lock, or the socket cannot be bound.
pub fn run(options: DaemonOptions) -> Result<(), String> {
    let root = CacheRoot::new(&options.root);
    let dir = root.download_dir();
    root.ensure()
        .and_then(|()| zccache_core::make_private_dir(&dir))
        .map_err(|e| e.to_string())?;
    let lock_path = dir.join("daemon.lock");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    if zccache_core::try_lock_exclusive(&lock_file).is_err() {
        return Err(format!(
            "another download daemon holds {}",
            lock_path.display()
        ));
    }
    // Default destinations live here; private like the rest of the root.
    zccache_core::make_private_dir(&dir.join("files")).map_err(|e| e.to_string())?;
    let socket = root.download_socket_path(DOWNLOAD_PROTOCOL);
    // A socket's directory (Unix); a named pipe lives in no directory of ours.
    if let Some(parent) = socket.parent().filter(|_| cfg!(unix)) {
        zccache_core::make_private_dir(parent).map_err(|e| e.to_string())?;
    }
    let listener = Listener::bind(&socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    // From here on, messages go to the log (a started daemon's stderr is /dev/null).
    redirect_stderr(&dir.join("daemon.log"));
    let daemon = Arc::new(Daemon {
        root,
        socket: socket.clone(),
        started: Instant::now(),
        state: Mutex::new(State {
            next_id: 1,
            last_activity: Some(Instant::now()),
            ..State::default()
        }),
        ended: Condvar::new(),
        connections: AtomicUsize::new(0),
    });
    log(&format!(
        "download daemon {} (pid {}) listening on {}",
        zccache_core::VERSION,
        std::process::id(),
        socket.display()
    ));
    if options.notify_ready {
        let mut out = std::io::stdout();
        let _ = out.write_all(b"r").and_then(|()| out.flush());
    }
    if let Some(idle) = options.idle_timeout {
        let daemon = daemon.clone();
        std::thread::spawn(move || daemon.exit_when_idle(idle));
    }
    loop {
        let connection = match listener.accept() {
            Ok(connection) => connection,
            Err(e) => {
                log(&format!("accept: {e}"));
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let daemon = daemon.clone();
        daemon.connections.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("zccache-download-client".into())
            .spawn(move || {
                daemon.serve(connection);
                daemon.connections.fetch_sub(1, Ordering::SeqCst);
                lock(&daemon.state).last_activity = Some(Instant::now());
            });
        if let Err(e) = spawned {
            log(&format!("cannot start a thread for a client: {e}"));
        }
    }
}

/// The daemon's stderr goes to its log (it was started with stderr on the null device).
fn redirect_stderr(path: &Path) {
    if let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = zccache_platform::fs::redirect_stderr(&file);
    }
}

fn log(message: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!("[{}.{:03}] {message}", now.as_secs(), now.subsec_millis());
}

impl Daemon {
    fn serve(self: &Arc<Self>, mut connection: ServerConnection) {
        loop {
            let request: DaemonRequest = match connection.read_request(CONNECTION_IDLE) {
                Ok(Some(request)) => request,
                Ok(None) => return,
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        log(&format!("dropping a client that sent garbage: {e}"));
                    }
                    return;
                }
            };
            let shutdown = matches!(request, DaemonRequest::Shutdown);
            let response = self.answer(request);
            let _ = connection.reply(&response);
            if shutdown {
                log("stopping (asked to)");
                let _ = std::fs::remove_file(&self.socket);
                std::process::exit(0);
            }
        }
    }

    fn answer(self: &Arc<Self>, request: DaemonRequest) -> DaemonResponse {
        lock(&self.state).last_activity = Some(Instant::now());
        match request {
            DaemonRequest::Fetch(request) => match self.fetch(request) {
                Ok(status) => DaemonResponse::Status(status),
                Err(message) => DaemonResponse::Error(message),
            },
            DaemonRequest::Status { download_id } => match self.transfer(download_id) {
                Ok(transfer) => DaemonResponse::Status(transfer.snapshot()),
                Err(message) => DaemonResponse::Error(message),
            },
            DaemonRequest::Wait {
                download_id,
                timeout_ms,
            } => match self.transfer(download_id) {
                Ok(transfer) => {
                    let deadline = timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
                    DaemonResponse::Status(self.wait(&transfer, deadline))
                }
                Err(message) => DaemonResponse::Error(message),
            },
            DaemonRequest::Cancel { download_id } => match self.transfer(download_id) {
                Ok(transfer) => {
                    transfer.cancel.store(true, Ordering::SeqCst);
                    let deadline = Instant::now() + Duration::from_secs(10);
                    DaemonResponse::Status(self.wait(&transfer, Some(deadline)))
                }
                Err(message) => DaemonResponse::Error(message),
            },
            DaemonRequest::Exists {
                source_url,
                destination_path,
            } => DaemonResponse::Exists(self.exists(&source_url, &destination_path)),
            DaemonRequest::DaemonStatus => DaemonResponse::Daemon(self.daemon_status()),
            DaemonRequest::Shutdown => {
                // Running transfers stop where they are; their part files are resumed by the
                // next fetch.
                for transfer in lock(&self.state).by_id.values() {
                    transfer.cancel.store(true, Ordering::SeqCst);
                }
                DaemonResponse::Done
            }
        }
    }

    fn transfer(&self, download_id: u64) -> Result<Arc<Transfer>, String> {
        lock(&self.state)
            .by_id
            .get(&download_id)
            .cloned()
            .ok_or_else(|| format!("no download with id {download_id} in this daemon"))
    }

    /// Waits until `transfer` ends or `deadline` passes; its status then.
    fn wait(&self, transfer: &Arc<Transfer>, deadline: Option<Instant>) -> DownloadStatus {
        let mut state = lock(&self.state);
        while transfer.is_running() {
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                break;
            }
            state = self
                .ended
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        drop(state);
        transfer.snapshot()
    }

    fn daemon_status(&self) -> DownloadDaemonStatus {
        let state = lock(&self.state);
        let c = &state.counters;
        DownloadDaemonStatus {
            running: true,
            pid: std::process::id(),
            version: zccache_core::VERSION.to_string(),
            socket: self.socket.clone(),
            uptime_secs: self.started.elapsed().as_secs(),
            active: state.running.len(),
            started: c.started,
            shared: c.shared,
            completed: c.completed,
            failed: c.failed,
            cached: c.cached,
            bytes_downloaded: c.bytes_downloaded,
        }
    }

    fn exists(&self, url: &str, destination: &Path) -> FetchState {
        let state = lock(&self.state);
        if let Some(transfer) = state
            .running
            .get(destination)
            .and_then(|id| state.by_id.get(id))
        {
            let status = transfer.snapshot();
            return FetchState {
                kind: StateKind::Downloading,
                reason: format!(
                    "download {} from {} is running ({} bytes so far)",
                    status.download_id, status.source_url, status.downloaded_bytes
                ),
                cache_path: destination.to_path_buf(),
                sha256: None,
                bytes: Some(status.downloaded_bytes),
            };
        }
        drop(state);
        records::state(&self.root, url, destination)
    }

    /// Handles one fetch: joins the transfer already writing the destination, answers from
    /// the record when the file (and its unpacked tree) are still what was published, or
    /// starts a transfer. Blocks until the end unless the request is `background`.
    fn fetch(self: &Arc<Self>, request: FetchRequest) -> Result<DownloadStatus, String> {
        let kind = validate(&request)?;
        loop {
            let mut state = lock(&self.state);
            prune_finished(&mut state);
            let running = state
                .running
                .get(&request.destination_path)
                .and_then(|id| state.by_id.get(id))
                .cloned();
            if let Some(transfer) = running {
                let theirs = &transfer.request;
                if theirs.source_url != request.source_url || theirs.part_urls != request.part_urls
                {
                    return Err(format!(
                        "{} is being downloaded from {} by another client; not from {}",
                        request.destination_path.display(),
                        theirs.describe_source(),
                        request.describe_source()
                    ));
                }
                if request.dry_run || request.wait_mode == WaitMode::NoWait {
                    let mut status = transfer.snapshot();
                    status.status = FetchStatus::Locked;
                    status.reason = format!(
                        "download {} of this artifact is running for another client",
                        status.download_id
                    );
                    return Ok(status);
                }
                state.counters.shared += 1;
                lock(&transfer.status).attached_clients += 1;
                drop(state);
                log(&format!(
                    "fetch {} -> {}: joins download {}",
                    request.describe_source(),
                    request.destination_path.display(),
                    transfer.snapshot().download_id
                ));
                if request.background {
                    return Ok(transfer.snapshot());
                }
                let status = self.wait(&transfer, None);
                let same_tree = request.destination_path_expanded.is_none()
                    || request.destination_path_expanded == theirs.destination_path_expanded;
                let same_sum = request.expected_sha256.as_ref().is_none_or(|want| {
                    status
                        .sha256
                        .as_ref()
                        .is_some_and(|got| want.eq_ignore_ascii_case(got))
                });
                if status.phase != Phase::Done || (same_tree && same_sum) {
                    return Ok(status);
                }
                // Theirs is published; what this request adds (its own unpacking, its
                // checksum) is decided against the record on the next round.
                continue;
            }

            let record = records::load(&self.root, &request.destination_path);
            let file_valid = !request.force
                && record.as_ref().is_some_and(|r| {
                    r.is_from(&request.source_url, &request.part_urls)
                        && r.file_unchanged()
                        && request
                            .expected_sha256
                            .as_ref()
                            .is_none_or(|want| want.eq_ignore_ascii_case(&r.sha256))
                });
            let expanded_valid = match (&request.destination_path_expanded, &record) {
                (None, _) => true,
                (Some(dir), Some(record)) => !request.force && record.expanded_into(dir),
                (Some(_), None) => false,
            };
            let id = state.next_id;
            // Answers that start no transfer carry id 0: there is nothing to follow.
            if file_valid && expanded_valid {
                state.counters.cached += 1;
                let record = record.expect("a valid file has a record");
                let mut status = DownloadStatus::started(0, &request);
                status.phase = Phase::Done;
                status.status = FetchStatus::Cached;
                status.sha256 = Some(record.sha256.clone());
                status.downloaded_bytes = record.stamp.len;
                status.total_bytes = Some(record.stamp.len);
                status.reason = format!(
                    "{} was downloaded from {} and is unchanged",
                    request.destination_path.display(),
                    request.describe_source()
                );
                return Ok(status);
            }
            if request.dry_run {
                let mut status = DownloadStatus::started(0, &request);
                status.phase = Phase::Done;
                status.status = FetchStatus::WouldDownload;
                status.reason = if file_valid {
                    "the file is valid; it would be unpacked again".into()
                } else {
                    records::state(&self.root, &request.source_url, &request.destination_path)
                        .reason
                };
                return Ok(status);
            }
            state.next_id += 1;
            let transfer = Arc::new(Transfer {
                request: request.clone(),
                status: Mutex::new(DownloadStatus::started(id, &request)),
                cancel: Arc::new(AtomicBool::new(false)),
                finished_at: Mutex::new(None),
            });
            if file_valid {
                lock(&transfer.status).phase = Phase::Unarchiving;
            } else {
                state.counters.started += 1;
            }
            state.by_id.insert(id, transfer.clone());
            state.running.insert(request.destination_path.clone(), id);
            drop(state);
            log(&format!(
                "download {id}: {} -> {}{}",
                request.describe_source(),
                request.destination_path.display(),
                if file_valid { " (unpack only)" } else { "" }
            ));
            let daemon = self.clone();
            let job = transfer.clone();
            std::thread::Builder::new()
                .name(format!("zccache-download-{id}"))
                .spawn(move || daemon.run_transfer(&job, kind, file_valid, record))
                .map_err(|e| format!("cannot start a download thread: {e}"))?;
            if request.background {
                return Ok(transfer.snapshot());
            }
            return Ok(self.wait(&transfer, None));
        }
    }

    /// The transfer's thread: download (unless the file is valid), record, unpack, record.
    fn run_transfer(
        &self,
        transfer: &Transfer,
        kind: Option<ArchiveKind>,
        file_valid: bool,
        record: Option<Record>,
    ) {
        let request = &transfer.request;
        let outcome = if file_valid {
            let record = record.expect("a valid file has a record");
            {
                let mut status = lock(&transfer.status);
                status.sha256 = Some(record.sha256.clone());
                status.total_bytes = Some(record.stamp.len);
                status.status = FetchStatus::Expanded;
            }
            self.unpack(transfer, record, kind)
        } else {
            self.download(transfer)
                .and_then(|record| self.unpack(transfer, record, kind))
        };
        let mut status = lock(&transfer.status);
        match outcome {
            Ok(()) => {
                status.phase = Phase::Done;
                if status.reason.is_empty() {
                    status.reason = "published".into();
                }
            }
            Err(message) if transfer.cancel.load(Ordering::SeqCst) => {
                status.phase = Phase::Cancelled;
                status.status = FetchStatus::Cancelled;
                status.error = Some(message);
            }
            Err(message) => {
                status.phase = Phase::Failed;
                status.status = FetchStatus::Failed;
                status.error = Some(message);
            }
        }
        let (id, phase) = (status.download_id, status.phase);
        drop(status);
        *lock(&transfer.finished_at) = Some(Instant::now());
        let mut state = lock(&self.state);
        match phase {
            Phase::Done => state.counters.completed += 1,
            _ => state.counters.failed += 1,
        }
        if state.running.get(&request.destination_path) == Some(&id) {
            state.running.remove(&request.destination_path);
        }
        state.last_activity = Some(Instant::now());
        drop(state);
        self.ended.notify_all();
        log(&format!("download {id}: {phase:?}"));
    }

    /// Downloads the file through the engine and records it; returns the record.
    fn download(&self, transfer: &Transfer) -> Result<Record, String> {
        let request = &transfer.request;
        // The file is being replaced: until it is published again, nothing vouches for it.
        records::remove(&self.root, &request.destination_path);
        let engine_request = DownloadRequest {
            cancel: Some(transfer.cancel.clone()),
            ..DownloadRequest::from_fetch(request)
        };
        let progress = |done: u64, total: Option<u64>| {
            let mut status = lock(&transfer.status);
            status.downloaded_bytes = done;
            status.total_bytes = total;
        };
        let done = crate::download(&engine_request, Some(&progress)).map_err(|e| e.to_string())?;
        {
            let mut status = lock(&transfer.status);
            status.downloaded_bytes = done.bytes;
            status.total_bytes = Some(done.bytes);
            status.resumed_bytes = done.resumed_from;
            status.connections = done.connections_used;
            status.sha256 = Some(done.sha256.clone());
            status.status = FetchStatus::Downloaded;
            status.reason = if done.resumed_from > 0 {
                format!("resumed after {} bytes", done.resumed_from)
            } else {
                "downloaded".into()
            };
        }
        lock(&self.state).counters.bytes_downloaded += done.bytes - done.resumed_from;
        let stamp = Stamp::of(&done.path)
            .ok_or_else(|| format!("{} vanished after publishing", done.path.display()))?;
        let record = Record {
            source_url: request.source_url.clone(),
            part_urls: request.part_urls.clone(),
            destination: done.path,
            sha256: done.sha256,
            stamp,
            expanded: None,
        };
        records::save(&self.root, &record)
            .map_err(|e| format!("recording {}: {e}", record.destination.display()))?;
        Ok(record)
    }

    /// Unpacks the published file when the request asks for it, and records where.
    fn unpack(
        &self,
        transfer: &Transfer,
        mut record: Record,
        kind: Option<ArchiveKind>,
    ) -> Result<(), String> {
        let (Some(dir), Some(kind)) = (&transfer.request.destination_path_expanded, kind) else {
            return Ok(());
        };
        lock(&transfer.status).phase = Phase::Unarchiving;
        if transfer.cancel.load(Ordering::SeqCst) {
            return Err("cancelled before unpacking".into());
        }
        crate::extract(&record.destination, kind, dir).map_err(|e| e.to_string())?;
        let stamp =
            Stamp::of(dir).ok_or_else(|| format!("{} vanished after unpacking", dir.display()))?;
        record.expanded = Some((dir.clone(), stamp));
        records::save(&self.root, &record)
            .map_err(|e| format!("recording {}: {e}", record.destination.display()))
    }

    /// Exits once nothing has happened for `idle`: no transfer running, no client connected.
    fn exit_when_idle(&self, idle: Duration) {
        loop {
            std::thread::sleep(Duration::from_secs(1).min(idle));
            let state = lock(&self.state);
            let quiet = state.running.is_empty()
                && self.connections.load(Ordering::SeqCst) == 0
                && state.last_activity.is_none_or(|at| at.elapsed() >= idle);
            if quiet {
                log("stopping (idle)");
                let _ = std::fs::remove_file(&self.socket);
                std::process::exit(0);
            }
        }
    }
}

/// Drops the statuses of transfers that ended long ago.
fn prune_finished(state: &mut State) {
    state.by_id.retain(|_, transfer| {
        lock(&transfer.finished_at).is_none_or(|at| at.elapsed() < KEEP_FINISHED)
    });
}

/// Checks a request before anything is started; returns the archive kind to unpack with.
fn validate(request: &FetchRequest) -> Result<Option<ArchiveKind>, String> {
    let dest = &request.destination_path;
    if request.source_url.is_empty() && request.part_urls.is_empty() {
        return Err("no URL given (neither a source URL nor part URLs)".into());
    }
    if !dest.is_absolute() || dest.file_name().is_none() {
        return Err(format!(
            "destination {} must be an absolute path to a file",
            dest.display()
        ));
    }
    if dest.is_dir() {
        return Err(format!(
            "destination {} is a directory; name the file to write",
            dest.display()
        ));
    }
    if let Some(sha) = &request.expected_sha256 {
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("sha256 {sha:?} is not 64 hex digits"));
        }
    }
    if matches!(request.max_connections, Some(0)) || matches!(request.multipart_parts, Some(0)) {
        return Err("max connections and multipart parts must be at least 1".into());
    }
    let Some(dir) = &request.destination_path_expanded else {
        return Ok(None);
    };
    if !dir.is_absolute() || dir.file_name().is_none() {
        return Err(format!(
            "unarchive directory {} must be an absolute path to a directory",
            dir.display()
        ));
    }
    if dest.starts_with(dir) {
        return Err(format!(
            "the archive {} cannot live inside its own unarchive directory {}",
            dest.display(),
            dir.display()
        ));
    }
    let kind = match crate::archive_kind(request.archive_format) {
        Some(kind) => kind,
        None => ArchiveKind::from_path(dest).ok_or_else(|| {
            format!(
                "cannot tell the archive format of {} from its name; pass an archive format",
                dest.display()
            )
        })?,
    };
    Ok(Some(kind))
}
