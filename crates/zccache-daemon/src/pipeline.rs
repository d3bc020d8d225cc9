//! What every cached tool shares: decoding a request, finding a usable stored entry, running
//! the tool, and storing its result after the reply.
//!
//! Tool front ends (`cc.rs`, `rust.rs`) decide what is cacheable, compute the key and say
//! where outputs go; everything that touches the store goes through here.

use crate::journal::JournalRecord;
use crate::search::Listings;
use crate::search::SearchPath;
use crate::session::Session;
use crate::stats::Stats;
use crate::worktree::{Remap, Worktree};
use crate::{Daemon, LookupStore};
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use zccache_artifact::{
    DepDigest, EnvDep, Manifest, ManifestEntry, SourceRecord, Store, StoredOutput, StoredResult,
};
use zccache_compiler::{detect_tool, ToolKind};
use zccache_core::paths::{absolute, absolute_cow};
use zccache_core::Hash;
use zccache_fscache::FileClock;
use zccache_fscache::{FileDigest, FsCache, StatSig, Synced, Voucher, Vouchers};
use zccache_protocol::{CompileReply, CompileRequest, Outcome, Response};

/// Names the session a compile is counted to.
pub(crate) const SESSION_ENV: &str = "ZCCACHE_SESSION_ID";

/// Variables that hand a jobserver to the child: the descriptors they name exist in the
/// client, not in the daemon, so the tool would warn about them.
const JOBSERVER_ENV: &[&str] = &["MAKEFLAGS", "MFLAGS", "CARGO_MAKEFLAGS"];

/// One compile request, decoded.
pub(crate) struct Call {
    /// When the request arrived, for timing logs.
    pub received: Instant,
    /// The compiler's absolute path.
    pub compiler: PathBuf,
    /// The name the build called it by: its argv\[0\], which it prints in messages.
    pub name: OsString,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    pub env: Vec<(OsString, OsString)>,
    /// The caller's stderr is a colour terminal.
    pub stderr_is_tty: bool,
    /// `ZCCACHE_SESSION_ID` from the caller's environment.
    pub session_id: Option<String>,
    /// The open session it names, which counts this call too.
    pub session: Option<Arc<Session>>,
    /// `zccache exec`: the declared inputs, outputs and variables of a generic tool.
    pub exec: Option<zccache_protocol::ExecSpec>,
    /// The call links (journalled as `link_hit`/`link_miss`).
    link: std::sync::atomic::AtomicBool,
    /// Set on first use: the file watcher has caught up with every change made before this
    /// call, so digests it vouches for need no `stat`.
    synced: std::sync::OnceLock<Synced>,
    /// Where a miss sends the tool's stderr while it runs (rustc: cargo starts dependent
    /// crates as soon as rustc reports their metadata written, long before rustc exits).
    pub progress: Option<zccache_ipc::FrameSink>,
    /// The checkout whose root this call's paths are keyed relative to
    /// (`ZCCACHE_PATH_REMAP=auto`, see `worktree.rs`), unless the front end fell back.
    worktree: Option<Worktree>,
    worktree_off: std::sync::atomic::AtomicBool,
    /// The call was served from an entry another checkout stored.
    pub worktree_hit: std::sync::atomic::AtomicBool,
    /// Why remapping was asked for but not applied.
    remap_fallback: std::sync::OnceLock<&'static str>,
}

impl Call {
    pub(crate) fn decode(request: CompileRequest) -> Option<Call> {
        let mut argv = request
            .argv
            .into_iter()
            .map(zccache_platform::os_str::os_string_from_bytes);
        let name = argv.next()?;
        Some(Call {
            received: Instant::now(),
            compiler: PathBuf::from(zccache_platform::os_str::os_string_from_bytes(
                request.program,
            )),
            name,
            args: argv.collect(),
            cwd: PathBuf::from(zccache_platform::os_str::os_string_from_bytes(request.cwd)),
            env: request
                .env
                .into_iter()
                .map(|(k, v)| {
                    (
                        zccache_platform::os_str::os_string_from_bytes(k),
                        zccache_platform::os_str::os_string_from_bytes(v),
                    )
                })
                .collect(),
            stderr_is_tty: request.stderr_is_tty,
            session_id: None,
            session: None,
            exec: request.exec,
            link: std::sync::atomic::AtomicBool::new(false),
            synced: std::sync::OnceLock::new(),
            progress: None,
            worktree: None,
            worktree_off: Default::default(),
            worktree_hit: Default::default(),
            remap_fallback: Default::default(),
        })
    }

    /// The checkout this call's paths are keyed in, when they are remapped.
    pub fn worktree(&self) -> Option<&Worktree> {
        use std::sync::atomic::Ordering::Relaxed;
        self.worktree
            .as_ref()
            .filter(|_| !self.worktree_off.load(Relaxed))
    }

    /// Remapping was asked for, but this call is keyed by its real paths: counts `reason`
    /// (once per call).
    pub fn worktree_fallback(&self, stats: &Stats, reason: &'static str) {
        use std::sync::atomic::Ordering::Relaxed;
        self.worktree_off.store(true, Relaxed);
        self.note_remap_reason(stats, reason);
    }

    /// Counts why a remapped call could not be served from another checkout's entry, or was
    /// not remapped (once per call).
    pub fn note_remap_reason(&self, stats: &Stats, reason: &'static str) {
        if self.remap_fallback.set(reason).is_ok() {
            stats.worktree_fallback(reason);
            if let Some(session) = &self.session {
                session.stats.worktree_fallback(reason);
            }
        }
    }

    /// The digest of `path` for this call: the watcher's word once it has caught up with the
    /// call, otherwise checked with `stat`.
    pub fn digest(&self, fs: &FsCache, path: &Path) -> std::io::Result<FileDigest> {
        fs.digest_synced(path, self.synced(fs))
    }

    /// [`Call::digest`], with the watcher's voucher for it when there is one.
    fn digest_vouched(&self, fs: &FsCache, path: &Path) -> Option<(FileDigest, Option<Voucher>)> {
        fs.digest_vouched(path, self.synced(fs)).ok()
    }

    /// Whether this call may take the watcher's word (syncing with it the first time).
    pub fn synced(&self, fs: &FsCache) -> Synced {
        *self.synced.get_or_init(|| fs.sync())
    }

