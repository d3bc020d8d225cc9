//! Timeouts for blocking reads and writes on Windows named pipes.
//!
//! A pipe opened for blocking I/O takes no timeout of its own. Each bounded operation is
//! registered here with its pipe handle and deadline; one watchdog thread per process cancels
//! the operations still pending at their deadline (`CancelIoEx`, which reaches a blocking
//! `ReadFile` or `WriteFile` on another thread), and the operation then reports `TimedOut`.
//! Registering costs a lock and a wake-up, no thread per operation.

use std::os::windows::io::RawHandle;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

struct Pending {
    id: u64,
    /// The handle as an integer: raw handles are pointers, which are not `Send`.
    handle: usize,
    deadline: Instant,
    fired: Arc<AtomicBool>,
}

struct Watchdog {
    pending: Mutex<Vec<Pending>>,
    wake: Condvar,
    next_id: AtomicU64,
}

static WATCHDOG: LazyLock<Arc<Watchdog>> = LazyLock::new(|| {
    let watchdog = Arc::new(Watchdog {
        pending: Mutex::new(Vec::new()),
        wake: Condvar::new(),
        next_id: AtomicU64::new(0),
    });
    let thread_side = watchdog.clone();
    std::thread::Builder::new()
        .name("zccache-pipe-deadlines".into())
        .spawn(move || thread_side.run())
        .expect("starting the pipe deadline thread");
    watchdog
});

impl Watchdog {
    fn run(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            pending.retain(|op| {
                if op.deadline > now {
                    return true;
                }
                op.fired.store(true, Ordering::SeqCst);
                // SAFETY: the handle belongs to a stream whose operation is still registered,
                // so it is open (the guard unregisters before the stream can be dropped).
                unsafe {
                    windows_sys::Win32::System::IO::CancelIoEx(
                        op.handle as RawHandle,
                        std::ptr::null(),
                    )
                };
                false
            });
            pending = match pending.iter().map(|op| op.deadline).min() {
                None => self.wake.wait(pending).unwrap_or_else(|e| e.into_inner()),
                Some(next) => {
                    let wait = next.saturating_duration_since(Instant::now());
                    self.wake
                        .wait_timeout(pending, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

/// An operation on `handle` bounded by `timeout`, from now until the guard is dropped.
pub(crate) struct Deadline {
    id: u64,
    fired: Arc<AtomicBool>,
}

impl Deadline {
    pub(crate) fn arm(handle: RawHandle, timeout: Duration) -> Deadline {
        let watchdog = &*WATCHDOG;
        let id = watchdog.next_id.fetch_add(1, Ordering::Relaxed);
        let fired = Arc::new(AtomicBool::new(false));
        watchdog
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Pending {
                id,
                handle: handle as usize,
                deadline: Instant::now() + timeout,
                fired: fired.clone(),
            });
        watchdog.wake.notify_one();
        Deadline { id, fired }
    }

    /// Whether the deadline passed and the operation was cancelled.
    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        WATCHDOG
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|op| op.id != self.id);
    }
}
