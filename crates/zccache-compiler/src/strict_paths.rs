//! Strict path validation (`--strict-paths`, `ZCCACHE_STRICT_PATHS`): include-style path flags
//! spelled in ways that defeat `#pragma once` on Windows, where one header reached through
//! `C:/p/inc`, `C:\p\inc` and `C:/p/src/../inc` counts as three files and is included three
//! times. A build that opts in fails fast on such spellings instead of miscompiling later.
//!
//! Pure: [`check`] looks at an argument list (response files already expanded by the caller)
//! and returns the first [`Violation`]; it never touches the file system.

use std::ffi::OsString;
use std::fmt;
use std::path::Path;

/// How strictly path flags are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No checking.
    Off,
    /// Relative or absolute, but one separator style: no path mixes `/` and `\`, and the
    /// checked flags of one call do not use different styles.
    Consistent,
    /// Every checked path is a forward-slash absolute path (`/…`, or a drive path `C:/…`)
    /// without `.` or `..` components.
    Absolute,
}

impl Mode {
    /// Reads a mode as `--strict-paths` and `ZCCACHE_STRICT_PATHS` spell it: `off`, `0` or
    /// empty, `consistent`, `absolute` or `1`. `None` for anything else.
    pub fn parse(value: &str) -> Option<Mode> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "off" => Some(Mode::Off),
            "consistent" => Some(Mode::Consistent),
            "1" | "absolute" => Some(Mode::Absolute),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Consistent => "consistent",
            Mode::Absolute => "absolute",
        }
    }
}

/// Whose option syntax the arguments follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// gcc, clang and their relatives: `/I…` is an input file (an absolute path), not a flag.
    Gcc,
    /// clang-cl and cl: options start with `/` or `-`, and `/I` names an include directory.
    Msvc,
}

impl Dialect {
    /// The dialect of the compiler at `path`, or `None` for tools whose arguments are not
    /// checked (rustc, linkers called by name, archivers, analysers).
    pub fn of(path: &Path) -> Option<Dialect> {
        if crate::detect_tool(path) == Some(crate::ToolKind::GccLike) {
            return Some(Dialect::Gcc);
        }
        let name = path.file_name()?.to_str()?;
        let name = name.strip_suffix(".exe").unwrap_or(name);
        let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        let base = trimmed.strip_suffix('-').unwrap_or(trimmed);
        (base == "cl" || base == "clang-cl" || base.ends_with("-clang-cl")).then_some(Dialect::Msvc)
    }
}

/// Flags whose value is a path, joined (`-Ifoo`) or separate (`-I foo`). Longer spellings that
/// share a prefix come first, so `-include-pch` is not read as `-include` with `-pch`.
const GCC_FLAGS: &[&str] = &[
    "-include-pch",
    "-include",
    "-imacros",
    "-isystem",
    "-iquote",
    "-idirafter",
    "-iframework",
    "-imsvc",
    "-I",
    "-F",
];

/// clang-cl also takes the gcc spellings.
const MSVC_FLAGS: &[&str] = &["/imsvc", "/I"];

/// Options that start like a checked flag but are another option (clang's), never a path flag
/// with a joined value.
const LOOKALIKES: &[&str] = &["-isystem-after", "-iframeworkwithsysroot"];

/// What is wrong with a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// One path uses both `/` and `\`.
    MixedSeparators,
    /// This path uses one separator style and an earlier checked flag the other.
    InconsistentSeparators { earlier: String },
    /// `absolute` mode: a backslash.
    Backslash,
    /// `absolute` mode: not `/…` or `X:/…`.
    NotAbsolute,
    /// `absolute` mode: a `.` or `..` component.
    DotComponent,
}

/// The first offending flag of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The flag as spelled (`-I`, `-isystem`, `/I`).
    pub flag: String,
    /// Its path, as given.
    pub value: String,
    pub problem: Problem,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Violation { flag, value, .. } = self;
        write!(f, "{flag} \"{value}\" ")?;
        match &self.problem {
            Problem::MixedSeparators => write!(f, "mixes '/' and '\\' separators"),
            Problem::InconsistentSeparators { earlier } => write!(
                f,
                "uses a different separator style than the earlier {earlier}"
            ),
            Problem::Backslash => write!(f, "contains '\\' (forward slashes only)"),
            Problem::NotAbsolute => write!(f, "is not an absolute path"),
            Problem::DotComponent => write!(f, "has a '.' or '..' component"),
        }
    }
}

