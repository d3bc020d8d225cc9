//! The manifests kept in memory for the hit path, within a byte budget.
//!
//! A manifest's size varies by two orders of magnitude (a C file with two headers: ~2 KB; a
//! C++ file with hundreds: ~50 KB), so a count alone did not bound the daemon's memory: 16 384
//! C++ manifests would have been most of a gigabyte. Past the budget some are dropped (a quarter
//! of the budget at once, so eviction runs rarely; see [`ManifestMemo::evict`] for which); a
//! dropped manifest is read back from the index when it is needed again, which costs a read,
//! never a result.

use crate::store::{Manifest, ManifestEntry};
use dashmap::DashMap;
use std::mem::size_of;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use zccache_core::Hash;

/// Bytes of manifests kept in memory unless the daemon says otherwise.
pub const DEFAULT_MANIFEST_BUDGET: usize = 16 << 20;

/// Manifests kept whatever their size: bounds the map itself.
const MAX_MANIFESTS: usize = 65_536;

/// What the memo holds, for `zccache status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoUsage {
    pub items: usize,
    pub bytes: usize,
    pub budget: usize,
    /// Items dropped to stay within the budget since the daemon started.
    pub dropped: u64,
}

struct Held {
    manifest: Arc<Manifest>,
    bytes: usize,
    /// The memo's clock when it was last used.
    used: AtomicU64,
}

pub(crate) struct ManifestMemo {
    held: DashMap<Hash, Held>,
    bytes: AtomicUsize,
    budget: AtomicUsize,
    clock: AtomicU64,
    dropped: AtomicU64,
    /// One eviction at a time; others go on (the budget is a soft bound for a moment).
    evicting: parking_lot::Mutex<()>,
}

impl ManifestMemo {
    pub(crate) fn new(budget: usize) -> ManifestMemo {
        ManifestMemo {
            held: DashMap::new(),
            bytes: AtomicUsize::new(0),
            budget: AtomicUsize::new(budget),
            clock: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            evicting: parking_lot::Mutex::new(()),
        }
    }

    pub(crate) fn get(&self, key: &Hash) -> Option<Arc<Manifest>> {
        let found = self.held.get(key)?;
        found.used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        Some(found.manifest.clone())
    }

    pub(crate) fn insert(&self, key: Hash, manifest: Arc<Manifest>) {
        let bytes = manifest_bytes(&manifest);
        let held = Held {
            manifest,
            bytes,
            used: AtomicU64::new(self.clock.fetch_add(1, Ordering::Relaxed)),
        };
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(old) = self.held.insert(key, held) {
            self.bytes.fetch_sub(old.bytes, Ordering::Relaxed);
        }
        let budget = self.budget.load(Ordering::Relaxed);
        if self.bytes.load(Ordering::Relaxed) > budget || self.held.len() > MAX_MANIFESTS {
            self.evict(budget / 4 * 3, MAX_MANIFESTS / 4 * 3);
        }
    }

    pub(crate) fn remove(&self, key: &Hash) {
        if let Some((_, old)) = self.held.remove(key) {
            self.bytes.fetch_sub(old.bytes, Ordering::Relaxed);
        }
    }

    pub(crate) fn clear(&self) {
        self.held.retain(|_, held| {
            self.bytes.fetch_sub(held.bytes, Ordering::Relaxed);
            false
        });
    }

    pub(crate) fn set_budget(&self, budget: usize) {
        self.budget.store(budget, Ordering::Relaxed);
        if self.bytes.load(Ordering::Relaxed) > budget {
            self.evict(budget / 4 * 3, MAX_MANIFESTS / 4 * 3);
        }
    }

    pub(crate) fn usage(&self) -> MemoUsage {
        MemoUsage {
            items: self.held.len(),
            bytes: self.bytes.load(Ordering::Relaxed),
            budget: self.budget.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// Drops manifests until at most `bytes` and `count` are held: never the most recently
    /// used quarter, and among the others in the order of their keys, which is random. Least
    /// recently used first would keep nothing of a build larger than the budget: each rebuild
    /// uses its entries in the same order, so the one dropped is always the next one needed.
    /// Dropped at random, a share of them as large as the budget still hits in memory.
    fn evict(&self, bytes: usize, count: usize) {
        let Some(_one) = self.evicting.try_lock() else {
            return;
        };
        let mut by_age: Vec<(u64, Hash)> = self
            .held
            .iter()
            .map(|h| (h.used.load(Ordering::Relaxed), *h.key()))
            .collect();
        by_age.sort_unstable();
        let recent = by_age.len() / 4;
        let mut older: Vec<Hash> = by_age[..by_age.len() - recent]
            .iter()
            .map(|(_, key)| *key)
            .collect();
        older.sort_unstable();
        let mut left = by_age.len();
        for key in older {
            if self.bytes.load(Ordering::Relaxed) <= bytes && left <= count {
                break;
            }
            self.remove(&key);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            left -= 1;
        }
    }
}

/// About how much memory `manifest` holds: its allocations, each rounded up as an allocator
/// does, and the memo's own share of a map slot.
pub fn manifest_bytes(manifest: &Manifest) -> usize {
    fn alloc(len: usize) -> usize {
        if len == 0 {
            0
        } else {
            (len + 8).next_multiple_of(16)
        }
    }
    fn bytes(v: &[u8]) -> usize {
        alloc(v.len())
    }
    fn entry_bytes(e: &ManifestEntry) -> usize {
        let deps: usize = e.deps.iter().map(|d| bytes(&d.path)).sum::<usize>()
            + alloc(e.deps.len() * size_of::<crate::DepDigest>());
        let env: usize = e
            .env
            .iter()
            .map(|v| bytes(&v.name) + v.value.as_deref().map_or(0, bytes))
            .sum::<usize>()
            + alloc(e.env.len() * size_of::<crate::EnvDep>());
        let shadow = e.shadow.as_ref().map_or(0, |s| {
            let list = |l: &[Vec<u8>]| {
                l.iter().map(|v| bytes(v)).sum::<usize>() + alloc(std::mem::size_of_val(l))
            };
            bytes(&s.cwd)
                + list(&s.user)
                + list(&s.system)
                + list(&s.existing)
                + s.watched.iter().map(|w| bytes(&w.path)).sum::<usize>()
                + alloc(s.watched.len() * size_of::<crate::WatchedDir>())
        });
        let result = &e.result;
        let outputs: usize = result
            .outputs
            .iter()
            .map(|o| bytes(o.role.as_bytes()))
            .sum::<usize>()
            + alloc(result.outputs.len() * size_of::<crate::StoredOutput>());
        deps + env + shadow + outputs + bytes(&result.stdout) + bytes(&result.stderr)
    }
    let entries: usize = manifest.entries.iter().map(entry_bytes).sum();
    entries
        + alloc(manifest.entries.len() * size_of::<ManifestEntry>())
        + alloc(size_of::<Manifest>() + 16)
        + size_of::<(Hash, Held)>()
}
