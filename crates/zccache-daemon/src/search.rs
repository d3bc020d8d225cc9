//! Which files, had they existed, would have been included instead of the ones that were.
//!
//! Direct mode keys a result on the headers a compile used. A header created later in a
//! directory searched *earlier* would shadow one of them without changing any of them. The
//! would-be paths ("candidates") are many — every header times every earlier directory — so an
//! entry does not list them: it records the directories whose listings decide that they are
//! absent (for each candidate, its deepest existing ancestor) with their stat signatures. A hit
//! re-stats those few directories; only when one has changed are the candidates it decides
//! looked for, one by one (the candidates are derived from the search path and the
//! dependencies, both stored, once per entry in memory). Directory timestamps follow the same trust rule as file digests: a directory changed
//! in the file-clock tick of the store is always re-checked.

use rustc_hash::FxBuildHasher;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use zccache_artifact::{DirStamp, ShadowCheck, WatchedDir};
use zccache_core::paths::absolute;
use zccache_fscache::FileClock;
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
    // This runs on hits whenever a watched directory changed (an in-source build changes the
    // source's directory with every object it writes), over every header times every search
    // directory: paths are compared as bytes (they are lexically normalized) rather than
    // component by component.
    let system_abs: Vec<PathBuf> = system.iter().map(|d| absolute(cwd, d)).collect();
    let is_system = |path: &Path| system_abs.iter().any(|dir| under(path, dir).is_some());
    let dir_of = |p: &Path| match p.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Search directories as written and absolute, whether candidates are wanted there, and
    // whether they are system directories.
    let mut ordered: Vec<(PathBuf, PathBuf, bool, bool)> = Vec::new();
    let mut ordered_set: HashSet<Box<[u8]>, FxBuildHasher> = HashSet::default();
    let system_set: ByteSet = system_abs.iter().map(|d| bytes(d)).collect();
    for dir in user.iter().chain(system.iter()) {
        let abs = absolute(cwd, dir);
        if ordered_set.insert(bytes(&abs).into()) {
            let wanted_here = wanted(&abs);
            let system_here = system_set.contains(bytes(&abs));
            ordered.push((dir.clone(), abs, wanted_here, system_here));
        }
    }
    // A "..." include in a header first searches that header's own directory, so for user
    // headers every other user header's directory may also come first.
    let dep_abs: Vec<PathBuf> = deps.iter().map(|d| absolute(cwd, d)).collect();
    let dep_system: Vec<bool> = dep_abs.iter().map(|d| is_system(d)).collect();
    let mut includers: Vec<(PathBuf, PathBuf)> = Vec::new();
    for ((dep, abs), system) in deps.iter().zip(&dep_abs).zip(&dep_system) {
        if !system {
            let dir = (dir_of(dep), dir_of(abs));
            if wanted(&dir.1) && !includers.iter().any(|(_, a)| bytes(a) == bytes(&dir.1)) {
                includers.push(dir);
            }
        }
    }
    if !ordered.iter().any(|o| o.2) && includers.is_empty() {
        return Vec::new();
    }
    let dep_set: ByteSet = dep_abs
        .iter()
        .map(|d| d.as_os_str().as_encoded_bytes())
        .collect();
    let mut seen: HashSet<Box<[u8]>, FxBuildHasher> = HashSet::default();
    let mut out = Vec::new();
    let mut push = |written: PathBuf, abs: PathBuf| {
        let bytes = abs.as_os_str().as_encoded_bytes();
        if !dep_set.contains(bytes) && seen.insert(bytes.into()) {
            out.push((written, abs));
        }
    };
    for (abs, &system) in dep_abs.iter().zip(&dep_system) {
        let own_dir = dir_of(abs);
        for (k, (_, dir_abs, _, dir_is_system)) in ordered.iter().enumerate() {
            let Some(rel) = under(abs, dir_abs) else {
                continue;
            };
            if system && !dir_is_system {
                // A system header was found through a system directory, not one that merely
                // happens to contain it.
                continue;
            }
            let rel = Path::new(zccache_platform::os_str::os_str_from_bytes(rel));
            for (written, earlier, wanted_here, _) in &ordered[..k] {
                if *wanted_here {
                    push(written.join(rel), earlier.join(rel));
                }
            }
            if system {
                // ...and through the first system directory that holds it.
                break;
            }
            for (written, includer) in &includers {
                if bytes(includer) != bytes(&own_dir) {
                    push(written.join(rel), includer.join(rel));
                }
            }
        }
    }
    out
}

