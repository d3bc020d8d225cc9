//! clang-tidy and include-what-you-use command lines.
//!
//! Both analyse one translation unit with clang's front end and print diagnostics; the cache
//! needs the source, the compile arguments (to find the headers the tool reads), and the
//! tool's own options and configuration files.

use crate::NotCacheable;
use std::ffi::OsString;
use std::path::PathBuf;

/// A cacheable clang-tidy call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TidyInvocation {
    /// The one source analysed, as written.
    pub source: PathBuf,
    /// Arguments after `--` (a fixed compile command), or `None` when clang-tidy looks the
    /// source up in a compilation database.
    pub fixed_args: Option<Vec<OsString>>,
    /// `-p`: the build directory holding `compile_commands.json`.
    pub build_dir: Option<PathBuf>,
    /// `--config-file`.
    pub config_file: Option<PathBuf>,
    /// `--extra-arg-before` and `--extra-arg` values: added to the compile command.
    pub extra_before: Vec<OsString>,
    pub extra_after: Vec<OsString>,
}

/// clang-tidy options that take a value (as `-opt=v`, `--opt=v`, or `-opt v`).
const TIDY_VALUE_OPTIONS: &[&str] = &[
    "checks",
    "config",
    "config-file",
    "export-fixes",
    "extra-arg",
    "extra-arg-before",
    "format-style",
    "header-filter",
    "line-filter",
    "load",
    "p",
    "store-check-profile",
    "vfsoverlay",
    "warnings-as-errors",
];

/// clang-tidy options without a value that keep the call cacheable.
const TIDY_FLAGS: &[&str] = &[
    "quiet",
    "use-color",
    "system-headers",
    "allow-enabling-analyzer-alpha-checkers",
    "fix-notes",
];

/// clang-tidy options that make the call something the cache must not replay.
const TIDY_REFUSED: &[(&str, &str)] = &[
    ("fix", "clang_tidy_fix"),
    ("fix-errors", "clang_tidy_fix"),
    ("export-fixes", "clang_tidy_fix"),
    ("list-checks", "clang_tidy_query"),
    ("dump-config", "clang_tidy_query"),
    ("explain-config", "clang_tidy_query"),
    ("verify-config", "clang_tidy_query"),
    ("help", "clang_tidy_query"),
    ("help-list", "clang_tidy_query"),
    ("version", "clang_tidy_query"),
    ("load", "compiler_plugin"),
    ("vfsoverlay", "unhashed_input"),
    ("store-check-profile", "extra_output"),
    ("enable-check-profile", "extra_output"),
];

fn refuse(reason: &'static str, detail: impl Into<String>) -> NotCacheable {
    NotCacheable {
        reason,
        detail: detail.into(),
    }
}

/// Parses clang-tidy's arguments (without argv\[0\]).
pub fn parse_clang_tidy(args: &[OsString]) -> Result<TidyInvocation, NotCacheable> {
    let split = args.iter().position(|a| a == "--");
    let (own, fixed) = match split {
        Some(at) => (&args[..at], Some(args[at + 1..].to_vec())),
        None => (args, None),
    };
    let mut tidy = TidyInvocation {
        source: PathBuf::new(),
        fixed_args: fixed,
        build_dir: None,
        config_file: None,
        extra_before: Vec::new(),
        extra_after: Vec::new(),
    };
    let mut sources = Vec::new();
    let mut i = 0;
    while i < own.len() {
        let arg = &own[i];
        i += 1;
        let Some(text) = arg.to_str() else {
            return Err(refuse("unsupported_flag", arg.to_string_lossy()));
        };
        if text.starts_with('@') {
            return Err(refuse("response_file", text));
        }
        let Some(option) = text.strip_prefix("--").or_else(|| text.strip_prefix('-')) else {
            sources.push(PathBuf::from(text));
            continue;
        };
        if option.is_empty() {
            return Err(refuse("stdin_input", text));
        }
        let (name, joined) = match option.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (option, None),
        };
        if let Some((_, reason)) = TIDY_REFUSED.iter().find(|(n, _)| *n == name) {
            // `--fix=false` and the like turn an option off.
            if joined.as_deref() != Some("false") && joined.as_deref() != Some("0") {
                return Err(refuse(reason, text));
            }
            continue;
        }
        if TIDY_VALUE_OPTIONS.contains(&name) {
            let value = match joined {
                Some(value) => value,
                None => {
                    let next = own.get(i).ok_or_else(|| refuse("missing_argument", text))?;
                    i += 1;
                    next.to_str()
                        .ok_or_else(|| refuse("unsupported_flag", next.to_string_lossy()))?
                        .to_string()
                }
            };
            match name {
                "p" => tidy.build_dir = Some(PathBuf::from(value)),
                "config-file" => tidy.config_file = Some(PathBuf::from(value)),
                "extra-arg" => tidy.extra_after.push(OsString::from(value)),
                "extra-arg-before" => tidy.extra_before.push(OsString::from(value)),
                _ => {}
            }
            continue;
        }
        if TIDY_FLAGS.contains(&name) {
            continue;
        }
        return Err(refuse("unsupported_flag", text));
    }
    match sources.len() {
        0 => Err(refuse("no_input", "")),
        1 => {
            tidy.source = sources.remove(0);
            Ok(tidy)
        }
        n => Err(refuse("multiple_sources", format!("{n} sources"))),
    }
}

