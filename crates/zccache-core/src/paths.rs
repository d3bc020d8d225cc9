//! Lexical path handling shared by the client and the daemon: no file-system access, so
//! results do not depend on timing.

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};

/// `cwd.join(path)` with `.` and `..` folded away lexically.
pub fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    absolute_cow(cwd, path).into_owned()
}

/// [`absolute`], borrowing `path` when it is already absolute and clean (the common case for
/// dependency paths on a hit, where this runs hundreds of times per compile).
pub fn absolute_cow<'a>(cwd: &Path, path: &'a Path) -> Cow<'a, Path> {
    if is_clean_absolute(path.as_os_str().as_encoded_bytes()) {
        return Cow::Borrowed(path);
    }
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
            // Windows: `\\?\C:\x` and `C:\x` name one file; keys and comparisons use the
            // second form.
            Component::Prefix(prefix) => match prefix.kind() {
                std::path::Prefix::VerbatimDisk(drive) => {
                    out.push(format!("{}:", drive as char));
                }
                std::path::Prefix::VerbatimUNC(server, share) => {
                    let mut unc = std::ffi::OsString::from(r"\\");
                    unc.push(server);
                    unc.push(r"\");
                    unc.push(share);
                    out.push(unc);
                }
                _ => out.push(component),
            },
            other => out.push(other),
        }
    }
    Cow::Owned(out)
}

/// Absolute, with no empty, `.` or `..` components and no trailing slash: what folding would
/// give back unchanged.
fn is_clean_absolute(bytes: &[u8]) -> bool {
    if bytes.first() != Some(&b'/') {
        return false;
    }
    if bytes.len() == 1 {
        return true;
    }
    bytes[1..]
        .split(|&b| b == b'/')
        .all(|part| !part.is_empty() && part != b"." && part != b"..")
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
        check("/w", "/usr/include/stdio.h", "/usr/include/stdio.h");
        check("/w", "/usr//include/./stdio.h", "/usr/include/stdio.h");
        check("/w", "/usr/include/", "/usr/include");
        check("/w", "/", "/");
    }

    #[cfg(windows)]
    #[test]
    fn verbatim_prefixes_and_separators_are_normalized() {
        let check = |cwd: &str, path: &str, expected: &str| {
            assert_eq!(
                absolute(Path::new(cwd), Path::new(path)).as_os_str(),
                std::ffi::OsStr::new(expected)
            );
        };
        check(r"C:\w", r"\\?\C:\src\a.c", r"C:\src\a.c");
        check(r"C:\w", "inc/../b/x.h", r"C:\w\b\x.h");
        check(r"C:\w", r"\\?\UNC\server\share\x.h", r"\\server\share\x.h");
    }

    #[test]
    fn clean_absolute_paths_are_borrowed() {
        let cwd = Path::new("/w");
        for clean in ["/usr/include/stdio.h", "/", "/a/.hidden/b..c"] {
            assert!(
                matches!(absolute_cow(cwd, Path::new(clean)), Cow::Borrowed(_)),
                "{clean}"
            );
        }
        for unclean in ["rel.h", "/a/../b", "/a/./b", "/a//b", "/a/", "/a/.."] {
            assert!(
                matches!(absolute_cow(cwd, Path::new(unclean)), Cow::Owned(_)),
                "{unclean}"
            );
        }
    }
}
