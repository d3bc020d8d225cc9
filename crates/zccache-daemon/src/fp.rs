//! `zccache fp check` answered by the daemon: the file list and the digests come from the
//! watcher's state instead of a scan (see `zccache_ci::fp` for the check itself).
//!
//! The daemon keeps, per selection, the files the last scan found and the signature of every
//! directory it read, each taken *before* that scan: while the watcher vouches that no name in
//! any of those directories changed, the list still holds and no directory is read. Files'
//! digests come from the file-state cache, which skips `stat` and hashing for files the
//! watcher vouches for. A list whose directories changed (or that was taken without
//! signatures from before it) is scanned again. The check is then the same as without the
//! daemon, so both give the same answers.

use crate::Daemon;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use zccache_ci::fp::{self, CacheType, Observed, Selection};
use zccache_fscache::StatSig;
use zccache_protocol::{FpCheckRequest, Response};

/// Selections remembered at most; past it the oldest half is forgotten.
const MAX_TREES: usize = 256;

/// A selection's files and the directories they were listed from.
struct Tree {
    files: Vec<String>,
    /// Every directory the scan read, with its signature from before the scan; `None` when
    /// the scan's directories were not known before it (the next check scans again).
    dirs: Option<Vec<(PathBuf, StatSig)>>,
    /// The directories alone, to sign before the next scan.
    read: Vec<PathBuf>,
    used: u64,
}

/// A selection: root, include globs, extensions, excludes.
type TreeKey = (PathBuf, Vec<String>, Vec<String>, Vec<String>);

#[derive(Default)]
pub(crate) struct FpTrees {
    trees: Mutex<HashMap<TreeKey, Tree>>,
    uses: std::sync::atomic::AtomicU64,
}

impl Daemon {
    pub(crate) fn fp_check(&self, request: &FpCheckRequest) -> Response {
        let Some(cache_type) = CacheType::parse(&request.cache_type) else {
            return Response::Error(format!(
                "--cache-type {:?}: expected hash or two-layer",
                request.cache_type
            ));
        };
        let selection = Selection {
            root: PathBuf::from(zccache_platform::os_str::os_str_from_bytes(&request.root)),
            include: request.include.clone(),
            ext: request.ext.clone(),
            exclude: request.exclude.clone(),
        };
        let cache_file = PathBuf::from(zccache_platform::os_str::os_str_from_bytes(
            &request.cache_file,
        ));
        let synced = self.fs.sync();
        let key = (
            selection.root.clone(),
            selection.include.clone(),
            selection.ext.clone(),
            selection.exclude.clone(),
        );
        let use_count = self
            .fp_trees
            .uses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The list as the watcher keeps it, if every directory it came from is unchanged.
        let (known, read) = {
            let trees = self.fp_trees.trees.lock();
            match trees.get(&key) {
                Some(tree) => {
                    let still = tree.dirs.as_ref().is_some_and(|dirs| {
                        dirs.iter().all(|(dir, sig)| {
                            self.fs
                                .dir_signature(dir, synced)
                                .is_ok_and(|now| now == *sig)
                        })
                    });
                    (still.then(|| tree.files.clone()), tree.read.clone())
                }
                None => (None, Vec::new()),
            }
        };
        let from_watch = known.is_some();
        let files = match known {
            Some(files) => files,
            None => {
                // Signatures first, then the scan: a name added after a signature was taken
                // changes it, so the list is never trusted past a change it missed.
                let before: Vec<(PathBuf, StatSig)> = read
                    .iter()
                    .filter_map(|dir| {
                        self.fs
                            .dir_signature(dir, synced)
                            .ok()
                            .map(|sig| (dir.clone(), sig))
                    })
                    .collect();
                let (files, dirs) = match fp::scan_tree(&selection) {
                    Ok(found) => found,
                    Err(e) => return Response::Error(e.to_string()),
                };
                let signed = before.len() == dirs.len()
                    && before.iter().zip(&dirs).all(|((a, _), b)| a == b);
                let mut trees = self.fp_trees.trees.lock();
                if trees.len() >= MAX_TREES {
                    let mut ages: Vec<u64> = trees.values().map(|t| t.used).collect();
                    ages.sort_unstable();
                    let cut = ages[ages.len() / 2];
                    trees.retain(|_, t| t.used > cut);
                }
                trees.insert(
                    key.clone(),
                    Tree {
                        files: files.clone(),
                        dirs: signed.then_some(before),
                        read: dirs,
                        used: use_count,
                    },
                );
                files
            }
        };
        if let Some(tree) = self.fp_trees.trees.lock().get_mut(&key) {
            tree.used = use_count;
        }
        let digest = |path: &Path| -> std::io::Result<Observed> {
            match cache_type {
                // The user asked for every file to be read.
                CacheType::Hash => {
                    let sig = StatSig::of(path)?;
                    let (hash, _) = zccache_fscache::hash_file(path)?;
                    Ok(Observed {
                        sig,
                        hash: zccache_core::hex(&hash),
                        fresh: sig.touched_since(zccache_fscache::FileClock::now()),
                    })
                }
                CacheType::TwoLayer => {
                    let digest = self.fs.digest_synced(path, synced)?;
                    Ok(Observed {
                        sig: digest.sig,
                        hash: zccache_core::hex(&digest.hash),
                        fresh: !digest.trusted,
                    })
                }
            }
        };
        match fp::check_files(&cache_file, cache_type, &selection, files, Some(&digest)) {
            Ok(decision) => Response::FpChecked {
                changed: decision.changed,
                listed_from_watch: from_watch,
            },
            Err(e) => Response::Error(e.to_string()),
        }
    }
}
