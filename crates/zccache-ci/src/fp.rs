//! `zccache fp`: "did anything matching these files change since the last success?" for a CI
//! step or script that wants to skip work (a lint, a code generator) when its inputs are as
//! they were the last time it succeeded.
//!
//! A check scans the selected files under a root and fingerprints them. With the `hash`
//! cache type every file's content is hashed each time; with `two-layer` (the default) a
//! file whose stat (size, mtime, ctime, inode) is the one recorded at the last success keeps its
//! recorded digest, and only the others are read. A file stamped in the clock tick of a scan
//! is hashed again at the next one (it may still change without its stamp showing it). The
//! check records what it saw as pending; `mark-success` makes that the state to compare
//! with, `mark-failure` drops it, so the next check says "run" again.
//!
//! State lives in the cache file (JSON), written beside and renamed into place.

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use zccache_fscache::{FileClock, StatSig};

/// How files are compared with the last success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheType {
    /// Every file's content is hashed at every check.
    Hash,
    /// The stat first (size, mtime, ctime, inode); content only for files whose stat changed.
    TwoLayer,
}

impl CacheType {
    pub fn parse(text: &str) -> Option<CacheType> {
        match text {
            "hash" => Some(CacheType::Hash),
            "two-layer" => Some(CacheType::TwoLayer),
            _ => None,
        }
    }
}

/// Which files a check looks at.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub root: PathBuf,
    /// Globs relative to the root (`**/*.rs`); none means every file.
    pub include: Vec<String>,
    /// File extensions without the dot; an alternative to `include`.
    pub ext: Vec<String>,
    /// Directory or file names (`target`), or globs relative to the root, left out.
    pub exclude: Vec<String>,
}

/// What went wrong, with the file or pattern it concerns.
#[derive(Debug)]
pub enum Error {
    Io {
        path: PathBuf,
        error: io::Error,
    },
    Pattern {
        pattern: String,
        error: String,
    },
    /// The cache file is not one this version wrote.
    State {
        path: PathBuf,
        error: String,
    },
    /// `--include` and `--ext` together.
    IncludeAndExt,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, error } => write!(f, "{}: {error}", path.display()),
            Error::Pattern { pattern, error } => write!(f, "pattern {pattern:?}: {error}"),
            Error::State { path, error } => write!(f, "{}: {error}", path.display()),
            Error::IncludeAndExt => write!(f, "--include and --ext cannot be used together"),
        }
    }
}

impl std::error::Error for Error {}

/// One file as fingerprinted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileState {
    size: u64,
    mtime_ns: i128,
    /// Changes with every write and every time stamp set: a same-size edit whose mtime was
    /// put back still shows.
    ctime_ns: i128,
    ino: u64,
    /// BLAKE3 of the content, hex.
    hash: String,
    /// Stamped in the tick of the scan: its stat proves nothing next time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fresh: bool,
}

/// Every selected file (path relative to the root) at one check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Snapshot {
    root: PathBuf,
    files: BTreeMap<String, FileState>,
}

impl Snapshot {
    /// The files (relative to the root) whose content differs between `self` and `now`:
    /// added, changed or removed, in order.
    fn differences(&self, now: &Snapshot) -> Vec<String> {
        if self.root != now.root {
            return now.files.keys().cloned().collect();
        }
        let mut names: Vec<String> = now
            .files
            .iter()
            .filter(|(name, state)| {
                self.files
                    .get(*name)
                    .is_none_or(|old| old.hash != state.hash)
            })
            .map(|(name, _)| name.clone())
            .chain(
                self.files
                    .keys()
                    .filter(|name| !now.files.contains_key(*name))
                    .cloned(),
            )
            .collect();
        names.sort();
        names
    }

    /// Equal content: same names with the same digests (stats may differ).
    fn same_content(&self, other: &Snapshot) -> bool {
        self.root == other.root
            && self.files.len() == other.files.len()
            && self
                .files
                .iter()
                .zip(&other.files)
                .all(|((a, fa), (b, fb))| a == b && fa.hash == fb.hash)
    }
}

