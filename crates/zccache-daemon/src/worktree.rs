//! Sharing entries between checkouts of one project (`ZCCACHE_PATH_REMAP=auto`): sibling git
//! worktrees, clones, CI workspaces at other paths.
//!
//! The root is `ZCCACHE_WORKTREE_ROOT`, or the nearest ancestor of the compile's directory
//! that holds a `.git` directory or file. Under remap, the front ends key the paths under the
//! root relative to it, and the compiler is told to write them so too (`-ffile-prefix-map`,
//! `--remap-path-prefix`), so the outputs of two checkouts are the same bytes. What is stored
//! names the root by a placeholder ([`ROOT_MARK`]): the dependencies a hit checks, the
//! shadowing check's directories, messages and dep-info files; a hit puts the caller's root
//! back, so everything a build reads names the caller's checkout, and every input is checked
//! in the caller's checkout, never another one's. A call that cannot be shared this way is
//! keyed as without remap, and the reason is counted.

use crate::pipeline::{Call, KeyHasher};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// Turns remapping on (`auto`); any other value or none leaves it off.
pub(crate) const REMAP_ENV: &str = "ZCCACHE_PATH_REMAP";
/// The root to remap, when no git root is found or another one is wanted.
pub(crate) const ROOT_ENV: &str = "ZCCACHE_WORKTREE_ROOT";

/// Stands for the worktree root in what is stored (a NUL never occurs in a path or argument).
pub(crate) const ROOT_MARK: &[u8] = b"\0zccache:root\0";

/// The name under which an entry records the root it was stored from, among its environment
/// dependencies (skipped when those are checked): a hit from another root is counted apart.
pub(crate) const STORED_ROOT: &[u8] = b"\0zccache:stored-root";

/// The name under which an entry whose outputs hold its checkout's root as written (a
/// proc-macro that read `CARGO_MANIFEST_DIR`, a path no prefix map covers) records that root:
/// only calls from the same root may use it.
pub(crate) const PINNED_ROOT: &[u8] = b"\0zccache:pinned-root";

/// The checkout a remapped call belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Worktree {
    root: PathBuf,
}

/// What `ZCCACHE_PATH_REMAP` makes of a call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Remap {
    Off,
    On(Worktree),
    /// Asked for, but this call is keyed by its real paths: the reason.
    Fallback(&'static str),
}

/// Whether remapping is asked for, and the root: from the override, else the git root above
/// `cwd`.
pub(crate) fn detect(call: &Call) -> Remap {
    if call.env_var(REMAP_ENV).map(|v| v.as_encoded_bytes()) != Some(b"auto") {
        return Remap::Off;
    }
    let root = match call.env_var(ROOT_ENV).filter(|r| !r.is_empty()) {
        Some(root) => zccache_core::paths::absolute(&call.cwd, Path::new(root)),
        None => match git_root(&call.cwd) {
            Some(root) => root,
            None => return Remap::Fallback("git_root_unavailable"),
        },
    };
    let root = normalize(&root);
    match root.to_str() {
        // The root must be written as-is wherever it occurs (dep-info escapes some bytes),
        // and `/` would make every path project-local.
        Some(text) if text.len() > 1 && zccache_compiler::depinfo_verbatim(text) => {}
        _ => return Remap::Fallback("path_sensitive_arg"),
    }
    if !call.cwd.starts_with(&root) {
        return Remap::Fallback("path_outside_root");
    }
    Remap::On(Worktree { root })
}

/// The nearest ancestor of `dir` (itself included) with a `.git` directory or file.
fn git_root(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| std::fs::symlink_metadata(d.join(".git")).is_ok())
        .map(Path::to_path_buf)
}

/// `path` without `.` components and trailing slashes (`..` kept: it may cross a symlink).
fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

impl Worktree {
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn root_bytes(&self) -> &[u8] {
        self.root.as_os_str().as_encoded_bytes()
    }

    /// `bytes` with the root, wherever it occurs as a whole path or a path's start, replaced
    /// by [`ROOT_MARK`].
    pub(crate) fn mark(&self, bytes: &[u8]) -> Vec<u8> {
        swap_root(bytes, self.root_bytes(), ROOT_MARK)
    }

