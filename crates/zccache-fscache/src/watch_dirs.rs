//! The file watcher where zccache does not read inotify itself (Windows, macOS): directory
//! watches through [`zccache_watch`] (the platform layer's watcher) that vouch for directory
//! signatures and
//! listings, with a sentinel barrier.
//!
//! What it proves, and how:
//! - **Every change before a request has been handled** once [`Watcher::sync`] returns true:
//!   it writes a sentinel file into a watched directory of the cache root and waits for its
//!   event. Every watch reports through one thread in delivery order (see the platform
//!   module), so the sentinel's event comes after every earlier change's, except a change the
//!   system held back while a directory had no read pending; such a change always follows
//!   another change of the same directory that was handled first. So each directory counts
//!   *every* change it reports, and a snapshot holds the counts of the directory and of all
//!   its ancestors: whatever was held back, the count before it already moved. A sentinel not
//!   seen within [`BARRIER_WAIT`] fails the sync, and nothing is trusted for that request.
//! - **Every path to a directory is watched**: the directory and each ancestor up to the root,
//!   canonical (no links, junctions or 8.3 names on the way), on a local file system. A
//!   removal or rename of any of them retires it and everything below.
//! - **Lost changes lose everything**: an overflow, a rescan request, an error, or adding a
//!   watch where that restarts the backend's stream moves the epoch, and every
//!   snapshot taken before it is void.
//!
//! Files are not vouched for: a change notification names the path it was made through, and
//! a write through a hard link in an unwatched directory would go unseen. Their digests are
//! checked with `stat` ([`Watcher::arm`] never arms); directories, whose names can only change
//! through the directory itself, are what this watcher saves (the header-search and
//! shadowing checks read many of them).

use dashmap::DashMap;
use parking_lot::{Condvar, Mutex};
use rustc_hash::FxBuildHasher;
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zccache_platform::os_str::name_key;
use zccache_watch::{Change, DirWatcher, EntryKind};

/// How long a sync waits for its sentinel before giving up (then the request uses `stat`).
pub(crate) const BARRIER_WAIT: Duration = Duration::from_millis(250);

/// Watches beyond this many are not added.
const MAX_WATCHES: usize = 20_000;

/// Directories with more entries than this are not kept in memory (read each time instead).
const MAX_LISTING: usize = 20_000;

/// A watched directory and the count of changes it reported.
pub(crate) struct DirWatch {
    parent: Option<Arc<DirWatch>>,
    changes: AtomicU64,
    usable: AtomicBool,
    /// Its entry names (as keys), kept current by its changes once a request has read them.
    listing: Mutex<Option<Listing>>,
}

struct Listing {
    names: HashSet<Box<[u8]>, FxBuildHasher>,
    epoch: u64,
}

impl DirWatch {
    /// The sum of this directory's and its ancestors' change counts: it moves whenever any
    /// of them reports anything.
    fn chain_changes(&self) -> u64 {
        let mut sum = self.changes.load(Ordering::SeqCst);
        let mut up = self.parent.as_deref();
        while let Some(dir) = up {
            sum = sum.wrapping_add(dir.changes.load(Ordering::SeqCst));
            up = dir.parent.as_deref();
        }
        sum
    }

    fn chain_usable(&self) -> bool {
        let mut up = Some(self);
        while let Some(dir) = up {
            if !dir.usable.load(Ordering::SeqCst) {
                return false;
            }
            up = dir.parent.as_deref();
        }
        true
    }
}

/// Never made: files are checked with `stat` (see the module docs).
#[derive(Clone)]
#[allow(dead_code)] // never constructed
pub(crate) struct Armed(());

impl Armed {
    pub fn same(&self, _: &Armed) -> bool {
        false
    }
}

/// What must still hold for a directory's signature to be reused without a `stat`.
#[derive(Clone)]
pub(crate) struct ArmedDir {
    dir: Arc<DirWatch>,
    changes: u64,
    epoch: u64,
}

