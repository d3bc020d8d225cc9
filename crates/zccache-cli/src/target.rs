//! `zccache warm` and `zccache target-snapshot save|restore`: cargo's target directory carried
//! between CI runs (see `zccache_ci::snapshot` and `zccache_daemon::warm`). Neither needs the
//! daemon; both stop it if it holds the cache.

use crate::ci_args::SnapshotSaveArgs;
use crate::client::fail;
use crate::client::Endpoint;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use zccache_ci::snapshot::{self, Mode, SaveOptions, Saved};

/// The crate names of a lockfile's packages, `-` as `_` (as rustc names them).
fn lockfile_crates(lockfile: &Path) -> Result<HashSet<String>, String> {
    let text = std::fs::read_to_string(lockfile).map_err(|e| {
        format!(
            "{}: {e} (warm restores only the lockfile's crates)",
            lockfile.display()
        )
    })?;
    Ok(text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("name = \""))
        .filter_map(|rest| rest.strip_suffix('"'))
        .map(|name| name.replace('-', "_"))
        .collect())
}

/// The directory cargo gives a profile's outputs.
fn profile_dir(profile: &str) -> &str {
    match profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

pub fn warm(
    endpoint: &Endpoint,
    target_dir: &Path,
    profile: &str,
    target: Option<&str>,
    lockfile: &Path,
) -> i32 {
    let lockfile = absolute(lockfile);
    let crates = match lockfile_crates(&lockfile) {
        Ok(crates) => crates,
        Err(e) => return fail(e),
    };
    let target_dir = absolute(target_dir);
    let mut deps = target_dir.clone();
    if let Some(triple) = target {
        deps.push(triple);
    }
    deps.push(profile_dir(profile));
    deps.push("deps");
    if endpoint.daemon_holds_lock() {
        endpoint.stop_daemon();
    }
    let time = snapshot::restored_time(&target_dir);
    match zccache_daemon::warm::warm(&endpoint.root, &deps, &crates, time) {
        Ok(report) => {
            println!(
                "zccache warm: {} files for {} crates into {} ({} results already in place, {} left out: built from other sources)",
                report.delivered,
                report.crates,
                deps.display(),
                report.present,
                report.stale
            );
            0
        }
        Err(e) => fail(format!("warm: {e}")),
    }
}

pub fn snapshot_save(args: &SnapshotSaveArgs) -> i32 {
    let Some(mode) = Mode::parse(&args.mode) else {
        eprintln!("zccache: --mode {:?}: expected hot or full", args.mode);
        return 2;
    };
    let Some(max_size) = zccache_core::parse_size(&args.max_size) else {
        eprintln!(
            "zccache: --max-size {:?}: expected a size such as 2GiB (0: no limit)",
            args.max_size
        );
        return 2;
    };
    let fail_when_large = match args.too_large.as_str() {
        "skip" => false,
        "fail" => true,
        other => {
            eprintln!("zccache: --too-large {other:?}: expected skip or fail");
            return 2;
        }
    };
    if !args.target_dir.is_dir() {
        println!(
            "zccache target-snapshot: no {} to save",
            args.target_dir.display()
        );
        return 0;
    }
    let options = SaveOptions {
        target_dir: absolute(&args.target_dir),
        workspace: absolute(&args.workspace),
        mode,
        max_size,
        prune_incremental: args.prune_incremental,
        prune_build_script_out: args.prune_build_script_out,
    };
    match snapshot::save(&options, &args.output) {
        Ok(Saved::Written {
            files,
            bytes,
            archive_bytes,
            left_out,
        }) => {
            println!(
                "zccache target-snapshot: {files} files ({:.1} MB, archive {:.1} MB) saved to {}; {left_out} files not used in this job left out",
                bytes as f64 / 1e6,
                archive_bytes as f64 / 1e6,
                args.output.display()
            );
            0
        }
        Ok(Saved::TooLarge { bytes, max }) => {
            let _ = std::fs::remove_file(&args.output);
            let message = format!(
                "target snapshot of {:.1} MB exceeds target-snapshot-max-size ({:.1} MB)",
                bytes as f64 / 1e6,
                max as f64 / 1e6
            );
            if fail_when_large {
                fail(message)
            } else {
                println!("zccache target-snapshot: {message}; not saved");
                0
            }
        }
        Err(e) => fail(e),
    }
}

pub fn snapshot_restore(archive: &Path, target_dir: &Path, workspace: &Path) -> i32 {
    match snapshot::restore(archive, &absolute(target_dir), &absolute(workspace)) {
        Ok(restored) => {
            println!(
                "zccache target-snapshot: restored {} files into {}; {} workspace files unchanged, {} changed since the snapshot",
                restored.files,
                target_dir.display(),
                restored.unchanged,
                restored.changed
            );
            0
        }
        Err(e) => fail(e),
    }
}
