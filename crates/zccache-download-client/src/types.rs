//! What clients and the download daemon say to each other. Shared by the daemon
//! (`zccache-download`), the `zccache download` command and the Python module.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Version of the messages below; part of the socket's name, so a client never talks to a
/// daemon from another build.
pub const DOWNLOAD_PROTOCOL: u16 = 1;

/// How a downloaded artifact is unpacked into `destination_path_expanded`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveFormat {
    /// From the destination's file name (`.tar.gz`, `.tgz`, `.tar.xz`, `.tar.zst`, `.zip`, `.tar`).
    #[default]
    Auto,
    Tar,
    TarGz,
    TarXz,
    TarZst,
    Zip,
}

impl ArchiveFormat {
    /// Parses the names the command line and Python accept (`auto`, `tar.gz`, `tgz`, …).
    pub fn parse(text: &str) -> Result<ArchiveFormat, String> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "auto" | "" => ArchiveFormat::Auto,
            "tar" => ArchiveFormat::Tar,
            "tar.gz" | "tgz" | "tar_gz" | "targz" => ArchiveFormat::TarGz,
            "tar.xz" | "txz" | "tar_xz" | "tarxz" => ArchiveFormat::TarXz,
            "tar.zst" | "tzst" | "tar_zst" | "tarzst" => ArchiveFormat::TarZst,
            "zip" => ArchiveFormat::Zip,
            other => {
                return Err(format!(
                    "unknown archive format {other:?} (expected auto, tar, tar.gz, tar.xz, tar.zst or zip)"
                ))
            }
        })
    }
}

/// Whether a fetch waits for another client's transfer of the same artifact.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum WaitMode {
    /// Attach to it and wait for it to finish.
    #[default]
    Block,
    /// Return at once with [`FetchStatus::Locked`].
    NoWait,
}

/// One artifact to download (and maybe unpack).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchRequest {
    /// URL of the whole file (may be empty when `part_urls` is given).
    pub source_url: String,
    /// Explicit multipart download: these URLs, concatenated in order, are the file.
    pub part_urls: Vec<String>,
    /// Where the file is published; absolute (the client resolves it against its own cwd).
    pub destination_path: PathBuf,
    /// Unpack the file into this directory (replacing it) once it is published.
    pub destination_path_expanded: Option<PathBuf>,
    pub archive_format: ArchiveFormat,
    /// Expected sha256 (hex); on a mismatch nothing is published.
    pub expected_sha256: Option<String>,
    /// Parallel range requests for a single URL (default 8).
    pub max_connections: Option<usize>,
    /// Smallest range segment in bytes (default 8 MiB).
    pub min_segment_size: Option<u64>,
    /// Split a single-URL download into this many ranged parts (sets the connections and
    /// lets segments be as small as needed to make that many).
    pub multipart_parts: Option<usize>,
    pub wait_mode: WaitMode,
    /// Download and unpack again even if the recorded state is valid.
    pub force: bool,
    /// Say what would happen; change nothing.
    pub dry_run: bool,
    /// Return as soon as the transfer runs (a handle to wait on), instead of when it ends.
    pub background: bool,
}

impl FetchRequest {
    /// A blocking single-URL request with default tuning.
    pub fn new(source_url: impl Into<String>, destination_path: impl Into<PathBuf>) -> Self {
        FetchRequest {
            source_url: source_url.into(),
            destination_path: destination_path.into(),
            ..FetchRequest::default()
        }
    }
}

impl FetchRequest {
    /// The URL, or for a multipart download its first part and the count.
    pub fn describe_source(&self) -> String {
        match self.part_urls.as_slice() {
            [] => self.source_url.clone(),
            [first, rest @ ..] => format!("{first} (+{} parts)", rest.len()),
        }
    }
}

/// Tuning for [`crate::DownloadClient::download`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownloadOptions {
    pub force: bool,
    pub max_connections: Option<usize>,
    pub min_segment_size: Option<u64>,
}

/// Where a transfer is.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Downloading,
    Unarchiving,
    Done,
    Failed,
    Cancelled,
}

