//! What a `stat` says about a file's identity and its last change, and how fine the file
//! system's stamps are.

use std::io;
use std::path::Path;

/// The parts of a file's metadata that change when its content or identity changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    /// The device (Unix); 0 on Windows, where std does not give the volume from metadata
    /// (`ino` then carries the identity).
    pub dev: u64,
    /// The inode (Unix); on Windows the creation time, which a file replaced by another
    /// (written anew, renamed over) does not keep.
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    /// The status-change time (Unix); on Windows the last write time again, as std does not
    /// give the change time: a write that restores an older mtime is then seen by its size
    /// or not at all, as with make.
    pub ctime_ns: i128,
    /// The last access (as the mount's `atime` policy keeps it).
    pub atime_ns: i128,
    /// Neither stamp has a fraction of a second, as file systems with whole-second stamps
    /// write them.
    pub whole_seconds: bool,
}

impl FileStamp {
    /// Stats `path`, following symlinks. On Windows this reads what `std::fs::metadata` does
    /// not give: the volume and file index (the identity) and the change time, so that a
    /// write that restores an older mtime is still seen, as on Unix.
    pub fn of_path(path: &Path) -> io::Result<FileStamp> {
        #[cfg(unix)]
        {
            Ok(FileStamp::of(&std::fs::metadata(path)?))
        }
        #[cfg(windows)]
        {
            imp::stamp_of_path(path)
        }
    }

    /// The stamp in metadata already at hand. On Windows that has no change time (the last
    /// write time stands in) and no volume (0): prefer [`FileStamp::of_path`].
    pub fn of(meta: &std::fs::Metadata) -> FileStamp {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            FileStamp {
                dev: meta.dev(),
                ino: meta.ino(),
                size: meta.len(),
                mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
                ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
                atime_ns: meta.atime() as i128 * 1_000_000_000 + meta.atime_nsec() as i128,
                whole_seconds: meta.mtime_nsec() == 0 && meta.ctime_nsec() == 0,
            }
        }
        #[cfg(windows)]
        {
            use std::os::windows::fs::MetadataExt;
            // FILETIME: 100 ns intervals since 1601-01-01.
            const EPOCH_DIFF_100NS: i128 = 116_444_736_000_000_000;
            let write = (meta.last_write_time() as i128 - EPOCH_DIFF_100NS) * 100;
            let access = (meta.last_access_time() as i128 - EPOCH_DIFF_100NS) * 100;
            FileStamp {
                dev: 0,
                ino: meta.creation_time(),
                size: meta.len(),
                mtime_ns: write,
                ctime_ns: write,
                atime_ns: access,
                whole_seconds: write % 1_000_000_000 == 0,
            }
        }
    }
}

