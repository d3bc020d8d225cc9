//! Arguments and paths as bytes.
//!
//! Compiler arguments are parsed byte by byte (`-I`, `@file`, `=`). std's
//! `OsStr::as_encoded_bytes` gives those bytes on every system (the raw bytes on Unix, WTF-8 on
//! Windows), so parsers use it directly; this module holds the way back, which differs.

use std::ffi::{OsStr, OsString};

/// The part of `arg` after its first `skip` bytes, which must be ASCII (a flag such as `@` or
/// `-I`): splitting there keeps the encoding valid on every system.
pub fn after_ascii_prefix(arg: &OsStr, skip: usize) -> &OsStr {
    let bytes = arg.as_encoded_bytes();
    assert!(
        bytes.len() >= skip && bytes[..skip].is_ascii(),
        "after_ascii_prefix: prefix of {arg:?} is not {skip} ASCII bytes"
    );
    // SAFETY: `bytes` came from an `OsStr` and is split right after ASCII bytes, a boundary
    // std documents as valid for `from_encoded_bytes_unchecked`.
    unsafe { OsStr::from_encoded_bytes_unchecked(&bytes[skip..]) }
}

/// Bytes as an `OsStr`: exactly on Unix. On Windows, where file names are UTF-16, bytes that
/// are not UTF-8 name no file; they become a name holding a NUL, which every file API refuses,
/// so a lookup through it fails (a miss, never a wrong file).
pub fn os_str_from_bytes(bytes: &[u8]) -> &OsStr {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        OsStr::from_bytes(bytes)
    }
    #[cfg(not(unix))]
    {
        match std::str::from_utf8(bytes) {
            Ok(s) => OsStr::new(s),
            Err(_) => OsStr::new("\0not UTF-8"),
        }
    }
}

/// Whether `b` separates path components: `/`, and on Windows `\\` too.
#[inline]
pub fn is_separator(b: u8) -> bool {
    b == b'/' || (cfg!(windows) && b == b'\\')
}

/// The part of `path` below `dir` (both lexically normalized and absolute, as bytes), if it is
/// below it: whole components only. On Windows the comparison ignores ASCII case, as NTFS
/// does by default; a name that differs only in case is then taken for the same file, which
/// for the callers (which directories a header could shadow from) errs on the side of
/// checking more.
pub fn below<'a>(path: &'a [u8], dir: &[u8]) -> Option<&'a [u8]> {
    let dir = match dir.split_last() {
        Some((last, rest)) if dir.len() > 1 && is_separator(*last) => rest,
        _ => dir,
    };
    if path.len() < dir.len() {
        return None;
    }
    let (head, rest) = path.split_at(dir.len());
    let same = if cfg!(windows) {
        head.eq_ignore_ascii_case(dir)
    } else {
        head == dir
    };
    if !same {
        return None;
    }
    match rest.first() {
        Some(&b) if is_separator(b) && rest.len() > 1 => Some(&rest[1..]),
        _ if dir.len() == 1 && is_separator(dir[0]) && !rest.is_empty() => Some(rest),
        _ => None,
    }
}

/// An argument read from a file (a response file's token): any bytes on Unix; on Windows,
/// where arguments are UTF-16, bytes that are not UTF-8 are replaced (the compiler would read
/// the file the same way).
pub fn os_string_from_bytes(bytes: Vec<u8>) -> OsString {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        OsString::from_vec(bytes)
    }
    #[cfg(not(unix))]
    {
        match String::from_utf8(bytes) {
            Ok(s) => s.into(),
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned().into(),
        }
    }
}

/// A file name or path as the file system compares it: the bytes themselves on Unix; on
/// Windows, where NTFS ignores case, folded to lower case (ASCII alone when the bytes are not
/// UTF-8). Two names with the same key name the same entry, so sets of names (directory
/// listings, watched paths) are keyed by it.
pub fn name_key(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    if !cfg!(windows) || !bytes.iter().any(|b| b.is_ascii_uppercase() || *b >= 0x80) {
        return Cow::Borrowed(bytes);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Owned(text.to_lowercase().into_bytes()),
        Err(_) => Cow::Owned(bytes.to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_of_an_argument_after_its_flag() {
        assert_eq!(after_ascii_prefix(OsStr::new("@args.rsp"), 1), "args.rsp");
        assert_eq!(after_ascii_prefix(OsStr::new("-Iinc/é"), 2), "inc/é");
        assert_eq!(os_string_from_bytes(b"-DX=1".to_vec()), "-DX=1");
        assert_eq!(os_str_from_bytes(b"dir/a.h"), "dir/a.h");
    }

    #[test]
    fn names_are_keyed_as_the_file_system_compares_them() {
        let windows = cfg!(windows);
        assert_eq!(
            &*name_key(b"Foo.h"),
            if windows { &b"foo.h"[..] } else { b"Foo.h" }
        );
        let accented = "\u{c9}t\u{e9}.H";
        let folded = if windows { "\u{e9}t\u{e9}.h" } else { accented };
        assert_eq!(&*name_key(accented.as_bytes()), folded.as_bytes());
        assert_eq!(&*name_key(b"plain.h"), b"plain.h");
    }

    #[test]
    fn below_compares_whole_components() {
        let check = |p: &str, d: &str| below(p.as_bytes(), d.as_bytes()).map(|r| r.to_vec());
        assert_eq!(check("/a/b/c.h", "/a"), Some(b"b/c.h".to_vec()));
        assert_eq!(check("/a/b/c.h", "/a/"), Some(b"b/c.h".to_vec()));
        assert_eq!(check("/ab/c.h", "/a"), None);
        assert_eq!(check("/a", "/a"), None);
        assert_eq!(check("/x.h", "/"), Some(b"x.h".to_vec()));
        if cfg!(windows) {
            assert_eq!(check(r"C:\Inc\b\c.h", r"c:\inc"), Some(br"b\c.h".to_vec()));
            assert_eq!(check(r"C:\inc\c.h", r"C:\inc\"), Some(b"c.h".to_vec()));
            assert_eq!(check(r"C:\incx\c.h", r"C:\inc"), None);
        } else {
            assert_eq!(check("/A/b.h", "/a"), None);
        }
    }
}