impl Phase {
    /// The transfer has ended one way or the other.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Done | Phase::Failed | Phase::Cancelled)
    }
}

/// What a finished (or refused) fetch amounted to.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FetchStatus {
    /// Bytes were transferred (some may have been resumed from an earlier attempt).
    Downloaded,
    /// The recorded file (and unpacked tree) were already valid: nothing was transferred.
    Cached,
    /// Only the unpacking was redone; the file was already valid.
    Expanded,
    /// `wait_mode: no_wait` and another client's transfer of this artifact is running.
    Locked,
    /// `dry_run`: a download would be needed.
    WouldDownload,
    /// The transfer is still running (a background fetch, or a wait that timed out).
    InProgress,
    Failed,
    Cancelled,
}

/// A transfer as the daemon sees it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DownloadStatus {
    pub download_id: u64,
    pub phase: Phase,
    pub status: FetchStatus,
    pub source_url: String,
    pub cache_path: PathBuf,
    pub expanded_path: Option<PathBuf>,
    pub downloaded_bytes: u64,
    pub total_bytes: Option<u64>,
    /// Bytes already on disk from an interrupted attempt, not fetched again.
    pub resumed_bytes: u64,
    /// Most HTTP transfers that ran at once for the body.
    pub connections: usize,
    /// Clients that asked for this transfer (the first one included).
    pub attached_clients: u32,
    /// sha256 of the published file, once it is known.
    pub sha256: Option<String>,
    pub error: Option<String>,
    /// Why the daemon decided as it did (cached, locked, would download …).
    pub reason: String,
}

impl DownloadStatus {
    /// The status of transfer `id` of `request` as it starts.
    pub fn started(id: u64, request: &FetchRequest) -> DownloadStatus {
        DownloadStatus {
            download_id: id,
            phase: Phase::Downloading,
            status: FetchStatus::InProgress,
            source_url: request.describe_source(),
            cache_path: request.destination_path.clone(),
            expanded_path: request.destination_path_expanded.clone(),
            downloaded_bytes: 0,
            total_bytes: None,
            resumed_bytes: 0,
            connections: 0,
            attached_clients: 1,
            sha256: None,
            error: None,
            reason: String::new(),
        }
    }
}

/// What is at a destination, for `exists`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    /// Nothing there.
    Absent,
    /// The file downloaded from this URL, unchanged since.
    Cached,
    /// An interrupted transfer that a fetch would resume.
    Partial,
    /// A transfer of it is running now.
    Downloading,
    /// A file is there, but not one recorded as downloaded from this URL (or changed since).
    Stale,
}

/// The answer of `exists`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FetchState {
    pub kind: StateKind,
    pub reason: String,
    pub cache_path: PathBuf,
    pub sha256: Option<String>,
    pub bytes: Option<u64>,
}

/// The download daemon's own state, for `daemon status`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DownloadDaemonStatus {
    pub running: bool,
    pub pid: u32,
    pub version: String,
    pub socket: PathBuf,
    pub uptime_secs: u64,
    /// Transfers running now.
    pub active: usize,
    /// Transfers started since the daemon started.
    pub started: u64,
    /// Fetches that joined a transfer another client had started.
    pub shared: u64,
    pub completed: u64,
    pub failed: u64,
    pub cached: u64,
    pub bytes_downloaded: u64,
}

/// A request to the download daemon.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum DaemonRequest {
    Fetch(FetchRequest),
    Status {
        download_id: u64,
    },
    /// Waits until the transfer ends or `timeout_ms` passes (`None`: no limit).
    Wait {
        download_id: u64,
        timeout_ms: Option<u64>,
    },
    Cancel {
        download_id: u64,
    },
    Exists {
        source_url: String,
        destination_path: PathBuf,
    },
    DaemonStatus,
    Shutdown,
}

/// The daemon's answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum DaemonResponse {
    Status(DownloadStatus),
    Exists(FetchState),
    Daemon(DownloadDaemonStatus),
    Done,
    Error(String),
}