/// A cacheable include-what-you-use call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IwyuInvocation {
    /// The clang arguments, without the `-Xiwyu` options.
    pub clang_args: Vec<OsString>,
    /// The `-Xiwyu` option values, in order.
    pub iwyu_options: Vec<String>,
    /// `--mapping_file=` values: read by the tool.
    pub mapping_files: Vec<PathBuf>,
}

/// Splits include-what-you-use's arguments (without argv\[0\]) into its own and clang's.
pub fn parse_iwyu(args: &[OsString]) -> Result<IwyuInvocation, NotCacheable> {
    let mut iwyu = IwyuInvocation {
        clang_args: Vec::new(),
        iwyu_options: Vec::new(),
        mapping_files: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg != "-Xiwyu" {
            iwyu.clang_args.push(arg.clone());
            continue;
        }
        let value = args
            .get(i)
            .ok_or_else(|| refuse("missing_argument", "-Xiwyu"))?;
        i += 1;
        let value = value
            .to_str()
            .ok_or_else(|| refuse("unsupported_flag", value.to_string_lossy()))?;
        let option = value.trim_start_matches('-');
        if let Some(path) = option.strip_prefix("mapping_file=") {
            iwyu.mapping_files.push(PathBuf::from(path));
        } else if option == "mapping_file" {
            return Err(refuse("missing_argument", value));
        } else if option.starts_with("help") || option == "version" {
            return Err(refuse("iwyu_query", value));
        }
        iwyu.iwyu_options.push(value.to_string());
    }
    Ok(iwyu)
}

/// The files an IWYU mapping file pulls in with `{ ref: "other.imp" }`, as written.
pub fn mapping_refs(text: &str) -> Vec<String> {
    let mut refs = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("ref:") {
        rest = &rest[at + 4..];
        let trimmed = rest.trim_start();
        if let Some(quoted) = trimmed.strip_prefix('"') {
            if let Some(end) = quoted.find('"') {
                refs.push(quoted[..end].to_string());
            }
        }
    }
    refs
}

