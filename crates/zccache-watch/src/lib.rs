//! Directory watches for the file watcher on systems where zccache does not read inotify
//! itself: ReadDirectoryChangesW on Windows, kqueue on macOS (and inotify, through `notify`,
//! where the daemon's own inotify code is not used, such as this crate's tests).
//!
//! Every watch reports through one thread, in the order the system delivered the changes, to
//! one handler. The file watcher's barrier rests on that: a sentinel file written into a
//! watched directory and its event seen by the handler mean every change made before the
//! sentinel has been handled, on each backend:
//! - **Windows**: every directory handle completes on one I/O completion port, read by one
//!   thread that issues a handle's next read before it hands the changes of the last one to
//!   the handler. A change made while a handle had no read pending is delivered by that next
//!   read, so the handle's previous changes reach the handler first, before any sentinel
//!   written later. A consumer that counts every change of a directory (and of its
//!   ancestors) against what it vouches for is therefore never behind. This backend is written
//!   here because `notify`'s drops a watch without a word when its buffer overflows
//!   (`ERROR_NOTIFY_ENUM_DIR`) and ignores an empty completion; both are reported here as
//!   [`Change::Lost`].
//! - **macOS**: kqueue (through `notify`): one queue, read in order by one thread. kqueue
//!   says that a directory changed, not which entry (`notify` guesses one), so name changes
//!   there are [`EntryKind::Unknown`] and a change of the directory itself is reported as
//!   such. kqueue has no overflow; `notify`'s errors are [`Change::Lost`].
//! - **Linux** (`notify`'s inotify backend): one queue; an overflow is [`Change::Lost`].

use std::io;
use std::path::{Path, PathBuf};

/// What the handler hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Something happened to `path`: an entry of a watched directory (or the watched directory
    /// itself, on backends that report it).
    Entry { path: PathBuf, kind: EntryKind },
    /// The watch on this directory ended (it was removed, or can no longer be read).
    Unwatched(PathBuf),
    /// Changes may have been lost: nothing seen before can be relied on.
    Lost,
}

/// What happened to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Created,
    Removed,
    /// Renamed away from this name.
    RenamedFrom,
    /// Renamed to this name.
    RenamedTo,
    /// A name changed (created, removed or renamed), in which way is not known (kqueue
    /// reports a change of the directory; a rename without its other half).
    Unknown,
    /// Written, or its metadata changed.
    Changed,
}

/// Adding a watch may lose changes of the existing ones (FSEvents would restart its stream;
/// no backend used here does).
pub const ADDING_LOSES_EVENTS: bool = false;

/// Whether the daemon watches unless told otherwise (`ZCCACHE_WATCH`). Not on Windows: a
/// watch there is an open directory handle, and while it is open the directory's ancestors
/// cannot be renamed, and (without the POSIX delete semantics of recent NTFS) a removed
/// directory lingers and keeps its parent from being removed. A build that moves or deletes
/// its own tree must never fail because of zccache, so there it is `ZCCACHE_WATCH=1`.
pub const ON_BY_DEFAULT: bool = !cfg!(windows);

/// The handler every change goes to, called on the watch thread.
pub type Handler = Box<dyn FnMut(Change) + Send>;

/// Non-recursive watches on directories, all reporting to one handler.
pub struct DirWatcher {
    inner: imp::Watcher,
}

impl DirWatcher {
    /// Starts the watch thread.
    pub fn start(handler: Handler) -> io::Result<DirWatcher> {
        Ok(DirWatcher {
            inner: imp::Watcher::start(handler)?,
        })
    }

    /// Watches `dir`'s entries (not its subdirectories'). Returns once the watch is in place:
    /// every change after the return is reported.
    pub fn watch(&self, dir: &Path) -> io::Result<()> {
        self.inner.watch(dir)
    }

    /// Stops watching `dir`.
    pub fn unwatch(&self, dir: &Path) {
        self.inner.unwatch(dir)
    }
}

#[cfg(not(windows))]
mod imp {
    use super::{Change, EntryKind, Handler};
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
    use notify::Watcher as _;
    use std::io;
    use std::path::Path;

    pub struct Watcher {
        inner: parking_lot::Mutex<notify::RecommendedWatcher>,
    }