    /// Marks the call as a link, for the journal.
    pub fn mark_link(&self) {
        self.link.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The caller's value of `name` (the last one wins, as in a process environment).
    pub fn env_var(&self, name: &str) -> Option<&OsString> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Runs `program args` in the caller's directory and environment, stdin closed.
    ///
    /// Its stdout and stderr go to two memory files, read once it has exited. With pipes the
    /// daemon woke at each pipe's close as well as at the exit, and polled and read in between;
    /// a file also does not keep the call waiting for a background process the tool left
    /// holding its output. Where memory files are not available, pipes.
    pub fn run(&self, program: &Path, args: &[OsString]) -> std::io::Result<std::process::Output> {
        let (Ok(mut stdout), Ok(mut stderr)) = (
            zccache_platform::process::memory_file(c"stdout"),
            zccache_platform::process::memory_file(c"stderr"),
        ) else {
            let mut command = self.command(program, args);
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
            return self.spawn(command)?.wait_with_output();
        };
        let mut command = self.command(program, args);
        command
            .stdout(stdout.try_clone()?)
            .stderr(stderr.try_clone()?);
        let status = self.spawn(command)?.wait()?;
        Ok(std::process::Output {
            status,
            stdout: read_from_start(&mut stdout)?,
            stderr: read_from_start(&mut stderr)?,
        })
    }

    /// Starts `command` at the priority this call asks for (`ZCCACHE_COMPILE_PRIORITY`, see
    /// `priority.rs`). Every tool a call runs is started through here.
    pub fn spawn(&self, command: Command) -> std::io::Result<std::process::Child> {
        crate::priority::spawn_for(command, &self.env)
    }

    fn command(&self, program: &Path, args: &[OsString]) -> Command {
        let mut command = Command::new(program);
        zccache_platform::process::set_arg0(&mut command, self.name.as_ref());
        command
            .args(args)
            .current_dir(&self.cwd)
            .env_clear()
            .envs(
                self.env
                    .iter()
                    .filter(|(k, _)| !JOBSERVER_ENV.iter().any(|j| k == j))
                    .map(|(k, v)| (k, v)),
            )
            .stdin(Stdio::null());
        command
    }

    /// [`Call::run`], sending stderr to the client as it comes when the call has a progress
    /// sink. Returns the whole output and how many bytes of its stderr were already sent.
    pub fn run_streaming(
        &self,
        program: &Path,
        args: &[OsString],
    ) -> std::io::Result<(std::process::Output, usize)> {
        let Some(progress) = &self.progress else {
            return Ok((self.run(program, args)?, 0));
        };
        let mut command = self.command(program, args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.spawn(command)?;
        let child_stdout = child.stdout.take().expect("piped stdout");
        let child_stderr = child.stderr.take().expect("piped stderr");
        let mut sent = 0;
        let mut client_gone = false;
        let read = zccache_platform::process::read_both(
            child_stdout,
            child_stderr,
            |stderr_so_far, chunk| {
                // A client that went away still gets its result stored.
                if !client_gone {
                    let message = Response::Progress {
                        stderr: chunk.to_vec(),
                    };
                    client_gone = progress.send(&message).is_err();
                    if !client_gone {
                        sent = stderr_so_far;
                    }
                }
            },
        );
        let status = child.wait()?;
        let (stdout, stderr) = read?;
        Ok((
            std::process::Output {
                status,
                stdout,
                stderr,
            },
            sent,
        ))
    }
}

/// The whole content of a file a child wrote through a shared descriptor (which moved the
/// shared offset to its end).
fn read_from_start(file: &mut std::fs::File) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek};
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Directory signatures and listings for a call's shadowing checks, on the same terms as
/// [`Call::digest`]: the watcher's word once it has caught up with the call.
struct CallDirs<'a> {
    fs: &'a FsCache,
    call: &'a Call,
}

impl crate::search::DirState for CallDirs<'_> {
    fn signature(&self, dir: &Path) -> Option<StatSig> {
        self.fs.dir_signature(dir, self.call.synced(self.fs)).ok()
    }

    fn contains(&self, dir: &Path, name: &OsStr) -> Option<bool> {
        self.fs.dir_contains(dir, name, self.call.synced(self.fs))
    }
}

/// Feeds length-prefixed fields into a key, so no two field lists hash alike. When made with
/// [`KeyHasher::recording`] it also keeps each labelled part as text, for `zccache inspect`.
pub(crate) struct KeyHasher {
    hasher: blake3::Hasher,
    /// Fields not yet fed to `hasher`. A key is hundreds of short fields (one per argument),
    /// and an `update` per field cost more than the hashing itself; the digest of a stream
    /// does not depend on how it was cut, so keys are the same as with an update per field.
    pending: Vec<u8>,
    parts: Option<Vec<(String, String)>>,
}

/// Pending key bytes past this are hashed at once, so a large field is not held twice.
const KEY_PENDING_LIMIT: usize = 16 * 1024;

impl KeyHasher {
    pub fn new(domain: &str) -> KeyHasher {
        let mut hasher = KeyHasher {
            hasher: blake3::Hasher::new(),
            pending: Vec::with_capacity(4096),
            parts: None,
        };
        hasher.field(domain.as_bytes());
        hasher
    }

    /// A hasher that also records the labelled parts.
    pub fn recording(domain: &str) -> KeyHasher {
        let mut hasher = KeyHasher::new(domain);
        hasher.parts = Some(Vec::new());
        hasher
    }

    /// An unlabelled field (a separator or marker).
    pub fn field(&mut self, bytes: &[u8]) {
        self.pending
            .extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= KEY_PENDING_LIMIT {
            self.hasher.update(&self.pending);
            self.pending.clear();
        }
    }

    /// A field that is one of the key's inputs, e.g. `("argument", "-O2")`.
    pub fn part(&mut self, label: &str, bytes: &[u8]) {
        self.field(bytes);
        if let Some(parts) = &mut self.parts {
            parts.push((
                label.to_string(),
                String::from_utf8_lossy(bytes).into_owned(),
            ));
        }
    }

    /// A digest that is one of the key's inputs (shown shortened).
    pub fn digest_part(&mut self, label: &str, hash: &Hash) {
        self.field(hash);
        if let Some(parts) = &mut self.parts {
            parts.push((label.to_string(), zccache_core::hex(hash)[..16].to_string()));
        }
    }

    /// A variable's name and value, or a marker when unset.
    pub fn env(&mut self, call: &Call, name: &str) {
        self.field(name.as_bytes());
        let value = call.env_var(name);
        match value {
            Some(value) => self.field(value.as_encoded_bytes()),
            None => self.field(b"\0unset"),
        }
        if let Some(parts) = &mut self.parts {
            let shown =
                value.map_or_else(|| "(unset)".into(), |v| v.to_string_lossy().into_owned());
            parts.push((format!("env {name}"), shown));
        }
    }

