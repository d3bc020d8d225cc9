//! The C/C++ compile pipeline: parse, key, look up, deliver or compile and store.

use crate::paths::absolute;
use crate::search::SearchPath;
use crate::toolchain::Toolchain;
use crate::Daemon;
use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use zccache_artifact::{Delivery, DepDigest, ManifestEntry, StoredOutput, StoredResult};
use zccache_compiler::{depfile, parse_gcc, CompileInvocation, DepMode, Parsed};
use zccache_core::Hash;
use zccache_fscache::{FileDigest, StatSig};
use zccache_protocol::{CompileReply, CompileRequest, Outcome, Response};

/// Environment variables that change what a gcc/clang compile produces or prints.
const KEY_ENV: &[&str] = &[
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
    "OBJCPLUS_INCLUDE_PATH",
    "SOURCE_DATE_EPOCH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "GCC_COLORS",
    "GCC_EXEC_PREFIX",
    "COMPILER_PATH",
    "CCC_OVERRIDE_OPTIONS",
    "SDKROOT",
    "MACOSX_DEPLOYMENT_TARGET",
    "GCC_COMPARE_DEBUG",
];

/// Environment variables that make the compiler write a depfile we would not store.
const DEPFILE_ENV: &[&str] = &["DEPENDENCIES_OUTPUT", "SUNPRO_DEPENDENCIES"];

const ROLE_OBJECT: &str = "object";
const ROLE_DEPFILE: &str = "depfile";

/// What a successful compile produced, read before replying.
struct Captured {
    /// Every dependency the compiler reported, as written.
    deps: Vec<String>,
    /// The depfile the build asked for, as delivered to it.
    user_depfile: Option<Vec<u8>>,
    object: Vec<u8>,
    search: SearchPath,
}

/// A compile result waiting to be checked and stored.
struct StoreJob {
    key: Hash,
    cwd: PathBuf,
    source: PathBuf,
    source_digest: FileDigest,
    started_at: SystemTime,
    captured: Captured,
    result: StoredResult,
}

/// The store a job was accepted for (present whenever a job exists).
fn store_of(daemon: &Daemon) -> &zccache_artifact::Store {
    daemon
        .store
        .as_ref()
        .expect("store jobs are only created when the store is open")
}

/// One compile request, decoded.
struct Call {
    /// When the request arrived, for timing logs.
    received: Instant,
    compiler: PathBuf,
    args: Vec<OsString>,
    cwd: PathBuf,
    env: Vec<(OsString, OsString)>,
}

impl Call {
    fn env_var(&self, name: &str) -> Option<&OsString> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// The result of looking for a reusable entry.
enum Lookup {
    Hit(CompileReply),
    Miss,
}

impl Daemon {
    /// Handles one compile request from start to reply.
    pub(crate) fn compile(self: &Arc<Self>, request: CompileRequest) -> Response {
        let mut argv = request.argv.into_iter().map(OsString::from_vec);
        let Some(compiler) = argv.next().map(PathBuf::from) else {
            return Response::Error("empty argv".into());
        };
        let call = Call {
            received: Instant::now(),
            compiler,
            args: argv.collect(),
            cwd: PathBuf::from(OsString::from_vec(request.cwd)),
            env: request
                .env
                .into_iter()
                .map(|(k, v)| (OsString::from_vec(k), OsString::from_vec(v)))
                .collect(),
        };
        let run_locally = |reason: &str| {
            self.stats.non_cacheable(reason);
            Response::RunLocally {
                reason: reason.to_string(),
            }
        };
        if zccache_compiler::detect_tool(&call.compiler).is_none() {
            return run_locally("unsupported_tool");
        }
        let invocation = match parse_gcc(&call.compiler, &call.args) {
            Parsed::Cacheable(invocation) => invocation,
            Parsed::NotCacheable(nc) => {
                tracing::debug!("not cacheable ({}): {}", nc.reason, nc.detail);
                return run_locally(nc.reason);
            }
        };
        if DEPFILE_ENV.iter().any(|name| call.env_var(name).is_some()) {
            return run_locally("depfile_env");
        }
        let Some(store) = self.store.as_ref() else {
            return run_locally("store_unavailable");
        };
        let toolchain = match self
            .toolchains
            .identify(&self.fs, &call.compiler, &call.env)
        {
            Ok(toolchain) => toolchain,
            Err(why) => {
                tracing::info!("compiler not identified: {why}");
                return run_locally("compiler_unidentified");
            }
        };
        let source_path = absolute(&call.cwd, &invocation.source);
        let source = match self.fs.digest(&source_path) {
            Ok(digest) => digest,
            Err(_) => return run_locally("source_unreadable"),
        };
        let key = cache_key(&call, &invocation, &toolchain, &source);
        match self.lookup(store, &key, &call, &invocation, &source) {
            Lookup::Hit(reply) => {
                tracing::debug!("hit: served in {} us", call.received.elapsed().as_micros());
                return Response::Compiled(reply);
            }
            Lookup::Miss => {}
        }
        self.compile_and_store(&key, &call, &invocation, &toolchain, source)
    }

