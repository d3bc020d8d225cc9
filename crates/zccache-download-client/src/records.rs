//! What the download daemon remembers about each published file: where it came from, its
//! sha256, and the size and mtime it had, so that a later fetch of the same URL to the same
//! path is answered without a transfer, and an edited or replaced file is not trusted.
//! One small JSON file per destination under `<root>/download/records/`.

use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use zccache_core::CacheRoot;

use crate::types::{FetchState, StateKind};

/// A published download.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub source_url: String,
    pub part_urls: Vec<String>,
    pub destination: PathBuf,
    pub sha256: String,
    pub stamp: Stamp,
    /// The directory it was last unpacked into, and the stamp of that directory then.
    pub expanded: Option<(PathBuf, Stamp)>,
}

/// Size, modification time and identity (inode) of a file or directory: enough to notice that it was
/// replaced or rewritten since it was recorded.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub len: u64,
    pub mtime_ns: i64,
    pub ino: u64,
}

impl Stamp {
    /// The stamp of `path` now, `None` if it does not exist.
    pub fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        let stamp = zccache_platform::stamp::FileStamp::of(&meta);
        Some(Stamp {
            len: if meta.is_dir() { 0 } else { meta.len() },
            mtime_ns: stamp.mtime_ns as i64,
            ino: stamp.ino,
        })
    }
}

impl Record {
    /// Whether this record describes the download of `source_url` / `part_urls`.
    pub fn is_from(&self, source_url: &str, part_urls: &[String]) -> bool {
        self.part_urls == part_urls && (!part_urls.is_empty() || self.source_url == source_url)
    }

    /// Whether the file on disk is still the one recorded.
    pub fn file_unchanged(&self) -> bool {
        Stamp::of(&self.destination) == Some(self.stamp)
    }

    /// Whether `dir` still holds what this file was unpacked into.
    pub fn expanded_into(&self, dir: &Path) -> bool {
        matches!(&self.expanded, Some((path, stamp)) if path == dir && Stamp::of(dir) == Some(*stamp))
    }
}

/// The record file for `destination`.
pub fn record_path(root: &CacheRoot, destination: &Path) -> PathBuf {
    let digest = blake3::hash(destination.as_os_str().as_encoded_bytes());
    let name: String = digest.as_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    root.download_dir()
        .join("records")
        .join(format!("{name}.json"))
}

/// The record of `destination`, if one was kept and can be read.
pub fn load(root: &CacheRoot, destination: &Path) -> Option<Record> {
    let text = std::fs::read(record_path(root, destination)).ok()?;
    let record: Record = serde_json::from_slice(&text).ok()?;
    (record.destination == destination).then_some(record)
}

/// Writes `record` atomically (a reader sees the old or the new one, never half).
pub fn save(root: &CacheRoot, record: &Record) -> io::Result<()> {
    let path = record_path(root, &record.destination);
    let dir = path.parent().expect("record files live in a directory");
    zccache_core::make_private_dir(dir).map_err(|e| io::Error::other(e.to_string()))?;
    let mut tmp = tempfile_in(dir)?;
    serde_json::to_writer(&mut tmp.0, record).map_err(io::Error::other)?;
    std::fs::rename(&tmp.1, &path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp.1);
    })
}

/// Forgets `destination` (its file is being replaced).
pub fn remove(root: &CacheRoot, destination: &Path) {
    let _ = std::fs::remove_file(record_path(root, destination));
}

fn tempfile_in(dir: &Path) -> io::Result<(std::fs::File, PathBuf)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    Ok((std::fs::File::create(&path)?, path))
}

/// What is at `destination` for a download of `source_url`, from the files alone (the daemon
/// adds [`StateKind::Downloading`] for a transfer it runs).
pub fn state(root: &CacheRoot, source_url: &str, destination: &Path) -> FetchState {
    let answer = |kind, reason: String, sha256: Option<String>, bytes| FetchState {
        kind,
        reason,
        cache_path: destination.to_path_buf(),
        sha256,
        bytes,
    };
    let present = Stamp::of(destination);
    match (load(root, destination), present) {
        (Some(record), Some(stamp))
            if !record.part_urls.is_empty() || record.source_url == source_url =>
        {
            if record.file_unchanged() {
                answer(
                    StateKind::Cached,
                    format!("downloaded from {source_url} and unchanged since"),
                    Some(record.sha256),
                    Some(stamp.len),
                )
            } else {
                answer(
                    StateKind::Stale,
                    "the file changed since it was downloaded".into(),
                    None,
                    Some(stamp.len),
                )
            }
        }
        (Some(record), Some(stamp)) => answer(
            StateKind::Stale,
            format!(
                "the file there was downloaded from {}, not from this URL",
                record.source_url
            ),
            None,
            Some(stamp.len),
        ),
        (None, Some(stamp)) => answer(
            StateKind::Stale,
            "a file is there, but no download of it was recorded".into(),
            None,
            Some(stamp.len),
        ),
        (_, None) => {
            let mut part = destination.as_os_str().to_owned();
            part.push(".part");
            match Stamp::of(Path::new(&part)) {
                Some(partial) => answer(
                    StateKind::Partial,
                    "an interrupted download is there; a fetch resumes it".into(),
                    None,
                    Some(partial.len),
                ),
                None => answer(StateKind::Absent, "nothing is there".into(), None, None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_file_is_cached_until_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = CacheRoot::new(dir.path().join("root"));
        let dest = dir.path().join("a.bin");
        let url = "http://127.0.0.1:1/a.bin";
        assert_eq!(state(&root, url, &dest).kind, StateKind::Absent);
        std::fs::write(&dest, b"hello").unwrap();
        assert_eq!(state(&root, url, &dest).kind, StateKind::Stale);
        let record = Record {
            source_url: url.into(),
            part_urls: vec![],
            destination: dest.clone(),
            sha256: "ab".into(),
            stamp: Stamp::of(&dest).unwrap(),
            expanded: None,
        };
        save(&root, &record).unwrap();
        let cached = state(&root, url, &dest);
        assert_eq!(cached.kind, StateKind::Cached);
        assert_eq!(cached.sha256.as_deref(), Some("ab"));
        assert_eq!(
            state(&root, "http://127.0.0.1:1/other", &dest).kind,
            StateKind::Stale
        );
        std::fs::remove_file(&dest).unwrap();
        std::fs::write(&dest, b"other").unwrap();
        assert_eq!(state(&root, url, &dest).kind, StateKind::Stale);
        std::fs::remove_file(&dest).unwrap();
        std::fs::write(dir.path().join("a.bin.part"), b"he").unwrap();
        let partial = state(&root, url, &dest);
        assert_eq!((partial.kind, partial.bytes), (StateKind::Partial, Some(2)));
    }
}
