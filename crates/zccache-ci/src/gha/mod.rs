//! GitHub Actions' cache, without `actions/cache`: the service's v2 API ([`service`]), the blob
//! store it signs URLs for ([`blob`]), archives laid out as `@actions/cache` lays them out
//! ([`archive`]), and zccache's own cache saved as a chain of packs ([`layer`]).
//!
//! Nothing here fails a job on its own: callers report a [`GhaError`] and go on building.

pub mod archive;
pub mod blob;
pub mod layer;
pub mod service;

pub use service::{CacheService, Found, Runtime};

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum GhaError {
    /// Not in a job with a cache runtime (variables missing).
    Unavailable(String),
    /// The token may not do this (401/403): a read-only token, as pull requests from forks get.
    Denied(String),
    /// 429 after every retry.
    Throttled(String),
    /// The entry exists (409): another job saved the same key and version.
    Conflict,
    /// The service could not be reached.
    Unreachable(String),
    /// The service refused or answered something unexpected.
    Service(String),
    /// The blob store refused or broke off.
    Storage(String),
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Bad input (no path to cache exists).
    Input(String),
    /// An archive member that would be written outside the paths being restored.
    Unsafe { archive: PathBuf, entry: String },
}

impl GhaError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> GhaError {
        GhaError::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}

impl fmt::Display for GhaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GhaError::Unavailable(why) => write!(f, "GitHub Actions cache not available: {why}"),
            GhaError::Denied(what) => write!(
                f,
                "the cache service refused the token ({what}): it may only read caches here \
                 (e.g. a pull request from a fork)"
            ),
            GhaError::Throttled(what) => write!(f, "the cache service kept throttling: {what}"),
            GhaError::Conflict => write!(f, "the cache entry already exists"),
            GhaError::Unreachable(what) => write!(f, "cache service unreachable: {what}"),
            GhaError::Service(what) => write!(f, "cache service: {what}"),
            GhaError::Storage(what) => write!(f, "cache storage: {what}"),
            GhaError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            GhaError::Input(what) => f.write_str(what),
            GhaError::Unsafe { archive, entry } => write!(
                f,
                "{}: member {entry:?} would be written outside the paths being restored; \
                 restore stopped",
                archive.display()
            ),
        }
    }
}

impl std::error::Error for GhaError {}

/// What a save did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// Uploaded: the archive's size and the number of members.
    Uploaded { bytes: u64, entries: u64 },
    /// The key already had an entry at this version; nothing uploaded.
    Exists,
}

/// A scratch directory for archives: the runner's temporary directory when there is one.
pub fn scratch_dir() -> Result<tempfile::TempDir, GhaError> {
    let base = std::env::var_os("RUNNER_TEMP")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let _ = std::fs::create_dir_all(&base);
    tempfile::Builder::new()
        .prefix("zccache-gha-")
        .tempdir_in(&base)
        .map_err(|e| GhaError::io(&base, e))
}

/// The directory archive members are named relative to: `$GITHUB_WORKSPACE`, else `cwd`.
pub fn workspace(cwd: &Path) -> PathBuf {
    std::env::var_os("GITHUB_WORKSPACE")
        .filter(|v| !v.is_empty())
        .map(|w| archive::resolve(&w.to_string_lossy(), cwd))
        .unwrap_or_else(|| cwd.to_path_buf())
}

/// Saves `paths` under `key`, as `actions/cache` would (same version, same archive).
pub fn save(
    service: &CacheService,
    key: &str,
    paths: &[String],
    cwd: &Path,
) -> Result<Saved, GhaError> {
    let scratch = scratch_dir()?;
    let file = scratch.path().join("cache.tzst");
    let packed = archive::pack(paths, &workspace(cwd), cwd, &file)?;
    let version = archive::version(paths);
    let Some(url) = service.create(key, &version)? else {
        return Ok(Saved::Exists);
    };
    let bytes = blob::upload(&url, &file)?;
    service.finalize(key, &version, bytes)?;
    Ok(Saved::Uploaded {
        bytes,
        entries: packed.entries,
    })
}

/// Restores `paths` from `key` or the first restore key that matches; the key restored.
pub fn restore(
    service: &CacheService,
    key: &str,
    restore_keys: &[String],
    paths: &[String],
    cwd: &Path,
) -> Result<Option<(String, u64)>, GhaError> {
    let version = archive::version(paths);
    let Some(found) = service.lookup(key, restore_keys, &version)? else {
        return Ok(None);
    };
    let scratch = scratch_dir()?;
    let file = scratch.path().join("cache.tzst");
    let bytes = blob::download(&found.download_url, &file)?;
    archive::unpack(&file, paths, &workspace(cwd), cwd)?;
    Ok(Some((found.matched_key, bytes)))
}
