//! Analysers of one translation unit: clang-tidy and include-what-you-use.
//!
//! Their result is what they print and their exit code, failures included. The key holds the
//! tool's identity, its arguments, the caller's directory (paths in diagnostics), the compile
//! command it analyses with, its configuration files and the source; the headers it reads are
//! checked through the manifest like a compile's. The tools cannot report those headers, so a
//! miss also runs the matching clang's preprocessor over the same compile command to list
//! them (`-E -MD`), after the tool: anything changed since the tool started is refused when
//! storing.

use crate::cc::{search_path, KEY_ENV};
use crate::pipeline::{Call, Captured, KeyHasher, Miss};
use crate::Daemon;
use dashmap::DashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use zccache_compiler::analysis::{
    mapping_refs, parse_clang_tidy, parse_iwyu, split_command, without_outputs,
};
use zccache_compiler::{depfile, parse_gcc, CompileInvocation, NotCacheable, Parsed};
use zccache_core::paths::absolute;
use zccache_core::Hash;
use zccache_protocol::Response;

/// What the daemon remembers about tools it has probed and compilation databases it read.
#[derive(Default)]
pub(crate) struct AnalysisCache {
    /// By tool path and binary digest.
    tools: DashMap<(PathBuf, Hash), Arc<Analyser>>,
    /// By database path: its digest when read and its entries by absolute source path.
    databases: DashMap<PathBuf, (Hash, Arc<CompileDatabase>)>,
    /// By `ar` path and binary digest: whether it writes deterministic archives by default.
    pub ar_deterministic: DashMap<(PathBuf, Hash), bool>,
    /// rustfmt identities already probed, keyed by the binary and what selects a toolchain,
    /// so a hit runs no process.
    pub rustfmt_probes: DashMap<Hash, crate::rustfmt::Probed>,
}

/// An analyser's identity and the clang that reads sources the way it does.
struct Analyser {
    identity: Hash,
    clang: PathBuf,
    /// The tool's built-in header directory, given to that clang.
    resource_dir: Option<PathBuf>,
}

/// One source's entry in `compile_commands.json`.
#[derive(Clone)]
struct DatabaseEntry {
    directory: PathBuf,
    /// argv\[0\] and the arguments.
    arguments: Vec<OsString>,
}

type CompileDatabase = std::collections::HashMap<PathBuf, DatabaseEntry>;

/// The translation unit an analyser looks at, as the cache needs it.
struct Unit {
    /// Absolute, or relative to `compile_dir`.
    source: PathBuf,
    /// The compile arguments (no argv\[0\]) and the directory they run in.
    compile_args: Vec<OsString>,
    compile_dir: PathBuf,
    /// Key parts beyond the call itself: configuration files, the database entry.
    extra: Vec<(String, Vec<u8>)>,
}

const TIDY_DOMAIN: &str = "zccache clang-tidy v1";
const IWYU_DOMAIN: &str = "zccache include-what-you-use v1";

impl Daemon {
    /// `clang-tidy [options] file [-- compile args]`.
    pub(crate) fn run_clang_tidy(self: &Arc<Self>, call: &Call) -> Response {
        let unit = match self.tidy_unit(call) {
            Ok(unit) => unit,
            Err(refused) => {
                tracing::debug!("clang-tidy not cacheable: {}", refused.detail);
                return self.run_locally(call, refused.reason);
            }
        };
        self.run_analysis(call, unit, TIDY_DOMAIN)
    }