    pub fn finish(&self) -> Hash {
        // Most keys never reach the limit: nothing was fed to `hasher`, and the pending bytes
        // are the whole stream.
        if self.hasher.count() == 0 {
            return *blake3::hash(&self.pending).as_bytes();
        }
        let mut hasher = self.hasher.clone();
        hasher.update(&self.pending);
        *hasher.finalize().as_bytes()
    }

    /// The recorded parts (empty unless made with [`KeyHasher::recording`]).
    pub fn into_parts(self) -> Vec<(String, String)> {
        self.parts.unwrap_or_default()
    }
}

/// What one request has already checked: the sources of a multi-file call share most of
/// their headers and search directories, so each is stat'ed, hashed and listed once.
#[derive(Default)]
pub(crate) struct LookupMemo {
    digests: dashmap::DashMap<Box<[u8]>, Option<DigestVouched>, rustc_hash::FxBuildHasher>,
    listings: Listings,
}

/// A digest and the watcher's voucher for it, if any.
type DigestVouched = (FileDigest, Option<Voucher>);

impl LookupMemo {
    fn digest_vouched(&self, fs: &FsCache, call: &Call, path: &Path) -> Option<DigestVouched> {
        let key = path.as_os_str().as_encoded_bytes();
        if let Some(known) = self.digests.get(key) {
            return known.clone();
        }
        let digest = call.digest_vouched(fs, path);
        self.digests.insert(key.into(), digest.clone());
        digest
    }
}

/// Entries whose dependencies were all found unchanged on the watcher's word, with its
/// vouchers (one per directory): a later lookup checks those instead of a digest per file.
/// Keyed by the manifest's address and the entry's index; each value holds a weak reference to
/// the manifest, which keeps its allocation (so an address is never reused while it is a key)
/// but not its contents: a manifest the store's memo drops is freed.
#[derive(Default)]
pub(crate) struct VerifiedMemo(
    dashmap::DashMap<(usize, usize), Verified, rustc_hash::FxBuildHasher>,
);

/// See [`VerifiedMemo`].
struct Verified {
    _manifest: std::sync::Weak<Manifest>,
    /// Dependencies may be relative: they were resolved from this directory.
    cwd: PathBuf,
    vouchers: Vouchers,
    newest_input_ns: i128,
}

/// Entries the memo holds before it starts over.
const MAX_VERIFIED: usize = 16_384;

impl VerifiedMemo {
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The newest input mtime of entry `index` when all its dependencies are still vouched for.
    fn check(
        &self,
        fs: &FsCache,
        call: &Call,
        manifest: &Arc<Manifest>,
        index: usize,
    ) -> Option<i128> {
        let found = self.0.get(&(Arc::as_ptr(manifest) as usize, index))?;
        (found.cwd == call.cwd && fs.still_vouched(&found.vouchers, call.synced(fs)))
            .then_some(found.newest_input_ns)
    }

    fn remember(
        &self,
        call: &Call,
        manifest: &Arc<Manifest>,
        index: usize,
        vouchers: Vouchers,
        newest_input_ns: i128,
    ) {
        if self.0.len() >= MAX_VERIFIED {
            self.0.clear();
        }
        self.0.insert(
            (Arc::as_ptr(manifest) as usize, index),
            Verified {
                _manifest: Arc::downgrade(manifest),
                cwd: call.cwd.clone(),
                vouchers,
                newest_input_ns,
            },
        );
    }
}

/// The root of the checkout that stored `entry`, under remap.
fn stored_root_of(entry: &ManifestEntry) -> Option<&[u8]> {
    entry
        .env
        .iter()
        .find(|v| v.name == crate::worktree::STORED_ROOT)
        .and_then(|v| v.value.as_deref())
}

/// A stored entry that still matches, with the newest mtime among its inputs.
pub(crate) struct Found {
    manifest: Arc<Manifest>,
    index: usize,
    pub newest_input_ns: i128,
}

impl Found {
    /// The matching entry (shared with the store's memory copy, not cloned per hit).
    pub fn entry(&self) -> &ManifestEntry {
        &self.manifest.entries[self.index]
    }
}

/// An output read right after the tool finished.
pub(crate) struct CapturedOutput {
    pub role: String,
    pub bytes: Vec<u8>,
    pub executable: bool,
}

/// What a finished tool run reported and wrote, read before the reply.
#[derive(Default)]
pub(crate) struct Captured {
    /// Every input the tool reported, as written: hashed when stored, and refused if changed
    /// since the tool started.
    pub deps: Vec<String>,
    /// Inputs already hashed before the tool ran (tools that rewrite their inputs, such as
    /// rustfmt): stored as they are.
    pub hashed_deps: Vec<DepDigest>,
    pub env: Vec<EnvDep>,
    pub outputs: Vec<CapturedOutput>,
    /// Include search path, for recording headers that would shadow the used ones.
    pub search: Option<SearchPath>,
    /// The toolchain's directory (a rustc's sysroot), which the key does not name: if the
    /// outputs, stdout or stderr name it, the entry is kept for callers whose toolchain is
    /// in the same place ([`PINNED_TOOLCHAIN`]).
    pub toolchain_dir: Option<PathBuf>,
}

/// The name under which an entry whose result names its toolchain's directory records that
/// directory, among its environment dependencies: only calls whose compiler lives there may
/// use it (see [`key_compiler_names`]).
pub(crate) const PINNED_TOOLCHAIN: &[u8] = b"\0zccache:pinned-toolchain";

/// Whether an entry's [`PINNED_TOOLCHAIN`] value (the directory it names) is this call's.
pub(crate) fn toolchain_pin_holds(value: Option<&[u8]>, call: &Call) -> bool {
    let here = crate::rust::sysroot_of(&call.compiler);
    value.is_some() && value == here.as_deref().map(|p| p.as_os_str().as_encoded_bytes())
}

