//! Counters shown by `zccache status`.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the daemon has done since it started.
#[derive(Default)]
pub struct Stats {
    pub hits: AtomicU64,
    /// Hits served from an entry another checkout stored (see `worktree.rs`).
    pub worktree_hits: AtomicU64,
    pub misses: AtomicU64,
    /// Compiles whose result came from the remote tier (then stored locally), and compiles
    /// the remote was asked about and had nothing for.
    pub remote_hits: AtomicU64,
    pub remote_misses: AtomicU64,
    pub errors: AtomicU64,
    pub time_saved_ms: AtomicU64,
    /// Compiler queries answered from memory, and run.
    pub queries_answered: AtomicU64,
    pub queries_run: AtomicU64,
    non_cacheable: Reasons,
    not_stored: Reasons,
    worktree_fallbacks: Reasons,
}

impl Stats {
    pub fn hit(&self, saved_ms: u64) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.time_saved_ms.fetch_add(saved_ms, Ordering::Relaxed);
    }

    pub fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn non_cacheable(&self, reason: &str) {
        self.non_cacheable.count(reason);
    }

    pub fn not_stored(&self, reason: &str) {
        self.not_stored.count(reason);
    }

    pub fn remote(&self, hit: bool) {
        let counter = if hit {
            &self.remote_hits
        } else {
            &self.remote_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn worktree_hit(&self) {
        self.worktree_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// A call that asked for path remapping was keyed by its real paths, for `reason`.
    pub fn worktree_fallback(&self, reason: &str) {
        self.worktree_fallbacks.count(reason);
    }

    pub fn worktree_fallback_counts(&self) -> Vec<(String, u64)> {
        self.worktree_fallbacks.counts()
    }

    pub fn non_cacheable_counts(&self) -> Vec<(String, u64)> {
        self.non_cacheable.counts()
    }

    pub fn not_stored_counts(&self) -> Vec<(String, u64)> {
        self.not_stored.counts()
    }
}

/// Counts by reason, listed in the reasons' order.
#[derive(Default)]
struct Reasons(Mutex<BTreeMap<String, u64>>);

impl Reasons {
    fn count(&self, reason: &str) {
        *self.0.lock().entry(reason.to_string()).or_default() += 1;
    }

    fn counts(&self) -> Vec<(String, u64)> {
        self.0.lock().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}
