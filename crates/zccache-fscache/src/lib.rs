//! zccache-fscache: what the daemon knows about files it has read.
//!
//! [`FsCache`] maps a path to its last stat signature and content digest, so a hit re-hashes
//! nothing that has not changed. Correctness rests on the stat signature alone, never on
//! watcher timing: a cached digest is reused only when the file's (dev, inode, size, mtime,
//! ctime) are unchanged *and* its stamps were already older than the file clock read when it
//! was hashed. The kernel stamps files with a coarse clock ([`FileClock`]), so an edit made in
//! the same clock tick as the hashing could otherwise keep the same timestamps ("racily clean"
//! in git's words); such entries are re-hashed until the tick is over.
//!
//! With a watcher ([`FsCache::with_watcher`], Linux), a request that first calls
//! [`FsCache::sync`] may reuse a digest without even a `stat`, while the watcher proves nothing
//! touched the file (see `watch.rs` for what that proof takes). Without that proof the stat
//! signature decides, as above.
//!
//! This crate reads files and nothing else: no store, no compiler knowledge.

mod clock;
/// The watcher: inotify read directly on Linux (it vouches for files too); directory watches
/// through the platform layer elsewhere.
#[cfg(target_os = "linux")]
mod watch;
#[cfg(not(target_os = "linux"))]
#[path = "watch_dirs.rs"]
mod watch;
/// The portable watcher is tested on Linux too, with `notify`'s inotify backend under it.
#[cfg(all(test, target_os = "linux"))]
#[allow(dead_code)] // what only the daemon calls
mod watch_dirs;

pub use clock::FileClock;
/// Whether the daemon runs the file watcher unless told otherwise (see zccache-watch).
pub const WATCHER_ON_BY_DEFAULT: bool = zccache_watch::ON_BY_DEFAULT;
use dashmap::DashMap;
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;
use zccache_core::Hash;

/// Entries kept before the cache starts over, bounding the daemon's memory: ~250 bytes each
/// (path, digest, signature, map slot), so at most ~32 MB. A project of 50 000 sources sharing
/// its headers stays below it.
const MAX_ENTRIES: usize = 1 << 17;

/// The parts of `stat` that change when a file's content or identity changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatSig {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    /// The file system stamps this file more coarsely than the clock ticks (1 s or 2 s stamps:
    /// FAT, network mounts, ext2/3's small inodes): a stamp may lie up to
    /// [`clock::COARSE_STAMP`] before the write that made it.
    pub coarse: bool,
}

impl StatSig {
    /// Stats `path` (following symlinks). Stamps count as coarse when the file's device has
    /// coarse stamps or when neither stamp has a fraction of a second, as such file systems
    /// write them. The first file seen on a device has the device's
    /// file-system type looked up (`statfs`), once.
    pub fn of(path: &Path) -> io::Result<StatSig> {
        let stamp = zccache_platform::stamp::FileStamp::of_path(path)?;
        let coarse_device = clock::device_is_coarse(stamp.dev)
            .unwrap_or_else(|| clock::learn_device(stamp.dev, path));
        Ok(StatSig::with_device(stamp, coarse_device))
    }

    fn with_device(stamp: zccache_platform::stamp::FileStamp, coarse_device: bool) -> StatSig {
        StatSig {
            dev: stamp.dev,
            ino: stamp.ino,
            size: stamp.size,
            mtime_ns: stamp.mtime_ns,
            ctime_ns: stamp.ctime_ns,
            coarse: coarse_device || stamp.whole_seconds,
        }
    }

    /// True when the file may have been written at or after the moment `clock` was read: one
    /// of its stamps is not older than that reading (less the stamp granularity of a coarse
    /// file system). A write after the reading always carries a stamp at least as new, so
    /// `false` proves the file untouched since.
    pub fn touched_since(&self, clock: FileClock) -> bool {
        let limit = clock.nanos()
            - if self.coarse {
                clock::COARSE_STAMP.as_nanos() as i128
            } else {
                0
            };
        self.mtime_ns >= limit || self.ctime_ns >= limit
    }

