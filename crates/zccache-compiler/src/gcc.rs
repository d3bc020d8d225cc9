//! gcc and clang command lines.
//!
//! Two stages, as for every tool: a syntactic pass that walks the arguments with the flag
//! table below (which flags take a value, and whether it may be joined), then a semantic
//! decision: a cacheable single-source compile, or the reason it is not one.

use crate::{NotCacheable, Parsed};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// Source languages we cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    C,
    Cxx,
    /// `.S`/`.sx`: assembler run through the C preprocessor, so includes are tracked.
    AsmWithCpp,
}

impl Language {
    /// The `-x` spelling.
    pub fn as_x(self) -> &'static str {
        match self {
            Language::C => "c",
            Language::Cxx => "c++",
            Language::AsmWithCpp => "assembler-with-cpp",
        }
    }
}

/// How the build asked for dependency output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepMode {
    /// No depfile requested (or it goes to /dev/null).
    None,
    /// `-MD`: the compiler writes every dependency, system headers included, to `path`.
    Full { path: PathBuf },
    /// `-MMD`: like `-MD` without system headers.
    UserOnly { path: PathBuf },
}

/// Include search directories as written, in the compiler's search order within each group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncludeDirs {
    /// `-iquote`: searched for `#include "..."` only, after the includer's directory.
    pub quote: Vec<PathBuf>,
    /// `-I`, searched left to right.
    pub user: Vec<PathBuf>,
    /// `-isystem`, after all `-I`.
    pub system: Vec<PathBuf>,
    /// `-idirafter`, after the compiler's own system directories.
    pub after: Vec<PathBuf>,
}

/// A cacheable compile of one source file to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileInvocation {
    /// The source as written (relative to the caller's cwd unless absolute).
    pub source: PathBuf,
    pub language: Language,
    /// The object as written, or the compiler's default (`<stem>.o` in the cwd).
    pub output: PathBuf,
    pub deps: DepMode,
    /// `-MP`: phony rules for headers.
    pub phony_deps: bool,
    /// Arguments that decide the outputs, in order; where the outputs go (`-o`, `-MF`) is left
    /// out, because a hit may be written anywhere.
    pub key_args: Vec<OsString>,
    pub include_dirs: IncludeDirs,
    /// Arguments that change the compiler's built-in include directories (`--sysroot`,
    /// `-nostdinc`, `-stdlib=`, `--target`...), for probing them.
    pub search_args: Vec<OsString>,
    /// Debug information is generated: it records the working directory.
    pub debug_info: bool,
    /// `-march=native` and friends: the output depends on this machine's CPU.
    pub native_cpu: bool,
    /// The build chose diagnostic colours itself (`-fdiagnostics-color=…`, `-f[no-]color-diagnostics`).
    pub colour_explicit: bool,
    /// Positions of `-MD`, `-MMD` and `-MF <file>` in the arguments, so they can be replaced
    /// by a depfile request of our own.
    dep_arg_positions: Vec<usize>,
}

/// `gcc -c a.c b.c …`: one compile per source, sharing every flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiCompile {
    /// One unit per source, in order, each as if compiled alone.
    pub units: Vec<CompileInvocation>,
    /// Where each unit's source sits in the arguments.
    source_positions: Vec<usize>,
    dep_arg_positions: Vec<usize>,
}

impl MultiCompile {
    /// `args` compiling only the units in `keep`, with the build's `-MD`/`-MMD` replaced by
    /// `-MD`: every unit then writes its full dependency list beside its object.
    pub fn args_for(&self, args: &[OsString], keep: &[usize]) -> Vec<OsString> {
        let dropped: Vec<usize> = self
            .source_positions
            .iter()
            .enumerate()
            .filter(|(unit, _)| !keep.contains(unit))
            .map(|(_, position)| *position)
            .chain(self.dep_arg_positions.iter().copied())
            .collect();
        let mut out: Vec<OsString> = args
            .iter()
            .enumerate()
            .filter(|(i, _)| !dropped.contains(i))
            .map(|(_, a)| a.clone())
            .collect();
        out.push(OsString::from("-MD"));
        out
    }
}

impl CompileInvocation {
    /// `args` with the build's own `-MD`/`-MMD`/`-MF` replaced by `-MD -MF <depfile>`: the full
    /// dependency list, written where we can read it. Other dependency flags (`-MT`, `-MP`)
    /// stay, so the file's targets are the ones the build asked for.
    pub fn args_with_depfile(&self, args: &[OsString], depfile: &Path) -> Vec<OsString> {
        let mut out: Vec<OsString> = args
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.dep_arg_positions.contains(i))
            .map(|(_, a)| a.clone())
            .collect();
        out.extend([
            OsString::from("-MD"),
            OsString::from("-MF"),
            depfile.as_os_str().to_os_string(),
        ]);
        out
    }
}

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arity {
    /// `-I dir` or `-Idir`.
    SeparateOrJoined,
    /// `-Xclang arg` only.
    Separate,
}

/// What a flag does to the cache decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Part of the key, nothing else.
    Key,
    /// Part of the key and of the include-directory probe.
    Search,
    Output,
    DepFile,
    DepTarget,
    Language,
    IncludeUser,
    IncludeSystem,
    IncludeQuote,
    IncludeAfter,
    /// Cannot be cached: the reason.
    Refuse(&'static str),
}

