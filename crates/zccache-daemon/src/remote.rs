//! The remote tier behind the local store (see `zccache-remote`): consulted only when the
//! local store has no manifest for a key, written behind the reply after a result is stored.
//!
//! Remote keys: `v1/m/<key>` holds the key's manifest (bincode), `v1/b/<blob hash>` a blob. A
//! remote manifest's entries are checked against this machine's files first; only the one that
//! matches has its blobs fetched, each verified against its content hash, and it is stored
//! locally before it is served, so the next hit is local and the normal lookup (shadowing
//! checks included) decides.

use crate::pipeline::Call;
use crate::Daemon;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use zccache_artifact::{Manifest, ManifestEntry, Store};
use zccache_core::{hex, paths::absolute_cow, CacheRoot, Hash};
use zccache_remote::{Fetched, Remote, RemoteConfig};

fn manifest_key(key: &Hash) -> String {
    format!("v1/m/{}", hex(key))
}

fn blob_key(hash: &Hash) -> String {
    format!("v1/b/{}", hex(hash))
}

/// The tier `ZCCACHE_REMOTE` (or `remote = "…"` in `<root>/config.toml`) names, if any, and a
/// problem to report when it cannot be used.
pub(crate) fn open(root: &CacheRoot) -> (Option<Remote>, Option<String>) {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let url = env("ZCCACHE_REMOTE").or_else(|| {
        let text = std::fs::read_to_string(root.path().join("config.toml")).ok()?;
        text.lines().find_map(|line| {
            let (name, value) = line.split_once('=')?;
            (name.trim() == "remote").then(|| value.trim().trim_matches('"').to_string())
        })
    });
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        return (None, None);
    };
    let mode = env("ZCCACHE_REMOTE_MODE");
    match RemoteConfig::parse(&url, mode.as_deref(), &env).and_then(Remote::open) {
        Ok(remote) => {
            tracing::info!("remote tier: {}", remote.config());
            (Some(remote), None)
        }
        Err(e) => {
            tracing::warn!("remote tier not used: {e}");
            (None, Some(format!("remote tier not used: {e}")))
        }
    }
}

impl Daemon {
    /// After a local miss: the remote's manifest for `key`, if an entry of it matches this
    /// call's files; that entry and its blobs are stored locally first. Returns the local
    /// manifest then.
    pub(crate) fn import_remote(
        &self,
        store: &Store,
        key: &Hash,
        call: &Call,
    ) -> Option<Arc<Manifest>> {
        self.remote.as_ref()?;
        if self.import_remote_many(store, &[*key], call) == 0 {
            return None;
        }
        store.manifest(key).ok().flatten()
    }

    /// The keys of a multi-file call that have no local manifest, looked up on the remote side
    /// by side before the units are looked up (and served) one by one.
    pub(crate) fn prefetch_remote(&self, store: &Store, keys: &[Hash], call: &Call) {
        if self.remote.is_none() || keys.len() < 2 {
            return;
        }
        let absent: Vec<Hash> = keys
            .iter()
            .filter(|key| matches!(store.manifest(key), Ok(None)))
            .copied()
            .collect();
        if !absent.is_empty() {
            self.import_remote_many(store, &absent, call);
        }
    }

