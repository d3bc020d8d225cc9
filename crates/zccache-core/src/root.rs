//! The cache root and every path inside it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use zccache_platform::fs::{write_problem, WriteProblem};

/// `sun_path` holds 108 bytes; longer socket paths move to a per-user directory under /tmp.
const MAX_SOCKET_PATH: usize = 100;

/// The directory that holds one cache: blobs, index, staging area, logs, and the daemon's endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRoot {
    root: PathBuf,
}

/// The cache root cannot be used.
#[derive(Debug)]
pub enum RootError {
    /// Creating or securing a directory failed.
    Io { path: PathBuf, error: io::Error },
    /// The root belongs to someone else: using it would expose our objects to them or theirs to us.
    ForeignOwner { path: PathBuf, owner: u32 },
}

impl fmt::Display for RootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootError::Io { path, error } => match write_problem(error) {
                WriteProblem::ReadOnlyFileSystem => write!(
                    f,
                    "{}: the cache is on a read-only file system; compiling uncached",
                    path.display()
                ),
                WriteProblem::NotPermitted => write!(
                    f,
                    "{}: the cache directory is not writable ({error}); compiling uncached",
                    path.display()
                ),
                WriteProblem::NoSpace => write!(
                    f,
                    "{}: no space left for the cache ({error}); compiling uncached",
                    path.display()
                ),
                WriteProblem::Other => write!(f, "{}: {error}", path.display()),
            },
            RootError::ForeignOwner { path, owner } => write!(
                f,
                "cache root {} is owned by uid {owner}, not by this user; refusing to use it",
                path.display()
            ),
        }
    }
}

impl std::error::Error for RootError {}

impl CacheRoot {
    /// Wraps an absolute path; nothing is created until [`CacheRoot::ensure`].
    pub fn new(root: impl Into<PathBuf>) -> CacheRoot {
        CacheRoot { root: root.into() }
    }

    /// The root directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Content-addressed blobs.
    pub fn artifacts_dir(&self) -> PathBuf {
        self.root.join("artifacts")
    }

    /// Staging area for atomic writes: same filesystem as `artifacts/`, so rename is atomic.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The redb index.
    pub fn index_path(&self) -> PathBuf {
        self.root.join("index.redb")
    }

    /// Logs: the daemon log and the compile journal.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Where the file watcher writes its sentinels (where it is not inotify, see
    /// zccache-fscache's `watch_dirs`).
    pub fn watch_barrier_dir(&self) -> PathBuf {
        self.root.join("watch")
    }

    /// The daemon's log file.
    pub fn daemon_log_path(&self) -> PathBuf {
        self.logs_dir().join("daemon.log")
    }

    /// Held (flock) by the one daemon serving this root and protocol version.
    pub fn lock_path(&self, protocol_version: u16) -> PathBuf {
        self.root.join(format!("daemon-v{protocol_version}.lock"))
    }

    /// Held (shared flock) by daemon `pid` and inherited by every process it starts, so the
    /// lock outlives a killed daemon until the last compiler it started has exited. A client
    /// that lost its daemon waits for that before compiling the same outputs itself.
    pub fn compilers_lock_path(&self, pid: u32) -> PathBuf {
        self.root.join(format!("compilers-{pid}.lock"))
    }

    /// The daemon's Unix socket: per root and per protocol version, so an upgraded client
    /// never talks to an old daemon.
    pub fn socket_path(&self, protocol_version: u16) -> PathBuf {
        let inside = self.root.join(format!("daemon-v{protocol_version}.sock"));
        self.fitting_socket(inside, &format!("v{protocol_version}"))
    }

    /// The download daemon's directory: its lock, log, socket and records of what it
    /// downloaded, apart from the compiler cache's files.
    pub fn download_dir(&self) -> PathBuf {
        self.root.join("download")
    }

    /// The download daemon's Unix socket, per root and download-protocol version.
    pub fn download_socket_path(&self, protocol_version: u16) -> PathBuf {
        let inside = self
            .download_dir()
            .join(format!("daemon-v{protocol_version}.sock"));
        self.fitting_socket(inside, &format!("download-v{protocol_version}"))
    }

    /// `inside`, or a per-user directory under /tmp when `inside` is too long for a socket.
    /// On Windows, a named pipe named after the root instead (`\\.\pipe\zccache-<digest>-<tag>`).
    fn fitting_socket(&self, inside: PathBuf, tag: &str) -> PathBuf {
        if cfg!(windows) {
            return PathBuf::from(format!(r"\\.\pipe\zccache-{}-{tag}", self.short_digest()));
        }
        if inside.as_os_str().len() <= MAX_SOCKET_PATH {
            return inside;
        }
        PathBuf::from(format!("/tmp/zccache-{}", uid()))
            .join(format!("{}-{tag}.sock", self.short_digest()))
    }

    /// A private directory on RAM-backed `/dev/shm` for the daemon's scratch files (the
    /// depfiles and response files it hands compilers), per root and protocol version,
    /// created here; `None` where `/dev/shm` is missing or the directory cannot be made ours
    /// and private (the daemon then uses `tmp/`). On disk, each scratch file costs a miss
    /// an inode, and on ext4 a block freed (with `discard`, a device request) per reuse.
    pub fn ensure_scratch_dir(&self, protocol_version: u16) -> Option<PathBuf> {
        self.ensure_scratch_dir_in(Path::new("/dev/shm"), protocol_version)
    }

