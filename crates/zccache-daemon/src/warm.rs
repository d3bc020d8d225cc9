//! `zccache warm`: puts rustc's cached outputs back into `target/<profile>/deps` before cargo
//! runs, so that a restored target snapshot missing some of them needs no compile. It reads the
//! store directly (no daemon) and delivers only what is missing, for the crates the lockfile
//! names, and only a result whose every source still has the content it was compiled from: a
//! file of the same name built from other sources is never put in place.

use crate::worktree::ROOT_MARK;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::Path;
use std::time::SystemTime;
use zccache_artifact::{Delivery, ManifestEntry, Store};
use zccache_core::CacheRoot;

/// What a warm did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WarmReport {
    /// Files written, and the crates they belong to.
    pub delivered: u64,
    pub crates: u64,
    /// Results whose outputs were all in place already.
    pub present: u64,
    /// Results left out because a source differs from the one they were compiled from (or
    /// cannot be checked).
    pub stale: u64,
}

/// The crate name in an output file name rustc writes to cargo's `deps` directory:
/// `lib<name>-<hash>.rlib|rmeta|so|a`, `<name>-<hash>` (a program) or `<name>-<hash>.d`.
pub fn crate_of(file_name: &str) -> Option<&str> {
    let stem = match file_name.rsplit_once('.') {
        Some((stem, "rlib" | "rmeta" | "so" | "a" | "dylib" | "d")) => stem,
        Some(_) => return None,
        None => file_name,
    };
    let (name, hash) = stem.rsplit_once('-')?;
    if hash.len() != 16 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let name = match file_name.rsplit_once('.') {
        Some((_, "rlib" | "rmeta" | "so" | "a" | "dylib")) => name.strip_prefix("lib")?,
        _ => name,
    };
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .then_some(name)
}

/// Every dependency of `entry` besides its main source has the content it had (relative
/// paths resolve in `cwd`, the directory rustc ran in).
fn deps_unchanged(entry: &ManifestEntry, cwd: &Path) -> bool {
    entry.deps.iter().all(|dep| {
        if dep.path.windows(ROOT_MARK.len()).any(|w| w == ROOT_MARK) {
            return false;
        }
        let path = cwd.join(zccache_platform::os_str::os_str_from_bytes(&dep.path));
        zccache_fscache::hash_file(&path).is_ok_and(|(hash, _)| hash == dep.hash)
    })
}

/// The `--extern name=path` arguments of a rustc call with a path: (name, file name).
fn externs(argv: &[Vec<u8>]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut iter = argv.iter().map(|a| String::from_utf8_lossy(a).into_owned());
    while let Some(arg) = iter.next() {
        let value = match arg.strip_prefix("--extern=") {
            Some(value) => value.to_string(),
            None if arg == "--extern" => match iter.next() {
                Some(value) => value,
                None => break,
            },
            None => continue,
        };
        if let Some((name, path)) = value.split_once('=') {
            let name = name.rsplit(':').next().unwrap_or(name);
            if let Some(file) = Path::new(path).file_name() {
                out.push((name.to_string(), file.to_string_lossy().into_owned()));
            }
        }
    }
    out
}

/// The `--out-dir` of a rustc call.
fn out_dir(argv: &[Vec<u8>]) -> Option<std::path::PathBuf> {
    let mut iter = argv.iter();
    while let Some(arg) = iter.next() {
        if arg == b"--out-dir" {
            return iter
                .next()
                .map(|v| Path::new(zccache_platform::os_str::os_str_from_bytes(v)).to_path_buf());
        }
        if let Some(value) = arg.strip_prefix(b"--out-dir=") {
            return Some(
                Path::new(zccache_platform::os_str::os_str_from_bytes(value)).to_path_buf(),
            );
        }
    }
    None
}

/// The last three components of a path (`target/debug/deps`, `<triple>/release/deps`): a
/// result compiled for another profile or target is never warmed into this one.
fn tail(path: &Path) -> Vec<&OsStr> {
    let mut names: Vec<&OsStr> = path.iter().rev().take(3).collect();
    names.reverse();
    names
}

/// A result that may be put in place once the crates it was linked against are.
struct Candidate<'a> {
    name: &'a str,
    entry: &'a ManifestEntry,
    /// (digest prefix the key was made with, file name in `deps`) per extern crate.
    externs: Vec<(String, String)>,
}

