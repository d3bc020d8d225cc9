//! `zccache._native`: what the Python module does in Rust. Each call talks to the daemon over
//! its socket through the same client code as the `zccache` command (no process per call),
//! checks a fingerprint with the command's code and state file, or converts a sketch; answers are the JSON objects of the command's `--json`, which the
//! Python side turns into dataclasses. Failures are `ZcCacheError` (a `RuntimeError`) with
//! the command's wording.

use pyo3::create_exception;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use std::path::PathBuf;
use zccache_client::Endpoint;
use zccache_core::Config;
use zccache_protocol::{Request, Response, SessionStartRequest};

mod downloads;
mod watcher;

create_exception!(_native, ZcCacheError, PyRuntimeError);

pub(crate) fn error(message: impl std::fmt::Display) -> PyErr {
    ZcCacheError::new_err(message.to_string())
}

/// The endpoint of the cache root `cache_dir` (else the environment's, as the command
/// reads it), starting `daemon` when one is needed.
fn endpoint(cache_dir: Option<PathBuf>, daemon: Option<PathBuf>) -> PyResult<Endpoint> {
    let mut config = Config::from_process().map_err(error)?;
    if let Some(dir) = cache_dir {
        config.cache_dir = dir;
    }
    let endpoint = Endpoint::new(&config);
    Ok(match daemon {
        Some(daemon) => endpoint.with_daemon_binary(daemon),
        None => endpoint,
    })
}

fn ask(py: Python<'_>, endpoint: &Endpoint, start: bool, request: Request) -> PyResult<Response> {
    py.allow_threads(|| endpoint.request(start, &request))
        .map_err(|e| error(format!("the daemon is unreachable: {e}")))
}

/// Starts the daemon (if none runs); true when one answers.
#[pyfunction]
#[pyo3(signature = (cache_dir=None, daemon=None))]
fn start(py: Python<'_>, cache_dir: Option<PathBuf>, daemon: Option<PathBuf>) -> PyResult<bool> {
    let endpoint = endpoint(cache_dir, daemon)?;
    py.allow_threads(|| endpoint.connect_or_start())
        .map(|_| true)
        .map_err(|e| error(format!("cannot start the daemon: {e}")))
}

/// Stops the daemon; false when none was running.
#[pyfunction]
#[pyo3(signature = (cache_dir=None))]
fn stop(py: Python<'_>, cache_dir: Option<PathBuf>) -> PyResult<bool> {
    let endpoint = endpoint(cache_dir, None)?;
    Ok(py.allow_threads(|| endpoint.stop_daemon()))
}

/// `status --json`: the running daemon's report, or `running: false` and why.
#[pyfunction]
#[pyo3(signature = (cache_dir=None))]
fn status(py: Python<'_>, cache_dir: Option<PathBuf>) -> PyResult<String> {
    let endpoint = endpoint(cache_dir, None)?;
    let value = match py.allow_threads(|| endpoint.request(false, &Request::Status)) {
        Ok(Response::Status(report)) => zccache_client::status_json(&report),
        Ok(other) => return Err(error(format!("unexpected reply {other:?}"))),
        Err(_) => zccache_client::not_running_json(&endpoint),
    };
    Ok(value.to_string())
}

/// Starts a session (and the daemon if needed); its id.
#[pyfunction]
#[pyo3(signature = (owner_pid, journal=None, log=None, cache_dir=None, daemon=None))]
fn session_start(
    py: Python<'_>,
    owner_pid: u32,
    journal: Option<String>,
    log: Option<String>,
    cache_dir: Option<PathBuf>,
    daemon: Option<PathBuf>,
) -> PyResult<String> {
    let endpoint = endpoint(cache_dir, daemon)?;
    let request = Request::SessionStart(SessionStartRequest {
        owner_pid,
        journal,
        log,
    });
    match ask(py, &endpoint, true, request)? {
        Response::SessionStarted { id } => Ok(id),
        Response::Error(message) => Err(error(format!("cannot start a session: {message}"))),
        other => Err(error(format!("unexpected reply {other:?}"))),
    }
}