    fn ensure_scratch_dir_in(&self, base: &Path, protocol_version: u16) -> Option<PathBuf> {
        if !std::fs::symlink_metadata(base).ok()?.is_dir() {
            return None;
        }
        let mine = base.join(format!("zccache-{}", uid()));
        let dir = mine.join(format!("{}-v{protocol_version}", self.short_digest()));
        // Both levels ours and 0700: nobody else can swap the directory or plant a file in it.
        make_private_dir(&mine).ok()?;
        make_private_dir(&dir).ok()?;
        Some(dir)
    }

    /// Names this root in shared places (`/tmp`, `/dev/shm`) where its path would not fit or
    /// could not be used.
    fn short_digest(&self) -> String {
        let digest = blake3::hash(self.root.as_os_str().as_encoded_bytes());
        crate::hex(digest.as_bytes())[..24].to_string()
    }

    /// Creates the root and its subdirectories with mode 0700, whatever the umask, and refuses
    /// a root owned by another user.
    pub fn ensure(&self) -> Result<(), RootError> {
        make_private_dir(&self.root)?;
        for dir in [self.artifacts_dir(), self.tmp_dir(), self.logs_dir()] {
            make_private_dir(&dir)?;
        }
        if let Some(parent) = self.socket_path(0).parent().filter(|_| cfg!(unix)) {
            if parent != self.root {
                make_private_dir(parent)?;
            }
        }
        Ok(())
    }
}

fn uid() -> u32 {
    zccache_platform::fs::user_id()
}

/// Creates `dir` (and parents) and makes it private to this user (0700 and ours on Unix).
pub fn make_private_dir(dir: &Path) -> Result<(), RootError> {
    use zccache_platform::fs::PrivateDirError;
    zccache_platform::fs::make_private_dir(dir).map_err(|e| match e {
        PrivateDirError::Io(error) => RootError::Io {
            path: dir.to_path_buf(),
            error,
        },
        PrivateDirError::ForeignOwner(owner) => RootError::ForeignOwner {
            path: dir.to_path_buf(),
            owner,
        },
        PrivateDirError::NotADirectory => RootError::Io {
            path: dir.to_path_buf(),
            error: io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn layout() {
        let root = CacheRoot::new("/c");
        assert_eq!(root.artifacts_dir(), PathBuf::from("/c/artifacts"));
        assert_eq!(root.index_path(), PathBuf::from("/c/index.redb"));
        if cfg!(windows) {
            let pipe = root.socket_path(3).into_os_string().into_string().unwrap();
            assert!(
                pipe.starts_with(r"\\.\pipe\zccache-") && pipe.ends_with("-v3"),
                "{pipe}"
            );
            let download = root.download_socket_path(1);
            assert!(download.to_str().unwrap().ends_with("-download-v1"));
            assert_ne!(CacheRoot::new("/d").socket_path(3), root.socket_path(3));
        } else {
            assert_eq!(root.socket_path(3), PathBuf::from("/c/daemon-v3.sock"));
        }
        assert_eq!(root.lock_path(3), PathBuf::from("/c/daemon-v3.lock"));
        assert_eq!(
            root.compilers_lock_path(42),
            PathBuf::from("/c/compilers-42.lock")
        );
    }

    #[test]
    fn long_roots_get_a_short_socket_path_that_differs_per_root() {
        let long_a = CacheRoot::new(format!("/{}", "a".repeat(120)));
        let long_b = CacheRoot::new(format!("/{}", "b".repeat(120)));
        let a = long_a.socket_path(1);
        assert!(a.as_os_str().len() <= MAX_SOCKET_PATH, "{a:?}");
        assert_ne!(a, long_b.socket_path(1));
        assert_ne!(a, long_a.socket_path(2));
    }

    #[test]
    #[cfg(unix)]
    fn the_scratch_dir_is_private_per_root_and_version_or_absent() {
        let base = tempfile::tempdir().unwrap();
        let a = CacheRoot::new("/cache/a");
        let dir = a.ensure_scratch_dir_in(base.path(), 7).unwrap();
        assert!(dir.starts_with(base.path()));
        for level in [dir.parent().unwrap(), dir.as_path()] {
            let mode = std::fs::metadata(level).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", level.display());
        }
        assert_eq!(a.ensure_scratch_dir_in(base.path(), 7), Some(dir.clone()));
        assert_ne!(a.ensure_scratch_dir_in(base.path(), 8), Some(dir.clone()));
        let b = CacheRoot::new("/cache/b");
        assert_ne!(b.ensure_scratch_dir_in(base.path(), 7), Some(dir.clone()));

        // Someone else's link where our directory would be: no scratch dir there.
        let planted = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let uid = uid();
        std::os::unix::fs::symlink(
            elsewhere.path(),
            planted.path().join(format!("zccache-{uid}")),
        )
        .unwrap();
        assert_eq!(a.ensure_scratch_dir_in(planted.path(), 7), None);
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
        assert_eq!(
            a.ensure_scratch_dir_in(&base.path().join("missing"), 7),
            None
        );
    }

    #[test]
    #[cfg(unix)]
    fn ensure_makes_private_dirs_whatever_the_umask() {
        let tmp = tempfile::tempdir().unwrap();
        let root = CacheRoot::new(tmp.path().join("root"));
        // SAFETY: umask only changes this process's file-creation mask.
        let old = unsafe { libc::umask(0) };
        let result = root.ensure();
        // SAFETY: as above; restores the previous mask.
        unsafe { libc::umask(old) };
        result.unwrap();
        for dir in [
            root.path().to_path_buf(),
            root.artifacts_dir(),
            root.tmp_dir(),
        ] {
            let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
    }
}