struct State {
    dirs: DashMap<Box<[u8]>, Arc<DirWatch>, FxBuildHasher>,
    epoch: AtomicU64,
    alive: AtomicBool,
    /// Held while a change is handled, and while a listing is read (so that every change
    /// handled after the read applies to the listing it installed).
    handling: Mutex<()>,
    /// Sentinels seen, by number, until their sync takes them.
    sentinels: Mutex<HashSet<u64>>,
    seen: Condvar,
    /// The directory sentinels are written to, as a key.
    barrier_key: Box<[u8]>,
}

pub(crate) struct Watcher {
    platform: DirWatcher,
    state: Arc<State>,
    barrier_dir: PathBuf,
    next_sentinel: AtomicU64,
}

/// The path as the file system compares it, as bytes (`\\?\` prefixes folded away, case
/// folded where the file system ignores it).
fn key_of(path: &Path) -> Box<[u8]> {
    let path = zccache_core::paths::absolute_cow(Path::new("/"), path);
    name_key(path.as_os_str().as_encoded_bytes()).into()
}

/// A key's parent key and last component, split at its last separator.
fn split_key(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = key
        .iter()
        .rposition(|b| zccache_platform::os_str::is_separator(*b))?;
    let parent = if at == 0 || (at == 2 && key[1] == b':') {
        &key[..=at] // `/` or `C:\`
    } else {
        &key[..at]
    };
    Some((parent, &key[at + 1..]))
}

impl Watcher {
    /// Starts watching, with sentinels written to `barrier_dir` (created if missing).
    /// `delay` holds every change back that long before it is handled (a test hook: a sync
    /// must then fail, never trust).
    pub fn start(delay: Duration, barrier_dir: &Path) -> io::Result<Watcher> {
        std::fs::create_dir_all(barrier_dir)?;
        let barrier_dir =
            zccache_core::paths::absolute(Path::new("/"), &barrier_dir.canonicalize()?);
        let state = Arc::new(State {
            dirs: DashMap::default(),
            epoch: AtomicU64::new(0),
            alive: AtomicBool::new(true),
            handling: Mutex::new(()),
            sentinels: Mutex::new(HashSet::new()),
            seen: Condvar::new(),
            barrier_key: key_of(&barrier_dir),
        });
        let handler_state = state.clone();
        let platform = DirWatcher::start(Box::new(move |change| {
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
            handle(&handler_state, change);
        }))?;
        let watcher = Watcher {
            platform,
            state,
            barrier_dir,
            next_sentinel: AtomicU64::new(0),
        };
        if watcher.dir_watch(&watcher.barrier_dir.clone()).is_none() {
            return Err(io::Error::other(format!(
                "{} cannot be watched (not canonical, or not on a local file system)",
                watcher.barrier_dir.display()
            )));
        }
        Ok(watcher)
    }

    /// Makes every change made before this call visible to the checks below: writes a
    /// sentinel and waits for it. False when that cannot be shown.
    pub fn sync(&self) -> bool {
        if !self.state.alive.load(Ordering::SeqCst) {
            return false;
        }
        let number = self.next_sentinel.fetch_add(1, Ordering::SeqCst);
        let sentinel = self
            .barrier_dir
            .join(format!("{}-{number}", std::process::id()));
        if std::fs::write(&sentinel, b"").is_err() {
            // The sentinel directory was removed (`zccache clear`, a user): made and watched
            // again for the next request; this one uses `stat`.
            self.rewatch_barrier();
            return false;
        }
        let deadline = Instant::now() + BARRIER_WAIT;
        let mut seen = self.state.sentinels.lock();
        let arrived = loop {
            if seen.remove(&number) {
                break true;
            }
            if self.state.seen.wait_until(&mut seen, deadline).timed_out() {
                break seen.remove(&number);
            }
        };
        drop(seen);
        let _ = std::fs::remove_file(&sentinel);
        if !arrived {
            // Its watch may be on a directory that is gone (removed and made again).
            self.rewatch_barrier();
        }
        arrived && self.state.alive.load(Ordering::SeqCst)
    }

