//! rustc and clippy-driver as cargo calls them through `RUSTC_WRAPPER`.
//!
//! The key holds the toolchain (`rustc -vV` and the binary), every argument in order (without
//! the target directory's paths that cannot reach the output, see
//! `RustInvocation::key_args`), the working directory, cargo's `CARGO_*` variables, the content of every `--extern` crate and
//! static native library, and for linking crates the linker's identity. The sources come from
//! rustc's dep-info on the miss, with the `env!` variables it lists; every file rustc wrote
//! (the dep-info's targets) is stored and restored.

use crate::inspect::{not_cacheable, Probe};
use crate::pipeline::{
    file_name_bytes, which, Call, Captured, CapturedOutput, Found, KeyHasher, Miss,
};
use crate::toolchain::{Query, Unidentified};
use crate::worktree::{replace_all, Worktree};
use crate::Daemon;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zccache_artifact::{Delivery, EnvDep, Store};
use zccache_compiler::{
    answerable_rustc_query, parse_depinfo, parse_rustc, ParsedRust, RustInvocation,
};
use zccache_core::paths::absolute;
use zccache_core::Hash;
use zccache_protocol::Response;

const KEY_DOMAIN: &str = "zccache rustc v2";

/// Stands for the output directory in a stored dep-info file, so that the file can be restored
/// into another one (a NUL never occurs in a path).
const OUT_DIR_MARK: &[u8] = b"\0zccache:out-dir\0";

/// `CARGO*` variables that are cargo's own settings, not the crate's: where the target
/// directory is reaches rustc only through the arguments, whose paths are keyed apart (see
/// `RustInvocation::key_args`); a crate that reads one with `env!` has it checked as any other
/// variable its dep-info names.
const NOT_KEYED_CARGO_ENV: &[&str] = &[
    "CARGO_MAKEFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
];

/// What identifies rustc (and the rustc clippy-driver runs): its `-vV`, which cargo also asks.
const IDENTITY_PROBE: &str = "-vV";

/// Variables besides `CARGO_*` that change what rustc, clippy or the linker produce.
const KEY_ENV: &[&str] = &[
    "RUSTC_BOOTSTRAP",
    "CLIPPY_ARGS",
    "CLIPPY_CONF_DIR",
    "LIBRARY_PATH",
    "SDKROOT",
    "MACOSX_DEPLOYMENT_TARGET",
    "SOURCE_DATE_EPOCH",
    "LANG",
    "LC_ALL",
    "LC_MESSAGES",
];

impl Daemon {
    /// A rustc call (or `clippy-driver <rustc> …` when `clippy`): served from the cache, or
    /// compiled and stored.
    pub(crate) fn compile_rust(self: &Arc<Self>, call: &Call, clippy: bool) -> Response {
        let rustc_args: &[OsString] = match (clippy, call.args.split_first()) {
            (false, _) => &call.args,
            (true, Some((_rustc, rest))) => rest,
            (true, None) => return self.run_locally(call, "rustc_probe"),
        };
        let invocation = match parse_rustc(rustc_args) {
            ParsedRust::Cacheable(invocation) => invocation,
            ParsedRust::Probe if !clippy => return self.answer_rustc_query(call),
            ParsedRust::Probe => return self.run_locally(call, "rustc_probe"),
            ParsedRust::NotCacheable(nc) => {
                tracing::debug!("not cacheable ({}): {}", nc.reason, nc.detail);
                return self.run_locally(call, nc.reason);
            }
        };
        let Some(store) = self.lookup_store() else {
            return self.run_locally(call, "store_unavailable");
        };
        if let Some(reason) = call.worktree().and_then(|w| unshareable(w, &invocation)) {
            call.worktree_fallback(&self.stats, reason);
        }
        let source_path = absolute(&call.cwd, &invocation.source);
        let source = match call.digest(&self.fs, &source_path) {
            Ok(digest) => digest,
            Err(_) => return self.run_locally(call, "source_unreadable"),
        };
        let key = match self.rust_key(call, clippy, &invocation, &source.hash) {
            Ok(key) => key,
            Err(reason) => return self.run_locally(call, reason),
        };
        let out_dir = absolute(&call.cwd, &invocation.out_dir);
        if let Some((store, found)) = self.look_up(store, &key, call, None) {
            if let Some(response) = self.serve_hit(call, &found, |found| {
                deliver(store, found, call, &invocation, &out_dir)
            }) {
                return response;
            }
        }
        let mut recorded = KeyHasher::recording(KEY_DOMAIN);
        let parts =
            match self.rust_key_parts(&mut recorded, call, clippy, &invocation, &source.hash) {
                Ok(()) => recorded.into_parts(),
                Err(_) => Vec::new(),
            };
        let miss = Miss {
            key,
            source: Some((invocation.source.clone(), source)),
            record_as: invocation.source.clone(),
            store_failures: false,
            time_macros_matter: false,
            parts,
        };
        let run_args = match call.worktree() {
            Some(worktree) => with_remap(worktree, &invocation, &call.args, usize::from(clippy)),
            None => call.args.clone(),
        };
        self.run_miss(call, &run_args, miss, || {
            capture(call, &invocation, &out_dir)
        })
    }

