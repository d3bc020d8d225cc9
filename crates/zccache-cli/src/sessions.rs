//! `session-start`, `session-stats`, `session-end`.

use crate::client::Endpoint;
use crate::commands::{counter_rows, line, request, Counters};
use std::path::{Path, PathBuf};
use zccache_protocol::{Request, Response, SessionReport, SessionStartRequest};

/// The variable a build exports so its compiles are counted to the session.
const SESSION_ENV: &str = "ZCCACHE_SESSION_ID";

pub fn start(
    endpoint: &Endpoint,
    log: Option<PathBuf>,
    journal: Option<PathBuf>,
    json: bool,
) -> i32 {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let absolute = |path: PathBuf| {
        if path.is_absolute() {
            path
        } else {
            cwd.join(path)
        }
    };
    let journal = journal.map(absolute);
    let log = log.map(absolute);
    if let Some(path) = &journal {
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            eprintln!(
                "zccache: session journal {} must end in .jsonl",
                path.display()
            );
            return 2;
        }
    }
    let text = |path: &Option<PathBuf>| path.as_ref().map(|p| p.display().to_string());
    let message = Request::SessionStart(SessionStartRequest {
        // The shell that runs the build: when it is gone, the session may expire.
        owner_pid: zccache_platform::process::parent_pid(),
        journal: text(&journal),
        log: text(&log),
    });
    match request(endpoint, true, &message) {
        Ok(Response::SessionStarted { id }) => {
            if json {
                let mut value = serde_json::json!({ "session_id": id });
                if let Some(path) = &journal {
                    value["journal_path"] = path.display().to_string().into();
                }
                if let Some(path) = &log {
                    value["log_path"] = path.display().to_string().into();
                }
                println!("{value}");
            } else {
                println!("export {SESSION_ENV}={id}");
            }
            0
        }
        Ok(Response::Error(message)) => {
            eprintln!("zccache: cannot start a session: {message}");
            1
        }
        Ok(other) => {
            eprintln!("zccache: unexpected reply {other:?}");
            1
        }
        Err(e) => {
            eprintln!("zccache: cannot start a session: the daemon is unreachable: {e}");
            1
        }
    }
}

/// `session-stats` (`end` false) and `session-end` (`end` true).
pub fn stats(endpoint: &Endpoint, id: Option<String>, json: bool, end: bool) -> i32 {
    let command = if end { "session-end" } else { "session-stats" };
    let Some(id) = id.or_else(|| std::env::var(SESSION_ENV).ok().filter(|v| !v.is_empty())) else {
        eprintln!("zccache: {command} needs a session id (or {SESSION_ENV} set)");
        return 2;
    };
    let message = if end {
        Request::SessionEnd { id: id.clone() }
    } else {
        Request::SessionStats { id: id.clone() }
    };
    let report = match request(endpoint, false, &message) {
        Ok(Response::Session(report)) => report,
        Ok(Response::Error(message)) => {
            eprintln!("zccache: {command}: {message}");
            return 1;
        }
        Ok(other) => {
            eprintln!("zccache: unexpected reply {other:?}");
            return 1;
        }
        Err(_) => {
            eprintln!(
                "zccache: {command}: no daemon is running for {}, so session {id} is gone",
                endpoint.root.path().display()
            );
            return 1;
        }
    };
    if let Some(why) = &report.expired {
        eprintln!("zccache: session {id} expired before it was ended: {why}");
    }
    if json {
        println!("{}", crate::client::session_json(&report));
    } else {
        print!("{}", render(&report));
    }
    0
}

/// The human-readable session table.
fn render(r: &SessionReport) -> String {
    let mut out = String::new();
    let state = match (&r.expired, r.ended) {
        (Some(_), _) => "expired",
        (None, true) => "ended",
        (None, false) => "open",
    };
    line(&mut out, "session", format!("{} ({state})", r.id));
    line(
        &mut out,
        "duration",
        format!("{:.1} s", r.duration_ms as f64 / 1000.0),
    );
    counter_rows(
        &mut out,
        &Counters {
            hits: r.hits,
            worktree_hits: r.worktree_hits,
            remote_hits: r.remote_hits,
            misses: r.misses,
            hit_rate: r.hit_rate(),
            time_saved_ms: r.time_saved_ms,
            errors: r.errors,
            non_cacheable: &r.non_cacheable,
            not_stored: &r.not_stored,
            worktree_fallbacks: &r.worktree_fallbacks,
        },
    );
    for (label, path) in [("journal", &r.journal_path), ("log", &r.log_path)] {
        if let Some(path) = path {
            line(&mut out, label, Path::new(path).display().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_table_shows_counts_and_state() {
        let report = SessionReport {
            id: "abc".into(),
            hits: 9,
            misses: 1,
            non_cacheable: vec![("link".into(), 2)],
            journal_path: Some("/b/build.jsonl".into()),
            ended: true,
            ..SessionReport::default()
        };
        let text = render(&report);
        for needle in ["abc (ended)", "90.0 %", "  link", "/b/build.jsonl"] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}
