//! Error type. Every variant names the URL, HTTP status or file involved, because a
//! daemon reporting "download failed" without saying *what* failed is useless.

use std::fmt;
use std::path::PathBuf;

/// Why a download (or its unarchiving) failed.
#[derive(Debug)]
pub enum DownloadError {
    /// The request itself is unusable (e.g. no URL, zero connections, unknown archive type).
    InvalidRequest(String),
    /// The server answered with an unexpected HTTP status.
    Http { url: String, status: u16 },
    /// The connection failed or the body stream broke off.
    Transport { url: String, message: String },
    /// The server's answer was inconsistent (wrong length, bad `Content-Range`, ...).
    Protocol { url: String, message: String },
    /// A local file operation failed.
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// The finished file's digest does not match the requested one; nothing was published.
    Sha256Mismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// The transfer was cancelled; what was written stays for a later call to resume.
    Cancelled { url: String },
    /// The archive could not be read.
    Archive { archive: PathBuf, message: String },
    /// The archive contains an entry that would escape the extraction directory
    /// (absolute path, `..`, a link pointing outside, or a write through a symlink).
    UnsafeArchiveEntry {
        archive: PathBuf,
        entry: String,
        reason: String,
    },
}

impl DownloadError {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        DownloadError::Io {
            path: path.into(),
            action,
            source,
        }
    }
}

impl fmt::Display for DownloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownloadError::InvalidRequest(msg) => write!(f, "invalid download request: {msg}"),
            DownloadError::Http { url, status } => write!(f, "GET {url}: HTTP status {status}"),
            DownloadError::Transport { url, message } => write!(f, "GET {url}: {message}"),
            DownloadError::Protocol { url, message } => {
                write!(f, "GET {url}: unexpected server answer: {message}")
            }
            DownloadError::Io {
                path,
                action,
                source,
            } => write!(f, "{action} {}: {source}", path.display()),
            DownloadError::Sha256Mismatch {
                path,
                expected,
                actual,
            } => write!(
                f,
                "sha256 mismatch for {}: expected {expected}, actual {actual}",
                path.display()
            ),
            DownloadError::Cancelled { url } => write!(f, "GET {url}: cancelled"),
            DownloadError::Archive { archive, message } => {
                write!(f, "archive {}: {message}", archive.display())
            }
            DownloadError::UnsafeArchiveEntry {
                archive,
                entry,
                reason,
            } => write!(
                f,
                "archive {}: refusing entry {entry:?}: {reason}",
                archive.display()
            ),
        }
    }
}

impl std::error::Error for DownloadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DownloadError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
