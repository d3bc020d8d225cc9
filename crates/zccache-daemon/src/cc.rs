//! gcc and clang: parse, key, deliver, and capture a miss.

use crate::inspect::{not_cacheable, Probe};
use crate::pipeline::{
    exit_code, Call, Captured, CapturedOutput, Found, KeyHasher, LookupMemo, Miss,
};
use crate::scratch::Scratch;
use crate::search::SearchPath;
use crate::stats::Stats;
use crate::toolchain::Toolchain;
use crate::worktree::Worktree;
use crate::{Daemon, LookupStore};
use std::borrow::Cow;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use zccache_artifact::StoredResult;
use zccache_artifact::{Delivery, Store};
use zccache_compiler::{
    depfile, parse_gcc, rsp, CompileInvocation, DepMode, Family, MultiCompile, Parsed,
};
use zccache_core::paths::absolute;
use zccache_core::Hash;
use zccache_fscache::FileClock;
use zccache_fscache::FileDigest;
use zccache_protocol::{CompileReply, Outcome, Response};

/// Environment variables that change what a gcc/clang compile produces or prints.
pub(crate) const KEY_ENV: &[&str] = &[
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

/// What else changes an emcc/em++ compile or link: its config and settings variables.
const EMSCRIPTEN_ENV: &[&str] = &[
    "EM_CONFIG",
    "EM_CACHE",
    "EMCC_CFLAGS",
    "EMCC_FORCE_STDLIBS",
    "EMCC_ONLY_FORCED_STDLIBS",
    "EMCC_STRICT",
    "EM_LLVM_ROOT",
    "EM_BINARYEN_ROOT",
    "EM_NODE_JS",
    "EM_FROZEN_CACHE",
];

/// Environment variables that make the compiler write a depfile we would not store.
const DEPFILE_ENV: &[&str] = &["DEPENDENCIES_OUTPUT", "SUNPRO_DEPENDENCIES"];

const ROLE_OBJECT: &str = "object";
const ROLE_DEPFILE: &str = "depfile";

impl Daemon {
    /// A gcc/clang call: served from the cache, or compiled and stored.
    pub(crate) fn compile_cc(self: &Arc<Self>, call: &Call) -> Response {
        let ParsedCall {
            args,
            from_response_files,
            parsed,
        } = match parse_call(call) {
            Ok(parsed) => parsed,
            Err((reason, detail)) => {
                tracing::debug!("not cacheable ({reason}): {detail}");
                return self.run_locally(call, reason);
            }
        };
        // Identified first: a new daemon's first call probes the compiler while the store
        // is still opening.
        let toolchain = match self.identify_cc(call) {
            Ok(toolchain) => toolchain,
            Err(response) => return *response,
        };
        let Some(store) = self.lookup_store() else {
            return self.run_locally(call, "store_unavailable");
        };
        if let Some(worktree) = call.worktree() {
            let reason = match &parsed {
                Parsed::NotCacheable(_) => Some("unsupported_language"),
                _ => unshareable(worktree, &args),
            };
            if let Some(reason) = reason {
                call.worktree_fallback(&self.stats, reason);
            }
        }
        let invocation = match parsed {
            Parsed::Cacheable(invocation) => invocation,
            Parsed::Multi(multi) => {
                let colour_explicit = multi.units.iter().any(|u| u.colour_explicit);
                let response = self.compile_cc_multi(
                    call,
                    &args,
                    from_response_files,
                    &multi,
                    &toolchain,
                    store,
                );
                if emcc_failed(&toolchain, &response) {
                    return self.run_locally(call, "emcc_failed_rerun");
                }
                return for_caller_terminal(response, colour_explicit, call.stderr_is_tty);
            }
            // parse_call lets only links through: their own front end takes them.
            Parsed::NotCacheable(_) => return self.compile_link(call, &args, &toolchain),
        };
        let response = self.compile_cc_single(
            call,
            &args,
            from_response_files,
            &invocation,
            &toolchain,
            store,
        );
        if emcc_failed(&toolchain, &response) {
            return self.run_locally(call, "emcc_failed_rerun");
        }
        for_caller_terminal(response, invocation.colour_explicit, call.stderr_is_tty)
    }

    /// The compiler's identity, or the reply that runs it uncached.
    fn identify_cc(&self, call: &Call) -> Result<Arc<Toolchain>, Box<Response>> {
        self.toolchains
            .identify(&self.fs, &call.compiler, &call.env, call.synced(&self.fs))
            .map_err(|why| {
                tracing::info!("compiler not identified: {why}");
                Box::new(self.run_locally(call, "compiler_unidentified"))
            })
    }

    /// The key of each source of a gcc/clang call, with its parts, for `zccache inspect`;
    /// the error is why the call is not cacheable.
    pub(crate) fn probe_cc(&self, call: &Call) -> Result<Vec<Probe>, String> {
        let ParsedCall { parsed, .. } =
            parse_call(call).map_err(|(reason, detail)| not_cacheable(reason, &detail))?;
        let units: Vec<&CompileInvocation> = match &parsed {
            Parsed::Cacheable(invocation) => vec![invocation],
            Parsed::Multi(multi) => multi.units.iter().collect(),
            Parsed::NotCacheable(link) => return Err(not_cacheable(link.reason, &link.detail)),
        };
        let toolchain = self
            .toolchains
            .identify(&self.fs, &call.compiler, &call.env, call.synced(&self.fs))
            .map_err(|why| format!("compiler_unidentified ({why})"))?;
        units
            .into_iter()
            .map(|unit| {
                let source_path = absolute(&call.cwd, &unit.source);
                let source = self
                    .fs
                    .digest(&source_path)
                    .map_err(|e| format!("source_unreadable ({}: {e})", source_path.display()))?;
                let hasher = key_parts(
                    call,
                    unit,
                    &toolchain,
                    &source,
                    KeyHasher::recording(KEY_DOMAIN),
                );
                Ok(Probe {
                    source: source_path,
                    key: hasher.finish(),
                    parts: hasher.into_parts(),
                })
            })
            .collect()
    }

    /// One source: served from the cache, or compiled and stored.
    fn compile_cc_single(
        self: &Arc<Self>,
        call: &Call,
        args: &[OsString],
        from_response_files: bool,
        invocation: &CompileInvocation,
        toolchain: &Toolchain,
        store: LookupStore<'_>,
    ) -> Response {
        let Some((key, source)) = self.keyed_source(call, invocation, toolchain) else {
            return self.run_locally(call, "source_unreadable");
        };
        if let Some((store, found)) = self.look_up(store, &key, call, None) {
            let newest = found.newest_input_ns.max(source.sig.mtime_ns);
            let deliver = |found: &Found| deliver(store, found, call, invocation, newest);
            if let Some(response) = self.serve_hit(call, &found, deliver) {
                return response;
            }
        }
        self.compile_and_store(
            key,
            call,
            args,
            from_response_files,
            invocation,
            toolchain,
            source,
        )
    }

    /// A unit's key and the digest of its source; `None` when the source cannot be read.
    fn keyed_source(
        &self,
        call: &Call,
        unit: &CompileInvocation,
        toolchain: &Toolchain,
    ) -> Option<(Hash, FileDigest)> {
        let source = call
            .digest(&self.fs, &absolute(&call.cwd, &unit.source))
            .ok()?;
        Some((cache_key(call, unit, toolchain, &source), source))
    }

    /// Runs the compiler, replies, and queues the result for storing.
    #[allow(clippy::too_many_arguments)]
    fn compile_and_store(
        self: &Arc<Self>,
        key: Hash,
        call: &Call,
        args: &[OsString],
        from_response_files: bool,
        invocation: &CompileInvocation,
        toolchain: &Toolchain,
        source: FileDigest,
    ) -> Response {
        // We always need the full dependency list; ask for it unless the build asked for -MD.
        let own_depfile = match &invocation.deps {
            DepMode::Full { .. } => None,
            DepMode::None | DepMode::UserOnly { .. } => match self.scratch.take() {
                Ok(file) => Some(file),
                Err(e) => {
                    tracing::warn!("cannot make a scratch depfile: {e}");
                    return self.run_locally(call, "store_unwritable");
                }
            },
        };
        let mut run_args = match &own_depfile {
            Some(scratch) => invocation.args_with_depfile(args, scratch.path()),
            None => args.to_vec(),
        };
        force_colour(&mut run_args, invocation.colour_explicit, toolchain);
        add_prefix_map(call, &mut run_args);
        let _run_rsp = match self.repack_response_file(&mut run_args, from_response_files) {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!("cannot write a response file: {e}");
                return self.run_locally(call, "store_unwritable");
            }
        };
        unlink_if_read_only(&absolute(&call.cwd, &invocation.output));
        let depfile_path = match (&own_depfile, &invocation.deps) {
            (Some(own), _) => own.path().to_path_buf(),
            (None, DepMode::Full { path }) => absolute(&call.cwd, path),
            (None, _) => unreachable!("own depfile is set unless the build asked for -MD"),
        };
        let parts = recorded_parts(call, invocation, toolchain, &source);
        let miss = Miss {
            key,
            source: Some((invocation.source.clone(), source)),
            record_as: invocation.source.clone(),
            store_failures: false,
            time_macros_matter: true,
            parts,
        };
        // Take what the build may change next (outputs, depfile) before the reply. The first
        // compile under these search flags also needs the compiler's system include dirs: that
        // probe (another compiler process) runs beside the compile instead of after it.
        self.beside_system_dir_probes(call, &[invocation], toolchain, |probes| {
            self.run_miss(call, &run_args, miss, || {
                probes.finish();
                self.capture(call, invocation, toolchain, &depfile_path)
            })
        })
    }

    /// Runs `compile` while the compiler's system include dirs are probed for every unit whose
    /// language and search flags have not been probed yet: the capture after a first compile
    /// needs them, and the probe (another compiler process) then costs no time of its own.
    /// `compile` calls [`SystemDirProbes::finish`] before it captures.
    fn beside_system_dir_probes<R>(
        &self,
        call: &Call,
        units: &[&CompileInvocation],
        toolchain: &Toolchain,
        compile: impl FnOnce(&mut SystemDirProbes<'_>) -> R,
    ) -> R {
        let mut unknown: Vec<&CompileInvocation> = Vec::new();
        for unit in units {
            let probed_alike = unknown
                .iter()
                .any(|u| u.language == unit.language && u.search_args == unit.search_args);
            if !probed_alike
                && !self.toolchains.knows_system_dirs(
                    toolchain,
                    unit.language,
                    &unit.search_args,
                    &call.cwd,
                )
            {
                unknown.push(unit);
            }
        }
        std::thread::scope(|scope| {
            let running: Vec<_> = unknown
                .into_iter()
                .filter_map(|unit| {
                    std::thread::Builder::new()
                        .spawn_scoped(scope, move || {
                            let _ = self.system_dirs(call, unit, toolchain);
                        })
                        .ok()
                })
                .collect();
            compile(&mut SystemDirProbes { running })
        })
    }

    /// Arguments that came from response files go back into one, so the command line stays as
    /// short as the build made it. The file is the caller's as long as it holds the result.
    fn repack_response_file(
        &self,
        run_args: &mut Vec<OsString>,
        from_response_files: bool,
    ) -> std::io::Result<Option<Scratch<'_>>> {
        if !from_response_files {
            return Ok(None);
        }
        let file = self.write_response_file(run_args)?;
        let mut arg = OsString::from("@");
        arg.push(file.path().as_os_str());
        *run_args = vec![arg];
        Ok(Some(file))
    }

    /// `gcc -c a.c b.c …`: every source is looked up (in parallel), hits are delivered, and
    /// the misses are compiled together in one compiler process and stored one by one.
    fn compile_cc_multi(
        self: &Arc<Self>,
        call: &Call,
        args: &[OsString],
        from_response_files: bool,
        multi: &MultiCompile,
        toolchain: &Toolchain,
        store: LookupStore<'_>,
    ) -> Response {
        use rayon::prelude::*;
        // The batch asks for -MD; a unit whose build did not will get a depfile beside its
        // object. Never overwrite a file of the build's own there.
        let extra_depfile = |unit: &CompileInvocation| {
            (unit.deps == DepMode::None)
                .then(|| absolute(&call.cwd, &unit.output.with_extension("d")))
        };
        if multi
            .units
            .iter()
            .filter_map(extra_depfile)
            .any(|path| path.exists())
        {
            return self.run_locally(call, "multiple_sources");
        }
        // Each unit's key hashes all of the call's arguments: hundreds with response files.
        let prepared: Option<Vec<(Hash, FileDigest)>> = multi
            .units
            .par_iter()
            .map(|unit| self.keyed_source(call, unit, toolchain))
            .collect();
        let Some(mut prepared) = prepared else {
            return self.run_locally(call, "source_unreadable");
        };
        // Keys the local store lacks are asked of the remote tier side by side first.
        if let LookupStore::Open(open) = store {
            let keys: Vec<Hash> = prepared.iter().map(|(key, _)| *key).collect();
            self.prefetch_remote(open, &keys, call);
        }
        // Look up and deliver every unit at once; each answer is a hit's reply or a miss.
        let memo = LookupMemo::default();
        let answers: Vec<Option<CompileReply>> = multi
            .units
            .par_iter()
            .zip(prepared.par_iter())
            .map(|(unit, (key, source))| {
                let (store, found) = self.look_up(store, key, call, Some(&memo))?;
                let newest = found.newest_input_ns.max(source.sig.mtime_ns);
                let deliver = |found: &Found| deliver(store, found, call, unit, newest);
                match self.serve_hit(call, &found, deliver)? {
                    Response::Compiled(reply) => Some(reply),
                    _ => None,
                }
            })
            .collect();
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        for reply in answers.iter().flatten() {
            stdout.extend_from_slice(&reply.stdout);
            stderr.extend_from_slice(&reply.stderr);
        }
        let misses: Vec<usize> = (0..multi.units.len())
            .filter(|i| answers[*i].is_none())
            .collect();
        if misses.is_empty() {
            return Response::Compiled(CompileReply {
                exit_code: 0,
                stdout,
                stderr,
                outcome: Outcome::Hit,
            });
        }
        let mut run_args = multi.args_for(args, &misses);
        force_colour(
            &mut run_args,
            multi.units.iter().any(|u| u.colour_explicit),
            toolchain,
        );
        add_prefix_map(call, &mut run_args);
        let _run_rsp = match self.repack_response_file(&mut run_args, from_response_files) {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!("cannot write a response file: {e}");
                return self.run_locally(call, "store_unwritable");
            }
        };
        for &i in &misses {
            unlink_if_read_only(&absolute(&call.cwd, &multi.units[i].output));
            let source = absolute(&call.cwd, &multi.units[i].source);
            crate::fresh::settle_source(&self.fs, &self.fresh, &source, &mut prepared[i].1);
        }
        let started_at = FileClock::now();
        let started = Instant::now();
        let miss_units: Vec<&CompileInvocation> = misses.iter().map(|&i| &multi.units[i]).collect();
        let ran = self.beside_system_dir_probes(call, &miss_units, toolchain, |probes| {
            let output = call.run(&call.compiler, &run_args);
            probes.finish();
            output
        });
        let output = match ran {
            Ok(output) => output,
            Err(_) => return self.run_locally(call, "compiler_spawn_failed"),
        };
        let ran_for = started.elapsed();
        let compile_ms = ran_for.as_millis() as u64;
        // With several misses, diagnostics can't be told apart per source: store them only
        // when there are none.
        let attributable =
            misses.len() == 1 || (output.stdout.is_empty() && output.stderr.is_empty());
        // Every miss's outputs are taken before the reply, side by side.
        let captures: Vec<Result<Captured, &'static str>> = misses
            .par_iter()
            .map(|&i| {
                let unit = &multi.units[i];
                if !output.status.success() {
                    return Err("compile_failed");
                }
                let depfile = match &unit.deps {
                    DepMode::Full { path } | DepMode::UserOnly { path } => {
                        absolute(&call.cwd, path)
                    }
                    DepMode::None => absolute(&call.cwd, &unit.output.with_extension("d")),
                };
                let captured = self.capture(call, unit, toolchain, &depfile);
                if let Some(extra) = extra_depfile(unit) {
                    let _ = std::fs::remove_file(extra);
                }
                match captured {
                    Ok(_) if !attributable => Err("multi_file_diagnostics"),
                    other => other,
                }
            })
            .collect();
        tracing::debug!(
            "multi miss: the tool ran {} us, the outputs of {} sources were taken in {} us",
            ran_for.as_micros(),
            misses.len(),
            (started.elapsed() - ran_for).as_micros()
        );
        for (&i, captured) in misses.iter().zip(captures) {
            let unit = &multi.units[i];
            self.count(call, Stats::miss);
            match captured {
                Ok(captured) => {
                    let (key, source) = prepared[i];
                    let parts = recorded_parts(call, unit, toolchain, &source);
                    let miss = Miss {
                        key,
                        source: Some((unit.source.clone(), source)),
                        record_as: unit.source.clone(),
                        store_failures: false,
                        time_macros_matter: true,
                        parts,
                    };
                    let result = StoredResult {
                        outputs: Vec::new(),
                        stdout: output.stdout.clone(),
                        stderr: output.stderr.clone(),
                        compile_ms: compile_ms / misses.len() as u64,
                        exit_code: 0,
                    };
                    self.store_unit(call, miss, started_at, captured, result);
                }
                Err(reason) => self.count(call, |stats| stats.not_stored(reason)),
            }
        }
        if !output.status.success() {
            for &i in &misses {
                if let Some(extra) = extra_depfile(&multi.units[i]) {
                    let _ = std::fs::remove_file(extra);
                }
            }
        }
        stdout.extend_from_slice(&output.stdout);
        stderr.extend_from_slice(&output.stderr);
        Response::Compiled(CompileReply {
            exit_code: exit_code(&output.status),
            stdout,
            stderr,
            outcome: Outcome::Miss,
        })
    }

    /// A scratch response file holding `args`, quoted the way gcc and clang read them.
    fn write_response_file(&self, args: &[OsString]) -> std::io::Result<Scratch<'_>> {
        let scratch = self.scratch.take()?;
        let mut text = Vec::new();
        for arg in args {
            text.extend_from_slice(&rsp::quote(arg.as_encoded_bytes()));
            text.push(b'\n');
        }
        scratch.write_all(&text)?;
        Ok(scratch)
    }

    /// The compiler's own include directories for this compile's language and search flags.
    fn system_dirs(
        &self,
        call: &Call,
        invocation: &CompileInvocation,
        toolchain: &Toolchain,
    ) -> Result<Arc<Vec<PathBuf>>, String> {
        self.toolchains.system_dirs(
            toolchain,
            &call.compiler,
            invocation.language,
            &invocation.search_args,
            &call.env,
            &call.cwd,
        )
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
        let mut outputs = Vec::new();
        let object =
            std::fs::read(absolute(&call.cwd, &invocation.output)).map_err(|_| "missing_output")?;
        if object.is_empty() {
            return Err("missing_output");
        }
        outputs.push(CapturedOutput {
            role: ROLE_OBJECT.into(),
            bytes: object,
            executable: false,
        });
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
                zccache_artifact::replace_file(
                    &absolute(&call.cwd, path),
                    &mut rendered.as_bytes(),
                    self.output_mode,
                )
                .map_err(|_| "output_unwritable")?;
                Some(rendered.into_bytes())
            }
        };
        if let Some(bytes) = user_depfile {
            // It names the checkout's files: stored with the root's placeholder.
            let bytes = match call.worktree() {
                Some(worktree) => worktree.mark(&bytes),
                None => bytes,
            };
            outputs.push(CapturedOutput {
                role: ROLE_DEPFILE.into(),
                bytes,
                executable: false,
            });
        }
        Ok(Captured {
            deps: parsed.deps.into_iter().map(|d| d.path).collect(),
            env: Vec::new(),
            outputs,
            search: Some(search_path(call, invocation, &system_dirs)),
            ..Captured::default()
        })
    }
}

