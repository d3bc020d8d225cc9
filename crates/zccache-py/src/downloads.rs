//! The download daemon for `zccache.downloader`: each function is one call through
//! `zccache_download_client` (no process per call); answers are the JSON of
//! `zccache-download --json`, which the Python side turns into dataclasses. Failures are
//! `DownloadError` (a `ZcCacheError`), a daemon that is not running `DaemonNotRunning`.

use pyo3::create_exception;
use pyo3::prelude::*;
use std::path::PathBuf;
use zccache_download_client::{
    default_destination, ArchiveFormat, ClientError, DownloadClient, FetchRequest, WaitMode,
};

create_exception!(_native, DownloadError, crate::ZcCacheError);
create_exception!(_native, DaemonNotRunning, DownloadError);

fn failure(error: ClientError) -> PyErr {
    match error {
        ClientError::NotRunning { .. } => DaemonNotRunning::new_err(error.to_string()),
        other => DownloadError::new_err(other.to_string()),
    }
}

fn client(cache_dir: Option<PathBuf>, daemon: Option<PathBuf>) -> DownloadClient {
    let client = DownloadClient::new(cache_dir);
    match daemon {
        Some(exe) => client.with_daemon_binary(exe),
        None => client,
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Starts the download daemon unless it runs; true when this call started it.
#[pyfunction]
#[pyo3(signature = (cache_dir=None, daemon=None))]
fn dl_start(py: Python<'_>, cache_dir: Option<PathBuf>, daemon: Option<PathBuf>) -> PyResult<bool> {
    let client = client(cache_dir, daemon);
    py.allow_threads(|| client.start_daemon()).map_err(failure)
}

/// Stops it; false when none ran.
#[pyfunction]
#[pyo3(signature = (cache_dir=None))]
fn dl_stop(py: Python<'_>, cache_dir: Option<PathBuf>) -> PyResult<bool> {
    let client = client(cache_dir, None);
    py.allow_threads(|| client.stop_daemon()).map_err(failure)
}

/// The daemon's status as JSON (`{"running": false, …}` when it is not running).
#[pyfunction]
#[pyo3(signature = (cache_dir=None))]
fn dl_daemon_status(py: Python<'_>, cache_dir: Option<PathBuf>) -> PyResult<String> {
    let client = client(cache_dir, None);
    match py
        .allow_threads(|| client.daemon_status())
        .map_err(failure)?
    {
        Some(status) => Ok(json(&status)),
        None => Ok(serde_json::json!({"running": false, "socket": client.socket()}).to_string()),
    }
}

/// Fetches (blocking unless `background`); the final (or current) status as JSON.
#[pyfunction]
#[pyo3(signature = (
    source_url, destination=None, part_urls=Vec::new(), expanded=None, archive_format="auto",
    sha256=None, max_connections=None, min_segment_size=None, multipart_parts=None,
    wait=true, force=false, dry_run=false, background=false, cache_dir=None, daemon=None
))]
#[allow(clippy::too_many_arguments)]
fn dl_fetch(
    py: Python<'_>,
    source_url: String,
    destination: Option<PathBuf>,
    part_urls: Vec<String>,
    expanded: Option<PathBuf>,
    archive_format: &str,
    sha256: Option<String>,
    max_connections: Option<usize>,
    min_segment_size: Option<u64>,
    multipart_parts: Option<usize>,
    wait: bool,
    force: bool,
    dry_run: bool,
    background: bool,
    cache_dir: Option<PathBuf>,
    daemon: Option<PathBuf>,
) -> PyResult<String> {
    let client = client(cache_dir, daemon);
    let archive_format = ArchiveFormat::parse(archive_format).map_err(DownloadError::new_err)?;
    let destination_path =
        destination.unwrap_or_else(|| default_destination(client.root(), &source_url, &part_urls));
    let request = FetchRequest {
        source_url,
        part_urls,
        destination_path,
        destination_path_expanded: expanded,
        archive_format,
        expected_sha256: sha256,
        max_connections,
        min_segment_size,
        multipart_parts,
        wait_mode: if wait {
            WaitMode::Block
        } else {
            WaitMode::NoWait
        },
        force,
        dry_run,
        background,
    };
    let result = py
        .allow_threads(|| client.fetch(request))
        .map_err(failure)?;
    Ok(json(&result.detail))
}

/// What is at `destination` for `source_url`, as JSON.
#[pyfunction]
#[pyo3(signature = (source_url, destination, cache_dir=None))]
fn dl_exists(
    py: Python<'_>,
    source_url: String,
    destination: PathBuf,
    cache_dir: Option<PathBuf>,
) -> PyResult<String> {
    let client = client(cache_dir, None);
    let state = py
        .allow_threads(|| client.exists(&source_url, &destination))
        .map_err(failure)?;
    Ok(json(&state))
}

/// `status`, `wait` (with `timeout_ms`) or `cancel` of download `download_id`, as JSON.
#[pyfunction]
#[pyo3(signature = (action, download_id, timeout_ms=None, cache_dir=None))]
fn dl_handle(
    py: Python<'_>,
    action: &str,
    download_id: u64,
    timeout_ms: Option<u64>,
    cache_dir: Option<PathBuf>,
) -> PyResult<String> {
    let client = client(cache_dir, None);
    let status = py.allow_threads(|| {
        let mut handle = client.handle(download_id);
        match action {
            "status" => Ok(handle.status()),
            "wait" => Ok(handle.wait(timeout_ms)),
            "cancel" => Ok(handle.cancel()),
            other => Err(other.to_string()),
        }
    });
    match status {
        Ok(status) => Ok(json(&status.map_err(failure)?)),
        Err(other) => Err(DownloadError::new_err(format!(
            "unknown handle action {other:?}"
        ))),
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("DownloadError", m.py().get_type::<DownloadError>())?;
    m.add("DaemonNotRunning", m.py().get_type::<DaemonNotRunning>())?;
    m.add_function(wrap_pyfunction!(dl_start, m)?)?;
    m.add_function(wrap_pyfunction!(dl_stop, m)?)?;
    m.add_function(wrap_pyfunction!(dl_daemon_status, m)?)?;
    m.add_function(wrap_pyfunction!(dl_fetch, m)?)?;
    m.add_function(wrap_pyfunction!(dl_exists, m)?)?;
    m.add_function(wrap_pyfunction!(dl_handle, m)?)?;
    Ok(())
}