    /// Makes the sentinel directory again if it is gone, and watches it afresh.
    fn rewatch_barrier(&self) {
        if std::fs::create_dir_all(&self.barrier_dir).is_ok() {
            retire_under(&self.state, &self.state.barrier_key);
            let _ = self.dir_watch(&self.barrier_dir);
        }
    }

    /// Files are not vouched for here: always `None` (see the module docs).
    pub fn arm(&self, _: &Path) -> Option<Armed> {
        None
    }

    pub fn valid(&self, _: &Armed) -> bool {
        false
    }

    /// Watches directory `dir` and its ancestors and snapshots their change counts. Call
    /// before the `stat` whose result the snapshot will vouch for.
    pub fn arm_dir(&self, dir: &Path) -> Option<ArmedDir> {
        if !self.state.alive.load(Ordering::SeqCst) {
            return None;
        }
        let watch = self.dir_watch(dir)?;
        Some(ArmedDir {
            changes: watch.chain_changes(),
            epoch: self.state.epoch.load(Ordering::SeqCst),
            dir: watch,
        })
    }

    /// Nothing in the armed directory or above it has changed since its snapshot (as of the
    /// last sync).
    pub fn valid_dir(&self, armed: &ArmedDir) -> bool {
        armed.dir.chain_usable()
            && armed.dir.chain_changes() == armed.changes
            && self.state.epoch.load(Ordering::SeqCst) == armed.epoch
            && self.state.alive.load(Ordering::SeqCst)
    }

    /// Whether directory `dir` has an entry `name`, as of the last sync: from its listing,
    /// read once and then kept current by its changes. `None` when the watcher cannot vouch
    /// for it: the caller reads the directory itself.
    pub fn contains(&self, dir: &Path, name: &[u8]) -> Option<bool> {
        if !self.state.alive.load(Ordering::SeqCst) {
            return None;
        }
        let watch = self.dir_watch(dir)?;
        let name = name_key(name);
        let current = |watch: &DirWatch| -> Option<bool> {
            let listing = watch.listing.lock();
            let listing = listing.as_ref()?;
            (watch.chain_usable() && listing.epoch == self.state.epoch.load(Ordering::SeqCst))
                .then(|| listing.names.contains(name.as_ref()))
        };
        if let Some(found) = current(&watch) {
            return Some(found);
        }
        // Read while no change is being handled: every change handled afterwards applies to
        // the listing installed here (applying one the read already reflects changes nothing
        // once the changes after it are applied too: creations add, removals take away).
        let handling = self.state.handling.lock();
        let epoch = self.state.epoch.load(Ordering::SeqCst);
        let mut names = HashSet::default();
        for entry in std::fs::read_dir(dir).ok()? {
            if names.len() >= MAX_LISTING {
                return None;
            }
            names.insert(name_key(entry.ok()?.file_name().as_encoded_bytes()).into());
        }
        *watch.listing.lock() = Some(Listing { names, epoch });
        drop(handling);
        current(&watch)
    }

    /// Directories and files watched.
    pub fn counts(&self) -> (usize, usize) {
        (self.state.dirs.len(), 0)
    }

    /// The watch for directory `dir` and its ancestors, established if needed.
    fn dir_watch(&self, dir: &Path) -> Option<Arc<DirWatch>> {
        let key = key_of(dir);
        if let Some(found) = self.state.dirs.get(&key) {
            return found
                .usable
                .load(Ordering::SeqCst)
                .then(|| found.value().clone());
        }
        if self.state.dirs.len() >= MAX_WATCHES {
            return None;
        }
        // Ancestors first, so a rename above `dir` after this point is seen.
        let parent = match dir.parent() {
            Some(parent) => Some(self.dir_watch(parent)?),
            None => None,
        };
        if key_of(&dir.canonicalize().ok()?) != key
            || !zccache_platform::fs::is_local_file_system(dir)
        {
            return None;
        }
        self.platform.watch(dir).ok()?;
        if zccache_watch::ADDING_LOSES_EVENTS {
            self.state.epoch.fetch_add(1, Ordering::SeqCst);
        }
        let watch = Arc::new(DirWatch {
            parent,
            changes: AtomicU64::new(0),
            usable: AtomicBool::new(true),
            listing: Mutex::new(None),
        });
        let watch = self.state.dirs.entry(key).or_insert(watch).value().clone();
        watch.usable.load(Ordering::SeqCst).then_some(watch)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.state.alive.store(false, Ordering::SeqCst);
        // Keys first: the watch thread's handler takes the map too.
        let keys: Vec<Box<[u8]>> = self.state.dirs.iter().map(|e| e.key().clone()).collect();
        for key in keys {
            let path = zccache_platform::os_str::os_str_from_bytes(&key);
            self.platform.unwatch(Path::new(path));
        }
    }
}

