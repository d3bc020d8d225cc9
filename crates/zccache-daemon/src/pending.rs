//! Results that were replied to and are still being stored.
//!
//! A miss replies as soon as the compiler finishes; checking and storing happen afterwards. A
//! lookup of the same key waits for that store, so "compile, then compile again" is a hit as
//! it would be with a synchronous store, and `status` waits for all of them so its counters
//! are exact.

use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::time::Duration;
use zccache_core::Hash;

/// Longest wait for a store in flight; past it the caller just proceeds (a miss at worst).
const MAX_WAIT: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct PendingStores {
    by_key: Mutex<HashMap<Hash, usize>>,
    changed: Condvar,
}

impl PendingStores {
    pub fn begin(&self, key: &Hash) {
        *self.by_key.lock().entry(*key).or_default() += 1;
    }

    pub fn end(&self, key: &Hash) {
        let mut map = self.by_key.lock();
        if let Some(count) = map.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                map.remove(key);
            }
        }
        self.changed.notify_all();
    }

    /// Waits until no store for `key` is in flight.
    pub fn wait_for(&self, key: &Hash) {
        let mut map = self.by_key.lock();
        while map.contains_key(key) {
            if self.changed.wait_for(&mut map, MAX_WAIT).timed_out() {
                return;
            }
        }
    }

    /// Waits until no store at all is in flight.
    pub fn wait_all(&self) {
        let mut map = self.by_key.lock();
        while !map.is_empty() {
            if self.changed.wait_for(&mut map, MAX_WAIT).timed_out() {
                return;
            }
        }
    }
}

/// Bounds how many stores run at once. A 50-file call that misses queues 50 stores; run all
/// at once they compete with the next compiles for the cores and each holds its outputs and
/// shadow-check candidates in memory (measured: 61 MB daemon peak for 20 misses with 50 -I
/// directories, unbounded).
pub struct StoreSlots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl StoreSlots {
    pub fn new(slots: usize) -> StoreSlots {
        StoreSlots {
            free: Mutex::new(slots.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Runs `work` once a slot is free.
    pub fn run<T>(&self, work: impl FnOnce() -> T) -> T {
        {
            let mut free = self.free.lock();
            while *free == 0 {
                self.freed.wait(&mut free);
            }
            *free -= 1;
        }
        let result = work();
        *self.free.lock() += 1;
        self.freed.notify_one();
        result
    }
}
