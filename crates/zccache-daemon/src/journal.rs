//! The compile journal: one JSON line per call in `<root>/logs/compile_journal.jsonl`, and in
//! the session's own journal and log when it has them.
//!
//! A call hands its record to a channel and is done; one thread formats the lines and writes
//! them in batches, so journaling costs a hit no file I/O. The global journal is rotated (to
//! `compile_journal.1.jsonl`) when it passes its size limit.

use crate::session::Session;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use zccache_core::journal::{
    iso8601_utc, JournalEntry, JournalOutcome, JOURNAL_FILE, JOURNAL_PREVIOUS_FILE,
};
use zccache_core::CacheRoot;

/// Variables a shell changes per command or per nesting level, and the session id (which has
/// its own field): never worth a journal line's space.
const ENV_NOISE: &[&str] = &["_", "SHLVL", "PWD", "OLDPWD", "ZCCACHE_SESSION_ID"];

/// Journal lines reach their files at most this long after the call (sooner when a buffer
/// fills, and at once for `status`, `session-end` and shutdown). Writing per batch of calls
/// instead of per call keeps the writer from competing with the next compile for a core, and
/// a call only wakes the writer when it starts a batch: waking a thread per hit cost ~3 % of
/// the hit's CPU and a thread switch on a busy machine.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// One call, as the request handler saw it.
pub(crate) struct JournalRecord {
    pub at: SystemTime,
    pub outcome: JournalOutcome,
    pub reason: Option<String>,
    pub compiler: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    pub env: Vec<(OsString, OsString)>,
    pub exit_code: Option<i32>,
    pub session_id: Option<String>,
    pub session: Option<Arc<Session>>,
    pub latency_ns: u64,
    pub worktree_hit: bool,
    pub remap_fallback: Option<&'static str>,
}

enum Message {
    Record(Box<JournalRecord>),
    /// Answered once everything sent before it is written.
    Barrier(mpsc::Sender<()>),
}

/// The sending side; cheap to use from any request thread.
pub(crate) struct Journal {
    shared: Arc<Shared>,
}

/// What request handlers hand the writing thread.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

#[derive(Default)]
struct Queue {
    messages: Vec<Message>,
    /// A barrier waits: write now rather than at the end of the batch.
    urgent: bool,
    /// The journal is gone: write what is left and stop.
    closed: bool,
}

impl Journal {
    /// Starts the writing thread. `max_size` 0 turns the global journal off (session
    /// journals are still written).
    pub fn start(root: &CacheRoot, max_size: u64) -> Journal {
        let shared = Arc::new(Shared::default());
        let for_writer = shared.clone();
        let mut writer = Writer {
            path: root.logs_dir().join(JOURNAL_FILE),
            previous: root.logs_dir().join(JOURNAL_PREVIOUS_FILE),
            max_size,
            file: None,
            size: 0,
            daemon_env: std::env::vars_os().collect(),
        };
        let spawned = std::thread::Builder::new()
            .name("zccache-journal".into())
            .spawn(move || writer.run(&for_writer));
        if let Err(e) = spawned {
            tracing::warn!("compile journal disabled: cannot start its thread: {e}");
            shared.queue.lock().closed = true;
        }
        Journal { shared }
    }

    pub fn record(&self, record: JournalRecord) {
        let mut queue = self.shared.queue.lock();
        if queue.closed {
            return;
        }
        let starts_batch = queue.messages.is_empty();
        queue.messages.push(Message::Record(Box::new(record)));
        drop(queue);
        if starts_batch {
            let shared = self.shared.clone();
            crate::after_reply::wake(move || {
                shared.wake.notify_one();
            });
        }
    }