/// emcc quotes the whole clang command in its error messages, which would show the flags
/// added for the cache: a failed emcc compile is run again by the client as the build wrote it.
fn emcc_failed(toolchain: &Toolchain, response: &Response) -> bool {
    toolchain.emscripten && matches!(response, Response::Compiled(reply) if reply.exit_code != 0)
}

/// Unless the build chose colours itself, compilers run with colour forced on — and gcc 10+
/// with its option hyperlinks, which it also prints on a terminal — so that stored diagnostics
/// can be replayed to a terminal as the compiler would print them; callers without one get
/// them plain (see [`for_caller_terminal`]). The key ignores colour.
fn force_colour(run_args: &mut Vec<OsString>, colour_explicit: bool, toolchain: &Toolchain) {
    if colour_explicit {
        return;
    }
    run_args.push(OsString::from("-fdiagnostics-color=always"));
    if toolchain.family == Family::Gcc && toolchain.major_version.is_some_and(|v| v >= 10) {
        run_args.push(OsString::from("-fdiagnostics-urls=always"));
    }
}

/// Diagnostics as the compiler would have printed them to this caller: coloured for a
/// terminal, without escape sequences otherwise (gcc and clang print the same text either way).
fn for_caller_terminal(response: Response, colour_explicit: bool, stderr_is_tty: bool) -> Response {
    match response {
        Response::Compiled(mut reply) if !colour_explicit && !stderr_is_tty => {
            reply.stderr = strip_ansi(&reply.stderr);
            reply.stdout = strip_ansi(&reply.stdout);
            Response::Compiled(reply)
        }
        other => other,
    }
}

