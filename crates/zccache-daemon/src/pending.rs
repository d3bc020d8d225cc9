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