/// Paths as bytes: they are lexically normalized, so bytes compare as paths do, and hash far
/// faster than `Path`'s component by component.
type ByteSet<'a> = HashSet<&'a [u8], FxBuildHasher>;

fn bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_encoded_bytes()
}

/// The part of `path` below `dir` (both normalized and absolute), if it is below it.
fn under<'a>(path: &'a Path, dir: &Path) -> Option<&'a [u8]> {
    zccache_platform::os_str::below(
        path.as_os_str().as_encoded_bytes(),
        dir.as_os_str().as_encoded_bytes(),
    )
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
    let stamped_at = FileClock::now();
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
            existing.push(written.as_os_str().as_encoded_bytes().to_vec());
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
            path: dir.as_os_str().as_encoded_bytes().to_vec(),
        })
        .collect();
    watched.sort_by(|a, b| a.path.cmp(&b.path));
    ShadowCheck {
        cwd: cwd.as_os_str().as_encoded_bytes().to_vec(),
        user: user
            .iter()
            .map(|d| d.as_os_str().as_encoded_bytes().to_vec())
            .collect(),
        system: search
            .system
            .iter()
            .map(|d| d.as_os_str().as_encoded_bytes().to_vec())
            .collect(),
        watched,
        existing,
    }
}

/// A directory's signature, if it is old enough to be trusted (see the module docs).
fn stamp(dir: &Path, now: FileClock) -> Option<DirStamp> {
    let sig = StatSig::of(dir).ok()?;
    (!sig.touched_since(now)).then_some(DirStamp {
        ino: sig.ino,
        size: sig.size,
        mtime_ns: sig.mtime_ns,
        ctime_ns: sig.ctime_ns,
    })
}

/// Applies `f` to every path `check` holds: puts the worktree root's placeholder in, or the
/// caller's root back (see `worktree.rs`).
pub fn mark_paths(check: &mut ShadowCheck, f: &dyn Fn(&[u8]) -> Vec<u8>) {
    check.cwd = f(&check.cwd);
    for path in check
        .user
        .iter_mut()
        .chain(check.system.iter_mut())
        .chain(check.existing.iter_mut())
    {
        *path = f(path);
    }
    for dir in &mut check.watched {
        dir.path = f(&dir.path);
    }
}

/// What the shadowing check asks of the file system. The daemon answers from its file cache,
/// where the watcher vouches for directory signatures and listings; [`Uncached`] asks the
/// file system every time.
pub trait DirState {
    /// A directory's stat signature; `None` when it cannot be stat'ed.
    fn signature(&self, dir: &Path) -> Option<StatSig>;
    /// Whether `dir` has an entry `name`, when known without reading the directory.
    fn contains(&self, dir: &Path, name: &std::ffi::OsStr) -> Option<bool>;
}

/// [`DirState`] straight from system calls.
pub struct Uncached;

impl DirState for Uncached {
    fn signature(&self, dir: &Path) -> Option<StatSig> {
        StatSig::of(dir).ok()
    }

    fn contains(&self, _: &Path, _: &std::ffi::OsStr) -> Option<bool> {
        None
    }
}

/// Directory listings read during one request, shared by the sources of a multi-file call.
#[derive(Default)]
pub struct Listings(parking_lot::Mutex<ListingMap>);

/// Directory (as bytes) → its names, or `None` when it cannot be read.
type ListingMap = HashMap<Box<[u8]>, Option<Arc<Names>>, FxBuildHasher>;

/// A directory's entry names, as the file system compares them
/// ([`zccache_platform::os_str::name_key`]: case-folded on Windows, where `Foo.h` is found by
/// `#include "foo.h"`).
type Names = HashSet<Box<[u8]>, FxBuildHasher>;

