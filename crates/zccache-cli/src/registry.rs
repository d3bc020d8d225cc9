//! `zccache cargo-registry save|restore|hash|clean`: the cargo registry archive a CI runner
//! restores (see `zccache_ci::cargo_registry`). Needs no daemon.

use std::path::{Path, PathBuf};
use zccache_ci::cargo_registry::{self, ARCHIVE_DIR};

/// The cargo home: the flag, else `$CARGO_HOME`, else `~/.cargo`.
fn cargo_home(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| {
        std::env::var_os("CARGO_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
}

use crate::client::fail;

pub fn save(cache_dir: &Path, key: &str, home: Option<PathBuf>, output: Option<PathBuf>) -> i32 {
    let Some(home) = cargo_home(home) else {
        return fail("no cargo home: pass --cargo-home or set CARGO_HOME or HOME");
    };
    let archive = match output {
        Some(output) => output,
        None => match cargo_registry::archive_for_key(cache_dir, key) {
            Ok(archive) => archive,
            Err(e) => return fail(e),
        },
    };
    match cargo_registry::save(&home, &archive) {
        Ok(saved) => {
            println!(
                "saved cargo registry to {} ({:.1} MB, {} entries)",
                archive.display(),
                saved.bytes as f64 / 1e6,
                saved.entries
            );
            0
        }
        Err(e) => fail(e),
    }
}

pub fn restore(cache_dir: &Path, key: &str, home: Option<PathBuf>) -> i32 {
    let Some(home) = cargo_home(home) else {
        return fail("no cargo home: pass --cargo-home or set CARGO_HOME or HOME");
    };
    let archive = match cargo_registry::archive_for_key(cache_dir, key) {
        Ok(archive) => archive,
        Err(e) => return fail(e),
    };
    if !archive.is_file() {
        return fail(cargo_registry::Error::NoArchive {
            key: key.to_string(),
            path: archive,
        });
    }
    match cargo_registry::restore(&archive, &home) {
        Ok(entries) => {
            println!(
                "restored cargo registry from {} ({entries} entries)",
                archive.display()
            );
            0
        }
        Err(e) => fail(e),
    }
}

pub fn hash(lockfile: &Path) -> i32 {
    match cargo_registry::lockfile_hash(lockfile) {
        Ok(hash) => {
            println!("{hash}");
            0
        }
        Err(e) => fail(e),
    }
}

pub fn clean(cache_dir: &Path) -> i32 {
    match cargo_registry::clean(&cache_dir.join(ARCHIVE_DIR)) {
        Ok(removed) => {
            println!("removed {removed} cached registry archive(s)");
            0
        }
        Err(e) => fail(e),
    }
}