    /// The newer of the two stamps.
    pub fn newest_stamp_ns(&self) -> i128 {
        self.mtime_ns.max(self.ctime_ns)
    }
}

/// The longest a tool's start waits for the tick of its inputs' last writes to end: a tick is
/// 1–10 ms, and a fine stamp can be ahead of the coarse clock by a little more than one (seen
/// on a VM: 4.6 ms with 4 ms ticks); a stamp further ahead (a coarse file system, a clock set
/// back) is not waited for.
pub const SETTLE_LIMIT: Duration = Duration::from_millis(25);

/// Waits until `sig`'s stamps are older than the file clock, so that a reading taken next
/// proves the file untouched since, as long as its stamps stay; `false` (without waiting) when
/// that would take longer than [`SETTLE_LIMIT`].
pub fn wait_out_stamps(sig: &StatSig) -> bool {
    let slack = if sig.coarse {
        clock::COARSE_STAMP.as_nanos() as i128
    } else {
        0
    };
    let target = sig.newest_stamp_ns() + slack;
    if target - FileClock::now().nanos() >= SETTLE_LIMIT.as_nanos() as i128 {
        return false;
    }
    FileClock::wait_past(target, SETTLE_LIMIT)
}

/// What we know about one file's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDigest {
    pub hash: Hash,
    pub sig: StatSig,
    /// The content mentions `__TIME__`, `__DATE__` or `__TIMESTAMP__`: output depends on the clock.
    pub has_time_macros: bool,
    /// The stamps were older than the file clock read before the content was: any later write
    /// changes `sig`, so an unchanged `sig` proves the content still is what `hash` says. An
    /// untrusted digest was taken in its file's last-write tick and proves nothing later.
    pub trusted: bool,
}

impl FileDigest {
    /// For an input hashed before a tool started: true when the file provably still holds the
    /// content that was hashed, so the tool read exactly that. It takes a trusted digest (one
    /// whose stamps were older than the file clock at hashing, see [`FsCache::settle`]) and an
    /// unchanged signature: any write since the hashing would have changed the stamps.
    pub fn still_holds(&self, path: &Path) -> bool {
        self.trusted && StatSig::of(path).is_ok_and(|sig| sig == self.sig)
    }
}

#[derive(Clone)]
struct Entry {
    digest: FileDigest,
    /// The watcher's snapshot taken before the stat that verified `digest`.
    armed: Option<watch::Armed>,
}

/// Path → digest cache shared by all request handlers. Keyed by the path's bytes with a fast
/// hasher: `Path`'s own `Hash` walks components and SipHash is slow, and a C++ hit looks up
/// hundreds of headers.
#[derive(Default)]
pub struct FsCache {
    entries: DashMap<Box<[u8]>, Entry, rustc_hash::FxBuildHasher>,
    /// Directory → its signature and the watcher's snapshot taken before that stat.
    dirs: DashMap<Box<[u8]>, (StatSig, watch::ArmedDir), rustc_hash::FxBuildHasher>,
    watcher: Option<watch::Watcher>,
}

/// The watcher's word that a file has not changed since its digest was taken: the snapshot
/// of its directory's event count.
#[derive(Clone)]
pub struct Voucher {
    armed: watch::Armed,
}

impl From<&watch::Armed> for Voucher {
    fn from(armed: &watch::Armed) -> Voucher {
        Voucher {
            armed: armed.clone(),
        }
    }
}

/// Vouchers for a set of files. Files in one directory share one snapshot, so a set of
/// hundreds of headers holds a voucher per directory.
#[derive(Clone, Default)]
pub struct Vouchers(Vec<Voucher>);

