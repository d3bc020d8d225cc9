//! `zccache cargo-registry`: cargo's downloads as one archive a fresh CI runner restores
//! instead of fetching them again.
//!
//! The archive is a `.tar.gz` of `registry/index` (the index cargo has read), `registry/cache`
//! (the `.crate` files) and `git/db` (git dependencies' repositories), relative to the cargo
//! home, with modes and modification times. The unpacked sources (`registry/src`,
//! `git/checkouts`) are left out: cargo recreates them from the archives, and they are most of
//! the size. Restoring writes only below those three directories of the cargo home: an entry
//! naming anything else, or leading out through `..` or a symbolic link, stops the restore.

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Component, Path, PathBuf};

/// What is archived, relative to the cargo home.
pub const ARCHIVED: &[&str] = &["registry/index", "registry/cache", "git/db"];

/// Where archives go under the cache root when no output path is given.
pub const ARCHIVE_DIR: &str = "cargo-registry";

/// What went wrong, with the file it concerns.
#[derive(Debug)]
pub enum Error {
    Io {
        path: PathBuf,
        error: io::Error,
    },
    /// No archive was saved under this key.
    NoArchive {
        key: String,
        path: PathBuf,
    },
    /// A key that cannot be a file name.
    BadKey(String),
    /// An archive entry that would be written outside the archived directories.
    Unsafe {
        archive: PathBuf,
        entry: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, error } => write!(f, "{}: {error}", path.display()),
            Error::NoArchive { key, path } => {
                write!(f, "no cached registry found for key: {key} ({})", path.display())
            }
            Error::BadKey(key) => write!(f, "{key:?} cannot be a cache key (a file name)"),
            Error::Unsafe { archive, entry } => write!(
                f,
                "{}: entry {entry:?} would be written outside the cargo registry; nothing more restored",
                archive.display()
            ),
        }
    }
}

impl std::error::Error for Error {}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |error| Error::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// The default archive for `key` under the cache root.
pub fn archive_for_key(cache_root: &Path, key: &str) -> Result<PathBuf, Error> {
    let plain = !key.is_empty() && key != "." && key != ".." && !key.contains(['/', '\\', '\0']);
    if !plain {
        return Err(Error::BadKey(key.to_string()));
    }
    Ok(cache_root.join(ARCHIVE_DIR).join(format!("{key}.tar.gz")))
}

/// What [`save`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    pub entries: u64,
    pub bytes: u64,
}

/// Archives the cargo home's downloads into `archive` (written beside it, then renamed into
/// place, so a reader never sees half an archive).
pub fn save(cargo_home: &Path, archive: &Path) -> Result<Saved, Error> {
    let dir = archive.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    let staged = dir.join(format!(
        ".{}.{}.partial",
        archive
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("archive"),
        std::process::id()
    ));
    let result = write_archive(cargo_home, &staged);
    let entries = match result {
        Ok(entries) => entries,
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e);
        }
    };
    std::fs::rename(&staged, archive).map_err(io_at(archive))?;
    let bytes = std::fs::metadata(archive).map_err(io_at(archive))?.len();
    Ok(Saved { entries, bytes })
}

fn write_archive(cargo_home: &Path, staged: &Path) -> Result<u64, Error> {
    let file = File::create(staged).map_err(io_at(staged))?;
    let gz = GzEncoder::new(BufWriter::new(file), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let mut entries = 0;
    for top in ARCHIVED {
        let root = cargo_home.join(top);
        if !root.is_dir() {
            continue;
        }
        // Sorted: the same downloads make the same archive.
        for entry in walkdir::WalkDir::new(&root).sort_by_file_name() {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(&root).to_path_buf();
                Error::Io {
                    path,
                    error: e.into(),
                }
            })?;
            let path = entry.path();
            let name = path.strip_prefix(cargo_home).unwrap_or(path);
            let meta = entry.metadata().map_err(|e| Error::Io {
                path: path.to_path_buf(),
                error: e.into(),
            })?;
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            // Whose files they were means nothing on the runner that restores them.
            header.set_uid(0);
            header.set_gid(0);
            let _ = header.set_username("");
            let _ = header.set_groupname("");
            let added = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(path).map_err(io_at(path))?;
                tar.append_link(&mut header, name, target)
            } else if meta.is_file() {
                let file = File::open(path).map_err(io_at(path))?;
                tar.append_data(&mut header, name, BufReader::new(file))
            } else if meta.is_dir() {
                tar.append_data(&mut header, name, io::empty())
            } else {
                continue;
            };
            added.map_err(io_at(path))?;
            entries += 1;
        }
    }
    let gz = tar.into_inner().map_err(io_at(staged))?;
    let mut out = gz.finish().map_err(io_at(staged))?;
    out.flush().map_err(io_at(staged))?;
    out.into_inner()
        .map_err(|e| Error::Io {
            path: staged.to_path_buf(),
            error: e.into_error(),
        })?
        .sync_all()
        .map_err(io_at(staged))?;
    Ok(entries)
}