/// What a miss needs to know to store its result.
pub(crate) struct Miss {
    pub key: Hash,
    /// The main input as written, and its digest taken before the tool runs; it must be
    /// unchanged when the result is stored. `None` for tools without one (links) or that
    /// rewrite it (formatters).
    pub source: Option<(PathBuf, FileDigest)>,
    /// The path `zccache inspect` files the call's record under: the source, or the output.
    pub record_as: PathBuf,
    /// Refuse inputs that mention `__TIME__`/`__DATE__`/`__TIMESTAMP__` (C family).
    pub time_macros_matter: bool,
    /// A failed run is stored and replayed too (analysers: diagnostics and exit code are
    /// the result). Compilers' failures are never stored.
    pub store_failures: bool,
    /// The key's labelled parts, recorded with the result for `zccache inspect`.
    pub parts: Vec<(String, String)>,
}

/// A tool run a front end has already shaped (its stdout possibly rewritten), ready to be
/// replied with and, if `captured` says so, stored.
pub(crate) struct Ran {
    /// The file clock read just before the tool started.
    pub started_at: FileClock,
    pub compile_ms: u64,
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// How much of `stderr` the client already has (see [`Call::run_streaming`]).
    pub stderr_sent: usize,
}

/// Why no entry of a manifest served a call (counted once the remote was asked too).
pub(crate) enum Unmatched {
    NoEntry,
    /// An entry of another checkout matched but its outputs name that checkout.
    PinnedElsewhere,
    /// An entry of another checkout whose files differ in this one.
    OtherCheckoutDiffers,
}

/// Marks a pending store as ended when dropped.
struct PendingGuard<'a>(&'a crate::pending::PendingStores, Hash);

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0.end(&self.1);
    }
}

/// A compile result waiting to be checked and stored after the reply.
struct StoreJob {
    key: Hash,
    cwd: PathBuf,
    source: Option<(PathBuf, FileDigest)>,
    started_at: FileClock,
    captured: Captured,
    time_macros_matter: bool,
    result: StoredResult,
    session: Option<Arc<Session>>,
    /// The absolute source path and how it was compiled, for `zccache inspect`.
    record: (Vec<u8>, SourceRecord),
    /// The call's checkout, when its paths are keyed relative to the root.
    worktree: Option<Worktree>,
}

impl Daemon {
    /// Handles one compile request from start to reply. `progress` reaches the client ahead of
    /// the reply; rustc misses send their stderr through it as rustc writes it.
    pub(crate) fn compile(
        self: &Arc<Self>,
        request: CompileRequest,
        progress: Option<zccache_ipc::FrameSink>,
    ) -> Response {
        let at = SystemTime::now();
        let Some(mut call) = Call::decode(request) else {
            return Response::Error("empty argv".into());
        };
        call.session_id = call
            .env_var(SESSION_ENV)
            .filter(|id| !id.is_empty())
            .map(|id| id.to_string_lossy().into_owned());
        if let Some(id) = &call.session_id {
            call.session = self.sessions.get(id);
            if call.session.is_none() {
                tracing::debug!("{SESSION_ENV}={id} names no open session");
            }
        }
        let tool = detect_tool(&call.compiler);
        if matches!(tool, Some(ToolKind::Rustc | ToolKind::ClippyDriver)) {
            call.progress = progress;
        }
        match crate::worktree::detect(&call) {
            Remap::Off => {}
            Remap::On(worktree)
                if call.exec.is_none()
                    && matches!(
                        tool,
                        Some(ToolKind::GccLike | ToolKind::Rustc | ToolKind::ClippyDriver)
                    ) =>
            {
                call.worktree = Some(worktree)
            }
            Remap::On(_) => call.worktree_fallback(&self.stats, "unsupported_language"),
            Remap::Fallback(reason) => call.worktree_fallback(&self.stats, reason),
        }
        let response = match tool {
            _ if call.exec.is_some() => self.run_exec(&call),
            Some(ToolKind::GccLike) => self.compile_cc(&call),
            Some(ToolKind::Rustc) => self.compile_rust(&call, false),
            Some(ToolKind::ClippyDriver) => self.compile_rust(&call, true),
            Some(ToolKind::ClangTidy) => self.run_clang_tidy(&call),
            Some(ToolKind::Iwyu) => self.run_iwyu(&call),
            Some(ToolKind::Rustfmt) => self.run_rustfmt(&call),
            Some(ToolKind::Ar) => self.run_ar(&call),
            None => self.run_locally(&call, "unsupported_tool"),
        };
        self.journal_call(call, at, &response);
        response
    }

    /// Hands the call and what became of it to the journal.
    fn journal_call(&self, call: Call, at: SystemTime, response: &Response) {
        use zccache_core::journal::JournalOutcome as J;
        let link = call.link.load(std::sync::atomic::Ordering::Relaxed);
        let (outcome, reason, exit_code) = match response {
            Response::Compiled(reply) if link && reply.exit_code == 0 => match &reply.outcome {
                Outcome::Hit => (J::LinkHit, None, Some(0)),
                Outcome::Miss => (J::LinkMiss, None, Some(0)),
                Outcome::NotStored { reason } => (J::LinkMiss, Some(reason.clone()), Some(0)),
            },
            Response::Compiled(reply) => match &reply.outcome {
                Outcome::Hit => (J::Hit, None, Some(reply.exit_code)),
                Outcome::Miss => (J::Miss, None, Some(reply.exit_code)),
                Outcome::NotStored { reason } if reply.exit_code != 0 => {
                    (J::Error, Some(reason.clone()), Some(reply.exit_code))
                }
                Outcome::NotStored { reason } => {
                    (J::Miss, Some(reason.clone()), Some(reply.exit_code))
                }
            },
            Response::RunLocally { reason } => (J::NonCacheable, Some(reason.clone()), None),
            Response::Error(message) => (J::Error, Some(message.clone()), None),
            _ => return,
        };
        self.journal.record(JournalRecord {
            at,
            outcome,
            reason,
            latency_ns: call.received.elapsed().as_nanos() as u64,
            compiler: call.compiler,
            args: call.args,
            cwd: call.cwd,
            env: call.env,
            exit_code,
            session_id: call.session_id,
            session: call.session,
            worktree_hit: call.worktree_hit.into_inner(),
            remap_fallback: call.remap_fallback.into_inner(),
        });
    }

    /// Applies `count` to the daemon's statistics and to the call's session's.
    pub(crate) fn count(&self, call: &Call, count: impl Fn(&Stats)) {
        count(&self.stats);
        if let Some(session) = &call.session {
            count(&session.stats);
        }
    }

    /// Counts `reason` and tells the client to run the tool itself.
    pub(crate) fn run_locally(&self, call: &Call, reason: &str) -> Response {
        self.count(call, |stats| stats.non_cacheable(reason));
        Response::RunLocally {
            reason: reason.to_string(),
        }
    }