    /// Imports what the remote has for `keys`: their manifests in one round of lookups, then
    /// the blobs of every entry that matches this machine's files in another; each blob is
    /// checked against the hash and size its entry names and stored before the entry is.
    /// Returns how many keys got an entry.
    fn import_remote_many(&self, store: &Store, keys: &[Hash], call: &Call) -> usize {
        let Some(remote) = self.remote.as_ref() else {
            return 0;
        };
        let names: Vec<String> = keys.iter().map(manifest_key).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut matched: Vec<(Hash, ManifestEntry)> = Vec::new();
        let mut asked: HashSet<Hash> = HashSet::new();
        for (key, fetched) in keys.iter().zip(remote.get_many(&names)) {
            if matches!(fetched, Fetched::Hit(_) | Fetched::Miss) {
                asked.insert(*key);
            }
            let Fetched::Hit(raw) = fetched else {
                continue;
            };
            let manifest: Manifest = match bincode::deserialize(&raw) {
                Ok(manifest) => manifest,
                Err(e) => {
                    tracing::warn!("remote manifest {}: {e}; ignored", hex(key));
                    continue;
                }
            };
            if let Some(entry) = manifest
                .entries
                .into_iter()
                .find(|entry| self.inputs_match(entry, call))
            {
                matched.push((*key, entry));
            }
        }
        let mut wanted: Vec<(Hash, u64)> = matched
            .iter()
            .flat_map(|(_, entry)| entry.result.outputs.iter())
            .map(|output| (output.blob.hash, output.blob.size))
            .filter(|(hash, _)| !store.has_blob(hash))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let blob_names: Vec<String> = wanted.iter().map(|(hash, _)| blob_key(hash)).collect();
        let blob_names: Vec<&str> = blob_names.iter().map(String::as_str).collect();
        let mut present: HashSet<Hash> = HashSet::new();
        for ((hash, size), fetched) in wanted.iter().zip(remote.get_many(&blob_names)) {
            let Fetched::Hit(bytes) = fetched else {
                continue;
            };
            // The frame was checked; the content must also be the blob the entry names.
            if bytes.len() as u64 != *size || *blake3::hash(&bytes).as_bytes() != *hash {
                tracing::warn!(
                    "remote blob {} is not what its entry names; ignored",
                    hex(hash)
                );
                continue;
            }
            if store.put_bytes(&bytes).is_ok() {
                present.insert(*hash);
            }
        }
        let mut imported = HashSet::new();
        for (key, entry) in matched {
            let complete = entry
                .result
                .outputs
                .iter()
                .all(|o| present.contains(&o.blob.hash) || store.has_blob(&o.blob.hash));
            if complete && store.add_entry(&key, entry).is_ok() {
                tracing::debug!("remote hit for {}: stored locally", hex(&key));
                imported.insert(key);
            }
        }
        // Counted per compile: a hit imported, a miss when the remote answered for the key
        // (nothing there, or nothing that matches this machine's files).
        for key in keys {
            let hit = imported.contains(key);
            if hit || asked.contains(key) {
                self.stats.remote(hit);
                if let Some(session) = &call.session {
                    session.stats.remote(hit);
                }
            }
        }
        imported.len()
    }

    /// Every dependency of `entry` has, on this machine, the content it was stored with, and
    /// every variable it read the same value. (Shadowing checks follow in the normal lookup.)
    fn inputs_match(&self, entry: &ManifestEntry, call: &Call) -> bool {
        for dep in &entry.deps {
            let resolved;
            let stored = if crate::worktree::is_marked_path(&dep.path) {
                let Some(worktree) = call.worktree() else {
                    return false;
                };
                resolved = worktree.resolve_path(&dep.path);
                resolved.as_os_str()
            } else {
                zccache_platform::os_str::os_str_from_bytes(&dep.path)
            };
            let path = absolute_cow(&call.cwd, Path::new(stored));
            match call.digest(&self.fs, &path) {
                Ok(digest) if digest.hash == dep.hash => {}
                _ => return false,
            }
        }
        crate::pipeline::entry_env_holds(entry, call).is_ok()
    }

    /// After a result is stored locally: its blobs and the key's manifest, queued for upload.
    pub(crate) fn upload_remote(&self, store: &Store, key: &Hash, blobs: Vec<(Hash, Vec<u8>)>) {
        let Some(remote) = self.remote.as_ref().filter(|r| r.config().mode.writes()) else {
            return;
        };
        for (hash, bytes) in blobs {
            remote.put_behind(blob_key(&hash), &bytes);
        }
        if let Ok(Some(manifest)) = store.manifest(key) {
            if let Ok(raw) = bincode::serialize(&*manifest) {
                remote.put_merged_behind(manifest_key(key), &raw, Box::new(merge_manifests));
            }
        }
    }

    /// Whether uploads should be collected for the store worker.
    pub(crate) fn remote_writes(&self) -> bool {
        self.remote
            .as_ref()
            .is_some_and(|r| r.config().mode.writes())
    }
}

/// This machine's manifest for a key with the remote's: its own entries first (the newest
/// first, as stored), then the remote's others (entries of other machines, for other header
/// contents), within the local limit per key.
fn merge_manifests(ours: &[u8], theirs: &[u8]) -> Option<Vec<u8>> {
    let mut merged: Manifest = bincode::deserialize(ours).ok()?;
    let theirs: Manifest = bincode::deserialize(theirs).ok()?;
    for entry in theirs.entries {
        if merged.entries.len() >= zccache_artifact::MAX_ENTRIES_PER_KEY {
            break;
        }
        let known = merged
            .entries
            .iter()
            .any(|own| own.deps == entry.deps && own.env == entry.env);
        if !known {
            merged.entries.push(entry);
        }
    }
    bincode::serialize(&merged).ok()
}
