//! Lexical path handling: no file-system access, so results do not depend on timing.

use std::path::{Component, Path, PathBuf};

/// `cwd.join(path)` with `.` and `..` folded away lexically.
pub fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_dots() {
        let check = |cwd: &str, path: &str, expected: &str| {
            assert_eq!(
                absolute(Path::new(cwd), Path::new(path)),
                PathBuf::from(expected)
            );
        };
        check("/w", "a.c", "/w/a.c");
        check("/w", "./inc/../a.h", "/w/a.h");
        check(
            "/w",
            "/usr/lib/gcc/x/12/../../../../include/c++/12",
            "/usr/include/c++/12",
        );
        check("/w/sub", "../x", "/w/x");
    }
}
