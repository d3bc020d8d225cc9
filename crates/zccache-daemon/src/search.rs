//! Which files, had they existed, would have been included instead of the ones that were.
//!
//! Direct mode keys a result on the headers a compile used. A header created later in a
//! directory searched *earlier* would shadow one of them without changing any of them. The
//! would-be paths ("candidates") are many — every header times every earlier directory — so an
//! entry does not list them: it records the directories whose listings decide that they are
//! absent (for each candidate, its deepest existing ancestor) with their stat signatures. A hit
//! re-stats those few directories; only when one has changed are the candidates under it
//! derived again (from the search path and the dependencies, both stored) and checked one by
//! one. Directory timestamps follow the same trust rule as file digests: a directory changed
//! within the safety margin of the store is always re-checked.

use crate::paths::absolute;
use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use zccache_artifact::{DirStamp, ShadowCheck, WatchedDir};
use zccache_fscache::StatSig;

/// A compile's include search path as written, split where system directories begin.
#[derive(Debug, Default, Clone)]
pub struct SearchPath {
    /// `-iquote`, `-I`, `CPATH`: searched first, in this order.
    pub user: Vec<PathBuf>,
    /// `-isystem`, `C_INCLUDE_PATH`..., the compiler's own directories, `-idirafter`.
    pub system: Vec<PathBuf>,
}

/// Every path that would shadow one of `deps` if it existed, as written (relative to the cwd
/// unless absolute) and absolute. `user` starts with the source's directory (searched first for
/// `#include "..."`).
///
/// Only candidates under a directory for which `wanted` is true are produced: a hit re-derives
/// just those below directories that changed.
fn candidates(
    user: &[PathBuf],
    system: &[PathBuf],
    cwd: &Path,
    deps: &[PathBuf],
    wanted: &dyn Fn(&Path) -> bool,
) -> Vec<(PathBuf, PathBuf)> {
    let system_abs: Vec<PathBuf> = system.iter().map(|d| absolute(cwd, d)).collect();
    let is_system = |path: &Path| system_abs.iter().any(|dir| path.starts_with(dir));
    let dir_of = |p: &Path| match p.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut ordered: Vec<(PathBuf, PathBuf)> = Vec::new();
    for dir in user.iter().chain(system.iter()) {
        let abs = absolute(cwd, dir);
        if !ordered.iter().any(|(_, a)| *a == abs) {
            ordered.push((dir.clone(), abs));
        }
    }
    // A "..." include in a header first searches that header's own directory, so for user
    // headers every other user header's directory may also come first.
    let mut includers: Vec<(PathBuf, PathBuf)> = Vec::new();
    for dep in deps {
        let abs = absolute(cwd, dep);
        if !is_system(&abs) {
            let dir = (dir_of(dep), dir_of(&abs));
            if !includers.iter().any(|(_, a)| *a == dir.1) {
                includers.push(dir);
            }
        }
    }
    let dep_abs: HashSet<PathBuf> = deps.iter().map(|d| absolute(cwd, d)).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut push = |written: PathBuf, abs: PathBuf| {
        if !dep_abs.contains(&abs) && seen.insert(abs.clone()) {
            out.push((written, abs));
        }
    };
    for dep in deps {
        let abs = absolute(cwd, dep);
        let system = is_system(&abs);
        let own_dir = dir_of(&abs);
        for (k, (_, dir_abs)) in ordered.iter().enumerate() {
            let Ok(rel) = abs.strip_prefix(dir_abs) else {
                continue;
            };
            if system && !system_abs.contains(dir_abs) {
                // A system header was found through a system directory, not one that merely
                // happens to contain it.
                continue;
            }
            for (written, earlier) in &ordered[..k] {
                if wanted(earlier) {
                    push(written.join(rel), earlier.join(rel));
                }
            }
            if system {
                // ...and through the first system directory that holds it.
                break;
            }
            for (written, includer) in &includers {
                if *includer != own_dir && wanted(includer) {
                    push(written.join(rel), includer.join(rel));
                }
            }
        }
    }
    out
}

/// What a stored entry needs to check shadowing later: the search path, and the directories
/// whose listings keep every candidate absent, stamped now.
pub fn shadow_check(
    search: &SearchPath,
    cwd: &Path,
    source: &Path,
    deps: &[PathBuf],
) -> ShadowCheck {
    let source_dir = match source.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut user = vec![source_dir];
    user.extend(search.user.iter().cloned());
    let stamped_at = SystemTime::now();
    let mut exists: HashMap<PathBuf, bool> = HashMap::new();
    let mut exists = |path: &Path| -> bool {
        *exists
            .entry(path.to_path_buf())
            .or_insert_with(|| std::fs::symlink_metadata(path).is_ok())
    };
    let mut watched: HashSet<PathBuf> = HashSet::new();
    let mut existing: Vec<Vec<u8>> = Vec::new();
    for (written, candidate) in candidates(&user, &search.system, cwd, deps, &|_| true) {
        if exists(&candidate) {
            // Not a real alternative (the compiler passed it by for another file), but it is
            // remembered so that only new files count as shadowing.
            existing.push(written.as_os_str().as_bytes().to_vec());
            continue;
        }
        let mut ancestor = candidate.parent();
        while let Some(dir) = ancestor {
            if exists(dir) {
                watched.insert(dir.to_path_buf());
                break;
            }
            ancestor = dir.parent();
        }
    }
    let mut watched: Vec<WatchedDir> = watched
        .into_iter()
        .map(|dir| WatchedDir {
            stamp: stamp(&dir, stamped_at),
            path: dir.as_os_str().as_bytes().to_vec(),
        })
        .collect();
    watched.sort_by(|a, b| a.path.cmp(&b.path));
    ShadowCheck {
        cwd: cwd.as_os_str().as_bytes().to_vec(),
        user: user
            .iter()
            .map(|d| d.as_os_str().as_bytes().to_vec())
            .collect(),
        system: search
            .system
            .iter()
            .map(|d| d.as_os_str().as_bytes().to_vec())
            .collect(),
        watched,
        existing,
    }
}

