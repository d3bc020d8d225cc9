//! `zccache exec --input F --output G --env NAME -- TOOL ARGS`: a generic deterministic tool
//! whose inputs and outputs are declared on the command line.
//!
//! The key holds the tool (its binary's digest, path and name), every argument in order, the
//! working directory, each declared input's path and content, each declared output's path, and
//! the value of each declared variable. Nothing else is: the caller promises that the tool reads
//! no other file and no other variable (`PATH`, `HOME`, locale…) that changes its result.
//! Failed runs are stored too, without outputs, and replayed with their exit code.

use crate::pipeline::{Call, Captured, CapturedOutput, Found, KeyHasher, Miss, Ran};
use crate::Daemon;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use zccache_artifact::{Delivery, Store};
use zccache_core::paths::absolute;
use zccache_fscache::FileClock;
use zccache_fscache::FileDigest;
use zccache_protocol::Response;

const KEY_DOMAIN: &str = "zccache exec v1";

impl Daemon {
    /// A declared tool call: served from the cache, or run and stored.
    pub(crate) fn run_exec(self: &Arc<Self>, call: &Call) -> Response {
        let Some(store) = self.store() else {
            return self.run_locally(call, "store_unavailable");
        };
        let spec = match Declared::of(call) {
            Ok(spec) => spec,
            Err(reason) => return self.run_locally(call, reason),
        };
        let mut inputs = Vec::with_capacity(spec.inputs.len());
        for path in &spec.inputs {
            let absolute = absolute(&call.cwd, path);
            match std::fs::metadata(&absolute) {
                Ok(meta) if meta.is_dir() => return self.run_locally(call, "exec_input_directory"),
                Ok(_) => {}
                Err(_) => return self.run_locally(call, "exec_input_missing"),
            }
            match call.digest(&self.fs, &absolute) {
                Ok(digest) => inputs.push((absolute, digest)),
                Err(_) => return self.run_locally(call, "exec_input_unreadable"),
            }
        }
        let tool = match self.fs.digest(&call.compiler) {
            Ok(digest) => digest,
            Err(_) => return self.run_locally(call, "compiler_unidentified"),
        };
        let mut key = KeyHasher::recording(KEY_DOMAIN);
        key.digest_part("tool identity", &tool.hash);
        key.part("tool path", call.compiler.as_os_str().as_encoded_bytes());
        key.part("tool name", call.name.as_encoded_bytes());
        for arg in &call.args {
            key.part("argument", arg.as_encoded_bytes());
        }
        key.part("cwd", call.cwd.as_os_str().as_encoded_bytes());
        key.field(b"--inputs--");
        for (path, (_, digest)) in spec.inputs.iter().zip(&inputs) {
            key.field(path.as_os_str().as_encoded_bytes());
            key.digest_part(&format!("input {}", path.display()), &digest.hash);
        }
        key.field(b"--outputs--");
        for path in &spec.outputs {
            key.part("output", path.as_os_str().as_encoded_bytes());
        }
        key.field(b"--env--");
        for name in &spec.env {
            key.env(call, name);
        }
        let hash = key.finish();
        let outputs: Vec<PathBuf> = spec
            .outputs
            .iter()
            .map(|path| absolute(&call.cwd, path))
            .collect();
        if let Some(found) = self.find_entry(store, &hash, call, None) {
            let deliver = |found: &Found| deliver(store, found, &outputs);
            if let Some(response) = self.serve_hit(call, &found, deliver) {
                return response;
            }
        }
        let miss = Miss {
            key: hash,
            source: None,
            record_as: spec
                .outputs
                .first()
                .or(spec.inputs.first())
                .map_or_else(|| call.compiler.clone(), |path| path.to_path_buf()),
            time_macros_matter: false,
            store_failures: true,
            parts: key.into_parts(),
        };
        // Declared inputs written in the tick the tool starts in could not be told from ones
        // written while it runs: wait that tick out (see `fresh.rs`).
        for (path, digest) in &mut inputs {
            self.fs.settle(path, digest);
        }
        let started_at = FileClock::now();
        let started = Instant::now();
        let output = match call.run(&call.compiler, &call.args) {
            Ok(output) => output,
            Err(e) => {
                tracing::info!("cannot run {}: {e}", call.compiler.display());
                return self.run_locally(call, "compiler_spawn_failed");
            }
        };
        let ran = Ran {
            started_at,
            compile_ms: started.elapsed().as_millis() as u64,
            exit_code: crate::pipeline::exit_code(&output.status),
            stdout: output.stdout,
            stderr: output.stderr,
            stderr_sent: 0,
        };
        let captured = if output.status.code().is_none() {
            // Killed by a signal: a result of the moment, not of the inputs.
            Err("tool_killed")
        } else {
            capture(&inputs, &outputs, output.status.success())
        };
        self.reply_miss(call, miss, ran, captured)
    }
}

