//! Links through gcc, clang and emcc: the program (or library) and the files written beside it.
//!
//! gcc and clang links run with `-Wl,--dependency-file`, so the linker itself names every file
//! it read (objects, archives, `-l` libraries, crt files, linker and version scripts); a hit is
//! served only while all of them are unchanged. emcc's wasm-ld cannot report its inputs, so
//! an emcc link depends on the files named on its command line and the `-l` libraries found on
//! its `-L` paths, and on emscripten's version and config for its own system libraries. Files
//! the link creates next to its output (`app.wasm` beside `app.js`, map files) are found by
//! comparing the output directory before and after, stored with the output and restored by a
//! hit.

use crate::pipeline::{Call, Captured, CapturedOutput, Found, KeyHasher, Miss};
use crate::toolchain::Toolchain;
use crate::Daemon;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::Arc;
use zccache_artifact::{Delivery, DepDigest, Store};
use zccache_compiler::{depfile, is_sidecar_of, library_file_names, parse_link, LinkInvocation};
use zccache_core::paths::absolute;
use zccache_protocol::Response;

/// Environment variables that change what a link finds or writes.
const LINK_ENV: &[&str] = &[
    "LIBRARY_PATH",
    "LD_RUN_PATH",
    "LD_LIBRARY_PATH",
    "GCC_EXEC_PREFIX",
    "COMPILER_PATH",
    "SOURCE_DATE_EPOCH",
    "LANG",
    "LC_ALL",
    "LC_MESSAGES",
];

const KEY_DOMAIN: &str = "zccache link v1";
const ROLE_OUTPUT: &str = "output";
/// `sidecar:<file name>`: a file the link wrote beside its output.
const SIDECAR_PREFIX: &str = "sidecar:";
/// `extra:<n>`: the n-th file the command line asked the linker to write (`-Map`).
const EXTRA_PREFIX: &str = "extra:";

impl Daemon {
    /// A gcc/clang/emcc call that links: served from the cache, or linked and stored.
    pub(crate) fn compile_link(
        self: &Arc<Self>,
        call: &Call,
        args: &[OsString],
        toolchain: &Toolchain,
    ) -> Response {
        call.mark_link();
        let link = match parse_link(args, toolchain.emscripten) {
            Ok(link) => link,
            Err(refused) => {
                tracing::debug!(
                    "link not cacheable ({}): {}",
                    refused.reason,
                    refused.detail
                );
                return self.run_locally(call, refused.reason);
            }
        };
        let Some(store) = self.store() else {
            return self.run_locally(call, "store_unavailable");
        };
        let key = link_key(call, args, &link, toolchain, KeyHasher::new(KEY_DOMAIN)).finish();
        if let Some(found) = self.find_entry(store, &key, call, None) {
            let deliver = |found: &Found| deliver(store, found, call, &link);
            if let Some(response) = self.serve_hit(call, &found, deliver) {
                return response;
            }
        }
        let output_path = absolute(&call.cwd, &link.output);
        let before = sidecar_candidates(&output_path);
        // The files on the command line were usually written an instant ago (objects just
        // compiled or delivered), too recently for the after-the-run check of the linker's
        // report: they are hashed now, and must still have that content when the link is done.
        let named = match command_line_inputs(call, &link) {
            Ok(named) => named,
            Err(reason) => return self.run_locally(call, reason),
        };
        let mut hashed = Vec::with_capacity(named.len());
        for input in &named {
            match call.digest(&self.fs, &absolute(&call.cwd, Path::new(input))) {
                Ok(digest) => hashed.push((input.clone(), digest.hash)),
                // A missing input: the linker will say so; nothing to store.
                Err(_) => return self.run_locally(call, "link_input_missing"),
            }
        }
        // gcc and clang: the linker names what it read. Without that (emcc), the command line.
        let depfile = if toolchain.emscripten {
            None
        } else {
            match tempfile::Builder::new()
                .prefix("link-")
                .suffix(".d")
                .tempfile_in(self.root.tmp_dir())
            {
                Ok(file) => Some(file.into_temp_path()),
                Err(_) => return self.run_locally(call, "store_unwritable"),
            }
        };
        let mut run_args = call.args.clone();
        if let Some(path) = &depfile {
            let mut flag = OsString::from("-Wl,--dependency-file=");
            flag.push(path.as_os_str());
            run_args.push(flag);
        }
        let parts = link_key(
            call,
            args,
            &link,
            toolchain,
            KeyHasher::recording(KEY_DOMAIN),
        )
        .into_parts();
        let miss = Miss {
            key,
            source: None,
            record_as: link.output.clone(),
            time_macros_matter: false,
            store_failures: false,
            parts,
        };
        let response = self.run_miss(call, &run_args, miss, || {
            let mut captured = capture(call, &link, &output_path, &before, depfile.as_deref())?;
            for (input, hash) in hashed {
                let now = self.fs.digest(&absolute(&call.cwd, Path::new(&input)));
                if now.map(|d| d.hash).ok() != Some(hash) {
                    return Err("input_modified_during_compile");
                }
                captured.hashed_deps.push(DepDigest {
                    path: input.into_bytes(),
                    hash,
                });
            }
            Ok(captured)
        });
        // A linker that does not know --dependency-file (gold, old ld) fails on our flag: the
        // build gets the link it asked for, uncached.
        if let (Some(_), Response::Compiled(reply)) = (&depfile, &response) {
            if reply.exit_code != 0
                && String::from_utf8_lossy(&reply.stderr).contains("dependency-file")
            {
                return self.run_locally(call, "linker_without_depfile");
            }
        }
        response
    }
}

