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

/// This process's file-creation mask (Unix); 0o022 on Windows, where new files get their
/// directory's access list and only the read-only bit maps to a mode.
pub fn umask() -> u32 {
    #[cfg(unix)]
    {
        // SAFETY: umask only reads and sets this process's file-creation mask; it is set
        // back at once.
        unsafe {
            let old = libc::umask(0o077);
            libc::umask(old);
            old as u32
        }
    }
    #[cfg(not(unix))]
    {
        0o022
    }
}

/// The environment variables naming the user's home directory, in the order they are
/// trusted: `%USERPROFILE%` on Windows (`HOME`, set by Git Bash and MSYS, may be a Unix-style
/// path there), `HOME` elsewhere.
pub const HOME_VARIABLES: &[&str] = if cfg!(windows) {
    &["USERPROFILE", "HOME"]
} else {
    &["HOME"]
};

/// Options for a file only this user may read or write (mode 0600 on Unix; on Windows the
/// directory's inherited access list decides).
pub fn private_file_options() -> std::fs::OpenOptions {
    file_options_with_mode(0o600)
}

/// Options for a new file created with permission bits `mode` on Unix (as the umask lets
/// them); on Windows the directory's inherited access list decides.
pub fn file_options_with_mode(mode: u32) -> std::fs::OpenOptions {
    #[allow(unused_mut)]
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options
}

/// Whether this process has a descriptor open on `path`, whatever path named it (read from
/// `/proc/self/fd`). `false` where that cannot be known (other systems for now).
pub fn this_process_holds_open(path: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        let Ok(path) = std::fs::canonicalize(path) else {
            return false;
        };
        std::fs::read_dir("/proc/self/fd")
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        false
    }
}

/// Writes all of `buf` at `offset` without moving a shared cursor (`pwrite` on Unix,
/// `WriteFile` with an offset on Windows), so several threads can fill one file.
pub fn write_all_at(file: &std::fs::File, buf: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.write_all_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        whole_at(buf.len(), offset, io::ErrorKind::WriteZero, |done, at| {
            file.seek_write(&buf[done..], at)
        })
    }
}

/// Reads exactly `buf.len()` bytes at `offset` (`pread` on Unix; on Windows `ReadFile` with
/// an offset, which also moves the file's cursor: callers must not share it).
pub fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        whole_at(
            buf.len(),
            offset,
            io::ErrorKind::UnexpectedEof,
            |done, at| file.seek_read(&mut buf[done..], at),
        )
    }
}

/// Repeats `step(bytes done, file offset)` until `len` bytes are transferred: Windows'
/// positioned reads and writes, like `pread`/`pwrite`, may move fewer bytes than asked.
#[cfg(windows)]
fn whole_at(
    len: usize,
    offset: u64,
    on_zero: io::ErrorKind,
    mut step: impl FnMut(usize, u64) -> io::Result<usize>,
) -> io::Result<()> {
    let mut done = 0;
    while done < len {
        match step(done, offset + done as u64) {
            Ok(0) => return Err(on_zero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Creates a new file at `path` for writing, never through a symlink already there (Unix:
/// `O_EXCL | O_NOFOLLOW`; Windows: `CREATE_NEW`, which fails on any existing name), with
/// `mode`'s permission bits on Unix.
pub fn create_new_no_follow(path: &Path, mode: u32) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW).mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)
}

/// Opens `path` for writing as an empty private file, creating it if needed and never
/// through a symlink planted there (`O_NOFOLLOW` on Unix; Windows opens the link's target
/// only for a privileged user or developer mode, in a directory that is this user's alone).
pub fn create_or_truncate_no_follow(path: &Path) -> io::Result<std::fs::File> {
    let mut options = private_file_options();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path)
}

/// Gives `file` the permission bits `mode` (whatever the umask took away); on Windows only
/// the write bit means something (read-only when clear).
pub fn set_mode(file: &std::fs::File, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let mut permissions = file.metadata()?.permissions();
        permissions.set_readonly(mode & 0o222 == 0);
        file.set_permissions(permissions)
    }
}

/// [`set_mode`] for a file named by its path.
pub fn set_path_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let mut permissions = std::fs::metadata(path)?.permissions();
        permissions.set_readonly(mode & 0o222 == 0);
        std::fs::set_permissions(path, permissions)
    }
}

/// The permission bits of a file (`st_mode & 0o7777` on Unix); on Windows 0o444 for a
/// read-only file, 0o644 otherwise.
pub fn mode_of(meta: &std::fs::Metadata) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o7777
    }
    #[cfg(not(unix))]
    {
        if meta.permissions().readonly() {
            0o444
        } else {
            0o644
        }
    }
}

/// Removes a file, read-only or not: Windows refuses to delete a read-only file (the store's
/// blobs are), so there the attribute is cleared first when the delete is refused.
pub fn remove_file(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        #[cfg(windows)]
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let mut permissions = std::fs::symlink_metadata(path)?.permissions();
            if !permissions.readonly() {
                return Err(e);
            }
            #[allow(clippy::permissions_set_readonly_false)]
            permissions.set_readonly(false);
            std::fs::set_permissions(path, permissions)?;
            std::fs::remove_file(path)
        }
        other => other,
    }
}

/// Removes a directory tree, read-only files in it included (see [`remove_file`]).
pub fn remove_dir_all(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        #[cfg(windows)]
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            for entry in walk_files(path) {
                let _ = remove_file(&entry);
            }
            std::fs::remove_dir_all(path)
        }
        other => other,
    }
}