/// Unpacks `archive` into the cargo home; returns the number of entries.
pub fn restore(archive: &Path, cargo_home: &Path) -> Result<u64, Error> {
    let file = File::open(archive).map_err(io_at(archive))?;
    std::fs::create_dir_all(cargo_home).map_err(io_at(cargo_home))?;
    let mut tar = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    tar.set_preserve_mtime(true);
    tar.set_preserve_permissions(true);
    tar.set_overwrite(true);
    let unsafe_entry = |entry: String| Error::Unsafe {
        archive: archive.to_path_buf(),
        entry,
    };
    let mut count = 0;
    for entry in tar.entries().map_err(io_at(archive))? {
        let mut entry = entry.map_err(io_at(archive))?;
        let name = entry.path().map_err(io_at(archive))?.into_owned();
        let shown = name.display().to_string();
        let inside = name.components().all(|c| matches!(c, Component::Normal(_)))
            && ARCHIVED.iter().any(|top| name.starts_with(top));
        if !inside {
            return Err(unsafe_entry(shown));
        }
        if let Some(target) = entry.link_name().map_err(io_at(archive))? {
            // A link may only point within the directory it lies in, or below it.
            let local = target
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
            if !local {
                return Err(unsafe_entry(shown));
            }
        }
        // `unpack_in` also refuses to write through a link that leads out of the cargo home.
        if !entry
            .unpack_in(cargo_home)
            .map_err(io_at(&cargo_home.join(&name)))?
        {
            return Err(unsafe_entry(shown));
        }
        count += 1;
    }
    Ok(count)
}

/// A key for the lockfile's content: the first 16 hex digits of its BLAKE3 digest.
pub fn lockfile_hash(lockfile: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(lockfile).map_err(io_at(lockfile))?;
    Ok(blake3::hash(&bytes).to_hex()[..16].to_string())
}

/// Removes every archive in `dir`; returns how many.
pub fn clean(dir: &Path) -> Result<u64, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                error: e,
            })
        }
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry.map_err(io_at(dir))?.path();
        let is_archive = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".tar.gz") || n.ends_with(".partial"));
        if is_archive {
            std::fs::remove_file(&path).map_err(io_at(&path))?;
            removed += 1;
        }
    }
    Ok(removed)
}