/// True while no file that would shadow a dependency exists, for a call in `cwd`. `deps` (the
/// dependency paths as written) is only built when a watched directory changed. `derived`
/// gives the candidates of at least the watched directories marked changed (see
/// [`DerivedMemo::get_or_derive`]); `None` derives them here.
pub fn no_shadowing(
    check: &ShadowCheck,
    cwd: &Path,
    dirs: &dyn DirState,
    deps: &dyn Fn() -> Vec<PathBuf>,
    derived: &dyn Fn(&[bool]) -> Option<Arc<Derived>>,
    listings: &Listings,
) -> bool {
    let bytes_path = |b: &[u8]| PathBuf::from(zccache_platform::os_str::os_str_from_bytes(b));
    let same_cwd = check.cwd == cwd.as_os_str().as_encoded_bytes();
    let mut changed: Vec<PathBuf> = Vec::new();
    if same_cwd {
        let mut changed_at = vec![false; check.watched.len()];
        for (index, dir) in check.watched.iter().enumerate() {
            let path = Path::new(zccache_platform::os_str::os_str_from_bytes(&dir.path));
            let now = dirs.signature(path).map(|sig| DirStamp {
                ino: sig.ino,
                size: sig.size,
                mtime_ns: sig.mtime_ns,
                ctime_ns: sig.ctime_ns,
            });
            match (&dir.stamp, now) {
                // The directory is gone: nothing can have appeared under it.
                (_, None) => {}
                (Some(then), Some(now)) if *then == now => {}
                _ => {
                    changed_at[index] = true;
                    changed.push(path.to_path_buf());
                }
            }
        }
        if changed.is_empty() {
            return true;
        }
        // Only the candidates a changed directory decides are looked for; which those are was
        // worked out once for this entry (or for this set of changed directories).
        if let Some(derived) = derived(&changed_at) {
            let mut known = vec![None; derived.parents.len()];
            return derived
                .items
                .iter()
                .filter(|(decider, _, _)| changed_at[*decider as usize])
                .all(|(_, parent, name)| {
                    !(derived.exists(*parent, &mut known, dirs, listings)
                        && listed(dirs, listings, derived.parent(*parent), derived.name(*name)))
                });
        }
    }
    let user: Vec<PathBuf> = check.user.iter().map(|d| bytes_path(d)).collect();
    let system: Vec<PathBuf> = check.system.iter().map(|d| bytes_path(d)).collect();
    let existed: ByteSet = check.existing.iter().map(Vec::as_slice).collect();
    // A changed directory only matters to the candidates it decided: those whose nearest
    // watched ancestor it is. Candidates are derived only for search directories at or above
    // a changed one. From another directory, everything is derived.
    let watched: ByteSet = check.watched.iter().map(|w| w.path.as_slice()).collect();
    let changed_set: ByteSet = changed.iter().map(|c| bytes(c)).collect();
    let wanted =
        |dir: &Path| !same_cwd || affected_search_dir(dir, &changed_set, &|p| watched.contains(p));
    let affected = |candidate: &Path| {
        !same_cwd
            || candidate
                .ancestors()
                .skip(1)
                .find(|a| watched.contains(bytes(a)))
                .is_some_and(|a| changed_set.contains(bytes(a)))
    };
    candidates(&user, &system, cwd, &deps(), &wanted)
        .into_iter()
        .filter(|(_, abs)| affected(abs))
        .all(|(written, abs)| {
            if existed.contains(written.as_os_str().as_encoded_bytes()) {
                return true;
            }
            let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
                return std::fs::symlink_metadata(&abs).is_err();
            };
            match abs.ancestors().skip(1).find(|a| watched.contains(bytes(a))) {
                Some(decider) => !listed_under(dirs, listings, decider, parent, name),
                None => !listed(dirs, listings, parent, name),
            }
        })
}

/// Whether candidates under search directory `dir` can be revealed by a change to one of the
/// watched directories `changed`: a change at or below `dir`, or — when `dir` did not exist at
/// the store — to the watched ancestor that stood for it.
fn affected_search_dir(dir: &Path, changed: &ByteSet, watched: &dyn Fn(&[u8]) -> bool) -> bool {
    changed.iter().any(|c| {
        *c == bytes(dir)
            || under(
                Path::new(zccache_platform::os_str::os_str_from_bytes(c)),
                dir,
            )
            .is_some()
    }) || dir
        .ancestors()
        .find(|a| watched(bytes(a)))
        .is_some_and(|a| a != dir && changed.contains(bytes(a)))
}

