//! `ar rcs libx.a a.o b.o`: static libraries, cached by the members' content and the archive
//! that was there before (`r` replaces members in it, `q` appends to it).
//!
//! Only deterministic archives are cached (`D`, or a tool whose default it is): otherwise the
//! archive records the members' timestamps and owners, which a restored copy would not match.

use crate::pipeline::{Call, Captured, CapturedOutput, Found, KeyHasher, Miss};
use crate::Daemon;
use std::path::Path;
use std::sync::Arc;
use zccache_artifact::{Delivery, DepDigest};
use zccache_compiler::{parse_ar, ArInvocation};
use zccache_core::paths::absolute;
use zccache_protocol::Response;

const KEY_DOMAIN: &str = "zccache ar v1";
const ROLE_ARCHIVE: &str = "archive";

impl Daemon {
    /// An `ar` call: served from the cache, or run and stored.
    pub(crate) fn run_ar(self: &Arc<Self>, call: &Call) -> Response {
        let ar = match parse_ar(&call.args) {
            Ok(ar) => ar,
            Err(refused) => return self.run_locally(call, refused.reason),
        };
        let Some(store) = self.store() else {
            return self.run_locally(call, "store_unavailable");
        };
        let Ok(identity) = self.toolchains.identify_with(
            &self.fs,
            &call.compiler,
            &call.env,
            &["--version"],
            call.synced(&self.fs),
        ) else {
            return self.run_locally(call, "compiler_unidentified");
        };
        if !ar.deterministic && !self.ar_is_deterministic(call) {
            return self.run_locally(call, "ar_timestamps");
        }
        let archive_path = absolute(&call.cwd, &ar.archive);
        // The archive as it is now: `r` and `q` start from it.
        let before = match std::fs::symlink_metadata(&archive_path) {
            Err(_) => None,
            Ok(meta) if meta.is_file() => match call.digest(&self.fs, &archive_path) {
                Ok(digest) => Some(digest.hash),
                Err(_) => return self.run_locally(call, "source_unreadable"),
            },
            Ok(_) => return self.run_locally(call, "unsupported_output"),
        };
        // Members are hashed before the run and must be unchanged after it (objects are
        // usually written an instant before).
        let mut members = Vec::with_capacity(ar.members.len());
        for member in &ar.members {
            match call.digest(&self.fs, &absolute(&call.cwd, member)) {
                Ok(digest) => members.push(DepDigest {
                    path: member.as_os_str().as_encoded_bytes().to_vec(),
                    hash: digest.hash,
                }),
                Err(_) => return self.run_locally(call, "source_unreadable"),
            }
        }
        let key_of = |mut key: KeyHasher| {
            key.digest_part("tool identity", &identity);
            key.part("tool path", call.compiler.as_os_str().as_encoded_bytes());
            for arg in &call.args {
                key.part("argument", arg.as_encoded_bytes());
            }
            match &before {
                Some(hash) => key.digest_part("archive before", hash),
                None => key.part("archive before", b"(none)"),
            }
            key
        };
        let key = key_of(KeyHasher::new(KEY_DOMAIN)).finish();
        if let Some(found) = self.find_entry(store, &key, call, None) {
            let deliver = |found: &Found| deliver(store, found, &archive_path);
            if let Some(response) = self.serve_hit(call, &found, deliver) {
                return response;
            }
        }
        let miss = Miss {
            key,
            source: None,
            record_as: ar.archive.clone(),
            time_macros_matter: false,
            store_failures: false,
            parts: key_of(KeyHasher::recording(KEY_DOMAIN)).into_parts(),
        };
        self.run_miss(call, &call.args, miss, || {
            self.capture_archive(call, &ar, &archive_path, members)
        })
    }

    /// Whether this `ar` writes zero timestamps and ids by default (`D` marked "(default)" in
    /// its help, as GNU ar built for determinism and llvm-ar say).
    fn ar_is_deterministic(&self, call: &Call) -> bool {
        let Ok(digest) = self.fs.digest(&call.compiler) else {
            return false;
        };
        let key = (call.compiler.clone(), digest.hash);
        if let Some(known) = self.analysis.ar_deterministic.get(&key) {
            return *known;
        }
        let mut command = std::process::Command::new(&call.compiler);
        command
            .arg("--help")
            .env_clear()
            .envs(call.env.iter().map(|(k, v)| (k, v)))
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let help = call
            .spawn(command)
            .and_then(|child| child.wait_with_output())
            .map(|out| {
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                text
            })
            .unwrap_or_default();
        let deterministic = help
            .lines()
            .any(|line| line.contains("[D]") && line.contains("(default)"));
        self.analysis.ar_deterministic.insert(key, deterministic);
        deterministic
    }

    /// The archive as written, with the members as they were hashed before the run.
    fn capture_archive(
        &self,
        call: &Call,
        ar: &ArInvocation,
        archive_path: &Path,
        members: Vec<DepDigest>,
    ) -> Result<Captured, &'static str> {
        for (member, hashed) in ar.members.iter().zip(&members) {
            let now = self.fs.digest(&absolute(&call.cwd, member));
            if now.map(|d| d.hash).ok() != Some(hashed.hash) {
                return Err("input_modified_during_compile");
            }
        }
        let bytes = std::fs::read(archive_path).map_err(|_| "missing_output")?;
        Ok(Captured {
            hashed_deps: members,
            outputs: vec![CapturedOutput {
                role: ROLE_ARCHIVE.into(),
                bytes,
                executable: false,
            }],
            ..Captured::default()
        })
    }
}

fn deliver(
    store: &zccache_artifact::Store,
    found: &Found,
    archive_path: &Path,
) -> Result<(), String> {
    let output = found
        .entry()
        .result
        .outputs
        .iter()
        .find(|o| o.role == ROLE_ARCHIVE)
        .ok_or("entry has no archive")?;
    // A copy: `ar r` and `ranlib` later rewrite the archive in place.
    store
        .deliver(
            &output.blob,
            archive_path,
            Delivery::Copy { executable: false },
        )
        .map_err(|e| e.to_string())
}
