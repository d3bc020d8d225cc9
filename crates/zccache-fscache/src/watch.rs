//! The inotify watcher that lets a hit skip `stat`.
//!
//! A file's cached digest may be reused without a syscall only while the watcher proves that
//! nothing touched it. The proof has three parts:
//!
//! - **Every path to the content is watched.** The file's inode is watched (so a write through
//!   any hardlink is seen), and so are its directory and every ancestor directory up to `/`
//!   (so a rename, delete or replacement of the file or of any directory above it is seen).
//!   Only canonical directories (no symlinks on the way) on local file systems are used, and a
//!   directory whose inode is also watched under another path is never trusted.
//! - **Nothing happened since the file was checked.** Each watched directory counts the events
//!   that concern it. A snapshot of the count is taken *before* the file is stat'ed; the
//!   digest stays trusted only while the count is unchanged (and no queue overflow, watch
//!   loss or mount change bumped the global epoch in between).
//! - **Every event that happened before the request has been read.** The kernel queues an
//!   inotify event inside the system call that makes the change (`write`, `rename`, `unlink`…
//!   return only after it is queued), so every change made before a request was sent is in the
//!   queue when the request arrives. Before trusting anything, the request itself reads the
//!   queue until it is empty (under the lock the watcher thread also drains it with) and counts
//!   what it finds. A read error or a lost queue means nothing is trusted. (Earlier versions
//!   had the thread read the events and made each request wait for a "cookie" file's event to
//!   come through: two more file operations and two thread switches per hit.)
//!
//! Anything short of that proof falls back to `stat` (and re-hashing when the signature
//! changed), which is what correctness rests on without a watcher.

use dashmap::DashMap;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use parking_lot::Mutex;
use rustc_hash::FxBuildHasher;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Watches beyond this many are not added (the kernel's own limit may be lower).
const MAX_WATCHES: usize = 100_000;

/// What a file's inode watch reports: any change to its content or metadata, its deletion or
/// its move. (Not IN_OPEN: reading changes nothing.)
const FILE_EVENTS: WatchMask = WatchMask::MODIFY
    .union(WatchMask::ATTRIB)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::DONT_FOLLOW);

/// What a directory watch reports: names created, removed or renamed in it, and its own
/// deletion or move.
const DIR_EVENTS: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR)
    .union(WatchMask::DONT_FOLLOW);

/// A watched directory and the count of events that concern it.
pub(crate) struct DirWatch {
    path: Box<[u8]>,
    /// Events concerning the watched files in it (and the directory itself).
    events: AtomicU64,
    /// Names created, removed or renamed in it: its listing changed.
    names: AtomicU64,
    usable: AtomicBool,
    /// Its entry names, kept current by its events once a request has read them.
    listing: Mutex<Option<Listing>>,
}

/// A directory's entry names and the epoch they belong to.
struct Listing {
    names: std::collections::HashSet<Box<[u8]>, FxBuildHasher>,
    epoch: u64,
}

/// Directories with more entries than this are not kept in memory (read each time instead).
const MAX_LISTING: usize = 20_000;

impl DirWatch {
    fn bump(&self) {
        self.events.fetch_add(1, Ordering::SeqCst);
    }

    fn retire(&self) {
        self.usable.store(false, Ordering::SeqCst);
        self.bump();
        self.names.fetch_add(1, Ordering::SeqCst);
    }
}

/// What must still hold for a directory's signature (its listing) to be reused without a
/// `stat`: no name in it changed and it is still the directory at that path.
#[derive(Clone)]
pub(crate) struct ArmedDir {
    dir: Arc<DirWatch>,
    names: u64,
    epoch: u64,
}

/// What must still hold for a digest to be reused without a `stat`.
#[derive(Clone)]
pub(crate) struct Armed {
    dir: Arc<DirWatch>,
    events: u64,
    epoch: u64,
}

impl Armed {
    /// The same snapshot of the same directory (files there share it).
    pub fn same(&self, other: &Armed) -> bool {
        Arc::ptr_eq(&self.dir, &other.dir)
            && self.events == other.events
            && self.epoch == other.epoch
    }
}

