//! Sessions: the statistics and journal of one build.
//!
//! `zccache session-start` opens one and prints its id; every compile whose environment
//! carries `ZCCACHE_SESSION_ID` is counted to it (as well as to the daemon's totals) and, when
//! the session has a journal or log, written there too. A session belongs to the process that
//! opened it (the build's shell): when that process is gone and no compile has come for the
//! session timeout, the session expires, its files are closed and its final report is kept
//! for a later `session-end`.

use crate::stats::Stats;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use zccache_protocol::{SessionReport, SessionStartRequest};

/// A session idle this long expires even if its owner is still running.
const MAX_IDLE: Duration = Duration::from_secs(24 * 3600);

/// Reports of expired sessions kept for a late `session-end`.
const EXPIRED_KEPT: usize = 64;

/// One build's counters and files.
pub(crate) struct Session {
    pub id: String,
    started_at: SystemTime,
    started: Instant,
    owner_pid: u32,
    pub stats: Stats,
    /// Milliseconds after `started` of the last compile counted to it.
    last_active_ms: AtomicU64,
    journal_path: Option<PathBuf>,
    log_path: Option<PathBuf>,
    /// The session's own journal and log, open until it ends; written by the journal thread.
    pub files: Mutex<SessionFiles>,
}

/// The files a session writes to.
#[derive(Default)]
pub(crate) struct SessionFiles {
    pub journal: Option<BufWriter<File>>,
    pub log: Option<BufWriter<File>>,
}

impl SessionFiles {
    fn close(&mut self) {
        for file in [self.journal.take(), self.log.take()].into_iter().flatten() {
            let mut file = file;
            let _ = file.flush();
        }
    }
}

impl Session {
    /// Marks the session as in use now.
    pub fn touch(&self) {
        self.last_active_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// The counters so far, as the client shows them.
    pub fn report(&self, ended: bool, expired: Option<String>) -> SessionReport {
        use std::sync::atomic::Ordering::Relaxed;
        SessionReport {
            id: self.id.clone(),
            started_at: self
                .started_at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
            duration_ms: self.started.elapsed().as_millis() as u64,
            hits: self.stats.hits.load(Relaxed),
            worktree_hits: self.stats.worktree_hits.load(Relaxed),
            misses: self.stats.misses.load(Relaxed),
            remote_hits: self.stats.remote_hits.load(Relaxed),
            remote_misses: self.stats.remote_misses.load(Relaxed),
            not_stored: self.stats.not_stored_counts(),
            non_cacheable: self.stats.non_cacheable_counts(),
            worktree_fallbacks: self.stats.worktree_fallback_counts(),
            errors: self.stats.errors.load(Relaxed),
            time_saved_ms: self.stats.time_saved_ms.load(Relaxed),
            journal_path: self.journal_path.as_ref().map(|p| p.display().to_string()),
            log_path: self.log_path.as_ref().map(|p| p.display().to_string()),
            ended,
            expired,
        }
    }
}

/// The open sessions, and the reports of recently expired ones.
pub(crate) struct Sessions {
    open: Mutex<HashMap<String, Arc<Session>>>,
    expired: Mutex<VecDeque<SessionReport>>,
    /// How long a session whose owner is gone may stay idle.
    timeout: Duration,
    /// Mode for the journal and log files a session creates.
    file_mode: u32,
    created: AtomicU64,
}

/// What `session-stats`/`session-end` found.
pub(crate) enum Lookup {
    Open(Arc<Session>),
    Expired(Box<SessionReport>),
    Unknown,
}

impl Sessions {
    pub fn new(timeout: Duration, file_mode: u32) -> Sessions {
        Sessions {
            open: Mutex::default(),
            expired: Mutex::default(),
            timeout,
            file_mode,
            created: AtomicU64::new(0),
        }
    }