/// Everything a link's result depends on besides the files the linker reads.
fn link_key(
    call: &Call,
    args: &[OsString],
    link: &LinkInvocation,
    toolchain: &Toolchain,
    mut key: KeyHasher,
) -> KeyHasher {
    key.digest_part("compiler identity", &toolchain.hash);
    crate::pipeline::key_compiler_names(&mut key, call);
    for arg in args {
        key.part("argument", arg.as_encoded_bytes());
    }
    for name in LINK_ENV {
        key.env(call, name);
    }
    if toolchain.emscripten {
        crate::cc::emscripten_parts(call, &mut key);
    }
    // A library appearing earlier on the -L path would be linked instead of the one used.
    for lib in &link.libs {
        for dir in &link.lib_dirs {
            for name in library_file_names(lib, link.static_only) {
                let path = absolute(&call.cwd, &dir.join(&name));
                if path.exists() {
                    key.part("library on -L path", path.as_os_str().as_encoded_bytes());
                }
            }
        }
    }
    key
}

/// A file's identity in a directory listing: inode, size and mtime.
type FileSig = (u64, u64, i128);

fn file_sig(meta: &std::fs::Metadata) -> FileSig {
    let stamp = zccache_platform::stamp::FileStamp::of(meta);
    (stamp.ino, stamp.size, stamp.mtime_ns)
}

/// Files beside `output` named after it, with their signatures.
fn sidecar_candidates(output: &Path) -> HashMap<OsString, FileSig> {
    let dir = output.parent().unwrap_or(Path::new("/"));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter(|entry| is_sidecar_of(output, Path::new(&entry.file_name())))
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            meta.is_file().then(|| (entry.file_name(), file_sig(&meta)))
        })
        .collect()
}

/// Reads what a successful link wrote and what it read.
fn capture(
    call: &Call,
    link: &LinkInvocation,
    output_path: &Path,
    before: &HashMap<OsString, FileSig>,
    depfile_path: Option<&Path>,
) -> Result<Captured, &'static str> {
    let mut outputs = Vec::new();
    outputs.push(read_output(ROLE_OUTPUT.to_string(), output_path)?);
    for (name, sig) in sidecar_candidates(output_path) {
        if before.get(&name) == Some(&sig) {
            continue;
        }
        let path = output_path.with_file_name(&name);
        let role = format!(
            "{SIDECAR_PREFIX}{}",
            name.to_str().ok_or("unsupported_path")?
        );
        outputs.push(read_output(role, &path)?);
    }
    for (index, extra) in link.extra_outputs.iter().enumerate() {
        outputs.push(read_output(
            format!("{EXTRA_PREFIX}{index}"),
            &absolute(&call.cwd, extra),
        )?);
    }
    let deps = match depfile_path {
        Some(path) => {
            let text = std::fs::read(path).map_err(|_| "depfile_unreadable")?;
            let text = String::from_utf8(text).map_err(|_| "depfile_unreadable")?;
            let parsed = depfile::parse(&text).ok_or("depfile_unreadable")?;
            if parsed.deps.is_empty() {
                return Err("depfile_unreadable");
            }
            parsed.deps.into_iter().map(|d| d.path).collect()
        }
        // Without the linker's word, the command line's files are all there is; they are
        // hashed before the run (see `compile_link`).
        None => Vec::new(),
    };
    Ok(Captured {
        deps,
        outputs,
        ..Captured::default()
    })
}