/// What a watch descriptor stands for.
enum Target {
    Dir(Arc<DirWatch>),
    /// A file's inode, and the directory entries (path, parent) that name it.
    File(Vec<(Box<[u8]>, Arc<DirWatch>)>),
}

struct State {
    targets: Mutex<HashMap<i32, Target>>,
    dirs: DashMap<Box<[u8]>, Arc<DirWatch>, FxBuildHasher>,
    files: DashMap<Box<[u8]>, WatchDescriptor, FxBuildHasher>,
    /// Bumped when anything may have been missed: queue overflow, a read error, a mount change.
    epoch: AtomicU64,
    alive: AtomicBool,
    /// The inotify queue, drained by whichever thread holds it: a request before it trusts
    /// anything, or the watcher thread when events wait and no request comes.
    queue: Mutex<Queue>,
    /// Test hook: how long the watcher thread waits before draining events it was woken for.
    delay: Duration,
}

/// The inotify instance (non-blocking), a handle to remove watches, and a read buffer.
struct Queue {
    inotify: Inotify,
    watches: Watches,
    buffer: Vec<u8>,
}

/// The watcher: the maps request threads consult, and a thread that keeps the queue short.
pub(crate) struct Watcher {
    watches: Mutex<Watches>,
    state: Arc<State>,
    mounts: Mutex<Option<std::fs::File>>,
}

impl Watcher {
    /// Starts watching. `delay` holds the watcher thread back before it handles events (a
    /// test hook: requests must not depend on that thread). Requests drain the queue
    /// themselves, so no sentinel is written: `_barrier_dir` is for the portable watcher.
    pub fn start(delay: Duration, _barrier_dir: &Path) -> io::Result<Watcher> {
        let inotify = Inotify::init()?;
        let watches = inotify.watches();
        let fd = inotify.as_raw_fd();
        let state = Arc::new(State {
            targets: Mutex::new(HashMap::new()),
            dirs: DashMap::default(),
            files: DashMap::default(),
            epoch: AtomicU64::new(0),
            alive: AtomicBool::new(true),
            queue: Mutex::new(Queue {
                inotify,
                watches: watches.clone(),
                buffer: vec![0u8; 64 * 1024],
            }),
            delay,
        });
        let watcher = Watcher {
            watches: Mutex::new(watches),
            state: state.clone(),
            mounts: Mutex::new(std::fs::File::open("/proc/self/mountinfo").ok()),
        };
        std::thread::Builder::new()
            .name("zccache-watch".into())
            .spawn(move || keep_draining(fd, state))?;
        Ok(watcher)
    }

    /// Makes every change made before this call visible to [`Watcher::valid`]. False when
    /// the watcher cannot prove that (then nothing may be trusted for this request).
    pub fn sync(&self) -> bool {
        if !self.state.alive.load(Ordering::SeqCst) {
            return false;
        }
        self.check_mounts();
        drain(&self.state, &mut self.state.queue.lock())
    }

    /// Watches `path` (a regular file, not a symlink), its directory and their ancestors, and
    /// snapshots the counts. Call before the `stat` whose result the snapshot will vouch for.
    pub fn arm(&self, path: &Path) -> Option<Armed> {
        if !self.state.alive.load(Ordering::SeqCst) {
            return None;
        }
        let parent = path.parent()?;
        let dir = self.dir_watch(parent)?;
        let key = path.as_os_str().as_bytes();
        if !self.state.files.contains_key(key) {
            let meta = std::fs::symlink_metadata(path).ok()?;
            if !meta.file_type().is_file() {
                return None;
            }
            let wd = self.add_watch(path, FILE_EVENTS)?;
            let mut targets = self.state.targets.lock();
            match targets.get_mut(&wd.get_watch_descriptor_id()) {
                Some(Target::File(names)) => names.push((key.into(), dir.clone())),
                Some(Target::Dir(_)) => return None,
                None => {
                    targets.insert(
                        wd.get_watch_descriptor_id(),
                        Target::File(vec![(key.into(), dir.clone())]),
                    );
                }
            }
            drop(targets);
            self.state.files.insert(key.into(), wd);
        }
        if !dir.usable.load(Ordering::SeqCst) {
            return None;
        }
        Some(Armed {
            events: dir.events.load(Ordering::SeqCst),
            epoch: self.state.epoch.load(Ordering::SeqCst),
            dir,
        })
    }

