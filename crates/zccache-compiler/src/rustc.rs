//! rustc command lines as cargo writes them, and rustc's dep-info files.

use std::ffi::OsString;
use std::path::PathBuf;

/// A cacheable rustc invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RustInvocation {
    pub crate_name: String,
    pub crate_types: Vec<String>,
    /// The crate root as written (relative to the cwd unless absolute).
    pub source: PathBuf,
    pub out_dir: PathBuf,
    /// `-C extra-filename`, part of every output's name.
    pub extra_filename: String,
    /// `--extern name=path`; crates without a path come from the sysroot.
    pub externs: Vec<(String, PathBuf)>,
    /// `-L [kind=]dir`, with the kind (`all` when none is given).
    pub search_dirs: Vec<(String, PathBuf)>,
    /// `-l [kind[:modifiers]=]name[:rename]`: the kind and the library name.
    pub native_libs: Vec<(String, String)>,
    /// The invocation runs a linker (bin, dylib, cdylib, proc-macro, or `--test`).
    pub links: bool,
    /// `-C linker=`: the linker program, when not the default `cc`.
    pub linker: Option<PathBuf>,
    /// `-C incremental=`: rustc keeps incremental state there.
    pub incremental: Option<PathBuf>,
    /// The arguments as they enter the cache key: flag and value apart, and without the paths
    /// that cannot reach the output, so that another checkout or target directory shares the
    /// entry: the output directory (its files are restored to the caller's; the dep-info that
    /// names it is rewritten), the directories of `-L dependency=`/`crate=` (crates are found
    /// there by the hash in their names) and, for crates that do not link, of every `-L` (only
    /// bundled static libraries are read from them, keyed by content), and `--extern` paths
    /// (the crates' contents are keyed).
    pub key_args: Vec<String>,
}

/// Whether rustc writes `path` into a dep-info file as it is (no escaping): only then can a
/// restored dep-info file have one output directory's paths swapped for another's.
pub fn depinfo_verbatim(path: &str) -> bool {
    !path
        .chars()
        .any(|c| matches!(c, ' ' | '\\' | '#' | '$' | ':' | '\n' | '\r' | '\t'))
}

impl RustInvocation {
    /// Where rustc writes the dep-info file.
    pub fn depinfo_path(&self) -> PathBuf {
        self.out_dir
            .join(format!("{}{}.d", self.crate_name, self.extra_filename))
    }
}

/// What a rustc argument list means for the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedRust {
    Cacheable(Box<RustInvocation>),
    /// A query (`-vV`, `--print`): run it directly, it is cheap and reads no sources.
    Probe,
    NotCacheable(crate::NotCacheable),
}

/// True for argument lists that only query the compiler: the client runs these itself without
/// asking the daemon.
pub fn is_rustc_probe(args: &[OsString]) -> bool {
    args.iter().any(|a| {
        let a = a.as_encoded_bytes();
        a == b"-vV"
            || a == b"-V"
            || a == b"--version"
            || a == b"-"
            || a.starts_with(b"--print")
            || a == b"--help"
            || a == b"-h"
    })
}

/// What `--print` may ask for in a query the daemon answers from memory: facts about the
/// toolchain and target that need no source, and are not written to a file (`--print=k=path`).
const ANSWERABLE_PRINTS: &[&str] = &[
    "file-names",
    "sysroot",
    "target-libdir",
    "split-debuginfo",
    "crate-name",
    "cfg",
    "check-cfg",
    "target-list",
    "host-tuple",
    "target-cpus",
    "target-features",
    "relocation-models",
    "code-models",
    "tls-models",
    "stack-protector-strategies",
    "calling-conventions",
    "supported-crate-types",
    "deployment-target",
    "target-spec-json",
    "all-target-specs-json",
];

/// `-C` options a query the daemon answers may carry: they change `--print=cfg` and
/// `--print=file-names` but read and write no file (`profile-use`, `llvm-args` and the like
/// may).
const ANSWERABLE_CODEGEN: &[&str] = &[
    "target-cpu",
    "target-feature",
    "relocation-model",
    "code-model",
    "opt-level",
    "debuginfo",
    "debug-assertions",
    "overflow-checks",
    "panic",
    "force-frame-pointers",
    "force-unwind-tables",
    "soft-float",
    "strip",
    "split-debuginfo",
    "codegen-units",
    "embed-bitcode",
    "lto",
    "metadata",
    "extra-filename",
    "prefer-dynamic",
];

