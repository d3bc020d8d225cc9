//! `zccache gha-cache status|save|restore`: GitHub Actions' cache without `actions/cache` (see
//! `zccache_ci::gha`). `--path` entries are interchangeable with `actions/cache`'s for the same
//! paths; `--cache` is zccache's cache directory, saved incrementally (a pack and a manifest).
//!
//! Exit codes: `save` 0 when saved, already saved or nothing new, 1 when not (reported);
//! `restore` 0 when something was restored (the key restored is printed on stdout), 1 when
//! not. A caller in CI goes on building either way.

use crate::client::Endpoint;
use zccache_ci::gha::{self, layer, CacheService, GhaError, Runtime, Saved};

fn service() -> Result<CacheService, GhaError> {
    Runtime::from_env().map(CacheService::new)
}

fn cwd() -> std::path::PathBuf {
    std::env::current_dir().unwrap_or_else(|_| ".".into())
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub fn status() -> i32 {
    match Runtime::from_env() {
        Ok(runtime) => println!(
            "GHA cache: available (cache service v2 at {})",
            runtime.results_url
        ),
        Err(e) => println!("GHA cache: not available ({e})"),
    }
    0
}

/// The daemon must not hold the index while its directory is packed or replaced.
fn stop_daemon(endpoint: &Endpoint) {
    if endpoint.daemon_holds_lock() {
        endpoint.stop_daemon();
    }
}

pub fn save(endpoint: &Endpoint, key: &str, paths: &[String], cache: bool) -> i32 {
    let service = match service() {
        Ok(service) => service,
        Err(e) => return report("save", key, e),
    };
    if cache {
        stop_daemon(endpoint);
        return match layer::save(&service, endpoint.root.path(), key) {
            Ok(layer::LayerSaved::NothingNew) => {
                eprintln!(
                    "zccache gha-cache: nothing new since the restored cache; {key} not saved"
                );
                0
            }
            Ok(layer::LayerSaved::Exists) => {
                eprintln!("zccache gha-cache: {key} already saved");
                0
            }
            Ok(layer::LayerSaved::Uploaded {
                entries,
                bytes,
                new_blobs,
                chain,
            }) => {
                eprintln!(
                    "zccache gha-cache: saved {key}: {new_blobs} new blobs, {} in {entries} entries (chain of {chain} packs)",
                    mb(bytes)
                );
                0
            }
            Err(e) => report("save", key, e),
        };
    }
    match gha::save(&service, key, paths, &cwd()) {
        Ok(Saved::Uploaded { bytes, entries }) => {
            eprintln!(
                "zccache gha-cache: saved {key}: {} ({entries} files and directories)",
                mb(bytes)
            );
            0
        }
        Ok(Saved::Exists) => {
            eprintln!("zccache gha-cache: {key} already saved");
            0
        }
        Err(e) => report("save", key, e),
    }
}

pub fn restore(
    endpoint: &Endpoint,
    key: &str,
    restore_keys: &[String],
    paths: &[String],
    cache: bool,
) -> i32 {
    let service = match service() {
        Ok(service) => service,
        Err(e) => return report("restore", key, e),
    };
    let restored = if cache {
        stop_daemon(endpoint);
        layer::restore(&service, endpoint.root.path(), key, restore_keys).map(|r| {
            r.map(|r| {
                eprintln!(
                    "zccache gha-cache: restored {} ({} blobs, {} packs of {}, {})",
                    r.matched_key,
                    r.blobs,
                    r.packs,
                    r.chain,
                    mb(r.bytes)
                );
                r.matched_key
            })
        })
    } else {
        gha::restore(&service, key, restore_keys, paths, &cwd()).map(|r| {
            r.map(|(matched, bytes)| {
                eprintln!("zccache gha-cache: restored {matched} ({})", mb(bytes));
                matched
            })
        })
    };
    match restored {
        Ok(Some(matched)) => {
            println!("{matched}");
            0
        }
        Ok(None) => {
            eprintln!("zccache gha-cache: no cache found for {key}");
            1
        }
        Err(e) => report("restore", key, e),
    }
}

/// Reports a failure that must not fail the job, and gives the exit code 1.
fn report(what: &str, key: &str, error: GhaError) -> i32 {
    eprintln!("zccache gha-cache: {what} {key}: {error}; continuing without it");
    1
}