    /// Serves the first stored entry whose dependencies are unchanged, if any.
    fn lookup(
        &self,
        store: &zccache_artifact::Store,
        key: &Hash,
        call: &Call,
        invocation: &CompileInvocation,
        source: &FileDigest,
    ) -> Lookup {
        let started = Instant::now();
        // A result for this key may be on its way into the store.
        self.pending.wait_for(key);
        let manifest = match store.manifest(key) {
            Ok(Some(manifest)) => manifest,
            Ok(None) => return Lookup::Miss,
            Err(e) => {
                tracing::warn!("manifest lookup failed: {e}");
                self.stats.error();
                return Lookup::Miss;
            }
        };
        'entries: for entry in &manifest.entries {
            let mut newest_input = source.sig.mtime_ns;
            for dep in &entry.deps {
                let path = absolute(&call.cwd, Path::new(std::ffi::OsStr::from_bytes(&dep.path)));
                match self.fs.digest(&path) {
                    Ok(digest) if digest.hash == dep.hash => {
                        newest_input = newest_input.max(digest.sig.mtime_ns);
                    }
                    _ => continue 'entries,
                }
            }
            for absent in &entry.absent {
                let path = absolute(&call.cwd, Path::new(std::ffi::OsStr::from_bytes(absent)));
                if std::fs::symlink_metadata(&path).is_ok() {
                    continue 'entries;
                }
            }
            match self.deliver(store, entry, call, invocation, newest_input) {
                Ok(()) => {
                    let spent = started.elapsed().as_millis() as u64;
                    self.stats
                        .hit(entry.result.compile_ms.saturating_sub(spent));
                    return Lookup::Hit(CompileReply {
                        exit_code: 0,
                        stdout: entry.result.stdout.clone(),
                        stderr: entry.result.stderr.clone(),
                        outcome: Outcome::Hit,
                    });
                }
                Err(why) => {
                    tracing::warn!("could not serve a hit, compiling instead: {why}");
                    return Lookup::Miss;
                }
            }
        }
        Lookup::Miss
    }

    /// Writes every output of `entry` where this invocation wants it.
    fn deliver(
        &self,
        store: &zccache_artifact::Store,
        entry: &ManifestEntry,
        call: &Call,
        invocation: &CompileInvocation,
        newest_input_ns: i128,
    ) -> Result<(), String> {
        let mut object = None;
        for output in &entry.result.outputs {
            match output.role.as_str() {
                ROLE_OBJECT => object = Some(output.blob),
                ROLE_DEPFILE => {
                    let path = match &invocation.deps {
                        DepMode::Full { path } | DepMode::UserOnly { path } => path,
                        DepMode::None => continue,
                    };
                    let dest = absolute(&call.cwd, path);
                    store
                        .deliver(&output.blob, &dest, Delivery::Copy)
                        .map_err(|e| e.to_string())?;
                }
                other => return Err(format!("unknown output role {other}")),
            }
        }
        let object = object.ok_or("entry has no object")?;
        let dest = absolute(&call.cwd, &invocation.output);
        store
            .deliver(
                &object,
                &dest,
                Delivery::Link {
                    not_older_than_ns: newest_input_ns,
                },
            )
            .map_err(|e| e.to_string())
    }