    /// `rustc -vV` or cargo's `--print` probe: answered from memory when this binary was asked
    /// the same before (cargo asks up to five times per build after `cargo clean`, ~10 ms each).
    /// The client sends only queries whose stdin, if read, is empty.
    fn answer_rustc_query(&self, call: &Call) -> Response {
        use std::sync::atomic::Ordering::Relaxed;
        if answerable_rustc_query(&call.args).is_none() {
            return self.run_locally(call, "rustc_probe");
        }
        let query = Query {
            path: &call.compiler,
            env: &call.env,
            args: &call.args,
            identity_probe: IDENTITY_PROBE,
        };
        let answer = self
            .toolchains
            .answer_query(&self.fs, query, call.synced(&self.fs), || {
                call.run(&call.compiler, &call.args)
            });
        match answer {
            Ok((answer, from_memory)) => {
                let counter = if from_memory {
                    &self.stats.queries_answered
                } else {
                    &self.stats.queries_run
                };
                counter.fetch_add(1, Relaxed);
                Response::Answered {
                    exit_code: answer.exit_code,
                    stdout: answer.stdout.clone(),
                    stderr: answer.stderr.clone(),
                }
            }
            Err(Unidentified::RustupProxy) => self.run_locally(call, "rustup_proxy"),
            Err(Unidentified::Failed(why)) => {
                tracing::info!("rustc query not run: {why}");
                self.run_locally(call, "rustc_probe")
            }
        }
    }

    /// Everything but the sources (which the manifest checks) that decides rustc's outputs.
    /// The key of a rustc/clippy call, with its parts, for `zccache inspect`; the error is why
    /// the call is not cacheable.
    pub(crate) fn probe_rust(&self, call: &Call, clippy: bool) -> Result<Vec<Probe>, String> {
        let rustc_args: &[OsString] = match (clippy, call.args.split_first()) {
            (false, _) => &call.args,
            (true, Some((_rustc, rest))) => rest,
            (true, None) => return Err("rustc_probe".into()),
        };
        let invocation = match parse_rustc(rustc_args) {
            ParsedRust::Cacheable(invocation) => invocation,
            ParsedRust::Probe => return Err("rustc_probe".into()),
            ParsedRust::NotCacheable(nc) => return Err(not_cacheable(nc.reason, &nc.detail)),
        };
        let source_path = absolute(&call.cwd, &invocation.source);
        let source = self
            .fs
            .digest(&source_path)
            .map_err(|e| format!("source_unreadable ({}: {e})", source_path.display()))?;
        let mut hasher = KeyHasher::recording(KEY_DOMAIN);
        self.rust_key_parts(&mut hasher, call, clippy, &invocation, &source.hash)
            .map_err(String::from)?;
        Ok(vec![Probe {
            source: source_path,
            key: hasher.finish(),
            parts: hasher.into_parts(),
        }])
    }