// The fixtures hold symlinks and Unix modes, which is what the archive must keep.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A cargo home with index, crate files, a git db, sources and a link.
    fn cargo_home(dir: &Path) {
        let write = |rel: &str, bytes: &[u8]| {
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
        };
        write("registry/index/idx-1/config.json", b"{\"dl\":\"x\"}");
        write("registry/index/idx-1/.cache/se/rd/serde", &[7u8; 3000]);
        write(
            "registry/cache/idx-1/serde-1.0.0.crate",
            &(0..=255u8).cycle().take(70_000).collect::<Vec<_>>(),
        );
        write(
            "registry/src/idx-1/serde-1.0.0/src/lib.rs",
            b"unpacked: not archived",
        );
        write("git/db/repo-1/HEAD", b"ref: refs/heads/main\n");
        write("git/checkouts/repo-1/abc/src/lib.rs", b"not archived");
        std::os::unix::fs::symlink("HEAD", dir.join("git/db/repo-1/LINK")).unwrap();
        std::fs::set_permissions(
            dir.join("registry/cache/idx-1/serde-1.0.0.crate"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
        File::options()
            .write(true)
            .open(dir.join("registry/index/idx-1/config.json"))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }

    /// Every archived file: relative path, content (or link target), mode, mtime.
    fn listing(home: &Path) -> Vec<(String, Vec<u8>, u32, i64)> {
        use std::os::unix::fs::MetadataExt;
        let mut out = Vec::new();
        for top in ARCHIVED {
            let root = home.join(top);
            if !root.exists() {
                continue;
            }
            for entry in walkdir::WalkDir::new(&root).sort_by_file_name() {
                let entry = entry.unwrap();
                let meta = std::fs::symlink_metadata(entry.path()).unwrap();
                let rel = entry
                    .path()
                    .strip_prefix(home)
                    .unwrap()
                    .display()
                    .to_string();
                let content = if meta.file_type().is_symlink() {
                    std::fs::read_link(entry.path())
                        .unwrap()
                        .display()
                        .to_string()
                        .into_bytes()
                } else if meta.is_file() {
                    std::fs::read(entry.path()).unwrap()
                } else {
                    Vec::new()
                };
                let mtime = if meta.is_file() { meta.mtime() } else { 0 };
                out.push((rel, content, meta.mode() & 0o7777, mtime));
            }
        }
        out
    }

    #[test]
    fn a_restored_registry_is_the_saved_one_byte_for_byte() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        cargo_home(&home);
        let archive = archive_for_key(&tmp.path().join("cache"), "linux-abc").unwrap();
        let saved = save(&home, &archive).unwrap();
        assert!(saved.bytes > 0 && saved.entries > 5, "{saved:?}");
        let fresh = tmp.path().join("fresh");
        assert_eq!(restore(&archive, &fresh).unwrap(), saved.entries);
        assert_eq!(listing(&fresh), listing(&home));
        assert!(!fresh.join("registry/src").exists(), "sources are left out");
        assert!(!fresh.join("git/checkouts").exists());
        // The same downloads make the same archive.
        let again = tmp.path().join("again.tar.gz");
        save(&home, &again).unwrap();
        assert_eq!(
            std::fs::read(&again).unwrap(),
            std::fs::read(&archive).unwrap()
        );
        assert_eq!(clean(archive.parent().unwrap()).unwrap(), 1);
        assert!(!archive.exists());
    }

    /// An archive holding one entry named `name` (raw bytes, so `..` can be written).
    fn archive_with(path: &Path, name: &[u8], link: Option<&str>) {
        let file = File::create(path).unwrap();
        let mut tar = tar::Builder::new(GzEncoder::new(file, flate2::Compression::fast()));
        let mut header = tar::Header::new_old();
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name);
        header.set_mode(0o644);
        match link {
            Some(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_link_name(target).unwrap();
                header.set_size(0);
                header.set_cksum();
                tar.append(&header, io::empty()).unwrap();
            }
            None => {
                header.set_size(4);
                header.set_cksum();
                tar.append(&header, &b"evil"[..]).unwrap();
            }
        }
        tar.into_inner().unwrap().finish().unwrap();
    }

    #[test]
    fn entries_that_lead_outside_the_registry_stop_the_restore() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        for (name, link) in [
            (&b"registry/cache/../../../outside"[..], None),
            (b"/tmp/absolute-outside", None),
            (b"bin/cargo", None),
            (b"registry/cache/escape", Some("../../../outside")),
            (b"registry/cache/abs", Some("/etc")),
        ] {
            let archive = tmp.path().join("bad.tar.gz");
            archive_with(&archive, name, link);
            match restore(&archive, &home) {
                Err(Error::Unsafe { .. }) => {}
                other => panic!("{}: {other:?}", String::from_utf8_lossy(name)),
            }
        }
        assert!(!tmp.path().join("outside").exists());
        assert!(!home.join("bin").exists());
    }

    #[test]
    fn keys_are_file_names_and_lockfiles_hash_by_content() {
        for bad in ["", ".", "..", "a/b", "a\\b"] {
            assert!(matches!(
                archive_for_key(Path::new("/c"), bad),
                Err(Error::BadKey(_))
            ));
        }
        let tmp = tempfile::tempdir().unwrap();
        let lock = tmp.path().join("Cargo.lock");
        std::fs::write(&lock, "version = 4\n").unwrap();
        let one = lockfile_hash(&lock).unwrap();
        assert_eq!(one.len(), 16);
        std::fs::write(&lock, "version = 4\n\n[[package]]\n").unwrap();
        assert_ne!(lockfile_hash(&lock).unwrap(), one);
        assert!(matches!(
            lockfile_hash(&tmp.path().join("missing")),
            Err(Error::Io { .. })
        ));
    }
}