    /// Runs the compiler and stores the result when it is provably what these inputs produce.
    fn compile_and_store(
        self: &Arc<Self>,
        key: &Hash,
        call: &Call,
        invocation: &CompileInvocation,
        toolchain: &Toolchain,
        source: FileDigest,
    ) -> Response {
        // We always need the full dependency list; ask for it unless the build asked for -MD.
        let own_depfile = match &invocation.deps {
            DepMode::Full { .. } => None,
            DepMode::None | DepMode::UserOnly { .. } => {
                match tempfile::Builder::new()
                    .prefix("deps-")
                    .suffix(".d")
                    .tempfile_in(self.root.tmp_dir())
                {
                    Ok(file) => Some(file.into_temp_path()),
                    Err(e) => {
                        tracing::warn!("cannot create a temp depfile: {e}");
                        self.stats.error();
                        return self.run_unstored(call, "store_unwritable");
                    }
                }
            }
        };
        let run_args = match &own_depfile {
            Some(path) => invocation.args_with_depfile(&call.args, path),
            None => call.args.clone(),
        };
        let object_path = absolute(&call.cwd, &invocation.output);
        unlink_if_read_only(&object_path);
        let started_at = SystemTime::now();
        let started = Instant::now();
        tracing::debug!(
            "miss: {} us before the compiler starts",
            call.received.elapsed().as_micros()
        );
        let output = match self.run_compiler(call, &run_args) {
            Ok(output) => output,
            Err(e) => {
                tracing::info!("cannot run {}: {e}", call.compiler.display());
                return Response::RunLocally {
                    reason: "compiler_spawn_failed".into(),
                };
            }
        };
        let compile_us = started.elapsed().as_micros() as u64;
        let compile_ms = compile_us / 1000;
        let exit_code = exit_code(&output.status);
        let reply = |outcome| {
            Response::Compiled(CompileReply {
                exit_code,
                stdout: output.stdout.clone(),
                stderr: output.stderr.clone(),
                outcome,
            })
        };
        self.stats.miss();
        if exit_code != 0 {
            self.stats.not_stored("compile_failed");
            return reply(Outcome::NotStored {
                reason: "compile_failed".into(),
            });
        }
        let depfile_path = match (&own_depfile, &invocation.deps) {
            (Some(own), _) => own.to_path_buf(),
            (None, DepMode::Full { path }) => absolute(&call.cwd, path),
            (None, _) => unreachable!("own depfile is set unless the build asked for -MD"),
        };
        // Take what the build may change next (outputs, depfile) now; check and store after
        // replying, so the build never waits for the store.
        let captured = match self.capture(call, invocation, toolchain, &depfile_path) {
            Ok(captured) => captured,
            Err(reason) => {
                self.stats.not_stored(reason);
                return reply(Outcome::NotStored {
                    reason: reason.to_string(),
                });
            }
        };
        let job = StoreJob {
            key: *key,
            cwd: call.cwd.clone(),
            source: invocation.source.clone(),
            source_digest: source,
            started_at,
            captured,
            result: StoredResult {
                outputs: Vec::new(),
                stdout: output.stdout.clone(),
                stderr: output.stderr.clone(),
                compile_ms,
            },
        };
        self.pending.begin(key);
        let daemon = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("zccache-store".into())
            .spawn(move || {
                let key = job.key;
                if let Err(reason) = daemon.finish_store(store_of(&daemon), job) {
                    daemon.stats.not_stored(reason);
                }
                daemon.pending.end(&key);
            });
        if spawned.is_err() {
            self.pending.end(key);
            self.stats.not_stored("store_unwritable");
        }
        tracing::debug!(
            "miss: compiler {} us, after it {} us",
            compile_us,
            started.elapsed().as_micros() as u64 - compile_us
        );
        reply(Outcome::Miss)
    }

    /// Runs the compiler as called (plus `extra_args`) and replies without storing.
    fn run_unstored(&self, call: &Call, reason: &str) -> Response {
        match self.run_compiler(call, &call.args) {
            Ok(output) => {
                self.stats.not_stored(reason);
                Response::Compiled(CompileReply {
                    exit_code: exit_code(&output.status),
                    stdout: output.stdout,
                    stderr: output.stderr,
                    outcome: Outcome::NotStored {
                        reason: reason.into(),
                    },
                })
            }
            Err(_) => Response::RunLocally {
                reason: "compiler_spawn_failed".into(),
            },
        }
    }

