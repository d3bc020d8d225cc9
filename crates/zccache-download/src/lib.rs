//! zccache's download engine.
//!
//! One blocking entry point, [`download`], fetches a URL (or an explicit list of part
//! URLs) into a destination file:
//!
//! * it probes the server with `GET` + `Range: bytes=0-0` to learn the length and whether
//!   ranges are honoured (a `206` answer is proof; an `Accept-Ranges` header is only a claim);
//! * large ranged files are split into segments fetched in parallel and written at their
//!   offsets into a pre-sized `<destination>.part`;
//! * progress is recorded in `<destination>.part.json`, so a later call after an
//!   interruption continues where it stopped if the server's length and validators
//!   (ETag / Last-Modified) are unchanged;
//! * the result is checked against an optional sha256 *before* it is renamed into place,
//!   so the destination only ever appears complete and verified;
//! * optionally the archive is extracted (refusing entries that escape the target).
//!
//! There are no retries inside a call: a failed call leaves the part file and sidecar
//! behind, and the caller (the download daemon) decides whether to call again, which
//! then resumes.

mod archive;
pub mod daemon;
mod engine;
mod error;
mod sidecar;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use archive::{extract, unarchive, ArchiveKind};
pub use error::DownloadError;

/// Default number of parallel connections for a segmented download.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8;
/// Default smallest segment; files shorter than twice this are fetched in one piece,
/// because extra connections cost more than they gain on small files.
pub const DEFAULT_MIN_SEGMENT_SIZE: u64 = 8 * 1024 * 1024;

/// The engine's connections and smallest segment for a request's tuning: `multipart_parts`
/// (split into that many ranged parts) wins over `max_connections`; defaults otherwise.
fn tuning(
    max_connections: Option<usize>,
    min_segment_size: Option<u64>,
    multipart_parts: Option<usize>,
) -> (usize, u64) {
    match multipart_parts {
        Some(parts) => (
            parts.max(1),
            min_segment_size.unwrap_or(MULTIPART_MIN_SEGMENT),
        ),
        None => (
            max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            min_segment_size.unwrap_or(DEFAULT_MIN_SEGMENT_SIZE),
        ),
    }
}

/// The archive kind a client's format names; `None` for `auto` (from the file name).
pub fn archive_kind(format: zccache_download_client::ArchiveFormat) -> Option<ArchiveKind> {
    use zccache_download_client::ArchiveFormat;
    match format {
        ArchiveFormat::Auto => None,
        ArchiveFormat::Tar => Some(ArchiveKind::Tar),
        ArchiveFormat::TarGz => Some(ArchiveKind::TarGz),
        ArchiveFormat::TarXz => Some(ArchiveKind::TarXz),
        ArchiveFormat::TarZst => Some(ArchiveKind::TarZst),
        ArchiveFormat::Zip => Some(ArchiveKind::Zip),
    }
}

/// Smallest segment when the caller asked for a number of parts rather than a size.
const MULTIPART_MIN_SEGMENT: u64 = 256 * 1024;

/// What to download and where to put it.
#[derive(Debug, Clone)]
pub struct DownloadRequest {
    /// The URL of the whole file. Ignored when `part_urls` is non-empty (it may be empty then).
    pub url: String,
    /// Explicit multipart download: these URLs are fetched (in parallel, up to
    /// `max_connections`) and concatenated in this order. Every part must report its
    /// length (`Content-Length` or `Content-Range`), because parts are written at their
    /// offsets in the destination.
    pub part_urls: Vec<String>,
    /// Where the finished file is published (parent directories are created).
    pub destination: PathBuf,
    /// Expected sha256 of the whole file (hex, any case).
    pub sha256: Option<String>,
    /// Upper bound on simultaneous HTTP transfers.
    pub max_connections: usize,
    /// Smallest segment a ranged single-URL download is split into.
    pub min_segment_size: u64,
    /// Extract the downloaded archive into this directory (replacing it) after publishing.
    pub unarchive: Option<PathBuf>,
    /// The archive's format when its name does not say (`None`: from the destination's name).
    pub archive_kind: Option<ArchiveKind>,
    /// Set to stop the transfer (from another thread); the call then fails with
    /// [`DownloadError::Cancelled`] and leaves the part file to resume.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl DownloadRequest {
    /// The transfer a client's fetch asks for (no unpacking: the daemon unpacks itself).
    pub fn from_fetch(request: &zccache_download_client::FetchRequest) -> Self {
        let (max_connections, min_segment_size) = tuning(
            request.max_connections,
            request.min_segment_size,
            request.multipart_parts,
        );
        DownloadRequest {
            url: request.source_url.clone(),
            part_urls: request.part_urls.clone(),
            destination: request.destination_path.clone(),
            sha256: request.expected_sha256.clone(),
            max_connections,
            min_segment_size,
            unarchive: None,
            archive_kind: None,
            cancel: None,
        }
    }

    /// A single-URL request with default tuning.
    pub fn new(url: impl Into<String>, destination: impl Into<PathBuf>) -> Self {
        DownloadRequest {
            url: url.into(),
            part_urls: Vec::new(),
            destination: destination.into(),
            sha256: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            min_segment_size: DEFAULT_MIN_SEGMENT_SIZE,
            unarchive: None,
            archive_kind: None,
            cancel: None,
        }
    }
}

/// What a successful download produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// The published file (equal to the request's destination).
    pub path: PathBuf,
    /// Lowercase hex sha256 of the published file.
    pub sha256: String,
    /// Size of the published file.
    pub bytes: u64,
    /// Largest number of HTTP transfers that ran at the same time for the body
    /// (the length probe is not counted; 0 if a resumed file was already complete).
    pub connections_used: usize,
    /// Bytes already present from an earlier interrupted call and not fetched again.
    pub resumed_from: u64,
    /// The extraction directory, when `unarchive` was requested.
    pub unarchived_to: Option<PathBuf>,
}

/// Downloads according to `request`, blocking the calling thread.
///
/// `progress`, if given, is called from the calling thread with
/// `(bytes present so far, total length if known)`.
///
/// This builds its own tokio runtime, so it must not be called from inside an async
/// context (use `spawn_blocking` there).
pub fn download(
    request: &DownloadRequest,
    progress: Option<&dyn Fn(u64, Option<u64>)>,
) -> Result<Downloaded, DownloadError> {
    let kind = engine::validate(request)?;
    let workers = request.max_connections.clamp(1, 4);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(|e| DownloadError::io(&request.destination, "start tokio runtime for", e))?;
    let mut done = runtime.block_on(async {
        match &request.cancel {
            None => engine::run(request, progress).await,
            // Dropping the transfer's future aborts its connections (their tasks live in a
            // JoinSet owned by it).
            Some(flag) => tokio::select! {
                done = engine::run(request, progress) => done,
                () = cancelled(flag) => Err(DownloadError::Cancelled {
                    url: request.url.clone(),
                }),
            },
        }
    })?;
    drop(runtime);
    if request
        .cancel
        .as_ref()
        .is_some_and(|c| c.load(Ordering::Relaxed))
    {
        return Err(DownloadError::Cancelled {
            url: request.url.clone(),
        });
    }
    if let (Some(dir), Some(kind)) = (&request.unarchive, kind) {
        archive::extract(&done.path, kind, dir)?;
        done.unarchived_to = Some(dir.clone());
    }
    Ok(done)
}

/// Resolves once `flag` is set (checked every 50 ms: a cancel is a human's action).
async fn cancelled(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