/// Removes terminal control sequences: colours (`ESC [ … final-byte`) and hyperlinks
/// (`ESC ] … BEL` or `ESC ] … ESC \\`).
fn strip_ansi(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == 0x1b && text.get(i + 1) == Some(&b'[') {
            let mut j = i + 2;
            while j < text.len() && !(0x40..=0x7e).contains(&text[j]) {
                j += 1;
            }
            i = j + 1;
            continue;
        }
        if text[i] == 0x1b && text.get(i + 1) == Some(&b']') {
            let mut j = i + 2;
            while j < text.len() {
                if text[j] == 0x07 {
                    j += 1;
                    break;
                }
                if text[j] == 0x1b && text.get(j + 1) == Some(&b'\\') {
                    j += 2;
                    break;
                }
                j += 1;
            }
            i = j;
            continue;
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// Writes every output of a stored entry where this invocation wants it.
fn deliver(
    store: &Store,
    found: &Found,
    call: &Call,
    invocation: &CompileInvocation,
    newest_input_ns: i128,
) -> Result<(), String> {
    let mut object = None;
    for output in &found.entry().result.outputs {
        match output.role.as_str() {
            ROLE_OBJECT => object = Some(output.blob),
            ROLE_DEPFILE => {
                let path = match &invocation.deps {
                    DepMode::Full { path } | DepMode::UserOnly { path } => path,
                    DepMode::None => continue,
                };
                let dest = absolute(&call.cwd, path);
                match call.worktree() {
                    Some(worktree) => store
                        .deliver_rewritten(&output.blob, &dest, |bytes| worktree.resolve(&bytes)),
                    None => {
                        store.deliver(&output.blob, &dest, Delivery::Copy { executable: false })
                    }
                }
                .map_err(|e| e.to_string())?;
            }
            other => return Err(format!("unknown output role {other}")),
        }
    }
    let object = object.ok_or("entry has no object")?;
    store
        .deliver(
            &object,
            &absolute(&call.cwd, &invocation.output),
            Delivery::Link {
                not_older_than_ns: newest_input_ns,
            },
        )
        .map_err(|e| e.to_string())
}

/// The include search directories of this call, as written, in the compiler's order.
pub(crate) fn search_path(
    call: &Call,
    invocation: &CompileInvocation,
    system_dirs: &[PathBuf],
) -> SearchPath {
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
    key_parts(
        call,
        invocation,
        toolchain,
        source,
        KeyHasher::new(KEY_DOMAIN),
    )
    .finish()
}

const KEY_DOMAIN: &str = "zccache gcc-like v1";

/// The key's labelled parts, recorded with a stored result for `zccache inspect`.
fn recorded_parts(
    call: &Call,
    invocation: &CompileInvocation,
    toolchain: &Toolchain,
    source: &FileDigest,
) -> Vec<(String, String)> {
    key_parts(
        call,
        invocation,
        toolchain,
        source,
        KeyHasher::recording(KEY_DOMAIN),
    )
    .into_parts()
}

/// A gcc/clang call after response files were expanded and its arguments parsed.
struct ParsedCall<'a> {
    /// Borrowed when no response file was involved.
    args: Cow<'a, [OsString]>,
    from_response_files: bool,
    /// Cacheable: one unit or several; or a link, for the link front end.
    parsed: Parsed,
}

/// Expands response files (for parsing and the key: a changed nested file is a changed
/// argument list) and parses the call; or the reason and detail of a refusal.
fn parse_call(call: &Call) -> Result<ParsedCall<'_>, (&'static str, String)> {
    let expanded = rsp::expand(&call.args, &call.cwd, &mut |path| std::fs::read(path));
    let from_response_files = expanded.is_some();
    let args: Cow<[OsString]> = match expanded {
        Some(expanded) => Cow::Owned(expanded.args),
        None => Cow::Borrowed(&call.args),
    };
    let parsed = parse_gcc(&call.compiler, &args);
    match &parsed {
        // A link goes on, with its expanded arguments, to the link front end.
        Parsed::NotCacheable(nc) if nc.reason == "link" => {
            return Ok(ParsedCall {
                args,
                from_response_files,
                parsed,
            })
        }
        Parsed::NotCacheable(nc) => return Err((nc.reason, nc.detail.clone())),
        _ => {}
    }
    if DEPFILE_ENV.iter().any(|name| call.env_var(name).is_some()) {
        return Err(("depfile_env", String::new()));
    }
    Ok(ParsedCall {
        args,
        from_response_files,
        parsed,
    })
}