/// Without the linker's word: the files on the command line and the `-l` libraries on `-L`
/// paths (emscripten's own libraries go with its version).
fn command_line_inputs(call: &Call, link: &LinkInvocation) -> Result<Vec<String>, &'static str> {
    let mut deps = Vec::new();
    for input in &link.inputs {
        deps.push(input.to_str().ok_or("unsupported_path")?.to_string());
    }
    for lib in &link.libs {
        let found = link.lib_dirs.iter().find_map(|dir| {
            library_file_names(lib, link.static_only)
                .into_iter()
                .map(|name| dir.join(name))
                .find(|path| absolute(&call.cwd, path).is_file())
        });
        if let Some(path) = found {
            deps.push(path.to_str().ok_or("unsupported_path")?.to_string());
        }
    }
    Ok(deps)
}

fn read_output(role: String, path: &Path) -> Result<CapturedOutput, &'static str> {
    let meta = std::fs::metadata(path).map_err(|_| "missing_output")?;
    let bytes = std::fs::read(path).map_err(|_| "missing_output")?;
    Ok(CapturedOutput {
        role,
        bytes,
        executable: zccache_platform::fs::mode_of(&meta) & 0o111 != 0,
    })
}

/// Writes the program and every file stored with it, as fresh copies with the linker's modes.
fn deliver(store: &Store, found: &Found, call: &Call, link: &LinkInvocation) -> Result<(), String> {
    let output_path = absolute(&call.cwd, &link.output);
    let outputs = &found.entry().result.outputs;
    if !outputs.iter().any(|o| o.role == ROLE_OUTPUT) {
        return Err("entry has no linked output".into());
    }
    for output in outputs {
        let dest = if output.role == ROLE_OUTPUT {
            output_path.clone()
        } else if let Some(name) = output.role.strip_prefix(SIDECAR_PREFIX) {
            if name.contains('/') || name == ".." || !is_sidecar_of(&output_path, Path::new(name)) {
                return Err(format!("refusing sidecar name {name:?}"));
            }
            output_path.with_file_name(OsStr::new(name))
        } else if let Some(index) = output.role.strip_prefix(EXTRA_PREFIX) {
            let index: usize = index.parse().map_err(|_| "bad extra output role")?;
            let extra = link
                .extra_outputs
                .get(index)
                .ok_or("extra output not asked for")?;
            absolute(&call.cwd, extra)
        } else {
            return Err(format!("unknown output role {}", output.role));
        };
        store
            .deliver(
                &output.blob,
                &dest,
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
    fn only_changed_files_named_after_the_output_are_sidecars() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("app.js");
        std::fs::write(dir.path().join("app.wasm"), b"old").unwrap();
        std::fs::write(dir.path().join("app.data"), b"kept").unwrap();
        std::fs::write(dir.path().join("other.wasm"), b"x").unwrap();
        let before = sidecar_candidates(&out);
        assert_eq!(before.len(), 2);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&out, b"js").unwrap();
        std::fs::write(dir.path().join("app.wasm"), b"new wasm").unwrap();
        std::fs::write(dir.path().join("app.wasm.map"), b"{}").unwrap();
        std::fs::write(dir.path().join("other.js"), b"y").unwrap();
        let after = sidecar_candidates(&out);
        let mut changed: Vec<_> = after
            .iter()
            .filter(|(name, sig)| before.get(*name) != Some(sig))
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        changed.sort();
        assert_eq!(changed, ["app.wasm", "app.wasm.map"]);
    }
}