/// One change, on the watch thread.
fn handle(state: &State, change: Change) {
    let _handling = state.handling.lock();
    match change {
        Change::Lost => {
            state.epoch.fetch_add(1, Ordering::SeqCst);
        }
        Change::Unwatched(dir) => retire_under(state, &key_of(&dir)),
        Change::Entry { path, kind } => {
            let key = key_of(&path);
            let Some((parent, name)) = split_key(&key) else {
                return;
            };
            if let Some(dir) = state.dirs.get(parent).map(|d| d.value().clone()) {
                dir.changes.fetch_add(1, Ordering::SeqCst);
                let mut listing = dir.listing.lock();
                if let Some(names) = listing.as_mut() {
                    match kind {
                        EntryKind::Created | EntryKind::RenamedTo => {
                            names.names.insert(name.into());
                        }
                        EntryKind::Removed | EntryKind::RenamedFrom => {
                            names.names.remove(name);
                        }
                        EntryKind::Unknown => *listing = None,
                        EntryKind::Changed => {}
                    }
                }
            }
            if let Some(dir) = state.dirs.get(&key).map(|d| d.value().clone()) {
                // A watched directory itself: its stamps changed (names in it did, on backends
                // that report only that), or it was removed or renamed, which retires it and
                // everything below (a creation names a free path).
                dir.changes.fetch_add(1, Ordering::SeqCst);
                *dir.listing.lock() = None;
                if !matches!(kind, EntryKind::Changed | EntryKind::Created) {
                    retire_under(state, &key);
                }
            }
            if parent == state.barrier_key.as_ref() && kind == EntryKind::Created {
                let number = std::str::from_utf8(name)
                    .ok()
                    .and_then(|n| n.split_once('-'))
                    .filter(|(pid, _)| *pid == std::process::id().to_string())
                    .and_then(|(_, n)| n.parse().ok());
                if let Some(number) = number {
                    state.sentinels.lock().insert(number);
                    state.seen.notify_all();
                }
            }
        }
    }
}