    fn rust_key(
        &self,
        call: &Call,
        clippy: bool,
        invocation: &RustInvocation,
        source: &Hash,
    ) -> Result<Hash, &'static str> {
        let mut key = KeyHasher::new(KEY_DOMAIN);
        self.rust_key_parts(&mut key, call, clippy, invocation, source)?;
        Ok(key.finish())
    }

    /// Feeds everything the key of a rustc/clippy call depends on into `key`.
    pub(crate) fn rust_key_parts(
        &self,
        key: &mut KeyHasher,
        call: &Call,
        clippy: bool,
        invocation: &RustInvocation,
        source: &Hash,
    ) -> Result<(), &'static str> {
        let identify = |path: &Path| {
            self.toolchains
                .identify_with(
                    &self.fs,
                    path,
                    &call.env,
                    &[IDENTITY_PROBE],
                    call.synced(&self.fs),
                )
                .map_err(|why| match why {
                    // cargo passes the toolchain's own rustc; a proxy reaches us only when
                    // called by name, and what it runs depends on the caller.
                    Unidentified::RustupProxy => "rustup_proxy",
                    Unidentified::Failed(why) => {
                        tracing::info!("toolchain not identified: {why}");
                        "compiler_unidentified"
                    }
                })
        };
        key.digest_part("compiler identity", &identify(&call.compiler)?);
        crate::pipeline::key_compiler_names(key, call);
        if clippy {
            let rustc = absolute(&call.cwd, Path::new(&call.args[0]));
            key.digest_part("rustc identity", &identify(&rustc)?);
            key.part("rustc file name", file_name_bytes(rustc.as_os_str()));
        }
        // Under remap, paths in the checkout are keyed relative to its root (see
        // `worktree.rs`); `unshareable` has made sure every such path is one rustc remaps.
        let worktree = call.worktree();
        let keyed = |text| crate::worktree::keyed(worktree, text);
        if let Some(worktree) = worktree {
            let own = user_remaps_root(worktree, &invocation.key_args);
            crate::worktree::key_remap(key, own, "--remap-path-prefix=<root>=.");
        }
        for arg in &invocation.key_args {
            key.part("argument", &keyed(arg.as_bytes()));
        }
        key.part("cwd", &keyed(call.cwd.as_os_str().as_encoded_bytes()));
        // Every variable cargo sets for the crate, except the jobserver's descriptors and the
        // target directory.
        let mut cargo_env: Vec<(&OsString, &OsString)> = call
            .env
            .iter()
            .filter(|(k, _)| {
                k.as_encoded_bytes().starts_with(b"CARGO")
                    && !NOT_KEYED_CARGO_ENV.iter().any(|n| k == n)
            })
            .map(|(k, v)| (k, v))
            .collect();
        cargo_env.sort();
        cargo_env.dedup_by(|a, b| a.0 == b.0);
        for (name, value) in cargo_env {
            key.field(name.as_encoded_bytes());
            // `CARGO_MANIFEST_DIR` and the like: a crate that reads one with `env!` has its
            // real value checked at every hit (its dep-info names it).
            key.part(
                &format!("env {}", name.to_string_lossy()),
                &keyed(value.as_encoded_bytes()),
            );
        }
        for name in KEY_ENV {
            key.env(call, name);
        }
        key.field(b"--externs--");
        for (name, path) in &invocation.externs {
            key.field(name.as_bytes());
            if path.as_os_str().is_empty() {
                continue;
            }
            let digest = self
                .fs
                .digest(&absolute(&call.cwd, path))
                .map_err(|_| "extern_unreadable")?;
            key.digest_part(&format!("extern {name}"), &digest.hash);
        }
        key.field(b"--native--");
        let bundles_static = invocation
            .crate_types
            .iter()
            .any(|t| matches!(t.as_str(), "lib" | "rlib" | "staticlib"));
        for (kind, name) in &invocation.native_libs {
            let needed = invocation.links || (kind == "static" && bundles_static);
            if !needed {
                continue;
            }
            let library =
                find_native_lib(call, invocation, kind, name).ok_or("unmodelled_link_input")?;
            let digest = self
                .fs
                .digest(&library)
                .map_err(|_| "unmodelled_link_input")?;
            key.field(name.as_bytes());
            key.digest_part(&format!("native library {name}"), &digest.hash);
        }
        if invocation.links {
            let linker = match &invocation.linker {
                Some(linker) => which(call, linker),
                None => self
                    .target_triple(call, invocation)
                    .and_then(|target| default_linker(call, &target)),
            };
            let linker = linker.ok_or_else(|| {
                tracing::info!(
                    "{}: the linker rustc would run is not known",
                    invocation.crate_name
                );
                "unmodelled_link_input"
            })?;
            let identity = self
                .toolchains
                .identify(&self.fs, &linker, &call.env, call.synced(&self.fs))
                .map_err(|why| {
                    tracing::info!("linker {} not identified: {why:?}", linker.display());
                    "unmodelled_link_input"
                })?;
            key.field(b"--linker--");
            key.digest_part("linker identity", &identity.hash);
        }
        key.digest_part("source", source);
        Ok(())
    }
}