/// Splits a compilation database `command` string the way a POSIX shell splits words
/// (quotes and backslashes), which is how clang's tooling reads it.
pub fn split_command(command: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => {
                word.push(chars.next()?);
                in_word = true;
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => {
                            let next = chars.next()?;
                            if !matches!(next, '"' | '\\' | '$' | '`') {
                                word.push('\\');
                            }
                            word.push(next);
                        }
                        c => word.push(c),
                    }
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// Removes what makes a compile command produce outputs (`-o`, `-c`, dependency-file
/// options, `-fsyntax-only`), so it can be rerun to list the headers a source reads.
pub fn without_outputs(args: &[OsString]) -> Vec<OsString> {
    let mut kept = Vec::with_capacity(args.len());
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let text = arg.to_string_lossy();
        match text.as_ref() {
            "-o" | "-MF" | "-MT" | "-MQ" | "-MJ" => {
                i += 1;
                continue;
            }
            "-c" | "-S" | "-E" | "-M" | "-MM" | "-MD" | "-MMD" | "-MP" | "-MG"
            | "-fsyntax-only" => continue,
            _ => {}
        }
        if ["-o", "-MF", "-MT", "-MQ", "-MJ"]
            .iter()
            .any(|flag| text.starts_with(flag) && text.len() > flag.len())
        {
            continue;
        }
        kept.push(arg.clone());
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn tidy_with_a_fixed_compile_command() {
        let tidy = parse_clang_tidy(&args(
            "--checks=-*,readability-* -header-filter .* a.cpp --quiet --extra-arg=-DX \
             --extra-arg-before -Iinc -- -std=c++17 -Iinc",
        ))
        .unwrap();
        assert_eq!(tidy.source, PathBuf::from("a.cpp"));
        assert_eq!(tidy.fixed_args.unwrap(), args("-std=c++17 -Iinc"));
        assert_eq!(tidy.extra_after, args("-DX"));
        assert_eq!(tidy.extra_before, args("-Iinc"));
        assert_eq!(tidy.build_dir, None);
    }

    #[test]
    fn tidy_with_a_compilation_database() {
        let tidy = parse_clang_tidy(&args("-p build src/a.cpp --config-file=tidy.yml")).unwrap();
        assert_eq!(tidy.build_dir, Some(PathBuf::from("build")));
        assert_eq!(tidy.config_file, Some(PathBuf::from("tidy.yml")));
        assert_eq!(tidy.fixed_args, None);
        let tidy = parse_clang_tidy(&args("-p=build src/a.cpp")).unwrap();
        assert_eq!(tidy.build_dir, Some(PathBuf::from("build")));
    }

    #[test]
    fn tidy_refusals() {
        for (line, reason) in [
            ("--fix a.cpp --", "clang_tidy_fix"),
            ("-fix-errors a.cpp --", "clang_tidy_fix"),
            ("--export-fixes=f.yaml a.cpp --", "clang_tidy_fix"),
            ("--export-fixes f.yaml a.cpp --", "clang_tidy_fix"),
            ("--list-checks", "clang_tidy_query"),
            ("--dump-config a.cpp --", "clang_tidy_query"),
            ("--load=plugin.so a.cpp --", "compiler_plugin"),
            ("a.cpp b.cpp --", "multiple_sources"),
            ("-- -std=c++17", "no_input"),
            ("--frobnicate a.cpp --", "unsupported_flag"),
            ("--checks", "missing_argument"),
            ("@opts a.cpp", "response_file"),
        ] {
            assert_eq!(
                parse_clang_tidy(&args(line)).unwrap_err().reason,
                reason,
                "{line}"
            );
        }
        assert!(parse_clang_tidy(&args("--fix=false a.cpp --")).is_ok());
    }

    #[test]
    fn iwyu_options_are_split_from_clang_args() {
        let iwyu = parse_iwyu(&args(
            "-std=c++17 -Xiwyu --mapping_file=my.imp -Iinc -Xiwyu --error=3 a.cpp",
        ))
        .unwrap();
        assert_eq!(iwyu.clang_args, args("-std=c++17 -Iinc a.cpp"));
        assert_eq!(iwyu.iwyu_options, ["--mapping_file=my.imp", "--error=3"]);
        assert_eq!(iwyu.mapping_files, [PathBuf::from("my.imp")]);
        assert_eq!(
            parse_iwyu(&args("a.cpp -Xiwyu")).unwrap_err().reason,
            "missing_argument"
        );
        assert_eq!(
            parse_iwyu(&args("-Xiwyu --help")).unwrap_err().reason,
            "iwyu_query"
        );
    }

    #[test]
    fn mapping_file_references() {
        let text = r#"[
  { include: ["<a.h>", "private", "<b.h>", "public"] },
  { ref: "more.imp" },
  { ref:"dir/other.imp" }
]"#;
        assert_eq!(mapping_refs(text), ["more.imp", "dir/other.imp"]);
    }

    #[test]
    fn shell_splitting_of_database_commands() {
        assert_eq!(
            split_command(r#"/usr/bin/c++ -DX="a b" -I'my dir' -c a\ b.cpp -o a.o"#).unwrap(),
            [
                "/usr/bin/c++",
                "-DX=a b",
                "-Imy dir",
                "-c",
                "a b.cpp",
                "-o",
                "a.o"
            ]
        );
        assert_eq!(
            split_command(r#"cc -DS="\"q\"" x.c"#).unwrap(),
            ["cc", r#"-DS="q""#, "x.c"]
        );
        assert_eq!(split_command("cc 'open").as_deref(), None);
        assert_eq!(split_command("  ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn outputs_are_removed_from_compile_commands() {
        assert_eq!(
            without_outputs(&args(
                "-c a.cpp -o a.o -MD -MF a.d -MT a.o -Iinc -oother.o -MFx.d -fsyntax-only -O2"
            )),
            args("a.cpp -Iinc -O2")
        );
    }
}