    /// [`Daemon::find_entry`] in `lookup`, with the store the entry was found in.
    pub(crate) fn look_up<'s>(
        &'s self,
        lookup: LookupStore<'s>,
        key: &Hash,
        call: &Call,
        memo: Option<&LookupMemo>,
    ) -> Option<(&'s Store, Found)> {
        let store = match lookup {
            LookupStore::Open(store) => store,
            // A result for this key on its way into the store is worth waiting for the store.
            // Checked before the store's state: a store ends only once the store is open, so
            // a store still opening after no result was in flight has none for this key.
            // With a remote tier the store is waited for: the entry may be there.
            LookupStore::Empty
                if !self.pending.contains(key)
                    && !self.store_is_open()
                    && self.remote.is_none() =>
            {
                return None
            }
            LookupStore::Empty => self.store()?,
        };
        Some((store, self.find_entry(store, key, call, memo)?))
    }

    /// The first stored entry for `key` whose inputs are unchanged for this call. `memo` is
    /// shared by the sources of one multi-file call, so headers they share are checked once.
    pub(crate) fn find_entry(
        &self,
        store: &Store,
        key: &Hash,
        call: &Call,
        memo: Option<&LookupMemo>,
    ) -> Option<Found> {
        // A result for this key may be on its way into the store.
        self.pending.wait_for(key);
        let manifest = match store.manifest(key) {
            Ok(Some(found)) => found,
            // Not here: the remote tier, if any (never asked when a local entry matches).
            Ok(None) => self.import_remote(store, key, call)?,
            Err(e) => {
                tracing::warn!("manifest lookup failed: {e}");
                self.count(call, Stats::error);
                return None;
            }
        };
        let unmatched = match self.match_entry(store, key, call, memo, &manifest) {
            Ok(found) => return Some(found),
            Err(unmatched) => unmatched,
        };
        // No local entry matches: another machine may have stored one that does.
        let merged = match self.remote {
            Some(_) => self.import_remote(store, key, call),
            None => None,
        };
        let unmatched = match merged {
            Some(merged) => match self.match_entry(store, key, call, memo, &merged) {
                Ok(found) => return Some(found),
                Err(unmatched) => unmatched,
            },
            None => unmatched,
        };
        match unmatched {
            Unmatched::PinnedElsewhere => call.note_remap_reason(&self.stats, "path_in_output"),
            Unmatched::OtherCheckoutDiffers => {
                call.note_remap_reason(&self.stats, "content_hash_mismatch")
            }
            Unmatched::NoEntry => {}
        }
        None
    }

    /// The first entry of `manifest` whose inputs are unchanged for this call, or why none.
    fn match_entry(
        &self,
        store: &Store,
        key: &Hash,
        call: &Call,
        memo: Option<&LookupMemo>,
        manifest: &Arc<Manifest>,
    ) -> Result<Found, Unmatched> {
        let own_listings;
        let listings = match memo {
            Some(memo) => &memo.listings,
            None => {
                own_listings = Listings::default();
                &own_listings
            }
        };
        // An entry of another checkout whose files differ in this one, or whose outputs name
        // that checkout (counted if none hits).
        let mut other_checkout_differs = false;
        let mut pinned_elsewhere = false;
        'entries: for (index, entry) in manifest.entries.iter().enumerate() {
            let mut newest_input_ns = i128::MIN;
            if let Some(newest) = self.verified.check(&self.fs, call, manifest, index) {
                newest_input_ns = newest;
            } else {
                let mut vouchers = Some(Vouchers::default());
                for dep in &entry.deps {
                    let resolved;
                    let stored = if crate::worktree::is_marked_path(&dep.path) {
                        // Stored relative to a worktree root: this call's root stands in.
                        let Some(worktree) = call.worktree() else {
                            continue 'entries;
                        };
                        resolved = worktree.resolve_path(&dep.path);
                        resolved.as_os_str()
                    } else {
                        zccache_platform::os_str::os_str_from_bytes(&dep.path)
                    };
                    let path = absolute_cow(&call.cwd, Path::new(stored));
                    let digest = match memo {
                        Some(memo) => memo.digest_vouched(&self.fs, call, &path),
                        None => call.digest_vouched(&self.fs, &path),
                    };
                    if let Some((digest, _)) = &digest {
                        if !digest.trusted {
                            // Written in the tick it was hashed in: should this lookup miss,
                            // the compile waits that tick out (see `fresh.rs`).
                            self.fresh.note(&path);
                        }
                    }
                    match digest {
                        Some((digest, voucher)) if digest.hash == dep.hash => {
                            newest_input_ns = newest_input_ns.max(digest.sig.mtime_ns);
                            match (voucher, vouchers.as_mut()) {
                                (Some(voucher), Some(all)) => all.add(voucher),
                                _ => vouchers = None,
                            }
                        }
                        _ => {
                            other_checkout_differs |= call.worktree().is_some_and(|w| {
                                stored_root_of(entry)
                                    != Some(w.root().as_os_str().as_encoded_bytes())
                            });
                            continue 'entries;
                        }
                    }
                }
                if let Some(vouchers) = vouchers {
                    self.verified
                        .remember(call, manifest, index, vouchers, newest_input_ns);
                }
            }
            match entry_env_holds(entry, call) {
                Ok(()) => {}
                Err(Unmatched::PinnedElsewhere) => {
                    pinned_elsewhere = true;
                    continue 'entries;
                }
                Err(_) => continue 'entries,
            }
            let resolved_check;
            let shadow = match (&entry.shadow, call.worktree()) {
                (Some(check), Some(worktree)) if crate::worktree::is_marked_path(&check.cwd) => {
                    let mut check = check.clone();
                    let same_root = stored_root_of(entry)
                        == Some(worktree.root().as_os_str().as_encoded_bytes());
                    let cwd = check.cwd.clone();
                    crate::search::mark_paths(&mut check, &|p| worktree.resolve(p));
                    if !same_root {
                        // Another checkout's directories were stamped: everything is derived
                        // anew in this one (and the per-entry memo, of the storing checkout,
                        // is not used).
                        check.cwd = cwd;
                    }
                    resolved_check = check;
                    Some(&resolved_check)
                }
                (check, _) => check.as_ref(),
            };
            if let Some(check) = shadow {
                let deps = || -> Vec<PathBuf> {
                    entry
                        .deps
                        .iter()
                        .map(|d| {
                            PathBuf::from(zccache_platform::os_str::os_str_from_bytes(&d.path))
                        })
                        .collect()
                };
                let derived = |changed: &[bool]| {
                    Some(
                        self.derived_shadows
                            .get_or_derive(manifest, index, check, &deps, changed),
                    )
                };
                let dirs = CallDirs { fs: &self.fs, call };
                if !crate::search::no_shadowing(check, &call.cwd, &dirs, &deps, &derived, listings)
                {
                    continue 'entries;
                }
            }
            store.note_use(key);
            return Ok(Found {
                manifest: manifest.clone(),
                index,
                newest_input_ns,
            });
        }
        Err(if pinned_elsewhere {
            Unmatched::PinnedElsewhere
        } else if other_checkout_differs {
            Unmatched::OtherCheckoutDiffers
        } else {
            Unmatched::NoEntry
        })
    }

    /// Delivers `found` with `deliver` and builds the hit reply; `None` (a miss) when delivery
    /// failed, e.g. because a blob was damaged.
    pub(crate) fn serve_hit(
        &self,
        call: &Call,
        found: &Found,
        deliver: impl FnOnce(&Found) -> Result<(), String>,
    ) -> Option<Response> {
        if let Err(why) = deliver(found) {
            tracing::warn!("could not serve a hit, running the tool instead: {why}");
            return None;
        }
        let spent_ms = call.received.elapsed().as_millis() as u64;
        let result = &found.entry().result;
        let saved_ms = result.compile_ms.saturating_sub(spent_ms);
        self.count(call, |stats| stats.hit(saved_ms));
        let (stdout, stderr) = match call.worktree() {
            Some(worktree) => {
                if stored_root_of(found.entry())
                    != Some(worktree.root().as_os_str().as_encoded_bytes())
                {
                    self.count(call, Stats::worktree_hit);
                    call.worktree_hit
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                (
                    worktree.resolve(&result.stdout),
                    worktree.resolve(&result.stderr),
                )
            }
            None => (result.stdout.clone(), result.stderr.clone()),
        };
        tracing::debug!("hit: served in {} us", call.received.elapsed().as_micros());
        Some(Response::Compiled(CompileReply {
            exit_code: result.exit_code,
            stdout,
            stderr,
            outcome: Outcome::Hit,
        }))
    }

    /// Runs the tool for a miss and replies with what it printed. A successful run's outputs
    /// are taken by `capture` before the reply; checking and storing them happen afterwards.
    pub(crate) fn run_miss(
        self: &Arc<Self>,
        call: &Call,
        args: &[OsString],
        mut miss: Miss,
        capture: impl FnOnce() -> Result<Captured, &'static str>,
    ) -> Response {
        if let Some((path, digest)) = &mut miss.source {
            crate::fresh::settle_source(&self.fs, &self.fresh, &absolute(&call.cwd, path), digest);
        }
        let started_at = FileClock::now();
        let started = Instant::now();
        tracing::debug!(
            "miss: {} us before the tool starts",
            call.received.elapsed().as_micros()
        );
        let (output, stderr_sent) = match call.run_streaming(&call.compiler, args) {
            Ok(ran) => ran,
            Err(e) => {
                tracing::info!("cannot run {}: {e}", call.compiler.display());
                return self.run_locally(call, "compiler_spawn_failed");
            }
        };
        let ran_for = started.elapsed();
        let compile_ms = ran_for.as_millis() as u64;
        let captured = if output.status.success() || miss.store_failures {
            capture()
        } else {
            Err("compile_failed")
        };
        tracing::debug!(
            "miss: the tool ran {} us, its outputs were taken in {} us",
            ran_for.as_micros(),
            (started.elapsed() - ran_for).as_micros()
        );
        let ran = Ran {
            started_at,
            compile_ms,
            exit_code: exit_code(&output.status),
            stdout: output.stdout,
            stderr: output.stderr,
            stderr_sent,
        };
        self.reply_miss(call, miss, ran, captured)
    }

    /// Counts a miss, queues the result for storing unless `captured` names the reason not to,
    /// and builds the reply. For front ends that decide what to keep only once the tool's exit
    /// status is known, or that reply with other than its raw output.
    pub(crate) fn reply_miss(
        self: &Arc<Self>,
        call: &Call,
        miss: Miss,
        ran: Ran,
        captured: Result<Captured, &'static str>,
    ) -> Response {
        self.count(call, Stats::miss);
        let outcome = match captured {
            Ok(captured) => {
                let result = StoredResult {
                    outputs: Vec::new(),
                    stdout: ran.stdout.clone(),
                    stderr: ran.stderr.clone(),
                    compile_ms: ran.compile_ms,
                    exit_code: ran.exit_code,
                };
                self.store_unit(call, miss, ran.started_at, captured, result);
                Outcome::Miss
            }
            Err(reason) => {
                self.count(call, |stats| stats.not_stored(reason));
                Outcome::NotStored {
                    reason: reason.into(),
                }
            }
        };
        let mut stderr = ran.stderr;
        stderr.drain(..ran.stderr_sent);
        Response::Compiled(CompileReply {
            exit_code: ran.exit_code,
            stdout: ran.stdout,
            stderr,
            outcome,
        })
    }

    /// Queues one compiled unit for checking and storing, after the reply.
    pub(crate) fn store_unit(
        self: &Arc<Self>,
        call: &Call,
        miss: Miss,
        started_at: FileClock,
        captured: Captured,
        result: StoredResult,
    ) {
        let record = (
            absolute(&call.cwd, &miss.record_as)
                .into_os_string()
                .into_encoded_bytes(),
            source_record(call, miss.key, miss.parts),
        );
        self.store_later(StoreJob {
            record,
            key: miss.key,
            cwd: call.cwd.clone(),
            source: miss.source,
            started_at,
            captured,
            time_macros_matter: miss.time_macros_matter,
            result,
            session: call.session.clone(),
            worktree: call.worktree().cloned(),
        });
    }

    /// Checks and stores `job` on a store worker; lookups of the same key wait for it.
    fn store_later(self: &Arc<Self>, job: StoreJob) {
        let key = job.key;
        self.pending.begin(&key);
        let daemon = Arc::clone(self);
        let queued = self.store_queue.push(Box::new(move || {
            // Ends the pending store however the work ends (a panic included).
            let _pending = PendingGuard(&daemon.pending, job.key);
            let session = job.session.clone();
            let not_stored = |reason: &str| {
                daemon.stats.not_stored(reason);
                if let Some(session) = &session {
                    session.stats.not_stored(reason);
                }
            };
            match daemon.finish_store(job) {
                Ok(store) => daemon.evict_if_needed(store),
                Err(reason) => not_stored(reason),
            }
        }));
        if queued.is_err() {
            self.pending.end(&key);
            self.stats.not_stored("store_unwritable");
        }
    }

    /// Over the size limit: evict least-recently-used entries, one pass at a time. Runs on the
    /// storing thread, after the reply, so no hit ever waits for it.
    fn evict_if_needed(&self, store: &Store) {
        use std::sync::atomic::Ordering;
        if !store.over_limit() || self.evicting.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = store.evict_to_limit() {
            tracing::warn!("eviction failed: {e}");
        }
        self.evicting.store(false, Ordering::SeqCst);
    }

    /// Checks that the inputs are still what the tool read, then stores the result; returns
    /// the store it went into, or the reason it was not stored.
    fn finish_store(&self, job: StoreJob) -> Result<&Store, &'static str> {
        let StoreJob {
            key,
            cwd,
            source,
            started_at,
            captured:
                Captured {
                    deps: reported,
                    hashed_deps,
                    env,
                    outputs,
                    search,
                    toolchain_dir,
                },
            time_macros_matter,
            mut result,
            session: _,
            record: (record_path, record),
            worktree,
        } = job;
        let source_path = source.as_ref().map(|(path, _)| absolute(&cwd, path));
        if let (Some(path), Some((_, digest))) = (&source_path, &source) {
            // The main input must be exactly what was hashed before the tool started.
            if !digest.still_holds(path) {
                return Err("input_modified_during_compile");
            }
            if time_macros_matter && digest.has_time_macros {
                return Err("time_macros");
            }
        }
        // Inputs hashed before the run are kept as hashed; the tool's report of them is not
        // checked again (a link's objects were written an instant before it started).
        let mut seen: HashSet<PathBuf> = hashed_deps
            .iter()
            .map(|d| {
                absolute(
                    &cwd,
                    Path::new(zccache_platform::os_str::os_str_from_bytes(&d.path)),
                )
            })
            .collect();
        let mut deps = hashed_deps;
        // Inputs written shortly before the run are remembered, to be waited out before the
        // next runs (see `fresh.rs`); one written in or after the tick the tool started in
        // refuses the result, but the other inputs are still looked at, to be remembered too.
        let mut modified = false;
        for dep in &reported {
            let path = absolute(&cwd, Path::new(dep));
            if source_path.as_ref() == Some(&path) || !seen.insert(path.clone()) {
                continue;
            }
            let digest = self.fs.digest(&path).map_err(|_| "dependency_unreadable")?;
            if crate::fresh::FreshInputs::is_fresh(&digest.sig, started_at) {
                self.fresh.note(&path);
            }
            if digest.sig.touched_since(started_at) {
                modified = true;
                continue;
            }
            if time_macros_matter && digest.has_time_macros {
                return Err("time_macros");
            }
            // Absolute paths are kept folded (`/usr/lib/gcc/…/../../include/x.h` as
            // `/usr/include/x.h`), so a hit checks them without folding; relative ones stay as
            // written, to be resolved against the caller's directory.
            let stored = if Path::new(dep).is_absolute() {
                path.as_os_str().as_encoded_bytes()
            } else {
                dep.as_bytes()
            };
            deps.push(DepDigest {
                path: stored.to_vec(),
                hash: digest.hash,
            });
        }
        if modified {
            return Err("input_modified_during_compile");
        }
        let mut shadow = search.map(|search| {
            let paths: Vec<PathBuf> = deps
                .iter()
                .map(|d| PathBuf::from(zccache_platform::os_str::os_str_from_bytes(&d.path)))
                .collect();
            let source = source.as_ref().map_or(Path::new(""), |(path, _)| path);
            crate::search::shadow_check(&search, &cwd, source, &paths)
        });
        let mut env = env;
        if let Some(worktree) = &worktree {
            // Stored with the root as a placeholder: a hit checks and names the files of the
            // caller's checkout (see `worktree.rs`).
            for dep in &mut deps {
                dep.path = worktree.mark(&dep.path);
            }
            if let Some(shadow) = &mut shadow {
                crate::search::mark_paths(shadow, &|p| worktree.mark(p));
            }
            // A variable the tool read (`env!("OUT_DIR")`) holds the checkout's paths as
            // placeholders, as its files do; an output that holds the value as written pins
            // the entry to this checkout (below).
            for var in &mut env {
                if let Some(value) = &mut var.value {
                    *value = worktree.mark(value);
                }
            }
            result.stdout = worktree.mark(&result.stdout);
            result.stderr = worktree.mark(&result.stderr);
            let root = worktree.root().as_os_str().as_encoded_bytes().to_vec();
            // An output that names the checkout despite the remap (rustc does not track a
            // proc-macro's `std::env::var`; a path no prefix map covers) is this checkout's
            // alone: never served to another, whose build would name its own.
            if outputs.iter().any(|o| worktree.occurs_in(&o.bytes)) {
                env.push(EnvDep {
                    name: crate::worktree::PINNED_ROOT.to_vec(),
                    value: Some(root.clone()),
                });
            }
            env.push(EnvDep {
                name: crate::worktree::STORED_ROOT.to_vec(),
                value: Some(root),
            });
        }
        if let Some(dir) = toolchain_dir {
            let named =
                |bytes: &[u8]| memchr::memmem::find(bytes, dir.as_os_str().as_encoded_bytes());
            if outputs.iter().any(|o| named(&o.bytes).is_some())
                || named(&result.stdout).is_some()
                || named(&result.stderr).is_some()
            {
                env.push(EnvDep {
                    name: PINNED_TOOLCHAIN.to_vec(),
                    value: Some(dir.into_os_string().into_encoded_bytes()),
                });
            }
        }
        // Only now the store: the inputs are checked and hashed while a new cache's index is
        // still being created (see `Daemon::lookup_store`), before the build can change them.
        if !self.store_is_open() {
            crate::server::note_store_wait_for_tests();
        }
        let store = self.store().ok_or("store_unavailable")?;
        let mut uploads = Vec::new();
        let upload = self.remote_writes();
        for output in outputs {
            let blob = store.put_bytes(&output.bytes).map_err(|e| {
                tracing::warn!("storing {}: {e}", output.role);
                "store_unwritable"
            })?;
            if upload {
                uploads.push((blob.hash, output.bytes));
            }
            result.outputs.push(StoredOutput {
                role: output.role,
                blob,
                executable: output.executable,
            });
        }
        store
            .add_entry_recorded(
                &key,
                ManifestEntry {
                    deps,
                    env,
                    shadow,
                    result,
                },
                Some((&record_path, record)),
            )
            .map_err(|e| {
                tracing::warn!("storing entry: {e}");
                "store_unwritable"
            })?;
        self.upload_remote(store, &key, uploads);
        Ok(store)
    }
}

