//! Daemon lifecycle: lock, socket, accept loop, idle exit, shutdown.

use crate::{Daemon, Stats, Toolchains};
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zccache_artifact::Store;
use zccache_core::CacheRoot;
use zccache_fscache::FsCache;
use zccache_ipc::{read_message, write_message, Listener};
use zccache_protocol::{Request, Response, StatusReport, PROTOCOL_VERSION};

/// How the daemon was asked to run.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub cache_dir: PathBuf,
    /// `None`: never exit for idleness.
    pub idle_timeout: Option<Duration>,
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
    let lock = match OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
    {
        Ok(file) => file,
        Err(e) => {
            eprintln!("zccache-daemon: {}: {e}", lock_path.display());
            return 2;
        }
    };
    // SAFETY: flock on a descriptor we own; the lock lives as long as `lock`.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        // Another daemon holds the lock: it serves this root.
        return 0;
    }
    init_logging(&root);
    // SAFETY: umask only reads and sets this process's file-creation mask.
    let umask = unsafe {
        let old = libc::umask(0o077);
        libc::umask(old);
        old
    };
    let output_mode = 0o666 & !(umask as u32);
    let (store, store_problem) = match Store::open(&root, output_mode) {
        Ok(store) => (Some(store), None),
        Err(e) => {
            let message = format!("cache store unavailable, compiling uncached: {e}");
            tracing::error!("{message}");
            (None, Some(message))
        }
    };
    let daemon = Arc::new(Daemon {
        root: root.clone(),
        store,
        fs: FsCache::new(),
        toolchains: Toolchains::default(),
        stats: Stats::default(),
        pending: Default::default(),
        started: Instant::now(),
        output_mode,
        store_problem,
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start runtime: {e}");
            return 2;
        }
    };
    let socket = root.socket_path(PROTOCOL_VERSION);
    let code = runtime.block_on(serve(daemon, socket.clone(), options.idle_timeout));
    // Let in-flight handlers finish briefly; the lock is released last, so no new daemon can
    // bind the socket while this one is still going away.
    runtime.shutdown_timeout(Duration::from_secs(2));
    let _ = std::fs::remove_file(&socket);
    tracing::info!("daemon exiting");
    drop(lock);
    code
}

fn init_logging(root: &CacheRoot) {
    let Ok(file) = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
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

/// Shared between the accept loop and connection tasks.
struct Activity {
    in_flight: AtomicUsize,
    /// Milliseconds since start of the last finished request.
    last_ms: AtomicU64,
    shutdown: tokio::sync::Notify,
}

async fn serve(daemon: Arc<Daemon>, socket: PathBuf, idle_timeout: Option<Duration>) -> i32 {
    let listener = match Listener::bind(&socket) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("cannot bind {}: {e}", socket.display());
            return 2;
        }
    };
    tracing::info!(
        "zccache-daemon {} (pid {}) serving {}",
        zccache_core::VERSION,
        std::process::id(),
        socket.display()
    );
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        last_ms: AtomicU64::new(0),
        shutdown: tokio::sync::Notify::new(),
    });
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(stream) => {
                    activity.in_flight.fetch_add(1, Ordering::SeqCst);
                    let daemon = daemon.clone();
                    let activity = activity.clone();
                    tokio::spawn(async move {
                        connection(daemon.clone(), stream, &activity).await;
                        activity.last_ms.store(daemon.started.elapsed().as_millis() as u64, Ordering::SeqCst);
                        activity.in_flight.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = activity.shutdown.notified() => {
                tracing::info!("shutdown requested");
                return 0;
            }
            _ = tick.tick() => {
                if let Some(limit) = idle_timeout {
                    let now = daemon.started.elapsed().as_millis() as u64;
                    let idle = now.saturating_sub(activity.last_ms.load(Ordering::SeqCst));
                    if activity.in_flight.load(Ordering::SeqCst) == 0 && idle >= limit.as_millis() as u64 {
                        tracing::info!("idle for {idle} ms, exiting");
                        return 0;
                    }
                }
                if !socket_is_ours(&socket) {
                    tracing::warn!("socket {} was removed or replaced, exiting", socket.display());
                    return 0;
                }
            }
        }
    }
}

/// The socket file still exists (someone may have deleted the cache root).
fn socket_is_ours(socket: &std::path::Path) -> bool {
    socket.exists()
}

async fn connection(daemon: Arc<Daemon>, mut stream: tokio::net::UnixStream, activity: &Activity) {
    loop {
        let request: Request = match read_message(&mut stream).await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("bad request: {e}");
                let _ = write_message(&mut stream, &Response::Error(e.to_string())).await;
                return;
            }
        };
        let shutdown = matches!(request, Request::Shutdown);
        let handler = daemon.clone();
        let response = match tokio::task::spawn_blocking(move || handler.handle(request)).await {
            Ok(response) => response,
            Err(e) => {
                tracing::error!("request handler panicked: {e}");
                daemon.stats.error();
                Response::Error("internal error".into())
            }
        };
        if write_message(&mut stream, &response).await.is_err() {
            return;
        }
        if shutdown {
            activity.shutdown.notify_one();
            return;
        }
    }
}

impl Daemon {
    fn handle(self: &Arc<Self>, request: Request) -> Response {
        match request {
            Request::Compile(compile) => self.compile(compile),
            Request::Status => Response::Status(self.status()),
            Request::Ping => Response::Pong {
                version: zccache_core::VERSION.to_string(),
                pid: std::process::id(),
            },
            Request::Clear => match &self.store {
                Some(store) => match store.clear() {
                    Ok(()) => Response::Done,
                    Err(e) => Response::Error(e.to_string()),
                },
                None => Response::Error("store unavailable".into()),
            },
            Request::Shutdown => Response::Done,
        }
    }

    fn status(&self) -> StatusReport {
        use std::sync::atomic::Ordering::Relaxed;
        // Counters are final once the stores in flight have finished.
        self.pending.wait_all();
        let (artifact_count, artifact_bytes) =
            self.store.as_ref().map(|s| s.usage()).unwrap_or_default();
        let mut warnings: Vec<String> = self.store_problem.iter().cloned().collect();
        if let Some(store) = &self.store {
            warnings.extend(store.warnings());
        }
        StatusReport {
            version: zccache_core::VERSION.to_string(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            cache_root: self.root.path().display().to_string(),
            hits: self.stats.hits.load(Relaxed),
            misses: self.stats.misses.load(Relaxed),
            not_stored: self.stats.not_stored_counts(),
            non_cacheable: self.stats.non_cacheable_counts(),
            errors: self.stats.errors.load(Relaxed),
            time_saved_ms: self.stats.time_saved_ms.load(Relaxed),
            artifact_count,
            artifact_bytes,
            warnings,
        }
    }
}