impl Daemon {
    /// The target a rustc call compiles for: its `--target`, else rustc's host (the `host:`
    /// line of its `-vV`, answered from memory after the first time). `None` for a target
    /// given as a JSON file, or when it cannot be told.
    fn target_triple(&self, call: &Call, invocation: &RustInvocation) -> Option<String> {
        if let Some(at) = invocation.key_args.iter().position(|a| a == "--target") {
            let target = invocation.key_args.get(at + 1)?;
            return (!target.ends_with(".json")).then(|| target.clone());
        }
        let args = [OsString::from(IDENTITY_PROBE)];
        let query = Query {
            path: &call.compiler,
            env: &call.env,
            args: &args,
            identity_probe: IDENTITY_PROBE,
        };
        let (answer, _) = self
            .toolchains
            .answer_query(&self.fs, query, call.synced(&self.fs), || {
                call.run(&call.compiler, &args)
            })
            .ok()?;
        let banner = String::from_utf8_lossy(&answer.stdout);
        let host = banner
            .lines()
            .find_map(|line| line.strip_prefix("host: "))?;
        Some(host.trim().to_string())
    }
}

/// The linker rustc runs for `target` when no `-C linker` is given, as rustc picks it:
/// - `*-windows-gnu`: `<arch>-w64-mingw32-gcc` from PATH when one is there outside the
///   toolchain; otherwise the toolchain's self-contained copy (rustc then puts its directory
///   first on the linker's PATH);
/// - Linux and Apple targets: `cc` from PATH;
/// - anything else (MSVC's `link.exe`, `rust-lld` for wasm and bare metal…): `None`, not
///   modelled, so the call runs rustc.
fn default_linker(call: &Call, target: &str) -> Option<PathBuf> {
    if let Some(arch) = target.strip_suffix("-pc-windows-gnu") {
        let name = format!("{arch}-w64-mingw32-gcc{}", std::env::consts::EXE_SUFFIX);
        let sysroot = sysroot_of(&call.compiler)?;
        let path = call
            .env_var("PATH")
            .map(OsString::as_os_str)
            .unwrap_or_default();
        let outside_toolchain = std::env::split_paths(path)
            .map(|dir| absolute(&call.cwd, &dir.join(&name)))
            .any(|candidate| candidate.is_file() && !candidate.starts_with(&sysroot));
        if outside_toolchain {
            return which(call, Path::new(&name));
        }
        let own = sysroot
            .join("lib")
            .join("rustlib")
            .join(target)
            .join("bin")
            .join("self-contained")
            .join(&name);
        return own.is_file().then_some(own);
    }
    if target.contains("-linux-") || target.contains("-apple-") {
        return which(call, Path::new("cc"));
    }
    None
}

/// `lib<name>.a` (or `.so` for dynamic kinds) in the `-L native=`/`-L all=` directories.
fn find_native_lib(
    call: &Call,
    invocation: &RustInvocation,
    kind: &str,
    name: &str,
) -> Option<PathBuf> {
    let names: Vec<String> = match kind {
        "static" => vec![format!("lib{name}.a")],
        "framework" => return None,
        _ => vec![format!("lib{name}.so"), format!("lib{name}.a")],
    };
    invocation
        .search_dirs
        .iter()
        .filter(|(dir_kind, _)| matches!(dir_kind.as_str(), "native" | "all"))
        .flat_map(|(_, dir)| names.iter().map(move |n| absolute(&call.cwd, &dir.join(n))))
        .find(|candidate| candidate.is_file())
}

/// Reads rustc's dep-info and every file it names as written: the sources, the `env!`
/// variables, and the outputs (each a file directly in the output directory).
fn capture(
    call: &Call,
    invocation: &RustInvocation,
    out_dir: &Path,
) -> Result<Captured, &'static str> {
    let depinfo_path = absolute(&call.cwd, &invocation.depinfo_path());
    let text = std::fs::read_to_string(&depinfo_path).map_err(|_| "depfile_unreadable")?;
    let info = parse_depinfo(&text);
    let mut outputs = Vec::new();
    for output in &info.outputs {
        let path = absolute(&call.cwd, Path::new(output));
        if path.parent() != Some(out_dir) {
            return Err("output_outside_out_dir");
        }
        let role = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("output_outside_out_dir")?
            .to_string();
        let meta = std::fs::metadata(&path).map_err(|_| "missing_output")?;
        let mut bytes = std::fs::read(&path).map_err(|_| "missing_output")?;
        if path == depinfo_path {
            if let Some(prefix) = out_dir_prefix(&invocation.out_dir) {
                bytes = replace_all(&bytes, prefix.as_bytes(), OUT_DIR_MARK);
            }
            if let Some(worktree) = call.worktree() {
                bytes = worktree.mark(&bytes);
            }
        }
        outputs.push(CapturedOutput {
            role,
            bytes,
            executable: zccache_platform::fs::mode_of(&meta) & 0o111 != 0,
        });
    }
    if outputs.is_empty() {
        return Err("missing_output");
    }
    let env = info
        .env
        .into_iter()
        .map(|(name, value)| EnvDep {
            name: name.into_bytes(),
            value: value.map(String::into_bytes),
        })
        .collect();
    Ok(Captured {
        deps: info.sources,
        env,
        outputs,
        toolchain_dir: sysroot_of(&call.compiler),
        ..Captured::default()
    })
}

