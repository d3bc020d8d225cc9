//! rustfmt: `--check` reports and formatting runs, cached by content, config, edition and
//! version.
//!
//! The key holds rustfmt's identity (its `--version` and binary, and behind a rustup proxy the
//! toolchain binary it picks, with what picks it: `RUSTUP_TOOLCHAIN`, `+toolchain`, the
//! `rust-toolchain[.toml]` files above the working directory and rustup's `settings.toml`),
//! every argument in order, the working directory (rustfmt prints absolute paths), each file
//! argument's real path and content, and every configuration file rustfmt could read for them:
//! `.rustfmt.toml` and `rustfmt.toml` in each file's directory and its ancestors, in the home
//! directory and in `$XDG_CONFIG_HOME/rustfmt`, and `--config-path`. Each one's content is in
//! the key, or the fact that it is absent.
//!
//! A file argument formats its out-of-line modules too. On a miss rustfmt runs with `-v`, which
//! names every file it formats (`Formatting /abs/path.rs`); those lines, and the other ones `-v`
//! adds, are removed from what the caller sees. The files named become the entry's inputs,
//! with their content from before the run, so a hit needs every one of them unchanged. A
//! formatting run's rewritten files are its outputs: a hit writes them back (as fresh copies
//! with the file's own mode) and replays stdout, stderr and the exit code, `--check`'s diffs
//! and exit code 1 included.

use crate::pipeline::{exit_code, Call, Captured, CapturedOutput, Found, KeyHasher, Miss, Ran};
use crate::Daemon;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Instant;
use zccache_artifact::{Delivery, DepDigest, Store};
use zccache_core::paths::absolute;
use zccache_core::Hash;
use zccache_fscache::FileClock;
use zccache_fscache::{FileDigest, StatSig};
use zccache_protocol::Response;

const KEY_DOMAIN: &str = "zccache rustfmt v1";

/// Variables that change which rustfmt runs or what it does. (`RUSTFMT_LOG` makes it print
/// timestamped logs: such calls are not cached.)
const KEY_ENV: &[&str] = &["RUSTUP_TOOLCHAIN", "RUSTUP_HOME", "CFG_RELEASE_CHANNEL"];

/// The names rustfmt looks for in each directory, in its order.
const CONFIG_NAMES: [&str; 2] = [".rustfmt.toml", "rustfmt.toml"];

/// A formatting run first hashes the `.rs` files under its files' directories (the modules it
/// may rewrite); past this many, or this many directory entries, the call runs uncached.
const MAX_SNAPSHOT_FILES: usize = 20_000;
const MAX_SNAPSHOT_ENTRIES: usize = 200_000;

/// Remembered identities, keyed by the binary and everything that selects the toolchain.
const MAX_PROBES: usize = 4096;

/// A rustfmt command line, as far as caching needs to understand it.
#[derive(Debug, Default, PartialEq)]
struct Invocation {
    /// `+toolchain`, for the rustup proxy.
    toolchain: Option<OsString>,
    files: Vec<PathBuf>,
    check: bool,
    verbose: bool,
    quiet: bool,
    /// `--color never`: otherwise rustfmt colours its diffs whenever `TERM` names a terminal
    /// that can (a pipe or not).
    color_never: bool,
    config_path: Option<PathBuf>,
    /// The options that change formatting, normalized (`--edition`, `2021`…), for the run
    /// that lists the files of a `-q` call.
    format_options: Vec<OsString>,
}