    /// Watches directory `dir` and its ancestors and snapshots the count of name changes in
    /// it. Call before the `stat` whose result the snapshot will vouch for.
    pub fn arm_dir(&self, dir: &Path) -> Option<ArmedDir> {
        if !self.state.alive.load(Ordering::SeqCst) {
            return None;
        }
        let watch = self.dir_watch(dir)?;
        Some(ArmedDir {
            names: watch.names.load(Ordering::SeqCst),
            epoch: self.state.epoch.load(Ordering::SeqCst),
            dir: watch,
        })
    }

    /// No name in the armed directory has changed since its snapshot (as of the last sync).
    pub fn valid_dir(&self, armed: &ArmedDir) -> bool {
        armed.dir.usable.load(Ordering::SeqCst)
            && armed.dir.names.load(Ordering::SeqCst) == armed.names
            && self.state.epoch.load(Ordering::SeqCst) == armed.epoch
            && self.state.alive.load(Ordering::SeqCst)
    }

    /// Whether directory `dir` has an entry `name`, as of the last sync: from its listing,
    /// read once and then kept current by its events. `None` when the watcher cannot vouch
    /// for it (not a canonical local directory, too large, watcher lost): the caller reads
    /// the directory itself.
    pub fn contains(&self, dir: &Path, name: &[u8]) -> Option<bool> {
        if !self.state.alive.load(Ordering::SeqCst) {
            return None;
        }
        let watch = self.dir_watch(dir)?;
        let current = |watch: &DirWatch| -> Option<bool> {
            let listing = watch.listing.lock();
            let listing = listing.as_ref()?;
            (watch.usable.load(Ordering::SeqCst)
                && listing.epoch == self.state.epoch.load(Ordering::SeqCst))
            .then(|| listing.names.contains(name))
        };
        if let Some(found) = current(&watch) {
            return Some(found);
        }
        // Read it while holding the queue: every event before the read has been applied, and
        // every event after it is applied to the listing installed here (applying one the
        // read already reflects changes nothing: creations add, removals take away, in order).
        let mut queue = self.state.queue.lock();
        if !drain(&self.state, &mut queue) {
            return None;
        }
        let epoch = self.state.epoch.load(Ordering::SeqCst);
        let mut names = std::collections::HashSet::default();
        for entry in std::fs::read_dir(dir).ok()? {
            if names.len() >= MAX_LISTING {
                return None;
            }
            names.insert(entry.ok()?.file_name().as_bytes().into());
        }
        *watch.listing.lock() = Some(Listing { names, epoch });
        drop(queue);
        current(&watch)
    }

    /// Nothing concerning the armed file has happened since its snapshot (as of the last sync).
    pub fn valid(&self, armed: &Armed) -> bool {
        armed.dir.usable.load(Ordering::SeqCst)
            && armed.dir.events.load(Ordering::SeqCst) == armed.events
            && self.state.epoch.load(Ordering::SeqCst) == armed.epoch
            && self.state.alive.load(Ordering::SeqCst)
    }

    /// Directories and files watched.
    pub fn counts(&self) -> (usize, usize) {
        (self.state.dirs.len(), self.state.files.len())
    }