    impl Watcher {
        pub fn start(mut handler: Handler) -> io::Result<Watcher> {
            let inner = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let event = match event {
                    Ok(event) if !event.need_rescan() => event,
                    _ => return handler(Change::Lost),
                };
                let kind = match event.kind {
                    // kqueue reports that the directory changed; `notify` guesses the entry.
                    EventKind::Create(_)
                    | EventKind::Remove(_)
                    | EventKind::Modify(ModifyKind::Name(_))
                        if cfg!(target_os = "macos") =>
                    {
                        EntryKind::Unknown
                    }
                    EventKind::Create(_) => EntryKind::Created,
                    EventKind::Remove(_) => EntryKind::Removed,
                    EventKind::Modify(ModifyKind::Name(RenameMode::From)) => EntryKind::RenamedFrom,
                    EventKind::Modify(ModifyKind::Name(RenameMode::To)) => EntryKind::RenamedTo,
                    EventKind::Modify(ModifyKind::Name(_)) => EntryKind::Unknown,
                    // Reading changes nothing.
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => EntryKind::Changed,
                    EventKind::Access(_) => return,
                    _ => EntryKind::Changed,
                };
                for path in event.paths {
                    handler(Change::Entry { path, kind });
                }
            })
            .map_err(io::Error::other)?;
            Ok(Watcher {
                inner: parking_lot::Mutex::new(inner),
            })
        }

        pub fn watch(&self, dir: &Path) -> io::Result<()> {
            self.inner
                .lock()
                .watch(dir, notify::RecursiveMode::NonRecursive)
                .map_err(|e| io::Error::other(format!("watching {}: {e}", dir.display())))
        }

        pub fn unwatch(&self, dir: &Path) {
            let _ = self.inner.lock().unwatch(dir);
        }
    }
}

#[cfg(windows)]
mod imp {
    //! ReadDirectoryChangesW on one I/O completion port, read by one thread (see the module
    //! docs for why the order it keeps matters).