/// Feeds everything the key of a gcc/clang compile depends on into `key`.
fn key_parts(
    call: &Call,
    invocation: &CompileInvocation,
    toolchain: &Toolchain,
    source: &FileDigest,
    mut key: KeyHasher,
) -> KeyHasher {
    key.digest_part("compiler identity", &toolchain.hash);
    crate::pipeline::key_compiler_names(&mut key, call);
    // Under remap, paths in the checkout are keyed relative to its root (see `worktree.rs`):
    // `unshareable` has made sure each is one the prefix map covers or none the output holds.
    let worktree = call.worktree();
    let keyed = |text| crate::worktree::keyed(worktree, text);
    if let Some(worktree) = worktree {
        let own = user_maps_root(worktree, &invocation.key_args);
        crate::worktree::key_remap(&mut key, own, "-ffile-prefix-map=<root>=.");
    }
    for arg in &invocation.key_args {
        key.part("argument", &keyed(arg.as_encoded_bytes()));
    }
    key.field(b"--cwd--");
    if invocation.debug_info {
        key.part("cwd (-g)", &keyed(call.cwd.as_os_str().as_encoded_bytes()));
    }
    for name in KEY_ENV {
        key.env(call, name);
    }
    if toolchain.emscripten {
        emscripten_parts(call, &mut key);
    }
    if invocation.native_cpu {
        key.digest_part(
            "cpu (-march=native)",
            blake3::hash(&cpu_signature()).as_bytes(),
        );
    }
    key.digest_part("source", &source.hash);
    key
}