/// The declarations of a `zccache exec` call, as paths and names.
struct Declared {
    inputs: Vec<PathBuf>,
    outputs: Vec<PathBuf>,
    env: Vec<String>,
}

impl Declared {
    /// The call's declarations, or why they cannot be cached.
    fn of(call: &Call) -> Result<Declared, &'static str> {
        let spec = call.exec.as_ref().ok_or("unsupported_tool")?;
        let paths = |list: &[Vec<u8>]| -> Vec<PathBuf> {
            list.iter()
                .map(|p| PathBuf::from(zccache_platform::os_str::os_string_from_bytes(p.clone())))
                .collect()
        };
        let declared = Declared {
            inputs: paths(&spec.inputs),
            outputs: paths(&spec.outputs),
            env: spec
                .env
                .iter()
                .map(|name| String::from_utf8(name.clone()))
                .collect::<Result<_, _>>()
                .map_err(|_| "exec_env_name")?,
        };
        if declared
            .inputs
            .iter()
            .chain(&declared.outputs)
            .any(|p| p.as_os_str().is_empty())
        {
            return Err("exec_empty_path");
        }
        let inputs: Vec<PathBuf> = declared
            .inputs
            .iter()
            .map(|p| absolute(&call.cwd, p))
            .collect();
        let mut outputs = std::collections::HashSet::new();
        for output in &declared.outputs {
            let output = absolute(&call.cwd, output);
            if inputs.contains(&output) {
                return Err("exec_output_is_input");
            }
            if !outputs.insert(output) {
                return Err("exec_output_twice");
            }
        }
        Ok(declared)
    }
}

/// After the run: the inputs must be what was hashed before it, and a successful run must have
/// written every declared output. A failed run keeps only its exit code and messages.
fn capture(
    inputs: &[(PathBuf, FileDigest)],
    outputs: &[PathBuf],
    success: bool,
) -> Result<Captured, &'static str> {
    if !inputs.iter().all(|(path, digest)| digest.still_holds(path)) {
        return Err("input_modified_during_compile");
    }
    let mut captured = Captured::default();
    if !success {
        return Ok(captured);
    }
    for (index, path) in outputs.iter().enumerate() {
        let meta = std::fs::metadata(path).map_err(|_| "missing_output")?;
        if !meta.is_file() {
            return Err("missing_output");
        }
        let bytes = std::fs::read(path).map_err(|_| "missing_output")?;
        captured.outputs.push(CapturedOutput {
            role: index.to_string(),
            bytes,
            executable: zccache_platform::fs::mode_of(&meta) & 0o111 != 0,
        });
    }
    Ok(captured)
}

/// Writes every stored output to the declared path with the same index, as a fresh copy.
fn deliver(store: &Store, found: &Found, outputs: &[PathBuf]) -> Result<(), String> {
    for output in &found.entry().result.outputs {
        let path = output
            .role
            .parse::<usize>()
            .ok()
            .and_then(|index| outputs.get(index))
            .ok_or_else(|| format!("unknown output role {:?}", output.role))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        store
            .deliver(
                &output.blob,
                path,
                Delivery::Copy {
                    executable: output.executable,
                },
            )
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_changed_during_the_run_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        std::fs::write(&input, "a").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&input)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let fs = zccache_fscache::FsCache::new();
        let mut digest = fs.digest(&input).unwrap();
        // Its fresh ctime is waited out, as before a run.
        fs.settle(&input, &mut digest);
        let inputs = [(input.clone(), digest)];
        assert!(capture(&inputs, &[], true).is_ok());
        std::fs::write(&input, "b").unwrap();
        assert_eq!(
            capture(&inputs, &[], true).err(),
            Some("input_modified_during_compile")
        );
    }

    #[test]
    fn a_successful_run_needs_its_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let outputs = [out.clone()];
        assert_eq!(capture(&[], &outputs, true).err(), Some("missing_output"));
        // A failed run keeps no outputs, present or not.
        let failed = capture(&[], &outputs, false).unwrap();
        assert!(failed.outputs.is_empty());
        std::fs::write(&out, "x").unwrap();
        zccache_platform::fs::set_path_mode(&out, 0o755).unwrap();
        let ok = capture(&[], &outputs, true).unwrap();
        assert_eq!(ok.outputs.len(), 1);
        assert_eq!(ok.outputs[0].role, "0");
        // Windows has no executable bit: a program is one by its name.
        assert_eq!(ok.outputs[0].executable, cfg!(unix));
        assert_eq!(ok.outputs[0].bytes, b"x");
    }
}
