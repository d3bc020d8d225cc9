//! Target snapshots: cargo's `target/` carried to the next CI run, so that cargo finds its
//! outputs and fingerprints together and runs no rustc for what did not change.
//!
//! Cargo decides freshness by modification times: a unit is fresh while its fingerprint is
//! newer than its sources and not older than its dependencies' outputs. A fresh checkout gives
//! every source the time of the checkout, so restoring the files alone would rebuild
//! everything. So the snapshot also records the content hash of every file of the workspace,
//! and restoring sets every target file to one time `T` in the past and every workspace file
//! whose content is unchanged to an hour before `T`; a changed file keeps its checkout time,
//! newer than `T`, and cargo rebuilds its crate and the crates that depend on it.
//!
//! `hot` snapshots keep cargo's freshness metadata and only the target files read or written
//! since the restore (access times move past the restore's time on any read, as both times of
//! every restored file are set to `T`); `full` keeps the whole pruned tree. Incremental
//! directories (and, when asked, build scripts' `out` directories) are removed first, and the
//! size is checked before anything is written.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{self, File, FileTimes};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Left in the target directory by a restore: when it happened and the time given to files.
pub const MARKER: &str = ".zccache-snapshot.json";

/// The archive member recording the workspace's files.
const SOURCES_MEMBER: &str = ".zccache-sources.json";

/// How far before the restore the target's files are dated; unchanged sources are dated
/// [`SOURCE_AGE`] before that.
const TARGET_AGE: Duration = Duration::from_secs(600);
const SOURCE_AGE: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub enum Error {
    Io {
        path: PathBuf,
        error: io::Error,
    },
    /// A member that would be written outside the target directory.
    Unsafe {
        archive: PathBuf,
        entry: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, error } => write!(f, "{}: {error}", path.display()),
            Error::Unsafe { archive, entry } => write!(
                f,
                "{}: member {entry:?} would be written outside the target directory; restore stopped",
                archive.display()
            ),
        }
    }
}

impl std::error::Error for Error {}

fn io_at(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
    move |error| Error::Io {
        path: path.to_path_buf(),
        error,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Hot,
    Full,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "hot" => Some(Mode::Hot),
            "full" => Some(Mode::Full),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SaveOptions {
    pub target_dir: PathBuf,
    pub workspace: PathBuf,
    pub mode: Mode,
    /// Uncompressed bytes; 0 for no limit.
    pub max_size: u64,
    pub prune_incremental: bool,
    pub prune_build_script_out: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    Written {
        files: u64,
        /// Bytes of the files, and of the archive.
        bytes: u64,
        archive_bytes: u64,
        /// Files of the tree left out (hot mode).
        left_out: u64,
    },
    TooLarge {
        bytes: u64,
        max: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    /// Nanoseconds since the epoch: when the restore ran, and the time given to the target.
    restored_ns: u128,
    target_ns: u128,
}

/// A workspace file as the snapshot saw it.
#[derive(Debug, Serialize, Deserialize)]
struct Source {
    path: String,
    size: u64,
    hash: String,
}

fn ns(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

fn time_of(ns: u128) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns.min(u64::MAX as u128) as u64)
}

/// The single time a restore gave the target's files, if this target was restored.
pub fn restored_time(target_dir: &Path) -> Option<SystemTime> {
    let marker: Marker = serde_json::from_slice(&fs::read(target_dir.join(MARKER)).ok()?).ok()?;
    Some(time_of(marker.target_ns))
}

/// Removes `incremental` directories (and build scripts' `out` directories) anywhere under
/// the target directory; returns the bytes freed.
fn prune(options: &SaveOptions) -> Result<u64, Error> {
    let mut doomed = Vec::new();
    let mut walk = walkdir::WalkDir::new(&options.target_dir).into_iter();
    while let Some(entry) = walk.next() {
        let Ok(entry) = entry else { continue };
        if !entry.file_type().is_dir() {
            continue;
        }
        let name = entry.file_name();
        let parent_is_build = entry
            .path()
            .parent()
            .and_then(|p| p.parent())
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == "build");
        if (options.prune_incremental && name == "incremental")
            || (options.prune_build_script_out && name == "out" && parent_is_build)
        {
            doomed.push(entry.path().to_path_buf());
            walk.skip_current_dir();
        }
    }
    let mut freed = 0;
    for dir in doomed {
        freed += walkdir::WalkDir::new(&dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum::<u64>();
        fs::remove_dir_all(&dir).map_err(io_at(&dir))?;
    }
    Ok(freed)
}

/// Cargo's freshness metadata: fingerprints, build script records, the rustc info cache.
fn is_metadata(relative: &Path) -> bool {
    let names: Vec<_> = relative.iter().collect();
    if names.iter().any(|n| *n == ".fingerprint") {
        return true;
    }
    let last = names
        .last()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if matches!(last.as_ref(), ".rustc_info.json" | "CACHEDIR.TAG") {
        return true;
    }
    // build/<unit>/{output,root-output,stderr,invoked.timestamp}
    names.len() >= 3
        && names[names.len() - 3] == "build"
        && matches!(
            last.as_ref(),
            "output" | "root-output" | "stderr" | "invoked.timestamp"
        )
}

/// Every regular file of the workspace but the target directory and `.git`, with its hash.
fn record_sources(workspace: &Path, target_dir: &Path) -> Vec<Source> {
    let target = fs::canonicalize(target_dir).unwrap_or_else(|_| target_dir.to_path_buf());
    let mut out = Vec::new();
    let walk = walkdir::WalkDir::new(workspace)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.file_name() != ".git" && fs::canonicalize(e.path()).map_or(true, |p| p != target)
        });
    for entry in walk.flatten() {
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(workspace) else {
            continue;
        };
        let Some(hash) = hash_file(entry.path()) else {
            continue;
        };
        out.push(Source {
            path: relative.to_string_lossy().into_owned(),
            size: entry.metadata().map(|m| m.len()).unwrap_or(0),
            hash,
        });
    }
    out
}

