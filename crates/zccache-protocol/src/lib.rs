//! zccache-protocol: the messages between the `zccache` client and the daemon, and the frame
//! that carries them.
//!
//! A frame is an 8-byte header — the magic `ZC`, the protocol version (u16 LE) and the payload
//! length (u32 LE) — followed by a bincode payload. The version in every header means a client
//! and a daemon of different versions notice at once instead of misreading each other.
//! This crate does no I/O: it turns messages into bytes and back, and nothing else.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Bumped whenever a message changes shape; also part of the daemon's endpoint name.
pub const PROTOCOL_VERSION: u16 = 15;

/// Size of the frame header.
pub const HEADER_LEN: usize = 8;

/// Upper bound on a payload. Compiler output replayed on a hit is the largest thing we send.
pub const MAX_FRAME_LEN: u32 = 256 * 1024 * 1024;

const MAGIC: [u8; 2] = *b"ZC";

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// One compiler invocation, as the build tool made it.
    Compile(CompileRequest),
    /// Daemon and cache statistics.
    Status,
    /// Remove every cached entry.
    Clear,
    /// Stop the daemon. Always variant 3 with no payload, in every protocol version, so a
    /// newer daemon can ask an older one to make way ([`shutdown_frame`]).
    Shutdown,
    /// Liveness check, used by `zccache start`.
    Ping,
    /// Open a session: compiles whose environment carries its id are counted to it.
    SessionStart(SessionStartRequest),
    /// A session's statistics so far.
    SessionStats { id: String },
    /// Close a session and return its final statistics.
    SessionEnd { id: String },
    /// Explain what the cache would do with this call, without running or storing anything.
    Inspect(CompileRequest),
    /// The same for the last recorded compile of a source file (an absolute path).
    InspectSource { path: Vec<u8> },
    /// `zccache fp check`, answered from the daemon's watcher: whether the selected files
    /// changed since the last success recorded in the cache file.
    FpCheck(FpCheckRequest),
}

/// `zccache fp check`'s options, paths absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FpCheckRequest {
    pub cache_file: Vec<u8>,
    /// `hash` or `two-layer`.
    pub cache_type: String,
    pub root: Vec<u8>,
    pub include: Vec<String>,
    pub ext: Vec<String>,
    pub exclude: Vec<String>,
}

/// `zccache session-start`'s options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStartRequest {
    /// The process the session belongs to (the shell running the build); once it has exited
    /// and the session has been idle for the session timeout, the session expires.
    pub owner_pid: u32,
    /// Absolute path of a JSONL file that receives this session's journal lines.
    pub journal: Option<String>,
    /// Absolute path of a text log of this session's compiles.
    pub log: Option<String>,
}

/// Everything the daemon needs to run (or not run) one compiler call exactly as the build would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompileRequest {
    /// The compiler as the build named it (`gcc`, `/usr/bin/clang++`), then its arguments,
    /// byte for byte. The name is what the compiler sees as its argv\[0\].
    pub argv: Vec<Vec<u8>>,
    /// The compiler's absolute path, as the client resolved the name.
    pub program: Vec<u8>,
    /// The caller's working directory.
    pub cwd: Vec<u8>,
    /// The caller's environment; a miss runs the compiler with it.
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
    /// The client's pid, for logs.
    pub client_pid: u32,
    /// The client's stderr is a colour-capable terminal: compilers would colour diagnostics.
    pub stderr_is_tty: bool,
    /// Set by `zccache exec`: the program is a generic tool whose inputs and outputs are
    /// declared, not recognized from its name.
    pub exec: Option<ExecSpec>,
}