/// A flag that takes a value: its spelling, how the value follows, and what it does.
type ValuedFlag = (&'static str, Arity, Role);

/// Flags that take a value. Longest spellings first where one is a prefix of another.
const FLAGS_WITH_VALUE: &[ValuedFlag] = &[
    ("-o", Arity::SeparateOrJoined, Role::Output),
    ("-x", Arity::SeparateOrJoined, Role::Language),
    ("-MF", Arity::SeparateOrJoined, Role::DepFile),
    ("-MT", Arity::SeparateOrJoined, Role::DepTarget),
    ("-MQ", Arity::SeparateOrJoined, Role::DepTarget),
    ("-MJ", Arity::SeparateOrJoined, Role::Refuse("extra_output")),
    ("-I", Arity::SeparateOrJoined, Role::IncludeUser),
    ("-isystem", Arity::SeparateOrJoined, Role::IncludeSystem),
    ("-iquote", Arity::SeparateOrJoined, Role::IncludeQuote),
    ("-idirafter", Arity::SeparateOrJoined, Role::IncludeAfter),
    ("-isysroot", Arity::SeparateOrJoined, Role::Search),
    (
        "-iprefix",
        Arity::SeparateOrJoined,
        Role::Refuse("unsupported_flag"),
    ),
    (
        "-iwithprefixbefore",
        Arity::SeparateOrJoined,
        Role::Refuse("unsupported_flag"),
    ),
    (
        "-iwithprefix",
        Arity::SeparateOrJoined,
        Role::Refuse("unsupported_flag"),
    ),
    (
        "-imultilib",
        Arity::SeparateOrJoined,
        Role::Refuse("unsupported_flag"),
    ),
    ("-iframework", Arity::SeparateOrJoined, Role::Search),
    (
        "-include-pch",
        Arity::SeparateOrJoined,
        Role::Refuse("precompiled_header"),
    ),
    ("-include", Arity::SeparateOrJoined, Role::Key),
    ("-imacros", Arity::SeparateOrJoined, Role::Key),
    (
        "-ivfsoverlay",
        Arity::SeparateOrJoined,
        Role::Refuse("unsupported_flag"),
    ),
    ("-D", Arity::SeparateOrJoined, Role::Key),
    ("-U", Arity::SeparateOrJoined, Role::Key),
    ("-A", Arity::SeparateOrJoined, Role::Key),
    ("-L", Arity::SeparateOrJoined, Role::Key),
    ("-l", Arity::SeparateOrJoined, Role::Key),
    ("-T", Arity::SeparateOrJoined, Role::Key),
    ("-u", Arity::SeparateOrJoined, Role::Key),
    ("-z", Arity::SeparateOrJoined, Role::Key),
    ("-e", Arity::SeparateOrJoined, Role::Key),
    ("-F", Arity::SeparateOrJoined, Role::Search),
    ("-G", Arity::SeparateOrJoined, Role::Key),
    (
        "-B",
        Arity::SeparateOrJoined,
        Role::Refuse("compiler_prefix"),
    ),
    ("-Xclang", Arity::Separate, Role::Refuse("unsupported_flag")),
    (
        "-Xpreprocessor",
        Arity::Separate,
        Role::Refuse("unsupported_flag"),
    ),
    (
        "-Xassembler",
        Arity::Separate,
        Role::Refuse("unsupported_flag"),
    ),
    ("-Xlinker", Arity::Separate, Role::Key),
    ("-mllvm", Arity::Separate, Role::Key),
    ("-aux-info", Arity::Separate, Role::Refuse("extra_output")),
    ("--param", Arity::Separate, Role::Key),
    ("-target", Arity::Separate, Role::Search),
    ("-arch", Arity::Separate, Role::Search),
    ("-gcc-toolchain", Arity::Separate, Role::Search),
    ("--sysroot", Arity::Separate, Role::Search),
    ("-dumpbase", Arity::Separate, Role::Refuse("extra_output")),
    ("-dumpdir", Arity::Separate, Role::Refuse("extra_output")),
    (
        "-dumpbase-ext",
        Arity::Separate,
        Role::Refuse("extra_output"),
    ),
    (
        "--serialize-diagnostics",
        Arity::Separate,
        Role::Refuse("extra_output"),
    ),
    (
        "-working-directory",
        Arity::Separate,
        Role::Refuse("unsupported_flag"),
    ),
    ("--config", Arity::Separate, Role::Refuse("compiler_config")),
];

/// Flags without a value that change the built-in include directories.
const SEARCH_FLAGS: &[&str] = &["-nostdinc", "-nostdinc++", "-nostdlibinc", "-nobuiltininc"];

/// Prefixes of flags that are always part of the key and nothing else, once the refusals below
/// have been checked.
const KEY_PREFIXES: &[&str] = &[
    "-O",
    "-f",
    "-W",
    "-m",
    "-std=",
    "--std=",
    "-pedantic",
    "-g",
    "-w",
    "-d",
    "-rtlib=",
    "-static",
    "-shared",
    "-pthread",
    "-pipe",
    "-ansi",
    "-trigraphs",
    "-traditional",
    "-undef",
    "-p",
    "-rdynamic",
    "-s",
    "-C",
    "-P",
    "-H",
    "-Q",
    "-no-",
    "-nostartfiles",
    "-nodefaultlibs",
    "-nostdlib",
    "-integrated-as",
    "-fuse-ld=",
    "--driver-mode=g",
    "-Xarch_",
    "-save-stats",
];

/// Flag prefixes that make a call uncacheable, with the reason.
const REFUSED_PREFIXES: &[(&str, &str)] = &[
    ("-save-temps", "save_temps"),
    ("--save-temps", "save_temps"),
    ("--coverage", "coverage"),
    ("-fprofile-", "coverage"),
    ("-ftest-coverage", "coverage"),
    ("-fauto-profile", "coverage"),
    ("-fbranch-probabilities", "coverage"),
    ("-fcs-profile-", "coverage"),
    ("-fcreate-profile", "coverage"),
    ("-gsplit-dwarf", "split_dwarf"),
    ("-fdump-", "extra_output"),
    ("-fstack-usage", "extra_output"),
    ("-ftime-trace", "extra_output"),
    ("-fcallgraph-info", "extra_output"),
    ("-fsave-optimization-record", "extra_output"),
    ("-fopt-info", "extra_output"),
    ("-fdiagnostics-format=sarif", "extra_output"),
    ("-fdiagnostics-add-output", "extra_output"),
    ("-fmodules", "clang_modules"),
    ("-fcxx-modules", "clang_modules"),
    ("-fmodule-", "clang_modules"),
    ("-fimplicit-modules", "clang_modules"),
    ("-fprebuilt-module-path", "clang_modules"),
    ("-fplugin", "compiler_plugin"),
    ("-fpass-plugin", "compiler_plugin"),
    ("-fsanitize-ignorelist", "unhashed_input"),
    ("-fsanitize-blacklist", "unhashed_input"),
    ("-fxray-attr-list", "unhashed_input"),
    ("-fxray-always-instrument", "unhashed_input"),
    ("-fxray-never-instrument", "unhashed_input"),
    ("-fembed-offload-object", "unhashed_input"),
    ("-fpch-", "precompiled_header"),
    ("-specs", "compiler_config"),
    ("--specs", "compiler_config"),
    ("--config", "compiler_config"),
    ("-print-", "compiler_query"),
    ("--print-", "compiler_query"),
    ("-dump", "compiler_query"),
    ("-Wp,", "preprocessor_passthrough"),
    ("-v", "verbose"),
    ("-###", "verbose"),
    ("--version", "compiler_query"),
    ("--help", "compiler_query"),
];

/// Parses the arguments (without argv\[0\]) of a gcc-like compiler called as `compiler`.
pub fn parse_gcc(compiler: &Path, args: &[OsString]) -> Parsed {
    let driver_is_cxx = compiler
        .file_name()
        .map(|n| n.as_encoded_bytes().windows(2).any(|w| w == b"++"))
        .unwrap_or(false);
    let mut state = State::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let bytes = arg.as_encoded_bytes();
        i += 1;
        if bytes.first() == Some(&b'@') {
            state.refuse("response_file", arg);
            continue;
        }
        if bytes == b"-" {
            state.refuse("stdin_input", arg);
            continue;
        }
        if bytes.first() != Some(&b'-') || bytes.len() == 1 {
            let language = state.language.clone();
            state.inputs.push((PathBuf::from(arg), language));
            state.input_positions.push((i - 1, state.key_args.len()));
            state.key_args.push(arg.clone());
            continue;
        }
        let text = match arg.to_str() {
            Some(text) => text,
            None => {
                state.refuse("unsupported_flag", arg);
                continue;
            }
        };
        // Flags with a value, separate or joined.
        if let Some((flag, arity, role)) = lookup_valued(text) {
            if role == Role::DepFile {
                state.dep_arg_positions.push(i - 1);
                if text.len() == flag.len() {
                    state.dep_arg_positions.push(i);
                }
            }
            let value: OsString = if text.len() > flag.len() {
                let rest = &text[flag.len()..];
                // `--sysroot=dir`, `--param=x`: joined with '='.
                OsString::from(
                    rest.strip_prefix('=')
                        .filter(|_| flag.starts_with("--"))
                        .unwrap_or(rest),
                )
            } else if let Some(next) = args.get(i) {
                i += 1;
                next.clone()
            } else {
                state.refuse("missing_argument", arg);
                continue;
            };
            let _ = arity;
            state.apply(flag, role, value);
            continue;
        }
        match text {
            "-c" => {
                state.compile = true;
                state.key_args.push(arg.clone());
            }
            "-S" => state.mode("assembly_output", text),
            "-E" => state.mode("preprocess_only", text),
            "-M" | "-MM" => state.mode("dependencies_only", text),
            "-fsyntax-only" => state.mode("syntax_only", text),
            "-MD" => {
                state.dep_arg_positions.push(i - 1);
                state.dep_flag = Some(false);
                state.key_args.push(arg.clone());
            }
            "-MMD" => {
                state.dep_arg_positions.push(i - 1);
                state.dep_flag = Some(true);
                state.key_args.push(arg.clone());
            }
            "-MP" => {
                state.phony = true;
                state.key_args.push(arg.clone());
            }
            "-MG" => state.refuse("missing_headers_as_generated", arg),
            _ => state.flag(text, arg),
        }
    }
    state.finish(driver_is_cxx)
}

