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
//! - **Every event that happened before the request has been read.** Events arrive
//!   asynchronously. Before trusting anything, a request creates a cookie file in a watched
//!   directory and waits until the watcher thread has read the cookie's event: inotify queues
//!   the events of one instance in order, so every change made before the request started has
//!   been counted by then. If the cookie does not arrive, nothing is trusted.
//!
//! Anything short of that proof falls back to `stat` (and re-hashing when the signature
//! changed), which is what correctness rests on without a watcher.

use dashmap::DashMap;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use parking_lot::{Condvar, Mutex};
use rustc_hash::FxBuildHasher;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a request waits for its cookie before giving up on the watcher for that request.
const COOKIE_TIMEOUT: Duration = Duration::from_secs(2);

/// Watches beyond this many are not added (the kernel's own limit may be lower).
const MAX_WATCHES: usize = 100_000;

/// File systems whose changes always reach inotify: local ones. Network and FUSE file systems
/// can change behind the kernel's back.
const LOCAL_FS: &[i64] = &[
    0xEF53,      // ext2/3/4
    0x5846_5342, // xfs
    0x9123_683E, // btrfs
    0x0102_1994, // tmpfs
    0xF2F5_2010, // f2fs
];

const COOKIE_PREFIX: &str = "watch-cookie-";

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
    events: AtomicU64,
    usable: AtomicBool,
}

impl DirWatch {
    fn bump(&self) {
        self.events.fetch_add(1, Ordering::SeqCst);
    }

    fn retire(&self) {
        self.usable.store(false, Ordering::SeqCst);
        self.bump();
    }
}

/// What must still hold for a digest to be reused without a `stat`.
#[derive(Clone)]
pub(crate) struct Armed {
    dir: Arc<DirWatch>,
    events: u64,
    epoch: u64,
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
    cookie_seen: Mutex<u64>,
    cookie_arrived: Condvar,
    cookie_dir: Box<[u8]>,
    alive: AtomicBool,
    /// Test hook: delay before each batch of events is handled.
    delay: Duration,
}

/// The watcher: a thread reading inotify events, and the maps request threads consult.
pub(crate) struct Watcher {
    watches: Mutex<Watches>,
    state: Arc<State>,
    cookie_dir: PathBuf,
    next_cookie: AtomicU64,
    mounts: Mutex<Option<std::fs::File>>,
}

impl Watcher {
    /// Starts watching; cookies are created in `cookie_dir` (a private directory).
    pub fn start(cookie_dir: &Path, delay: Duration) -> io::Result<Watcher> {
        let inotify = Inotify::init()?;
        let watches = inotify.watches();
        let cookie_dir = std::fs::canonicalize(cookie_dir)?;
        let state = Arc::new(State {
            targets: Mutex::new(HashMap::new()),
            dirs: DashMap::default(),
            files: DashMap::default(),
            epoch: AtomicU64::new(0),
            cookie_seen: Mutex::new(0),
            cookie_arrived: Condvar::new(),
            cookie_dir: cookie_dir.as_os_str().as_bytes().into(),
            alive: AtomicBool::new(true),
            delay,
        });
        let watcher = Watcher {
            watches: Mutex::new(watches),
            state: state.clone(),
            cookie_dir,
            next_cookie: AtomicU64::new(1),
            mounts: Mutex::new(std::fs::File::open("/proc/self/mountinfo").ok()),
        };
        watcher
            .dir_watch(&watcher.cookie_dir)
            .ok_or_else(|| io::Error::other("cannot watch the cookie directory"))?;
        let reader_state = state.clone();
        let reader_watches = watcher.watches.lock().clone();
        std::thread::Builder::new()
            .name("zccache-watch".into())
            .spawn(move || read_events(inotify, reader_watches, reader_state))?;
        Ok(watcher)
    }

    /// Makes every change made before this call visible to [`Watcher::valid`]. False when
    /// the watcher cannot prove that (then nothing may be trusted for this request).
    pub fn sync(&self) -> bool {
        if !self.state.alive.load(Ordering::SeqCst) {
            return false;
        }
        self.check_mounts();
        let n = self.next_cookie.fetch_add(1, Ordering::SeqCst);
        let cookie = self
            .cookie_dir
            .join(format!("{COOKIE_PREFIX}{}-{n}", std::process::id()));
        if std::fs::File::create(&cookie).is_err() {
            return false;
        }
        let arrived = {
            let mut seen = self.state.cookie_seen.lock();
            let deadline = std::time::Instant::now() + COOKIE_TIMEOUT;
            while *seen < n {
                if self
                    .state
                    .cookie_arrived
                    .wait_until(&mut seen, deadline)
                    .timed_out()
                {
                    break;
                }
            }
            *seen >= n
        };
        let _ = std::fs::remove_file(&cookie);
        if !arrived {
            tracing::warn!("file watcher did not deliver its cookie; checking files with stat");
            self.state.alive.store(false, Ordering::SeqCst);
        }
        arrived
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
        if std::fs::canonicalize(dir).ok()?.as_os_str().as_bytes() != key || !local_fs(dir) {
            return None;
        }
        let wd = self.add_watch(dir, DIR_EVENTS)?;
        let watch = Arc::new(DirWatch {
            path: key.into(),
            events: AtomicU64::new(0),
            usable: AtomicBool::new(true),
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

fn local_fs(dir: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we pass; the path is NUL-terminated.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return false;
    }
    LOCAL_FS.contains(&(stat.f_type as i64))
}

/// The watcher thread: reads events in order and bumps what they concern.
fn read_events(mut inotify: Inotify, mut watches: Watches, state: Arc<State>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let events = match inotify.read_events_blocking(&mut buffer) {
            Ok(events) => events,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                state.alive.store(false, Ordering::SeqCst);
                state.epoch.fetch_add(1, Ordering::SeqCst);
                state.cookie_arrived.notify_all();
                return;
            }
        };
        if !state.delay.is_zero() {
            std::thread::sleep(state.delay);
        }
        let mut newest_cookie = 0;
        for event in events {
            if event.mask.contains(EventMask::Q_OVERFLOW) {
                state.epoch.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            let name = event.name.map(OsStr::as_bytes);
            if let Some(n) = cookie_number(&state, &event.wd, event.mask, name) {
                newest_cookie = newest_cookie.max(n);
                continue;
            }
            handle(&state, &mut watches, &event.wd, event.mask, name);
        }
        if newest_cookie > 0 {
            let mut seen = state.cookie_seen.lock();
            *seen = (*seen).max(newest_cookie);
            state.cookie_arrived.notify_all();
        }
    }
}

/// The number of one of our cookies created in the cookie directory.
fn cookie_number(
    state: &State,
    wd: &WatchDescriptor,
    mask: EventMask,
    name: Option<&[u8]>,
) -> Option<u64> {
    if !mask.contains(EventMask::CREATE) {
        return None;
    }
    let name = std::str::from_utf8(name?).ok()?;
    let rest = name.strip_prefix(COOKIE_PREFIX)?;
    let (pid, n) = rest.split_once('-')?;
    if pid != std::process::id().to_string() {
        return None;
    }
    let targets = state.targets.lock();
    match targets.get(&wd.get_watch_descriptor_id()) {
        Some(Target::Dir(dir)) if dir.path == state.cookie_dir => n.parse().ok(),
        _ => None,
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

    fn setup() -> (tempfile::TempDir, Watcher, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("cookies")).unwrap();
        let watcher = Watcher::start(&root.join("cookies"), Duration::ZERO).unwrap();
        (dir, watcher, root)
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