    /// Opens a session, creating its journal and log files (appended to when they exist).
    pub fn start(&self, request: &SessionStartRequest) -> Result<Arc<Session>, String> {
        let journal_path = request.journal.as_deref().map(PathBuf::from);
        if let Some(path) = &journal_path {
            check_journal_path(path)?;
        }
        let log_path = request.log.as_deref().map(PathBuf::from);
        if let Some(path) = &log_path {
            if !path.is_absolute() {
                return Err(format!("log path {} is not absolute", path.display()));
            }
        }
        let open = |path: &Option<PathBuf>| -> Result<Option<BufWriter<File>>, String> {
            let Some(path) = path else { return Ok(None) };
            zccache_platform::fs::file_options_with_mode(self.file_mode)
                .create(true)
                .append(true)
                .open(path)
                .map(|file| Some(BufWriter::new(file)))
                .map_err(|e| format!("cannot open {}: {e}", path.display()))
        };
        let files = SessionFiles {
            journal: open(&journal_path)?,
            log: open(&log_path)?,
        };
        let id = self.new_id();
        let session = Arc::new(Session {
            id: id.clone(),
            started_at: SystemTime::now(),
            started: Instant::now(),
            owner_pid: request.owner_pid,
            stats: Stats::default(),
            last_active_ms: AtomicU64::new(0),
            journal_path,
            log_path,
            files: Mutex::new(files),
        });
        self.open.lock().insert(id, session.clone());
        tracing::info!(
            "session {} started (owner pid {})",
            session.id,
            request.owner_pid
        );
        Ok(session)
    }

    /// The open session a compile names, if any.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let session = self.open.lock().get(id).cloned()?;
        session.touch();
        Some(session)
    }

    /// An open or expired session by id, for `session-stats` (which, unlike a compile, does
    /// not keep a session from expiring).
    pub fn lookup(&self, id: &str) -> Lookup {
        if let Some(session) = self.open.lock().get(id).cloned() {
            return Lookup::Open(session);
        }
        match self.expired.lock().iter().find(|r| r.id == id) {
            Some(report) => Lookup::Expired(Box::new(report.clone())),
            None => Lookup::Unknown,
        }
    }

    /// Removes an open session, or an expired one's report, for `session-end`. The caller
    /// flushes what is queued for it and then calls [`Sessions::close`].
    pub fn take(&self, id: &str) -> Lookup {
        if let Some(session) = self.open.lock().remove(id) {
            return Lookup::Open(session);
        }
        let mut expired = self.expired.lock();
        match expired.iter().position(|r| r.id == id) {
            Some(index) => {
                Lookup::Expired(Box::new(expired.remove(index).expect("index in range")))
            }
            None => Lookup::Unknown,
        }
    }

    /// Closes the files of a session that ended or expired.
    pub fn close(&self, session: &Session) {
        session.files.lock().close();
    }

    /// Expires the sessions that were abandoned: owner gone and idle past the timeout, or idle
    /// past a day. Each moves to the expired reports in one step, so a `session-stats` never
    /// finds it in neither place. The caller flushes their journal lines and then closes their
    /// files with [`Sessions::close`].
    pub fn expire_abandoned(&self) -> Vec<Arc<Session>> {
        let mut open = self.open.lock();
        let mut gone = Vec::new();
        let mut reports = Vec::new();
        open.retain(|_, session| {
            let idle = session.idle();
            let reason = if idle >= MAX_IDLE {
                format!("no compile for {} s", idle.as_secs())
            } else if idle >= self.timeout && !process_alive(session.owner_pid) {
                format!(
                    "its build (pid {}) exited without session-end; no compile for {} s",
                    session.owner_pid,
                    idle.as_secs()
                )
            } else {
                return true;
            };
            tracing::warn!("session {} expired: {reason}", session.id);
            reports.push(session.report(true, Some(reason)));
            gone.push(session.clone());
            false
        });
        let mut expired = self.expired.lock();
        expired.extend(reports);
        while expired.len() > EXPIRED_KEPT {
            expired.pop_front();
        }
        gone
    }