/// The table entry for `text`, matched exactly or as a joined prefix.
fn lookup_valued(text: &str) -> Option<ValuedFlag> {
    match text.as_bytes().get(1) {
        Some(&second) => lookup_valued_in(text, &valued_by_second_byte()[second as usize]),
        None => None,
    }
}

/// `FLAGS_WITH_VALUE` split by each spelling's second byte (the first is always `-`), in
/// table order. Only spellings that share `text`'s first two bytes can equal it or be its
/// prefix, so a lookup reads a few entries instead of the whole table twice, which mattered
/// for calls with hundreds of `-D` and `-I` from response files.
fn valued_by_second_byte() -> &'static [Vec<ValuedFlag>] {
    static BUCKETS: std::sync::OnceLock<Vec<Vec<ValuedFlag>>> = std::sync::OnceLock::new();
    BUCKETS.get_or_init(|| {
        let mut buckets = vec![Vec::new(); 256];
        for &entry in FLAGS_WITH_VALUE {
            buckets[entry.0.as_bytes()[1] as usize].push(entry);
        }
        buckets
    })
}

/// The table entry for `text`, matched exactly or as a joined prefix, among `candidates`: the
/// table, or the part of it that can match `text`.
fn lookup_valued_in(text: &str, candidates: &[ValuedFlag]) -> Option<ValuedFlag> {
    for &(flag, arity, role) in candidates {
        if text == flag {
            return Some((flag, arity, role));
        }
        if arity == Arity::SeparateOrJoined && text.starts_with(flag) && text.len() > flag.len() {
            // `-include` must not be read as `-I nclude`, `-isystem` as `-i...`: the table lists
            // longer spellings first, and single-letter flags only match when no longer flag
            // does.
            if flag.len() == 2
                && candidates
                    .iter()
                    .any(|(f, _, _)| f.len() > 2 && text.starts_with(f))
            {
                continue;
            }
            return Some((flag, arity, role));
        }
        if flag.starts_with("--")
            && text.starts_with(flag)
            && text.as_bytes().get(flag.len()) == Some(&b'=')
        {
            return Some((flag, arity, role));
        }
    }
    None
}