/// Flags whose value is a path the compiler reads or writes and that reaches no output but
/// through the prefix map (or the depfile, which is stored with the root's placeholder).
const PATH_FLAGS: &[&str] = &[
    "-I",
    "-isystem",
    "-iquote",
    "-idirafter",
    "-include",
    "-imacros",
    "-iprefix",
    "-iwithprefix",
    "-iwithprefixbefore",
    "-isysroot",
    "--sysroot",
    "-MF",
    "-MT",
    "-MQ",
    "-o",
    "-B",
    "-L",
];

/// Why a gcc/clang call cannot be keyed relative to `worktree`'s root, if it cannot: a path of
/// the checkout where the compiler may write it into its output as it is (a `-D` value, a
/// debug-prefix flag of the build's own, split DWARF's `.dwo` name).
fn unshareable(worktree: &Worktree, args: &[OsString]) -> Option<&'static str> {
    let root = worktree.root().to_string_lossy();
    let root_map = format!("-ffile-prefix-map={root}=");
    // A path of the checkout: the root, then nothing or a component separator.
    let names_path = |text: &str| {
        text.strip_prefix(&*root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    for (i, arg) in args.iter().enumerate() {
        let text = arg.to_string_lossy();
        if text.starts_with("-gsplit-dwarf") {
            return Some("path_sensitive_arg");
        }
        if !worktree.occurs_in(arg.as_encoded_bytes()) {
            continue;
        }
        let after_path_flag = i > 0 && PATH_FLAGS.contains(&&*args[i - 1].to_string_lossy());
        // A source or input named by its path, the build's own map of the root, or a path
        // flag with its value joined; anything else holding the root (`-D NAME=<root>/x`
        // joined or apart, `-fdebug-prefix-map=…`) may reach the output as written.
        let is_path = names_path(&text)
            || text.starts_with(&root_map)
            || PATH_FLAGS.iter().any(|flag| {
                text.strip_prefix(flag)
                    .is_some_and(|rest| names_path(rest.strip_prefix('=').unwrap_or(rest)))
            });
        if !(after_path_flag || is_path) {
            return Some("path_sensitive_arg");
        }
    }
    None
}

/// Whether the build passes its own `-ffile-prefix-map` for the root; then none is added.
fn user_maps_root(worktree: &Worktree, args: &[OsString]) -> bool {
    let prefix = format!("-ffile-prefix-map={}=", worktree.root().display());
    args.iter()
        .any(|a| a.to_str().is_some_and(|a| a.starts_with(&prefix)))
}

/// Under remap, `-ffile-prefix-map=<root>=.` before the build's arguments (so that a narrower
/// map of the build's, coming later, still wins), unless the build maps the root itself:
/// sources, `__FILE__` and debug info then name paths relative to the root, the same in
/// every checkout.
fn add_prefix_map(call: &Call, run_args: &mut Vec<OsString>) {
    let Some(worktree) = call.worktree() else {
        return;
    };
    if user_maps_root(worktree, run_args) {
        return;
    }
    let mut flag = OsString::from("-ffile-prefix-map=");
    flag.push(worktree.root());
    flag.push("=.");
    run_args.insert(0, flag);
}

/// emcc's settings variables and the digest of its config file (or that it has none).
pub(crate) fn emscripten_parts(call: &Call, key: &mut KeyHasher) {
    for name in EMSCRIPTEN_ENV {
        key.env(call, name);
    }
    let config =
        crate::toolchain::emscripten_config(&call.compiler, |name| call.env_var(name).cloned());
    match config.map(|path| std::fs::read(&path).map(|bytes| (path, bytes))) {
        Some(Ok((path, bytes))) => {
            key.part("emscripten config", path.as_os_str().as_encoded_bytes());
            key.digest_part("emscripten config content", blake3::hash(&bytes).as_bytes());
        }
        Some(Err(_)) | None => key.part("emscripten config", b"(none)"),
    }
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

/// A read-only file at an output path (a hardlink to a stored blob) would make some compilers
/// refuse to overwrite it; remove it so the compiler writes a fresh file.
fn unlink_if_read_only(path: &Path) {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.is_file() && zccache_platform::fs::mode_of(&meta) & 0o200 == 0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The system-dir probes running beside a compile ([`Daemon::beside_system_dir_probes`]).
struct SystemDirProbes<'scope> {
    running: Vec<std::thread::ScopedJoinHandle<'scope, ()>>,
}

impl SystemDirProbes<'_> {
    /// Waits for the probes to end (their answers are remembered by the toolchains).
    fn finish(&mut self) {
        for probe in self.running.drain(..) {
            let _ = probe.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_sequences_are_stripped_and_text_kept() {
        let coloured =
            b"\x1b[01m\x1b[Kw.c:1:5:\x1b[m\x1b[K \x1b[01;35m\x1b[Kwarning: \x1b[m\x1b[Kunused";
        assert_eq!(strip_ansi(coloured), b"w.c:1:5: warning: unused".to_vec());
        assert_eq!(strip_ansi(b"plain [text]"), b"plain [text]".to_vec());
        assert_eq!(strip_ansi(b"cut \x1b["), b"cut ".to_vec());
        let linked = b"[\x1b]8;;https://gcc.gnu.org/x\x07-Wunused\x1b]8;;\x07] [\x1b]8;;u\x1b\\o\x1b]8;;\x1b\\]";
        assert_eq!(strip_ansi(linked), b"[-Wunused] [o]".to_vec());
    }
}