/// A file's content digest (hex), with the hashing the daemon uses.
fn hash_file(path: &Path) -> Option<String> {
    zccache_fscache::hash_file(path)
        .ok()
        .map(|(hash, _)| zccache_core::hex(&hash))
}

/// Prunes, selects and archives the target directory to `out` (tar + zstd).
pub fn save(options: &SaveOptions, out: &Path) -> Result<Saved, Error> {
    let target = &options.target_dir;
    prune(options)?;
    let restored = fs::read(target.join(MARKER))
        .ok()
        .and_then(|b| serde_json::from_slice::<Marker>(&b).ok())
        .map(|m| m.restored_ns);
    let mut files = Vec::new();
    let mut bytes = 0;
    let mut left_out = 0;
    for entry in walkdir::WalkDir::new(target).sort_by_file_name() {
        let entry = entry.map_err(|e| Error::Io {
            path: target.clone(),
            error: io::Error::other(e.to_string()),
        })?;
        if entry.file_type().is_dir() {
            continue;
        }
        let relative = entry
            .path()
            .strip_prefix(target)
            .expect("under target")
            .to_path_buf();
        if relative.as_os_str() == MARKER {
            continue;
        }
        let meta = entry.metadata().map_err(|e| Error::Io {
            path: entry.path().to_path_buf(),
            error: io::Error::other(e.to_string()),
        })?;
        let hot = |since: u128| {
            let stamp = zccache_platform::stamp::FileStamp::of(&meta);
            stamp.mtime_ns.max(0) as u128 >= since
                || stamp.atime_ns.max(0) as u128 >= since
                || is_metadata(&relative)
        };
        let keep = match (options.mode, restored) {
            (Mode::Hot, Some(since)) => hot(since),
            _ => true,
        };
        if !keep {
            left_out += 1;
            continue;
        }
        if meta.is_file() {
            bytes += meta.len();
        }
        files.push(relative);
    }
    if options.max_size > 0 && bytes > options.max_size {
        return Ok(Saved::TooLarge {
            bytes,
            max: options.max_size,
        });
    }
    let sources = record_sources(&options.workspace, target);
    let file = File::create(out).map_err(io_at(out))?;
    let encoder = zstd::Encoder::new(BufWriter::new(file), 3).map_err(io_at(out))?;
    let mut builder = tar::Builder::new(encoder);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    for relative in &files {
        let path = target.join(relative);
        builder
            .append_path_with_name(&path, relative)
            .map_err(io_at(&path))?;
    }
    let text = serde_json::to_vec(&sources).expect("serializes");
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, SOURCES_MEMBER, &text[..])
        .map_err(io_at(out))?;
    let encoder = builder.into_inner().map_err(io_at(out))?;
    let writer = encoder.finish().map_err(io_at(out))?;
    writer
        .into_inner()
        .map_err(|e| Error::Io {
            path: out.to_path_buf(),
            error: e.into_error(),
        })?
        .sync_all()
        .map_err(io_at(out))?;
    Ok(Saved::Written {
        files: files.len() as u64,
        bytes,
        archive_bytes: fs::metadata(out).map(|m| m.len()).unwrap_or(0),
        left_out,
    })
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    pub files: u64,
    /// Workspace files found unchanged (dated before the target) and changed (left as they
    /// are, so cargo rebuilds what uses them).
    pub unchanged: u64,
    pub changed: u64,
}

