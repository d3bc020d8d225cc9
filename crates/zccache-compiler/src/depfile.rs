//! Make dependency files: reading the one a compiler wrote, and writing the `-MMD` form.
//!
//! zccache always asks the compiler for the full dependency list (`-MD`), because system
//! headers must be in the cache key too. When the build asked for `-MMD`, the file it gets is
//! written here, in the same layout the compiler would have used, so that it is byte for byte
//! what the compiler writes.

use crate::Family;

/// One rule's worth of a depfile: the targets text as written and the prerequisites, each both
/// as written (escaped) and as a path (unescaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Depfile {
    /// Everything before the rule's colon, exactly as the compiler wrote it.
    pub targets: String,
    /// Prerequisites in order.
    pub deps: Vec<Dep>,
}

/// One prerequisite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    /// As it appears in the file (`sp\ ace/y$$h.h`).
    pub escaped: String,
    /// The path it names (`sp ace/y$h.h`).
    pub path: String,
}

/// Parses the first rule of a depfile. `None` when there is no rule.
pub fn parse(text: &str) -> Option<Depfile> {
    // Find the rule's colon: the first ':' that is followed by whitespace or the end, and is
    // not escaped. Targets never contain an unescaped ": ".
    let bytes = text.as_bytes();
    let mut colon = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b':' if matches!(bytes.get(i + 1), None | Some(b' ' | b'\t' | b'\n' | b'\r')) => {
                colon = Some(i);
                break;
            }
            _ => i += 1,
        }
    }
    let colon = colon?;
    let targets = text[..colon].to_string();
    let mut deps = Vec::new();
    let mut escaped = String::new();
    let mut path = String::new();
    let mut chars = text[colon + 1..].chars().peekable();
    let flush = |escaped: &mut String, path: &mut String, deps: &mut Vec<Dep>| {
        if !escaped.is_empty() {
            deps.push(Dep {
                escaped: std::mem::take(escaped),
                path: std::mem::take(path),
            });
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some('\n') => {
                    chars.next();
                    flush(&mut escaped, &mut path, &mut deps);
                }
                Some('\r') => {
                    chars.next();
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    flush(&mut escaped, &mut path, &mut deps);
                }
                Some(&next @ (' ' | '#' | '\\')) => {
                    chars.next();
                    escaped.push('\\');
                    escaped.push(next);
                    path.push(next);
                }
                _ => {
                    escaped.push('\\');
                    path.push('\\');
                }
            },
            '$' if chars.peek() == Some(&'$') => {
                chars.next();
                escaped.push_str("$$");
                path.push('$');
            }
            ' ' | '\t' | '\r' => flush(&mut escaped, &mut path, &mut deps),
            '\n' => break,
            _ => {
                escaped.push(c);
                path.push(c);
            }
        }
    }
    flush(&mut escaped, &mut path, &mut deps);
    Some(Depfile { targets, deps })
}

/// Writes a depfile the way `family` does for `-MD`/`-MMD`: line-wrapped rule, then one empty
/// phony rule per header when `phony` (`-MP`). `deps[0]` is the main source, which gets no
/// phony rule.
pub fn render(family: Family, targets: &str, deps: &[Dep], phony: bool) -> String {
    let mut out = String::new();
    match family {
        Family::Gcc => {
            // gcc counts columns of the escaped text and breaks before a name that would pass
            // column 75.
            const MAX: usize = 75;
            out.push_str(targets);
            out.push(':');
            let mut column = targets.len() + 1;
            for dep in deps {
                let len = dep.escaped.len();
                if column + len > MAX {
                    out.push_str(" \\\n");
                    column = 0;
                }
                out.push(' ');
                out.push_str(&dep.escaped);
                column += len + 1;
            }
            out.push('\n');
            if phony {
                for dep in deps.iter().skip(1) {
                    out.push_str(&dep.escaped);
                    out.push_str(":\n");
                }
            }
        }
        Family::Clang => {
            // clang counts the unescaped length, leaves room for a trailing " \", and indents
            // continuation lines by two spaces.
            const MAX: usize = 75;
            out.push_str(targets);
            out.push(':');
            let mut column = targets.len() + 1;
            for dep in deps {
                let len = dep.path.len();
                if column + len + 1 + 2 > MAX {
                    out.push_str(" \\\n ");
                    column = 2;
                }
                out.push(' ');
                out.push_str(&dep.escaped);
                column += len + 1;
            }
            out.push('\n');
            if phony {
                for dep in deps.iter().skip(1) {
                    out.push('\n');
                    out.push_str(&dep.escaped);
                    out.push_str(":\n");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_escapes_and_continuations() {
        let text = "o$$x\\ y.o: a.c inc/x.h \\\n sp\\ ace/y$$h.h\ninc/x.h:\n";
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.targets, "o$$x\\ y.o");
        let paths: Vec<&str> = parsed.deps.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["a.c", "inc/x.h", "sp ace/y$h.h"]);
        assert_eq!(parsed.deps[2].escaped, "sp\\ ace/y$$h.h");
    }

    #[test]
    fn parses_windows_line_endings_and_empty_rules() {
        let parsed = parse("a.o: a.c \\\r\n b.h\r\n").unwrap();
        let paths: Vec<&str> = parsed.deps.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["a.c", "b.h"]);
        assert_eq!(parse("a.o:\n").unwrap().deps, vec![]);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn target_with_drive_like_colon_is_kept_whole() {
        let parsed = parse("some$$target:x: a.c\n").unwrap();
        assert_eq!(parsed.targets, "some$$target:x");
    }

    #[test]
    fn render_roundtrips_through_parse() {
        for family in [Family::Gcc, Family::Clang] {
            let deps: Vec<Dep> = (0..30)
                .map(|i| Dep {
                    escaped: format!("dir/header_{i}.h"),
                    path: format!("dir/header_{i}.h"),
                })
                .collect();
            let text = render(family, "out.o", &deps, true);
            let back = parse(&text).unwrap();
            assert_eq!(back.targets, "out.o");
            assert_eq!(back.deps, deps);
            assert!(text.lines().all(|l| l.len() <= 78), "{text}");
        }
    }
}