/// Reads a rustfmt command line; the error is why it is not cacheable.
fn parse(args: &[OsString]) -> Result<Invocation, &'static str> {
    let mut invocation = Invocation::default();
    let mut rest = args;
    if let Some((first, after)) = args.split_first() {
        if first.as_encoded_bytes().starts_with(b"+") {
            invocation.toolchain = Some(first.clone());
            rest = after;
        }
    }
    let mut only_files = false;
    let mut i = 0;
    while i < rest.len() {
        let arg = rest[i].as_encoded_bytes();
        i += 1;
        if arg == b"-" {
            return Err("rustfmt_stdin");
        }
        if only_files || !arg.starts_with(b"-") {
            invocation
                .files
                .push(PathBuf::from(zccache_platform::os_str::os_str_from_bytes(
                    arg,
                )));
            continue;
        }
        let (name, joined) = match arg.iter().position(|&b| b == b'=') {
            Some(at) if arg.starts_with(b"--") => (&arg[..at], Some(&arg[at + 1..])),
            _ => (arg, None),
        };
        let takes_value = matches!(
            name,
            b"--edition"
                | b"--style-edition"
                | b"--config"
                | b"--config-path"
                | b"--color"
                | b"--emit"
        );
        if joined.is_some() && !takes_value {
            return Err("rustfmt_option");
        }
        let value = if takes_value {
            match joined {
                Some(value) => value,
                None => {
                    i += 1;
                    rest.get(i - 1).ok_or("rustfmt_option")?.as_encoded_bytes()
                }
            }
        } else {
            &[][..]
        };
        match name {
            b"--" => only_files = true,
            b"--check" => invocation.check = true,
            b"-v" | b"--verbose" => invocation.verbose = true,
            b"-q" | b"--quiet" => invocation.quiet = true,
            b"-l" | b"--files-with-diff" => {}
            b"--unstable-features" | b"--skip-children" => {
                invocation
                    .format_options
                    .push(zccache_platform::os_str::os_string_from_bytes(
                        name.to_vec(),
                    ));
            }
            b"--emit" if value == b"files" => {}
            b"--emit" => return Err("rustfmt_emit"),
            b"--color" => invocation.color_never = value == b"never",
            _ if takes_value => {
                if name == b"--config-path" {
                    invocation.config_path = Some(PathBuf::from(
                        zccache_platform::os_str::os_str_from_bytes(value),
                    ));
                }
                invocation
                    .format_options
                    .push(zccache_platform::os_str::os_string_from_bytes(
                        name.to_vec(),
                    ));
                invocation
                    .format_options
                    .push(zccache_platform::os_str::os_string_from_bytes(
                        value.to_vec(),
                    ));
            }
            // --backup, --print-config, --help, --version, unstable ones, anything unknown.
            _ => return Err("rustfmt_option"),
        }
    }
    if invocation.files.is_empty() {
        return Err("rustfmt_stdin");
    }
    Ok(invocation)
}

/// A file named on the command line.
struct Root {
    /// Real path, as rustfmt names it (it canonicalizes its arguments).
    real: PathBuf,
    digest: FileDigest,
}

/// A key input that is a file: its content, or `None` when it is absent (or unreadable).
struct FilePart {
    path: PathBuf,
    hash: Option<Hash>,
}

impl FilePart {
    fn feed(&self, key: &mut KeyHasher) {
        key.field(self.path.as_os_str().as_encoded_bytes());
        let label = format!("file {}", self.path.display());
        match &self.hash {
            Some(hash) => key.digest_part(&label, hash),
            None => key.part(&label, b"(absent)"),
        }
    }
}

/// What identifies a rustfmt for a call: the hash, and for a rustup proxy the toolchain binary
/// it ran (whose digest must still match for the remembered identity to be used).
#[derive(Clone)]
pub(crate) struct Probed {
    identity: Hash,
    real: Option<(PathBuf, Hash)>,
}

impl Daemon {
    /// A rustfmt call: served from the cache, or run and stored.
    pub(crate) fn run_rustfmt(self: &Arc<Self>, call: &Call) -> Response {
        let invocation = match parse(&call.args) {
            Ok(invocation) => invocation,
            Err(reason) => return self.run_locally(call, reason),
        };
        if call.env_var("RUSTFMT_LOG").is_some_and(|v| !v.is_empty()) {
            return self.run_locally(call, "rustfmt_log");
        }
        let Some(store) = self.store() else {
            return self.run_locally(call, "store_unavailable");
        };
        let mut roots = Vec::with_capacity(invocation.files.len());
        for file in &invocation.files {
            let path = absolute(&call.cwd, file);
            let (Ok(real), Ok(digest)) =
                (std::fs::canonicalize(&path), call.digest(&self.fs, &path))
            else {
                return self.run_locally(call, "source_unreadable");
            };
            roots.push(Root { real, digest });
        }
        let mut key = KeyHasher::recording(KEY_DOMAIN);
        if let Err(reason) = self.rustfmt_key(&mut key, call, &invocation, &roots) {
            return self.run_locally(call, reason);
        }
        let hash = key.finish();
        let real_roots: HashSet<&Path> = roots.iter().map(|r| r.real.as_path()).collect();
        if let Some(found) = self.find_entry(store, &hash, call, None) {
            let unambiguous = found.entry().deps.iter().all(|dep| {
                let path = Path::new(zccache_platform::os_str::os_str_from_bytes(&dep.path));
                real_roots.contains(path) || !ambiguous_module(path)
            });
            if unambiguous {
                if let Some(response) = self.serve_hit(call, &found, |found| deliver(store, found))
                {
                    return response;
                }
            }
        }
        let miss = Miss {
            key: hash,
            source: None,
            record_as: invocation.files[0].clone(),
            time_macros_matter: false,
            store_failures: true,
            parts: key.into_parts(),
        };
        self.rustfmt_miss(call, &invocation, &roots, miss)
    }