/// An entry's would-be shadows, worked out once per entry in memory (an in-source build changes
/// the source's directory with every object, so hits would otherwise derive them every time):
/// each candidate that did not exist at the store, with the index in `ShadowCheck::watched` of
/// the directory whose change may reveal it.
pub struct Derived {
    /// The candidates' directories and file names, each once (an entry with 50 search
    /// directories has thousands of candidates made of a few hundred of each), packed: a memo
    /// holding thousands of entries made of one allocation per path fragmented the daemon's
    /// heap when it started over.
    parents: PackedStrings,
    names: PackedStrings,
    /// Per directory in `parents`: for one below its deciding watched directory, its own
    /// directory and name (also in `parents` and `names`), so that a missing directory rules
    /// out every candidate under it from one listing.
    up: Vec<Option<(u32, u32)>>,
    /// Per candidate: the deciding watched directory, its directory and its name, as indices.
    items: Vec<(u32, u32, u32)>,
}

impl Derived {
    /// About how much memory it holds, with its share of the memo's map.
    fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.parents.heap_bytes()
            + self.names.heap_bytes()
            + self.up.capacity() * size_of::<Option<(u32, u32)>>()
            + self.items.capacity() * size_of::<(u32, u32, u32)>()
            + size_of::<Derived>()
            + size_of::<((usize, usize), MemoEntry)>()
            + 64
    }

    fn parent(&self, index: u32) -> &Path {
        Path::new(self.parents.get(index))
    }

    fn name(&self, index: u32) -> &std::ffi::OsStr {
        self.names.get(index)
    }

    /// Whether directory `index` exists, by its ancestors' listings up to the deciding
    /// directory (which exists); `known` remembers answers within one check.
    fn exists(
        &self,
        index: u32,
        known: &mut [Option<bool>],
        dirs: &dyn DirState,
        listings: &Listings,
    ) -> bool {
        if let Some(answer) = known[index as usize] {
            return answer;
        }
        let answer = match self.up[index as usize] {
            None => true,
            Some((parent, name)) => {
                self.exists(parent, known, dirs, listings)
                    && listed(dirs, listings, self.parent(parent), self.name(name))
            }
        };
        known[index as usize] = Some(answer);
        answer
    }
}

/// Builds [`Derived`]'s tables, each directory and name once.
#[derive(Default)]
struct Interner {
    parents: Vec<PathBuf>,
    parent_index: HashMap<PathBuf, u32>,
    up: Vec<Option<(u32, u32)>>,
    names: Vec<OsString>,
    name_index: HashMap<OsString, u32>,
}

impl Interner {
    fn name(&mut self, name: &std::ffi::OsStr) -> u32 {
        if let Some(found) = self.name_index.get(name) {
            return *found;
        }
        self.names.push(name.to_os_string());
        let index = (self.names.len() - 1) as u32;
        self.name_index.insert(name.to_os_string(), index);
        index
    }

    /// Directory `dir`, at or below `decider`.
    fn dir(&mut self, dir: &Path, decider: &Path) -> u32 {
        if let Some(found) = self.parent_index.get(dir) {
            return *found;
        }
        let up = match (dir.parent(), dir.file_name()) {
            (Some(parent), Some(name)) if dir != decider && under(dir, decider).is_some() => {
                Some((self.dir(parent, decider), self.name(name)))
            }
            _ => None,
        };
        self.parents.push(dir.to_path_buf());
        self.up.push(up);
        let index = (self.parents.len() - 1) as u32;
        self.parent_index.insert(dir.to_path_buf(), index);
        index
    }
}