impl Vouchers {
    pub fn add(&mut self, voucher: Voucher) {
        if self.0.iter().any(|v| v.armed.same(&voucher.armed)) {
            return;
        }
        self.0.push(voucher);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether a request may reuse digests on the watcher's word (see [`FsCache::sync`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synced(bool);

impl Synced {
    /// No watcher proof: every digest is checked with `stat`.
    pub const NO: Synced = Synced(false);
}

impl FsCache {
    pub fn new() -> FsCache {
        FsCache::default()
    }

    /// A cache whose digests (Linux) and directory listings (everywhere) can be vouched for by
    /// a file watcher. `delay` holds the watcher's own thread back, for tests. The portable
    /// watcher writes its sentinels to `barrier_dir`. Without a watcher this is
    /// [`FsCache::new`].
    pub fn with_watcher(delay: Duration, barrier_dir: &Path) -> FsCache {
        match watch::Watcher::start(delay, barrier_dir) {
            Ok(watcher) => FsCache {
                watcher: Some(watcher),
                ..FsCache::default()
            },
            Err(e) => {
                tracing::warn!("file watcher unavailable, using stat only: {e}");
                FsCache::new()
            }
        }
    }

    /// Called once at the start of a request: afterwards every change made before the call is
    /// known to the watcher, so [`FsCache::digest_synced`] may skip `stat` for files it vouches
    /// for.
    pub fn sync(&self) -> Synced {
        if let Some(watcher) = &self.watcher {
            return Synced(watcher.sync());
        }
        Synced::NO
    }

    /// Files whose digest is held in memory.
    pub fn digest_count(&self) -> usize {
        self.entries.len()
    }

    /// Directories and files the watcher watches, or `None` without a watcher.
    pub fn watch_counts(&self) -> Option<(usize, usize)> {
        if let Some(watcher) = &self.watcher {
            return Some(watcher.counts());
        }
        None
    }

    /// The digest of `path`'s current content: from memory when provably unchanged, otherwise
    /// read and hashed now.
    pub fn digest(&self, path: &Path) -> io::Result<FileDigest> {
        self.digest_synced(path, Synced::NO)
    }

    /// [`FsCache::digest`] for a request that called [`FsCache::sync`]: a digest the watcher
    /// vouches for is returned without touching the file system.
    pub fn digest_synced(&self, path: &Path, synced: Synced) -> io::Result<FileDigest> {
        self.digest_vouched(path, synced).map(|(digest, _)| digest)
    }

    /// [`FsCache::digest_synced`], with the watcher's word that the file keeps this content
    /// for as long as the voucher stays good (see [`FsCache::still_vouched`]); `None` when
    /// the watcher cannot vouch for the file.
    pub fn digest_vouched(
        &self,
        path: &Path,
        synced: Synced,
    ) -> io::Result<(FileDigest, Option<Voucher>)> {
        let key = path.as_os_str().as_encoded_bytes();
        let mut armed = None;
        if let Some(watcher) = &self.watcher {
            if let Some(entry) = self.entries.get(key) {
                if let Some(vouched) = entry.armed.as_ref().filter(|a| watcher.valid(a)) {
                    if synced.0 {
                        return Ok((entry.digest, Some(Voucher::from(vouched))));
                    }
                    armed = Some(vouched.clone());
                }
            }
            if armed.is_none() {
                // The snapshot comes before the stat it will vouch for.
                armed = watcher.arm(path);
            }
        }
        let sig = StatSig::of(path)?;
        if let Some(mut entry) = self.entries.get_mut(key) {
            if entry.digest.trusted && entry.digest.sig == sig {
                let voucher = armed.as_ref().map(Voucher::from);
                entry.armed = armed;
                return Ok((entry.digest, voucher));
            }
        }
        let hashed_at = FileClock::now();
        let (hash, has_time_macros) = hash_file(path)?;
        let after = StatSig::of(path)?;
        let trusted = !sig.touched_since(hashed_at);
        let digest = FileDigest {
            hash,
            sig,
            has_time_macros,
            trusted,
        };
        if after != sig {
            // Changed while we read it: report what we read, remember nothing.
            self.entries.remove(key);
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                format!("{} changed while it was being hashed", path.display()),
            ));
        }
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
        let armed = armed.filter(|_| trusted);
        let voucher = armed.as_ref().map(Voucher::from);
        self.entries.insert(key.into(), Entry { digest, armed });
        Ok((digest, voucher))
    }

