//! Results that were replied to and are still being stored.
//!
//! A miss replies as soon as the compiler finishes; checking and storing happen afterwards. A
//! lookup of the same key waits for that store, so "compile, then compile again" is a hit as
//! it would be with a synchronous store, and `status` waits for all of them so its counters
//! are exact.

use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
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

    /// Whether a store for `key` is in flight.
    pub fn contains(&self, key: &Hash) -> bool {
        self.by_key.lock().contains_key(key)
    }

    /// Waits until no store for `key` is in flight.
    pub fn wait_for(&self, key: &Hash) {
        let mut map = self.by_key.lock();
        if map.contains_key(key) {
            // That store may be this thread's own, its worker not yet woken.
            crate::after_reply::release_held();
        }
        while map.contains_key(key) {
            if self.changed.wait_for(&mut map, MAX_WAIT).timed_out() {
                return;
            }
        }
    }

    /// Waits until no store at all is in flight.
    pub fn wait_all(&self) {
        crate::after_reply::release_held();
        let mut map = self.by_key.lock();
        while !map.is_empty() {
            if self.changed.wait_for(&mut map, MAX_WAIT).timed_out() {
                return;
            }
        }
    }
}

/// The threads that check and store results after their reply. A miss hands its result to a
/// queue instead of starting a thread of its own: starting one (stack, clone, its first run on
/// the other core) was ~50-100 us on the reply path of every miss. The number of workers
/// bounds how many stores run at once. A 50-file call that misses queues 50 stores; run all at
/// once they compete with the next compiles for the cores and each holds its outputs and
/// shadow-check candidates in memory (measured: 61 MB daemon peak for 20 misses with 50 -I
/// directories, unbounded).
pub struct StoreQueue {
    state: Mutex<QueueState>,
    queued: Condvar,
    workers: usize,
}

/// Work for a store worker.
pub type StoreWork = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<StoreWork>,
    /// Workers started so far (they are started on first use, and live as long as the daemon).
    started: usize,
}

impl StoreQueue {
    pub fn new(workers: usize) -> Arc<StoreQueue> {
        Arc::new(StoreQueue {
            state: Mutex::default(),
            queued: Condvar::new(),
            workers: workers.max(1),
        })
    }

    /// Queues `work` for the next free worker. Gives it back when no worker could be started.
    pub fn push(self: &Arc<Self>, work: StoreWork) -> Result<(), StoreWork> {
        let mut state = self.state.lock();
        while state.started < self.workers {
            let queue = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("zccache-store".into())
                .spawn(move || queue.work());
            if spawned.is_err() {
                break;
            }
            state.started += 1;
        }
        if state.started == 0 {
            return Err(work);
        }
        state.jobs.push_back(work);
        drop(state);
        let queue = Arc::clone(self);
        crate::after_reply::wake(move || {
            queue.queued.notify_one();
        });
        Ok(())
    }

    fn work(&self) {
        loop {
            let job = {
                let mut state = self.state.lock();
                loop {
                    if let Some(job) = state.jobs.pop_front() {
                        break job;
                    }
                    self.queued.wait(&mut state);
                }
            };
            // A store that panics loses its result, not the worker.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    #[test]
    fn every_queued_store_runs_at_most_workers_at_once() {
        let queue = StoreQueue::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (done, finished) = mpsc::channel();
        for n in 0..20 {
            let (running, most, done) = (running.clone(), most.clone(), done.clone());
            let work: StoreWork = Box::new(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
                running.fetch_sub(1, Ordering::SeqCst);
                done.send(n).unwrap();
            });
            assert!(queue.push(work).is_ok());
        }
        let mut ran: Vec<i32> = (0..20)
            .map(|_| finished.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        ran.sort();
        assert_eq!(ran, (0..20).collect::<Vec<_>>());
        assert!(
            most.load(Ordering::SeqCst) <= 2,
            "more than 2 stores ran at once"
        );
        assert_eq!(queue.state.lock().started, 2);
    }

    #[test]
    fn a_store_that_panics_does_not_stop_its_worker() {
        let queue = StoreQueue::new(1);
        assert!(queue.push(Box::new(|| panic!("store failed"))).is_ok());
        let (done, finished) = mpsc::channel();
        assert!(queue.push(Box::new(move || done.send(()).unwrap())).is_ok());
        assert!(finished.recv_timeout(Duration::from_secs(10)).is_ok());
    }
}
