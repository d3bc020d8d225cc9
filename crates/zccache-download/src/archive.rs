//! Safe extraction of downloaded archives.
//!
//! Extraction goes into a fresh temporary directory next to the target and is renamed
//! into place only when every entry was accepted, so the target never holds a partial
//! or hostile tree. Entries are refused when their path is absolute or contains `..`,
//! when a symlink or hardlink would point outside the tree, or when writing them would
//! go through a symlink.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::DownloadError;

/// Archive formats recognised by the destination's file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Tar,
    TarGz,
    TarXz,
    TarZst,
    Zip,
}

impl ArchiveKind {
    /// Detects the format from the file name (case-insensitive), `None` if unknown.
    pub fn from_path(path: &Path) -> Option<ArchiveKind> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        [
            (".tar.gz", ArchiveKind::TarGz),
            (".tgz", ArchiveKind::TarGz),
            (".tar.xz", ArchiveKind::TarXz),
            (".txz", ArchiveKind::TarXz),
            (".tar.zst", ArchiveKind::TarZst),
            (".tzst", ArchiveKind::TarZst),
            (".tar", ArchiveKind::Tar),
            (".zip", ArchiveKind::Zip),
        ]
        .into_iter()
        .find(|(suffix, _)| name.ends_with(suffix))
        .map(|(_, kind)| kind)
    }
}

/// Extracts `archive` (format from its name) into `dir`, replacing `dir` if it exists.
pub fn unarchive(archive: &Path, dir: &Path) -> Result<(), DownloadError> {
    let kind = ArchiveKind::from_path(archive).ok_or_else(|| DownloadError::Archive {
        archive: archive.to_path_buf(),
        message: "unknown archive type".into(),
    })?;
    extract(archive, kind, dir)
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A sibling of `dir` that no other extraction (in this or another process) uses.
fn sibling(dir: &Path, tag: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unarchive".into());
    let unique = UNIQUE.fetch_add(1, Ordering::Relaxed);
    let parent = dir.parent().unwrap_or(Path::new("."));
    parent.join(format!(".{name}.{tag}-{}-{unique}", std::process::id()))
}

/// Extracts `archive` as a `kind` archive into `dir`, replacing `dir` if it exists.
pub fn extract(archive: &Path, kind: ArchiveKind, dir: &Path) -> Result<(), DownloadError> {
    if dir.file_name().is_none() {
        return Err(DownloadError::InvalidRequest(format!(
            "unarchive directory {} has no name",
            dir.display()
        )));
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| DownloadError::io(parent, "create directory", e))?;
    }
    let staging = sibling(dir, "unpack");
    fs::create_dir(&staging).map_err(|e| DownloadError::io(&staging, "create directory", e))?;
    let result = (|| {
        let file = fs::File::open(archive).map_err(|e| DownloadError::io(archive, "open", e))?;
        let reader = io::BufReader::new(file);
        let read_error = |e: io::Error| DownloadError::Archive {
            archive: archive.to_path_buf(),
            message: e.to_string(),
        };
        match kind {
            ArchiveKind::Tar => extract_tar(archive, reader, &staging),
            ArchiveKind::TarGz => extract_tar(
                archive,
                flate2::bufread::MultiGzDecoder::new(reader),
                &staging,
            ),
            ArchiveKind::TarXz => {
                extract_tar(archive, xz2::bufread::XzDecoder::new(reader), &staging)
            }
            ArchiveKind::TarZst => extract_tar(
                archive,
                zstd::stream::read::Decoder::with_buffer(reader).map_err(read_error)?,
                &staging,
            ),
            ArchiveKind::Zip => extract_zip(archive, &staging),
        }
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    place(&staging, dir)
}

/// Renames the finished staging tree onto `dir`, moving an existing `dir` aside first
/// (a directory cannot be renamed over a non-empty one) and restoring it on failure.
fn place(staging: &Path, dir: &Path) -> Result<(), DownloadError> {
    let old = match fs::symlink_metadata(dir) {
        Ok(_) => {
            let old = sibling(dir, "old");
            fs::rename(dir, &old).map_err(|e| DownloadError::io(dir, "move aside", e))?;
            Some(old)
        }
        Err(_) => None,
    };
    if let Err(e) = fs::rename(staging, dir) {
        if let Some(old) = &old {
            let _ = fs::rename(old, dir);
        }
        let _ = fs::remove_dir_all(staging);
        return Err(DownloadError::io(dir, "rename extracted tree to", e));
    }
    if let Some(old) = old {
        let _ = if fs::symlink_metadata(&old).is_ok_and(|m| m.is_dir()) {
            fs::remove_dir_all(&old)
        } else {
            fs::remove_file(&old)
        };
    }
    Ok(())
}

/// Turns an entry name into a relative path without `..`, refusing anything else.
fn safe_relative(name: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("path contains '..'".into()),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path".into()),
        }
    }
    Ok(out)
}

