//! The resume record kept next to the part file (`<destination>.part.json`).
//!
//! It stores what the server said about each source (length and validators) and, per
//! segment, how many bytes from the segment's start have been written. A later call
//! only trusts it when the server still reports the same length and validators.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::DownloadError;

const SIDECAR_VERSION: u32 = 1;

/// What the server reported for one URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Source {
    pub url: String,
    pub length: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Whether the server answered a range probe with 206; only such sources resume.
    pub ranges: bool,
}

/// A contiguous piece of the destination fetched by one transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Segment {
    /// Index into [`Sidecar::sources`].
    pub source: usize,
    /// Offset of the segment in the source's body.
    pub remote_start: u64,
    /// Offset of the segment in the destination file.
    pub file_start: u64,
    pub len: u64,
    /// Bytes written from the segment's start: `[file_start, file_start + done)` is complete.
    pub done: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sidecar {
    pub version: u32,
    /// The request's single URL (empty for multipart).
    pub url: String,
    pub sources: Vec<Source>,
    pub total: u64,
    pub segments: Vec<Segment>,
}

impl Sidecar {
    pub fn new(url: String, sources: Vec<Source>, segments: Vec<Segment>) -> Self {
        let total = sources.iter().map(|s| s.length).sum();
        Sidecar {
            version: SIDECAR_VERSION,
            url,
            sources,
            total,
            segments,
        }
    }

    pub fn completed_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.done).sum()
    }

    /// Whether this record describes the same remote content as `fresh` (a newly
    /// planned record from this call's probes).
    pub fn matches(&self, fresh: &Sidecar) -> bool {
        self.version == SIDECAR_VERSION
            && self.url == fresh.url
            && self.total == fresh.total
            && self.sources == fresh.sources
            && self.sources.iter().all(|s| s.ranges)
            && self.segments.iter().all(|s| {
                s.source < self.sources.len()
                    && s.done <= s.len
                    && s.file_start + s.len <= self.total
            })
    }
}

pub(crate) fn sidecar_path(part: &Path) -> PathBuf {
    let mut name = part.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// Reads a sidecar; any unreadable or unparsable record is treated as absent.
pub(crate) fn load(path: &Path) -> Option<Sidecar> {
    let data = std::fs::read(path).ok()?;
    serde_json::from_slice(&data).ok()
}

/// Writes the sidecar atomically (temp file + rename), so a crash never leaves a
/// half-written record that claims nothing or garbage.
pub(crate) fn save(path: &Path, sidecar: &Sidecar) -> Result<(), DownloadError> {
    let data = serde_json::to_vec_pretty(sidecar)
        .map_err(|e| DownloadError::io(path, "serialize", std::io::Error::other(e.to_string())))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, data).map_err(|e| DownloadError::io(&tmp, "write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| DownloadError::io(path, "rename sidecar to", e))
}

pub(crate) fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}