/// Variables a recorded call keeps besides those its key names: what finding and identifying
/// the compiler needs when `zccache inspect` looks at it again.
const RECORD_ENV: &[&str] = &["PATH", "HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN"];

/// How `call` was compiled under `key`: the key's parts and the call, with only the
/// environment variables that matter to it.
fn source_record(call: &Call, key: Hash, parts: Vec<(String, String)>) -> SourceRecord {
    let keyed: HashSet<&str> = parts
        .iter()
        .filter_map(|(label, _)| label.strip_prefix("env "))
        .chain(RECORD_ENV.iter().copied())
        .collect();
    let bytes = |s: &OsStr| s.as_encoded_bytes().to_vec();
    SourceRecord {
        key,
        argv: std::iter::once(&call.name)
            .chain(&call.args)
            .map(|a| bytes(a))
            .collect(),
        program: bytes(call.compiler.as_os_str()),
        cwd: bytes(call.cwd.as_os_str()),
        env: call
            .env
            .iter()
            .filter(|(name, _)| name.to_str().is_some_and(|n| keyed.contains(n)))
            .map(|(name, value)| (bytes(name), bytes(value)))
            .collect(),
        stored_ms: SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        parts,
    }
}

pub(crate) use zccache_core::exit_code;

/// Whether every variable `entry` recorded has, for `call`, the value it was stored with:
/// the environment's, and the entry's pseudo-variables (the checkout root or the toolchain
/// directory its outputs name). `PinnedElsewhere` when only the checkout differs.
pub(crate) fn entry_env_holds(entry: &ManifestEntry, call: &Call) -> Result<(), Unmatched> {
    for var in &entry.env {
        let holds = if var.name == crate::worktree::STORED_ROOT {
            true
        } else if var.name == crate::worktree::PINNED_ROOT {
            let here = call
                .worktree()
                .map(|w| w.root().as_os_str().as_encoded_bytes());
            if var.value.as_deref() != here {
                return Err(Unmatched::PinnedElsewhere);
            }
            true
        } else if var.name == PINNED_TOOLCHAIN {
            toolchain_pin_holds(var.value.as_deref(), call)
        } else {
            env_var_holds(call, var)
        };
        if !holds {
            return Err(Unmatched::NoEntry);
        }
    }
    Ok(())
}