/// Checks every path flag of `args` under `mode`; the first violation, if any.
pub fn check(mode: Mode, dialect: Dialect, args: &[OsString]) -> Result<(), Violation> {
    if mode == Mode::Off {
        return Ok(());
    }
    // The first path with a separator, its style (true: '/') and how it was spelled.
    let mut first_style: Option<(bool, String)> = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy();
        let Some((flag, joined)) = path_flag(&arg, dialect) else {
            continue;
        };
        let value = if joined.is_empty() {
            match args.next() {
                Some(next) => next.to_string_lossy().into_owned(),
                None => continue,
            }
        } else {
            joined.to_string()
        };
        // gcc's `-I-` splits the search path; it names no directory.
        if flag == "-I" && value == "-" {
            continue;
        }
        let violation = |problem| Violation {
            flag: flag.to_string(),
            value: value.clone(),
            problem,
        };
        // A leading '=' stands for the sysroot (gcc); what follows it is the path.
        let path = value.strip_prefix('=').unwrap_or(&value);
        let (slash, backslash) = (path.contains('/'), path.contains('\\'));
        if slash && backslash {
            return Err(violation(Problem::MixedSeparators));
        }
        match mode {
            Mode::Off => {}
            Mode::Consistent if slash || backslash => match &first_style {
                None => first_style = Some((slash, format!("{flag} \"{value}\""))),
                Some((style, earlier)) if *style != slash => {
                    return Err(violation(Problem::InconsistentSeparators {
                        earlier: earlier.clone(),
                    }));
                }
                Some(_) => {}
            },
            Mode::Consistent => {}
            Mode::Absolute => {
                if backslash {
                    return Err(violation(Problem::Backslash));
                }
                if !is_absolute(path) {
                    return Err(violation(Problem::NotAbsolute));
                }
                if has_dot_component(path) {
                    return Err(violation(Problem::DotComponent));
                }
            }
        }
    }
    Ok(())
}

/// The checked flag `arg` starts with and the value joined to it (empty when the value is the
/// next argument).
fn path_flag(arg: &str, dialect: Dialect) -> Option<(&'static str, &str)> {
    if LOOKALIKES.contains(&arg) {
        return None;
    }
    let msvc: &[&str] = match dialect {
        Dialect::Gcc => &[],
        Dialect::Msvc => MSVC_FLAGS,
    };
    GCC_FLAGS
        .iter()
        .chain(msvc)
        .find_map(|flag| Some((*flag, arg.strip_prefix(flag)?)))
}

/// `/…` or a drive path `X:/…`.
fn is_absolute(path: &str) -> bool {
    let bytes = path.as_bytes();
    path.starts_with('/')
        || (bytes.len() >= 3 && bytes[0].is_ascii_alphabetic() && &bytes[1..3] == b":/")
}