/// What each unit of a call carries from the call as a whole.
struct UnitLists {
    include_dirs: IncludeDirs,
    search_args: Vec<OsString>,
    dep_arg_positions: Vec<usize>,
}

#[derive(Default)]
struct State {
    compile: bool,
    mode_refusal: Option<(&'static str, String)>,
    refusal: Option<(&'static str, String)>,
    inputs: Vec<(PathBuf, Option<OsString>)>,
    language: Option<OsString>,
    output: Option<PathBuf>,
    dep_file: Option<PathBuf>,
    dep_flag: Option<bool>,
    dep_targets: bool,
    phony: bool,
    key_args: Vec<OsString>,
    search_args: Vec<OsString>,
    include_dirs: IncludeDirs,
    debug_info: bool,
    native_cpu: bool,
    colour_explicit: bool,
    dep_arg_positions: Vec<usize>,
    /// For each input: its position in the arguments and in `key_args`.
    input_positions: Vec<(usize, usize)>,
}

impl State {
    fn refuse(&mut self, reason: &'static str, arg: &OsStr) {
        self.refusal
            .get_or_insert((reason, arg.to_string_lossy().into_owned()));
    }

    /// A flag that makes this something other than a compile to an object.
    fn mode(&mut self, reason: &'static str, text: &str) {
        self.mode_refusal.get_or_insert((reason, text.to_string()));
    }

    fn apply(&mut self, flag: &'static str, role: Role, value: OsString) {
        let mut keep = true;
        match role {
            Role::Key => {}
            Role::Search => self
                .search_args
                .extend([OsString::from(flag), value.clone()]),
            Role::Output => {
                if value == "-" {
                    self.refuse("output_to_stdout", &value);
                }
                self.output = Some(PathBuf::from(&value));
                keep = false;
            }
            Role::DepFile => {
                self.dep_file = Some(PathBuf::from(&value));
                keep = false;
            }
            Role::DepTarget => self.dep_targets = true,
            Role::Language => {
                self.language = (value != "none").then(|| value.clone());
            }
            Role::IncludeUser => self.include_dirs.user.push(PathBuf::from(&value)),
            Role::IncludeSystem => self.include_dirs.system.push(PathBuf::from(&value)),
            Role::IncludeQuote => self.include_dirs.quote.push(PathBuf::from(&value)),
            Role::IncludeAfter => self.include_dirs.after.push(PathBuf::from(&value)),
            Role::Refuse(reason) => self.refuse(reason, OsStr::new(flag)),
        }
        if keep {
            self.key_args.push(OsString::from(flag));
            self.key_args.push(value);
        }
    }

    fn flag(&mut self, text: &str, arg: &OsString) {
        if let Some((_, reason)) = REFUSED_PREFIXES.iter().find(|(p, _)| {
            // `-v` and `-###` are exact; the others are prefixes.
            if *p == "-v" || *p == "-###" {
                text == *p
            } else {
                text.starts_with(p)
            }
        }) {
            self.refuse(reason, arg);
            return;
        }
        if let Some(options) = text.strip_prefix("-Wa,") {
            // Assembler listings (-a...) and assembler depfiles (--MD) are outputs we don't store.
            if options
                .split(',')
                .any(|o| o.starts_with("-a") || o.starts_with("--MD"))
            {
                self.refuse("extra_output", arg);
                return;
            }
        }
        if text.starts_with("--driver-mode=")
            && !matches!(text, "--driver-mode=gcc" | "--driver-mode=g++")
        {
            self.refuse("unsupported_flag", arg);
            return;
        }
        if !KEY_PREFIXES.iter().any(|p| text.starts_with(p))
            && !SEARCH_FLAGS.contains(&text)
            && !text.starts_with("--target=")
            && !text.starts_with("--sysroot=")
            && !text.starts_with("--gcc-toolchain=")
            && !text.starts_with("-stdlib=")
        {
            self.refuse("unsupported_flag", arg);
            return;
        }
        if text.starts_with("-g") {
            self.debug_info = text != "-g0";
        }
        if text.starts_with("-m") && text.ends_with("=native") {
            self.native_cpu = true;
        }
        if text.starts_with("-fdiagnostics-color")
            || text.starts_with("-fno-diagnostics-color")
            || text.starts_with("-fdiagnostics-urls")
            || text == "-fcolor-diagnostics"
            || text == "-fno-color-diagnostics"
        {
            self.colour_explicit = true;
        }
        if SEARCH_FLAGS.contains(&text)
            || text.starts_with("--target=")
            || text.starts_with("--sysroot=")
            || text.starts_with("--gcc-toolchain=")
            || text.starts_with("-stdlib=")
            || matches!(text, "-m32" | "-m64" | "-mx32")
        {
            self.search_args.push(arg.clone());
        }
        self.key_args.push(arg.clone());
    }

    fn finish(mut self, driver_is_cxx: bool) -> Parsed {
        let refuse = |reason: &'static str, detail: String| {
            Parsed::NotCacheable(NotCacheable { reason, detail })
        };
        if let Some((reason, detail)) = self.mode_refusal.take() {
            return refuse(reason, detail);
        }
        if !self.compile {
            return refuse("link", String::new());
        }
        if let Some((reason, detail)) = self.refusal.take() {
            return refuse(reason, detail);
        }
        match self.inputs.len() {
            0 => refuse("no_input", String::new()),
            1 => {
                // The one unit takes the call's lists instead of copies: with response files
                // they hold hundreds of arguments.
                let (source, language) = self.inputs.remove(0);
                let key_args = std::mem::take(&mut self.key_args);
                let lists = UnitLists {
                    include_dirs: std::mem::take(&mut self.include_dirs),
                    search_args: std::mem::take(&mut self.search_args),
                    dep_arg_positions: std::mem::take(&mut self.dep_arg_positions),
                };
                match self.unit(source, language, key_args, lists, driver_is_cxx) {
                    Ok(unit) => Parsed::Cacheable(Box::new(unit)),
                    Err(refused) => refused,
                }
            }
            count => {
                // `-c a.c b.c`: one object per source in the cwd. With `-o` or `-MF` the
                // compiler would reject the call or write every depfile to one place.
                if self.output.is_some() || self.dep_file.is_some() {
                    return refuse("multiple_sources", format!("{count} inputs with -o/-MF"));
                }
                // Which key arguments are sources: each unit keeps its own and drops the others'
                // (a lookup per argument, not a scan of the sources: with response files a call
                // has hundreds of arguments and dozens of sources).
                let mut source_at = vec![None; self.key_args.len()];
                for (unit, (_, key_index)) in self.input_positions.iter().enumerate() {
                    if let Some(at) = source_at.get_mut(*key_index) {
                        *at = Some(unit);
                    }
                }
                let mut units = Vec::with_capacity(count);
                for (index, (source, language)) in self.inputs.iter().enumerate() {
                    let key_args = self
                        .key_args
                        .iter()
                        .zip(&source_at)
                        .filter(|(_, at)| at.is_none_or(|unit| unit == index))
                        .map(|(a, _)| a.clone())
                        .collect();
                    let lists = UnitLists {
                        include_dirs: self.include_dirs.clone(),
                        search_args: self.search_args.clone(),
                        dep_arg_positions: self.dep_arg_positions.clone(),
                    };
                    let (source, language) = (source.clone(), language.clone());
                    match self.unit(source, language, key_args, lists, driver_is_cxx) {
                        Ok(unit) => units.push(unit),
                        Err(refused) => return refused,
                    }
                }
                let mut outputs: Vec<&PathBuf> = units.iter().map(|u| &u.output).collect();
                outputs.sort();
                outputs.dedup();
                if outputs.len() != units.len() {
                    return refuse(
                        "multiple_sources",
                        "two sources share an object name".into(),
                    );
                }
                Parsed::Multi(MultiCompile {
                    units,
                    source_positions: self.input_positions.iter().map(|(arg, _)| *arg).collect(),
                    dep_arg_positions: self.dep_arg_positions,
                })
            }
        }
    }

    /// The compile of one `source` with this call's flags and the given key arguments.
    fn unit(
        &self,
        source: PathBuf,
        explicit_language: Option<OsString>,
        mut key_args: Vec<OsString>,
        lists: UnitLists,
        driver_is_cxx: bool,
    ) -> Result<CompileInvocation, Parsed> {
        let refuse = |reason: &'static str, detail: String| {
            Parsed::NotCacheable(NotCacheable { reason, detail })
        };
        let language = match language_of(&source, explicit_language.as_deref(), driver_is_cxx) {
            Ok(language) => language,
            Err(reason) => return Err(refuse(reason, source.display().to_string())),
        };
        let output = self.output.clone().unwrap_or_else(|| {
            let stem = source.file_stem().unwrap_or_default();
            let mut name = stem.to_os_string();
            name.push(".o");
            PathBuf::from(name)
        });
        if output == Path::new("/dev/null") {
            return Err(refuse("output_to_dev_null", String::new()));
        }
        let dep_path = self.dep_file.clone().unwrap_or_else(|| {
            // Without -MF the depfile sits beside the object: `dir/x.o` → `dir/x.d`.
            let base = match &self.output {
                Some(output) => output.clone(),
                None => PathBuf::from(source.file_name().unwrap_or_default()),
            };
            base.with_extension("d")
        });
        let deps = match self.dep_flag {
            _ if dep_path == Path::new("/dev/null") => DepMode::None,
            None => DepMode::None,
            Some(false) => DepMode::Full { path: dep_path },
            Some(true) => DepMode::UserOnly { path: dep_path },
        };
        if deps != DepMode::None && !self.dep_targets {
            // The depfile's target is the object's name: it decides the depfile's content.
            key_args.push(OsString::from("-o"));
            key_args.push(output.clone().into_os_string());
        }
        Ok(CompileInvocation {
            source,
            language,
            output,
            deps,
            phony_deps: self.phony,
            key_args,
            include_dirs: lists.include_dirs,
            search_args: lists.search_args,
            debug_info: self.debug_info,
            native_cpu: self.native_cpu,
            colour_explicit: self.colour_explicit,
            dep_arg_positions: lists.dep_arg_positions,
        })
    }
}