/// Whether the variable an entry recorded has the same value for `call`; under path
/// remapping, with the checkout's root as its placeholder on both sides.
pub(crate) fn env_var_holds(call: &Call, var: &EnvDep) -> bool {
    let now = call.env_var(&String::from_utf8_lossy(&var.name));
    match (now, &var.value) {
        (None, None) => true,
        (Some(now), Some(stored)) => {
            *crate::worktree::keyed(call.worktree(), now.as_encoded_bytes()) == **stored
        }
        _ => false,
    }
}

/// The last component of a path as bytes (all of it when it has none).
pub(crate) fn file_name_bytes(path: &OsStr) -> &[u8] {
    let bytes = path.as_encoded_bytes();
    match bytes.iter().rposition(|&b| b == b'/') {
        Some(slash) => &bytes[slash + 1..],
        None => bytes,
    }
}

/// The names a call gives its compiler, in its key: the file names of the binary and of the
/// name it was called by (`g++` and `gcc` are different drivers, `clang++` is `clang` called
/// by another name), not their directories. Where a driver is installed matters through what
/// it finds there, which its identity holds (`-print-search-dirs`, a rustc's libraries):
/// the same toolchain in another directory or home on another machine makes the same keys.
pub(crate) fn key_compiler_names(key: &mut KeyHasher, call: &Call) {
    key.part(
        "compiler file name",
        file_name_bytes(call.compiler.as_os_str()),
    );
    key.part("compiler name", file_name_bytes(&call.name));
}