    /// The watch for directory `dir` and its ancestors, established if needed.
    fn dir_watch(&self, dir: &Path) -> Option<Arc<DirWatch>> {
        let key = dir.as_os_str().as_bytes();
        if let Some(found) = self.state.dirs.get(key) {
            return found
                .usable
                .load(Ordering::SeqCst)
                .then(|| found.value().clone());
        }
        // Ancestors first, so a rename above `dir` after this point is seen.
        if let Some(parent) = dir.parent() {
            self.dir_watch(parent)?;
        }
        if std::fs::canonicalize(dir).ok()?.as_os_str().as_bytes() != key
            || !zccache_platform::fs::is_local_file_system(dir)
        {
            return None;
        }
        let wd = self.add_watch(dir, DIR_EVENTS)?;
        let watch = Arc::new(DirWatch {
            path: key.into(),
            events: AtomicU64::new(0),
            names: AtomicU64::new(0),
            usable: AtomicBool::new(true),
            listing: Mutex::new(None),
        });
        let mut targets = self.state.targets.lock();
        match targets.get(&wd.get_watch_descriptor_id()) {
            // The same directory under another name (a bind mount): trust neither.
            Some(Target::Dir(other)) if other.path != watch.path => {
                other.retire();
                watch.retire();
            }
            Some(Target::Dir(other)) => return Some(other.clone()),
            _ => {}
        }
        targets.insert(wd.get_watch_descriptor_id(), Target::Dir(watch.clone()));
        drop(targets);
        self.state.dirs.insert(key.into(), watch.clone());
        watch.usable.load(Ordering::SeqCst).then_some(watch)
    }

    fn add_watch(&self, path: &Path, mask: WatchMask) -> Option<WatchDescriptor> {
        if self.state.dirs.len() + self.state.files.len() >= MAX_WATCHES {
            return None;
        }
        self.watches.lock().add(path, mask).ok()
    }

    /// A mount or unmount anywhere may put other files under watched paths without an event.
    fn check_mounts(&self) {
        use std::io::{Read, Seek};
        use std::os::unix::io::AsRawFd;
        let mut guard = self.mounts.lock();
        let Some(file) = guard.as_mut() else { return };
        let mut poll = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLPRI,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let ready = unsafe { libc::poll(&mut poll, 1, 0) };
        if ready > 0 && poll.revents & (libc::POLLPRI | libc::POLLERR) != 0 {
            self.state.epoch.fetch_add(1, Ordering::SeqCst);
            let mut sink = Vec::new();
            let _ = file.rewind();
            let _ = file.read_to_end(&mut sink);
        }
    }
}

/// Reads the queue until it is empty, counting every event. False (and the watcher is dead
/// from then on) when it cannot be read.
fn drain(state: &State, queue: &mut Queue) -> bool {
    if !state.alive.load(Ordering::SeqCst) {
        return false;
    }
    let Queue {
        inotify,
        watches,
        buffer,
    } = queue;
    loop {
        match inotify.read_events(buffer) {
            Ok(events) => {
                for event in events {
                    if event.mask.contains(EventMask::Q_OVERFLOW) {
                        state.epoch.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    let name = event.name.map(OsStr::as_bytes);
                    handle(state, watches, &event.wd, event.mask, name);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("file watcher failed ({e}); checking files with stat");
                state.alive.store(false, Ordering::SeqCst);
                state.epoch.fetch_add(1, Ordering::SeqCst);
                return false;
            }
        }
    }
}

/// The watcher thread: drains the queue whenever events wait, so it never overflows between
/// requests.
/// How long the watcher thread lets events gather before draining them: short enough that
/// the kernel's queue (16384 events by default) cannot fill meanwhile.
const BATCH_WINDOW: Duration = Duration::from_millis(10);

fn keep_draining(fd: std::os::unix::io::RawFd, state: Arc<State>) {
    while state.alive.load(Ordering::SeqCst) {
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the descriptor lives as long as `state` holds the queue.
        let ready = unsafe { libc::poll(&mut poll, 1, -1) };
        if ready < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            state.alive.store(false, Ordering::SeqCst);
            state.epoch.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if ready > 0 {
            // Requests drain what they depend on themselves; this thread only keeps the queue
            // short. Waiting a moment lets one wake-up take a burst of events (each hit's
            // output is one): a thread woken per event costs every hit a context switch.
            std::thread::sleep(BATCH_WINDOW.max(state.delay));
            drain(&state, &mut state.queue.lock());
        }
    }
}

fn handle(
    state: &State,
    watches: &mut Watches,
    wd: &WatchDescriptor,
    mask: EventMask,
    name: Option<&[u8]>,
) {
    let id = wd.get_watch_descriptor_id();
    let mut targets = state.targets.lock();
    let gone = mask.intersects(EventMask::IGNORED | EventMask::UNMOUNT);
    match targets.get(&id) {
        None => {}
        Some(Target::File(names)) => {
            for (_, dir) in names {
                dir.bump();
            }
            if gone || mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF) {
                if let Some(Target::File(names)) = targets.remove(&id) {
                    for (path, dir) in names {
                        state.files.remove(&path);
                        dir.bump();
                    }
                }
                if !gone {
                    let _ = watches.remove(wd.clone());
                }
            }
        }
        Some(Target::Dir(dir)) => {
            let dir = dir.clone();
            if let Some(child) = name {
                dir.names.fetch_add(1, Ordering::SeqCst);
                if let Some(listing) = dir.listing.lock().as_mut() {
                    if mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
                        listing.names.insert(child.into());
                    } else if mask.intersects(EventMask::DELETE | EventMask::MOVED_FROM) {
                        listing.names.remove(child);
                    }
                }
            }
            match name {
                // A name in the directory was removed or renamed (away or over): a file watched
                // under that name now names another inode or nothing, and directories at or
                // below it are other directories now. A creation needs nothing: the name was
                // free, so nothing watched was under it (had something been, its removal was
                // seen first).
                Some(child)
                    if mask.intersects(
                        EventMask::DELETE | EventMask::MOVED_FROM | EventMask::MOVED_TO,
                    ) =>
                {
                    let mut path = dir.path.to_vec();
                    path.push(b'/');
                    path.extend_from_slice(child);
                    if let Some((_, file_wd)) = state.files.remove(path.as_slice()) {
                        forget_file_name(&mut targets, watches, &file_wd, &path);
                    }
                    if mask.contains(EventMask::ISDIR) {
                        retire_under(state, &mut targets, watches, &path);
                    }
                }
                Some(_) => {}
                None => {
                    if gone || mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF) {
                        let path = dir.path.to_vec();
                        retire_under(state, &mut targets, watches, &path);
                    }
                }
            }
        }
    }
}