    /// Waits until every record sent before this call is written.
    pub fn barrier(&self) {
        crate::after_reply::release_held();
        let (done, wait) = mpsc::channel();
        {
            let mut queue = self.shared.queue.lock();
            if queue.closed {
                return;
            }
            queue.messages.push(Message::Barrier(done));
            queue.urgent = true;
        }
        self.shared.wake.notify_one();
        let _ = wait.recv_timeout(std::time::Duration::from_secs(10));
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.shared.queue.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

struct Writer {
    path: PathBuf,
    previous: PathBuf,
    max_size: u64,
    file: Option<BufWriter<File>>,
    size: u64,
    /// What a call's environment is compared with: only differences are written.
    daemon_env: HashMap<OsString, OsString>,
}

impl Writer {
    fn run(&mut self, shared: &Shared) {
        let mut touched: Vec<Arc<Session>> = Vec::new();
        loop {
            let (batch, closed) = {
                let mut queue = shared.queue.lock();
                while queue.messages.is_empty() && !queue.closed {
                    shared.wake.wait(&mut queue);
                }
                // Let the calls of the next FLUSH_EVERY join this batch (they do not wake
                // us), unless a barrier or the end asks for now.
                let deadline = Instant::now() + FLUSH_EVERY;
                while !queue.urgent && !queue.closed {
                    if shared.wake.wait_until(&mut queue, deadline).timed_out() {
                        break;
                    }
                }
                queue.urgent = false;
                (std::mem::take(&mut queue.messages), queue.closed)
            };
            for message in batch {
                match message {
                    Message::Record(record) => self.write(*record, &mut touched),
                    Message::Barrier(done) => {
                        self.flush(&mut touched);
                        let _ = done.send(());
                    }
                }
            }
            self.flush(&mut touched);
            if closed {
                return;
            }
        }
    }

    /// Writes out what is buffered for the global journal and the sessions' files.
    fn flush(&mut self, touched: &mut Vec<Arc<Session>>) {
        if let Some(file) = &mut self.file {
            if let Err(e) = file.flush() {
                tracing::warn!("writing {}: {e}", self.path.display());
            }
        }
        for session in touched.drain(..) {
            let mut guard = session.files.lock();
            let files = &mut *guard;
            for file in [files.journal.as_mut(), files.log.as_mut()]
                .into_iter()
                .flatten()
            {
                let _ = file.flush();
            }
        }
    }

    fn write(&mut self, record: JournalRecord, touched: &mut Vec<Arc<Session>>) {
        let session = record.session.clone();
        let entry = self.entry(record);
        let Ok(mut line) = serde_json::to_string(&entry) else {
            return;
        };
        line.push('\n');
        if self.max_size > 0 {
            self.append(line.as_bytes());
        }
        if let Some(session) = session {
            {
                let mut files = session.files.lock();
                if let Some(journal) = &mut files.journal {
                    let _ = journal.write_all(line.as_bytes());
                }
                if let Some(log) = &mut files.log {
                    let _ = log.write_all(log_line(&entry).as_bytes());
                }
            }
            if !touched.iter().any(|s| Arc::ptr_eq(s, &session)) {
                touched.push(session);
            }
        }
    }

    fn entry(&self, record: JournalRecord) -> JournalEntry {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let env = record
            .env
            .iter()
            .filter(|(name, value)| {
                self.daemon_env.get(name) != Some(value)
                    && !ENV_NOISE.iter().any(|noise| name == noise)
            })
            .map(|(name, value)| {
                (
                    text(name.as_encoded_bytes()),
                    text(value.as_encoded_bytes()),
                )
            })
            .collect();
        JournalEntry {
            ts: iso8601_utc(record.at),
            outcome: record.outcome,
            reason: record.reason,
            compiler: text(record.compiler.as_os_str().as_encoded_bytes()),
            args: record
                .args
                .iter()
                .map(|a| text(a.as_encoded_bytes()))
                .collect(),
            cwd: text(record.cwd.as_os_str().as_encoded_bytes()),
            env,
            exit_code: record.exit_code,
            session_id: record.session_id,
            latency_ns: record.latency_ns,
            worktree_hit: record.worktree_hit,
            remap_fallback: record.remap_fallback.map(str::to_string),
        }
    }

    /// Appends to the global journal, rotating it first when the line would pass the limit.
    fn append(&mut self, line: &[u8]) {
        if self.file.is_some() && self.size + line.len() as u64 > self.max_size {
            if let Some(mut file) = self.file.take() {
                let _ = file.flush();
            }
            if let Err(e) = std::fs::rename(&self.path, &self.previous) {
                tracing::warn!("rotating {}: {e}", self.path.display());
            }
        }
        if self.file.is_none() {
            match open_append(&self.path) {
                Ok((file, size)) => {
                    self.file = Some(BufWriter::new(file));
                    self.size = size;
                }
                Err(e) => {
                    tracing::warn!("cannot open {}: {e}", self.path.display());
                    return;
                }
            }
        }
        if let Some(file) = &mut self.file {
            if file.write_all(line).is_ok() {
                self.size += line.len() as u64;
            }
        }
    }
}

/// The journal is private (it holds arguments and environment): 0600.
fn open_append(path: &Path) -> std::io::Result<(File, u64)> {
    let file = zccache_platform::fs::private_file_options()
        .create(true)
        .append(true)
        .open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// A session log's line: time, outcome, milliseconds, command.
fn log_line(entry: &JournalEntry) -> String {
    let name = Path::new(&entry.compiler)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| entry.compiler.clone());
    let mut reason = entry
        .reason
        .as_ref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    if entry.worktree_hit {
        reason.push_str(" (from another worktree)");
    }
    if let Some(why) = &entry.remap_fallback {
        reason.push_str(&format!(" (path remap not applied: {why})"));
    }
    format!(
        "{} {:<13} {:>9.1} ms  {} {}{reason}\n",
        entry.ts,
        entry.outcome.as_str(),
        entry.latency_ns as f64 / 1e6,
        name,
        entry.args.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(args: &[&str]) -> JournalRecord {
        JournalRecord {
            at: SystemTime::now(),
            outcome: JournalOutcome::Miss,
            reason: None,
            compiler: "/usr/bin/gcc".into(),
            args: args.iter().map(OsString::from).collect(),
            cwd: "/w".into(),
            env: vec![("ONLY_IN_CALL".into(), "1".into())],
            exit_code: Some(0),
            session_id: None,
            session: None,
            latency_ns: 5,
            worktree_hit: false,
            remap_fallback: None,
        }
    }

    fn lines(path: &Path) -> Vec<JournalEntry> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_are_written_with_env_differences_only_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let root = CacheRoot::new(dir.path());
        root.ensure().unwrap();
        let journal = Journal::start(&root, 600);
        for i in 0..10 {
            journal.record(record(&["-c", &format!("f{i}.c")]));
        }
        journal.barrier();
        let current = lines(&root.logs_dir().join(JOURNAL_FILE));
        let previous = lines(&root.logs_dir().join(JOURNAL_PREVIOUS_FILE));
        assert!(!previous.is_empty(), "the journal was rotated");
        assert!(current.len() + previous.len() <= 10);
        let last = current.last().unwrap();
        assert_eq!(last.args, ["-c", "f9.c"]);
        assert_eq!(last.env, [("ONLY_IN_CALL".to_string(), "1".to_string())]);
        let size = std::fs::metadata(root.logs_dir().join(JOURNAL_FILE))
            .unwrap()
            .len();
        assert!(size <= 600, "current journal is {size} bytes");
    }

    #[test]
    fn log_lines_name_outcome_and_command() {
        let writer_entry = JournalEntry {
            ts: "2026-01-01T00:00:00.000Z".into(),
            outcome: JournalOutcome::NonCacheable,
            reason: Some("link".into()),
            compiler: "/usr/bin/gcc".into(),
            args: vec!["a.o".into(), "-o".into(), "app".into()],
            cwd: "/w".into(),
            env: vec![],
            exit_code: None,
            session_id: None,
            latency_ns: 1_500_000,
            worktree_hit: false,
            remap_fallback: None,
        };
        let line = log_line(&writer_entry);
        assert!(line.contains("non_cacheable"), "{line}");
        assert!(line.contains("1.5 ms"), "{line}");
        assert!(line.contains("gcc a.o -o app (link)"), "{line}");
    }
}