/// Checks that a symlink at `link` (relative to the root) with `target` stays inside
/// the tree. `..` is only allowed as leading components, so it is resolved against the
/// link's real parent directory (which contains no symlinks) and the check is exact.
fn check_symlink_target(link: &Path, target: &Path) -> Result<(), String> {
    if target.as_os_str().is_empty() {
        return Err("empty symlink target".into());
    }
    let mut depth = link.components().count() as i64 - 1;
    let mut seen_normal = false;
    for component in target.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("symlink to absolute path {}", target.display()))
            }
            Component::CurDir => {}
            Component::ParentDir if seen_normal => {
                return Err(format!(
                    "symlink target {} has '..' after a name",
                    target.display()
                ))
            }
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!(
                        "symlink target {} points outside the extraction directory",
                        target.display()
                    ));
                }
            }
            Component::Normal(_) => seen_normal = true,
        }
    }
    Ok(())
}

/// Refuses to create `rel` if any existing ancestor inside `root` is a symlink (writing
/// would go through it) or if `rel` itself exists as a symlink. Returns the full path.
fn prepare_target(root: &Path, rel: &Path) -> Result<PathBuf, String> {
    let mut current = root.to_path_buf();
    let components: Vec<_> = rel.components().collect();
    for (i, component) in components.iter().enumerate() {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(if i + 1 == components.len() {
                    "would replace a symlink".into()
                } else {
                    format!(
                        "would write through symlink {}",
                        rel.iter().take(i + 1).collect::<PathBuf>().display()
                    )
                });
            }
            Ok(meta) if i + 1 < components.len() && !meta.is_dir() => {
                return Err("a parent path is not a directory".into())
            }
            _ => {}
        }
    }
    Ok(current)
}

enum EntryKind {
    Dir,
    File { executable: bool },
    Symlink(PathBuf),
    Hardlink(PathBuf),
}

/// Writes one validated entry into `root`.
fn write_entry(
    archive: &Path,
    root: &Path,
    name: &Path,
    kind: EntryKind,
    content: &mut dyn Read,
) -> Result<(), DownloadError> {
    let refuse = |reason: String| DownloadError::UnsafeArchiveEntry {
        archive: archive.to_path_buf(),
        entry: name.display().to_string(),
        reason,
    };
    let rel = safe_relative(name).map_err(refuse)?;
    if rel.as_os_str().is_empty() {
        // "./" or "" names the root itself.
        return match kind {
            EntryKind::Dir => Ok(()),
            _ => Err(refuse("entry has an empty path".into())),
        };
    }
    if let EntryKind::Symlink(target) = &kind {
        check_symlink_target(&rel, target).map_err(refuse)?;
    }
    let path = prepare_target(root, &rel).map_err(refuse)?;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| DownloadError::io(parent, "create directory", e))?;
    }
    // A later entry with the same name replaces an earlier file (tar semantics).
    if let Ok(meta) = fs::symlink_metadata(&path) {
        if !meta.is_dir() {
            fs::remove_file(&path).map_err(|e| DownloadError::io(&path, "replace", e))?;
        } else if !matches!(kind, EntryKind::Dir) {
            return Err(refuse("a directory of that name already exists".into()));
        }
    }
    match kind {
        EntryKind::Dir => {
            fs::create_dir_all(&path).map_err(|e| DownloadError::io(&path, "create directory", e))
        }
        EntryKind::File { executable } => {
            let mode = if executable { 0o755 } else { 0o644 };
            // A new file, never opened through a symlink.
            let mut file = zccache_platform::fs::create_new_no_follow(&path, mode)
                .map_err(|e| DownloadError::io(&path, "create", e))?;
            io::copy(content, &mut file).map_err(|e| DownloadError::Archive {
                archive: archive.to_path_buf(),
                message: format!("extracting {}: {e}", name.display()),
            })?;
            // The umask may have removed bits; the executable bit must survive.
            zccache_platform::fs::set_mode(&file, mode)
                .map_err(|e| DownloadError::io(&path, "set permissions on", e))
        }
        EntryKind::Symlink(target) => zccache_platform::fs::symlink(&target, &path)
            .map_err(|e| DownloadError::io(&path, "create symlink", e)),
        EntryKind::Hardlink(target) => {
            let target_rel = safe_relative(&target)
                .map_err(|reason| refuse(format!("hardlink target: {reason}")))?;
            let source = prepare_target(root, &target_rel)
                .map_err(|reason| refuse(format!("hardlink target: {reason}")))?;
            match fs::symlink_metadata(&source) {
                Ok(meta) if meta.is_file() => fs::hard_link(&source, &path)
                    .map_err(|e| DownloadError::io(&path, "create hardlink", e)),
                _ => Err(refuse(format!(
                    "hardlink target {} is not an extracted regular file",
                    target.display()
                ))),
            }
        }
    }
}

