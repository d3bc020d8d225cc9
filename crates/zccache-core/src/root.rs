//! The cache root and every path inside it.

use std::fmt;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
            RootError::Io { path, error } => match error.raw_os_error() {
                Some(libc::EROFS) => write!(
                    f,
                    "{}: the cache is on a read-only file system; compiling uncached",
                    path.display()
                ),
                Some(libc::EACCES) | Some(libc::EPERM) => write!(
                    f,
                    "{}: the cache directory is not writable ({error}); compiling uncached",
                    path.display()
                ),
                Some(libc::ENOSPC) | Some(libc::EDQUOT) => write!(
                    f,
                    "{}: no space left for the cache ({error}); compiling uncached",
                    path.display()
                ),
                _ => write!(f, "{}: {error}", path.display()),
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
    fn fitting_socket(&self, inside: PathBuf, tag: &str) -> PathBuf {
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
        if let Some(parent) = self.socket_path(0).parent() {
            if parent != self.root {
                make_private_dir(parent)?;
            }
        }
        Ok(())
    }
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Creates `dir` (and parents) and makes it 0700 and ours.
pub fn make_private_dir(dir: &Path) -> Result<(), RootError> {
    let io_err = |error| RootError::Io {
        path: dir.to_path_buf(),
        error,
    };
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(io_err)?;
    if meta.uid() != uid() {
        return Err(RootError::ForeignOwner {
            path: dir.to_path_buf(),
            owner: meta.uid(),
        });
    }
    if !meta.is_dir() {
        return Err(io_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a directory",
        )));
    }
    if meta.mode() & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let root = CacheRoot::new("/c");
        assert_eq!(root.artifacts_dir(), PathBuf::from("/c/artifacts"));
        assert_eq!(root.index_path(), PathBuf::from("/c/index.redb"));
        assert_eq!(root.socket_path(3), PathBuf::from("/c/daemon-v3.sock"));
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
