//! The archive of a cache entry, laid out as `@actions/cache` lays out its own so that either
//! restores what the other saved: a zstd-compressed tar whose member names are the cached paths
//! relative to the workspace (`$GITHUB_WORKSPACE`, else the current directory), so a path
//! outside it begins with `../`. The entry's version is the SHA-256 of the paths as given, the
//! compression method and a salt, joined by `|`.
//!
//! Unpacking never writes outside the paths asked for: every member must lie under one of
//! them (after the `../` of its name is resolved against the workspace), with no `..` of its
//! own below that path and no link on the way out of it.

use super::GhaError;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read};
use std::path::{Component, Path, PathBuf};

/// The compression method `@actions/cache` names in the version when zstd is installed.
pub const COMPRESSION: &str = "zstd-without-long";

/// `@actions/cache`'s version salt.
const VERSION_SALT: &str = "1.0";

/// The entry version `@actions/cache` computes for `paths` (as the workflow wrote them) with
/// zstd: restores match only entries saved with the same paths.
pub fn version(paths: &[String]) -> String {
    let mut parts: Vec<&str> = paths.iter().map(String::as_str).collect();
    parts.push(COMPRESSION);
    if cfg!(windows) {
        parts.push("windows-only");
    }
    parts.push(VERSION_SALT);
    sha256_hex(&parts.join("|"))
}

/// The SHA-256 of `text`, as lowercase hex (the cache service's version strings).
pub(crate) fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `path` as an absolute, lexically normal path: `~` is `$HOME`, relative paths start at `cwd`.
pub fn resolve(path: &str, cwd: &Path) -> PathBuf {
    let expanded = match (path.strip_prefix('~'), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            PathBuf::from(home).join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(path),
    };
    normalize(&cwd.join(expanded))
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `to` relative to `from` (both absolute and normal), `/`-separated; `.` when equal.
fn relative(from: &Path, to: &Path) -> String {
    let a: Vec<_> = from.components().collect();
    let b: Vec<_> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".to_string(); a.len() - common];
    parts.extend(
        b[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

/// A cached path: where it is and the name its members carry in the archive.
struct Root {
    path: PathBuf,
    member: String,
}

fn roots(paths: &[String], workspace: &Path, cwd: &Path) -> Vec<Root> {
    paths
        .iter()
        .map(|p| {
            let path = resolve(p, cwd);
            Root {
                member: relative(workspace, &path),
                path,
            }
        })
        .collect()
}

/// What a pack holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Packed {
    pub entries: u64,
    pub bytes: u64,
}

/// Writes the archive of `paths` to `out`. Paths that do not exist are left out; none existing
/// is an error, as for `@actions/cache`.
pub fn pack(
    paths: &[String],
    workspace: &Path,
    cwd: &Path,
    out: &Path,
) -> Result<Packed, GhaError> {
    let roots: Vec<Root> = roots(paths, workspace, cwd)
        .into_iter()
        .filter(|r| r.path.symlink_metadata().is_ok())
        .collect();
    if roots.is_empty() {
        return Err(GhaError::Input(format!(
            "none of the paths to cache exists: {}",
            paths.join(", ")
        )));
    }
    let file = File::create(out).map_err(|e| GhaError::io(out, e))?;
    let encoder = zstd::Encoder::new(BufWriter::new(file), 3).map_err(|e| GhaError::io(out, e))?;
    let mut builder = tar::Builder::new(encoder);
    let mut packed = Packed::default();
    for root in &roots {
        for entry in walkdir::WalkDir::new(&root.path).sort_by_file_name() {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(&root.path).to_path_buf();
                GhaError::io(
                    &path,
                    e.into_io_error()
                        .unwrap_or_else(|| io::Error::other("file system loop")),
                )
            })?;
            let below = entry
                .path()
                .strip_prefix(&root.path)
                .expect("walkdir stays under its root");
            let mut name = root.member.clone();
            if !below.as_os_str().is_empty() {
                name = format!("{name}/{}", below.to_string_lossy());
            }
            append(&mut builder, entry.path(), &name).map_err(|e| GhaError::io(entry.path(), e))?;
            packed.entries += 1;
            if entry.file_type().is_file() {
                packed.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    let encoder = builder.into_inner().map_err(|e| GhaError::io(out, e))?;
    let mut writer = encoder.finish().map_err(|e| GhaError::io(out, e))?;
    io::Write::flush(&mut writer).map_err(|e| GhaError::io(out, e))?;
    writer
        .into_inner()
        .map_err(|e| GhaError::io(out, e.into_error()))?
        .sync_all()
        .map_err(|e| GhaError::io(out, e))?;
    Ok(packed)
}

/// Appends `path` under `name`, written as given: the tar crate refuses the `../` that
/// `@actions/cache` names paths outside the workspace with, so the header is filled by hand
/// (a GNU long-name record first when the name or link target is too long for it).
fn append<W: io::Write>(builder: &mut tar::Builder<W>, path: &Path, name: &str) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
    let mut name = name.as_bytes().to_vec();
    if meta.is_dir() {
        name.push(b'/');
    }
    long_record(builder, tar::EntryType::GNULongName, &name)?;
    let short = &name[..name.len().min(100)];
    let old = header.as_old_mut();
    old.name = [0; 100];
    old.name[..short.len()].copy_from_slice(short);
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path)?;
        let target = target.as_os_str().as_encoded_bytes();
        long_record(builder, tar::EntryType::GNULongLink, target)?;
        let short = &target[..target.len().min(100)];
        let old = header.as_old_mut();
        old.linkname = [0; 100];
        old.linkname[..short.len()].copy_from_slice(short);
        header.set_size(0);
        header.set_cksum();
        builder.append(&header, io::empty())
    } else if meta.is_file() {
        header.set_cksum();
        builder.append(&header, File::open(path)?)
    } else {
        header.set_size(0);
        header.set_cksum();
        builder.append(&header, io::empty())
    }
}

/// The GNU record carrying a name or link target longer than a header holds.
fn long_record<W: io::Write>(
    builder: &mut tar::Builder<W>,
    kind: tar::EntryType,
    text: &[u8],
) -> io::Result<()> {
    if text.len() < 100 {
        return Ok(());
    }
    let mut header = tar::Header::new_gnu();
    let marker = b"././@LongLink";
    header.as_old_mut().name[..marker.len()].copy_from_slice(marker);
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(text.len() as u64 + 1);
    header.set_cksum();
    builder.append(&header, text.chain(&[0u8][..]))
}

/// Opens an archive, zstd or gzip by its first bytes.
fn open(archive: &Path) -> Result<Box<dyn Read>, GhaError> {
    let mut file = BufReader::new(File::open(archive).map_err(|e| GhaError::io(archive, e))?);
    let head = io::BufRead::fill_buf(&mut file).map_err(|e| GhaError::io(archive, e))?;
    Ok(match head {
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            let mut decoder =
                zstd::Decoder::with_buffer(file).map_err(|e| GhaError::io(archive, e))?;
            // Archives made with zstd --long=30.
            decoder
                .window_log_max(31)
                .map_err(|e| GhaError::io(archive, e))?;
            Box::new(decoder)
        }
        [0x1f, 0x8b, ..] => Box::new(flate2::bufread::GzDecoder::new(file)),
        _ => Box::new(file),
    })
}