    /// `include-what-you-use [clang args] [-Xiwyu option]… file`.
    pub(crate) fn run_iwyu(self: &Arc<Self>, call: &Call) -> Response {
        let iwyu = match parse_iwyu(&call.args) {
            Ok(iwyu) => iwyu,
            Err(refused) => return self.run_locally(call, refused.reason),
        };
        let mut extra = Vec::new();
        let mut mappings: Vec<PathBuf> = iwyu
            .mapping_files
            .iter()
            .map(|p| absolute(&call.cwd, p))
            .collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(path) = mappings.pop() {
            if !seen.insert(path.clone()) {
                continue;
            }
            let Ok(text) = std::fs::read(&path) else {
                return self.run_locally(call, "iwyu_mapping_unreadable");
            };
            let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
            mappings.extend(
                mapping_refs(&String::from_utf8_lossy(&text))
                    .into_iter()
                    .map(|r| absolute(&dir, Path::new(&r))),
            );
            extra.push((
                format!("mapping file {}", path.display()),
                blake3::hash(&text).as_bytes().to_vec(),
            ));
        }
        let source = match single_source(&iwyu.clang_args) {
            Ok(source) => source,
            Err(refused) => return self.run_locally(call, refused.reason),
        };
        let unit = Unit {
            source,
            compile_args: iwyu.clang_args,
            compile_dir: call.cwd.clone(),
            extra,
        };
        self.run_analysis(call, unit, IWYU_DOMAIN)
    }

    /// The source, compile command and configuration of a clang-tidy call.
    fn tidy_unit(&self, call: &Call) -> Result<Unit, NotCacheable> {
        let refuse = |reason: &'static str, detail: String| NotCacheable { reason, detail };
        let tidy = parse_clang_tidy(&call.args)?;
        let source = absolute(&call.cwd, &tidy.source);
        let mut extra = Vec::new();
        // `.clang-tidy` files in the source's directory and above: the nearest applies (and
        // may inherit from its parents); a new one anywhere up the tree changes the result.
        for dir in source.ancestors().skip(1) {
            let path = dir.join(".clang-tidy");
            extra.push((
                format!("config {}", path.display()),
                self.digest_or_absent(call, &path),
            ));
        }
        if let Some(config) = &tidy.config_file {
            let path = absolute(&call.cwd, config);
            extra.push((
                format!("config file {}", path.display()),
                self.digest_or_absent(call, &path),
            ));
        }
        let (base_args, compile_dir) = match &tidy.fixed_args {
            Some(fixed) => {
                let mut args = fixed.clone();
                args.push(tidy.source.clone().into_os_string());
                (args, call.cwd.clone())
            }
            None => {
                let database = match &tidy.build_dir {
                    Some(dir) => absolute(&call.cwd, dir).join("compile_commands.json"),
                    None => source
                        .ancestors()
                        .skip(1)
                        .map(|dir| dir.join("compile_commands.json"))
                        .find(|path| path.is_file())
                        .ok_or_else(|| {
                            refuse("no_compilation_database", source.display().to_string())
                        })?,
                };
                let entry = self.database_entry(&database, &source)?;
                extra.push((
                    "compile command".to_string(),
                    entry
                        .arguments
                        .iter()
                        .flat_map(|a| [a.as_encoded_bytes(), b"\0"])
                        .flatten()
                        .copied()
                        .chain(
                            entry
                                .directory
                                .as_os_str()
                                .as_encoded_bytes()
                                .iter()
                                .copied(),
                        )
                        .collect(),
                ));
                (entry.arguments[1..].to_vec(), entry.directory.clone())
            }
        };
        let mut compile_args = tidy.extra_before.clone();
        compile_args.extend(base_args);
        compile_args.extend(tidy.extra_after.iter().cloned());
        Ok(Unit {
            source,
            compile_args,
            compile_dir,
            extra,
        })
    }

    /// A configuration file's digest as a key part (from the file cache, so a hit reads
    /// nothing the watcher vouches for), or a marker that it does not exist.
    fn digest_or_absent(&self, call: &Call, path: &Path) -> Vec<u8> {
        match call.digest(&self.fs, path) {
            Ok(digest) => digest.hash.to_vec(),
            Err(_) => b"(absent)".to_vec(),
        }
    }