/// A `.` or `..` component after the first separator: `/./`, `/../`, or a trailing `/.` or
/// `/..`.
fn has_dot_component(path: &str) -> bool {
    path.split('/')
        .skip(1)
        .any(|component| component == "." || component == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `args` (split on spaces) under `mode`: `Ok` or the violation's flag, value and
    /// problem, in gcc's dialect unless the first word is `cl:`.
    fn check_args(mode: Mode, args: &str) -> Result<(), (String, String, Problem)> {
        let (dialect, args) = match args.strip_prefix("cl: ") {
            Some(rest) => (Dialect::Msvc, rest),
            None => (Dialect::Gcc, args),
        };
        let args: Vec<OsString> = args.split(' ').map(OsString::from).collect();
        check(mode, dialect, &args).map_err(|v| (v.flag, v.value, v.problem))
    }

    fn ok(mode: Mode, args: &str) {
        assert_eq!(check_args(mode, args), Ok(()), "{mode:?}: {args}");
    }

    fn bad(mode: Mode, args: &str, flag: &str, value: &str, problem: Problem) {
        assert_eq!(
            check_args(mode, args),
            Err((flag.to_string(), value.to_string(), problem)),
            "{mode:?}: {args}"
        );
    }

    #[test]
    fn modes_parse_as_documented() {
        for (text, mode) in [
            ("off", Some(Mode::Off)),
            ("0", Some(Mode::Off)),
            ("", Some(Mode::Off)),
            ("consistent", Some(Mode::Consistent)),
            ("absolute", Some(Mode::Absolute)),
            ("1", Some(Mode::Absolute)),
            ("Absolute", Some(Mode::Absolute)),
            ("yes", None),
            ("2", None),
            ("relative", None),
        ] {
            assert_eq!(Mode::parse(text), mode, "{text:?}");
        }
    }

    #[test]
    fn off_checks_nothing() {
        ok(Mode::Off, "-c a.c -Ia/b\\c -I..\\x -I/y");
    }

    #[test]
    fn consistent_mode() {
        use Problem::*;
        let m = Mode::Consistent;
        ok(
            m,
            "-c a.c -Iinclude -I../lib/inc -isystem /usr/x -include cfg.h",
        );
        ok(m, "-c a.c -Iinc\\a -I C:\\sdk\\inc -iquote ..\\q");
        ok(m, "-c src/a.c -Iinc\\a");
        bad(m, "-c a.c -Ia/b\\c", "-I", "a/b\\c", MixedSeparators);
        bad(m, "-c a.c -I a/b\\c", "-I", "a/b\\c", MixedSeparators);
        bad(
            m,
            "-c a.c -Ia/b -I plain -isystem c\\d",
            "-isystem",
            "c\\d",
            InconsistentSeparators {
                earlier: "-I \"a/b\"".into(),
            },
        );
        bad(
            m,
            "-c a.c -includeC:\\p\\cfg.h -include-pch x/y.pch",
            "-include-pch",
            "x/y.pch",
            InconsistentSeparators {
                earlier: "-include \"C:\\p\\cfg.h\"".into(),
            },
        );
    }

    #[test]
    fn absolute_mode() {
        use Problem::*;
        let m = Mode::Absolute;
        ok(
            m,
            "-c a.c -I/w/inc -isystem /usr/include -IC:/p/inc -I=/sys",
        );
        ok(m, "-c ../a.c -o ./a.o -DX=./y -I- -I/w/..hidden/x./y");
        bad(m, "-c a.c -Iinc", "-I", "inc", NotAbsolute);
        bad(m, "-c a.c -iquote ./q", "-iquote", "./q", NotAbsolute);
        bad(m, "-c a.c -I=rel", "-I", "=rel", NotAbsolute);
        bad(m, "-c a.c -I/w/./inc", "-I", "/w/./inc", DotComponent);
        bad(
            m,
            "-c a.c -idirafter/w/src/../inc",
            "-idirafter",
            "/w/src/../inc",
            DotComponent,
        );
        bad(m, "-c a.c -I /w/inc/.", "-I", "/w/inc/.", DotComponent);
        bad(m, "-c a.c -IC:/w/..", "-I", "C:/w/..", DotComponent);
        bad(m, "-c a.c -IC:\\w\\inc", "-I", "C:\\w\\inc", Backslash);
        bad(m, "-c a.c -I/w\\inc", "-I", "/w\\inc", MixedSeparators);
        bad(m, "-c a.c -imacros m.h", "-imacros", "m.h", NotAbsolute);
        bad(m, "-c a.c -F Frameworks", "-F", "Frameworks", NotAbsolute);
        bad(m, "-c a.c -iframeworkFw", "-iframework", "Fw", NotAbsolute);
        bad(m, "-c a.c -imsvc sdk", "-imsvc", "sdk", NotAbsolute);
        bad(
            m,
            "-c a.c -include-pch p.pch",
            "-include-pch",
            "p.pch",
            NotAbsolute,
        );
    }

    #[test]
    fn lookalikes_and_missing_values_are_not_paths() {
        let m = Mode::Absolute;
        ok(m, "-c a.c -isystem-after /x -iframeworkwithsysroot /y -I");
        // In gcc's dialect `/Include/a.c` is a source file.
        ok(m, "-c /Include/a.c /I rel");
    }

    #[test]
    fn msvc_dialect_checks_slash_i() {
        let m = Mode::Absolute;
        bad(m, "cl: /c a.c /Iinc", "/I", "inc", Problem::NotAbsolute);
        bad(
            m,
            "cl: /c a.c /I C:\\inc",
            "/I",
            "C:\\inc",
            Problem::Backslash,
        );
        ok(m, "cl: /c a.c /IC:/inc -I/w");
    }

    #[test]
    fn dialects_by_compiler_name() {
        for (name, dialect) in [
            ("/usr/bin/gcc", Some(Dialect::Gcc)),
            ("clang++-14", Some(Dialect::Gcc)),
            ("emcc", Some(Dialect::Gcc)),
            ("clang-cl", Some(Dialect::Msvc)),
            ("/opt/llvm/bin/clang-cl-17", Some(Dialect::Msvc)),
            ("cl.exe", Some(Dialect::Msvc)),
            ("rustc", None),
            ("ar", None),
            ("clang-tidy", None),
            ("x86_64-w64-mingw32-cl", None),
        ] {
            assert_eq!(Dialect::of(Path::new(name)), dialect, "{name}");
        }
    }
}