/// What `zccache exec --input F --output G --env NAME -- TOOL ARGS` declares about a tool
/// zccache does not know: everything its result depends on besides its argv, and what it
/// writes. Paths as given (relative to the caller's directory).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    pub inputs: Vec<Vec<u8>>,
    pub outputs: Vec<Vec<u8>>,
    /// Names of environment variables the tool reads.
    pub env: Vec<Vec<u8>>,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The compile was served or run by the daemon.
    Compiled(CompileReply),
    /// Not cacheable: the client runs the compiler itself, with its own stdio. The reason is
    /// already counted in the daemon's statistics.
    RunLocally { reason: String },
    /// Answer to [`Request::Status`].
    Status(StatusReport),
    /// Answer to [`Request::Ping`].
    Pong { version: String, pid: u32 },
    /// Answer to [`Request::SessionStart`].
    SessionStarted { id: String },
    /// Answer to [`Request::SessionStats`] and [`Request::SessionEnd`].
    Session(SessionReport),
    /// Answer to [`Request::Inspect`] and [`Request::InspectSource`]: one report per source
    /// (a multi-file call has several).
    Inspected(Vec<InspectReport>),
    /// The request was carried out.
    Done,
    /// The daemon could not handle the request; the client falls back to running the compiler.
    Error(String),
    /// Stderr of a compile still running, sent ahead of its [`Response::Compiled`] (whose
    /// stderr is then only the rest). Build tools act on some lines at once: cargo starts the
    /// crates that depend on this one when rustc reports its metadata written.
    Progress { stderr: Vec<u8> },
    /// Answer to [`Request::FpCheck`]: the files changed (run the step) or not (skip it);
    /// `listed_from_watch` when the file list came from the watcher's state, not a scan.
    FpChecked {
        changed: bool,
        listed_from_watch: bool,
    },
    /// The output of a compiler query (`rustc -vV`, cargo's `--print` probe), run by the
    /// daemon or answered from its memory; the client prints it and exits with its code.
    Answered {
        exit_code: i32,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
}

/// What a compile produced, to be written to the client's stdout and stderr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompileReply {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub outcome: Outcome,
}

/// How a compile was handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Served from the cache.
    Hit,
    /// Compiled and stored.
    Miss,
    /// Compiled, but the result was not stored (failed compile, or a reason such as an input
    /// modified while the compiler ran).
    NotStored { reason: String },
}

/// Daemon statistics since it started, plus the store's size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub cache_root: String,
    pub hits: u64,
    /// Of the hits, those served from an entry another checkout stored
    /// (`ZCCACHE_PATH_REMAP=auto`).
    pub worktree_hits: u64,
    pub misses: u64,
    /// Compiles run but not stored, by reason (failed compiles included).
    pub not_stored: Vec<(String, u64)>,
    /// Calls passed through to the compiler, by reason.
    pub non_cacheable: Vec<(String, u64)>,
    /// Calls that asked for path remapping but were keyed by their real paths, by reason.
    pub worktree_fallbacks: Vec<(String, u64)>,
    /// Internal errors (the client then compiled by itself).
    pub errors: u64,
    /// Compile time saved by hits, in milliseconds.
    pub time_saved_ms: u64,
    /// Compiler queries (`rustc -vV`, cargo's `--print` probe) answered from memory.
    pub queries_answered: u64,
    /// Compiler queries the daemon ran (the first of each, and failed ones).
    pub queries_run: u64,
    pub artifact_count: u64,
    pub artifact_bytes: u64,
    /// The store's size limit in bytes.
    pub max_size: u64,
    /// Entries evicted to stay under the limit since the daemon started.
    pub evictions: u64,
    /// Directories and files the file watcher watches (files only with Linux's inotify);
    /// `None` when it is off and every hit checks its inputs with `stat`.
    pub watching: Option<(u64, u64)>,
    /// Problems worth a user's attention (a corrupt index that was rebuilt, a store that
    /// cannot be written), each reported once.
    pub warnings: Vec<String>,
    /// The remote tier (`ZCCACHE_REMOTE`), without credentials; `None` when there is none.
    pub remote: Option<String>,
    /// Compiles served from the remote tier, and compiles it was asked about and had nothing
    /// for.
    pub remote_hits: u64,
    pub remote_misses: u64,
    /// Failed calls (down, refusing, timed out) and entries refused as damaged.
    pub remote_errors: u64,
    pub remote_corrupt: u64,
    pub remote_uploads: u64,
    /// Uploads dropped because the queue was full or the remote was being skipped.
    pub remote_dropped: u64,
    pub remote_bytes_down: u64,
    pub remote_bytes_up: u64,
    /// Mean time of the remote lookups that got an answer, in microseconds.
    pub remote_latency_us: u64,
    /// The daemon's resident memory in bytes (0 where the OS does not say).
    pub resident_bytes: u64,
    /// What the daemon's in-memory memos hold; each is bounded, and what one drops is worked
    /// out again when needed.
    pub memos: MemoReport,
}