    fn run_compiler(
        &self,
        call: &Call,
        args: &[OsString],
    ) -> std::io::Result<std::process::Output> {
        Command::new(&call.compiler)
            .args(args)
            .current_dir(&call.cwd)
            .env_clear()
            .envs(call.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
    }

    /// Reads what the compile produced before the build can touch it, and writes the `-MMD`
    /// depfile the build asked for.
    fn capture(
        &self,
        call: &Call,
        invocation: &CompileInvocation,
        toolchain: &Toolchain,
        depfile_path: &Path,
    ) -> Result<Captured, &'static str> {
        let text = std::fs::read(depfile_path).map_err(|_| "depfile_unreadable")?;
        let text = String::from_utf8(text).map_err(|_| "depfile_unreadable")?;
        let parsed = depfile::parse(&text).ok_or("depfile_unreadable")?;
        let system_dirs = self
            .system_dirs(call, invocation, toolchain)
            .map_err(|_| "compiler_unidentified")?;
        let user_depfile = match &invocation.deps {
            DepMode::None => None,
            DepMode::Full { .. } => Some(text.clone().into_bytes()),
            DepMode::UserOnly { path } => {
                let system: Vec<PathBuf> = system_dirs
                    .iter()
                    .chain(invocation.include_dirs.system.iter())
                    .map(|d| absolute(&call.cwd, d))
                    .collect();
                let kept: Vec<_> = parsed
                    .deps
                    .iter()
                    .enumerate()
                    .filter(|(i, d)| {
                        let abs = absolute(&call.cwd, Path::new(&d.path));
                        *i == 0 || !system.iter().any(|dir| abs.starts_with(dir))
                    })
                    .map(|(_, d)| d.clone())
                    .collect();
                let rendered = depfile::render(
                    toolchain.family,
                    &parsed.targets,
                    &kept,
                    invocation.phony_deps,
                );
                let dest = absolute(&call.cwd, path);
                write_atomically(&dest, rendered.as_bytes(), self.output_mode)
                    .map_err(|_| "output_unwritable")?;
                Some(rendered.into_bytes())
            }
        };
        let object =
            std::fs::read(absolute(&call.cwd, &invocation.output)).map_err(|_| "missing_output")?;
        if object.is_empty() {
            return Err("missing_output");
        }
        Ok(Captured {
            deps: parsed.deps.into_iter().map(|d| d.path).collect(),
            user_depfile,
            object,
            search: search_path(call, invocation, &system_dirs),
        })
    }

    /// Checks that the inputs are still what the compiler read, then stores the result. The
    /// error is the reason it was not stored.
    fn finish_store(
        &self,
        store: &zccache_artifact::Store,
        job: StoreJob,
    ) -> Result<(), &'static str> {
        let StoreJob {
            key,
            cwd,
            source,
            source_digest,
            started_at,
            captured,
            mut result,
        } = job;
        let source_path = absolute(&cwd, &source);
        // The source must be exactly what we hashed before the compile started.
        match StatSig::of(&source_path) {
            Ok(sig) if sig == source_digest.sig && !sig.touched_since(started_at) => {}
            _ => return Err("input_modified_during_compile"),
        }
        if source_digest.has_time_macros {
            return Err("time_macros");
        }
        let mut deps = Vec::new();
        let mut seen = HashSet::new();
        for dep in &captured.deps {
            let path = absolute(&cwd, Path::new(dep));
            if path == source_path || !seen.insert(path.clone()) {
                continue;
            }
            let digest = self.fs.digest(&path).map_err(|_| "dependency_unreadable")?;
            if digest.sig.touched_since(started_at) {
                return Err("input_modified_during_compile");
            }
            if digest.has_time_macros {
                return Err("time_macros");
            }
            deps.push(DepDigest {
                path: dep.as_bytes().to_vec(),
                hash: digest.hash,
            });
        }
        let dep_paths: Vec<&str> = captured.deps.iter().map(String::as_str).collect();
        let absent = crate::search::shadow_candidates(&captured.search, &cwd, &source, &dep_paths);
        let object = store.put_bytes(&captured.object).map_err(|e| {
            tracing::warn!("storing object: {e}");
            "store_unwritable"
        })?;
        result.outputs.push(StoredOutput {
            role: ROLE_OBJECT.into(),
            blob: object,
        });
        if let Some(bytes) = captured.user_depfile {
            let blob = store.put_bytes(&bytes).map_err(|_| "store_unwritable")?;
            result.outputs.push(StoredOutput {
                role: ROLE_DEPFILE.into(),
                blob,
            });
        }
        store
            .add_entry(
                &key,
                ManifestEntry {
                    deps,
                    absent,
                    result,
                },
            )
            .map_err(|e| {
                tracing::warn!("storing entry: {e}");
                "store_unwritable"
            })
    }

    fn system_dirs(
        &self,
        call: &Call,
        invocation: &CompileInvocation,
        toolchain: &Toolchain,
    ) -> Result<std::sync::Arc<Vec<PathBuf>>, String> {
        self.toolchains.system_dirs(
            toolchain,
            &call.compiler,
            invocation.language,
            &invocation.search_args,
            &call.env,
            &call.cwd,
        )
    }
}