    /// Before a tool starts: a digest taken in its file's last-write tick (not trusted) is
    /// waited out, at most [`SETTLE_LIMIT`], and taken again, so that the check after the run
    /// ([`FileDigest::still_holds`]) is exact and a file written a moment before its compile
    /// can be stored. The digest is replaced only when the content is the same as was hashed
    /// (the caller's key rests on it); otherwise it stays untrusted and the result is not
    /// stored. Returns whether it waited.
    pub fn settle(&self, path: &Path, digest: &mut FileDigest) -> bool {
        if digest.trusted || !wait_out_stamps(&digest.sig) {
            return false;
        }
        if let Ok(again) = self.digest(path) {
            if again.hash == digest.hash && again.trusted {
                *digest = again;
            }
        }
        true
    }

    /// True while every file behind `vouchers` keeps the content it had when its voucher was
    /// given (for a request that called [`FsCache::sync`]): a few atomic loads for a whole
    /// set of headers, where checking each digest costs a lookup per file.
    pub fn still_vouched(&self, vouchers: &Vouchers, synced: Synced) -> bool {
        match (&self.watcher, synced.0) {
            (Some(watcher), true) => vouchers.0.iter().all(|v| watcher.valid(&v.armed)),
            _ => false,
        }
    }

    /// A directory's stat signature, which changes whenever a name in it does: from memory
    /// while the watcher proves no name in it changed since it was taken (after
    /// [`FsCache::sync`]), otherwise stat'ed now. Shadowing checks compare it with the
    /// signature recorded when a result was stored.
    pub fn dir_signature(&self, dir: &Path, synced: Synced) -> io::Result<StatSig> {
        if let Some(watcher) = &self.watcher {
            let key = dir.as_os_str().as_encoded_bytes();
            if synced.0 {
                if let Some(known) = self.dirs.get(key) {
                    if watcher.valid_dir(&known.1) {
                        return Ok(known.0);
                    }
                }
            }
            // The snapshot comes before the stat it will vouch for.
            let armed = watcher.arm_dir(dir);
            let sig = StatSig::of(dir)?;
            match armed {
                Some(armed) => {
                    if self.dirs.len() >= MAX_ENTRIES {
                        self.dirs.clear();
                    }
                    self.dirs.insert(key.into(), (sig, armed));
                }
                None => {
                    self.dirs.remove(key);
                }
            }
            return Ok(sig);
        }
        StatSig::of(dir)
    }

    /// Whether directory `dir` has an entry `name`, from a listing the watcher keeps current
    /// (after [`FsCache::sync`]); `None` when it cannot vouch for one, and the caller reads the
    /// directory itself.
    pub fn dir_contains(&self, dir: &Path, name: &std::ffi::OsStr, synced: Synced) -> Option<bool> {
        match (&self.watcher, synced.0) {
            (Some(watcher), true) => watcher.contains(dir, name.as_encoded_bytes()),
            _ => None,
        }
    }