    /// Everything but the module files (which the manifest checks) that decides the result.
    fn rustfmt_key(
        &self,
        key: &mut KeyHasher,
        call: &Call,
        invocation: &Invocation,
        roots: &[Root],
    ) -> Result<(), &'static str> {
        let rustup = crate::toolchain::rustup_behind(&call.compiler);
        let selection = match rustup {
            Some(_) => self.toolchain_selection(call),
            None => Vec::new(),
        };
        let identity = self.rustfmt_identity(call, invocation, rustup.as_deref(), &selection)?;
        key.digest_part("rustfmt identity", &identity);
        key.part("rustfmt path", call.compiler.as_os_str().as_encoded_bytes());
        key.part("rustfmt name", call.name.as_encoded_bytes());
        for arg in &call.args {
            key.part("argument", arg.as_encoded_bytes());
        }
        key.part("cwd", call.cwd.as_os_str().as_encoded_bytes());
        for name in KEY_ENV {
            key.env(call, name);
        }
        if !invocation.color_never {
            // Colours come from the terminal's description.
            for name in ["TERM", "TERMINFO", "TERMINFO_DIRS"] {
                key.env(call, name);
            }
        }
        key.field(b"--toolchain--");
        for part in &selection {
            part.feed(key);
        }
        key.field(b"--files--");
        for root in roots {
            key.part("file", root.real.as_os_str().as_encoded_bytes());
            key.digest_part("file content", &root.digest.hash);
        }
        key.field(b"--config--");
        for part in self.config_files(call, invocation, roots) {
            part.feed(key);
        }
        Ok(())
    }

    /// The state of a file that is part of the key.
    fn file_part(&self, call: &Call, path: PathBuf) -> FilePart {
        let hash = call.digest(&self.fs, &path).ok().map(|d| d.hash);
        FilePart { path, hash }
    }

    /// What makes a rustup proxy pick a toolchain, besides `RUSTUP_TOOLCHAIN` and `+toolchain`:
    /// `rust-toolchain.toml` and `rust-toolchain` in the working directory and its ancestors,
    /// and rustup's settings (default toolchain, per-directory overrides).
    fn toolchain_selection(&self, call: &Call) -> Vec<FilePart> {
        let mut parts = Vec::new();
        for dir in call.cwd.ancestors() {
            for name in ["rust-toolchain.toml", "rust-toolchain"] {
                parts.push(self.file_part(call, dir.join(name)));
            }
        }
        let rustup_home = match call.env_var("RUSTUP_HOME").filter(|v| !v.is_empty()) {
            Some(home) => Some(absolute(&call.cwd, Path::new(home))),
            None => home_dir(call).map(|home| home.join(".rustup")),
        };
        if let Some(home) = rustup_home {
            parts.push(self.file_part(call, home.join("settings.toml")));
        }
        parts
    }

    /// Every configuration file rustfmt may read for these files, present or not.
    fn config_files(&self, call: &Call, invocation: &Invocation, roots: &[Root]) -> Vec<FilePart> {
        let mut dirs = BTreeSet::new();
        for root in roots {
            if let Some(parent) = root.real.parent() {
                dirs.extend(parent.ancestors().map(Path::to_path_buf));
            }
        }
        if let Some(home) = home_dir(call) {
            dirs.insert(home.clone());
            let config_home = call
                .env_var("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .unwrap_or_else(|| home.join(".config"));
            dirs.insert(config_home.join("rustfmt"));
        }
        let mut parts = Vec::new();
        if let Some(path) = &invocation.config_path {
            let path = absolute(&call.cwd, path);
            parts.push(self.file_part(call, path.clone()));
            dirs.insert(path);
        }
        for dir in dirs {
            for name in CONFIG_NAMES {
                parts.push(self.file_part(call, dir.join(name)));
            }
        }
        parts
    }

    /// rustfmt's identity for this call: probed once per binary and toolchain selection.
    /// `rustup` is the rustup binary when rustfmt is its proxy, and `selection` what makes it
    /// pick a toolchain.
    fn rustfmt_identity(
        &self,
        call: &Call,
        invocation: &Invocation,
        rustup: Option<&Path>,
        selection: &[FilePart],
    ) -> Result<Hash, &'static str> {
        let unidentified = |why: String| {
            tracing::info!("rustfmt not identified: {why}");
            "compiler_unidentified"
        };
        let tool = call
            .digest(&self.fs, &call.compiler)
            .map_err(|e| unidentified(e.to_string()))?;
        if rustup.is_none() && invocation.toolchain.is_some() {
            // `+toolchain` means something only to the proxy.
            return Err("rustfmt_option");
        }
        let mut probe_key = KeyHasher::new("rustfmt probe");
        probe_key.field(call.compiler.as_os_str().as_encoded_bytes());
        probe_key.field(&tool.hash);
        probe_key.field(call.name.as_encoded_bytes());
        if rustup.is_some() {
            probe_key.field(
                invocation
                    .toolchain
                    .as_ref()
                    .map_or(&b""[..], |t| t.as_encoded_bytes()),
            );
            probe_key.field(call.cwd.as_os_str().as_encoded_bytes());
            for name in ["RUSTUP_TOOLCHAIN", "RUSTUP_HOME", "HOME"] {
                probe_key.env(call, name);
            }
            for part in selection {
                part.feed(&mut probe_key);
            }
        }
        let probe_key = probe_key.finish();
        if let Some(known) = self
            .analysis
            .rustfmt_probes
            .get(&probe_key)
            .map(|p| p.clone())
        {
            let still = match &known.real {
                None => true,
                Some((path, hash)) => call.digest(&self.fs, path).is_ok_and(|d| d.hash == *hash),
            };
            if still {
                return Ok(known.identity);
            }
        }
        let mut version_args: Vec<OsString> = invocation.toolchain.iter().cloned().collect();
        version_args.push("--version".into());
        let version = call
            .run(&call.compiler, &version_args)
            .map_err(|e| unidentified(e.to_string()))?;
        if !version.status.success() {
            return Err(unidentified(format!(
                "--version: {}",
                String::from_utf8_lossy(&version.stderr)
            )));
        }
        let real = match rustup {
            Some(rustup) => {
                let path = rustup_which(call, rustup, invocation.toolchain.as_deref())
                    .map_err(unidentified)?;
                let digest = self
                    .fs
                    .digest(&path)
                    .map_err(|e| unidentified(format!("{}: {e}", path.display())))?;
                Some((path, digest.hash))
            }
            None => None,
        };
        let mut identity = KeyHasher::new("rustfmt identity");
        identity.field(&tool.hash);
        identity.field(&version.stdout);
        identity.field(&version.stderr);
        if let Some((_, hash)) = &real {
            identity.field(hash);
        }
        let probed = Probed {
            identity: identity.finish(),
            real,
        };
        if self.analysis.rustfmt_probes.len() >= MAX_PROBES {
            self.analysis.rustfmt_probes.clear();
        }
        self.analysis
            .rustfmt_probes
            .insert(probe_key, probed.clone());
        Ok(probed.identity)
    }

    /// Runs rustfmt for a miss, replies with what it would have printed as called, and queues
    /// the result for storing.
    fn rustfmt_miss(
        self: &Arc<Self>,
        call: &Call,
        invocation: &Invocation,
        roots: &[Root],
        miss: Miss,
    ) -> Response {
        let started = Instant::now();
        let snapshot = if invocation.check {
            None
        } else {
            match self.snapshot(call, roots) {
                Ok(mut snapshot) => {
                    // Files written in the tick rustfmt starts in could not be told from ones
                    // it rewrites: wait that tick out (see `fresh.rs`).
                    for (path, digest) in snapshot.iter_mut() {
                        self.fs.settle(path, digest);
                    }
                    Some(snapshot)
                }
                Err(reason) => return self.run_locally(call, reason),
            }
        };
        let started_at = FileClock::now();
        let run = |args: &[OsString]| call.run(&call.compiler, args);
        let runs = if invocation.verbose {
            // The caller's own -v: its output names the files and stays as it is.
            run(&call.args).map(|output| {
                let (listed, _) = unverbose(&output.stdout, false).unwrap_or_default();
                (listed, output)
            })
        } else if invocation.quiet {
            // -q and -v exclude each other: a read-only run lists the files first.
            run(&discovery_args(invocation)).and_then(|listing| {
                let (listed, _) = unverbose(&listing.stdout, false).unwrap_or_default();
                run(&call.args).map(|output| (listed, output))
            })
        } else {
            let mut args = call.args.clone();
            args.insert(usize::from(invocation.toolchain.is_some()), "-v".into());
            run(&args).and_then(|mut output| {
                match unverbose(&output.stdout, invocation.check) {
                    Some((listed, stdout)) => {
                        output.stdout = stdout;
                        Ok((listed, output))
                    }
                    // A file name with a ⏎: `--check` changes nothing, so run it again as
                    // called for the exact reply.
                    None => {
                        let (listed, _) = unverbose(&output.stdout, false).unwrap_or_default();
                        run(&call.args).map(|output| (listed, output))
                    }
                }
            })
        };
        let (listed, output) = match runs {
            Ok(runs) => runs,
            Err(e) => {
                tracing::info!("cannot run {}: {e}", call.compiler.display());
                return self.run_locally(call, "compiler_spawn_failed");
            }
        };
        let captured = capture(invocation, roots, &listed, &output, snapshot.as_ref());
        let ran = Ran {
            started_at,
            compile_ms: started.elapsed().as_millis() as u64,
            exit_code: exit_code(&output.status),
            stdout: output.stdout,
            stderr: output.stderr,
            stderr_sent: 0,
        };
        self.reply_miss(call, miss, ran, captured)
    }

    /// The digest of every `.rs` file under the directories of the files named (hidden and
    /// `target` directories left out), taken before a formatting run rewrites any of them.
    fn snapshot(
        &self,
        call: &Call,
        roots: &[Root],
    ) -> Result<HashMap<PathBuf, FileDigest>, &'static str> {
        let mut dirs: Vec<PathBuf> = roots
            .iter()
            .filter_map(|r| r.real.parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        let tops: Vec<PathBuf> = dirs
            .iter()
            .filter(|d| !dirs.iter().any(|o| o != *d && d.starts_with(o)))
            .cloned()
            .collect();
        let mut files = HashMap::new();
        let mut entries_seen = 0;
        let mut pending = tops;
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                entries_seen += 1;
                if entries_seen > MAX_SNAPSHOT_ENTRIES {
                    return Err("rustfmt_too_many_files");
                }
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                let name = entry.file_name();
                let path = entry.path();
                if kind.is_dir() {
                    if !name.as_encoded_bytes().starts_with(b".") && name != "target" {
                        pending.push(path);
                    }
                } else if kind.is_file() && path.extension() == Some(OsStr::new("rs")) {
                    if files.len() >= MAX_SNAPSHOT_FILES {
                        return Err("rustfmt_too_many_files");
                    }
                    if let Ok(digest) = call.digest(&self.fs, &path) {
                        files.insert(path, digest);
                    }
                }
            }
        }
        for root in roots {
            files.insert(root.real.clone(), root.digest);
        }
        Ok(files)
    }
}