/// Resolves a program name the way the caller's shell would: through the caller's PATH.
pub(crate) fn which(call: &Call, program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return Some(absolute(&call.cwd, program));
    }
    let path = call.env_var("PATH")?;
    std::env::split_paths(path)
        .map(|dir| absolute(&call.cwd, &dir.join(program)))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both pipes fill past their kernel buffer (64 KiB) in turns: reading one to its end
    /// before the other would deadlock. Every byte arrives, in order, and stderr is handed on
    /// piece by piece with the length so far.
    #[test]
    fn key_fields_do_not_run_together() {
        let mut a = KeyHasher::new("t");
        a.field(b"ab");
        a.field(b"c");
        let mut b = KeyHasher::new("t");
        b.field(b"a");
        b.field(b"bc");
        assert_ne!(a.finish(), b.finish());
    }

    /// Keys are the digest of the length-prefixed fields in order, however they are buffered:
    /// entries stored by an earlier version (which fed each field to blake3 as it came) stay
    /// reachable. Fields past the buffer's limit take the path that hashes as it goes.
    #[test]
    fn a_key_is_the_digest_of_its_length_prefixed_fields() {
        // The stream as an earlier version hashed it: one update per length and per field.
        let streamed = |fields: &[&[u8]]| {
            let mut hasher = blake3::Hasher::new();
            for bytes in fields {
                hasher.update(&(bytes.len() as u64).to_le_bytes());
                hasher.update(bytes);
            }
            *hasher.finalize().as_bytes()
        };
        let fields: Vec<Vec<u8>> = (0..3000)
            .map(|i| format!("-DDEFINE_{i}={i}").into_bytes())
            .chain([vec![7u8; KEY_PENDING_LIMIT * 2], b"tail".to_vec()])
            .collect();
        let mut key = KeyHasher::new("domain");
        for field in &fields {
            key.part("argument", field);
        }
        let all: Vec<&[u8]> = std::iter::once(&b"domain"[..])
            .chain(fields.iter().map(Vec::as_slice))
            .collect();
        assert_eq!(key.finish(), streamed(&all));
        // finish() leaves the key as it was: asking twice gives the same digest.
        assert_eq!(key.finish(), key.finish());
        let mut short = KeyHasher::new("domain");
        short.field(b"x");
        assert_eq!(short.finish(), streamed(&[b"domain", b"x"]));
    }
}