/// `session-stats --json` (`end` false) or `session-end --json` (`end` true).
#[pyfunction]
#[pyo3(signature = (id, end=false, cache_dir=None))]
fn session_report(
    py: Python<'_>,
    id: String,
    end: bool,
    cache_dir: Option<PathBuf>,
) -> PyResult<String> {
    let endpoint = endpoint(cache_dir, None)?;
    let request = if end {
        Request::SessionEnd { id }
    } else {
        Request::SessionStats { id }
    };
    match ask(py, &endpoint, false, request)? {
        Response::Session(report) => Ok(zccache_client::session_json(&report).to_string()),
        Response::Error(message) => Err(error(message)),
        other => Err(error(format!("unexpected reply {other:?}"))),
    }
}

/// `zccache fp check`, scanning here: (run it, the files changed since the last success, no
/// success recorded). The state file is the command's.
#[pyfunction]
#[pyo3(signature = (cache_file, cache_type, root, include, exclude, ext))]
fn fp_check(
    py: Python<'_>,
    cache_file: PathBuf,
    cache_type: &str,
    root: PathBuf,
    include: Vec<String>,
    exclude: Vec<String>,
    ext: Vec<String>,
) -> PyResult<(bool, Vec<String>, bool)> {
    use zccache_ci::fp;
    let kind = fp::CacheType::parse(cache_type).ok_or_else(|| {
        error(format!(
            "cache_type {cache_type:?}: expected \"hash\" or \"two-layer\""
        ))
    })?;
    let selection = fp::Selection {
        root,
        include,
        ext,
        exclude,
    };
    let decision = py
        .allow_threads(|| fp::check_decision(&cache_file, kind, &selection))
        .map_err(error)?;
    Ok((decision.changed, decision.changed_files, decision.first_run))
}

/// `zccache fp mark-success`; whether a check was pending.
#[pyfunction]
fn fp_mark_success(cache_file: PathBuf) -> PyResult<bool> {
    zccache_ci::fp::mark_success(&cache_file).map_err(error)
}

/// `zccache fp mark-failure`.
#[pyfunction]
fn fp_mark_failure(cache_file: PathBuf) -> PyResult<()> {
    zccache_ci::fp::mark_failure(&cache_file).map_err(error)
}

/// `zccache fp invalidate`.
#[pyfunction]
fn fp_invalidate(cache_file: PathBuf) -> PyResult<()> {
    zccache_ci::fp::invalidate(&cache_file).map_err(error)
}

/// Converts the sketch `src` into `dst` (see `zccache ino`); the prototypes added.
#[pyfunction]
#[pyo3(signature = (src, dst, arduino_include=true))]
fn convert_ino(src: PathBuf, dst: PathBuf, arduino_include: bool) -> PyResult<Vec<String>> {
    let options = zccache_ino::Options { arduino_include };
    zccache_ino::convert_file(&src, &dst, &options)
        .map(|converted| converted.prototypes)
        .map_err(error)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ZcCacheError", m.py().get_type::<ZcCacheError>())?;
    m.add("PROTOCOL_VERSION", zccache_protocol::PROTOCOL_VERSION)?;
    m.add_function(wrap_pyfunction!(start, m)?)?;
    m.add_function(wrap_pyfunction!(stop, m)?)?;
    m.add_function(wrap_pyfunction!(status, m)?)?;
    m.add_function(wrap_pyfunction!(session_start, m)?)?;
    m.add_function(wrap_pyfunction!(session_report, m)?)?;
    m.add_function(wrap_pyfunction!(convert_ino, m)?)?;
    m.add_class::<watcher::NativeWatcher>()?;
    m.add_function(wrap_pyfunction!(fp_check, m)?)?;
    m.add_function(wrap_pyfunction!(fp_mark_success, m)?)?;
    m.add_function(wrap_pyfunction!(fp_mark_failure, m)?)?;
    m.add_function(wrap_pyfunction!(fp_invalidate, m)?)?;
    downloads::register(m)?;
    Ok(())
}
