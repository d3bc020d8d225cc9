//! Compiler identity and built-in include directories, learned by running the compiler once
//! and remembered for as long as its binary is unchanged.

use crate::priority;
use dashmap::DashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use zccache_compiler::{Family, Language};
use zccache_core::paths::absolute;
use zccache_core::Hash;
use zccache_fscache::{FsCache, Synced};

/// What identifies a compiler for the cache.
#[derive(Debug)]
pub struct Toolchain {
    /// Binary content, version banner and target triple.
    pub hash: Hash,
    pub family: Family,
    /// The major version from the first line of `--version` (`… 12.2.0` → 12), if found.
    pub major_version: Option<u32>,
    /// emcc/em++: clang underneath, with a config file and `EM_*` variables of its own.
    pub emscripten: bool,
}

/// Why [`Toolchains::identify_with`] gave no identity.
#[derive(Debug)]
pub enum Unidentified {
    /// The tool is a rustup proxy: the toolchain it runs depends on the caller's directory and
    /// environment, which neither its content nor a probe run once can tell.
    RustupProxy,
    /// The probe could not be run or failed.
    Failed(String),
}

impl std::fmt::Display for Unidentified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unidentified::RustupProxy => f.write_str("a rustup proxy"),
            Unidentified::Failed(why) => f.write_str(why),
        }
    }
}

/// Environment variables that add include directories; the probe runs without them because
/// they are handled like the flags they stand for.
const INCLUDE_ENV: &[&str] = &[
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
    "OBJCPLUS_INCLUDE_PATH",
];

/// The output of one compiler query, as its caller would have seen it.
#[derive(Debug)]
pub struct QueryAnswer {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A query to a tool, for [`Toolchains::answer_query`].
pub struct Query<'a> {
    pub path: &'a Path,
    pub env: &'a [(OsString, OsString)],
    pub args: &'a [OsString],
    /// The argument that gives the tool's identity (`-vV` for rustc).
    pub identity_probe: &'static str,
}

/// At most this many query answers are remembered; beyond it the memory starts afresh.
const MAX_QUERY_ANSWERS: usize = 1024;

/// Remembers toolchains, their include directories, and the answers to queries about them.
#[derive(Default)]
pub struct Toolchains {
    /// Keyed by path, binary digest and the probe that was run.
    by_binary: DashMap<ProbeKey, Arc<Toolchain>>,
    search_dirs: DashMap<Hash, Arc<Vec<PathBuf>>>,
    /// Whether the binary at a path, with this digest, is a rustup proxy.
    proxies: DashMap<(PathBuf, Hash), bool>,
    /// Successful query answers, keyed by [`query_key`].
    answers: DashMap<Hash, Arc<QueryAnswer>>,
    /// One lock per compiler path, held while it is probed: the calls of a parallel cold
    /// build (and the daemon's own start-up probe) that find it unknown wait for one probe
    /// instead of each running their own.
    probing: DashMap<PathBuf, Arc<parking_lot::Mutex<()>>>,
    /// Probes that failed, and when: see [`Toolchains::recent_failure`].
    failed_probes: DashMap<ProbeKey, (std::time::Instant, String)>,
}