/// The cache file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    version: u32,
    success: Option<Snapshot>,
    pending: Option<Snapshot>,
}

const STATE_VERSION: u32 = 1;

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |error| Error::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn load(cache_file: &Path) -> Result<State, Error> {
    let text = match std::fs::read(cache_file) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
        Err(e) => return Err(io_at(cache_file)(e)),
    };
    let state: State = serde_json::from_slice(&text).map_err(|e| Error::State {
        path: cache_file.to_path_buf(),
        error: e.to_string(),
    })?;
    if state.version != STATE_VERSION {
        // Another version's state: start over rather than misread it.
        return Ok(State::default());
    }
    Ok(state)
}

fn store(cache_file: &Path, state: &State) -> Result<(), Error> {
    let dir = cache_file.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    }
    let staged = cache_file.with_extension(format!("partial.{}", std::process::id()));
    let text = serde_json::to_vec(state).expect("state serializes");
    std::fs::write(&staged, text).map_err(io_at(&staged))?;
    std::fs::rename(&staged, cache_file).map_err(io_at(cache_file))
}

fn glob_set(patterns: &[String]) -> Result<GlobSet, Error> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = Glob::new(pattern).map_err(|e| Error::Pattern {
            pattern: pattern.clone(),
            error: e.to_string(),
        })?;
        set.add(glob);
    }
    set.build().map_err(|e| Error::Pattern {
        pattern: patterns.join(" "),
        error: e.to_string(),
    })
}

/// The selected files (relative to the root, sorted) and every directory the scan read,
/// root first: a daemon that watches those directories knows the list still holds while no
/// name in them changed.
pub fn scan_tree(selection: &Selection) -> Result<(Vec<String>, Vec<PathBuf>), Error> {
    if !selection.include.is_empty() && !selection.ext.is_empty() {
        return Err(Error::IncludeAndExt);
    }
    let include = glob_set(&selection.include)?;
    let exclude = glob_set(&selection.exclude)?;
    let excluded_name = |name: &str| selection.exclude.iter().any(|e| e == name);
    let root = &selection.root;
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let walk = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| {
            let name = entry.file_name().to_string_lossy();
            let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
            entry.depth() == 0 || !(excluded_name(&name) || exclude.is_match(rel))
        });
    for entry in walk {
        let entry = entry.map_err(|e| Error::Io {
            path: e.path().unwrap_or(root).to_path_buf(),
            error: e.into(),
        })?;
        if entry.file_type().is_dir() {
            dirs.push(entry.path().to_path_buf());
            continue;
        }
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let chosen = if !selection.ext.is_empty() {
            rel.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| selection.ext.iter().any(|x| x == e))
        } else {
            selection.include.is_empty() || include.is_match(rel)
        };
        if chosen {
            files.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok((files, dirs))
}

/// A file's stat, its content digest (hex) and whether it was stamped in the current clock
/// tick: what a check needs of each selected file.
pub struct Observed {
    pub sig: StatSig,
    pub hash: String,
    pub fresh: bool,
}

/// Where a check gets digests: the files themselves (the two-layer rule or hashing each one),
/// or a caller that knows better, such as the daemon whose watcher vouches for files.
pub type DigestFn<'a> = &'a dyn Fn(&Path) -> io::Result<Observed>;