    /// Forgets a path (a watcher hint, or a file we know we just wrote).
    pub fn invalidate(&self, path: &Path) {
        self.entries.remove(path.as_os_str().as_encoded_bytes());
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// How much of a file is read at once: all of most sources and headers.
const READ_CHUNK: usize = 64 * 1024;

/// Bytes kept from the end of one read to find a time macro split across two: the longest
/// name, `__TIMESTAMP__`, less one.
const MACRO_SEAM: usize = 12;

/// Hashes a file's content and looks for time macros in the same pass.
pub fn hash_file(path: &Path) -> io::Result<(Hash, bool)> {
    // Non-blocking, so that a FIFO (or a device) among a compile's inputs fails here instead
    // of holding the thread until someone writes to it.
    let mut file = zccache_platform::stamp::open_for_reading(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a regular file", path.display()),
        ));
    }
    let mut hasher = blake3::Hasher::new();
    let mut time_macros = false;
    // The last bytes of the previous read, then this read's (not zeroed first: a 100-byte
    // source should not cost clearing 64 KiB).
    let mut window = Vec::with_capacity(MACRO_SEAM + READ_CHUNK);
    loop {
        let kept = window.len();
        (&mut file)
            .take(READ_CHUNK as u64)
            .read_to_end(&mut window)?;
        if window.len() == kept {
            break;
        }
        hasher.update(&window[kept..]);
        time_macros = time_macros || mentions_time_macro(&window);
        window.drain(..window.len().saturating_sub(MACRO_SEAM));
    }
    Ok((*hasher.finalize().as_bytes(), time_macros))
}