/// The language the compiler will use for `source`.
fn language_of(
    source: &Path,
    explicit: Option<&OsStr>,
    driver_is_cxx: bool,
) -> Result<Language, &'static str> {
    if let Some(explicit) = explicit {
        return match explicit.to_str() {
            Some("c") => Ok(Language::C),
            Some("c++") => Ok(Language::Cxx),
            Some("assembler-with-cpp") => Ok(Language::AsmWithCpp),
            Some("c-header" | "c++-header" | "objective-c-header" | "objective-c++-header") => {
                Err("precompiled_header")
            }
            _ => Err("unsupported_language"),
        };
    }
    let extension = source.extension().and_then(|e| e.to_str()).unwrap_or("");
    match extension {
        "c" if driver_is_cxx => Ok(Language::Cxx),
        "c" => Ok(Language::C),
        "cc" | "cp" | "cxx" | "cpp" | "CPP" | "c++" | "C" => Ok(Language::Cxx),
        "S" | "sx" => Ok(Language::AsmWithCpp),
        "h" | "hh" | "hpp" | "hxx" | "H" | "h++" | "tcc" | "hp" => Err("precompiled_header"),
        "o" | "a" | "so" | "obj" | "lib" => Err("linker_input"),
        _ => Err("unsupported_language"),
    }
}