/// What a tool's identity is remembered under: its path, binary digest and the probe run.
type ProbeKey = (PathBuf, Hash, &'static str);

/// How long a failed probe is taken as the answer for its tool.
const FAILED_PROBE_MEMORY: std::time::Duration = std::time::Duration::from_secs(2);

impl Toolchains {
    /// The identity of the compiler at `path`; probed again whenever the binary's content changes.
    pub fn identify(
        &self,
        fs: &FsCache,
        path: &Path,
        env: &[(OsString, OsString)],
        synced: Synced,
    ) -> Result<Arc<Toolchain>, String> {
        let digest = fs
            .digest_synced(path, synced)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let key = (path.to_path_buf(), digest.hash, "--version");
        self.probed_once(
            &key,
            || self.by_binary.get(&key).map(|found| found.clone()),
            || self.probe_compiler(path, env, &key),
        )
    }

    /// The failure of a probe of this tool that ended within [`FAILED_PROBE_MEMORY`]: the
    /// calls of a parallel build that wait for one probe share its failure instead of each
    /// probing again in turn; later calls probe afresh, as a failure may be passing.
    fn recent_failure(&self, key: &ProbeKey) -> Option<String> {
        let failed = self.failed_probes.get(key)?;
        (failed.0.elapsed() < FAILED_PROBE_MEMORY).then(|| failed.1.clone())
    }

    fn remember_failure(&self, key: &ProbeKey, why: &str) {
        self.failed_probes
            .insert(key.clone(), (std::time::Instant::now(), why.to_string()));
    }

    /// Runs `probe` for the tool `key` names unless `known` already has its identity or a
    /// probe of it has just failed. The calls of a parallel cold build (and the daemon's own
    /// start-up probe) that find the tool unknown wait for one probe instead of each running
    /// their own.
    fn probed_once<T>(
        &self,
        key: &ProbeKey,
        known: impl Fn() -> Option<T>,
        probe: impl FnOnce() -> Result<T, String>,
    ) -> Result<T, String> {
        let answered = || {
            known()
                .map(Ok)
                .or_else(|| self.recent_failure(key).map(Err))
        };
        if let Some(answer) = answered() {
            return answer;
        }
        let gate = self.probing.entry(key.0.clone()).or_default().clone();
        let _probing = gate.lock();
        if let Some(answer) = answered() {
            return answer;
        }
        probe().inspect_err(|why| self.remember_failure(key, why))
    }

    /// Probes the gcc/clang at `path` (its digest in `key`) and remembers what it is.
    fn probe_compiler(
        &self,
        path: &Path,
        env: &[(OsString, OsString)],
        key: &ProbeKey,
    ) -> Result<Arc<Toolchain>, String> {
        // The probes run side by side: a cold build waits for them before its first compile.
        let machine_probe = || probe(path, env, &["-dumpmachine"]).unwrap_or_default();
        let location_probe = || location_of_compiler(path, env);
        let (version, machine, location) = std::thread::scope(|scope| {
            let machine = std::thread::Builder::new().spawn_scoped(scope, machine_probe);
            let location = std::thread::Builder::new().spawn_scoped(scope, location_probe);
            let version = probe(path, env, &["--version"]);
            let machine = match machine {
                Ok(running) => running.join().unwrap_or_default(),
                Err(_) => machine_probe(),
            };
            let location = match location {
                Ok(running) => running.join().unwrap_or_else(|_| location_probe()),
                Err(_) => location_probe(),
            };
            (version, machine, location)
        });
        let version = version?;
        let banner = String::from_utf8_lossy(&version);
        let emscripten = banner.contains("Emscripten");
        let family = if banner.contains("clang version") || emscripten {
            Family::Clang
        } else {
            Family::Gcc
        };
        let mut hasher = blake3::Hasher::new();
        hasher.update(&key.1);
        hasher.update(&(version.len() as u64).to_le_bytes());
        hasher.update(&version);
        hasher.update(&machine);
        hasher.update(&location);
        let toolchain = Arc::new(Toolchain {
            hash: *hasher.finalize().as_bytes(),
            family,
            major_version: major_version(&banner),
            emscripten,
        });
        tracing::info!(
            "identified compiler {}: {}",
            path.display(),
            banner.lines().next().unwrap_or_default()
        );
        self.by_binary.insert(key.clone(), toolchain.clone());
        Ok(toolchain)
    }

    /// The identity of any tool at `path`: its binary's digest and the output of `probes`
    /// (for rustc, `-vV`). Probed again whenever the binary's content changes; a rustup proxy
    /// (found once per binary) has none.
    pub fn identify_with(
        &self,
        fs: &FsCache,
        path: &Path,
        env: &[(OsString, OsString)],
        probes: &'static [&'static str],
        synced: Synced,
    ) -> Result<Hash, Unidentified> {
        let digest = self.tool_digest(fs, path, synced)?;
        let key = (
            path.to_path_buf(),
            digest,
            probes.first().copied().unwrap_or(""),
        );
        let probe_tool = || {
            let banner = probe(path, env, probes)?;
            tracing::info!(
                "identified tool {}: {}",
                path.display(),
                String::from_utf8_lossy(banner.split(|&b| b == b'\n').next().unwrap_or_default())
            );
            Ok(self.remember_identity(key.clone(), &banner).hash)
        };
        self.probed_once(
            &key,
            || self.by_binary.get(&key).map(|found| found.hash),
            probe_tool,
        )
        .map_err(Unidentified::Failed)
    }

    /// The content digest of the tool at `path`, unless it is a rustup proxy (found once per
    /// binary), which stands for whatever toolchain the caller selects.
    fn tool_digest(&self, fs: &FsCache, path: &Path, synced: Synced) -> Result<Hash, Unidentified> {
        let digest = fs
            .digest_synced(path, synced)
            .map_err(|e| Unidentified::Failed(format!("{}: {e}", path.display())))?
            .hash;
        let key = (path.to_path_buf(), digest);
        let proxy = match self.proxies.get(&key) {
            Some(known) => *known,
            None => {
                let proxy = rustup_behind(path).is_some();
                self.proxies.insert(key, proxy);
                proxy
            }
        };
        if proxy {
            return Err(Unidentified::RustupProxy);
        }
        Ok(digest)
    }

    /// The identity of a tool from its digest (in `key`) and what its identity probe printed.
    fn remember_identity(&self, key: ProbeKey, banner: &[u8]) -> Arc<Toolchain> {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&key.1);
        hasher.update(banner);
        if key.2 == "-vV" {
            hasher.update(&sysroot_libraries(&key.0));
        }
        let toolchain = Arc::new(Toolchain {
            hash: *hasher.finalize().as_bytes(),
            family: Family::Gcc,
            major_version: None,
            emscripten: false,
        });
        self.by_binary.insert(key, toolchain.clone());
        toolchain
    }

    /// The answer to the query `args` of the tool at `path` in `env`, and whether it came from
    /// memory. A query is run once per binary content, arguments and the variables that could
    /// change its answer ([`query_env`]); failures are not remembered. `run` runs it the way
    /// the caller would have. A rustup proxy is never answered: which toolchain it runs
    /// depends on the caller's directory. When the query is the tool's identity probe
    /// (`identity_probe`, e.g. rustc's `-vV`), its answer also gives the identity, so it is
    /// not run a second time for the compiles that follow.
    pub fn answer_query(
        &self,
        fs: &FsCache,
        query: Query<'_>,
        synced: Synced,
        run: impl FnOnce() -> std::io::Result<std::process::Output>,
    ) -> Result<(Arc<QueryAnswer>, bool), Unidentified> {
        let Query {
            path,
            env,
            args,
            identity_probe,
        } = query;
        let digest = self.tool_digest(fs, path, synced)?;
        let Some(layout) = rustc_layout(path) else {
            return Err(Unidentified::Failed(format!(
                "{}: not a rustc binary beside its driver library (../lib/librustc_driver-*, or rustc_driver-*.dll on Windows)",
                path.display()
            )));
        };
        let key = query_key(path, &digest, &layout, args, env);
        if let Some(found) = self.answers.get(&key) {
            return Ok((found.clone(), true));
        }
        let output =
            run().map_err(|e| Unidentified::Failed(format!("running {}: {e}", path.display())))?;
        let answer = Arc::new(QueryAnswer {
            exit_code: zccache_core::exit_code(&output.status),
            stdout: output.stdout,
            stderr: output.stderr,
        });
        if answer.exit_code == 0 {
            if self.answers.len() >= MAX_QUERY_ANSWERS {
                self.answers.clear();
            }
            self.answers.insert(key, answer.clone());
            let identity_key = (path.to_path_buf(), digest, identity_probe);
            if args.len() == 1
                && args[0] == identity_probe
                && !self.by_binary.contains_key(&identity_key)
            {
                let mut banner = answer.stdout.clone();
                banner.extend_from_slice(&answer.stderr);
                self.remember_identity(identity_key, &banner);
            }
        }
        Ok((answer, false))
    }

    /// Whether [`Toolchains::system_dirs`] would answer from memory.
    pub fn knows_system_dirs(
        &self,
        toolchain: &Toolchain,
        language: Language,
        search_args: &[OsString],
        cwd: &Path,
    ) -> bool {
        let key = system_dirs_key(toolchain, language, search_args, cwd);
        self.search_dirs.contains_key(&key)
    }

    /// The compiler's own `#include <...>` directories for `language` under `search_args`
    /// (`--sysroot`, `-nostdinc`, `--target`...), absolute and in search order.
    pub fn system_dirs(
        &self,
        toolchain: &Toolchain,
        path: &Path,
        language: Language,
        search_args: &[OsString],
        env: &[(OsString, OsString)],
        cwd: &Path,
    ) -> Result<Arc<Vec<PathBuf>>, String> {
        let key = system_dirs_key(toolchain, language, search_args, cwd);
        if let Some(found) = self.search_dirs.get(&key) {
            return Ok(found.clone());
        }
        let mut command = Command::new(path);
        command
            .args(search_args)
            .args(["-x", language.as_x(), "-E", "-v", "-"])
            .current_dir(cwd)
            .env_clear()
            .envs(
                env.iter()
                    .filter(|(k, _)| !INCLUDE_ENV.iter().any(|name| k == name))
                    .map(|(k, v)| (k, v)),
            )
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let output = priority::spawn_for(command, env)
            .and_then(|child| child.wait_with_output())
            .map_err(|e| format!("probing {}: {e}", path.display()))?;
        let dirs = Arc::new(parse_search_list(
            &String::from_utf8_lossy(&output.stderr),
            cwd,
        ));
        self.search_dirs.insert(key, dirs.clone());
        Ok(dirs)
    }
}