    use super::{Change, EntryKind, Handler};
    use std::collections::HashMap;
    use std::ffi::OsString;
    use std::io;
    use std::os::windows::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};
    use std::sync::mpsc;
    use windows_sys::Win32::Foundation::{
        CloseHandle, GetLastError, ERROR_OPERATION_ABORTED, HANDLE, INVALID_HANDLE_VALUE,
    };
    use windows_sys::Win32::Storage::FileSystem::{
        CreateFileW, ReadDirectoryChangesW, FILE_ACTION_ADDED, FILE_ACTION_REMOVED,
        FILE_ACTION_RENAMED_NEW_NAME, FILE_ACTION_RENAMED_OLD_NAME, FILE_FLAG_BACKUP_SEMANTICS,
        FILE_FLAG_OVERLAPPED, FILE_LIST_DIRECTORY, FILE_NOTIFY_CHANGE_ATTRIBUTES,
        FILE_NOTIFY_CHANGE_CREATION, FILE_NOTIFY_CHANGE_DIR_NAME, FILE_NOTIFY_CHANGE_FILE_NAME,
        FILE_NOTIFY_CHANGE_LAST_WRITE, FILE_NOTIFY_CHANGE_SIZE, FILE_SHARE_DELETE, FILE_SHARE_READ,
        FILE_SHARE_WRITE, OPEN_EXISTING,
    };
    use windows_sys::Win32::System::IO::{
        CancelIoEx, CreateIoCompletionPort, GetQueuedCompletionStatus, PostQueuedCompletionStatus,
        OVERLAPPED,
    };

    /// The completion key that wakes the thread for a command.
    const COMMAND_KEY: usize = 0;
    /// Bytes of changes one read can return (the most a network share allows too).
    const BUFFER_BYTES: usize = 64 * 1024;
    const CHANGES: u32 = FILE_NOTIFY_CHANGE_FILE_NAME
        | FILE_NOTIFY_CHANGE_DIR_NAME
        | FILE_NOTIFY_CHANGE_ATTRIBUTES
        | FILE_NOTIFY_CHANGE_SIZE
        | FILE_NOTIFY_CHANGE_LAST_WRITE
        | FILE_NOTIFY_CHANGE_CREATION;

    enum Command {
        Watch(PathBuf, mpsc::Sender<io::Result<()>>),
        Unwatch(PathBuf),
        /// Cancel every watch, close every handle, end the thread, then answer.
        Stop(mpsc::Sender<()>),
    }

    pub struct Watcher {
        port: Port,
        commands: parking_lot::Mutex<mpsc::Sender<Command>>,
    }

    /// The completion port's handle, closed with the watcher.
    struct Port(HANDLE);
    // SAFETY: a completion port handle may be used from any thread.
    unsafe impl Send for Port {}
    unsafe impl Sync for Port {}

    impl Drop for Port {
        fn drop(&mut self) {
            // SAFETY: the handle is ours; the thread sees the port closed and ends.
            unsafe { CloseHandle(self.0) };
        }
    }

    /// One directory's handle and its read in flight. Boxed: the kernel writes into
    /// `overlapped` and `buffer` until the read completes, so they never move.
    struct Watch {
        dir: PathBuf,
        handle: HANDLE,
        overlapped: OVERLAPPED,
        /// `u32`s: the changes must be DWORD-aligned.
        buffer: Vec<u32>,
        /// Cancelled: drop it when its read completes.
        stopping: bool,
    }

    impl Watch {
        /// Issues the next read. False when it cannot be issued (the watch is over).
        fn read(&mut self) -> bool {
            self.overlapped = unsafe { std::mem::zeroed() };
            // SAFETY: the handle is an open directory associated with the port; buffer and
            // overlapped live in this boxed watch until the completion is dequeued.
            unsafe {
                ReadDirectoryChangesW(
                    self.handle,
                    self.buffer.as_mut_ptr().cast(),
                    (self.buffer.len() * 4) as u32,
                    0,
                    CHANGES,
                    std::ptr::null_mut(),
                    &mut self.overlapped,
                    None,
                ) != 0
            }
        }
    }

    impl Drop for Watch {
        fn drop(&mut self) {
            // SAFETY: our handle; no read is in flight when a watch is dropped.
            unsafe { CloseHandle(self.handle) };
        }
    }

    impl Watcher {
        pub fn start(handler: Handler) -> io::Result<Watcher> {
            // SAFETY: creates a new port, no handle associated yet.
            let port =
                unsafe { CreateIoCompletionPort(INVALID_HANDLE_VALUE, std::ptr::null_mut(), 0, 1) };
            if port.is_null() {
                return Err(io::Error::last_os_error());
            }
            let port = Port(port);
            let (commands, received) = mpsc::channel();
            let thread_port = port.0 as usize;
            std::thread::Builder::new()
                .name("zccache-watch".into())
                .spawn(move || run(thread_port as HANDLE, received, handler))?;
            Ok(Watcher {
                port,
                commands: parking_lot::Mutex::new(commands),
            })
        }

        fn send(&self, command: Command) -> io::Result<()> {
            self.commands
                .lock()
                .send(command)
                .map_err(|_| io::Error::other("the watch thread has ended"))?;
            // SAFETY: posts a packet to our port.
            if unsafe { PostQueuedCompletionStatus(self.port.0, 0, COMMAND_KEY, std::ptr::null()) }
                == 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        pub fn watch(&self, dir: &Path) -> io::Result<()> {
            let (reply, answer) = mpsc::channel();
            self.send(Command::Watch(dir.to_path_buf(), reply))?;
            answer
                .recv()
                .map_err(|_| io::Error::other("the watch thread has ended"))?
                .map_err(|e| io::Error::new(e.kind(), format!("watching {}: {e}", dir.display())))
        }

        pub fn unwatch(&self, dir: &Path) {
            let _ = self.send(Command::Unwatch(dir.to_path_buf()));
        }
    }

    impl Drop for Watcher {
        /// Returns once every directory handle is closed (a second at most): the caller may
        /// remove the directories next.
        fn drop(&mut self) {
            let (reply, answer) = mpsc::channel();
            if self.send(Command::Stop(reply)).is_ok() {
                let _ = answer.recv_timeout(std::time::Duration::from_secs(1));
            }
        }
    }

    fn wide(path: &Path) -> Vec<u16> {
        path.as_os_str().encode_wide().chain([0]).collect()
    }

    /// The watch thread: commands, and each completed read's changes in the order the port
    /// delivers them. Ends when the port is closed.
    fn run(port: HANDLE, commands: mpsc::Receiver<Command>, mut handler: Handler) {
        let mut watches: HashMap<usize, Box<Watch>> = HashMap::new();
        let mut by_dir: HashMap<PathBuf, usize> = HashMap::new();
        let mut next_key = COMMAND_KEY + 1;
        let mut changes = Vec::with_capacity(BUFFER_BYTES);
        let mut stopped: Option<mpsc::Sender<()>> = None;
        loop {
            if let Some(reply) = stopped.as_ref().filter(|_| watches.is_empty()) {
                let _ = reply.send(());
                return;
            }
            let mut bytes = 0u32;
            let mut key = 0usize;
            let mut overlapped: *mut OVERLAPPED = std::ptr::null_mut();
            // SAFETY: out-pointers to locals.
            let ok = unsafe {
                GetQueuedCompletionStatus(port, &mut bytes, &mut key, &mut overlapped, u32::MAX)
            } != 0;
            if overlapped.is_null() {
                if !ok {
                    return; // the port is closed
                }
                while let Ok(command) = commands.try_recv() {
                    match command {
                        Command::Watch(dir, reply) => {
                            if let Some(old) = by_dir.remove(&dir) {
                                stop(&mut watches, old);
                            }
                            let key = next_key;
                            next_key += 1;
                            let result = open(port, &dir, key).map(|watch| {
                                watches.insert(key, watch);
                                by_dir.insert(dir, key);
                            });
                            let _ = reply.send(result);
                        }
                        Command::Unwatch(dir) => {
                            if let Some(old) = by_dir.remove(&dir) {
                                stop(&mut watches, old);
                            }
                        }
                        Command::Stop(reply) => {
                            by_dir.clear();
                            let keys: Vec<usize> = watches.keys().copied().collect();
                            for key in keys {
                                stop(&mut watches, key);
                            }
                            stopped = Some(reply);
                        }
                    }
                }
                continue;
            }
            let error = if ok { 0 } else { unsafe { GetLastError() } };
            let Some(watch) = watches.get_mut(&key) else {
                continue;
            };
            if watch.stopping || error == ERROR_OPERATION_ABORTED {
                watches.remove(&key);
                continue;
            }
            if error != 0 || bytes == 0 {
                // An overflow (ERROR_NOTIFY_ENUM_DIR, or no bytes), or the directory is gone.
                if !watch.dir.is_dir() {
                    let dir = watch.dir.clone();
                    watches.remove(&key);
                    by_dir.remove(&dir);
                    handler(Change::Unwatched(dir));
                    continue;
                }
                handler(Change::Lost);
                if !watch.read() {
                    let dir = watch.dir.clone();
                    watches.remove(&key);
                    by_dir.remove(&dir);
                    handler(Change::Unwatched(dir));
                }
                continue;
            }
            // The next read first, then this one's changes (see the module docs).
            changes.clear();
            let len = (bytes as usize).min(watch.buffer.len() * 4);
            // SAFETY: the kernel wrote `bytes` bytes into the buffer.
            changes.extend_from_slice(unsafe {
                std::slice::from_raw_parts(watch.buffer.as_ptr().cast::<u8>(), len)
            });
            let dir = watch.dir.clone();
            let reading = watch.read();
            for (action, name) in parse(&changes) {
                let kind = match action {
                    FILE_ACTION_ADDED => EntryKind::Created,
                    FILE_ACTION_REMOVED => EntryKind::Removed,
                    FILE_ACTION_RENAMED_OLD_NAME => EntryKind::RenamedFrom,
                    FILE_ACTION_RENAMED_NEW_NAME => EntryKind::RenamedTo,
                    _ => EntryKind::Changed,
                };
                handler(Change::Entry {
                    path: dir.join(name),
                    kind,
                });
            }
            if !reading {
                watches.remove(&key);
                by_dir.remove(&dir);
                handler(Change::Unwatched(dir));
            }
        }
    }

    /// Opens `dir`, ties it to the port under `key` and issues its first read.
    fn open(port: HANDLE, dir: &Path, key: usize) -> io::Result<Box<Watch>> {
        let name = wide(dir);
        // SAFETY: a NUL-terminated path; the flags open a directory for overlapped reads.
        let handle = unsafe {
            CreateFileW(
                name.as_ptr(),
                FILE_LIST_DIRECTORY,
                FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                std::ptr::null(),
                OPEN_EXISTING,
                FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OVERLAPPED,
                std::ptr::null_mut(),
            )
        };
        if handle == INVALID_HANDLE_VALUE {
            return Err(io::Error::last_os_error());
        }
        let mut watch = Box::new(Watch {
            dir: dir.to_path_buf(),
            handle,
            overlapped: unsafe { std::mem::zeroed() },
            buffer: vec![0u32; BUFFER_BYTES / 4],
            stopping: false,
        });
        // SAFETY: our directory handle and our port.
        if unsafe { CreateIoCompletionPort(handle, port, key, 0) }.is_null() {
            return Err(io::Error::last_os_error());
        }
        if !watch.read() {
            return Err(io::Error::last_os_error());
        }
        Ok(watch)
    }

    /// Cancels a watch's read; the watch is dropped when the cancelled read completes.
    fn stop(watches: &mut HashMap<usize, Box<Watch>>, key: usize) {
        if let Some(watch) = watches.get_mut(&key) {
            watch.stopping = true;
            // SAFETY: cancels our own read on our handle.
            if unsafe { CancelIoEx(watch.handle, &watch.overlapped) } == 0 {
                // Nothing was in flight: nothing will complete.
                watches.remove(&key);
            }
        }
    }

    /// The (action, name) pairs of a buffer of FILE_NOTIFY_INFORMATION records. Read field by
    /// field, unaligned: Wine packs the records at 2-byte boundaries.
    fn parse(buffer: &[u8]) -> Vec<(u32, OsString)> {
        let mut found = Vec::new();
        let mut offset = 0usize;
        let word = |at: usize| -> Option<u32> {
            buffer
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        while let (Some(next), Some(action), Some(length)) =
            (word(offset), word(offset + 4), word(offset + 8))
        {
            let start = offset + 12;
            let Some(name) = buffer.get(start..start + length as usize) else {
                break;
            };
            let units: Vec<u16> = name
                .chunks_exact(2)
                .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
                .collect();
            found.push((action, OsString::from_wide(&units)));
            if next == 0 {
                break;
            }
            offset += next as usize;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn next(changes: &mpsc::Receiver<Change>) -> Change {
        changes
            .recv_timeout(Duration::from_secs(10))
            .expect("a change within 10 s")
    }

    /// Changes for `path` until one of `kind` (backends report extra `Changed`s).
    fn wait_for(changes: &mpsc::Receiver<Change>, path: &Path, kind: EntryKind) {
        loop {
            match next(changes) {
                Change::Entry { path: p, kind: k } if p == path && k == kind => return,
                Change::Lost => panic!("lost changes"),
                _ => {}
            }
        }
    }

    #[test]
    fn changes_in_watched_directories_arrive_in_order_on_one_thread() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let (a, b) = (root.join("a"), root.join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        let (send, changes) = mpsc::channel();
        let watcher = DirWatcher::start(Box::new(move |change| {
            let _ = send.send(change);
        }))
        .unwrap();
        watcher.watch(&a).unwrap();
        watcher.watch(&b).unwrap();
        assert!(
            zccache_platform::fs::is_local_file_system(&root),
            "{} is on a local file system",
            root.display()
        );
        for round in 0..20 {
            let (x, y) = (a.join(format!("x{round}")), b.join(format!("y{round}")));
            std::fs::write(&x, "1").unwrap();
            std::fs::write(&y, "1").unwrap();
            wait_for(&changes, &x, EntryKind::Created);
            wait_for(&changes, &y, EntryKind::Created);
        }
        std::fs::rename(a.join("x0"), a.join("z")).unwrap();
        std::fs::remove_file(b.join("y0")).unwrap();
        wait_for(&changes, &a.join("x0"), EntryKind::RenamedFrom);
        wait_for(&changes, &a.join("z"), EntryKind::RenamedTo);
        wait_for(&changes, &b.join("y0"), EntryKind::Removed);
        watcher.unwatch(&b);
        // A change in the unwatched directory is not reported; one after it in `a` is.
        std::fs::write(b.join("late"), "1").unwrap();
        std::fs::write(a.join("after"), "1").unwrap();
        loop {
            match next(&changes) {
                Change::Entry { path, .. } if path == a.join("after") => break,
                Change::Entry { path, .. } => {
                    assert!(!path.starts_with(&b) || path == b, "{path:?} after unwatch")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