fn extract_tar(archive: &Path, reader: impl Read, root: &Path) -> Result<(), DownloadError> {
    let bad = |e: io::Error| DownloadError::Archive {
        archive: archive.to_path_buf(),
        message: e.to_string(),
    };
    let mut tar = tar::Archive::new(reader);
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = zccache_platform::fs::path_from_bytes(&entry.path_bytes()).map_err(bad)?;
        let link = || -> Result<PathBuf, DownloadError> {
            match entry.link_name_bytes() {
                Some(bytes) => zccache_platform::fs::path_from_bytes(&bytes).map_err(bad),
                None => Ok(PathBuf::new()),
            }
        };
        let kind = match entry.header().entry_type() {
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File {
                executable: entry.header().mode().map_err(bad)? & 0o111 != 0,
            },
            tar::EntryType::Symlink => EntryKind::Symlink(link()?),
            tar::EntryType::Link => EntryKind::Hardlink(link()?),
            // Metadata records the tar crate did not fold into the next entry.
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            other => {
                return Err(DownloadError::UnsafeArchiveEntry {
                    archive: archive.to_path_buf(),
                    entry: name.display().to_string(),
                    reason: format!("unsupported entry type {other:?}"),
                })
            }
        };
        write_entry(archive, root, &name, kind, &mut entry)?;
    }
    Ok(())
}

fn extract_zip(archive: &Path, root: &Path) -> Result<(), DownloadError> {
    let bad = |message: String| DownloadError::Archive {
        archive: archive.to_path_buf(),
        message,
    };
    let file = fs::File::open(archive).map_err(|e| DownloadError::io(archive, "open", e))?;
    let mut zip = zip::ZipArchive::new(io::BufReader::new(file)).map_err(|e| bad(e.to_string()))?;
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(|e| bad(e.to_string()))?;
        let name = zccache_platform::fs::path_from_bytes(entry.name_raw())
            .map_err(|e| bad(e.to_string()))?;
        let mode = entry.unix_mode().unwrap_or(0);
        let kind = if mode & 0o170000 == 0o120000 {
            let mut target = Vec::new();
            entry
                .read_to_end(&mut target)
                .map_err(|e| bad(format!("reading symlink {}: {e}", name.display())))?;
            EntryKind::Symlink(
                zccache_platform::fs::path_from_bytes(&target).map_err(|e| bad(e.to_string()))?,
            )
        } else if entry.is_dir() {
            EntryKind::Dir
        } else {
            EntryKind::File {
                executable: mode & 0o111 != 0,
            }
        };
        write_entry(archive, root, &name, kind, &mut entry)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_name() {
        assert_eq!(
            ArchiveKind::from_path(Path::new("a.TGZ")),
            Some(ArchiveKind::TarGz)
        );
        assert_eq!(
            ArchiveKind::from_path(Path::new("a.tar.xz")),
            Some(ArchiveKind::TarXz)
        );
        assert_eq!(
            ArchiveKind::from_path(Path::new("a.tar.zst")),
            Some(ArchiveKind::TarZst)
        );
        assert_eq!(
            ArchiveKind::from_path(Path::new("a.tar")),
            Some(ArchiveKind::Tar)
        );
        assert_eq!(
            ArchiveKind::from_path(Path::new("a.zip")),
            Some(ArchiveKind::Zip)
        );
        assert_eq!(ArchiveKind::from_path(Path::new("a.gz")), None);
    }

    #[test]
    fn symlink_targets() {
        assert!(check_symlink_target(Path::new("bin/tool"), Path::new("../lib/x")).is_ok());
        assert!(check_symlink_target(Path::new("tool"), Path::new("../x")).is_err());
        assert!(check_symlink_target(Path::new("a/b"), Path::new("/etc")).is_err());
        assert!(check_symlink_target(Path::new("a/b"), Path::new("c/../../..")).is_err());
        assert!(check_symlink_target(Path::new("a/b"), Path::new("c/../d")).is_err());
    }

    #[test]
    fn relative_paths() {
        assert!(safe_relative(Path::new("../evil")).is_err());
        assert!(safe_relative(Path::new("/abs")).is_err());
        assert!(safe_relative(Path::new("a/../b")).is_err());
        assert_eq!(
            safe_relative(Path::new("./a/b")).unwrap(),
            PathBuf::from("a/b")
        );
    }
}
