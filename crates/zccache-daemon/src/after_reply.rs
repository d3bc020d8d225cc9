//! Wakeups of background threads (store workers, the journal writer) that a request hands
//! work to, held back until its reply is sent.
//!
//! A miss queues its result for storing and a journal record before it replies. Woken at
//! once, those threads take a CPU just when the reply, the client's exit and the build's next
//! compile need one: on the reference 2-CPU VM a request thread woken behind a running store
//! worker waited ~150 us for it. Held until the reply is out, their work runs beside the next
//! compile instead.

use std::cell::RefCell;

type Wake = Box<dyn FnOnce()>;

thread_local! {
    /// The wakeups this thread holds, while it holds them.
    static HELD: RefCell<Option<Vec<Wake>>> = const { RefCell::new(None) };
}

/// Holds this thread's wakeups until the guard is dropped (after the reply).
pub(crate) fn hold_wakes() -> HeldWakes {
    HELD.with_borrow_mut(|held| {
        held.get_or_insert_with(Vec::new);
    });
    HeldWakes(())
}

/// Runs `wake` now, or when this thread's held wakeups are released.
pub(crate) fn wake(wake: impl FnOnce() + 'static) {
    let wake = Box::new(wake);
    let run_now = HELD.with_borrow_mut(|held| match held {
        Some(waiting) => {
            waiting.push(wake);
            None
        }
        None => Some(wake),
    });
    if let Some(wake) = run_now {
        wake();
    }
}

/// Runs the wakeups held so far and keeps holding later ones. A thread about to wait for the
/// work it handed off calls this first, so that it never waits for a thread it has not woken.
pub(crate) fn release_held() {
    run(HELD.with_borrow_mut(|held| held.as_mut().map(std::mem::take)));
}

fn run(waiting: Option<Vec<Wake>>) {
    for wake in waiting.into_iter().flatten() {
        wake();
    }
}

/// Releases the held wakeups when dropped (a panicking handler included).
pub(crate) struct HeldWakes(());

impl Drop for HeldWakes {
    fn drop(&mut self) {
        run(HELD.with_borrow_mut(Option::take));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// Counts the wakeups that ran.
    #[derive(Clone, Default)]
    struct Counter(Rc<Cell<u32>>);

    impl Counter {
        fn wake(&self) -> impl FnOnce() + 'static {
            let count = self.0.clone();
            move || count.set(count.get() + 1)
        }

        fn get(&self) -> u32 {
            self.0.get()
        }
    }

    #[test]
    fn wakes_run_at_once_unless_held() {
        let count = Counter::default();
        wake(count.wake());
        assert_eq!(count.get(), 1);
    }

    #[test]
    fn held_wakes_run_when_the_guard_drops_and_not_before() {
        let count = Counter::default();
        let held = hold_wakes();
        wake(count.wake());
        wake(count.wake());
        assert_eq!(count.get(), 0);
        drop(held);
        assert_eq!(count.get(), 2);
        // Released: the next one runs at once.
        wake(count.wake());
        assert_eq!(count.get(), 3);
    }

    #[test]
    fn release_runs_what_is_held_and_keeps_holding() {
        let count = Counter::default();
        let held = hold_wakes();
        wake(count.wake());
        release_held();
        assert_eq!(count.get(), 1);
        wake(count.wake());
        assert_eq!(count.get(), 1);
        drop(held);
        assert_eq!(count.get(), 2);
    }

    #[test]
    fn a_panicking_holder_still_wakes() {
        let count = Counter::default();
        let wake_one = std::panic::AssertUnwindSafe(count.wake());
        let result = std::panic::catch_unwind(move || {
            let _held = hold_wakes();
            let wake_one = wake_one;
            wake(wake_one.0);
            panic!("handler failed");
        });
        assert!(result.is_err());
        assert_eq!(count.get(), 1);
    }

    #[test]
    fn other_threads_are_not_held() {
        let _held = hold_wakes();
        let woke = std::thread::spawn(|| {
            let count = Counter::default();
            wake(count.wake());
            count.get()
        })
        .join()
        .unwrap();
        assert_eq!(woke, 1);
    }
}