/// The sysroot of the rustc (or clippy-driver) at `compiler`: the directory above its `bin`,
/// symbolic links resolved, as rustc finds it.
pub(crate) fn sysroot_of(compiler: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(compiler).ok()?;
    Some(real.parent()?.parent()?.to_path_buf())
}

/// Writes every stored output into the output directory, as fresh files: cargo compares
/// output mtimes across crates, so restored files must look as new as a compile's. The
/// dep-info file names this call's output directory, whichever one it was stored from.
fn deliver(
    store: &Store,
    found: &Found,
    call: &Call,
    invocation: &RustInvocation,
    out_dir: &Path,
) -> Result<(), String> {
    std::fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let depinfo_name = invocation.depinfo_path();
    let depinfo_name = depinfo_name.file_name();
    let worktree = call.worktree();
    for output in &found.entry().result.outputs {
        if output.role.contains('/') || output.role == ".." || output.role.is_empty() {
            return Err(format!("refusing output name {:?}", output.role));
        }
        let dest = out_dir.join(&output.role);
        let delivered = match out_dir_prefix(&invocation.out_dir) {
            Some(prefix) if Some(std::ffi::OsStr::new(&output.role)) == depinfo_name => store
                .deliver_rewritten(&output.blob, &dest, |bytes| {
                    let bytes = match worktree {
                        Some(worktree) => worktree.resolve(&bytes),
                        None => bytes,
                    };
                    replace_all(&bytes, OUT_DIR_MARK, prefix.as_bytes())
                }),
            _ => store.deliver(
                &output.blob,
                &dest,
                Delivery::Copy {
                    executable: output.executable,
                },
            ),
        };
        delivered.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Flags whose value rustc does not remap: a path of the checkout in one may reach the output
/// as written.
const UNREMAPPED_VALUE_FLAGS: &[&str] =
    &["--cfg", "--check-cfg", "--env-set", "--crate-attr", "-Z"];

/// Why `invocation` cannot be keyed relative to `worktree`'s root, if it cannot: a path of
/// the checkout in an argument rustc's remapping does not cover.
fn unshareable(worktree: &Worktree, invocation: &RustInvocation) -> Option<&'static str> {
    let args = &invocation.key_args;
    for (i, arg) in args.iter().enumerate() {
        if !worktree.occurs_in(arg.as_bytes()) {
            continue;
        }
        let flag = if i > 0 { args[i - 1].as_str() } else { "" };
        let remapped = match flag {
            f if UNREMAPPED_VALUE_FLAGS.contains(&f) => false,
            // Paths rustc reads, never writes into its outputs.
            "-C" => arg.starts_with("incremental=") || arg.starts_with("linker="),
            _ => true,
        };
        if !remapped {
            return Some("path_sensitive_arg");
        }
    }
    None
}

/// Whether the build passes its own `--remap-path-prefix` for the root; then none is added.
fn user_remaps_root(worktree: &Worktree, key_args: &[String]) -> bool {
    let prefix = format!("{}=", worktree.root().display());
    key_args
        .windows(2)
        .any(|w| w[0] == "--remap-path-prefix" && w[1].starts_with(&prefix))
}

/// `args` with `--remap-path-prefix=<root>=.` before the rest (from `at`, after clippy's
/// rustc path), unless the build passes its own for the root: rustc applies the last matching
/// remap, so a narrower one of the build's still wins.
fn with_remap(
    worktree: &Worktree,
    invocation: &RustInvocation,
    args: &[OsString],
    at: usize,
) -> Vec<OsString> {
    let mut out = args.to_vec();
    if !user_remaps_root(worktree, &invocation.key_args) {
        let mut flag = OsString::from("--remap-path-prefix=");
        flag.push(worktree.root());
        flag.push("=.");
        out.insert(at.min(out.len()), flag);
    }
    out
}

/// How rustc writes the paths of files in `out_dir` (as given, joined with the file name)
/// up to the file name; `None` when dep-info would escape it (then the output directory is
/// keyed, see `zccache_compiler::depinfo_verbatim`, and the dep-info is stored as written).
fn out_dir_prefix(out_dir: &Path) -> Option<String> {
    let joined = out_dir.join("f");
    let text = joined.to_str()?;
    let prefix = &text[..text.len() - 1];
    zccache_compiler::depinfo_verbatim(prefix).then(|| prefix.to_string())
}