/// [`Derived`] for an entry stored in `check.cwd`: every candidate, or with `only`, those
/// decided by the watched directories it marks.
pub fn derive(check: &ShadowCheck, deps: &[PathBuf], only: Option<&[bool]>) -> Derived {
    let cwd = Path::new(zccache_platform::os_str::os_str_from_bytes(&check.cwd));
    let bytes_path = |b: &[u8]| PathBuf::from(zccache_platform::os_str::os_str_from_bytes(b));
    let user: Vec<PathBuf> = check.user.iter().map(|d| bytes_path(d)).collect();
    let system: Vec<PathBuf> = check.system.iter().map(|d| bytes_path(d)).collect();
    let existed: HashSet<&[u8]> = check.existing.iter().map(Vec::as_slice).collect();
    let watched: HashMap<&[u8], usize> = check
        .watched
        .iter()
        .enumerate()
        .map(|(index, dir)| (dir.path.as_slice(), index))
        .collect();
    let only_set: Option<ByteSet> = only.map(|mask| {
        check
            .watched
            .iter()
            .zip(mask)
            .filter(|(_, changed)| **changed)
            .map(|(dir, _)| dir.path.as_slice())
            .collect()
    });
    let wanted = |dir: &Path| {
        only_set
            .as_ref()
            .is_none_or(|changed| affected_search_dir(dir, changed, &|p| watched.contains_key(p)))
    };
    let mut tables = Interner::default();
    let mut items = Vec::new();
    for (written, candidate) in candidates(&user, &system, cwd, deps, &wanted) {
        if existed.contains(written.as_os_str().as_encoded_bytes()) {
            continue;
        }
        let Some(decider) = candidate
            .ancestors()
            .skip(1)
            .find_map(|dir| watched.get(dir.as_os_str().as_encoded_bytes()).copied())
        else {
            continue;
        };
        if only.is_some_and(|mask| !mask[decider]) {
            continue;
        }
        let (Some(parent), Some(name)) = (candidate.parent(), candidate.file_name()) else {
            continue;
        };
        let decider_path = Path::new(zccache_platform::os_str::os_str_from_bytes(
            &check.watched[decider].path,
        ));
        let parent = tables.dir(parent, decider_path);
        let name = tables.name(name);
        items.push((decider as u32, parent, name));
    }
    let mut up = tables.up;
    up.shrink_to_fit();
    items.shrink_to_fit();
    Derived {
        parents: PackedStrings::new(tables.parents.iter().map(|p| p.as_os_str())),
        names: PackedStrings::new(tables.names.iter().map(OsString::as_os_str)),
        up,
        items,
    }
}

/// Strings in one buffer, by index.
struct PackedStrings {
    bytes: Box<[u8]>,
    /// Where each string ends in `bytes`.
    ends: Box<[u32]>,
}

impl PackedStrings {
    fn new<'a>(strings: impl Iterator<Item = &'a std::ffi::OsStr>) -> PackedStrings {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for s in strings {
            bytes.extend_from_slice(s.as_encoded_bytes());
            ends.push(bytes.len() as u32);
        }
        PackedStrings {
            bytes: bytes.into_boxed_slice(),
            ends: ends.into_boxed_slice(),
        }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, index: u32) -> &std::ffi::OsStr {
        let i = index as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        zccache_platform::os_str::os_str_from_bytes(&self.bytes[start..self.ends[i] as usize])
    }

    fn heap_bytes(&self) -> usize {
        self.bytes.len() + self.ends.len() * 4
    }
}

/// [`Derived`] per in-memory manifest entry. Keyed by the manifest's address and the entry's
/// index; each value holds a weak reference to the manifest, which keeps its allocation (so an
/// address is never reused while it is a key) but not its contents.
#[derive(Default)]
pub struct DerivedMemo {
    entries: dashmap::DashMap<(usize, usize), MemoEntry>,
    /// For entries too large to derive whole: the candidates of one set of changed watched
    /// directories (in an in-source build, the same set — the source's directory — each time).
    partial: dashmap::DashMap<(usize, usize, Box<[u32]>), PartialEntry>,
    /// Bytes held, over all entries (see [`Derived::heap_bytes`]).
    bytes: std::sync::atomic::AtomicUsize,
}

/// The manifest (its address kept unique) and the entry's candidates, or `None` when it has
/// too many to derive whole.
type MemoEntry = (Weak<zccache_artifact::Manifest>, Option<Arc<Derived>>);
type PartialEntry = (Weak<zccache_artifact::Manifest>, Arc<Derived>);

/// Entries, and bytes over all of them, the memo keeps; past either it starts over. A C file
/// with a few headers takes ~5 KB, a C++ one with hundreds up to ~60 KB: the bytes bound the
/// daemon's memory however many entries a build hits and however many search directories it
/// uses; the count bounds the maps.
const MAX_DERIVED: usize = 16_384;
const DERIVED_BUDGET: usize = 8 << 20;
/// Headers times search directories of one entry beyond which its candidates are derived per
/// set of changed directories, and candidates of one such set beyond which they are not kept
/// (see [`DerivedMemo::get_or_derive`]).
const MAX_ITEMS_PER_ENTRY: usize = 4096;

impl DerivedMemo {
    /// Entries (whole or per set of changed directories) held.
    pub fn len(&self) -> usize {
        self.entries.len() + self.partial.len()
    }