/// Fingerprints `files` (relative to the selection's root), with `digest` when given, else
/// reusing `known` digests under the two-layer rule.
fn fingerprint(
    selection: &Selection,
    files_selected: Vec<String>,
    cache_type: CacheType,
    known: Option<&Snapshot>,
    digest: Option<DigestFn>,
) -> Result<Snapshot, Error> {
    let started = FileClock::now();
    let mut files = BTreeMap::new();
    for rel in files_selected {
        let path = selection.root.join(&rel);
        let (sig, hash, fresh) = match digest {
            Some(digest) => {
                let seen = digest(&path).map_err(io_at(&path))?;
                (seen.sig, seen.hash, seen.fresh)
            }
            None => {
                let sig = StatSig::of(&path).map_err(io_at(&path))?;
                let reuse = match (cache_type, known.and_then(|k| k.files.get(&rel))) {
                    (CacheType::TwoLayer, Some(was)) => {
                        !was.fresh
                            && (was.size, was.mtime_ns, was.ctime_ns, was.ino)
                                == (sig.size, sig.mtime_ns, sig.ctime_ns, sig.ino)
                    }
                    _ => false,
                };
                let hash = if reuse {
                    known.expect("reused from it").files[&rel].hash.clone()
                } else {
                    let (hash, _) = zccache_fscache::hash_file(&path).map_err(io_at(&path))?;
                    zccache_core::hex(&hash)
                };
                (sig, hash, sig.touched_since(started))
            }
        };
        files.insert(
            rel,
            FileState {
                size: sig.size,
                mtime_ns: sig.mtime_ns,
                ctime_ns: sig.ctime_ns,
                ino: sig.ino,
                hash,
                fresh,
            },
        );
    }
    Ok(Snapshot {
        root: selection.root.clone(),
        files,
    })
}

/// A check's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Run the step: the selected files differ from the last success, or none is recorded.
    pub changed: bool,
    /// The files (relative to the root) added, changed or removed since the last success;
    /// every selected file when none is recorded.
    pub changed_files: Vec<String>,
    /// No success is recorded (for this root).
    pub first_run: bool,
}

/// Whether the step should run: `true` when the selected files differ from the last success
/// (or there is none). Records what it saw for `mark-success`.
pub fn check(
    cache_file: &Path,
    cache_type: CacheType,
    selection: &Selection,
) -> Result<bool, Error> {
    check_decision(cache_file, cache_type, selection).map(|decision| decision.changed)
}

/// [`check`], with the files that changed.
pub fn check_decision(
    cache_file: &Path,
    cache_type: CacheType,
    selection: &Selection,
) -> Result<Decision, Error> {
    let (files, _) = scan_tree(selection)?;
    check_files(cache_file, cache_type, selection, files, None)
}

/// [`check`] on a file list the caller already has (the daemon's, kept current by its
/// watcher), with its digests when `digest` is given.
pub fn check_files(
    cache_file: &Path,
    cache_type: CacheType,
    selection: &Selection,
    files: Vec<String>,
    digest: Option<DigestFn>,
) -> Result<Decision, Error> {
    let mut state = load(cache_file)?;
    let now = fingerprint(selection, files, cache_type, state.success.as_ref(), digest)?;
    let changed = !state.success.as_ref().is_some_and(|s| s.same_content(&now));
    let first_run = state.success.as_ref().is_none_or(|s| s.root != now.root);
    let changed_files = match &state.success {
        Some(success) if changed => success.differences(&now),
        None => now.files.keys().cloned().collect(),
        Some(_) => Vec::new(),
    };
    if changed {
        state.pending = Some(now);
    } else {
        // Unchanged content: refresh the recorded stats (a touched file need not be read
        // again), and nothing is pending.
        state.success = Some(now);
        state.pending = None;
    }
    state.version = STATE_VERSION;
    store(cache_file, &state)?;
    Ok(Decision {
        changed,
        changed_files,
        first_run,
    })
}

/// The step succeeded on what the last check saw. Returns whether a check was pending.
pub fn mark_success(cache_file: &Path) -> Result<bool, Error> {
    let mut state = load(cache_file)?;
    let Some(pending) = state.pending.take() else {
        return Ok(false);
    };
    state.success = Some(pending);
    state.version = STATE_VERSION;
    store(cache_file, &state)?;
    Ok(true)
}

/// The step failed: the next check says "run" unless the files go back to the last success.
pub fn mark_failure(cache_file: &Path) -> Result<(), Error> {
    let mut state = load(cache_file)?;
    state.pending = None;
    state.version = STATE_VERSION;
    store(cache_file, &state)
}