fn set_times(path: &Path, time: SystemTime) -> io::Result<()> {
    File::options()
        .write(true)
        .open(path)
        .or_else(|_| File::open(path))?
        .set_times(FileTimes::new().set_accessed(time).set_modified(time))
}

/// Unpacks a snapshot into the target directory and dates target and workspace files as the
/// module explains.
pub fn restore(archive: &Path, target_dir: &Path, workspace: &Path) -> Result<Restored, Error> {
    fs::create_dir_all(target_dir).map_err(io_at(target_dir))?;
    let file = File::open(archive).map_err(io_at(archive))?;
    let decoder = zstd::Decoder::new(file).map_err(io_at(archive))?;
    let mut tar = tar::Archive::new(decoder);
    tar.set_preserve_permissions(true);
    tar.set_overwrite(true);
    let mut sources: Vec<Source> = Vec::new();
    let mut restored = Restored::default();
    for entry in tar.entries().map_err(io_at(archive))? {
        let mut entry = entry.map_err(io_at(archive))?;
        let name = entry.path().map_err(io_at(archive))?.into_owned();
        if name.as_os_str() == SOURCES_MEMBER {
            let mut text = Vec::new();
            entry.read_to_end(&mut text).map_err(io_at(archive))?;
            sources = serde_json::from_slice(&text).unwrap_or_default();
            continue;
        }
        // `unpack_in` refuses `..` and writing through a link out of the target directory.
        let inside = entry.unpack_in(target_dir).map_err(io_at(target_dir))?;
        if !inside {
            return Err(Error::Unsafe {
                archive: archive.to_path_buf(),
                entry: name.to_string_lossy().into_owned(),
            });
        }
        restored.files += 1;
    }
    let now = SystemTime::now();
    let target_time = now - TARGET_AGE;
    for entry in walkdir::WalkDir::new(target_dir).into_iter().flatten() {
        if entry.file_type().is_file() {
            set_times(entry.path(), target_time).map_err(io_at(entry.path()))?;
        }
    }
    let source_time = target_time - SOURCE_AGE;
    for source in &sources {
        let path = workspace.join(&source.path);
        let same = fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == source.size)
            && hash_file(&path).as_deref() == Some(source.hash.as_str());
        if same {
            set_times(&path, source_time).map_err(io_at(&path))?;
            restored.unchanged += 1;
        } else {
            restored.changed += 1;
        }
    }
    let marker = Marker {
        restored_ns: ns(now),
        target_ns: ns(target_time),
    };
    let path = target_dir.join(MARKER);
    fs::write(&path, serde_json::to_vec(&marker).expect("serializes")).map_err(io_at(&path))?;
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_fingerprints_build_records_and_rustc_info() {
        assert!(is_metadata(Path::new("debug/.fingerprint/app-1/lib-app")));
        assert!(is_metadata(Path::new("debug/build/app-1/output")));
        assert!(is_metadata(Path::new(".rustc_info.json")));
        assert!(!is_metadata(Path::new("debug/deps/libapp-1.rlib")));
        assert!(!is_metadata(Path::new("debug/build/app-1/out/gen.rs")));
    }

    fn options(tmp: &Path, mode: Mode) -> SaveOptions {
        SaveOptions {
            target_dir: tmp.join("ws/target"),
            workspace: tmp.join("ws"),
            mode,
            max_size: 0,
            prune_incremental: true,
            prune_build_script_out: false,
        }
    }

    #[test]
    fn restore_dates_unchanged_sources_before_the_target_and_changed_ones_after() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        fs::create_dir_all(ws.join("src")).unwrap();
        fs::create_dir_all(ws.join("target/debug/deps")).unwrap();
        fs::create_dir_all(ws.join("target/debug/incremental/app-1")).unwrap();
        fs::write(ws.join("src/lib.rs"), "pub fn a() {}").unwrap();
        fs::write(ws.join("src/main.rs"), "fn main() {}").unwrap();
        fs::write(ws.join("target/debug/deps/libapp-1.rlib"), "rlib").unwrap();
        fs::write(ws.join("target/debug/incremental/app-1/x"), "big").unwrap();
        let archive = tmp.path().join("snap.tzst");
        let saved = save(&options(tmp.path(), Mode::Full), &archive).unwrap();
        assert!(
            matches!(saved, Saved::Written { files: 1, .. }),
            "{saved:?}"
        );
        assert!(!ws.join("target/debug/incremental").exists());

        // A new runner: fresh checkout (one file edited), no target.
        fs::remove_dir_all(ws.join("target")).unwrap();
        fs::write(ws.join("src/main.rs"), "fn main() { a() }").unwrap();
        let restored = restore(&archive, &ws.join("target"), &ws).unwrap();
        assert_eq!(
            (restored.files, restored.unchanged, restored.changed),
            (1, 1, 1)
        );
        let mtime = |p: &str| fs::metadata(ws.join(p)).unwrap().modified().unwrap();
        let target = mtime("target/debug/deps/libapp-1.rlib");
        assert!(mtime("src/lib.rs") < target);
        assert!(mtime("src/main.rs") > target);
        assert_eq!(restored_time(&ws.join("target")), Some(target));
    }

    #[test]
    fn hot_snapshots_keep_metadata_and_what_was_used_and_big_ones_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        fs::create_dir_all(ws.join("target/debug/deps")).unwrap();
        fs::create_dir_all(ws.join("target/debug/.fingerprint/old-1")).unwrap();
        fs::write(ws.join("target/debug/deps/libold-1.rlib"), "old").unwrap();
        fs::write(ws.join("target/debug/deps/libused-1.rlib"), "used").unwrap();
        fs::write(ws.join("target/debug/.fingerprint/old-1/lib-old"), "fp").unwrap();
        let archive = tmp.path().join("snap.tzst");
        save(&options(tmp.path(), Mode::Full), &archive).unwrap();
        fs::remove_dir_all(ws.join("target")).unwrap();
        restore(&archive, &ws.join("target"), &ws).unwrap();
        // During the job: one rlib read, one file written.
        let mut text = String::new();
        File::open(ws.join("target/debug/deps/libused-1.rlib"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        fs::write(ws.join("target/debug/deps/libnew-1.rlib"), "new").unwrap();
        let hot = tmp.path().join("hot.tzst");
        let saved = save(&options(tmp.path(), Mode::Hot), &hot).unwrap();
        let Saved::Written {
            files, left_out, ..
        } = saved
        else {
            panic!("{saved:?}")
        };
        // used, new, the fingerprint; not old's rlib (the file system updates access times:
        // relatime, the default).
        assert_eq!((files, left_out), (3, 1));
        let mut small = options(tmp.path(), Mode::Full);
        small.max_size = 5;
        assert!(matches!(
            save(&small, &tmp.path().join("x.tzst")).unwrap(),
            Saved::TooLarge { max: 5, .. }
        ));
        assert!(!tmp.path().join("x.tzst").exists());
    }
}