/// What a compiler's system include directories depend on besides its identity.
fn system_dirs_key(
    toolchain: &Toolchain,
    language: Language,
    search_args: &[OsString],
    cwd: &Path,
) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&toolchain.hash);
    hasher.update(language.as_x().as_bytes());
    for arg in search_args {
        hasher.update(&(arg.len() as u64).to_le_bytes());
        hasher.update(arg.as_encoded_bytes());
    }
    hasher.update(cwd.as_os_str().as_encoded_bytes());
    *hasher.finalize().as_bytes()
}

/// Whether a variable can change a rustc query's answer: rustc's own (`RUST*`), the dynamic
/// loader's (`LD_LIBRARY_PATH` can load another `librustc_driver`), and the platform SDK's.
pub fn query_env(name: &[u8]) -> bool {
    name.starts_with(b"RUST")
        || name.starts_with(b"LD_")
        || name == b"SDKROOT"
        || name.ends_with(b"_DEPLOYMENT_TARGET")
}

/// What besides its own content decides what the rustc at `path` prints, when it is the
/// toolchain's own binary: its real location (rustc finds its sysroot from there), and the
/// driver and LLVM libraries in its `../lib`, or beside it on Windows (their identity: a
/// rebuilt or upgraded library
/// may keep its name). `None` for anything else — a script, a shim, a binary whose driver
/// lives elsewhere — whose answers could depend on what no key here sees.
fn rustc_layout(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let real = std::fs::canonicalize(path).ok()?;
    let mut magic = [0u8; 4];
    std::fs::File::open(&real)
        .ok()?
        .read_exact(&mut magic)
        .ok()?;
    // Where the driver lives: beside rustc.exe on Windows (a PE binary, `rustc_driver-*.dll`),
    // in `../lib` elsewhere (ELF or Mach-O, `librustc_driver-*.so`/`.dylib`).
    let (lib, driver): (PathBuf, &[u8]) = match magic {
        [b'M', b'Z', ..] => (real.parent()?.to_path_buf(), b"rustc_driver"),
        [0x7f, b'E', b'L', b'F'] | [0xcf, 0xfa, 0xed, 0xfe] | [0xca, 0xfe, 0xba, 0xbe] => (
            std::fs::canonicalize(real.parent()?.join("../lib")).ok()?,
            b"librustc_driver",
        ),
        _ => return None,
    };
    let mut libraries = Vec::new();
    for entry in std::fs::read_dir(&lib).ok()?.flatten() {
        let name = entry.file_name();
        let bytes = name.as_encoded_bytes();
        if bytes.starts_with(driver) || bytes.starts_with(b"libLLVM") || bytes.starts_with(b"LLVM")
        {
            let stamp =
                zccache_platform::stamp::FileStamp::of(&std::fs::metadata(entry.path()).ok()?);
            let split = |ns: i128| {
                (
                    (ns.div_euclid(1_000_000_000)) as u64,
                    ns.rem_euclid(1_000_000_000) as u64,
                )
            };
            libraries.push((
                name.clone(),
                [
                    stamp.dev,
                    stamp.ino,
                    stamp.size,
                    split(stamp.mtime_ns).0,
                    split(stamp.mtime_ns).1,
                    split(stamp.ctime_ns).0,
                    split(stamp.ctime_ns).1,
                ],
            ));
        }
    }
    if !libraries
        .iter()
        .any(|(name, _)| name.as_encoded_bytes().starts_with(driver))
    {
        return None;
    }
    libraries.sort();
    let mut layout = Vec::new();
    for part in [
        real.as_os_str().as_encoded_bytes(),
        lib.as_os_str().as_encoded_bytes(),
    ] {
        layout.extend_from_slice(&(part.len() as u64).to_le_bytes());
        layout.extend_from_slice(part);
    }
    for (name, stat) in libraries {
        layout.extend_from_slice(&(name.len() as u64).to_le_bytes());
        layout.extend_from_slice(name.as_encoded_bytes());
        for value in stat {
            layout.extend_from_slice(&value.to_le_bytes());
        }
    }
    Some(layout)
}