/// Drops `path` from the names a file watch stands for; removes the watch when none is left.
fn forget_file_name(
    targets: &mut HashMap<i32, Target>,
    watches: &mut Watches,
    wd: &WatchDescriptor,
    path: &[u8],
) {
    let id = wd.get_watch_descriptor_id();
    if let Some(Target::File(names)) = targets.get_mut(&id) {
        names.retain(|(name, dir)| {
            let keep = name.as_ref() != path;
            if !keep {
                dir.bump();
            }
            keep
        });
        if names.is_empty() {
            targets.remove(&id);
            let _ = watches.remove(wd.clone());
        }
    }
}

/// Retires the directory `path` and every watched directory below it, and forgets the files
/// watched under them.
fn retire_under(
    state: &State,
    targets: &mut HashMap<i32, Target>,
    watches: &mut Watches,
    path: &[u8],
) {
    let under = |candidate: &[u8]| {
        candidate == path
            || (candidate.len() > path.len()
                && candidate.starts_with(path)
                && candidate[path.len()] == b'/')
    };
    let mut retired = Vec::new();
    state.dirs.retain(|key, dir| {
        if under(key) {
            dir.retire();
            retired.push(dir.clone());
            false
        } else {
            true
        }
    });
    let stale_files: Vec<(Box<[u8]>, WatchDescriptor)> = state
        .files
        .iter()
        .filter(|entry| under(entry.key()))
        .map(|entry| (entry.key().clone(), entry.value().clone()))
        .collect();
    for (file, wd) in stale_files {
        state.files.remove(&file);
        forget_file_name(targets, watches, &wd, &file);
    }
    if retired.is_empty() {
        return;
    }
    let ids: Vec<i32> = targets
        .iter()
        .filter(|(_, target)| {
            matches!(target, Target::Dir(dir) if retired.iter().any(|r| Arc::ptr_eq(r, dir)))
        })
        .map(|(id, _)| *id)
        .collect();
    for id in ids {
        targets.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn setup() -> (tempfile::TempDir, Watcher, PathBuf) {
        setup_with_delay(Duration::ZERO)
    }

    fn setup_with_delay(delay: Duration) -> (tempfile::TempDir, Watcher, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let watcher = Watcher::start(delay, Path::new("/")).unwrap();
        (dir, watcher, root)
    }

    #[test]
    fn a_request_sees_every_earlier_change_without_the_watcher_thread() {
        // The thread is held back for an hour once woken: only the requests' own draining
        // can account for the events below.
        let (_dir, watcher, root) = setup_with_delay(Duration::from_secs(3600));
        let header = root.join("a.h");
        std::fs::write(&header, "1").unwrap();
        let armed = watcher.arm(&header).expect("armed");
        assert!(watcher.sync());
        assert!(watcher.valid(&armed));
        for round in 0..20 {
            std::fs::write(&header, format!("{round}")).unwrap();
            assert!(watcher.sync(), "round {round}");
            assert!(
                !watcher.valid(&armed),
                "round {round}: the write must be seen at once"
            );
            let armed = watcher.arm(&header).expect("re-armed");
            assert!(watcher.sync() && watcher.valid(&armed), "round {round}");
        }
    }

    #[test]
    fn an_armed_file_stays_valid_until_something_touches_it() {
        let (_dir, watcher, root) = setup();
        std::fs::create_dir(root.join("inc")).unwrap();
        let header = root.join("inc/a.h");
        std::fs::write(&header, "1").unwrap();
        let armed = watcher.arm(&header).expect("armed");
        assert!(watcher.sync());
        assert!(watcher.valid(&armed));
        // Reading it changes nothing.
        let _ = std::fs::read(&header).unwrap();
        assert!(watcher.sync());
        assert!(watcher.valid(&armed));
        std::fs::write(&header, "2").unwrap();
        assert!(watcher.sync());
        assert!(!watcher.valid(&armed), "a write must invalidate");
    }

    #[test]
    fn writes_through_another_hardlink_and_ancestor_renames_are_seen() {
        let (_dir, watcher, root) = setup();
        std::fs::create_dir_all(root.join("p/inc")).unwrap();
        let header = root.join("p/inc/a.h");
        std::fs::write(&header, "1").unwrap();
        std::fs::hard_link(&header, root.join("other.h")).unwrap();
        let armed = watcher.arm(&header).unwrap();
        assert!(watcher.sync() && watcher.valid(&armed));
        std::fs::write(root.join("other.h"), "2").unwrap();
        assert!(watcher.sync());
        assert!(!watcher.valid(&armed), "write through a second link");

        let armed = watcher.arm(&header).unwrap();
        assert!(watcher.sync() && watcher.valid(&armed));
        std::fs::rename(root.join("p"), root.join("q")).unwrap();
        std::fs::create_dir_all(root.join("p/inc")).unwrap();
        std::fs::write(&header, "3").unwrap();
        assert!(watcher.sync());
        assert!(!watcher.valid(&armed), "ancestor renamed and replaced");
        // The new directory is watched afresh.
        let armed = watcher.arm(&header).unwrap();
        assert!(watcher.sync() && watcher.valid(&armed));
    }

    #[test]
    fn symlinked_paths_are_not_armed() {
        let (_dir, watcher, root) = setup();
        std::fs::create_dir(root.join("real")).unwrap();
        std::fs::write(root.join("real/a.h"), "1").unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("alias")).unwrap();
        std::os::unix::fs::symlink(root.join("real/a.h"), root.join("link.h")).unwrap();
        assert!(watcher.arm(&root.join("alias/a.h")).is_none());
        assert!(watcher.arm(&root.join("link.h")).is_none());
        assert!(watcher.arm(&root.join("real/a.h")).is_some());
    }

    #[test]
    fn a_file_replaced_by_rename_is_seen() {
        let (_dir, watcher, root) = setup();
        let header = root.join("a.h");
        std::fs::write(&header, "1").unwrap();
        let armed = watcher.arm(&header).unwrap();
        assert!(watcher.sync() && watcher.valid(&armed));
        std::fs::write(root.join("a.h.tmp"), "2").unwrap();
        std::fs::rename(root.join("a.h.tmp"), &header).unwrap();
        assert!(watcher.sync());
        assert!(!watcher.valid(&armed));
    }
}