#[cfg(test)]
mod tests {
    /// The split table finds exactly what a scan of the whole table finds, for every spelling
    /// in it, joined and separate, and for near misses around each.
    #[test]
    fn valued_flag_lookup_matches_a_scan_of_the_whole_table() {
        let mut texts: Vec<String> = [
            "-DFOO=1",
            "-D",
            "-Iinc",
            "-include",
            "-includefoo.h",
            "-isystem/x",
            "-isystem",
            "-o",
            "-ofile.o",
            "--sysroot=/x",
            "--sysroot",
            "--param=x=1",
            "-MF",
            "-MFdeps.d",
            "-MD",
            "-MMD",
            "-Wl,-z",
            "-Xclang",
            "-c",
            "-O2",
            "-x",
            "-xc++",
            "-fPIC",
            "--",
            "-Wall",
            "-std=c++17",
            "-iquote",
            "-iquotedir",
            "-idirafter/x",
            "-I",
            "-M",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        for (flag, _, _) in FLAGS_WITH_VALUE {
            assert!(flag.len() >= 2 && flag.starts_with('-'), "{flag}");
            for text in [
                flag.to_string(),
                format!("{flag}x"),
                format!("{flag}=x"),
                format!("{flag}-"),
                flag[..flag.len() - 1].to_string(),
            ] {
                texts.push(text);
            }
        }
        for text in texts.iter().filter(|t| t.len() >= 2) {
            assert_eq!(
                lookup_valued(text),
                lookup_valued_in(text, FLAGS_WITH_VALUE),
                "{text}"
            );
        }
    }

    use super::*;

    fn parse(line: &str) -> Parsed {
        let args: Vec<OsString> = line.split_whitespace().map(OsString::from).collect();
        parse_gcc(Path::new("/usr/bin/gcc"), &args)
    }

    fn cacheable(line: &str) -> CompileInvocation {
        match parse(line) {
            Parsed::Cacheable(inv) => *inv,
            other => panic!("{line}: not a single cacheable compile: {other:?}"),
        }
    }

    fn reason(line: &str) -> &'static str {
        match parse(line) {
            Parsed::NotCacheable(nc) => nc.reason,
            other => panic!("{line}: unexpectedly cacheable: {other:?}"),
        }
    }