/// See [`StatusReport::memos`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoReport {
    /// Manifests (the results stored for a key, with their dependencies): count, bytes, the
    /// byte budget, and how many were dropped to stay within it.
    pub manifests: u64,
    pub manifest_bytes: u64,
    pub manifest_budget: u64,
    pub manifests_dropped: u64,
    /// Files whose digest is known.
    pub file_digests: u64,
    /// Entries whose dependencies the watcher vouches for.
    pub verified: u64,
    /// Entries whose would-be shadowing headers are worked out, and their bytes.
    pub shadow_candidates: u64,
    pub shadow_candidate_bytes: u64,
}

impl StatusReport {
    /// Hits over cacheable calls (hits + misses), as a percentage.
    pub fn hit_rate(&self) -> f64 {
        percent(self.hits, self.hits + self.misses)
    }
}

/// What the cache would do with one source of a call, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectReport {
    /// The source, as an absolute path.
    pub source: String,
    /// The call inspected: the compiler as named, then its arguments.
    pub argv: Vec<String>,
    pub cwd: String,
    /// `hit`, `miss`, or `not cacheable`.
    pub verdict: String,
    /// The reason a call is not cacheable.
    pub not_cacheable: Option<String>,
    /// The cache key, in hex.
    pub key: String,
    /// The key's parts in order: label and value.
    pub parts: Vec<(String, String)>,
    /// For a miss: what differs from the closest earlier compile of this source.
    pub changes: Vec<String>,
}

/// What one session's compiles did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionReport {
    pub id: String,
    /// Unix seconds when the session started.
    pub started_at: u64,
    /// Milliseconds from the start to now, or to its end.
    pub duration_ms: u64,
    pub hits: u64,
    /// Of the hits, those served from an entry another checkout stored.
    pub worktree_hits: u64,
    pub misses: u64,
    /// Of the hits, those whose result came from the remote tier; and the compiles it was
    /// asked about and had nothing for.
    pub remote_hits: u64,
    pub remote_misses: u64,
    pub not_stored: Vec<(String, u64)>,
    pub non_cacheable: Vec<(String, u64)>,
    /// Calls that asked for path remapping but were keyed by their real paths, by reason.
    pub worktree_fallbacks: Vec<(String, u64)>,
    pub errors: u64,
    pub time_saved_ms: u64,
    pub journal_path: Option<String>,
    pub log_path: Option<String>,
    /// The session has ended (by `session-end`, or by expiring).
    pub ended: bool,
    /// Set when the session expired instead of being ended: why.
    pub expired: Option<String>,
}

