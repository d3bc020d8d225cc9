//! The async download machinery behind [`crate::download`].

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_RANGE, ETAG, LAST_MODIFIED, RANGE};
use reqwest::{Client, Response, StatusCode};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::archive::ArchiveKind;
use crate::error::DownloadError;
use crate::sidecar::{self, Segment, Sidecar, Source};
use crate::{DownloadRequest, Downloaded};

/// How many bytes a segment writes between sidecar saves: often enough that an
/// interruption loses little, rarely enough that the JSON rewrite costs nothing.
const SAVE_EVERY: u64 = 2 * 1024 * 1024;
const PROGRESS_TICK: Duration = Duration::from_millis(200);

/// Checks the request before any network or disk activity and returns the archive
/// kind to extract, so an unsupported archive name fails before downloading anything.
pub(crate) fn validate(req: &DownloadRequest) -> Result<Option<ArchiveKind>, DownloadError> {
    if req.part_urls.is_empty() && req.url.is_empty() {
        return Err(DownloadError::InvalidRequest(
            "neither url nor part_urls given".into(),
        ));
    }
    if req.max_connections == 0 {
        return Err(DownloadError::InvalidRequest(
            "max_connections must be at least 1".into(),
        ));
    }
    if req.min_segment_size == 0 {
        return Err(DownloadError::InvalidRequest(
            "min_segment_size must be at least 1".into(),
        ));
    }
    if req.destination.file_name().is_none() {
        return Err(DownloadError::InvalidRequest(format!(
            "destination {} has no file name",
            req.destination.display()
        )));
    }
    if let Some(expected) = &req.sha256 {
        if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DownloadError::InvalidRequest(format!(
                "sha256 {expected:?} is not 64 hex digits"
            )));
        }
    }
    match &req.unarchive {
        None => Ok(None),
        Some(_) if req.archive_kind.is_some() => Ok(req.archive_kind),
        Some(_) => ArchiveKind::from_path(&req.destination)
            .map(Some)
            .ok_or_else(|| {
                DownloadError::InvalidRequest(format!(
                    "cannot unarchive {}: unknown archive type (expected .tar, .tar.gz, .tgz, .tar.xz, .tar.zst or .zip)",
                    req.destination.display()
                ))
            }),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn transport(url: &str, err: reqwest::Error) -> DownloadError {
    // The Display of reqwest errors hides the cause chain; include it.
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    DownloadError::Transport {
        url: url.to_string(),
        message,
    }
}

fn protocol(url: &str, message: String) -> DownloadError {
    DownloadError::Protocol {
        url: url.to_string(),
        message,
    }
}

fn header_string(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_string(headers, CONTENT_LENGTH).and_then(|v| v.trim().parse().ok())
}

/// A parsed `Content-Range`: the inclusive byte range (if not `*`) and the total (if not `*`).
type ContentRange = (Option<(u64, u64)>, Option<u64>);

/// Parses `bytes START-END/TOTAL` (or `bytes */TOTAL`).
fn content_range(headers: &HeaderMap) -> Option<ContentRange> {
    let value = header_string(headers, CONTENT_RANGE)?;
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let range = match range.trim() {
        "*" => None,
        r => {
            let (a, b) = r.split_once('-')?;
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        }
    };
    Some((range, total))
}

/// What the range probe learned.
enum Probe {
    /// The server honours ranges (or the body is empty); the source is resumable.
    Ranged(Source),
    /// The server ignored the range and is sending the whole body in this response.
    Whole {
        response: Response,
        length: Option<u64>,
    },
}

/// `GET` with `Range: bytes=0-0`: a 206 proves range support and gives the length via
/// `Content-Range`; a 200 means no ranges, and its body is the whole file.
async fn probe(client: &Client, url: &str) -> Result<Probe, DownloadError> {
    let response = client
        .get(url)
        .header(RANGE, "bytes=0-0")
        .send()
        .await
        .map_err(|e| transport(url, e))?;
    let headers = response.headers();
    let etag = header_string(headers, ETAG);
    let last_modified = header_string(headers, LAST_MODIFIED);
    match response.status() {
        StatusCode::PARTIAL_CONTENT => {
            let length = match content_range(headers) {
                Some((Some((0, _)), Some(total))) => total,
                _ => {
                    return Err(protocol(
                        url,
                        format!(
                            "206 answer without a usable Content-Range ({:?})",
                            header_string(headers, CONTENT_RANGE)
                        ),
                    ))
                }
            };
            Ok(Probe::Ranged(Source {
                url: url.to_string(),
                length,
                etag,
                last_modified,
                ranges: true,
            }))
        }
        StatusCode::OK => {
            let length = content_length(headers);
            Ok(Probe::Whole { response, length })
        }
        // An empty file cannot satisfy `bytes=0-0`; `bytes */0` says so.
        StatusCode::RANGE_NOT_SATISFIABLE
            if matches!(content_range(headers), Some((None, Some(0)))) =>
        {
            Ok(Probe::Ranged(Source {
                url: url.to_string(),
                length: 0,
                etag,
                last_modified,
                ranges: true,
            }))
        }
        status => Err(DownloadError::Http {
            url: url.to_string(),
            status: status.as_u16(),
        }),
    }
}

/// Splits one ranged source into up to `max_connections` segments of at least
/// `min_segment_size` bytes; below `2 * min_segment_size` one segment is used.
fn plan_segments(length: u64, max_connections: usize, min_segment_size: u64) -> Vec<Segment> {
    let count = if length >= min_segment_size.saturating_mul(2) {
        (length / min_segment_size)
            .min(max_connections as u64)
            .max(1)
    } else {
        1
    };
    let base = length / count;
    (0..count)
        .map(|i| {
            let start = i * base;
            let len = if i == count - 1 { length - start } else { base };
            Segment {
                source: 0,
                remote_start: start,
                file_start: start,
                len,
                done: 0,
            }
        })
        .collect()
}

pub(crate) async fn run(
    req: &DownloadRequest,
    progress: Option<&dyn Fn(u64, Option<u64>)>,
) -> Result<Downloaded, DownloadError> {
    let destination = req.destination.clone();
    if let Some(parent) = destination.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| DownloadError::io(parent, "create directory", e))?;
    }
    let part = with_suffix(&destination, ".part");
    let side = sidecar::sidecar_path(&part);
    let client = Client::builder()
        .user_agent(concat!("zccache-download/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| transport(&req.url, e))?;

    let (connections_used, resumed_from) = if req.part_urls.is_empty() {
        match probe(&client, &req.url).await? {
            Probe::Ranged(source) => {
                let segments =
                    plan_segments(source.length, req.max_connections, req.min_segment_size);
                let fresh = Sidecar::new(req.url.clone(), vec![source], segments);
                fetch_planned(&client, &part, &side, fresh, req.max_connections, progress).await?
            }
            Probe::Whole { response, length } => {
                // No range support: nothing can be resumed, so any old record is stale.
                sidecar::remove(&side);
                stream_whole(&req.url, response, length, &part, progress).await?;
                (1, 0)
            }
        }
    } else {
        let sources = probe_parts(&client, &req.part_urls, req.max_connections).await?;
        let mut offset = 0;
        let segments = sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let seg = Segment {
                    source: i,
                    remote_start: 0,
                    file_start: offset,
                    len: s.length,
                    done: 0,
                };
                offset += s.length;
                seg
            })
            .collect();
        let fresh = Sidecar::new(String::new(), sources, segments);
        fetch_planned(&client, &part, &side, fresh, req.max_connections, progress).await?
    };

    let (sha256, bytes) = finish(&part, &side, &destination, req.sha256.as_deref()).await?;
    Ok(Downloaded {
        path: destination,
        sha256,
        bytes,
        connections_used,
        resumed_from,
        unarchived_to: None,
    })
}