    fn key(line: &str) -> Vec<String> {
        cacheable(line)
            .key_args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn simple_compile() {
        let inv = cacheable("-c a.c -o out/a.o");
        assert_eq!(inv.source, PathBuf::from("a.c"));
        assert_eq!(inv.output, PathBuf::from("out/a.o"));
        assert_eq!(inv.language, Language::C);
        assert_eq!(inv.deps, DepMode::None);
        assert!(!inv.debug_info);
    }

    #[test]
    fn default_output_is_stem_dot_o_in_cwd() {
        assert_eq!(cacheable("-c src/a.cpp").output, PathBuf::from("a.o"));
        assert_eq!(
            cacheable("-c src/a.c -oout.o").output,
            PathBuf::from("out.o")
        );
    }

    #[test]
    fn output_path_is_not_in_the_key() {
        assert_eq!(key("-c a.c -o x.o"), key("-c a.c -o y/z.o"));
        assert_eq!(key("-c a.c -o x.o"), key("-c a.c"));
        assert_eq!(
            key("-c a.c -MD -MT t -MF a.d"),
            key("-c a.c -MD -MT t -MF b.d -o q.o")
        );
    }

    #[test]
    fn output_path_is_in_the_key_when_it_names_the_depfile_target() {
        assert_ne!(key("-c a.c -MD -o x.o"), key("-c a.c -MD -o y.o"));
    }

    #[test]
    fn argument_order_is_kept() {
        assert_ne!(key("-c a.c -DV=1 -DV=2"), key("-c a.c -DV=2 -DV=1"));
        assert_ne!(key("-c a.c -O2 -O0"), key("-c a.c -O0 -O2"));
        assert_eq!(key("-c a.c -DV=1"), ["-c", "a.c", "-D", "V=1"]);
        assert_eq!(key("-c a.c -D V=1"), ["-c", "a.c", "-D", "V=1"]);
    }

    #[test]
    fn depfile_modes() {
        assert_eq!(
            cacheable("-c a.c -MD -MF deps/a.d").deps,
            DepMode::Full {
                path: "deps/a.d".into()
            }
        );
        assert_eq!(
            cacheable("-c a.c -MMD -o o/x.o").deps,
            DepMode::UserOnly {
                path: "o/x.d".into()
            }
        );
        assert_eq!(
            cacheable("-c src/a.c -MD").deps,
            DepMode::Full { path: "a.d".into() }
        );
        assert_eq!(cacheable("-c a.c -MD -MF /dev/null").deps, DepMode::None);
        assert!(cacheable("-c a.c -MD -MP").phony_deps);
    }

    #[test]
    fn include_dirs_in_order() {
        let inv = cacheable("-c a.c -Ia -I b -isystem s -iquote q -idirafter z -Ic");
        assert_eq!(
            inv.include_dirs.user,
            [PathBuf::from("a"), "b".into(), "c".into()]
        );
        assert_eq!(inv.include_dirs.system, [PathBuf::from("s")]);
        assert_eq!(inv.include_dirs.quote, [PathBuf::from("q")]);
        assert_eq!(inv.include_dirs.after, [PathBuf::from("z")]);
    }

    #[test]
    fn include_is_not_read_as_dash_i() {
        let inv = cacheable("-c a.c -include pre.h -isystem/sys -imacros m.h");
        assert!(inv.include_dirs.user.is_empty());
        assert_eq!(inv.include_dirs.system, [PathBuf::from("/sys")]);
    }

    #[test]
    fn languages() {
        assert_eq!(cacheable("-c a.cc").language, Language::Cxx);
        assert_eq!(cacheable("-c a.S").language, Language::AsmWithCpp);
        assert_eq!(cacheable("-x c++ -c a.c").language, Language::Cxx);
        assert_eq!(cacheable("-xc -c a.cpp").language, Language::C);
        let args: Vec<OsString> = ["-c", "a.c"].iter().map(OsString::from).collect();
        match parse_gcc(Path::new("/usr/bin/clang++"), &args) {
            Parsed::Cacheable(inv) => assert_eq!(inv.language, Language::Cxx),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn debug_info_and_native() {
        assert!(cacheable("-c a.c -g").debug_info);
        assert!(cacheable("-c a.c -ggdb3").debug_info);
        assert!(!cacheable("-c a.c -g -g0").debug_info);
        assert!(cacheable("-c a.c -march=native").native_cpu);
        assert!(!cacheable("-c a.c -march=x86-64").native_cpu);
    }

    #[test]
    fn explicit_colour_choices_are_noticed() {
        assert!(!cacheable("-c a.c -Wall").colour_explicit);
        for flag in [
            "-fdiagnostics-color=never",
            "-fdiagnostics-color",
            "-fcolor-diagnostics",
            "-fno-color-diagnostics",
            "-fno-diagnostics-color",
        ] {
            assert!(
                cacheable(&format!("-c a.c {flag}")).colour_explicit,
                "{flag}"
            );
        }
    }

    #[test]
    fn search_args_are_collected() {
        let inv = cacheable("-c a.c --sysroot=/sr -nostdinc -target x86_64-linux -I inc");
        let search: Vec<String> = inv
            .search_args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            search,
            ["--sysroot", "/sr", "-nostdinc", "-target", "x86_64-linux"]
        );
    }

    #[test]
    fn common_flags_are_cacheable() {
        for line in [
            "-c a.c -O2 -g -Wall -Wextra -Werror -std=c11 -fPIC -DX -UY -pthread -pipe",
            "-c a.cpp -std=c++17 -fno-exceptions -march=x86-64-v2 -Wno-unused -pedantic",
            "-c a.c -MD -MT obj/a.o -MF obj/a.o.d -o obj/a.o",
            "-c a.c -MMD -MP -MQ $(x) -isystem /s --sysroot /sr",
            "-c a.c -ffile-prefix-map=/a=. -fdebug-prefix-map=/b=/c -Wa,--noexecstack",
            "-c a.c -Xlinker -z -Wl,-O1 -flto",
        ] {
            cacheable(line);
        }
    }

    #[test]
    fn refusals() {
        let cases = [
            ("a.c -o a", "link"),
            ("a.o b.o -o prog", "link"),
            ("-E a.c", "preprocess_only"),
            ("-c -E a.c", "preprocess_only"),
            ("-S a.c", "assembly_output"),
            ("-M a.c", "dependencies_only"),
            ("-MM -c a.c", "dependencies_only"),
            ("-c a.c b.c -o x.o", "multiple_sources"),
            ("-c a.c b.c -MD -MF x.d", "multiple_sources"),
            ("-c x/a.c y/a.c", "multiple_sources"),
            ("-c", "no_input"),
            ("-c -", "stdin_input"),
            ("-c -x c -", "stdin_input"),
            ("-c a.c -o -", "output_to_stdout"),
            ("-c a.c -o /dev/null", "output_to_dev_null"),
            ("-c a.h", "precompiled_header"),
            ("-c -x c++-header a.hpp", "precompiled_header"),
            ("-c a.c -include-pch x.pch", "precompiled_header"),
            ("-c a.c --coverage", "coverage"),
            ("-c a.c -fprofile-arcs", "coverage"),
            ("-c a.c -fprofile-use=x", "coverage"),
            ("-c a.c -ftest-coverage", "coverage"),
            ("-c a.c -save-temps", "save_temps"),
            ("-c a.c -save-temps=obj", "save_temps"),
            ("-c a.c -gsplit-dwarf", "split_dwarf"),
            ("-c a.c -fdump-tree-all", "extra_output"),
            ("-c a.c -fstack-usage", "extra_output"),
            ("-c a.c -ftime-trace", "extra_output"),
            ("-c a.c -MJ x.json", "extra_output"),
            ("-c a.c -Wa,-adhln=x.lst", "extra_output"),
            ("-c a.c -Wp,-MD,x.d", "preprocessor_passthrough"),
            ("-c a.c @args.rsp", "response_file"),
            ("-c a.c -Xclang -emit-pch", "unsupported_flag"),
            ("-c a.c --frobnicate", "unsupported_flag"),
            ("-c a.c -B /opt/bin", "compiler_prefix"),
            ("-c a.c -specs=x.specs", "compiler_config"),
            ("-c a.c -fplugin=x.so", "compiler_plugin"),
            ("-c a.c -v", "verbose"),
            ("-c a.s", "unsupported_language"),
            ("-c a.m", "unsupported_language"),
            ("-c a.c x.o", "linker_input"),
            ("-c a.c -MD -MG", "missing_headers_as_generated"),
            ("-c a.c -fmodules", "clang_modules"),
            ("-c a.c -I", "missing_argument"),
            ("-c a.c -fsyntax-only", "syntax_only"),
        ];
        for (line, expected) in cases {
            assert_eq!(reason(line), expected, "{line}");
        }
    }

    #[test]
    fn own_depfile_replaces_the_builds_dependency_flags() {
        let line = "-c a.c -MMD -MT t -MF x.d -MP -MFy.d -o a.o";
        let args: Vec<OsString> = line.split_whitespace().map(OsString::from).collect();
        let inv = cacheable(line);
        let run: Vec<String> = inv
            .args_with_depfile(&args, Path::new("/tmp/own.d"))
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            run,
            [
                "-c",
                "a.c",
                "-MT",
                "t",
                "-MP",
                "-o",
                "a.o",
                "-MD",
                "-MF",
                "/tmp/own.d"
            ]
        );
    }

    #[test]
    fn several_sources_become_units_with_their_own_keys() {
        let line = "-c -O2 a.c -MMD sub/b.cpp -DX";
        let args: Vec<OsString> = line.split_whitespace().map(OsString::from).collect();
        let Parsed::Multi(multi) = parse_gcc(Path::new("gcc"), &args) else {
            panic!("not a multi-source compile");
        };
        assert_eq!(multi.units.len(), 2);
        let (a, b) = (&multi.units[0], &multi.units[1]);
        assert_eq!(
            (a.output.as_path(), b.output.as_path()),
            (Path::new("a.o"), Path::new("b.o"))
        );
        assert_eq!(b.language, Language::Cxx);
        assert_eq!(b.deps, DepMode::UserOnly { path: "b.d".into() });
        let strings = |v: &[OsString]| {
            v.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            strings(&a.key_args),
            ["-c", "-O2", "a.c", "-MMD", "-D", "X", "-o", "a.o"]
        );
        assert_eq!(
            strings(&b.key_args),
            ["-c", "-O2", "-MMD", "sub/b.cpp", "-D", "X", "-o", "b.o"]
        );
        // The same source alone has the same key arguments.
        match parse("-c -O2 a.c -MMD -DX") {
            Parsed::Cacheable(alone) => assert_eq!(alone.key_args, a.key_args),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            strings(&multi.args_for(&args, &[1])),
            ["-c", "-O2", "sub/b.cpp", "-DX", "-MD"]
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_arguments_do_not_panic() {
        use std::os::unix::ffi::OsStringExt;
        let args = vec![
            OsString::from("-c"),
            OsString::from_vec(vec![b'a', 0xff, b'.', b'c']),
            OsString::from_vec(vec![b'-', b'D', 0xfe]),
        ];
        let _ = parse_gcc(Path::new("gcc"), &args);
    }
}
