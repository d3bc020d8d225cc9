//! Response files (`@file`): gcc/clang quoting, nesting, and what to do when one can't be read.
//!
//! Both compilers read a response file as whitespace-separated arguments where `'…'` and `"…"`
//! quote and a backslash takes the next character literally; nested `@file`s are resolved
//! against the working directory. A response file that is missing, unreadable or part of a
//! cycle stays as the literal `@file` argument, exactly as the compiler would then see it.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};

use zccache_platform::os_str::{after_ascii_prefix, os_string_from_bytes};

/// Deeper nesting than this is treated like a cycle.
const MAX_DEPTH: usize = 32;

/// Arguments with every readable response file expanded in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    pub args: Vec<OsString>,
    /// The response files that were read, in order.
    pub files: Vec<PathBuf>,
}

/// Splits response-file text into arguments.
pub fn tokenize(text: &[u8]) -> Vec<Vec<u8>> {
    let mut args = Vec::new();
    let mut current = Vec::new();
    let mut in_arg = false;
    let mut quote: Option<u8> = None;
    let mut bytes = text.iter().copied();
    while let Some(byte) = bytes.next() {
        match (quote, byte) {
            (_, b'\\') => {
                if let Some(next) = bytes.next() {
                    current.push(next);
                }
                in_arg = true;
            }
            (Some(q), b) if b == q => quote = None,
            (Some(_), b) => current.push(b),
            (None, b'\'' | b'"') => {
                quote = Some(byte);
                in_arg = true;
            }
            (None, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c') => {
                if in_arg {
                    args.push(std::mem::take(&mut current));
                    in_arg = false;
                }
            }
            (None, b) => {
                current.push(b);
                in_arg = true;
            }
        }
    }
    if in_arg {
        args.push(current);
    }
    args
}

/// Quotes one argument so that [`tokenize`] (and gcc, and clang) read it back unchanged.
pub fn quote(arg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(arg.len() + 2);
    if arg.is_empty() {
        out.extend_from_slice(b"\"\"");
        return out;
    }
    for &byte in arg {
        if matches!(
            byte,
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c' | b'\'' | b'"' | b'\\'
        ) {
            out.push(b'\\');
        }
        out.push(byte);
    }
    out
}

/// Expands `@file` arguments, reading files (relative to `cwd`) with `read`. `None` when no
/// argument names a response file.
pub fn expand(
    args: &[OsString],
    cwd: &Path,
    read: &mut dyn FnMut(&Path) -> io::Result<Vec<u8>>,
) -> Option<Expanded> {
    if !args.iter().any(|arg| is_response_file(arg)) {
        return None;
    }
    let mut expanded = Expanded {
        args: Vec::new(),
        files: Vec::new(),
    };
    let mut stack = Vec::new();
    for arg in args {
        expand_arg(Cow::Borrowed(arg), cwd, read, &mut stack, &mut expanded);
    }
    Some(expanded)
}

fn is_response_file(arg: &OsStr) -> bool {
    let bytes = arg.as_encoded_bytes();
    bytes.len() > 1 && bytes[0] == b'@'
}

/// One argument: kept, or replaced by what its response file holds. Arguments read from a file
/// are moved into the result, not copied: a build's response files can hold hundreds.
fn expand_arg(
    arg: Cow<'_, OsStr>,
    cwd: &Path,
    read: &mut dyn FnMut(&Path) -> io::Result<Vec<u8>>,
    stack: &mut Vec<PathBuf>,
    out: &mut Expanded,
) {
    if !is_response_file(&arg) {
        out.args.push(arg.into_owned());
        return;
    }
    let name = Path::new(after_ascii_prefix(&arg, 1));
    let path = cwd.join(name);
    if stack.len() >= MAX_DEPTH || stack.contains(&path) {
        out.args.push(arg.into_owned());
        return;
    }
    match read(&path) {
        Ok(text) => {
            out.files.push(path.clone());
            stack.push(path);
            for token in tokenize(&text) {
                expand_arg(
                    Cow::Owned(os_string_from_bytes(token)),
                    cwd,
                    read,
                    stack,
                    out,
                );
            }
            stack.pop();
        }
        Err(_) => out.args.push(arg.into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn expand_with(files: &[(&str, &str)], args: &[&str]) -> Option<Expanded> {
        let files: HashMap<PathBuf, Vec<u8>> = files
            .iter()
            .map(|(p, t)| (Path::new("/w").join(p), t.as_bytes().to_vec()))
            .collect();
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        expand(&args, Path::new("/w"), &mut |p: &Path| {
            files
                .get(p)
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        })
    }

    #[test]
    fn quoting_rules() {
        let check = |text: &str, expected: &[&str]| {
            let got: Vec<String> = tokenize(text.as_bytes())
                .into_iter()
                .map(|a| String::from_utf8(a).unwrap())
                .collect();
            assert_eq!(got, expected, "{text:?}");
        };
        check(
            "-DS=\"a b\" '-DT=x y' -DU=a\\ b",
            &["-DS=a b", "-DT=x y", "-DU=a b"],
        );
        check("  -c\n\ta.c\r\n", &["-c", "a.c"]);
        check("'it''s' \"\" ''", &["its", "", ""]);
        check("\"a\\\"b\" 'c\\'d'", &["a\"b", "c'd"]);
        check("", &[]);
        check("-I\"dir with space\"/inc", &["-Idir with space/inc"]);
    }

    #[test]
    fn quote_roundtrips() {
        for arg in [
            "plain",
            "with space",
            "q\"uo'te",
            "back\\slash",
            "",
            "tab\there",
            "-DX=\"a b\"",
        ] {
            let quoted = quote(arg.as_bytes());
            assert_eq!(tokenize(&quoted), vec![arg.as_bytes().to_vec()], "{arg:?}");
        }
    }

    #[test]
    fn nested_files_resolve_against_cwd() {
        let expanded = expand_with(
            &[
                ("sub/a.rsp", "-c @b.rsp"),
                ("b.rsp", "-DV=2 m.c"),
                ("sub/b.rsp", "-DV=1"),
            ],
            &["-O2", "@sub/a.rsp", "-g"],
        )
        .unwrap();
        assert_eq!(strings(&expanded.args), ["-O2", "-c", "-DV=2", "m.c", "-g"]);
        assert_eq!(
            expanded.files,
            [PathBuf::from("/w/sub/a.rsp"), PathBuf::from("/w/b.rsp")]
        );
    }

    #[test]
    fn missing_and_circular_files_stay_literal() {
        let expanded = expand_with(
            &[("a.rsp", "-x @b.rsp"), ("b.rsp", "@a.rsp -y")],
            &["@a.rsp", "@missing.rsp"],
        )
        .unwrap();
        assert_eq!(
            strings(&expanded.args),
            ["-x", "@a.rsp", "-y", "@missing.rsp"]
        );
        assert_eq!(expand_with(&[], &["-c", "a.c", "@"]), None);
    }
}