/// The memory key of a query: the tool's path and content, its [`rustc_layout`], the
/// arguments in order, and the variables [`query_env`] picks (the last value of each, in name
/// order).
fn query_key(
    path: &Path,
    digest: &Hash,
    layout: &[u8],
    args: &[OsString],
    env: &[(OsString, OsString)],
) -> Hash {
    let mut hasher = blake3::Hasher::new();
    let mut field = |bytes: &[u8]| {
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(b"zccache query v1");
    field(path.as_os_str().as_encoded_bytes());
    field(digest);
    field(layout);
    field(&(args.len() as u64).to_le_bytes());
    for arg in args {
        field(arg.as_encoded_bytes());
    }
    let mut vars: Vec<(&[u8], &[u8])> = Vec::new();
    for (name, value) in env.iter().rev() {
        let name = name.as_encoded_bytes();
        if query_env(name) && !vars.iter().any(|(n, _)| *n == name) {
            vars.push((name, value.as_encoded_bytes()));
        }
    }
    vars.sort();
    for (name, value) in vars {
        field(name);
        field(value);
    }
    *hasher.finalize().as_bytes()
}

/// The config file emcc reads: `$EM_CONFIG`, else `.emscripten` beside emcc's real location
/// (Debian installs one there), else `~/.emscripten`; `None` when there is none.
pub fn emscripten_config(
    emcc: &Path,
    env_var: impl Fn(&str) -> Option<OsString>,
) -> Option<PathBuf> {
    if let Some(config) = env_var("EM_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(config));
    }
    let beside = std::fs::canonicalize(emcc)
        .ok()
        .and_then(|real| Some(real.parent()?.join(".emscripten")));
    if let Some(beside) = beside.filter(|p| p.is_file()) {
        return Some(beside);
    }
    env_var("HOME")
        .map(|home| Path::new(&home).join(".emscripten"))
        .filter(|p| p.is_file())
}

/// The major version in a `--version` banner: the first `N.N…` word of the first line that
/// looks like a version (`gcc (Debian 12.2.0-14) 12.2.0`, `clang version 14.0.6`).
fn major_version(banner: &str) -> Option<u32> {
    let first = banner.lines().next()?;
    first
        .split_whitespace()
        .rev()
        .filter(|word| word.contains('.'))
        .find_map(|word| word.split('.').next()?.parse().ok())
}

/// Runs the compiler with `args` and returns stdout followed by stderr.
fn probe(path: &Path, env: &[(OsString, OsString)], args: &[&str]) -> Result<Vec<u8>, String> {
    let mut command = Command::new(path);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = priority::spawn_for(command, env)
        .and_then(|child| child.wait_with_output())
        .map_err(|e| format!("running {} {}: {e}", path.display(), args.join(" ")))?;
    if !output.status.success() {
        return Err(format!(
            "{} {} exited with {}",
            path.display(),
            args.join(" "),
            output.status
        ));
    }
    let mut all = output.stdout;
    all.extend_from_slice(&output.stderr);
    Ok(all)
}

/// What a gcc/clang driver's behaviour takes from where it is installed: the directories it
/// runs its programs (cc1, as, ld) from and finds its libraries and built-in headers in, as
/// `-print-search-dirs` lists them. With it in the identity, the cache key need not name the
/// compiler's path: a copy installed elsewhere with the same layout (another machine's
/// toolchain, a relocated SDK) shares entries, one that would search elsewhere does not. A
/// driver that cannot say (the probe fails) is identified by its path instead.
fn location_of_compiler(path: &Path, env: &[(OsString, OsString)]) -> Vec<u8> {
    match probe(path, env, &["-print-search-dirs"]) {
        Ok(dirs) if !dirs.is_empty() => dirs,
        _ => {
            let mut named = b"path:".to_vec();
            named.extend_from_slice(path.as_os_str().as_encoded_bytes());
            named
        }
    }
}

/// The standard libraries of every target installed beside a rustc (or clippy-driver), by
/// file name (`lib/rustlib/<target>/lib/libstd-<hash>.rlib`: the hash changes with the
/// build). Part of its identity: `-vV` names the compiler's build, not the libraries beside
/// it, and the key does not name the compiler's path (the same toolchain under another home
/// directory shares entries).
fn sysroot_libraries(path: &Path) -> Vec<u8> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    let Some(sysroot) = std::fs::canonicalize(path)
        .ok()
        .and_then(|real| Some(real.parent()?.parent()?.to_path_buf()))
    else {
        return Vec::new();
    };
    let Ok(targets) = std::fs::read_dir(sysroot.join("lib/rustlib")) else {
        return Vec::new();
    };
    for target in targets.flatten() {
        let Ok(libs) = std::fs::read_dir(target.path().join("lib")) else {
            continue;
        };
        for lib in libs.flatten() {
            let mut name = target.file_name().into_encoded_bytes();
            name.push(b'/');
            name.extend_from_slice(lib.file_name().as_encoded_bytes());
            names.push(name);
        }
    }
    names.sort();
    names.join(&b'\n')
}