/// Where member `name` goes: under the root whose member name it starts with, never above it.
fn destination(roots: &[Root], name: &str) -> Option<PathBuf> {
    let name = name.trim_start_matches("./").trim_end_matches('/');
    for root in roots {
        let rest = if name == root.member {
            ""
        } else if let Some(rest) = name.strip_prefix(&format!("{}/", root.member)) {
            rest
        } else if root.member == "." {
            name
        } else {
            continue;
        };
        let below = Path::new(rest);
        if below
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Some(root.path.join(below));
        }
        return None;
    }
    None
}

/// `dest`'s parent exists and, links resolved, is still inside `root`.
fn parent_inside(root: &Path, dest: &Path) -> io::Result<bool> {
    let parent = dest.parent().unwrap_or(root);
    fs::create_dir_all(parent)?;
    let real_root = fs::canonicalize(root)?;
    Ok(fs::canonicalize(parent)?.starts_with(real_root))
}

/// Unpacks `archive` into `paths` (as given to [`pack`]); returns the number of members.
pub fn unpack(
    archive: &Path,
    paths: &[String],
    workspace: &Path,
    cwd: &Path,
) -> Result<u64, GhaError> {
    let roots = roots(paths, workspace, cwd);
    let mut tar = tar::Archive::new(open(archive)?);
    tar.set_preserve_mtime(true);
    tar.set_preserve_permissions(true);
    tar.set_overwrite(true);
    let unsafe_entry = |name: &str| GhaError::Unsafe {
        archive: archive.to_path_buf(),
        entry: name.to_string(),
    };
    let mut count = 0;
    for entry in tar.entries().map_err(|e| GhaError::io(archive, e))? {
        let mut entry = entry.map_err(|e| GhaError::io(archive, e))?;
        let name = entry
            .path()
            .map_err(|e| GhaError::io(archive, e))?
            .to_string_lossy()
            .into_owned();
        let Some(dest) = destination(&roots, &name) else {
            return Err(unsafe_entry(&name));
        };
        let root = roots
            .iter()
            .find(|r| dest.starts_with(&r.path))
            .map(|r| r.path.clone())
            .unwrap_or_default();
        if dest != root && !parent_inside(&root, &dest).map_err(|e| GhaError::io(&dest, e))? {
            return Err(unsafe_entry(&name));
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                fs::create_dir_all(&dest).map_err(|e| GhaError::io(&dest, e))?;
            }
            tar::EntryType::Link => {
                // A hard link names another member: it must map inside as well.
                let target = entry
                    .link_name()
                    .map_err(|e| GhaError::io(archive, e))?
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let Some(target) = destination(&roots, &target) else {
                    return Err(unsafe_entry(&name));
                };
                let _ = fs::remove_file(&dest);
                fs::hard_link(&target, &dest).map_err(|e| GhaError::io(&dest, e))?;
            }
            _ => {
                entry.unpack(&dest).map_err(|e| GhaError::io(&dest, e))?;
            }
        }
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_named_relative_to_the_workspace() {
        let ws = Path::new("/home/runner/work/r/r");
        assert_eq!(
            relative(ws, Path::new("/home/runner/work/r/r/target")),
            "target"
        );
        assert_eq!(relative(ws, ws), ".");
        assert_eq!(
            relative(ws, Path::new("/home/runner/.cargo/registry")),
            "../../../.cargo/registry"
        );
        assert_eq!(
            resolve("a/../b/./c", Path::new("/w")),
            PathBuf::from("/w/b/c")
        );
    }

    #[test]
    fn a_member_outside_the_paths_asked_for_has_no_destination() {
        let roots = roots(&["out".to_string()], Path::new("/w"), Path::new("/w"));
        assert_eq!(
            destination(&roots, "out/a/b"),
            Some(PathBuf::from("/w/out/a/b"))
        );
        assert_eq!(destination(&roots, "out"), Some(PathBuf::from("/w/out")));
        assert_eq!(destination(&roots, "out/../etc/passwd"), None);
        assert_eq!(destination(&roots, "outside/x"), None);
        assert_eq!(destination(&roots, "../x"), None);
        assert_eq!(destination(&roots, "/etc/passwd"), None);
    }

    #[test]
    fn the_version_is_the_hash_of_paths_method_and_salt() {
        // sha256("target|zstd-without-long|1.0")
        let expected: String = Sha256::digest(b"target|zstd-without-long|1.0")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(version(&["target".to_string()]), expected);
    }

    #[cfg(unix)] // symlinks and modes as Unix keeps them
    #[test]
    fn pack_then_unpack_restores_files_links_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        let data = tmp.path().join("data");
        fs::create_dir_all(ws.join("out/sub")).unwrap();
        fs::create_dir_all(&data).unwrap();
        fs::write(ws.join("out/sub/a.txt"), b"alpha").unwrap();
        fs::write(ws.join("out/run.sh"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(ws.join("out/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("sub/a.txt", ws.join("out/link")).unwrap();
        fs::write(data.join("b.bin"), vec![7u8; 100_000]).unwrap();
        // Names and link targets longer than a tar header holds.
        let long = "n".repeat(120);
        fs::write(ws.join("out/sub").join(&long), b"long").unwrap();
        std::os::unix::fs::symlink(format!("sub/{long}"), ws.join("out/longlink")).unwrap();
        let paths = vec!["out".to_string(), data.to_string_lossy().into_owned()];
        let archive = tmp.path().join("a.tzst");
        let packed = pack(&paths, &ws, &ws, &archive).unwrap();
        assert_eq!(packed.entries, 9);
        fs::remove_dir_all(ws.join("out")).unwrap();
        fs::remove_dir_all(&data).unwrap();
        assert_eq!(unpack(&archive, &paths, &ws, &ws).unwrap(), 9);
        assert_eq!(fs::read(ws.join("out/sub").join(&long)).unwrap(), b"long");
        assert_eq!(
            fs::read_link(ws.join("out/longlink")).unwrap(),
            Path::new(&format!("sub/{long}"))
        );
        assert_eq!(fs::read(ws.join("out/sub/a.txt")).unwrap(), b"alpha");
        assert_eq!(fs::read(data.join("b.bin")).unwrap(), vec![7u8; 100_000]);
        assert_eq!(
            fs::read_link(ws.join("out/link")).unwrap(),
            Path::new("sub/a.txt")
        );
        let mode = fs::metadata(ws.join("out/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        // Unpacking into only one of the two paths refuses the other's members.
        let err = unpack(&archive, &paths[..1], &ws, &ws).unwrap_err();
        assert!(matches!(err, GhaError::Unsafe { .. }), "{err}");
    }

    #[test]
    fn a_member_written_through_a_link_out_of_the_path_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(ws.join("out")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        // An archive holding out/esc -> ../../outside, then out/esc/owned.
        let archive = tmp.path().join("evil.tar");
        {
            let mut builder = tar::Builder::new(File::create(&archive).unwrap());
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder
                .append_link(&mut header, "out/esc", &outside)
                .unwrap();
            let mut header = tar::Header::new_gnu();
            header.set_size(3);
            header.set_mode(0o644);
            builder
                .append_data(&mut header, "out/esc/owned", &b"bad"[..])
                .unwrap();
            builder.finish().unwrap();
        }
        let err = unpack(&archive, &["out".to_string()], &ws, &ws).unwrap_err();
        assert!(matches!(err, GhaError::Unsafe { .. }), "{err}");
        assert!(!outside.join("owned").exists());
    }
}