/// The include search directories of this call, as written, in the compiler's order.
fn search_path(call: &Call, invocation: &CompileInvocation, system_dirs: &[PathBuf]) -> SearchPath {
    let env_dirs = |name: &str| -> Vec<PathBuf> {
        call.env_var(name)
            .map(|v| {
                std::env::split_paths(v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let lang_env = match invocation.language {
        zccache_compiler::Language::Cxx => "CPLUS_INCLUDE_PATH",
        _ => "C_INCLUDE_PATH",
    };
    let dirs = &invocation.include_dirs;
    let mut search = SearchPath::default();
    search.user.extend(dirs.quote.iter().cloned());
    search.user.extend(dirs.user.iter().cloned());
    search.user.extend(env_dirs("CPATH"));
    search.system.extend(dirs.system.iter().cloned());
    search.system.extend(env_dirs(lang_env));
    search.system.extend(system_dirs.iter().cloned());
    search.system.extend(dirs.after.iter().cloned());
    search
}

/// The cache key: everything that decides the outputs except the headers, which the manifest
/// checks.
fn cache_key(
    call: &Call,
    invocation: &CompileInvocation,
    toolchain: &Toolchain,
    source: &FileDigest,
) -> Hash {
    let mut hasher = blake3::Hasher::new();
    let mut field = |bytes: &[u8]| {
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(b"zccache gcc-like v1");
    field(&toolchain.hash);
    field(call.compiler.as_os_str().as_bytes());
    for arg in &invocation.key_args {
        field(arg.as_bytes());
    }
    field(b"--cwd--");
    if invocation.debug_info {
        field(call.cwd.as_os_str().as_bytes());
    }
    for name in KEY_ENV {
        field(name.as_bytes());
        match call.env_var(name) {
            Some(value) => field(value.as_bytes()),
            None => field(b"\0unset"),
        }
    }
    if invocation.native_cpu {
        field(&cpu_signature());
    }
    field(&source.hash);
    *hasher.finalize().as_bytes()
}

/// What `-march=native` resolves to: the CPU model and feature flags.
fn cpu_signature() -> Vec<u8> {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.starts_with("model name") || l.starts_with("flags") || l.starts_with("vendor_id")
        })
        .take(3)
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

fn exit_code(status: &std::process::ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A read-only file at an output path (a hardlink to a stored blob) would make some compilers
/// refuse to overwrite it; remove it so the compiler writes a fresh file.
fn unlink_if_read_only(path: &Path) {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.is_file() && meta.permissions().mode() & 0o200 == 0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Writes `data` to `dest` through a temp file in the same directory.
fn write_atomically(dest: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match dest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut staged = tempfile::Builder::new()
        .prefix(".zccache-")
        .tempfile_in(dir)?;
    staged.write_all(data)?;
    std::fs::set_permissions(staged.path(), std::fs::Permissions::from_mode(mode))?;
    staged.persist(dest).map_err(|e| e.error)?;
    Ok(())
}
