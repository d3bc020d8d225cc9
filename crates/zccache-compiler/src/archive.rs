//! `ar` command lines that create or update a static library from object files.

use crate::NotCacheable;
use std::ffi::OsString;
use std::path::PathBuf;

/// A cacheable `ar r…`/`ar q…` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArInvocation {
    /// The archive written (and read first, when it exists).
    pub archive: PathBuf,
    /// The member files added, as written.
    pub members: Vec<PathBuf>,
    /// `D` was given: zero timestamps and ids whatever the tool's default.
    pub deterministic: bool,
}

fn refuse(reason: &'static str, detail: impl Into<String>) -> NotCacheable {
    NotCacheable {
        reason,
        detail: detail.into(),
    }
}

/// Parses `ar`'s arguments (without argv\[0\]): an operation with modifiers, the archive, and
/// member files. Only `r` (replace or insert) and `q` (append) with modifiers whose result
/// depends on nothing but the members' content and the archive's are cacheable.
pub fn parse_ar(args: &[OsString]) -> Result<ArInvocation, NotCacheable> {
    let mut words = args.iter();
    let first = words.next().ok_or_else(|| refuse("no_input", ""))?;
    let first = first
        .to_str()
        .ok_or_else(|| refuse("unsupported_flag", first.to_string_lossy()))?;
    if first.starts_with("--") || first.starts_with('@') {
        return Err(refuse("ar_option", first));
    }
    let letters = first.strip_prefix('-').unwrap_or(first);
    let mut operation = None;
    let mut deterministic = false;
    for letter in letters.chars() {
        match letter {
            'r' | 'q' if operation.is_none() => operation = Some(letter),
            'd' | 'm' | 'p' | 't' | 'x' | 'r' | 'q' => return Err(refuse("ar_operation", first)),
            's' | 'S' | 'c' | 'v' | 'f' | 'P' => {}
            'D' => deterministic = true,
            'U' => return Err(refuse("ar_timestamps", first)),
            'u' | 'o' => return Err(refuse("ar_timestamps", first)),
            'T' => return Err(refuse("ar_thin", first)),
            'a' | 'b' | 'i' | 'N' | 'l' => return Err(refuse("ar_position", first)),
            _ => return Err(refuse("unsupported_flag", first)),
        }
    }
    if operation.is_none() {
        return Err(refuse("ar_operation", first));
    }
    let mut rest = Vec::new();
    for word in words {
        let text = word.to_string_lossy();
        if text.starts_with('-') || text.starts_with('@') {
            return Err(refuse("ar_option", text));
        }
        rest.push(PathBuf::from(word));
    }
    if rest.is_empty() {
        return Err(refuse("missing_argument", "archive"));
    }
    let archive = rest.remove(0);
    if rest.contains(&archive) {
        return Err(refuse("output_is_input", archive.display().to_string()));
    }
    Ok(ArInvocation {
        archive,
        members: rest,
        deterministic,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<ArInvocation, &'static str> {
        let args: Vec<OsString> = line.split_whitespace().map(OsString::from).collect();
        parse_ar(&args).map_err(|nc| nc.reason)
    }

    #[test]
    fn create_and_append() {
        let ar = parse("rcs libx.a a.o b.o").unwrap();
        assert_eq!(ar.archive, PathBuf::from("libx.a"));
        assert_eq!(ar.members, [PathBuf::from("a.o"), "b.o".into()]);
        assert!(!ar.deterministic);
        assert!(parse("-rcsD libx.a a.o").unwrap().deterministic);
        assert!(parse("qc libx.a").unwrap().members.is_empty());
        assert!(parse("qcv lib/libx.a sub/a.o").is_ok());
    }

    #[test]
    fn refusals() {
        for (line, reason) in [
            ("t libx.a", "ar_operation"),
            ("x libx.a", "ar_operation"),
            ("d libx.a a.o", "ar_operation"),
            ("s libx.a", "ar_operation"),
            ("rq libx.a a.o", "ar_operation"),
            ("rcU libx.a a.o", "ar_timestamps"),
            ("ru libx.a a.o", "ar_timestamps"),
            ("rcT libx.a a.o", "ar_thin"),
            ("rb a.o libx.a b.o", "ar_position"),
            ("--plugin p.so rc libx.a a.o", "ar_option"),
            ("rc libx.a --target=elf a.o", "ar_option"),
            ("@args", "ar_option"),
            ("rc", "missing_argument"),
            ("rc libx.a libx.a", "output_is_input"),
            ("", "no_input"),
            ("rcz libx.a a.o", "unsupported_flag"),
        ] {
            assert_eq!(parse(line).unwrap_err(), reason, "{line}");
        }
    }
}