/// Forgets every state: the next check says "run".
pub fn invalidate(cache_file: &Path) -> Result<(), Error> {
    match std::fs::remove_file(cache_file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at(cache_file)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Runs `check` and, when it says run, marks success: what a CI step does.
    fn step(cache: &Path, kind: CacheType, sel: &Selection) -> bool {
        let run = check(cache, kind, sel).unwrap();
        if run {
            assert!(mark_success(cache).unwrap());
        }
        run
    }

    #[test]
    fn each_kind_of_change_makes_the_step_run_once() {
        for kind in [CacheType::Hash, CacheType::TwoLayer] {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().join("src");
            let cache = tmp.path().join(".cache/lint.json");
            write(&root, "a.rs", "fn a() {}");
            write(&root, "sub/b.rs", "fn b() {}");
            write(&root, "notes.txt", "not selected");
            write(&root, "target/gen.rs", "excluded dir");
            let sel = Selection {
                root: root.clone(),
                ext: vec!["rs".into()],
                exclude: vec!["target".into()],
                ..Selection::default()
            };
            assert!(step(&cache, kind, &sel), "{kind:?}: first check runs");
            assert!(!step(&cache, kind, &sel), "{kind:?}: unchanged skips");
            for what in ["edit", "add", "delete"] {
                match what {
                    "edit" => write(&root, "a.rs", "fn a() { 1; }"),
                    "add" => write(&root, "sub/c.rs", "fn c() {}"),
                    _ => std::fs::remove_file(root.join("sub/c.rs")).unwrap(),
                }
                assert!(step(&cache, kind, &sel), "{kind:?}: {what} runs");
                assert!(!step(&cache, kind, &sel), "{kind:?}: then skips");
            }
            // Unselected and excluded files change nothing.
            write(&root, "notes.txt", "edited");
            write(&root, "target/gen.rs", "edited");
            assert!(!step(&cache, kind, &sel), "{kind:?}: excluded");
            // A failed step runs again at the next check; invalidate forgets everything.
            write(&root, "a.rs", "fn a() { 2; }");
            assert!(check(&cache, kind, &sel).unwrap());
            mark_failure(&cache).unwrap();
            assert!(
                check(&cache, kind, &sel).unwrap(),
                "{kind:?}: after a failure"
            );
            assert!(mark_success(&cache).unwrap());
            assert!(!check(&cache, kind, &sel).unwrap());
            invalidate(&cache).unwrap();
            assert!(
                check(&cache, kind, &sel).unwrap(),
                "{kind:?}: after invalidate"
            );
        }
    }

    #[test]
    fn two_layer_sees_a_same_size_edit_with_the_mtime_put_back_in_any_tick() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("src");
        let cache = tmp.path().join("fp.json");
        write(&root, "a.c", "int x = 1;");
        let sel = Selection {
            root: root.clone(),
            include: vec!["**/*.c".into()],
            ..Selection::default()
        };
        assert!(step(&cache, CacheType::TwoLayer, &sel));
        // ctime shows the edit even with the mtime put back (and a file written in the tick
        // of a scan is hashed again at the next one anyway).
        let mtime = std::fs::metadata(root.join("a.c"))
            .unwrap()
            .modified()
            .unwrap();
        std::fs::write(root.join("a.c"), "int x = 2;").unwrap();
        std::fs::File::options()
            .write(true)
            .open(root.join("a.c"))
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert!(step(&cache, CacheType::TwoLayer, &sel));
    }

    #[test]
    fn include_and_ext_exclude_each_other_and_bad_globs_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let sel = Selection {
            root: tmp.path().to_path_buf(),
            include: vec!["*.rs".into()],
            ext: vec!["rs".into()],
            ..Selection::default()
        };
        let cache = tmp.path().join("fp.json");
        assert!(matches!(
            check(&cache, CacheType::Hash, &sel),
            Err(Error::IncludeAndExt)
        ));
        let bad = Selection {
            root: tmp.path().to_path_buf(),
            include: vec!["a[".into()],
            ..Selection::default()
        };
        assert!(matches!(
            check(&cache, CacheType::Hash, &bad),
            Err(Error::Pattern { .. })
        ));
    }
}