    /// `bytes` with [`ROOT_MARK`] replaced by this root.
    pub(crate) fn resolve(&self, bytes: &[u8]) -> Vec<u8> {
        replace_all(bytes, ROOT_MARK, self.root_bytes())
    }

    /// Whether the root occurs in `bytes` as a path or a path's start.
    pub(crate) fn occurs_in(&self, bytes: &[u8]) -> bool {
        find_boundary(bytes, self.root_bytes()).is_some()
    }

    pub(crate) fn resolve_path(&self, path: &[u8]) -> PathBuf {
        PathBuf::from(zccache_platform::os_str::os_string_from_bytes(
            self.resolve(path),
        ))
    }
}

/// `text` as it enters a cache key: the root replaced by its placeholder under remap, else as
/// it is (borrowed: keying a call without remap allocates nothing, on the hit path too).
pub(crate) fn keyed<'a>(worktree: Option<&Worktree>, text: &'a [u8]) -> Cow<'a, [u8]> {
    match worktree {
        Some(worktree) => Cow::Owned(worktree.mark(text)),
        None => Cow::Borrowed(text),
    }
}

/// Keys how a remapped call's paths reach its outputs: through the build's own map of the
/// root, or through the one zccache adds (`added`, as the compiler spells it).
pub(crate) fn key_remap(key: &mut KeyHasher, builds_own: bool, added: &str) {
    let how: &[u8] = if builds_own {
        b"the build's own"
    } else {
        added.as_bytes()
    };
    key.part("path remap", how);
}

/// Whether `stored` (a path or text as stored) names the root by its placeholder.
#[cfg(test)]
fn is_marked(stored: &[u8]) -> bool {
    memchr::memmem::find(stored, ROOT_MARK).is_some()
}

/// Whether a stored path is under the root (marked at its start): one byte compared, for the
/// dependencies a hit checks.
pub(crate) fn is_marked_path(stored: &[u8]) -> bool {
    stored.first() == Some(&0) && stored.starts_with(ROOT_MARK)
}

/// The first occurrence of `root` in `bytes` that is a whole path component sequence: not
/// followed by a byte that would continue the last component.
fn find_boundary(bytes: &[u8], root: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = memchr::memmem::find(&bytes[from..], root) {
        let at = from + at;
        let end = at + root.len();
        if !continues_component(bytes.get(end)) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

fn continues_component(next: Option<&u8>) -> bool {
    matches!(next, Some(b) if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'~'))
}

/// `bytes` with every occurrence of `root` that is a whole path or a path's start replaced.
fn swap_root(bytes: &[u8], root: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = find_boundary(rest, root) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + root.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// `bytes` with every occurrence of `from` replaced by `to`: a placeholder put in or taken
/// out (the root's here, the output directory's in `rust.rs`).
pub(crate) fn replace_all(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = memchr::memmem::find(rest, from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &str) -> Worktree {
        Worktree {
            root: PathBuf::from(root),
        }
    }

    #[test]
    fn the_root_is_marked_only_as_a_whole_path_and_resolved_into_another() {
        let a = tree("/w/agent-a");
        let text = b"/w/agent-a/src/x.c:3: warning; /w/agent-ab/y.c /w/agent-a -I/w/agent-a/inc";
        let marked = a.mark(text);
        assert!(is_marked(&marked));
        let b = tree("/w/agent-b");
        assert_eq!(
            String::from_utf8(b.resolve(&marked)).unwrap(),
            "/w/agent-b/src/x.c:3: warning; /w/agent-ab/y.c /w/agent-b -I/w/agent-b/inc"
        );
        assert!(a.occurs_in(b"-I/w/agent-a/inc"));
        assert!(!a.occurs_in(b"/w/agent-ab/inc"));
        assert!(!is_marked(b"/w/agent-a/x"));
    }

    #[test]
    fn the_git_root_is_the_nearest_checkout() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("repo");
        std::fs::create_dir_all(top.join(".git")).unwrap();
        let wt = tmp.path().join("wt");
        std::fs::create_dir_all(wt.join("build/sub")).unwrap();
        std::fs::write(wt.join(".git"), "gitdir: ../repo/.git/worktrees/wt\n").unwrap();
        assert_eq!(git_root(&wt.join("build/sub")), Some(wt.clone()));
        std::fs::create_dir_all(top.join("src")).unwrap();
        assert_eq!(git_root(&top.join("src")), Some(top));
    }
}