/// Probes every part URL (bounded by `max_connections`) for its length and range support.
async fn probe_parts(
    client: &Client,
    urls: &[String],
    max_connections: usize,
) -> Result<Vec<Source>, DownloadError> {
    let results: Vec<Result<Source, DownloadError>> = futures_util::stream::iter(urls)
        .map(|url| async move {
            match probe(client, url).await? {
                Probe::Ranged(source) => Ok(source),
                Probe::Whole { response, length } => {
                    let length = length.ok_or_else(|| {
                        protocol(url, "part did not report its length".to_string())
                    })?;
                    let headers = response.headers();
                    let source = Source {
                        url: url.clone(),
                        length,
                        etag: header_string(headers, ETAG),
                        last_modified: header_string(headers, LAST_MODIFIED),
                        ranges: false,
                    };
                    // The body is fetched again by the part's own transfer.
                    drop(response);
                    Ok(source)
                }
            }
        })
        .buffered(max_connections)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Downloads the segments of `fresh`, or of the sidecar on disk when it describes the
/// same remote content and the part file still has the right size.
/// Returns (connections used, bytes resumed).
async fn fetch_planned(
    client: &Client,
    part: &Path,
    side: &Path,
    fresh: Sidecar,
    max_connections: usize,
    progress: Option<&dyn Fn(u64, Option<u64>)>,
) -> Result<(usize, u64), DownloadError> {
    let part_len = std::fs::metadata(part).ok().map(|m| m.len());
    let (plan, file, resumed_from) = match sidecar::load(side) {
        Some(old) if old.matches(&fresh) && part_len == Some(old.total) => {
            let file = OpenOptions::new()
                .write(true)
                .open(part)
                .map_err(|e| DownloadError::io(part, "open part file", e))?;
            let resumed = old.completed_bytes();
            (old, file, resumed)
        }
        _ => {
            let file = File::create(part).map_err(|e| DownloadError::io(part, "create", e))?;
            file.set_len(fresh.total)
                .map_err(|e| DownloadError::io(part, "pre-size", e))?;
            (fresh, file, 0)
        }
    };
    let total = plan.total;
    // Record the plan before the first byte arrives, so even an early interruption
    // leaves a sidecar that matches the pre-sized part file.
    sidecar::save(side, &plan)?;

    let pending: Vec<usize> = (0..plan.segments.len())
        .filter(|&i| plan.segments[i].done < plan.segments[i].len)
        .collect();
    let connections_used = pending.len().min(max_connections);
    let written = Arc::new(AtomicU64::new(resumed_from));
    let file = Arc::new(file);
    let state = Arc::new(Mutex::new(plan));
    let permits = Arc::new(Semaphore::new(max_connections));
    let mut tasks = JoinSet::new();
    for index in pending {
        let job = SegmentJob {
            client: client.clone(),
            index,
            file: file.clone(),
            part: part.to_path_buf(),
            side: side.to_path_buf(),
            state: state.clone(),
            written: written.clone(),
        };
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .expect("semaphore never closed");
            job.run().await
        });
    }

    let mut first_error = None;
    let mut ticker = tokio::time::interval(PROGRESS_TICK);
    loop {
        tokio::select! {
            next = tasks.join_next() => match next {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    if first_error.is_none() {
                        first_error = Some(e);
                        // One failed transfer fails the call; stop the others promptly.
                        tasks.abort_all();
                    }
                }
                Some(Err(join)) if join.is_cancelled() => {}
                Some(Err(join)) => {
                    if first_error.is_none() {
                        first_error = Some(DownloadError::io(
                            part,
                            "download task panicked while writing",
                            std::io::Error::other(join.to_string()),
                        ));
                        tasks.abort_all();
                    }
                }
            },
            _ = ticker.tick(), if progress.is_some() => {
                if let Some(report) = progress {
                    report(written.load(Ordering::Relaxed), Some(total));
                }
            }
        }
    }
    // Persist exactly what was written, so the next call resumes from here.
    let snapshot = state.lock().expect("sidecar state lock").clone();
    sidecar::save(side, &snapshot)?;
    if let Some(e) = first_error {
        return Err(e);
    }
    if let Some(report) = progress {
        report(written.load(Ordering::Relaxed), Some(total));
    }
    Ok((connections_used, resumed_from))
}