/// How a rustc query reads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryInput {
    /// It reads nothing (`-vV`).
    None,
    /// It names `-` as its crate: rustc reads stdin, which must be empty for an answer from
    /// memory to be the same (cargo's probe runs with stdin on `/dev/null`).
    Stdin,
}

/// A query whose output depends only on the toolchain, these arguments and a few variables, so
/// the daemon may answer it from memory (cargo runs `rustc -vV` up to four times and its
/// `--print` probe once per build after `cargo clean`). `None` for anything else: another
/// flag, a target given as a file, a print written to a file, or a call that would compile.
pub fn answerable_rustc_query(args: &[OsString]) -> Option<QueryInput> {
    let mut input = QueryInput::None;
    let mut asks = false;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].to_str()?;
        i += 1;
        match arg {
            "-vV" | "-V" | "--version" => asks = true,
            "-v" | "--verbose" => {}
            "-" => input = QueryInput::Stdin,
            _ => {
                // Any other argument is a flag of [`QUERY_FLAGS`] with its value, joined
                // (`--print=cfg`, `-Wwarnings`) or next.
                let (flag, joined) = query_flag(arg)?;
                let value = match joined {
                    Some(value) => value,
                    None => {
                        i += 1;
                        args.get(i - 1)?.to_str()?
                    }
                };
                // rustc expands `@file` wherever it appears, values included.
                if value.starts_with('@') {
                    return None;
                }
                match flag {
                    "--print" if ANSWERABLE_PRINTS.contains(&value) => asks = true,
                    "--print" => return None,
                    // Codegen options change `--print=cfg`; only those that read no file.
                    "-C" => {
                        let key = value.split('=').next().unwrap_or_default();
                        if !ANSWERABLE_CODEGEN.contains(&key) {
                            return None;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    asks.then_some(input)
}

/// The flags with a value a query the daemon answers may carry. Not `--target`: a name that
/// is not built in is looked up as `<name>.json` in the cwd and along RUST_TARGET_PATH, files
/// read at each call.
const QUERY_FLAGS: &[&str] = &[
    "--print",
    "--crate-name",
    "--crate-type",
    "--edition",
    "--cfg",
    "-C",
    "-W",
    "-A",
    "-D",
    "-F",
];

/// `arg` as one of [`QUERY_FLAGS`] and its joined value (`--flag=value`, `-Fvalue`), if any.
fn query_flag(arg: &str) -> Option<(&'static str, Option<&str>)> {
    QUERY_FLAGS.iter().find_map(|&flag| {
        let rest = arg.strip_prefix(flag)?;
        if rest.is_empty() {
            Some((flag, None))
        } else if flag.starts_with("--") {
            Some((flag, Some(rest.strip_prefix('=')?)))
        } else {
            Some((flag, Some(rest)))
        }
    })
}

/// Flags that take a value, long spelling (`--flag value` or `--flag=value`).
const LONG_WITH_VALUE: &[&str] = &[
    "--crate-name",
    "--edition",
    "--crate-type",
    "--emit",
    "--out-dir",
    "--target",
    "--cap-lints",
    "--cfg",
    "--check-cfg",
    "--extern",
    "--sysroot",
    "--remap-path-prefix",
    "--error-format",
    "--json",
    "--color",
    "--diagnostic-width",
    "--codegen",
    "--force-warn",
    "--explain",
    "--print",
    "--env-set",
    "--crate-attr",
    "--allow",
    "--warn",
    "--deny",
    "--forbid",
];

/// Short flags that take a value, joined (`-Copt-level=3`) or separate (`-C opt-level=3`).
const SHORT_WITH_VALUE: &[&str] = &["-C", "-L", "-l", "-A", "-W", "-D", "-F", "-Z", "-o"];

/// Parses rustc's arguments (without argv\[0\]).
pub fn parse_rustc(args: &[OsString]) -> ParsedRust {
    if is_rustc_probe(args) {
        return ParsedRust::Probe;
    }
    let refuse = |reason: &'static str, detail: &str| {
        ParsedRust::NotCacheable(crate::NotCacheable {
            reason,
            detail: detail.to_string(),
        })
    };
    let mut crate_name = None;
    let mut crate_types = Vec::new();
    let mut emit: Vec<String> = Vec::new();
    let mut out_dir = None;
    let mut source = None;
    let mut externs = Vec::new();
    let mut search_dirs = Vec::new();
    let mut native_libs = Vec::new();
    let mut codegen: Vec<String> = Vec::new();
    let mut test = false;
    let mut key_args: Vec<String> = Vec::with_capacity(args.len() + 8);
    // Indices in `key_args` of `-L` directories that only a linking crate reads.
    let mut link_search_dirs: Vec<(usize, String)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let Some(arg) = args[i].to_str() else {
            return refuse("unsupported_flag", &args[i].to_string_lossy());
        };
        i += 1;
        if arg.starts_with('@') {
            return refuse("response_file", arg);
        }
        let (flag, value): (&str, Option<String>) = if let Some(flag) = LONG_WITH_VALUE
            .iter()
            .find(|f| arg == **f || arg.starts_with(&format!("{f}=")))
        {
            if arg.len() > flag.len() {
                (flag, Some(arg[flag.len() + 1..].to_string()))
            } else {
                let Some(next) = args.get(i).and_then(|a| a.to_str()) else {
                    return refuse("missing_argument", arg);
                };
                i += 1;
                (flag, Some(next.to_string()))
            }
        } else if let Some(flag) = SHORT_WITH_VALUE.iter().find(|f| arg.starts_with(**f)) {
            if arg.len() > flag.len() {
                (flag, Some(arg[flag.len()..].to_string()))
            } else {
                let Some(next) = args.get(i).and_then(|a| a.to_str()) else {
                    return refuse("missing_argument", arg);
                };
                i += 1;
                (flag, Some(next.to_string()))
            }
        } else {
            (arg, None)
        };
        key_args.push(flag.to_string());
        match (flag, &value) {
            ("--out-dir", Some(v)) if depinfo_verbatim(v) => key_args.push(String::new()),
            ("--extern", Some(v)) => match v.split_once('=') {
                Some((name, _)) => key_args.push(format!("{name}=")),
                None => key_args.push(v.clone()),
            },
            ("-L", Some(v)) => match v.split_once('=') {
                Some((kind @ ("dependency" | "crate"), _)) => key_args.push(format!("{kind}=")),
                Some((kind @ ("native" | "all"), _)) => {
                    link_search_dirs.push((key_args.len(), format!("{kind}=")));
                    key_args.push(v.clone());
                }
                Some(("framework", _)) => key_args.push(v.clone()),
                _ => {
                    link_search_dirs.push((key_args.len(), "all=".into()));
                    key_args.push(v.clone());
                }
            },
            (_, Some(v)) => key_args.push(v.clone()),
            (_, None) => {}
        }
        match (flag, value) {
            ("--crate-name", Some(v)) => crate_name = Some(v),
            ("--crate-type", Some(v)) => crate_types.extend(v.split(',').map(str::to_string)),
            ("--emit", Some(v)) => emit.extend(v.split(',').map(str::to_string)),
            ("--out-dir", Some(v)) => out_dir = Some(PathBuf::from(v)),
            ("-o", _) => return refuse("explicit_output", arg),
            ("--extern", Some(v)) => {
                let (name, path) = match v.split_once('=') {
                    Some((name, path)) => (name, path),
                    None => (v.as_str(), ""),
                };
                // `--extern priv:name=path`, `noprelude:name`: drop the modifiers.
                let name = name.rsplit(':').next().unwrap_or(name);
                externs.push((name.to_string(), PathBuf::from(path)));
            }
            ("-L", Some(v)) => {
                let (kind, dir) = match v.split_once('=') {
                    Some((kind, dir))
                        if matches!(
                            kind,
                            "dependency" | "crate" | "native" | "framework" | "all"
                        ) =>
                    {
                        (kind.to_string(), dir.to_string())
                    }
                    _ => ("all".to_string(), v.clone()),
                };
                search_dirs.push((kind, PathBuf::from(dir)));
            }
            ("-l", Some(v)) => {
                let (kind, name) = match v.split_once('=') {
                    Some((kind, name)) => {
                        (kind.split(':').next().unwrap_or(kind).to_string(), name)
                    }
                    None => ("dylib".to_string(), v.as_str()),
                };
                let name = name.split(':').next().unwrap_or(name).to_string();
                native_libs.push((kind, name));
            }
            ("-C" | "--codegen", Some(v)) => codegen.push(v),
            ("--test", None) => test = true,
            ("-", None) => return refuse("stdin_input", arg),
            (_, Some(_)) => {}
            (other, None) if other.starts_with('-') => {
                if !matches!(other, "-g" | "-O" | "--verbose" | "-v" | "--test") {
                    return refuse("unsupported_flag", other);
                }
            }
            (positional, None) => {
                if source.is_some() {
                    return refuse("multiple_sources", positional);
                }
                source = Some(PathBuf::from(positional));
            }
        }
    }
    let Some(source) = source else {
        return refuse("no_input", "");
    };
    let Some(out_dir) = out_dir else {
        return refuse("no_out_dir", "");
    };
    let crate_name = match crate_name {
        Some(name) => name,
        None => return refuse("no_crate_name", ""),
    };
    if emit.is_empty() {
        emit.push("link".into());
    }
    for kind in &emit {
        if kind.contains('=') {
            return refuse("emit_to_path", kind);
        }
        if !matches!(kind.as_str(), "dep-info" | "metadata" | "link") {
            return refuse("unsupported_emit", kind);
        }
    }
    if !emit.iter().any(|k| k == "dep-info") {
        return refuse("no_dep_info", "");
    }
    if crate_types.is_empty() {
        crate_types.push("bin".into());
    }
    for crate_type in &crate_types {
        if !matches!(
            crate_type.as_str(),
            "lib" | "rlib" | "staticlib" | "bin" | "proc-macro" | "dylib" | "cdylib"
        ) {
            return refuse("unsupported_crate_type", crate_type);
        }
    }
    let mut extra_filename = String::new();
    let mut linker = None;
    let mut incremental = None;
    let mut link_args = false;
    for option in &codegen {
        let (name, value) = option.split_once('=').unwrap_or((option, ""));
        match name {
            "extra-filename" => extra_filename = value.to_string(),
            "linker" => linker = Some(PathBuf::from(value)),
            "incremental" => incremental = Some(PathBuf::from(value)),
            "link-arg" | "link-args" | "pre-link-arg" | "pre-link-args" => link_args = true,
            "profile-generate" | "profile-use" | "instrument-coverage" | "profile-sample-use" => {
                return refuse("coverage", option)
            }
            "save-temps" => return refuse("save_temps", option),
            "split-debuginfo" if value != "off" => return refuse("split_debuginfo", option),
            _ => {}
        }
    }
    let links = emit.iter().any(|k| k == "link")
        && (test
            || crate_types
                .iter()
                .any(|t| matches!(t.as_str(), "bin" | "dylib" | "cdylib" | "proc-macro")));
    if links && link_args {
        return refuse("unmodelled_link_input", "-C link-arg");
    }
    if !links {
        for (at, kind) in link_search_dirs {
            key_args[at] = kind;
        }
    }
    ParsedRust::Cacheable(Box::new(RustInvocation {
        crate_name,
        crate_types,
        source,
        out_dir,
        extra_filename,
        externs,
        search_dirs,
        native_libs,
        links,
        linker,
        incremental,
        key_args,
    }))
}

/// What rustc's dep-info file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RustDepInfo {
    /// Files the invocation wrote (the rules' targets), in order.
    pub outputs: Vec<String>,
    /// Source files read (prerequisites), without duplicates.
    pub sources: Vec<String>,
    /// `# env-dep:NAME=value` (`None` when the variable was unset).
    pub env: Vec<(String, Option<String>)>,
}

/// Parses a rustc dep-info file: `target: prereqs` rules, phony `file:` rules, and
/// `# env-dep:` comments.
pub fn parse_depinfo(text: &str) -> RustDepInfo {
    let mut info = RustDepInfo::default();
    for line in text.lines() {
        if let Some(env) = line.strip_prefix("# env-dep:") {
            let (name, value) = match env.split_once('=') {
                Some((name, value)) => (name, Some(unescape_env(value))),
                None => (env, None),
            };
            info.env.push((name.to_string(), value));
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((target, prereqs)) = split_rule(line) else {
            continue;
        };
        let prereqs = split_paths(prereqs);
        if prereqs.is_empty() {
            // A phony rule for a source file.
            continue;
        }
        info.outputs.push(unescape_path(target));
        for prereq in prereqs {
            if !info.sources.contains(&prereq) {
                info.sources.push(prereq);
            }
        }
    }
    info
}

/// Splits `target: prereqs` at the first unescaped ": " (or a trailing ':').
fn split_rule(line: &str) -> Option<(&str, &str)> {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if bytes.get(i + 1) == Some(&b' ') => i += 2,
            b':' if matches!(bytes.get(i + 1), None | Some(b' ')) => {
                return Some((&line[..i], line.get(i + 1..).unwrap_or("")));
            }
            _ => i += 1,
        }
    }
    None
}