/// The directories listed under `#include <...> search starts here:` in `-v` output.
fn parse_search_list(verbose: &str, cwd: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut inside = false;
    for line in verbose.lines() {
        if line.starts_with("#include <...> search starts here:") {
            inside = true;
        } else if line.starts_with("End of search list.") {
            break;
        } else if inside {
            let dir = line.trim().trim_end_matches(" (framework directory)");
            if !dir.is_empty() {
                dirs.push(absolute(cwd, Path::new(dir)));
            }
        }
    }
    dirs
}

/// The rustup binary when `tool` is a rustup proxy: a symbolic link to rustup, or a hard link
/// to the `rustup` beside it. What a proxy runs depends on the caller's directory and
/// environment (`RUSTUP_TOOLCHAIN`, `rust-toolchain.toml`, rustup's settings), not on its own
/// content.
pub(crate) fn rustup_behind(tool: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(tool).ok()?;
    if real.file_stem()?.to_str()? == "rustup" {
        return Some(real);
    }
    let sibling = real.with_file_name(format!("rustup{}", std::env::consts::EXE_SUFFIX));
    zccache_platform::stamp::same_file(&real, &sibling).then_some(sibling)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)] // the probed tool is a shell script
    #[test]
    fn a_failed_probe_answers_the_calls_waiting_for_it_then_is_tried_again() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        let count = dir.path().join("probes");
        std::fs::write(
            &tool,
            format!("#!/bin/sh\necho x >> {}\nexit 1\n", count.display()),
        )
        .unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let probes = || {
            std::fs::read_to_string(&count)
                .unwrap_or_default()
                .lines()
                .count()
        };
        let (toolchains, fs) = (Toolchains::default(), FsCache::new());
        let identify = || toolchains.identify_with(&fs, &tool, &[], &["-vV"], Synced::NO);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| assert!(matches!(identify(), Err(Unidentified::Failed(_)))));
            }
        });
        assert_eq!(probes(), 1, "four calls at once share one failed probe");
        std::thread::sleep(FAILED_PROBE_MEMORY);
        assert!(identify().is_err());
        assert_eq!(probes(), 2, "a later call probes again");
    }

    #[test]
    fn rustc_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin/rustc");
        let driver = dir.path().join("lib/librustc_driver-abc.so");
        std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
        std::fs::create_dir_all(driver.parent().unwrap()).unwrap();
        std::fs::write(&bin, b"\x7fELF rest of a binary").unwrap();
        assert_eq!(rustc_layout(&bin), None, "no driver library beside it");
        std::fs::write(&driver, b"driver").unwrap();
        let layout = rustc_layout(&bin).expect("a toolchain layout");
        assert_eq!(rustc_layout(&bin), Some(layout.clone()));
        // A driver rebuilt under the same name, or an LLVM library added: another layout.
        std::fs::write(&driver, b"driver, rebuilt").unwrap();
        let rebuilt = rustc_layout(&bin).unwrap();
        assert_ne!(rebuilt, layout);
        std::fs::write(dir.path().join("lib/libLLVM.so.19"), b"llvm").unwrap();
        assert_ne!(rustc_layout(&bin).unwrap(), rebuilt);
        // A script in front of rustc is not the toolchain's binary.
        std::fs::write(&bin, b"#!/bin/sh\nexec rustc \"$@\"\n").unwrap();
        assert_eq!(rustc_layout(&bin), None);
    }

    #[test]
    fn query_keys() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(OsString, OsString)> {
            pairs.iter().map(|(k, v)| (k.into(), v.into())).collect()
        };
        let args = |line: &str| -> Vec<OsString> { line.split(' ').map(OsString::from).collect() };
        let rustc = Path::new("/no/such/bin/rustc");
        let key = |digest: u8, line: &str, vars: &[(&str, &str)]| {
            query_key(rustc, &[digest; 32], b"layout", &args(line), &env(vars))
        };
        let base = key(1, "-vV", &[("RUSTC_BOOTSTRAP", "1"), ("PATH", "/a")]);
        // Variables rustc cannot see through a query, and their order: the same key.
        assert_eq!(
            base,
            key(
                1,
                "-vV",
                &[
                    ("PATH", "/b"),
                    ("HOME", "/h"),
                    ("CARGO_MAKEFLAGS", "-j2"),
                    ("RUSTC_BOOTSTRAP", "1")
                ]
            )
        );
        // The last value of a variable is the one rustc sees.
        assert_eq!(
            base,
            key(
                1,
                "-vV",
                &[("RUSTC_BOOTSTRAP", "0"), ("RUSTC_BOOTSTRAP", "1")]
            )
        );
        for other in [
            key(2, "-vV", &[("RUSTC_BOOTSTRAP", "1")]),
            key(1, "-V", &[("RUSTC_BOOTSTRAP", "1")]),
            key(1, "-vV", &[]),
            key(
                1,
                "-vV",
                &[("RUSTC_BOOTSTRAP", "1"), ("LD_LIBRARY_PATH", "/l")],
            ),
            key(1, "-vV", &[("RUSTC_BOOTSTRAP", "1"), ("SDKROOT", "/s")]),
            key(
                1,
                "-vV",
                &[("RUSTC_BOOTSTRAP", "1"), ("MACOSX_DEPLOYMENT_TARGET", "11")],
            ),
        ] {
            assert_ne!(base, other);
        }
        assert_ne!(
            query_key(rustc, &[1; 32], b"layout", &args("-vV"), &[]),
            query_key(rustc, &[1; 32], b"other libraries", &args("-vV"), &[])
        );
        assert_ne!(key(1, "--print cfg", &[]), key(1, "cfg --print", &[]));
        assert_ne!(key(1, "--print cfgx", &[]), key(1, "--print cfg x", &[]));
    }

    #[test]
    fn major_versions() {
        assert_eq!(
            major_version("x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\nCopyright"),
            Some(12)
        );
        assert_eq!(
            major_version("Debian clang version 14.0.6\nTarget: x86_64"),
            Some(14)
        );
        assert_eq!(major_version("gcc (GCC) 9.4.0"), Some(9));
        assert_eq!(major_version("no version here"), None);
    }

    #[test]
    fn parses_gcc_search_list() {
        let text = "ignoring nonexistent directory \"/usr/local/include/x86_64-linux-gnu\"\n\
#include \"...\" search starts here:\n\
#include <...> search starts here:\n \
/usr/lib/gcc/x86_64-linux-gnu/12/include\n \
/usr/local/include\n \
/usr/include/x86_64-linux-gnu\n \
/usr/include\n\
End of search list.\n";
        let dirs = parse_search_list(text, Path::new("/w"));
        assert_eq!(
            dirs,
            [
                PathBuf::from("/usr/lib/gcc/x86_64-linux-gnu/12/include"),
                "/usr/local/include".into(),
                "/usr/include/x86_64-linux-gnu".into(),
                "/usr/include".into()
            ]
        );
    }
}