impl SessionReport {
    /// Hits over cacheable calls, as a percentage.
    pub fn hit_rate(&self) -> f64 {
        percent(self.hits, self.hits + self.misses)
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// A frame that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The header does not start with the magic bytes: not a zccache peer.
    BadMagic,
    /// The peer speaks another protocol version.
    VersionMismatch { ours: u16, theirs: u16 },
    /// The announced payload is larger than [`MAX_FRAME_LEN`].
    TooLarge(u32),
    /// The payload is not a valid message.
    Malformed(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadMagic => write!(f, "not a zccache frame (bad magic)"),
            FrameError::VersionMismatch { ours, theirs } => {
                write!(f, "protocol version mismatch: ours {ours}, peer {theirs}")
            }
            FrameError::TooLarge(len) => {
                write!(
                    f,
                    "frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN}"
                )
            }
            FrameError::Malformed(why) => write!(f, "malformed message: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Fixed-width integers, a size limit, and no trailing bytes.
fn options() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(MAX_FRAME_LEN as u64)
}

/// Encodes a message as one frame (header + payload).
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    use bincode::Options;
    let payload = options()
        .serialize(message)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len <= MAX_FRAME_LEN)
        .ok_or(FrameError::TooLarge(u32::MAX))?;
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Checks a header and returns the payload length that follows it.
pub fn decode_header(header: &[u8; HEADER_LEN]) -> Result<usize, FrameError> {
    if header[..2] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    let theirs = u16::from_le_bytes([header[2], header[3]]);
    if theirs != PROTOCOL_VERSION {
        return Err(FrameError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs,
        });
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len as usize)
}

/// A `Shutdown` request framed for a peer of protocol `version`: the one message every
/// version understands the same way.
pub fn shutdown_frame(version: u16) -> Vec<u8> {
    let mut frame = MAGIC.to_vec();
    frame.extend_from_slice(&version.to_le_bytes());
    frame.extend_from_slice(&4u32.to_le_bytes());
    frame.extend_from_slice(&3u32.to_le_bytes());
    frame
}

/// Decodes a payload; trailing bytes are an error, so a frame means exactly one message.
pub fn decode_payload<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<T, FrameError> {
    use bincode::Options;
    options()
        .deserialize(payload)
        .map_err(|e| FrameError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + fmt::Debug>(value: T) {
        let frame = encode(&value).unwrap();
        let header: [u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().unwrap();
        let len = decode_header(&header).unwrap();
        assert_eq!(len, frame.len() - HEADER_LEN);
        let back: T = decode_payload(&frame[HEADER_LEN..]).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn messages_roundtrip() {
        roundtrip(Request::Compile(CompileRequest {
            argv: vec![b"gcc".to_vec(), b"-c".to_vec(), vec![0xff, 0xfe]],
            program: b"/usr/bin/gcc".to_vec(),
            cwd: b"/tmp".to_vec(),
            env: vec![(b"PATH".to_vec(), b"/bin".to_vec())],
            client_pid: 7,
            stderr_is_tty: false,
            exec: None,
        }));
        roundtrip(Request::Status);
        roundtrip(Response::Compiled(CompileReply {
            exit_code: 1,
            stdout: vec![],
            stderr: b"warning".to_vec(),
            outcome: Outcome::NotStored {
                reason: "compile_failed".into(),
            },
        }));
        roundtrip(Response::RunLocally {
            reason: "link".into(),
        });
        roundtrip(Request::SessionStart(SessionStartRequest {
            owner_pid: 9,
            journal: Some("/b/build.jsonl".into()),
            log: None,
        }));
        roundtrip(Request::SessionEnd { id: "abc".into() });
        roundtrip(Response::Session(SessionReport {
            id: "abc".into(),
            hits: 2,
            non_cacheable: vec![("link".into(), 1)],
            expired: Some("owner exited".into()),
            ..SessionReport::default()
        }));
    }

    #[test]
    fn shutdown_is_the_same_frame_in_every_version() {
        let ours = encode(&Request::Shutdown).unwrap();
        assert_eq!(ours, shutdown_frame(PROTOCOL_VERSION));
        let old = shutdown_frame(3);
        assert_eq!(&old[2..4], &3u16.to_le_bytes());
        assert_eq!(&old[HEADER_LEN..], &ours[HEADER_LEN..]);
    }

    #[test]
    fn header_errors() {
        let mut header = [0u8; HEADER_LEN];
        assert_eq!(decode_header(&header), Err(FrameError::BadMagic));
        header[..2].copy_from_slice(b"ZC");
        header[2..4].copy_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
        assert!(matches!(
            decode_header(&header),
            Err(FrameError::VersionMismatch { .. })
        ));
        header[2..4].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        header[4..8].copy_from_slice(&(MAX_FRAME_LEN + 1).to_le_bytes());
        assert!(matches!(
            decode_header(&header),
            Err(FrameError::TooLarge(_))
        ));
    }

    #[test]
    fn truncated_and_trailing_payloads_are_rejected() {
        let frame = encode(&Request::Status).unwrap();
        let payload = &frame[HEADER_LEN..];
        let mut longer = payload.to_vec();
        longer.push(0);
        assert!(decode_payload::<Request>(&longer).is_err());
        let compile = encode(&Request::Compile(CompileRequest {
            argv: vec![b"cc".to_vec()],
            program: b"/usr/bin/cc".to_vec(),
            cwd: vec![],
            env: vec![],
            client_pid: 1,
            stderr_is_tty: true,
            exec: None,
        }))
        .unwrap();
        let body = &compile[HEADER_LEN..];
        assert!(decode_payload::<Request>(&body[..body.len() - 1]).is_err());
    }

    #[test]
    fn huge_length_prefix_inside_payload_does_not_allocate_wildly() {
        // An argv vector claiming 2^60 elements must fail cleanly.
        let mut payload = vec![0u8, 0, 0, 0];
        payload.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(decode_payload::<Request>(&payload).is_err());
    }
}