/// Whether `a` and `b` name the same file (one inode, or on Windows one volume serial and
/// file index, through two links); `false` when either cannot be opened.
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(windows)]
    {
        match (imp::volume_and_index(a), imp::volume_and_index(b)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

/// Whether the file system holding `path` keeps stamps coarser than the file clock (whole or
/// even seconds: FAT, exFAT) or takes them from another machine's clock (network mounts);
/// `None` when its type cannot be found.
pub fn has_coarse_stamps(path: &Path) -> Option<bool> {
    imp::has_coarse_stamps(path)
}

/// Opens a file to read its content, never blocking on a FIFO or device among a compile's
/// inputs (`O_NONBLOCK` on Unix).
pub fn open_for_reading(path: &Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::path::Path;

    /// `statfs` types whose stamps are whole seconds or coarser, or come from another clock.
    pub(crate) const COARSE_FILE_SYSTEMS: &[i64] = &[
        0x4d44,      // msdos / vfat
        0x2011_bab0, // exfat
        0x5346_544e, // ntfs3
        0x6969,      // nfs
        0x517b,      // smb
        0xff53_4d42, // cifs
        0xfe53_4d42, // smb2
        0x6573_5546, // fuse
        0x0102_1997, // 9p
        0x786f_4256, // vboxsf
        0x0000_4244, // hfs
        0x0000_9660, // iso9660
        0x7375_7245, // coda
        0x5346_414f, // afs
        0x00c3_6400, // ceph
    ];

    pub(crate) fn has_coarse_stamps(path: &Path) -> Option<bool> {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: statfs writes into `buf`, a zeroed plain-data struct; the path is
        // NUL-terminated.
        let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(c_path.as_ptr(), &mut buf) } != 0 {
            return None;
        }
        #[allow(clippy::unnecessary_cast)]
        Some(COARSE_FILE_SYSTEMS.contains(&(buf.f_type as i64)))
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
mod imp {
    use std::path::Path;

    /// `f_fstypename`s (macOS, BSD) whose stamps are coarse or from another clock.
    const COARSE_FILE_SYSTEMS: &[&str] = &[
        "msdos", "exfat", "ntfs", "nfs", "smbfs", "afpfs", "webdav", "cd9660", "udf", "osxfuse",
        "macfuse", "fusefs",
    ];

    pub(crate) fn has_coarse_stamps(path: &Path) -> Option<bool> {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: as on Linux: a zeroed plain-data struct and a NUL-terminated path.
        let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(c_path.as_ptr(), &mut buf) } != 0 {
            return None;
        }
        // SAFETY: the kernel NUL-terminates f_fstypename within the array.
        let name = unsafe { std::ffi::CStr::from_ptr(buf.f_fstypename.as_ptr()) };
        let name = name.to_str().ok()?;
        Some(COARSE_FILE_SYSTEMS.iter().any(|fs| name.starts_with(fs)))
    }
}

#[cfg(windows)]
mod imp {
    use std::os::windows::ffi::OsStrExt;
    use std::path::Path;
    use windows_sys::Win32::Storage::FileSystem::{
        GetFileInformationByHandle, GetVolumeInformationW, GetVolumePathNameW,
        BY_HANDLE_FILE_INFORMATION,
    };

    /// FILETIME (100 ns steps since 1601) to nanoseconds since the Unix epoch.
    fn filetime_ns(ticks: i64) -> i128 {
        (ticks as i128 - 116_444_736_000_000_000) * 100
    }

    pub(crate) fn stamp_of_path(path: &Path) -> std::io::Result<super::FileStamp> {
        use std::os::windows::fs::OpenOptionsExt;
        use std::os::windows::io::AsRawHandle;
        use windows_sys::Win32::Storage::FileSystem::{
            FileBasicInfo, GetFileInformationByHandleEx, FILE_BASIC_INFO,
            FILE_FLAG_BACKUP_SEMANTICS, FILE_READ_ATTRIBUTES, FILE_SHARE_DELETE, FILE_SHARE_READ,
            FILE_SHARE_WRITE,
        };
        // Attributes only, any file or directory, whoever else has it open.
        let file = std::fs::OpenOptions::new()
            .access_mode(FILE_READ_ATTRIBUTES)
            .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
            .open(path)?;
        let handle = file.as_raw_handle();
        // SAFETY: plain-data structs the calls fill, of the sizes given; the handle is open.
        let (info, basic) = unsafe {
            let mut info: BY_HANDLE_FILE_INFORMATION = std::mem::zeroed();
            if GetFileInformationByHandle(handle, &mut info) == 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut basic: FILE_BASIC_INFO = std::mem::zeroed();
            if GetFileInformationByHandleEx(
                handle,
                FileBasicInfo,
                (&mut basic as *mut FILE_BASIC_INFO).cast(),
                std::mem::size_of::<FILE_BASIC_INFO>() as u32,
            ) == 0
            {
                return Err(std::io::Error::last_os_error());
            }
            (info, basic)
        };
        let write = filetime_ns(basic.LastWriteTime);
        let change = filetime_ns(basic.ChangeTime);
        Ok(super::FileStamp {
            dev: u64::from(info.dwVolumeSerialNumber),
            ino: (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
            size: (u64::from(info.nFileSizeHigh) << 32) | u64::from(info.nFileSizeLow),
            mtime_ns: write,
            ctime_ns: change,
            atime_ns: filetime_ns(basic.LastAccessTime),
            whole_seconds: write % 1_000_000_000 == 0 && change % 1_000_000_000 == 0,
        })
    }

    /// The volume serial number and file index of `path`: what identifies a file on Windows.
    pub(crate) fn volume_and_index(path: &Path) -> Option<(u32, u64)> {
        use std::os::windows::io::AsRawHandle;
        let file = std::fs::File::open(path).ok()?;
        // SAFETY: a plain-data struct the call fills; the handle is `file`'s, open here.
        let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
        if unsafe { GetFileInformationByHandle(file.as_raw_handle(), &mut info) } == 0 {
            return None;
        }
        let index = (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow);
        Some((info.dwVolumeSerialNumber, index))
    }

    /// NTFS and ReFS stamp in 100 ns steps from the system clock; anything else (FAT32 and
    /// exFAT with 2 s or 10 ms steps, network redirectors) counts as coarse.
    pub(crate) fn has_coarse_stamps(path: &Path) -> Option<bool> {
        let wide: Vec<u16> = path.as_os_str().encode_wide().chain(Some(0)).collect();
        let mut root = [0u16; 1024];
        // SAFETY: `wide` is NUL-terminated; `root` is writable for the length given.
        if unsafe { GetVolumePathNameW(wide.as_ptr(), root.as_mut_ptr(), root.len() as u32) } == 0 {
            return None;
        }
        let mut fs_name = [0u16; 64];
        // SAFETY: `root` now holds a NUL-terminated volume path; the out-buffers we pass are
        // writable for their lengths and the others are null, which the API allows.
        let ok = unsafe {
            GetVolumeInformationW(
                root.as_ptr(),
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                fs_name.as_mut_ptr(),
                fs_name.len() as u32,
            )
        };
        if ok == 0 {
            return None;
        }
        let len = fs_name
            .iter()
            .position(|c| *c == 0)
            .unwrap_or(fs_name.len());
        let name = String::from_utf16_lossy(&fs_name[..len]);
        Some(!matches!(name.as_str(), "NTFS" | "ReFS"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_file_gets_a_new_stamp_and_a_local_temp_dir_is_fine() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, "one").unwrap();
        let first = FileStamp::of(&std::fs::metadata(&path).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(30));
        std::fs::write(&path, "three").unwrap();
        let second = FileStamp::of(&std::fs::metadata(&path).unwrap());
        assert_eq!(second.size, 5);
        assert!(second.mtime_ns > first.mtime_ns, "{first:?} {second:?}");
        assert_eq!(has_coarse_stamps(tmp.path()), Some(false));
        assert!(open_for_reading(&path).is_ok());
        let by_path = FileStamp::of_path(&path).unwrap();
        assert_eq!(
            (by_path.size, by_path.mtime_ns),
            (second.size, second.mtime_ns)
        );
    }

    #[test]
    fn a_write_that_restores_size_and_mtime_still_changes_the_stamp() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, "one").unwrap();
        let before = FileStamp::of_path(&path).unwrap();
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        std::fs::write(&path, "two").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let after = FileStamp::of_path(&path).unwrap();
        assert_eq!((after.size, after.mtime_ns), (before.size, before.mtime_ns));
        assert_ne!(after, before, "the change time moved");
    }

    #[test]
    fn two_links_to_one_file_are_the_same_file_and_a_copy_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("c"),
        );
        std::fs::write(&a, "x").unwrap();
        std::fs::hard_link(&a, &b).unwrap();
        std::fs::copy(&a, &c).unwrap();
        assert!(same_file(&a, &b));
        assert!(!same_file(&a, &c));
        assert!(!same_file(&a, &tmp.path().join("missing")));
    }

    #[test]
    fn a_replaced_file_has_another_identity_and_stamps_follow_edits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"one").unwrap();
        let first = FileStamp::of(&std::fs::metadata(&path).unwrap());
        let keep = dir.path().join("keep");
        std::fs::rename(&path, &keep).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, b"two").unwrap();
        let second = FileStamp::of(&std::fs::metadata(&path).unwrap());
        assert_ne!(first.ino, second.ino);
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let backdated = FileStamp::of(&std::fs::metadata(&path).unwrap()).mtime_ns;
        assert!(backdated < second.mtime_ns - 3_000_000_000_000);
    }
}
