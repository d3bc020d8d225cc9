//! `zccache fp`: whether a step's input files changed since it last succeeded (see
//! `zccache_ci::fp`). A running daemon answers `check` from its watcher's state (no scan when
//! nothing changed); without one the files are scanned here, with the same answers.

use crate::client::fail;
use crate::client::Endpoint;
use std::path::Path;
use zccache_protocol::{FpCheckRequest, Request, Response};

/// Asks a running daemon (never starts one); `None` when there is none or it cannot answer.
fn check_in_daemon(endpoint: &Endpoint, request: FpCheckRequest) -> Option<(bool, bool)> {
    let mut connection = endpoint.connect().ok()?;
    connection
        .set_timeout(Some(std::time::Duration::from_secs(120)))
        .ok()?;
    match connection.call(&Request::FpCheck(request)) {
        Ok(Response::FpChecked {
            changed,
            listed_from_watch,
        }) => Some((changed, listed_from_watch)),
        Ok(Response::Error(e)) => {
            eprintln!("zccache: fp check in the daemon: {e}; scanning instead");
            None
        }
        _ => None,
    }
}

/// `zccache fp`: a check that cannot decide (a bad pattern, an unreadable file) says "run":
/// skipping a step on a guess could hide a change.
pub(crate) fn main(
    endpoint: &Endpoint,
    cache_file: &Path,
    cache_type: &str,
    command: crate::commands::FpCmd,
) -> i32 {
    use crate::commands::FpCmd;
    use zccache_ci::fp;
    let Some(kind) = fp::CacheType::parse(cache_type) else {
        eprintln!("zccache: --cache-type {cache_type:?}: expected hash or two-layer");
        return 2;
    };
    let result = match command {
        FpCmd::Check {
            root,
            ext,
            include,
            exclude,
        } => {
            let cwd = std::env::current_dir().unwrap_or_default();
            let selection = fp::Selection {
                root: cwd.join(root),
                include,
                ext,
                exclude,
            };
            let request = FpCheckRequest {
                cache_file: cwd.join(cache_file).as_os_str().as_encoded_bytes().to_vec(),
                cache_type: cache_type.to_string(),
                root: selection.root.as_os_str().as_encoded_bytes().to_vec(),
                include: selection.include.clone(),
                ext: selection.ext.clone(),
                exclude: selection.exclude.clone(),
            };
            if let Some((changed, watched)) = check_in_daemon(endpoint, request) {
                let how = if watched {
                    "daemon, watched"
                } else {
                    "daemon, scanned"
                };
                return say(changed, how);
            }
            return match fp::check(cache_file, kind, &selection) {
                Ok(changed) => say(changed, "scanned"),
                Err(e) => {
                    eprintln!("zccache: fp check: {e}; running the step");
                    0
                }
            };
        }
        FpCmd::MarkSuccess => fp::mark_success(cache_file).map(|pending| {
            if !pending {
                eprintln!("zccache: fp mark-success: no check was pending");
            }
        }),
        FpCmd::MarkFailure => fp::mark_failure(cache_file),
        FpCmd::Invalidate => fp::invalidate(cache_file),
    };
    match result {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

/// Reports a check's answer on stderr and gives its exit code: 0 run, 1 skip.
fn say(changed: bool, how: &str) -> i32 {
    if changed {
        eprintln!("zccache fp: run (files changed or no success recorded; {how})");
        0
    } else {
        eprintln!("zccache fp: skip (no changes; {how})");
        1
    }
}