/// One segment's transfer: a ranged `GET` (plain `GET` for a non-ranged part) whose
/// body is written at the segment's offset, recording progress in the shared plan.
struct SegmentJob {
    client: Client,
    index: usize,
    file: Arc<File>,
    part: PathBuf,
    side: PathBuf,
    state: Arc<Mutex<Sidecar>>,
    written: Arc<AtomicU64>,
}

impl SegmentJob {
    async fn run(self) -> Result<(), DownloadError> {
        let (segment, source) = {
            let mut state = self.state.lock().expect("sidecar state lock");
            let source = state.sources[state.segments[self.index].source].clone();
            if !source.ranges {
                // Without ranges a partial segment cannot be continued, only redone.
                state.segments[self.index].done = 0;
            }
            (state.segments[self.index].clone(), source)
        };
        let url = source.url.as_str();
        let start = segment.remote_start + segment.done;
        let end = segment.remote_start + segment.len - 1;
        let mut request = self.client.get(url);
        if source.ranges {
            request = request.header(RANGE, format!("bytes={start}-{end}"));
        }
        let response = request.send().await.map_err(|e| transport(url, e))?;
        let status = response.status();
        if source.ranges {
            if status != StatusCode::PARTIAL_CONTENT {
                return Err(if status.is_success() {
                    protocol(
                        url,
                        format!("asked for bytes {start}-{end}, got status {status}"),
                    )
                } else {
                    DownloadError::Http {
                        url: url.to_string(),
                        status: status.as_u16(),
                    }
                });
            }
            match content_range(response.headers()) {
                Some((Some((s, e)), _)) if s == start && e == end => {}
                other => {
                    return Err(protocol(
                        url,
                        format!("asked for bytes {start}-{end}, got Content-Range {other:?}"),
                    ))
                }
            }
        } else if status != StatusCode::OK {
            return Err(DownloadError::Http {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }

        let limit = segment.file_start + segment.len;
        let mut position = segment.file_start + segment.done;
        let mut unsaved = 0u64;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| transport(url, e))?;
            let len = chunk.len() as u64;
            if position + len > limit {
                return Err(protocol(
                    url,
                    format!("sent more than the {} bytes requested", segment.len),
                ));
            }
            zccache_platform::fs::write_all_at(&self.file, &chunk, position)
                .map_err(|e| DownloadError::io(&self.part, "write", e))?;
            position += len;
            unsaved += len;
            self.written.fetch_add(len, Ordering::Relaxed);
            let mut state = self.state.lock().expect("sidecar state lock");
            state.segments[self.index].done += len;
            if unsaved >= SAVE_EVERY {
                unsaved = 0;
                sidecar::save(&self.side, &state)?;
            }
        }
        if position != limit {
            return Err(protocol(
                url,
                format!(
                    "body ended after {} of {} bytes",
                    position - segment.file_start,
                    segment.len
                ),
            ));
        }
        Ok(())
    }
}