    /// The entry for `source` in the database at `path`, from memory while the file is
    /// unchanged.
    fn database_entry(&self, path: &Path, source: &Path) -> Result<DatabaseEntry, NotCacheable> {
        let refuse = |reason: &'static str| NotCacheable {
            reason,
            detail: path.display().to_string(),
        };
        let digest = self
            .fs
            .digest(path)
            .map_err(|_| refuse("no_compilation_database"))?;
        let cached = self
            .analysis
            .databases
            .get(path)
            .filter(|found| found.0 == digest.hash)
            .map(|found| found.1.clone());
        let database = match cached {
            Some(database) => database,
            None => {
                let text = std::fs::read(path).map_err(|_| refuse("no_compilation_database"))?;
                let database = Arc::new(
                    read_database(&text).ok_or_else(|| refuse("bad_compilation_database"))?,
                );
                self.analysis
                    .databases
                    .insert(path.to_path_buf(), (digest.hash, database.clone()));
                database
            }
        };
        database
            .get(source)
            .cloned()
            .ok_or_else(|| refuse("not_in_compilation_database"))
    }

    /// The identity of the analyser at `call.compiler`, and its clang.
    fn analyser(&self, call: &Call) -> Result<Arc<Analyser>, &'static str> {
        let digest = self
            .fs
            .digest(&call.compiler)
            .map_err(|_| "compiler_unidentified")?;
        let key = (call.compiler.clone(), digest.hash);
        if let Some(found) = self.analysis.tools.get(&key) {
            return Ok(found.clone());
        }
        let identity = self
            .toolchains
            .identify_with(
                &self.fs,
                &call.compiler,
                &call.env,
                &["--version"],
                call.synced(&self.fs),
            )
            .map_err(|_| "compiler_unidentified")?;
        let banner = run_for_text(&call.compiler, &["--version"], call);
        let major = clang_major(&banner);
        let clang = matching_clang(&call.compiler, major, call).ok_or("no_matching_clang")?;
        let resource_dir = run_for_text(&call.compiler, &["-print-resource-dir"], call)
            .lines()
            .next()
            .map(str::trim)
            .filter(|line| line.starts_with('/') && Path::new(line).is_dir())
            .map(PathBuf::from);
        let analyser = Arc::new(Analyser {
            identity,
            clang,
            resource_dir,
        });
        self.analysis.tools.insert(key, analyser.clone());
        Ok(analyser)
    }

    /// Serves an analyser's result from the cache, or runs it and stores what it printed.
    fn run_analysis(self: &Arc<Self>, call: &Call, unit: Unit, domain: &str) -> Response {
        let Some(store) = self.store() else {
            return self.run_locally(call, "store_unavailable");
        };
        let analyser = match self.analyser(call) {
            Ok(analyser) => analyser,
            Err(reason) => return self.run_locally(call, reason),
        };
        // The compile command must be one the cache understands (no unknown flags, no
        // outputs it would miss): parsed as a compile of the source to an object.
        let mut as_compile = without_outputs(&unit.compile_args);
        as_compile.extend(["-c".into(), "-o".into(), "zccache-analysis.o".into()]);
        let invocation = match parse_gcc(&analyser.clang, &as_compile) {
            Parsed::Cacheable(invocation) => invocation,
            Parsed::Multi(_) => return self.run_locally(call, "multiple_sources"),
            Parsed::NotCacheable(refused) => return self.run_locally(call, refused.reason),
        };
        let source_path = absolute(&unit.compile_dir, &unit.source);
        let source = match call.digest(&self.fs, &source_path) {
            Ok(digest) => digest,
            Err(_) => return self.run_locally(call, "source_unreadable"),
        };
        let key_of = |mut key: KeyHasher| {
            key.digest_part("tool identity", &analyser.identity);
            key.part("tool path", call.compiler.as_os_str().as_encoded_bytes());
            key.part("tool name", call.name.as_encoded_bytes());
            for arg in &call.args {
                key.part("argument", arg.as_encoded_bytes());
            }
            key.part("cwd", call.cwd.as_os_str().as_encoded_bytes());
            for name in KEY_ENV {
                key.env(call, name);
            }
            for (label, bytes) in &unit.extra {
                key.part(label, bytes);
            }
            key.digest_part("source", &source.hash);
            key
        };
        let key = key_of(KeyHasher::new(domain)).finish();
        if let Some(found) = self.find_entry(store, &key, call, None) {
            if let Some(response) = self.serve_hit(call, &found, |_| Ok(())) {
                return response;
            }
        }
        let miss = Miss {
            key,
            source: Some((source_path.clone(), source)),
            record_as: source_path,
            time_macros_matter: false,
            store_failures: true,
            parts: key_of(KeyHasher::recording(domain)).into_parts(),
        };
        self.run_miss(call, &call.args, miss, || {
            self.list_headers(call, &analyser, &unit, &invocation)
        })
    }

    /// Runs the analyser's clang over the unit's compile command to list what it reads.
    fn list_headers(
        &self,
        call: &Call,
        analyser: &Analyser,
        unit: &Unit,
        invocation: &CompileInvocation,
    ) -> Result<Captured, &'static str> {
        let depfile = tempfile::Builder::new()
            .prefix("analysis-")
            .suffix(".d")
            .tempfile_in(self.root.tmp_dir())
            .map_err(|_| "store_unwritable")?
            .into_temp_path();
        let mut args = without_outputs(&unit.compile_args);
        let mut search_args = invocation.search_args.clone();
        if let Some(dir) = &analyser.resource_dir {
            let flag = OsString::from(format!("-resource-dir={}", dir.display()));
            args.push(flag.clone());
            search_args.push(flag);
        }
        args.extend(["-E".into(), "-w".into(), "-o".into(), "/dev/null".into()]);
        args.extend(["-MD".into(), "-MF".into(), depfile.as_os_str().to_owned()]);
        let mut command = Command::new(&analyser.clang);
        command
            .args(&args)
            .current_dir(&unit.compile_dir)
            .env_clear()
            .envs(call.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = call
            .spawn(command)
            .and_then(|mut child| child.wait())
            .map_err(|_| "analysis_headers_unknown")?;
        if !status.success() {
            return Err("analysis_headers_unknown");
        }
        let text = std::fs::read(&depfile).map_err(|_| "depfile_unreadable")?;
        let parsed = depfile::parse(&String::from_utf8_lossy(&text)).ok_or("depfile_unreadable")?;
        let toolchain = self
            .toolchains
            .identify(&self.fs, &analyser.clang, &call.env, call.synced(&self.fs))
            .map_err(|_| "compiler_unidentified")?;
        let system_dirs = self
            .toolchains
            .system_dirs(
                &toolchain,
                &analyser.clang,
                invocation.language,
                &search_args,
                &call.env,
                &unit.compile_dir,
            )
            .map_err(|_| "compiler_unidentified")?;
        // Paths in the depfile and include directories are relative to the compile command's
        // directory; the manifest resolves relative paths against the caller's.
        let mut invocation = invocation.clone();
        let dirs = &mut invocation.include_dirs;
        for list in [
            &mut dirs.quote,
            &mut dirs.user,
            &mut dirs.system,
            &mut dirs.after,
        ] {
            for dir in list.iter_mut() {
                *dir = absolute(&unit.compile_dir, dir);
            }
        }
        invocation.source = absolute(&unit.compile_dir, &invocation.source);
        let deps = parsed
            .deps
            .into_iter()
            .map(|dep| {
                absolute(&unit.compile_dir, Path::new(&dep.path))
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        Ok(Captured {
            deps,
            search: Some(search_path(call, &invocation, &system_dirs)),
            ..Captured::default()
        })
    }
}

/// The one source among compile arguments, or why there is not exactly one.
fn single_source(args: &[OsString]) -> Result<PathBuf, NotCacheable> {
    let mut as_compile = without_outputs(args);
    as_compile.extend(["-c".into(), "-o".into(), "zccache-analysis.o".into()]);
    match parse_gcc(Path::new("clang"), &as_compile) {
        Parsed::Cacheable(invocation) => Ok(invocation.source),
        Parsed::Multi(_) => Err(NotCacheable {
            reason: "multiple_sources",
            detail: String::new(),
        }),
        Parsed::NotCacheable(refused) => Err(refused),
    }
}

/// Runs `program args` with the caller's environment; stdout and stderr as text, whatever
/// the exit code.
fn run_for_text(program: &Path, args: &[&str], call: &Call) -> String {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(call.env.iter().map(|(k, v)| (k, v)))
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    call.spawn(command)
        .and_then(|child| child.wait_with_output())
        .map(|out| {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            text
        })
        .unwrap_or_default()
}

/// The LLVM major version in a banner (`LLVM version 14.0.6`, `based on … clang version 14`).
fn clang_major(banner: &str) -> Option<u32> {
    for marker in ["clang version ", "LLVM version "] {
        if let Some(at) = banner.find(marker) {
            let rest = &banner[at + marker.len()..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            if let Ok(major) = digits.parse() {
                return Some(major);
            }
        }
    }
    None
}

/// The clang built with the analyser: beside its real binary, or the same major version from
/// the usual places.
fn matching_clang(tool: &Path, major: Option<u32>, call: &Call) -> Option<PathBuf> {
    let real = std::fs::canonicalize(tool).ok()?;
    let beside = real.parent()?.join("clang");
    let mut candidates = vec![beside];
    if let Some(major) = major {
        candidates.push(PathBuf::from(format!("/usr/lib/llvm-{major}/bin/clang")));
        if let Some(path) = call.env_var("PATH") {
            candidates
                .extend(std::env::split_paths(path).map(|d| d.join(format!("clang-{major}"))));
        }
    }
    candidates.into_iter().find(|candidate| {
        candidate.is_file()
            && major.is_none_or(|major| {
                clang_major(&run_for_text(candidate, &["--version"], call)) == Some(major)
            })
    })
}

/// Parses `compile_commands.json` into entries by absolute source path.
fn read_database(text: &[u8]) -> Option<CompileDatabase> {
    let entries: Vec<serde_json::Value> = serde_json::from_slice(text).ok()?;
    let mut database = CompileDatabase::new();
    for entry in entries {
        let directory = PathBuf::from(entry.get("directory")?.as_str()?);
        let file = absolute(&directory, Path::new(entry.get("file")?.as_str()?));
        let arguments: Vec<OsString> = match entry.get("arguments") {
            Some(list) => list
                .as_array()?
                .iter()
                .map(|a| a.as_str().map(OsString::from))
                .collect::<Option<_>>()?,
            None => split_command(entry.get("command")?.as_str()?)?
                .into_iter()
                .map(OsString::from)
                .collect(),
        };
        if arguments.is_empty() {
            return None;
        }
        // The first entry for a file is the one clang's tooling uses.
        database.entry(file).or_insert(DatabaseEntry {
            directory,
            arguments,
        });
    }
    Some(database)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_versions() {
        assert_eq!(
            clang_major("include-what-you-use 0.18 based on Debian clang version 14.0.6"),
            Some(14)
        );
        assert_eq!(
            clang_major("Debian LLVM version 14.0.6\n  Optimized build."),
            Some(14)
        );
        assert_eq!(clang_major("rustfmt 1.9.0"), None);
    }

    #[test]
    fn database_entries_by_absolute_source() {
        let text = br#"[
 {"directory": "/w/build", "file": "../src/a.cpp", "arguments": ["c++", "-I../inc", "-c", "../src/a.cpp"]},
 {"directory": "/w/build", "file": "/w/src/b.cpp", "command": "c++ -DX=\"1 2\" -c /w/src/b.cpp"},
 {"directory": "/w/build", "file": "../src/a.cpp", "arguments": ["c++", "-DSECOND", "-c", "../src/a.cpp"]}
]"#;
        let db = read_database(text).unwrap();
        let a = &db[Path::new("/w/src/a.cpp")];
        assert_eq!(a.arguments[1], "-I../inc");
        assert_eq!(a.directory, PathBuf::from("/w/build"));
        assert_eq!(db[Path::new("/w/src/b.cpp")].arguments[1], "-DX=1 2");
        assert!(read_database(b"{}").is_none());
        assert!(read_database(br#"[{"directory": "/w"}]"#).is_none());
    }
}