/// True when `text` contains `__TIME__`, `__DATE__` or `__TIMESTAMP__`.
pub fn mentions_time_macro(text: &[u8]) -> bool {
    static NAMES: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 3]> =
        std::sync::LazyLock::new(|| {
            [&b"__TIME__"[..], b"__DATE__", b"__TIMESTAMP__"].map(memchr::memmem::Finder::new)
        });
    NAMES.iter().any(|name| name.find(text).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    #[cfg(target_os = "linux")]
    use std::path::PathBuf;
    use std::time::SystemTime;

    fn under_wine() -> bool {
        std::env::var_os("ZCCACHE_TEST_UNDER_WINE").is_some()
    }

    /// A cache with a watcher, whose sentinels go to a directory of their own (the daemon's
    /// go to its cache root).
    fn watched(delay: Duration) -> (FsCache, tempfile::TempDir) {
        let barrier = tempfile::tempdir().unwrap();
        (FsCache::with_watcher(delay, barrier.path()), barrier)
    }

    /// Waits until `paths` carry stamps older than the file clock. A stamp may be a fine
    /// reading ahead of the coarse clock by more than a tick, so this waits for the clock, not
    /// for a fixed time.
    fn settle(paths: &[&Path]) {
        for path in paths {
            let stamp = StatSig::of(path).unwrap().newest_stamp_ns();
            assert!(FileClock::wait_past(stamp, Duration::from_secs(1)));
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn vouchers_hold_one_snapshot_per_directory_until_a_file_changes() {
        // The directory outlives the watcher (on Windows its handles would keep it).
        let tmp = tempfile::tempdir().unwrap();
        let (fs, _barrier) = watched(Duration::ZERO);
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let files = ["inc/a.h", "inc/b.h", "sys/c.h"].map(|f| root.join(f));
        let old = SystemTime::now() - Duration::from_secs(3600);
        for file in &files {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, "1").unwrap();
            std::fs::File::open(file)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        // Their ctime is now: once its tick is over they are trusted.
        settle(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>());
        let vouch_all = || {
            let synced = fs.sync();
            let mut vouchers = Vouchers::default();
            for file in &files {
                let (_, voucher) = fs.digest_vouched(file, synced).unwrap();
                vouchers.add(voucher.expect("a settled file on a local file system"));
            }
            vouchers
        };
        let vouchers = vouch_all();
        assert_eq!(vouchers.len(), 2, "one per directory");
        assert!(fs.still_vouched(&vouchers, fs.sync()));
        assert!(
            !fs.still_vouched(&vouchers, Synced::NO),
            "only after a sync"
        );
        // Reading, or a new unrelated file beside them, changes nothing.
        let _ = std::fs::read(&files[0]).unwrap();
        std::fs::write(root.join("inc/unrelated.h"), "").unwrap();
        assert!(fs.still_vouched(&vouchers, fs.sync()));
        for (i, file) in files.iter().enumerate() {
            let vouchers = vouch_all();
            assert!(fs.still_vouched(&vouchers, fs.sync()));
            std::fs::write(file, format!("edited {i}")).unwrap();
            assert!(
                !fs.still_vouched(&vouchers, fs.sync()),
                "{}",
                file.display()
            );
            settle(&[file]);
        }
    }

    #[test]
    fn a_kept_listing_follows_every_name_change_even_with_the_watcher_thread_held_back() {
        // Linux's inotify watcher reads the events a request depends on itself; the portable
        // watcher's barrier waits for its thread (and fails when held back, see watch_dirs).
        let delays: &[Duration] = if cfg!(target_os = "linux") {
            &[Duration::ZERO, Duration::from_secs(3600)]
        } else {
            &[Duration::ZERO]
        };
        for &delay in delays {
            let tmp = tempfile::tempdir().unwrap();
            let (fs, _barrier) = watched(delay);
            let root = std::fs::canonicalize(tmp.path()).unwrap();
            let dir = root.join("src");
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("main.c"), "").unwrap();
            std::fs::write(root.join("outside.h"), "").unwrap();
            let names = ["main.c", "a.h", "b.h", "outside.h", "sub", "main.o"];
            let agree = |what: &str| {
                // Under Wine a change may arrive after the sentinel (see watch_dirs' tests).
                let tries = if under_wine() { 40 } else { 1 };
                for attempt in 1..=tries {
                    let synced = fs.sync();
                    let wrong = names.iter().find(|name| {
                        let real = dir.join(name).symlink_metadata().is_ok();
                        fs.dir_contains(&dir, name.as_ref(), synced) != Some(real)
                    });
                    match wrong {
                        None => break,
                        Some(_) if attempt < tries => std::thread::sleep(Duration::from_millis(50)),
                        Some(name) => panic!("{what}: {name} ({delay:?})"),
                    }
                }
            };
            agree("first read");
            type Change = fn(&Path);
            let changes: [(&str, Change); 7] = [
                ("created", |d| std::fs::write(d.join("a.h"), "").unwrap()),
                ("renamed", |d| {
                    std::fs::rename(d.join("a.h"), d.join("b.h")).unwrap()
                }),
                ("moved in", |d| {
                    std::fs::rename(d.parent().unwrap().join("outside.h"), d.join("outside.h"))
                        .unwrap()
                }),
                ("moved out", |d| {
                    std::fs::rename(d.join("outside.h"), d.parent().unwrap().join("outside.h"))
                        .unwrap()
                }),
                ("removed", |d| std::fs::remove_file(d.join("b.h")).unwrap()),
                ("directory created", |d| {
                    std::fs::create_dir(d.join("sub")).unwrap()
                }),
                ("hardlinked in", |d| {
                    std::fs::hard_link(d.join("main.c"), d.join("main.o")).unwrap()
                }),
            ];
            for (what, change) in changes {
                change(&dir);
                agree(what);
            }
            // Unsynced calls and directories it cannot vouch for are left to the caller.
            assert_eq!(fs.dir_contains(&dir, "a.h".as_ref(), Synced::NO), None);
            let missing = root.join("missing");
            assert_eq!(fs.dir_contains(&missing, "a.h".as_ref(), fs.sync()), None);
        }
    }

    #[test]
    fn a_directory_signature_from_memory_follows_every_name_change() {
        // The directory outlives the watcher (on Windows its handles would keep it).
        let tmp = tempfile::tempdir().unwrap();
        let (fs, _barrier) = watched(Duration::ZERO);
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let dir = root.join("inc");
        std::fs::create_dir(&dir).unwrap();
        let touch_attributes = |path: &Path| {
            let old = SystemTime::now() - Duration::from_secs(3600);
            let mut options = std::fs::File::options();
            options.read(true);
            #[cfg(windows)]
            {
                // A directory opens only with FILE_FLAG_BACKUP_SEMANTICS, and is stamped
                // through a handle with write access.
                use std::os::windows::fs::OpenOptionsExt;
                options.write(true).custom_flags(0x0200_0000);
            }
            options.open(path).unwrap().set_modified(old).unwrap();
        };
        let check = |what: &str, previous: StatSig| {
            // Under Wine a change may arrive after the sentinel (see watch_dirs' tests).
            let tries = if under_wine() { 40 } else { 1 };
            let mut attempt = 1;
            loop {
                let now = fs.dir_signature(&dir, fs.sync()).unwrap();
                if now != StatSig::of(&dir).unwrap() && attempt < tries {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                assert_eq!(now, StatSig::of(&dir).unwrap(), "{what}: must match stat");
                assert_ne!(now, previous, "{what}: must change");
                return now;
            }
        };
        touch_attributes(&dir);
        let mut sig = fs.dir_signature(&dir, fs.sync()).unwrap();
        std::fs::write(root.join("outside.h"), "").unwrap();
        if cfg!(target_os = "linux") {
            // No name in it changed: the signature comes from memory, so an attribute change
            // (which creates no file) is not even seen. (The portable watcher counts every
            // change of the directory and its ancestors, these too.)
            touch_attributes(&dir);
            assert_eq!(fs.dir_signature(&dir, fs.sync()).unwrap(), sig);
            assert_ne!(StatSig::of(&dir).unwrap(), sig);
        }
        if under_wine() {
            std::thread::sleep(Duration::from_millis(300));
        }
        let quiet = fs.dir_signature(&dir, fs.sync()).unwrap();
        assert_eq!(
            fs.dir_signature(&dir, fs.sync()).unwrap(),
            quiet,
            "nothing changed"
        );
        // And it came from memory.
        let armed = fs
            .dirs
            .get(dir.as_os_str().as_encoded_bytes())
            .expect("watched");
        let watcher = fs.watcher.as_ref().expect("a watcher");
        assert!(fs.sync().0 && watcher.valid_dir(&armed.1), "from memory");
        drop(armed);
        type Change = fn(&Path);
        let changes: [(&str, Change); 6] = [
            ("a name created", |d| {
                std::fs::write(d.join("a.h"), "").unwrap()
            }),
            ("a name renamed", |d| {
                std::fs::rename(d.join("a.h"), d.join("b.h")).unwrap()
            }),
            ("a name moved in", |d| {
                std::fs::rename(d.parent().unwrap().join("outside.h"), d.join("c.h")).unwrap()
            }),
            ("a name removed", |d| {
                std::fs::remove_file(d.join("b.h")).unwrap()
            }),
            ("a subdirectory created", |d| {
                std::fs::create_dir(d.join("sub")).unwrap()
            }),
            ("the directory replaced", |d| {
                std::fs::rename(d, d.parent().unwrap().join("old")).unwrap();
                std::fs::create_dir(d).unwrap();
            }),
        ];
        for (what, change) in changes {
            // Whatever the file system clock's granularity, the change shows in mtime/ctime.
            touch_attributes(&dir);
            sig = StatSig::of(&dir).unwrap();
            fs.dirs.clear();
            assert_eq!(fs.dir_signature(&dir, fs.sync()).unwrap(), sig);
            change(&dir);
            sig = check(what, sig);
            assert_eq!(
                fs.dir_signature(&dir, fs.sync()).unwrap(),
                sig,
                "{what}: kept"
            );
        }
    }

    #[test]
    fn time_macros_are_found() {
        assert!(mentions_time_macro(b"const char* t = __TIME__;"));
        assert!(mentions_time_macro(b"__DATE__"));
        assert!(mentions_time_macro(b"x___TIMESTAMP__"));
        assert!(!mentions_time_macro(b"__TIM__ __DAT_ __x__"));
        assert!(!mentions_time_macro(b""));
    }

    #[test]
    fn time_macros_are_found_at_every_offset_around_read_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.h");
        for name in [&b"__TIME__"[..], b"__DATE__", b"__TIMESTAMP__"] {
            for at in (READ_CHUNK - 16..READ_CHUNK + 2).chain(2 * READ_CHUNK - 14..2 * READ_CHUNK) {
                let mut content = vec![b'_'; at];
                content.extend_from_slice(name);
                content.extend_from_slice(b"_ tail");
                std::fs::write(&path, &content).unwrap();
                let (hash, found) = hash_file(&path).unwrap();
                assert!(found, "{} at {at}", String::from_utf8_lossy(name));
                assert_eq!(hash, *blake3::hash(&content).as_bytes());
                // One byte of the name changed: nothing to find, wherever it is.
                let mut near = content.clone();
                near[at + 3] = b'x';
                std::fs::write(&path, &near).unwrap();
                assert!(!hash_file(&path).unwrap().1, "near miss at {at}");
            }
        }
    }

    #[test]
    fn time_macro_split_across_reads_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.h");
        let mut content = vec![b' '; 64 * 1024 - 3];
        content.extend_from_slice(b"__TIME__");
        std::fs::write(&path, &content).unwrap();
        assert!(hash_file(&path).unwrap().1);
    }

    /// Writes `content` with an mtime 100 s in the past, and returns that time.
    fn write_backdated(path: &Path, content: &[u8]) -> std::time::SystemTime {
        std::fs::write(path, content).unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(100);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        old
    }

    #[test]
    fn digest_changes_with_content_even_when_size_and_mtime_are_restored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.h");
        let old = write_backdated(&path, b"int a = 1;");
        let cache = FsCache::new();
        let first = cache.digest(&path).unwrap();
        // Same size, mtime restored, immediately after hashing.
        let mut file = std::fs::File::options().write(true).open(&path).unwrap();
        file.write_all(b"int a = 2;").unwrap();
        file.set_modified(old).unwrap();
        drop(file);
        let second = cache.digest(&path).unwrap();
        assert_ne!(first.hash, second.hash);
    }

    #[test]
    fn fresh_files_are_rehashed_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fresh.h");
        std::fs::write(&path, b"1").unwrap();
        let cache = FsCache::new();
        // Written and hashed in one tick of the file clock (nearly always: retried when the
        // tick ended in between), the digest proves nothing about later writes in that tick.
        let mut same_tick = 0;
        for _ in 0..100 {
            std::fs::write(&path, b"1").unwrap();
            let digest = cache.digest(&path).unwrap();
            if digest.sig.newest_stamp_ns() >= FileClock::now().nanos() {
                same_tick += 1;
                assert!(
                    !digest.trusted,
                    "a file written in the current tick must not be trusted"
                );
            }
        }
        assert!(same_tick > 0);
        // Once the tick is over, hashing it again makes a trusted digest.
        settle(&[&path]);
        assert!(cache.digest(&path).unwrap().trusted);
    }

    #[test]
    fn old_files_are_served_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.h");
        write_backdated(&path, b"1");
        // ctime is "now" after set_modified: wait out its tick so the entry is trusted.
        settle(&[&path]);
        let cache = FsCache::new();
        let first = cache.digest(&path).unwrap();
        assert!(
            cache
                .entries
                .get(path.as_os_str().as_encoded_bytes())
                .unwrap()
                .digest
                .trusted
        );
        assert_eq!(cache.digest(&path).unwrap(), first);
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.h");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let error = FsCache::new().digest(&fifo).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
    }

    #[test]
    fn missing_files_are_errors() {
        let cache = FsCache::new();
        assert_eq!(
            cache
                .digest(Path::new("/nonexistent/zccache/x.h"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }
}
