//! Which files, had they existed, would have been included instead of the ones that were.
//!
//! Direct mode keys a result on the headers a compile used. A header created later in a
//! directory searched *earlier* would shadow one of them without changing any of them, so each
//! stored entry also records those would-be paths; the entry is served only while none exists.

use crate::paths::absolute;
use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A compile's include search path as written, split where system directories begin.
#[derive(Debug, Default, Clone)]
pub struct SearchPath {
    /// `-iquote`, `-I`, `CPATH`: searched first, in this order.
    pub user: Vec<PathBuf>,
    /// `-isystem`, `C_INCLUDE_PATH`..., the compiler's own directories, `-idirafter`.
    pub system: Vec<PathBuf>,
}

/// Paths (as written, relative to the caller's cwd unless absolute) that do not exist now and
/// would shadow one of `deps` if created.
pub fn shadow_candidates(
    search: &SearchPath,
    cwd: &Path,
    source: &Path,
    deps: &[&str],
) -> Vec<Vec<u8>> {
    let system_abs: Vec<PathBuf> = search.system.iter().map(|d| absolute(cwd, d)).collect();
    let is_system = |path: &Path| system_abs.iter().any(|dir| path.starts_with(dir));
    let source_abs = absolute(cwd, source);
    let dir_of = |p: &Path| match p.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };

    // The compiler's order: the source's directory (for "..." includes), then -iquote/-I,
    // then the system directories.
    let mut ordered = SearchList::new(cwd);
    ordered.push(&dir_of(source));
    for dir in search.user.iter().chain(search.system.iter()) {
        ordered.push(dir);
    }
    // A "..." include in a header first searches that header's own directory, so for user
    // headers every other user header's directory may also come first.
    let mut includers = SearchList::new(cwd);
    for dep in deps {
        let dep = Path::new(dep);
        if !is_system(&absolute(cwd, dep)) {
            includers.push(&dir_of(dep));
        }
    }

    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut consider = |written: &Path, abs: PathBuf, dep_abs: &Path| {
        if abs != dep_abs && seen.insert(abs.clone()) && std::fs::symlink_metadata(&abs).is_err() {
            out.push(written.as_os_str().as_bytes().to_vec());
        }
    };
    for dep in deps {
        let dep_abs = absolute(cwd, Path::new(dep));
        if dep_abs == source_abs {
            continue;
        }
        let system = is_system(&dep_abs);
        let own_dir = dep_abs.parent().map(Path::to_path_buf).unwrap_or_default();
        for (k, (_, dir_abs)) in ordered.dirs.iter().enumerate() {
            let Ok(rel) = dep_abs.strip_prefix(dir_abs) else {
                continue;
            };
            if system && !system_abs.contains(dir_abs) {
                // A system header was found through a system directory, not one that merely
                // happens to contain it.
                continue;
            }
            for (written, earlier_abs) in &ordered.dirs[..k] {
                consider(&written.join(rel), earlier_abs.join(rel), &dep_abs);
            }
            if !system {
                for (written, includer_abs) in &includers.dirs {
                    if *includer_abs != own_dir {
                        consider(&written.join(rel), includer_abs.join(rel), &dep_abs);
                    }
                }
            } else {
                // A system header was found in the first system directory that holds it.
                break;
            }
        }
    }
    out
}

/// Search directories, each as written and absolute, without duplicates.
struct SearchList<'a> {
    cwd: &'a Path,
    dirs: Vec<(PathBuf, PathBuf)>,
}

impl<'a> SearchList<'a> {
    fn new(cwd: &'a Path) -> Self {
        SearchList {
            cwd,
            dirs: Vec::new(),
        }
    }

    fn push(&mut self, dir: &Path) {
        let abs = absolute(self.cwd, dir);
        if !self.dirs.iter().any(|(_, a)| *a == abs) {
            self.dirs.push((dir.to_path_buf(), abs));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_found_late_gets_earlier_dirs_as_candidates() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = tmp.path();
        for dir in ["a", "b", "sys"] {
            std::fs::create_dir(cwd.join(dir)).unwrap();
        }
        std::fs::write(cwd.join("b/x.h"), "").unwrap();
        std::fs::write(cwd.join("sys/s.h"), "").unwrap();
        let search = SearchPath {
            user: vec!["a".into(), "b".into()],
            system: vec![cwd.join("sys")],
        };
        let sys_header = cwd.join("sys/s.h");
        let deps = ["main.c", "b/x.h", sys_header.to_str().unwrap()];
        let found: Vec<String> = shadow_candidates(&search, cwd, Path::new("main.c"), &deps)
            .into_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect();
        assert!(found.contains(&"./x.h".to_string()), "{found:?}");
        assert!(found.contains(&"a/x.h".to_string()), "{found:?}");
        assert!(found.contains(&"a/s.h".to_string()), "{found:?}");
        assert!(found.contains(&"b/s.h".to_string()), "{found:?}");
        assert!(!found.iter().any(|f| f.ends_with("b/x.h")), "{found:?}");
    }
}
