//! Private directories and what an I/O error means for a cache.

use std::io;
use std::path::Path;

/// Why a directory cannot be made private to this user.
#[derive(Debug)]
pub enum PrivateDirError {
    /// Creating, reading or securing it failed.
    Io(io::Error),
    /// It belongs to another user (Unix uid): using it would expose our files to them.
    ForeignOwner(u32),
    /// Something other than a directory is in the way.
    NotADirectory,
}

/// Creates `dir` (and its parents) and makes it private: on Unix mode 0700 whatever the umask,
/// and refused when another user owns it. On Windows a directory under the user's profile
/// inherits the profile's access list, which admits only the user, the administrators and
/// the system.
pub fn make_private_dir(dir: &Path) -> Result<(), PrivateDirError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(PrivateDirError::Io(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(PrivateDirError::Io)?;
    if !meta.is_dir() {
        return Err(PrivateDirError::NotADirectory);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if meta.uid() != user_id() {
            return Err(PrivateDirError::ForeignOwner(meta.uid()));
        }
        if meta.mode() & 0o777 != 0o700 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(PrivateDirError::Io)?;
        }
    }
    Ok(())
}

/// This user's numeric id (Unix uid; 0 where there is none), for naming per-user places in
/// shared directories.
pub fn user_id() -> u32 {
    #[cfg(unix)]
    {
        // SAFETY: getuid has no preconditions and cannot fail.
        unsafe { libc::getuid() }
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// A file's modification time in nanoseconds since the Unix epoch (negative before it; 0
/// where the file system keeps none).
pub fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    match meta.modified() {
        Ok(time) => match time.duration_since(std::time::UNIX_EPOCH) {
            Ok(after) => after.as_nanos() as i64,
            Err(before) => -(before.duration().as_nanos() as i64),
        },
        Err(_) => 0,
    }
}

/// A number that changes when a file is replaced by another (same path, new file): the inode
/// on Unix; on Windows the creation time, as the file index is not in stable std.
pub fn file_identity(meta: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        meta.ino()
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::MetadataExt;
        meta.creation_time()
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = meta;
        0
    }
}

/// What an I/O error means for a cache that wanted to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteProblem {
    ReadOnlyFileSystem,
    NotPermitted,
    NoSpace,
    Other,
}

/// Classifies `error` by its portable kind.
pub fn write_problem(error: &io::Error) -> WriteProblem {
    match error.kind() {
        io::ErrorKind::ReadOnlyFilesystem => WriteProblem::ReadOnlyFileSystem,
        io::ErrorKind::PermissionDenied => WriteProblem::NotPermitted,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => WriteProblem::NoSpace,
        _ => WriteProblem::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_dir_is_created_and_a_file_in_the_way_refused() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("a/b");
        make_private_dir(&private).unwrap();
        assert!(private.is_dir());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&private).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        make_private_dir(&private).unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            make_private_dir(&file),
            Err(PrivateDirError::NotADirectory) | Err(PrivateDirError::Io(_))
        ));
    }

    #[test]
    fn a_replaced_file_has_another_identity_and_stamps_follow_edits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"one").unwrap();
        let first = std::fs::metadata(&path).unwrap();
        let keep = dir.path().join("keep");
        std::fs::rename(&path, &keep).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, b"two").unwrap();
        let second = std::fs::metadata(&path).unwrap();
        assert_ne!(file_identity(&first), file_identity(&second));
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let backdated = mtime_ns(&std::fs::metadata(&path).unwrap());
        assert!(backdated < mtime_ns(&second) - 3_000_000_000_000);
    }

    #[test]
    fn write_problems_are_named_by_kind() {
        let full = io::Error::from(io::ErrorKind::StorageFull);
        assert_eq!(write_problem(&full), WriteProblem::NoSpace);
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(write_problem(&denied), WriteProblem::NotPermitted);
    }
}
