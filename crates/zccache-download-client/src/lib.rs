//! zccache-download-client: how the `zccache download` command, the `zccache-download` tool
//! and the Python module reach the download daemon.
//!
//! The daemon is separate from the compiler-cache daemon: its own socket, lock and records
//! under `<cache root>/download/`. Downloads are long and shared (several clients asking for
//! the same artifact join one transfer), which a compile daemon's request loop is not for.
//! This crate holds the messages ([`types`]), the records of published files ([`records`])
//! and the blocking client; it pulls in no HTTP or async code, so the thin `zccache` binary
//! can link it.

#[cfg(feature = "cli")]
pub mod cli;
pub mod records;
pub mod types;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zccache_core::CacheRoot;
use zccache_ipc::Connection;

pub use types::*;

/// How long a client waits for a daemon it started.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a short request (status, exists, cancel) may take.
const SHORT_CALL: Duration = Duration::from_secs(30);

/// Why a call to the download daemon failed.
#[derive(Debug)]
pub enum ClientError {
    /// No daemon is running (and the call does not start one).
    NotRunning { socket: PathBuf },
    /// The daemon could not be started.
    Start(String),
    /// The connection failed or broke off.
    Transport { socket: PathBuf, error: io::Error },
    /// The daemon refused the request or the download failed; the message says why.
    Daemon(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NotRunning { socket } => write!(
                f,
                "the download daemon is not running (no daemon at {})",
                socket.display()
            ),
            ClientError::Start(message) => write!(f, "starting the download daemon: {message}"),
            ClientError::Transport { socket, error } => {
                write!(f, "download daemon at {}: {error}", socket.display())
            }
            ClientError::Daemon(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ClientError {}

/// What a blocking fetch produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResult {
    pub status: FetchStatus,
    pub download_id: u64,
    /// sha256 of the published file (empty while it is not known: locked, dry run, in progress).
    pub sha256: String,
    pub cache_path: PathBuf,
    pub expanded_path: Option<PathBuf>,
    pub bytes: u64,
    pub detail: DownloadStatus,
}

/// A client of one cache root's download daemon.
pub struct DownloadClient {
    root: CacheRoot,
    socket: PathBuf,
    daemon: Option<PathBuf>,
}

impl DownloadClient {
    /// The client for `root`, or for the configured cache root (`ZCCACHE_CACHE_DIR`, else
    /// `~/.zccache`) when `None`.
    pub fn new(root: Option<PathBuf>) -> DownloadClient {
        let root = root.unwrap_or_else(|| {
            zccache_core::Config::from_process()
                .map(|c| c.cache_dir)
                .unwrap_or_else(|_| PathBuf::from(".zccache"))
        });
        let root = CacheRoot::new(root);
        let socket = root.download_socket_path(DOWNLOAD_PROTOCOL);
        DownloadClient {
            root,
            socket,
            daemon: None,
        }
    }

    /// Starts the daemon from `exe` (by default `zccache-download` beside this executable,
    /// else on PATH).
    pub fn with_daemon_binary(mut self, exe: PathBuf) -> DownloadClient {
        self.daemon = Some(exe);
        self
    }

    pub fn root(&self) -> &CacheRoot {
        &self.root
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn connect(&self) -> Result<Connection, ClientError> {
        Connection::connect(&self.socket).map_err(|error| match error.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ClientError::NotRunning {
                socket: self.socket.clone(),
            },
            _ => ClientError::Transport {
                socket: self.socket.clone(),
                error,
            },
        })
    }

    /// Starts the daemon unless one runs; returns whether this call started it.
    pub fn start_daemon(&self) -> Result<bool, ClientError> {
        if self.connect().is_ok() {
            return Ok(false);
        }
        let dir = self.root.download_dir();
        self.root
            .ensure()
            .and_then(|()| zccache_core::make_private_dir(&dir))
            .map_err(|e| ClientError::Start(e.to_string()))?;
        // Concurrent clients serialize here: one starts the daemon, the others find it.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("spawn.lock"))
            .map_err(|e| ClientError::Start(format!("{}: {e}", dir.display())))?;
        zccache_core::lock_exclusive(&lock)
            .map_err(|e| ClientError::Start(format!("{}: {e}", dir.display())))?;
        if self.connect().is_ok() {
            return Ok(false);
        }
        let exe = self
            .daemon
            .clone()
            .unwrap_or_else(|| zccache_core::detach::sibling_executable("zccache-download"));
        let mut args = vec![
            "--cache-dir".into(),
            self.root.path().as_os_str().to_os_string(),
        ];
        args.extend(["daemon".into(), "run".into(), "--notify-ready".into()]);
        let mut child: std::process::Child = zccache_core::detach::spawn_detached(&exe, &args)
            .map_err(|e| ClientError::Start(e.to_string()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        if let Some(ready) = child.stdout.take() {
            zccache_core::detach::wait_until_ready(ready, deadline);
        }
        loop {
            match self.connect() {
                Ok(_) => return Ok(true),
                Err(e) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        if self.connect().is_ok() {
                            return Ok(true);
                        }
                        return Err(ClientError::Start(format!(
                            "{} exited ({status}) before it listened; see {}",
                            exe.display(),
                            dir.join("daemon.log").display()
                        )));
                    }
                    if Instant::now() >= deadline {
                        return Err(ClientError::Start(format!(
                            "{} did not listen within {}s: {e}",
                            exe.display(),
                            START_TIMEOUT.as_secs()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// Stops the daemon (its running transfers are cancelled and can be resumed later) and
    /// waits for it to let go of its lock; false when none was running.
    pub fn stop_daemon(&self) -> Result<bool, ClientError> {
        match self.call(&DaemonRequest::Shutdown, Some(SHORT_CALL)) {
            Err(ClientError::NotRunning { .. }) => return Ok(false),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let lock = self.root.download_dir().join("daemon.lock");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let held = std::fs::File::open(&lock)
                .map(|file| zccache_core::try_lock_exclusive(&file).is_err())
                .unwrap_or(false);
            if !held {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(true)
    }

    /// The daemon's state; `None` when it is not running.
    pub fn daemon_status(&self) -> Result<Option<DownloadDaemonStatus>, ClientError> {
        match self.call(&DaemonRequest::DaemonStatus, Some(SHORT_CALL)) {
            Ok(DaemonResponse::Daemon(status)) => Ok(Some(status)),
            Ok(other) => Err(unexpected(other)),
            Err(ClientError::NotRunning { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends `request`, starting the daemon first when it is a fetch.
    fn call(
        &self,
        request: &DaemonRequest,
        timeout: Option<Duration>,
    ) -> Result<DaemonResponse, ClientError> {
        let mut connection = match self.connect() {
            Ok(connection) => connection,
            Err(ClientError::NotRunning { .. }) if matches!(request, DaemonRequest::Fetch(_)) => {
                self.start_daemon()?;
                self.connect()?
            }
            Err(e) => return Err(e),
        };
        let transport = |error| ClientError::Transport {
            socket: self.socket.clone(),
            error,
        };
        connection.set_timeout(timeout).map_err(transport)?;
        match connection.call(request).map_err(transport)? {
            DaemonResponse::Error(message) => Err(ClientError::Daemon(message)),
            response => Ok(response),
        }
    }

    fn status_call(&self, request: &DaemonRequest) -> Result<DownloadStatus, ClientError> {
        let timeout = match request {
            DaemonRequest::Fetch(FetchRequest {
                background: false, ..
            })
            | DaemonRequest::Wait {
                timeout_ms: None, ..
            } => None,
            DaemonRequest::Wait {
                timeout_ms: Some(ms),
                ..
            } => Some(SHORT_CALL + Duration::from_millis(*ms)),
            _ => Some(SHORT_CALL),
        };
        match self.call(request, timeout)? {
            DaemonResponse::Status(status) => Ok(status),
            other => Err(unexpected(other)),
        }
    }

    /// Fetches an artifact through the daemon (starting it if needed). With the default
    /// [`WaitMode::Block`] and `background: false` it returns when the file is published (and
    /// unpacked); a failed or cancelled transfer is an error naming the cause.
    pub fn fetch(&self, mut request: FetchRequest) -> Result<FetchResult, ClientError> {
        request.destination_path = absolute(&request.destination_path)?;
        if let Some(dir) = &request.destination_path_expanded {
            request.destination_path_expanded = Some(absolute(dir)?);
        }
        let status = self.status_call(&DaemonRequest::Fetch(request))?;
        match status.phase {
            Phase::Failed | Phase::Cancelled => Err(ClientError::Daemon(
                status
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("download {:?}", status.phase)),
            )),
            _ => Ok(FetchResult {
                status: status.status,
                download_id: status.download_id,
                sha256: status.sha256.clone().unwrap_or_default(),
                cache_path: status.cache_path.clone(),
                expanded_path: status.expanded_path.clone(),
                bytes: status.total_bytes.unwrap_or(status.downloaded_bytes),
                detail: status,
            }),
        }
    }

    /// Starts (or joins) the download of `url` to `destination` and returns at once with a
    /// handle to follow it.
    pub fn download(
        &self,
        url: &str,
        destination: &Path,
        options: DownloadOptions,
    ) -> Result<DownloadHandle<'_>, ClientError> {
        let request = FetchRequest {
            source_url: url.to_string(),
            destination_path: absolute(destination)?,
            max_connections: options.max_connections,
            min_segment_size: options.min_segment_size,
            force: options.force,
            background: true,
            ..FetchRequest::default()
        };
        let status = self.status_call(&DaemonRequest::Fetch(request))?;
        Ok(DownloadHandle {
            client: self,
            download_id: status.download_id,
        })
    }

    /// The handle of a transfer started earlier (by any client).
    pub fn handle(&self, download_id: u64) -> DownloadHandle<'_> {
        DownloadHandle {
            client: self,
            download_id,
        }
    }

    /// What is at `destination` for `url`: asked of the daemon when it runs (it knows the
    /// transfers in flight), else read from the records directly.
    pub fn exists(&self, url: &str, destination: &Path) -> Result<FetchState, ClientError> {
        let destination = absolute(destination)?;
        let request = DaemonRequest::Exists {
            source_url: url.to_string(),
            destination_path: destination.clone(),
        };
        match self.call(&request, Some(SHORT_CALL)) {
            Ok(DaemonResponse::Exists(state)) => Ok(state),
            Ok(other) => Err(unexpected(other)),
            Err(ClientError::NotRunning { .. }) => {
                Ok(records::state(&self.root, url, &destination))
            }
            Err(e) => Err(e),
        }
    }
}

/// A transfer in the daemon, followed by id.
pub struct DownloadHandle<'a> {
    client: &'a DownloadClient,
    pub download_id: u64,
}

impl DownloadHandle<'_> {
    pub fn status(&self) -> Result<DownloadStatus, ClientError> {
        self.client.status_call(&DaemonRequest::Status {
            download_id: self.download_id,
        })
    }

    /// Waits until the transfer ends or `timeout_ms` passes, and returns its status then.
    pub fn wait(&mut self, timeout_ms: Option<u64>) -> Result<DownloadStatus, ClientError> {
        self.client.status_call(&DaemonRequest::Wait {
            download_id: self.download_id,
            timeout_ms,
        })
    }

    /// Cancels the transfer for every client attached to it; what was written stays for a
    /// later fetch to resume.
    pub fn cancel(&self) -> Result<DownloadStatus, ClientError> {
        self.client.status_call(&DaemonRequest::Cancel {
            download_id: self.download_id,
        })
    }
}

fn unexpected(response: DaemonResponse) -> ClientError {
    ClientError::Daemon(format!(
        "the download daemon answered with an unexpected message: {response:?}"
    ))
}

/// `path` made absolute against this process's working directory (the daemon's is `/`).
fn absolute(path: &Path) -> Result<PathBuf, ClientError> {
    std::path::absolute(path)
        .map_err(|e| ClientError::Daemon(format!("cannot resolve path {}: {e}", path.display())))
}

/// Where an artifact goes when the caller names no destination: a directory per source
/// under `<root>/download/files/`, keeping the URL's file name (so the archive format can be
/// told from it). The same URL always maps to the same path, so a second request is a
/// cache hit.
pub fn default_destination(root: &CacheRoot, source_url: &str, part_urls: &[String]) -> PathBuf {
    let mut hasher = blake3::Hasher::new();
    hasher.update(source_url.as_bytes());
    for part in part_urls {
        hasher.update(b"\0");
        hasher.update(part.as_bytes());
    }
    let digest: String = hasher.finalize().as_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let url = if source_url.is_empty() {
        part_urls.first().map(String::as_str).unwrap_or_default()
    } else {
        source_url
    };
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let name = path
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != ".." && !path.ends_with("//"))
        .unwrap_or("download");
    root.download_dir().join("files").join(digest).join(name)
}

/// The text form of a status, one `name: value` line each, as `zccache download` and
/// `zccache-download` print it.
pub fn status_lines(status: &DownloadStatus) -> String {
    let mut out = format!(
        "status: {}\nid: {}\nphase: {}\npath: {}\n",
        serde_plain(&status.status),
        status.download_id,
        serde_plain(&status.phase),
        status.cache_path.display()
    );
    if let Some(sha) = &status.sha256 {
        out.push_str(&format!("sha256: {sha}\n"));
    }
    if let Some(dir) = &status.expanded_path {
        out.push_str(&format!("expanded: {}\n", dir.display()));
    }
    let total = status
        .total_bytes
        .map(|t| format!("/{t}"))
        .unwrap_or_default();
    out.push_str(&format!("bytes: {}{total}\n", status.downloaded_bytes));
    if status.resumed_bytes > 0 {
        out.push_str(&format!("resumed: {}\n", status.resumed_bytes));
    }
    if status.connections > 0 {
        out.push_str(&format!("connections: {}\n", status.connections));
    }
    if status.attached_clients > 1 {
        out.push_str(&format!("clients: {}\n", status.attached_clients));
    }
    if !status.reason.is_empty() {
        out.push_str(&format!("reason: {}\n", status.reason));
    }
    if let Some(error) = &status.error {
        out.push_str(&format!("error: {error}\n"));
    }
    out
}

/// A unit enum's serde name (`in_progress`, `would_download`, …).
pub fn serde_plain<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_destinations_keep_the_file_name_and_differ_per_url() {
        let root = CacheRoot::new("/c");
        let a = default_destination(&root, "https://h/x/tool.tar.zst?sig=1", &[]);
        assert_eq!(a.file_name().unwrap(), "tool.tar.zst");
        assert!(a.starts_with("/c/download/files"));
        let b = default_destination(&root, "https://h/y/tool.tar.zst", &[]);
        assert_ne!(a.parent(), b.parent());
        assert_eq!(
            a,
            default_destination(&root, "https://h/x/tool.tar.zst?sig=1", &[])
        );
        let dir = default_destination(&root, "https://h/", &[]);
        assert_eq!(dir.file_name().unwrap(), "download");
        let parts = default_destination(&root, "", &["https://h/p.zip.001".into()]);
        assert_eq!(parts.file_name().unwrap(), "p.zip.001");
    }
}