    /// Candidates of the entry covering at least the watched directories marked in `changed`:
    /// all of them, derived once; or, for an entry with too many (a search path of dozens of
    /// directories), those of just this set of changed directories, kept unless still too many.
    pub fn get_or_derive(
        &self,
        manifest: &Arc<zccache_artifact::Manifest>,
        index: usize,
        check: &ShadowCheck,
        deps: &dyn Fn() -> Vec<PathBuf>,
        changed: &[bool],
    ) -> Arc<Derived> {
        let key = (Arc::as_ptr(manifest) as usize, index);
        let whole = match self.entries.get(&key) {
            Some(found) => found.1.clone(),
            None => {
                let entry = &manifest.entries[index];
                let estimate = entry.deps.len() * (check.user.len() + check.system.len());
                let derived = (estimate <= MAX_ITEMS_PER_ENTRY)
                    .then(|| Arc::new(derive(check, &deps(), None)));
                self.make_room(derived.as_ref().map_or(0, |d| d.heap_bytes()));
                self.entries
                    .insert(key, (Arc::downgrade(manifest), derived.clone()));
                derived
            }
        };
        if let Some(whole) = whole {
            return whole;
        }
        let marked: Box<[u32]> = (0..changed.len() as u32)
            .filter(|i| changed[*i as usize])
            .collect();
        let partial_key = (key.0, key.1, marked);
        if let Some(found) = self.partial.get(&partial_key) {
            return found.1.clone();
        }
        let derived = Arc::new(derive(check, &deps(), Some(changed)));
        if derived.items.len() <= MAX_ITEMS_PER_ENTRY {
            self.make_room(derived.heap_bytes());
            self.partial
                .insert(partial_key, (Arc::downgrade(manifest), derived.clone()));
        }
        derived
    }

    /// Counts `size` more bytes, starting over when the memo is full.
    fn make_room(&self, size: usize) {
        use std::sync::atomic::Ordering;
        let held = self.bytes.fetch_add(size, Ordering::Relaxed);
        if self.entries.len() + self.partial.len() >= MAX_DERIVED || held + size > DERIVED_BUDGET {
            self.entries.clear();
            self.partial.clear();
            self.bytes.store(size, Ordering::Relaxed);
        }
    }