    /// Open sessions keep the daemon from exiting for idleness.
    pub fn any_open(&self) -> bool {
        !self.open.lock().is_empty()
    }

    /// A fresh id in the UUID format: random enough that ids never repeat across daemons.
    fn new_id(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        hasher.update(&now.as_nanos().to_le_bytes());
        hasher.update(&std::process::id().to_le_bytes());
        hasher.update(&self.created.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        if let Ok(bytes) = std::fs::read("/proc/sys/kernel/random/uuid") {
            hasher.update(&bytes);
        }
        let mut b = [0u8; 16];
        b.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        b[6] = (b[6] & 0x0f) | 0x40; // version 4
        b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
        let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }
}

/// A session journal must be an absolute path ending in `.jsonl`, so it is never confused
/// with (or written over) a file of another kind.
pub(crate) fn check_journal_path(path: &Path) -> Result<(), String> {
    if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
        return Err(format!(
            "journal path {} must end in .jsonl",
            path.display()
        ));
    }
    if !path.is_absolute() {
        return Err(format!("journal path {} is not absolute", path.display()));
    }
    Ok(())
}

/// The process exists (possibly owned by someone else) and has not exited.
fn process_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    zccache_platform::process::process_is_running(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(journal: Option<&str>) -> SessionStartRequest {
        SessionStartRequest {
            owner_pid: std::process::id(),
            journal: journal.map(String::from),
            log: None,
        }
    }

    #[test]
    fn ids_are_uuid_shaped_and_distinct() {
        let sessions = Sessions::new(Duration::from_secs(60), 0o600);
        let a = sessions.start(&request(None)).unwrap();
        let b = sessions.start(&request(None)).unwrap();
        assert_ne!(a.id, b.id);
        let groups: Vec<usize> = a.id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert!(sessions.get(&a.id).is_some());
        assert!(sessions.get("nope").is_none());
    }

    #[test]
    fn journal_paths_must_be_absolute_jsonl() {
        let absolute = if cfg!(windows) {
            r"C:\b\build.jsonl"
        } else {
            "/b/build.jsonl"
        };
        assert!(check_journal_path(Path::new(absolute)).is_ok());
        assert!(check_journal_path(Path::new("/b/build.json"))
            .unwrap_err()
            .contains("must end in .jsonl"));
        assert!(check_journal_path(Path::new("build.jsonl")).is_err());
        let sessions = Sessions::new(Duration::from_secs(60), 0o600);
        assert!(sessions.start(&request(Some("/b/build.log"))).is_err());
    }

    #[test]
    fn abandoned_sessions_expire_and_keep_their_report() {
        let sessions = Sessions::new(Duration::ZERO, 0o600);
        let mine = sessions.start(&request(None)).unwrap();
        // A pid that cannot exist: its owner is gone.
        let orphan = sessions
            .start(&SessionStartRequest {
                owner_pid: i32::MAX as u32,
                journal: None,
                log: None,
            })
            .unwrap();
        orphan.stats.miss();
        let gone = sessions.expire_abandoned();
        assert_eq!(gone.len(), 1, "only the orphan expires");
        assert_eq!(gone[0].id, orphan.id);
        // Its report is there before its files are closed: session-stats never finds the
        // session in neither place (it did, while the journal was being flushed).
        assert!(matches!(sessions.lookup(&orphan.id), Lookup::Expired(_)));
        sessions.close(&gone[0]);
        match sessions.lookup(&orphan.id) {
            Lookup::Expired(report) => {
                assert_eq!(report.misses, 1);
                assert!(report
                    .expired
                    .unwrap()
                    .contains("exited without session-end"));
            }
            _ => panic!("expired session not found"),
        }
        assert!(matches!(sessions.lookup(&mine.id), Lookup::Open(_)));
        assert!(matches!(sessions.take(&orphan.id), Lookup::Expired(_)));
        assert!(matches!(sessions.lookup(&orphan.id), Lookup::Unknown));
    }
}