/// Splits space-separated paths, honouring `\ ` escapes: rustc escapes a space in a path and
/// nothing else, so any other backslash is the path's own (every separator of a Windows path).
fn split_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                chars.next();
                current.push(' ');
            }
            ' ' => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn unescape_path(text: &str) -> String {
    split_paths(text).join(" ")
}

/// rustc escapes `\` and newlines in env-dep values.
fn unescape_env(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    fn cacheable(line: &str) -> RustInvocation {
        match parse_rustc(&args(line)) {
            ParsedRust::Cacheable(inv) => *inv,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn key_args_leave_out_the_target_directory_where_it_cannot_reach_the_output() {
        let lib = |target: &str| {
            cacheable(&format!(
                "--crate-name serde --edition=2018 /reg/serde/src/lib.rs --crate-type lib \
                 --emit=dep-info,metadata,link -C debuginfo=2 -C metadata=9f -C extra-filename=-9f \
                 --out-dir {target}/debug/deps -L dependency={target}/debug/deps \
                 --extern serde_derive={target}/debug/deps/libserde_derive-1.so \
                 -Lnative={target}/debug/build/z/out -l static=z --cap-lints allow"
            ))
            .key_args
        };
        let one = lib("/one/target");
        assert_eq!(one, lib("/elsewhere/t"));
        assert_eq!(
            one.join(" "),
            "--crate-name serde --edition 2018 /reg/serde/src/lib.rs --crate-type lib \
             --emit dep-info,metadata,link -C debuginfo=2 -C metadata=9f -C extra-filename=-9f \
             --out-dir  -L dependency= --extern serde_derive= -L native= -l static=z \
             --cap-lints allow"
        );
        // A crate that links keeps its native search directories: the linker reads them.
        let bin = |target: &str| {
            cacheable(&format!(
                "--crate-name app src/main.rs --crate-type bin --emit=dep-info,link \
                 --out-dir {target}/deps -L dependency={target}/deps -L native={target}/out"
            ))
            .key_args
        };
        assert_ne!(bin("/one"), bin("/two"));
        assert!(bin("/one").contains(&"native=/one/out".to_string()));
        assert!(!bin("/one").iter().any(|a| a.contains("/one/deps")));
        // An output directory that dep-info would escape stays in the key.
        assert_ne!(bin("/a#b"), bin("/a#c"));
    }

    fn reason(line: &str) -> &'static str {
        match parse_rustc(&args(line)) {
            ParsedRust::NotCacheable(nc) => nc.reason,
            other => panic!("{line}: {other:?}"),
        }
    }

    const LIB: &str = "--crate-name foo --edition=2021 src/lib.rs --error-format=json \
        --json=diagnostic-rendered-ansi,artifacts,future-incompat --crate-type lib \
        --emit=dep-info,metadata,link -C embed-bitcode=no -C debuginfo=2 \
        -C metadata=abc -C extra-filename=-abc --out-dir /t/debug/deps \
        -L dependency=/t/debug/deps --extern bar=/t/debug/deps/libbar-1.rlib --cfg feature=\"x\"";

    #[test]
    fn cargo_lib_build() {
        let inv = cacheable(LIB);
        assert_eq!(inv.crate_name, "foo");
        assert_eq!(inv.crate_types, ["lib"]);
        assert_eq!(inv.source, PathBuf::from("src/lib.rs"));
        assert_eq!(inv.out_dir, PathBuf::from("/t/debug/deps"));
        assert_eq!(inv.extra_filename, "-abc");
        assert_eq!(
            inv.externs,
            [(
                "bar".to_string(),
                PathBuf::from("/t/debug/deps/libbar-1.rlib")
            )]
        );
        assert_eq!(
            inv.search_dirs,
            [("dependency".to_string(), PathBuf::from("/t/debug/deps"))]
        );
        assert!(!inv.links);
        assert_eq!(inv.depinfo_path(), PathBuf::from("/t/debug/deps/foo-abc.d"));
    }

    #[test]
    fn linking_crate_types() {
        let bin = cacheable("--crate-name app src/main.rs --crate-type bin --emit=dep-info,link --out-dir /o -C incremental=/i -C linker=clang");
        assert!(bin.links);
        assert_eq!(bin.incremental, Some(PathBuf::from("/i")));
        assert_eq!(bin.linker, Some(PathBuf::from("clang")));
        let check = cacheable(
            "--crate-name app src/main.rs --crate-type bin --emit=dep-info,metadata --out-dir /o",
        );
        assert!(!check.links, "cargo check does not link");
        let pm = cacheable("--crate-name m src/lib.rs --crate-type proc-macro --emit=dep-info,link --out-dir /o --extern proc_macro");
        assert!(pm.links);
        assert_eq!(pm.externs, [("proc_macro".to_string(), PathBuf::new())]);
        let test = cacheable("--crate-name t src/lib.rs --emit=dep-info,link --test --out-dir /o");
        assert!(test.links);
    }

    #[test]
    fn native_libraries() {
        let inv = cacheable("--crate-name s src/lib.rs --crate-type lib --emit=dep-info,link --out-dir /o -L native=/n -l static=z -lfoo -l dylib:+verbatim=bar:baz");
        assert_eq!(
            inv.search_dirs,
            [("native".to_string(), PathBuf::from("/n"))]
        );
        assert_eq!(
            inv.native_libs,
            [
                ("static".to_string(), "z".to_string()),
                ("dylib".to_string(), "foo".to_string()),
                ("dylib".to_string(), "bar".to_string())
            ]
        );
    }

    #[test]
    fn probes() {
        for line in [
            "-vV",
            "- --crate-name ___ --print=file-names --crate-type bin",
            "--print sysroot",
            "--version",
        ] {
            assert_eq!(parse_rustc(&args(line)), ParsedRust::Probe, "{line}");
            assert!(is_rustc_probe(&args(line)));
        }
        assert!(!is_rustc_probe(&args(LIB)));
    }

    #[test]
    fn answerable_queries() {
        let cargo_probe = "- --crate-name ___ --print=file-names --crate-type bin --crate-type rlib --crate-type dylib --crate-type cdylib --crate-type staticlib --crate-type proc-macro --print=sysroot --print=split-debuginfo --print=crate-name --print=cfg -Wwarnings";
        for (line, expected) in [
            ("-vV", Some(QueryInput::None)),
            ("-V", Some(QueryInput::None)),
            ("--version --verbose", Some(QueryInput::None)),
            (cargo_probe, Some(QueryInput::Stdin)),
            ("--print sysroot", Some(QueryInput::None)),
            (
                "--print cfg -C target-feature=+simd128",
                Some(QueryInput::None),
            ),
            (
                "--print=cfg -Ctarget-cpu=native -C opt-level=3",
                Some(QueryInput::None),
            ),
            (
                "--print cfg --cfg foo -A warnings --edition 2021",
                Some(QueryInput::None),
            ),
            // Not a query: these would compile, or write, or read a file.
            ("-", None),
            ("--crate-name x -", None),
            ("--print=native-static-libs -", None),
            ("--print=link-args src/main.rs", None),
            ("--print=cfg=out.txt", None),
            ("--print", None),
            ("--print cfg --target ./my.json", None),
            ("--print cfg --target my-target.json", None),
            // A name not built in is read from ./<name>.json.
            ("--print cfg --target my-board", None),
            ("--print=cfg --target=x86_64-unknown-linux-musl", None),
            // Codegen options that read or write files.
            ("--print cfg -C profile-use=x.profdata", None),
            ("--print cfg -Cllvm-args=-foo", None),
            // `@file` is expanded wherever it appears.
            ("--print cfg --cfg @flags", None),
            ("--print cfg -C @flags", None),
            ("--print cfg -W@flags", None),
            ("--crate-name @flags --print cfg", None),
            ("--print cfg --sysroot /s", None),
            ("--print cfg -Z unstable-options", None),
            ("--print cfg -L /lib", None),
            ("--print cfg @args", None),
            ("--help", None),
            ("-vV src/lib.rs", None),
            (LIB, None),
        ] {
            assert_eq!(answerable_rustc_query(&args(line)), expected, "{line}");
        }
    }

    #[test]
    fn refusals() {
        let cases = [
            ("--crate-name a src/lib.rs --emit=dep-info,link", "no_out_dir"),
            ("--crate-name a src/lib.rs --emit=dep-info,link --out-dir o -o x", "explicit_output"),
            ("--crate-name a src/lib.rs --emit=dep-info,asm --out-dir o", "unsupported_emit"),
            ("--crate-name a src/lib.rs --emit=link --out-dir o", "no_dep_info"),
            ("--crate-name a src/lib.rs --emit=dep-info,link=x.rlib --out-dir o", "emit_to_path"),
            ("--crate-name a a.rs b.rs --emit=dep-info --out-dir o", "multiple_sources"),
            ("--crate-name a src/lib.rs --emit=dep-info,link --out-dir o -C instrument-coverage", "coverage"),
            ("--crate-name a src/main.rs --crate-type bin --emit=dep-info,link --out-dir o -C link-arg=-Tx.ld", "unmodelled_link_input"),
            ("--crate-name a src/lib.rs --emit=dep-info --out-dir o @args", "response_file"),
            ("--crate-name a src/lib.rs --emit=dep-info --out-dir o --frob", "unsupported_flag"),
            ("--crate-name a src/lib.rs --crate-type sdylib --emit=dep-info --out-dir o", "unsupported_crate_type"),
        ];
        for (line, expected) in cases {
            assert_eq!(reason(line), expected, "{line}");
        }
    }

    #[test]
    fn depinfo() {
        let text = "/t/deps/q-1.d: src/lib.rs src/a\\ b.rs\n\n\
/t/deps/libq-1.rlib: src/lib.rs src/a\\ b.rs\n\n\
/t/deps/libq-1.rmeta: src/lib.rs src/a\\ b.rs\n\n\
src/lib.rs:\nsrc/a\\ b.rs:\n\n\
# env-dep:MY_ENV=hello\\nworld\n# env-dep:NOPE\n";
        let info = parse_depinfo(text);
        assert_eq!(
            info.outputs,
            [
                "/t/deps/q-1.d",
                "/t/deps/libq-1.rlib",
                "/t/deps/libq-1.rmeta"
            ]
        );
        assert_eq!(info.sources, ["src/lib.rs", "src/a b.rs"]);
        assert_eq!(
            info.env,
            [
                ("MY_ENV".to_string(), Some("hello\nworld".to_string())),
                ("NOPE".to_string(), None)
            ]
        );
    }

    /// rustc on Windows writes paths with their backslashes and drive colons as they are
    /// (it escapes spaces only): they were read as escapes and the outputs came out as
    /// `Z:tmpws...`, so no Windows crate was ever stored.
    #[test]
    fn windows_depinfo_keeps_its_backslashes() {
        let text = "Z:\\w\\target\\deps\\q-1.d: q\\src\\lib.rs q\\src\\a\\ b.rs\r\n\r\n\
Z:\\w\\target\\deps\\libq-1.rlib: q\\src\\lib.rs q\\src\\a\\ b.rs\r\n\r\n\
q\\src\\lib.rs:\r\n";
        let info = parse_depinfo(text);
        assert_eq!(
            info.outputs,
            [r"Z:\w\target\deps\q-1.d", r"Z:\w\target\deps\libq-1.rlib"]
        );
        assert_eq!(info.sources, [r"q\src\lib.rs", r"q\src\a b.rs"]);
    }
}