/// Every file (not directory) under `dir`, depth first.
#[cfg(windows)]
fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Whether cached outputs may be delivered as hardlinks to the store's read-only blobs. On
/// Windows they are copied: a hardlink shares the blob's read-only attribute, and there a
/// read-only output cannot be deleted or overwritten by the build tools that expect to.
pub const HARDLINK_DELIVERY: bool = cfg!(unix);

/// A symbolic link at `link` to `target` (on Windows a file symlink, which needs the
/// privilege or developer mode; without it this fails and says so).
pub fn symlink(target: &Path, link: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(target, link)
    }
    #[cfg(windows)]
    {
        std::os::windows::fs::symlink_file(target, link)
    }
}

/// A path from bytes as an archive stores them: any bytes on Unix; UTF-8 on Windows, where
/// other bytes cannot name a file (an error then).
pub fn path_from_bytes(bytes: &[u8]) -> io::Result<std::path::PathBuf> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(std::ffi::OsStr::from_bytes(bytes).into())
    }
    #[cfg(not(unix))]
    {
        std::str::from_utf8(bytes)
            .map(std::path::PathBuf::from)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// Sends this process's standard error to `file` from now on (a daemon started with it on
/// the null device writes its log there).
pub fn redirect_stderr(file: &std::fs::File) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: dup2 onto descriptor 2 of a descriptor `file` owns; `file` may close later.
        match unsafe { libc::dup2(file.as_raw_fd(), 2) } {
            -1 => Err(io::Error::last_os_error()),
            _ => Ok(()),
        }
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::IntoRawHandle;
        use windows_sys::Win32::System::Console::{SetStdHandle, STD_ERROR_HANDLE};
        // The standard handle must outlive `file`: give it a handle of its own.
        let handle = file.try_clone()?.into_raw_handle();
        // SAFETY: SetStdHandle stores a handle this process owns and never closes.
        match unsafe { SetStdHandle(STD_ERROR_HANDLE, handle) } {
            0 => Err(io::Error::last_os_error()),
            _ => Ok(()),
        }
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

#[cfg(unix)]
/// Whether every change to `dir` is made through this kernel, so a file watcher sees it: a
/// local file system (network and FUSE mounts can change behind its back). By `statfs` type
/// on Linux, the mount's local flag on macOS.
pub fn is_local_file_system(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we pass; the path is NUL-terminated.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        const LOCAL_FS: &[i64] = &[
            0xEF53,      // ext2/3/4
            0x5846_5342, // xfs
            0x9123_683E, // btrfs
            0x0102_1994, // tmpfs
            0xF2F5_2010, // f2fs
        ];
        LOCAL_FS.contains(&(stat.f_type as i64))
    }
    #[cfg(not(target_os = "linux"))]
    {
        stat.f_flags as i64 & libc::MNT_LOCAL as i64 != 0
    }
}

#[cfg(windows)]
/// Whether every change to `dir` is made on this machine, so a file watcher sees it: fixed
/// and removable drives and RAM disks; not network shares (whose changes other
/// machines make) or anything that cannot be told.
pub fn is_local_file_system(dir: &Path) -> bool {
    use std::path::Component;
    let Some(Component::Prefix(prefix)) = dir.components().next() else {
        return false;
    };
    let root = match prefix.kind() {
        std::path::Prefix::Disk(letter) | std::path::Prefix::VerbatimDisk(letter) => {
            format!("{}:\\", letter as char)
        }
        _ => return false,
    };
    let root: Vec<u16> = root.encode_utf16().chain([0]).collect();
    // SAFETY: a NUL-terminated root path.
    let kind = unsafe { windows_sys::Win32::Storage::FileSystem::GetDriveTypeW(root.as_ptr()) };
    // DRIVE_REMOVABLE 2, DRIVE_FIXED 3, DRIVE_RAMDISK 6.
    matches!(kind, 2 | 3 | 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positioned_writes_and_reads_meet_in_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        write_all_at(&file, b"world", 6).unwrap();
        write_all_at(&file, b"hello ", 0).unwrap();
        let mut back = [0u8; 11];
        read_exact_at(&file, &mut back, 0).unwrap();
        assert_eq!(&back, b"hello world");
        let err = read_exact_at(&file, &mut [0u8; 4], 9).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

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

    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_this_process_holds_open_is_found_through_any_path() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("compilers-1.lock");
        std::fs::write(&lock, b"").unwrap();
        assert!(!this_process_holds_open(&lock));
        let held = std::fs::File::open(&lock).unwrap();
        assert!(this_process_holds_open(&lock));
        // The same file named through a symlinked directory.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        assert!(this_process_holds_open(&link.join("compilers-1.lock")));
        drop(held);
        assert!(!this_process_holds_open(&lock));
        assert!(!this_process_holds_open(&dir.path().join("missing.lock")));
    }

    #[test]
    fn writes_at_offsets_fill_a_file_and_new_files_refuse_existing_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        let file = create_new_no_follow(&path, 0o644).unwrap();
        file.set_len(6).unwrap();
        write_all_at(&file, b"def", 3).unwrap();
        write_all_at(&file, b"abc", 0).unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), b"abcdef");
        assert!(create_new_no_follow(&path, 0o644).is_err());
        assert_eq!(path_from_bytes(b"a/b.txt").unwrap(), Path::new("a/b.txt"));
    }

    #[cfg(unix)]
    #[test]
    fn a_new_file_is_never_created_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        let link = dir.path().join("link");
        symlink(&outside, &link).unwrap();
        assert!(create_new_no_follow(&link, 0o644).is_err());
        assert!(!outside.exists());
    }

    #[test]
    fn write_problems_are_named_by_kind() {
        let full = io::Error::from(io::ErrorKind::StorageFull);
        assert_eq!(write_problem(&full), WriteProblem::NoSpace);
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(write_problem(&denied), WriteProblem::NotPermitted);
    }
}