    /// Bytes held (see [`Derived::heap_bytes`]).
    pub fn bytes(&self) -> usize {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Whether `parent` (at or below `decider`, a directory that exists) holds `name`. Each
/// directory between them is looked up in its parent's listing first, so a candidate below a
/// directory that does not exist (`src/bits/…` for a system header) costs no system call.
fn listed_under(
    dirs: &dyn DirState,
    listings: &Listings,
    decider: &Path,
    parent: &Path,
    name: &std::ffi::OsStr,
) -> bool {
    if parent != decider && under(parent, decider).is_some() {
        let (Some(grandparent), Some(parent_name)) = (parent.parent(), parent.file_name()) else {
            return listed(dirs, listings, parent, name);
        };
        if !listed_under(dirs, listings, decider, grandparent, parent_name) {
            return false;
        }
    }
    listed(dirs, listings, parent, name)
}

/// Whether `parent` holds an entry `name`: from `dirs` when it knows, else by the directory's
/// listing (read once per check).
fn listed(dirs: &dyn DirState, listings: &Listings, parent: &Path, name: &std::ffi::OsStr) -> bool {
    use zccache_platform::os_str::name_key;
    if let Some(found) = dirs.contains(parent, name) {
        return found;
    }
    let key = parent.as_os_str().as_encoded_bytes();
    let known = listings.0.lock().get(key).cloned();
    let listing = match known {
        Some(listing) => listing,
        None => {
            let listing = std::fs::read_dir(parent).ok().map(|entries| {
                Arc::new(
                    entries
                        .flatten()
                        .map(|e| name_key(e.file_name().as_encoded_bytes()).into())
                        .collect(),
                )
            });
            listings.0.lock().insert(key.into(), listing.clone());
            listing
        }
    };
    listing.is_some_and(|names| names.contains(name_key(name.as_encoded_bytes()).as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn old(path: &Path) {
        let t = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::open(path).unwrap().set_modified(t).ok();
    }

    #[test]
    fn under_compares_whole_components() {
        let check = |p: &str, d: &str| {
            under(Path::new(p), Path::new(d)).map(|r| String::from_utf8(r.to_vec()).unwrap())
        };
        assert_eq!(check("/a/b/c.h", "/a"), Some("b/c.h".into()));
        assert_eq!(check("/a/b/c.h", "/a/"), Some("b/c.h".into()));
        assert_eq!(check("/ab/c.h", "/a"), None);
        assert_eq!(check("/a", "/a"), None);
        assert_eq!(check("/x.h", "/"), Some("x.h".into()));
    }

    #[test]
    fn new_headers_in_earlier_directories_are_noticed() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = tmp.path();
        for dir in ["a", "b", "sys"] {
            std::fs::create_dir(cwd.join(dir)).unwrap();
        }
        std::fs::write(cwd.join("b/x.h"), "").unwrap();
        std::fs::create_dir(cwd.join("b/sub")).unwrap();
        std::fs::write(cwd.join("b/sub/y.h"), "").unwrap();
        std::fs::write(cwd.join("sys/s.h"), "").unwrap();
        for p in ["b/x.h", "b/sub/y.h", "sys/s.h"] {
            old(&cwd.join(p));
        }
        std::thread::sleep(Duration::from_millis(120));
        let search = SearchPath {
            user: vec!["a".into(), "b".into()],
            system: vec![cwd.join("sys")],
        };
        let deps = vec![
            PathBuf::from("b/x.h"),
            PathBuf::from("b/sub/y.h"),
            cwd.join("sys/s.h"),
        ];
        let check = shadow_check(&search, cwd, Path::new("main.c"), &deps);
        // Derived once, before any shadow exists, and reused by every check below.
        let derived = Arc::new(derive(&check, &deps, None));
        let watched: Vec<String> = check
            .watched
            .iter()
            .map(|w| String::from_utf8_lossy(&w.path).into_owned())
            .collect();
        assert!(
            watched
                .iter()
                .any(|w| w.ends_with(&format!("{}a", std::path::MAIN_SEPARATOR))),
            "{watched:?}"
        );
        assert!(
            check.watched.iter().all(|w| w.stamp.is_some()),
            "settled dirs are trusted"
        );
        // No shadow, with the candidates kept (`memo`: all of them, and those of the changed
        // directories only) or derived per check.
        let check_with = |kept: &dyn Fn(&[bool]) -> Option<Arc<Derived>>| {
            no_shadowing(
                &check,
                cwd,
                &Uncached,
                &|| deps.clone(),
                kept,
                &Listings::default(),
            )
        };
        let clean = |memo: bool| {
            if !memo {
                return check_with(&|_| None);
            }
            let whole = check_with(&|_| Some(derived.clone()));
            let partial =
                check_with(&|changed| Some(Arc::new(derive(&check, &deps, Some(changed)))));
            assert_eq!(whole, partial, "whole and partial candidates agree");
            whole
        };
        assert!(clean(true));
        // An unrelated file in a watched directory: re-checked, still fine.
        std::fs::write(cwd.join("a/unrelated.h"), "").unwrap();
        assert!(clean(true));
        // A directory that would hold a shadow, but does not: still fine.
        std::fs::create_dir(cwd.join("a/other")).unwrap();
        assert!(clean(true) && clean(false));
        for shadow in ["a/x.h", "x.h", "a/s.h", "b/s.h", "a/sub/y.h", "sub/y.h"] {
            let shadow_dir = cwd.join(shadow).parent().unwrap().to_path_buf();
            let new_dir = !shadow_dir.exists();
            std::fs::create_dir_all(&shadow_dir).unwrap();
            std::fs::write(cwd.join(shadow), "").unwrap();
            assert!(!clean(true), "{shadow} must be noticed");
            assert!(!clean(false), "{shadow} must be noticed without the memo");
            std::fs::remove_file(cwd.join(shadow)).unwrap();
            if new_dir {
                std::fs::remove_dir(&shadow_dir).unwrap();
            } else {
                // The directory alone, left behind, shadows nothing.
                assert!(clean(true) && clean(false), "{shadow} removed");
            }
        }
        assert!(clean(true));
        // From another directory everything is derived again.
        let elsewhere = tempfile::tempdir().unwrap();
        assert!(no_shadowing(
            &check,
            elsewhere.path(),
            &Uncached,
            &Vec::new,
            &|_| Some(derived.clone()),
            &Listings::default()
        ));
    }
}