/// Streams a response that is the whole file (no range support) into a fresh part file.
async fn stream_whole(
    url: &str,
    response: Response,
    length: Option<u64>,
    part: &Path,
    progress: Option<&dyn Fn(u64, Option<u64>)>,
) -> Result<(), DownloadError> {
    let mut file = File::create(part).map_err(|e| DownloadError::io(part, "create", e))?;
    let mut written = 0u64;
    let mut stream = response.bytes_stream();
    let mut ticker = tokio::time::interval(PROGRESS_TICK);
    loop {
        let chunk = tokio::select! {
            chunk = stream.next() => chunk,
            _ = ticker.tick(), if progress.is_some() => {
                if let Some(report) = progress {
                    report(written, length);
                }
                continue;
            }
        };
        let Some(chunk) = chunk else { break };
        let chunk = chunk.map_err(|e| transport(url, e))?;
        file.write_all(&chunk)
            .map_err(|e| DownloadError::io(part, "write", e))?;
        written += chunk.len() as u64;
    }
    if let Some(expected) = length {
        if written != expected {
            return Err(protocol(
                url,
                format!("body ended after {written} of {expected} bytes"),
            ));
        }
    }
    if let Some(report) = progress {
        report(written, length);
    }
    Ok(())
}

/// Hashes the finished part file, checks the expected digest, then publishes it by
/// rename. On a mismatch the part file and sidecar are deleted: the bytes are wrong,
/// so resuming them would only reproduce the mismatch.
async fn finish(
    part: &Path,
    side: &Path,
    destination: &Path,
    expected: Option<&str>,
) -> Result<(String, u64), DownloadError> {
    let part_owned = part.to_path_buf();
    let (actual, bytes) = tokio::task::spawn_blocking(move || hash_file(&part_owned))
        .await
        .map_err(|e| DownloadError::io(part, "hash", std::io::Error::other(e.to_string())))??;
    if let Some(expected) = expected {
        if !expected.eq_ignore_ascii_case(&actual) {
            let _ = std::fs::remove_file(part);
            sidecar::remove(side);
            return Err(DownloadError::Sha256Mismatch {
                path: destination.to_path_buf(),
                expected: expected.to_ascii_lowercase(),
                actual,
            });
        }
    }
    // Opened for writing: Windows flushes only through a handle with write access.
    OpenOptions::new()
        .write(true)
        .open(part)
        .and_then(|f| f.sync_all())
        .map_err(|e| DownloadError::io(part, "sync", e))?;
    std::fs::rename(part, destination)
        .map_err(|e| DownloadError::io(destination, "publish (rename part file to)", e))?;
    sidecar::remove(side);
    Ok((actual, bytes))
}

fn hash_file(path: &Path) -> Result<(String, u64), DownloadError> {
    let mut file = File::open(path).map_err(|e| DownloadError::io(path, "open", e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1024 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| DownloadError::io(path, "read", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_the_file_exactly() {
        for (length, max, min) in [(40u64 << 20, 8, 1 << 20), (10, 8, 4), (7, 8, 4), (0, 8, 1)] {
            let segments = plan_segments(length, max, min);
            assert!(segments.len() <= max);
            let mut next = 0;
            for s in &segments {
                assert_eq!(s.file_start, next);
                next += s.len;
            }
            assert_eq!(next, length);
        }
        assert_eq!(plan_segments(40 << 20, 8, 1 << 20).len(), 8);
        assert_eq!(plan_segments(7, 8, 4).len(), 1);
    }

    #[test]
    fn content_range_parses() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_RANGE, "bytes 0-0/1234".parse().unwrap());
        assert_eq!(content_range(&headers), Some((Some((0, 0)), Some(1234))));
        headers.insert(CONTENT_RANGE, "bytes */0".parse().unwrap());
        assert_eq!(content_range(&headers), Some((None, Some(0))));
    }
}