/// Retires the directory `key` and every watched directory below it.
fn retire_under(state: &State, key: &[u8]) {
    let under = |candidate: &[u8]| {
        zccache_platform::os_str::below(candidate, key).is_some() || candidate == key
    };
    state.dirs.retain(|candidate, dir| {
        if under(candidate) {
            dir.usable.store(false, Ordering::SeqCst);
            dir.changes.fetch_add(1, Ordering::SeqCst);
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary directory (canonical), and a watcher whose sentinels go to another one:
    /// on Windows each sentinel also changes its directory's stamps, a change of the parent.
    fn setup_with_delay(delay: Duration) -> (Vec<tempfile::TempDir>, Watcher, PathBuf) {
        let (dir, barrier) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let root =
            zccache_core::paths::absolute(Path::new("/"), &dir.path().canonicalize().unwrap());
        let watcher = Watcher::start(delay, barrier.path()).unwrap();
        (vec![dir, barrier], watcher, root)
    }

    fn setup() -> (Vec<tempfile::TempDir>, Watcher, PathBuf) {
        setup_with_delay(Duration::ZERO)
    }

    /// Set by tests/windows/wine-runner.sh. Wine completes each directory handle's reads on
    /// its own, so changes of different handles can reach the completion port out of the
    /// order they were made in, which Windows does not do (see the platform module). Under
    /// Wine the barrier is therefore checked for delivery, not for order: a check may take a
    /// few syncs. Everywhere else it must hold after one.
    pub(crate) fn under_wine() -> bool {
        std::env::var_os("ZCCACHE_TEST_UNDER_WINE").is_some()
    }

    /// Syncs until `check` holds: once, or under Wine up to 40 times over about 2 s.
    pub(crate) fn synced_until(watcher: &Watcher, check: impl Fn() -> bool) -> bool {
        let tries = if under_wine() { 40 } else { 1 };
        (0..tries).any(|_| {
            let ok = watcher.sync() && check();
            if !ok && under_wine() {
                std::thread::sleep(Duration::from_millis(50));
            }
            ok
        })
    }

    /// Before a snapshot: every earlier change handled (under Wine, late ones given time).
    fn quiet(watcher: &Watcher) {
        if under_wine() {
            std::thread::sleep(Duration::from_millis(300));
        }
        assert!(watcher.sync());
    }

    #[test]
    fn a_listing_follows_every_name_change_seen_by_the_barrier() {
        let (_dirs, watcher, root) = setup();
        let inc = root.join("inc");
        std::fs::create_dir(&inc).unwrap();
        std::fs::write(inc.join("a.h"), "").unwrap();
        let has = |name: &str| watcher.contains(&inc, name.as_bytes());
        assert!(synced_until(&watcher, || has("a.h") == Some(true)));
        assert_eq!(has("b.h"), Some(false));
        for round in 0..20 {
            let name = format!("n{round}.h");
            std::fs::write(inc.join(&name), "").unwrap();
            assert!(
                synced_until(&watcher, || has(&name) == Some(true)),
                "{name} created"
            );
            std::fs::rename(inc.join(&name), inc.join("moved.h")).unwrap();
            assert!(
                synced_until(&watcher, || has(&name) == Some(false)
                    && has("moved.h") == Some(true)),
                "{name} renamed"
            );
            std::fs::remove_file(inc.join("moved.h")).unwrap();
            assert!(
                synced_until(&watcher, || has("moved.h") == Some(false)),
                "removed"
            );
        }
        if cfg!(windows) {
            // NTFS ignores case: so does the listing.
            assert_eq!(has("A.H"), Some(true));
        }
    }

    #[test]
    fn an_armed_directory_stays_valid_until_it_or_an_ancestor_changes() {
        let (_dirs, watcher, root) = setup();
        let inc = root.join("p").join("inc");
        std::fs::create_dir_all(&inc).unwrap();
        std::fs::write(inc.join("a.h"), "").unwrap();
        // As a request does: sync, then arm (changes before the sync would void it).
        quiet(&watcher);
        let armed = watcher.arm_dir(&inc).expect("armed");
        assert!(watcher.sync() && watcher.valid_dir(&armed));
        // Reading changes nothing.
        let _ = std::fs::read(inc.join("a.h")).unwrap();
        let _ = std::fs::read_dir(&inc).unwrap().count();
        assert!(watcher.sync() && watcher.valid_dir(&armed), "reads");
        // A new name in an ancestor.
        std::fs::create_dir(root.join("p").join("other")).unwrap();
        assert!(
            synced_until(&watcher, || !watcher.valid_dir(&armed)),
            "ancestor changed"
        );
        if cfg!(target_os = "linux") {
            // A change below a sibling is not this directory's. (Windows reports the
            // sibling's new stamps as a change of the parent.)
            let armed = watcher.arm_dir(&inc).expect("re-armed");
            std::fs::write(root.join("p").join("other").join("x"), "").unwrap();
            assert!(
                watcher.sync() && watcher.valid_dir(&armed),
                "below a sibling"
            );
        }
        quiet(&watcher);
        let armed = watcher.arm_dir(&inc).expect("re-armed");
        std::fs::write(inc.join("b.h"), "").unwrap();
        assert!(
            synced_until(&watcher, || !watcher.valid_dir(&armed)),
            "a new name in it"
        );

        // The directory's ancestor renamed away and another put in its place.
        quiet(&watcher);
        let armed = watcher.arm_dir(&inc).expect("re-armed");
        assert!(watcher.sync() && watcher.valid_dir(&armed));
        std::fs::rename(root.join("p"), root.join("q")).unwrap();
        std::fs::create_dir_all(&inc).unwrap();
        assert!(
            synced_until(&watcher, || !watcher.valid_dir(&armed)
                && watcher.contains(&inc, b"a.h") == Some(false)),
            "ancestor renamed and replaced: the new directory"
        );
        quiet(&watcher);
        let armed = watcher
            .arm_dir(&inc)
            .expect("the new directory is watched afresh");
        assert!(watcher.sync() && watcher.valid_dir(&armed));
    }

    #[test]
    fn a_sentinel_that_does_not_come_through_fails_the_sync() {
        // Every change is held back longer than a sync waits: nothing may be trusted.
        let (_dirs, watcher, root) = setup_with_delay(BARRIER_WAIT * 2);
        let inc = root.join("inc");
        std::fs::create_dir(&inc).unwrap();
        let _armed = watcher.arm_dir(&inc).expect("armed");
        std::fs::write(inc.join("a.h"), "").unwrap();
        assert!(!watcher.sync(), "the barrier cannot have been crossed");
    }

    #[test]
    fn a_removed_sentinel_directory_is_made_and_watched_again() {
        let (dirs, watcher, _root) = setup();
        assert!(watcher.sync());
        std::fs::remove_dir_all(dirs[1].path()).unwrap();
        // Fails where the directory is gone at once (Wine keeps a removed directory that a
        // watch holds open, as Windows without POSIX delete semantics does).
        if !cfg!(windows) {
            assert!(!watcher.sync(), "no sentinel can be written");
        }
        assert!(synced_until(&watcher, || true), "the next sync works again");
    }

    #[test]
    fn lost_changes_void_every_snapshot_and_listing() {
        let (_dirs, watcher, root) = setup();
        let inc = root.join("inc");
        std::fs::create_dir(&inc).unwrap();
        quiet(&watcher);
        let armed = watcher.arm_dir(&inc).expect("armed");
        assert!(watcher.sync() && watcher.valid_dir(&armed));
        assert_eq!(watcher.contains(&inc, b"ghost.h"), Some(false));
        // A change the watcher missed: the kept listing now disagrees with the directory,
        // and is what answers.
        let kept = watcher.state.dirs.get(&key_of(&inc)).unwrap().clone();
        if let Some(listing) = kept.listing.lock().as_mut() {
            listing.names.insert(name_key(b"ghost.h").into());
        }
        assert_eq!(watcher.contains(&inc, b"ghost.h"), Some(true));
        // Once changes are known to be lost, neither the snapshot nor the listing is used.
        handle(&watcher.state, Change::Lost);
        assert!(!watcher.valid_dir(&armed));
        assert_eq!(
            watcher.contains(&inc, b"ghost.h"),
            Some(false),
            "read again"
        );
    }

    #[test]
    fn linked_and_relative_paths_are_not_watched() {
        let (_dirs, watcher, root) = setup();
        std::fs::create_dir(root.join("real")).unwrap();
        if zccache_platform::fs::symlink(&root.join("real"), &root.join("alias")).is_ok() {
            assert!(watcher.arm_dir(&root.join("alias")).is_none());
        }
        assert!(watcher.arm_dir(Path::new("real")).is_none());
        assert!(watcher.arm_dir(&root.join("real")).is_some());
        assert!(
            watcher.arm(&root.join("real")).is_none(),
            "files are stat'ed"
        );
    }

    #[test]
    fn parent_keys_split_at_the_last_separator() {
        assert_eq!(split_key(b"/a/b.h"), Some((&b"/a"[..], &b"b.h"[..])));
        assert_eq!(split_key(b"/b.h"), Some((&b"/"[..], &b"b.h"[..])));
        if cfg!(windows) {
            assert_eq!(split_key(br"c:\a\b.h"), Some((&br"c:\a"[..], &b"b.h"[..])));
            assert_eq!(split_key(br"c:\b.h"), Some((&br"c:\"[..], &b"b.h"[..])));
        }
    }
}