/// Backfills `deps_dir` from the store under `root` for the crates in `crates` (names with
/// `_` for `-`). Candidates are found through the store's source records, and a result is put
/// in place only when what its key was made from still holds: its main source's content, its
/// other dependencies' contents, and the content of every crate it was compiled against (as
/// now in `deps_dir`, after this warm's own deliveries: dependencies first). A result that
/// links native libraries is left out (not checked here). The rest of the key (arguments,
/// cargo's variables, the compiler) is what cargo's metadata hash in the file name stands
/// for. Delivered files get `mtime` when given (the snapshot's single time).
pub fn warm(
    root: &CacheRoot,
    deps_dir: &Path,
    crates: &HashSet<String>,
    mtime: Option<SystemTime>,
) -> Result<WarmReport, String> {
    let store = Store::open(root, 0o644).map_err(|e| e.to_string())?;
    let sources = store.all_source_records().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(deps_dir).map_err(|e| format!("{}: {e}", deps_dir.display()))?;
    let mut report = WarmReport::default();
    let mut manifests = Vec::new();
    for (source, records) in &sources {
        let current = zccache_fscache::hash_file(Path::new(
            zccache_platform::os_str::os_str_from_bytes(source),
        ))
        .ok()
        .map(|(hash, _)| zccache_core::hex(&hash)[..16].to_string());
        for record in records {
            if let Some(manifest) = store.manifest(&record.key).map_err(|e| e.to_string())? {
                manifests.push((current.clone(), record, manifest));
            }
        }
    }
    let mut pending: Vec<Candidate> = Vec::new();
    let wanted_tail = tail(deps_dir);
    for (current, record, manifest) in &manifests {
        if out_dir(&record.argv).as_deref().map(tail) != Some(wanted_tail.clone()) {
            continue;
        }
        let part = |label: &str| {
            record
                .parts
                .iter()
                .find(|(l, _)| l == label)
                .map(|(_, v)| v.clone())
        };
        for entry in &manifest.entries {
            let outputs = &entry.result.outputs;
            // rustc's results only: every output named as rustc names its files, for one
            // crate of the lockfile.
            let Some(name) = outputs.first().and_then(|o| crate_of(&o.role)) else {
                continue;
            };
            if !crates.contains(name) || outputs.iter().any(|o| crate_of(&o.role) != Some(name)) {
                continue;
            }
            if missing(entry, deps_dir).is_empty() {
                report.present += 1;
                continue;
            }
            let cwd = Path::new(zccache_platform::os_str::os_str_from_bytes(&record.cwd));
            let native = record
                .parts
                .iter()
                .any(|(l, _)| l.starts_with("native library"));
            if part("source") != *current || native || !deps_unchanged(entry, cwd) {
                report.stale += 1;
                continue;
            }
            let externs = externs(&record.argv)
                .into_iter()
                .filter_map(|(crate_name, file)| {
                    part(&format!("extern {crate_name}")).map(|digest| (digest, file))
                })
                .collect();
            pending.push(Candidate {
                name,
                entry,
                externs,
            });
        }
    }
    let mut warmed: HashSet<&str> = HashSet::new();
    loop {
        let mut progress = false;
        let mut waiting = Vec::new();
        for candidate in pending {
            let mut ready = true;
            let mut same = true;
            for (digest, file) in &candidate.externs {
                match zccache_fscache::hash_file(&deps_dir.join(file)) {
                    Ok((hash, _)) => same &= zccache_core::hex(&hash)[..16] == *digest,
                    Err(_) => ready = false,
                }
            }
            if !same {
                report.stale += 1;
                continue;
            }
            if !ready {
                waiting.push(candidate);
                continue;
            }
            progress = true;
            for output in missing(candidate.entry, deps_dir) {
                let dest = deps_dir.join(&output.role);
                store
                    .deliver(
                        &output.blob,
                        &dest,
                        Delivery::Copy {
                            executable: output.executable,
                        },
                    )
                    .map_err(|e| e.to_string())?;
                if let Some(time) = mtime {
                    std::fs::File::options()
                        .write(true)
                        .open(&dest)
                        .and_then(|f| f.set_modified(time))
                        .map_err(|e| format!("{}: {e}", dest.display()))?;
                }
                report.delivered += 1;
                warmed.insert(candidate.name);
            }
        }
        pending = waiting;
        if !progress || pending.is_empty() {
            break;
        }
    }
    // Compiled against a crate that is neither here nor warmed: cannot be checked.
    report.stale += pending.len() as u64;
    report.crates = warmed.len() as u64;
    Ok(report)
}

/// The outputs of `entry` not in `deps_dir`; the dep-info file is not needed by cargo (its own
/// copy is in .fingerprint) and is left out.
fn missing<'a>(
    entry: &'a ManifestEntry,
    deps_dir: &Path,
) -> Vec<&'a zccache_artifact::StoredOutput> {
    entry
        .result
        .outputs
        .iter()
        .filter(|o| !o.role.ends_with(".d") && !deps_dir.join(&o.role).exists())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::crate_of;

    #[test]
    fn externs_are_read_from_both_spellings() {
        let argv: Vec<Vec<u8>> = [
            "rustc",
            "--extern",
            "a=/t/debug/deps/liba-0123456789abcdef.rlib",
            "--extern=priv:b=/t/debug/deps/libb-0123456789abcdef.rmeta",
            "--extern",
            "proc_macro",
        ]
        .iter()
        .map(|a| a.as_bytes().to_vec())
        .collect();
        assert_eq!(
            super::externs(&argv),
            [
                ("a".to_string(), "liba-0123456789abcdef.rlib".to_string()),
                ("b".to_string(), "libb-0123456789abcdef.rmeta".to_string())
            ]
        );
    }

    #[test]
    fn crate_names_come_from_rustc_file_names() {
        assert_eq!(
            crate_of("libserde_json-0123456789abcdef.rlib"),
            Some("serde_json")
        );
        assert_eq!(crate_of("libserde-0123456789abcdef.rmeta"), Some("serde"));
        assert_eq!(crate_of("app-0123456789abcdef"), Some("app"));
        assert_eq!(crate_of("app-0123456789abcdef.d"), Some("app"));
        assert_eq!(crate_of("libm-0123456789abcdef.so"), Some("m"));
        assert_eq!(crate_of("object"), None);
        assert_eq!(crate_of("app-0123.d"), None);
        assert_eq!(crate_of("app-0123456789abcdef.o"), None);
        assert_eq!(crate_of("serde-0123456789abcdef.rlib"), None);
    }
}