/// A directory's signature, if it is old enough to be trusted (see the module docs).
fn stamp(dir: &Path, now: SystemTime) -> Option<DirStamp> {
    let sig = StatSig::of(dir).ok()?;
    (!sig.touched_since(now)).then_some(DirStamp {
        ino: sig.ino,
        size: sig.size,
        mtime_ns: sig.mtime_ns,
        ctime_ns: sig.ctime_ns,
    })
}

/// True while no file that would shadow a dependency exists, for a call in `cwd`.
pub fn no_shadowing(check: &ShadowCheck, cwd: &Path, deps: &[PathBuf]) -> bool {
    let bytes_path = |b: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(b));
    let same_cwd = check.cwd == cwd.as_os_str().as_bytes();
    let mut changed: Vec<PathBuf> = Vec::new();
    if same_cwd {
        for dir in &check.watched {
            let path = bytes_path(&dir.path);
            let now = StatSig::of(&path).ok().map(|sig| DirStamp {
                ino: sig.ino,
                size: sig.size,
                mtime_ns: sig.mtime_ns,
                ctime_ns: sig.ctime_ns,
            });
            match (&dir.stamp, now) {
                // The directory is gone: nothing can have appeared under it.
                (_, None) => {}
                (Some(then), Some(now)) if *then == now => {}
                _ => changed.push(path),
            }
        }
        if changed.is_empty() {
            return true;
        }
    }
    let user: Vec<PathBuf> = check.user.iter().map(|d| bytes_path(d)).collect();
    let system: Vec<PathBuf> = check.system.iter().map(|d| bytes_path(d)).collect();
    let existed: HashSet<&[u8]> = check.existing.iter().map(Vec::as_slice).collect();
    // A candidate's directory may be (or contain) a changed one, or sit below it.
    let wanted = |dir: &Path| {
        !same_cwd
            || changed
                .iter()
                .any(|c| dir.starts_with(c) || c.starts_with(dir))
    };
    let mut listings: HashMap<PathBuf, Option<HashSet<std::ffi::OsString>>> = HashMap::new();
    candidates(&user, &system, cwd, deps, &wanted)
        .into_iter()
        .filter(|(_, abs)| !same_cwd || changed.iter().any(|dir| abs.starts_with(dir)))
        .all(|(written, abs)| {
            existed.contains(written.as_os_str().as_bytes()) || !exists_listed(&mut listings, &abs)
        })
}

/// Whether `path` exists, reading each parent directory once per check rather than stating
/// every candidate.
fn exists_listed(
    listings: &mut HashMap<PathBuf, Option<HashSet<std::ffi::OsString>>>,
    path: &Path,
) -> bool {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return std::fs::symlink_metadata(path).is_ok();
    };
    let listing = listings.entry(parent.to_path_buf()).or_insert_with(|| {
        std::fs::read_dir(parent)
            .ok()
            .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
    });
    listing.as_ref().is_some_and(|names| names.contains(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn old(path: &Path) {
        let t = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::open(path).unwrap().set_modified(t).ok();
    }

    #[test]
    fn new_headers_in_earlier_directories_are_noticed() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = tmp.path();
        for dir in ["a", "b", "sys"] {
            std::fs::create_dir(cwd.join(dir)).unwrap();
        }
        std::fs::write(cwd.join("b/x.h"), "").unwrap();
        std::fs::write(cwd.join("sys/s.h"), "").unwrap();
        for p in ["b/x.h", "sys/s.h"] {
            old(&cwd.join(p));
        }
        std::thread::sleep(Duration::from_millis(120));
        let search = SearchPath {
            user: vec!["a".into(), "b".into()],
            system: vec![cwd.join("sys")],
        };
        let deps = vec![PathBuf::from("b/x.h"), cwd.join("sys/s.h")];
        let check = shadow_check(&search, cwd, Path::new("main.c"), &deps);
        let watched: Vec<String> = check
            .watched
            .iter()
            .map(|w| String::from_utf8_lossy(&w.path).into_owned())
            .collect();
        assert!(watched.iter().any(|w| w.ends_with("/a")), "{watched:?}");
        assert!(
            check.watched.iter().all(|w| w.stamp.is_some()),
            "settled dirs are trusted"
        );
        assert!(no_shadowing(&check, cwd, &deps));
        // An unrelated file in a watched directory: re-checked, still fine.
        std::fs::write(cwd.join("a/unrelated.h"), "").unwrap();
        assert!(no_shadowing(&check, cwd, &deps));
        for shadow in ["a/x.h", "x.h", "a/s.h", "b/s.h"] {
            std::fs::write(cwd.join(shadow), "").unwrap();
            assert!(
                !no_shadowing(&check, cwd, &deps),
                "{shadow} must be noticed"
            );
            std::fs::remove_file(cwd.join(shadow)).unwrap();
        }
        assert!(no_shadowing(&check, cwd, &deps));
        // From another directory everything is derived again.
        let elsewhere = tempfile::tempdir().unwrap();
        assert!(no_shadowing(&check, elsewhere.path(), &[]));
    }
}