/// The caller's home directory, as rustfmt and rustup find it.
fn home_dir(call: &Call) -> Option<PathBuf> {
    call.env_var("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// The toolchain binary a rustup proxy runs for this call: `rustup which rustfmt` in the
/// caller's directory and environment.
fn rustup_which(call: &Call, rustup: &Path, toolchain: Option<&OsStr>) -> Result<PathBuf, String> {
    let mut command = Command::new(rustup);
    zccache_platform::process::set_arg0(&mut command, OsStr::new("rustup"));
    command.arg("which");
    if let Some(toolchain) = toolchain {
        command
            .arg("--toolchain")
            .arg(zccache_platform::os_str::os_str_from_bytes(
                &toolchain.as_encoded_bytes()[1..],
            ));
    }
    command
        .arg("rustfmt")
        .current_dir(&call.cwd)
        .env_clear()
        .envs(call.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = call
        .spawn(command)
        .and_then(|child| child.wait_with_output())
        .map_err(|e| format!("rustup which: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let path = PathBuf::from(text.trim_end_matches('\n'));
    if !output.status.success() || !path.is_absolute() {
        return Err(format!(
            "rustup which rustfmt: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(path)
}

/// A `-q` call's listing run: `--check -v` with the options that change formatting, so it
/// reads exactly the files the call will and writes nothing.
fn discovery_args(invocation: &Invocation) -> Vec<OsString> {
    let mut args: Vec<OsString> = invocation.toolchain.iter().cloned().collect();
    for arg in ["--check", "-v", "--color", "never"] {
        args.push(arg.into());
    }
    args.extend(invocation.format_options.iter().cloned());
    args.push("--".into());
    args.extend(invocation.files.iter().map(|f| f.clone().into_os_string()));
    args
}

/// What a run (with `-v` added) printed: the files it formatted, and its stdout as it would be
/// without `-v` — the `Formatting …`, `Using rustfmt config file …` and `Spent …` lines taken
/// out and, for diffs, the `⏎` that ends each diff line. `None` when that cannot be told
/// exactly: a file name with a `⏎` of its own (a `-l` line could then pass for a diff line).
fn unverbose(stdout: &[u8], diff: bool) -> Option<(Vec<PathBuf>, Vec<u8>)> {
    const MARK: &[u8] = "⏎\n".as_bytes();
    let mut listed = Vec::new();
    let mut out = Vec::with_capacity(stdout.len());
    for line in stdout.split_inclusive(|&b| b == b'\n') {
        // A colour reset left from the line before may start it.
        let (escapes, rest) = split_escapes(line);
        let text = rest.strip_suffix(b"\n").unwrap_or(rest);
        if let Some(path) = text.strip_prefix(b"Formatting ") {
            listed.push(PathBuf::from(zccache_platform::os_str::os_str_from_bytes(
                path,
            )));
            out.extend_from_slice(escapes);
        } else if text.starts_with(b"Using rustfmt config file ") || is_timing(text) {
            out.extend_from_slice(escapes);
        } else if diff && rest.ends_with(MARK) {
            // The marker is the last ⏎, whatever the line itself ends with.
            out.extend_from_slice(&line[..line.len() - MARK.len()]);
            out.push(b'\n');
        } else {
            out.extend_from_slice(line);
        }
    }
    if diff
        && listed.iter().any(|p| {
            p.as_os_str()
                .as_encoded_bytes()
                .windows(3)
                .any(|w| w == "⏎".as_bytes())
        })
    {
        return None;
    }
    Some((listed, out))
}

/// `Spent 0.013 secs in the parsing phase, and 0.006 secs in the formatting phase`.
fn is_timing(text: &[u8]) -> bool {
    const MIDDLE: &[u8] = b" secs in the parsing phase, and ";
    text.starts_with(b"Spent ")
        && text.ends_with(b" secs in the formatting phase")
        && text.windows(MIDDLE.len()).any(|w| w == MIDDLE)
}

/// Splits terminal control sequences (`ESC ( B`, `ESC [ … final`) off the start of a line.
fn split_escapes(line: &[u8]) -> (&[u8], &[u8]) {
    let mut i = 0;
    loop {
        let rest = &line[i..];
        if rest.starts_with(b"\x1b(B") {
            i += 3;
        } else if rest.starts_with(b"\x1b[") {
            match rest[2..].iter().position(|b| (0x40..=0x7e).contains(b)) {
                Some(end) => i += 2 + end + 1,
                None => break,
            }
        } else {
            break;
        }
    }
    line.split_at(i)
}

/// `a.rs` and `a/mod.rs` both present is an error for `mod a;`: a module file rustfmt used has
/// such a twin now, so the stored result may not be what rustfmt would do.
fn ambiguous_module(path: &Path) -> bool {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return false;
    };
    let twin = if name == "mod.rs" {
        match (parent.parent(), parent.file_name()) {
            (Some(grand), Some(dir)) => {
                let mut file = dir.to_os_string();
                file.push(".rs");
                grand.join(file)
            }
            _ => return false,
        }
    } else {
        match path.file_stem() {
            Some(stem) => parent.join(stem).join("mod.rs"),
            None => return false,
        }
    };
    std::fs::symlink_metadata(twin).is_ok()
}

/// What a finished run leaves to store: the files rustfmt named, with their content from
/// before the run, and a formatting run's rewritten files. The error is why nothing is stored.
fn capture(
    invocation: &Invocation,
    roots: &[Root],
    listed: &[PathBuf],
    output: &Output,
    snapshot: Option<&HashMap<PathBuf, FileDigest>>,
) -> Result<Captured, &'static str> {
    let code = output.status.code();
    // Diffs alone (exit 1, nothing on stderr) are a `--check` result; other failures (parse
    // errors, a module file that is missing) are not stored.
    let result =
        code == Some(0) || (invocation.check && code == Some(1) && output.stderr.is_empty());
    if !result {
        return Err("rustfmt_error");
    }
    let real_roots: HashSet<&Path> = roots.iter().map(|r| r.real.as_path()).collect();
    let unlisted = unlisted_module_files(listed, &real_roots);
    if listed
        .iter()
        .chain(&unlisted)
        .any(|p| !real_roots.contains(p.as_path()) && ambiguous_module(p))
    {
        return Err("rustfmt_module_ambiguous");
    }
    let Some(snapshot) = snapshot else {
        // --check writes nothing: the files are checked after the run like any tool's inputs.
        let deps = listed
            .iter()
            .chain(&unlisted)
            .map(|p| {
                p.to_str()
                    .map(str::to_string)
                    .ok_or("dependency_unreadable")
            })
            .collect::<Result<_, _>>()?;
        return Ok(Captured {
            deps,
            ..Captured::default()
        });
    };
    let mut captured = Captured::default();
    for path in listed {
        let before = snapshot.get(path).ok_or("rustfmt_input_outside")?;
        let bytes = std::fs::read(path).map_err(|_| "dependency_unreadable")?;
        let sig = StatSig::of(path).map_err(|_| "dependency_unreadable")?;
        if *blake3::hash(&bytes).as_bytes() == before.hash {
            // Left alone: it must be the very file hashed before the run.
            if !before.trusted || sig != before.sig {
                return Err("input_modified_during_compile");
            }
        } else {
            // rustfmt rewrites in place; a new inode means someone else replaced it.
            if (sig.dev, sig.ino) != (before.sig.dev, before.sig.ino) {
                return Err("input_modified_during_compile");
            }
            let role = path.to_str().ok_or("dependency_unreadable")?.to_string();
            captured.outputs.push(CapturedOutput {
                role,
                bytes,
                executable: false,
            });
        }
        captured.hashed_deps.push(DepDigest {
            path: path.as_os_str().as_encoded_bytes().to_vec(),
            hash: before.hash,
        });
    }
    for path in &unlisted {
        // Read, never written: the very file hashed before the run.
        let before = snapshot.get(path).ok_or("rustfmt_input_outside")?;
        if !before.still_holds(path) {
            return Err("input_modified_during_compile");
        }
        captured.hashed_deps.push(DepDigest {
            path: path.as_os_str().as_encoded_bytes().to_vec(),
            hash: before.hash,
        });
    }
    Ok(captured)
}

/// Module files a listed file could declare with a plain `mod name;` (`name.rs` or
/// `name/mod.rs` in the directory it owns) that rustfmt did not list. rustfmt reads such a
/// module and then leaves it out when it is skipped (`#![rustfmt::skip]` inside, or an
/// `ignore` pattern), so its content still decides the result; unrelated files there only cost
/// a miss when they change.
fn unlisted_module_files(listed: &[PathBuf], real_roots: &HashSet<&Path>) -> Vec<PathBuf> {
    let known: HashSet<&Path> = listed.iter().map(PathBuf::as_path).collect();
    let mut dirs = BTreeSet::new();
    for file in listed {
        let (Some(parent), Some(stem)) = (file.parent(), file.file_stem()) else {
            continue;
        };
        // A file named on the command line and a mod.rs own their directory; `a.rs` owns `a/`.
        if real_roots.contains(file.as_path()) || file.file_name() == Some(OsStr::new("mod.rs")) {
            dirs.insert(parent.to_path_buf());
        } else {
            dirs.insert(parent.join(stem));
        }
    }
    let mut found = BTreeSet::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let candidate = match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => path.join("mod.rs"),
                Ok(meta) if meta.is_file() && path.extension() == Some(OsStr::new("rs")) => path,
                _ => continue,
            };
            if !known.contains(candidate.as_path()) && candidate.is_file() {
                found.insert(candidate);
            }
        }
    }
    found.into_iter().collect()
}

/// Writes a formatting run's rewritten files back, each a fresh copy with the mode the file
/// has now. Only files the entry names as inputs (just checked unchanged) are written.
fn deliver(store: &Store, found: &Found) -> Result<(), String> {
    let entry = found.entry();
    let inputs: HashSet<&[u8]> = entry.deps.iter().map(|d| d.path.as_slice()).collect();
    for output in &entry.result.outputs {
        if !inputs.contains(output.role.as_bytes()) {
            return Err(format!("refusing output {:?}: not an input", output.role));
        }
        let path = Path::new(&output.role);
        let mode = std::fs::metadata(path)
            .map(|meta| zccache_platform::fs::mode_of(&meta))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        store
            .deliver(
                &output.blob,
                path,
                Delivery::Copy {
                    executable: mode & 0o111 != 0,
                },
            )
            .map_err(|e| e.to_string())?;
        let now = std::fs::metadata(path).map(|m| zccache_platform::fs::mode_of(&m));
        if now.ok() != Some(mode) {
            zccache_platform::fs::set_path_mode(path, mode)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_cacheable_calls() {
        let call = parse(&args(&[
            "+nightly",
            "--edition",
            "2021",
            "--check",
            "--config=max_width=80",
            "-l",
            "--color",
            "never",
            "src/main.rs",
            "--",
            "-odd.rs",
        ]))
        .unwrap();
        assert_eq!(call.toolchain, Some("+nightly".into()));
        assert!(call.check && call.color_never && !call.verbose && !call.quiet);
        assert_eq!(
            call.files,
            [PathBuf::from("src/main.rs"), PathBuf::from("-odd.rs")]
        );
        assert_eq!(
            call.format_options,
            args(&["--edition", "2021", "--config", "max_width=80"])
        );
        let call = parse(&args(&[
            "-q",
            "--emit",
            "files",
            "--config-path",
            "cfg",
            "a.rs",
        ]))
        .unwrap();
        assert!(call.quiet);
        assert_eq!(call.config_path, Some(PathBuf::from("cfg")));
    }

    #[test]
    fn refuses_what_it_cannot_cache() {
        for (line, reason) in [
            (&[][..], "rustfmt_stdin"),
            (&["--check"], "rustfmt_stdin"),
            (&["-"], "rustfmt_stdin"),
            (&["--emit", "stdout", "a.rs"], "rustfmt_emit"),
            (&["--emit=json", "a.rs"], "rustfmt_emit"),
            (&["--backup", "a.rs"], "rustfmt_option"),
            (&["--print-config", "default"], "rustfmt_option"),
            (&["-V"], "rustfmt_option"),
            (&["--help"], "rustfmt_option"),
            (&["--file-lines", "[]", "a.rs"], "rustfmt_option"),
            (&["-lv", "a.rs"], "rustfmt_option"),
            (&["--check=yes", "a.rs"], "rustfmt_option"),
            (&["a.rs", "--edition"], "rustfmt_option"),
        ] {
            assert_eq!(parse(&args(line)), Err(reason), "{line:?}");
        }
    }

    #[test]
    fn verbose_lines_are_taken_out() {
        let stdout = b"Using rustfmt config file /p/rustfmt.toml for /p/src/main.rs\n\
Formatting /p/src/m.rs\n\
Formatting /p/src/main.rs\n\
/p/src/main.rs\n\
Spent 0.001 secs in the parsing phase, and 0.000 secs in the formatting phase\n";
        let (listed, out) = unverbose(stdout, false).unwrap();
        assert_eq!(
            listed,
            [
                PathBuf::from("/p/src/m.rs"),
                PathBuf::from("/p/src/main.rs")
            ]
        );
        assert_eq!(out, b"/p/src/main.rs\n");
    }

    #[test]
    fn verbose_diffs_become_plain_ones() {
        // As rustfmt -v --check --color always prints them: colour resets begin the next line.
        let verbose = "Formatting /p/m.rs\nDiff in /p/m.rs:1:\n mod n;⏎\n\x1b[31m-fn f( ){}⏎\n\
\x1b(B\x1b[m\x1b[32m+fn f() {}⏎\n\x1b(B\x1b[mFormatting /p/main.rs\n\
Spent 0.013 secs in the parsing phase, and 0.006 secs in the formatting phase\n";
        let plain = "Diff in /p/m.rs:1:\n mod n;\n\x1b[31m-fn f( ){}\n\
\x1b(B\x1b[m\x1b[32m+fn f() {}\n\x1b(B\x1b[m";
        let (listed, out) = unverbose(verbose.as_bytes(), true).unwrap();
        assert_eq!(
            listed,
            [PathBuf::from("/p/m.rs"), PathBuf::from("/p/main.rs")]
        );
        assert_eq!(String::from_utf8(out).unwrap(), plain);
        // A line of the file that ends in ⏎ itself cannot be told from the marker.
        // A line of the file that ends in ⏎ itself keeps it: the marker is the last one.
        let own = "Formatting /p/m.rs\nDiff in /p/m.rs:1:\n-// ⏎⏎\n+// ⏎⏎\n";
        let (_, out) = unverbose(own.as_bytes(), true).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Diff in /p/m.rs:1:\n-// ⏎\n+// ⏎\n"
        );
        // A file name with one cannot be told apart.
        let named = "Formatting /p/⏎.rs\n/p/⏎.rs\n";
        assert!(unverbose(named.as_bytes(), true).is_none());
        assert!(unverbose(named.as_bytes(), false).is_some());
    }

    #[test]
    fn unlisted_modules_are_the_ones_a_listed_file_could_declare() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path();
        for file in [
            "main.rs",
            "m.rs",
            "m/n.rs",
            "m/skipped.rs",
            "k/mod.rs",
            "m/deep/x.rs",
        ] {
            std::fs::create_dir_all(src.join(file).parent().unwrap()).unwrap();
            std::fs::write(src.join(file), "").unwrap();
        }
        std::fs::write(src.join("notes.txt"), "").unwrap();
        let root = src.join("main.rs");
        let listed = [src.join("m/n.rs"), src.join("m.rs"), root.clone()];
        let roots = HashSet::from([root.as_path()]);
        assert_eq!(
            unlisted_module_files(&listed, &roots),
            [src.join("k/mod.rs"), src.join("m/skipped.rs")]
        );
    }

    #[test]
    fn module_twins() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path();
        std::fs::create_dir_all(src.join("m")).unwrap();
        std::fs::write(src.join("m.rs"), "").unwrap();
        std::fs::write(src.join("m/n.rs"), "").unwrap();
        assert!(!ambiguous_module(&src.join("m.rs")));
        assert!(!ambiguous_module(&src.join("m/n.rs")));
        std::fs::write(src.join("m/mod.rs"), "").unwrap();
        assert!(ambiguous_module(&src.join("m.rs")));
        assert!(ambiguous_module(&src.join("m/mod.rs")));
    }
}
