//! The `zccache` command.
//!
//! `zccache [--strict-paths=MODE] <compiler> args…` is the wrapper fast path (`wrapper.rs`): no argument-parsing
//! framework, no async runtime, one connection, one request, one reply — and the compiler run
//! directly whenever the daemon cannot help. `zccache exec … -- TOOL args…` takes the same path
//! for a tool the call describes (`exec.rs`). Everything else (`start`, `stop`, `status`,
//! `clear`, sessions, `analyze`, `inspect`, `--version`) is a subcommand (`commands.rs`).

// Every cache hit starts this program, so it skips the Rust runtime's start-up (reading
// /proc/self/maps for the stack guard, the alternate signal stack, ignoring SIGPIPE): about
// 0.1 ms of a ~1.4 ms hit on the reference machine. Arguments are read from `argv` (only glibc
// would hand them to std without std's `main`); SIGPIPE keeps its default, as for the bare
// compiler, and socket writes use MSG_NOSIGNAL.
#![cfg_attr(all(unix, not(test)), no_main)]

mod analyze;
mod ci_args;
use zccache_client as client;
mod commands;
mod defender;
mod download;
mod exec;
mod fp;
mod inspect;
mod registry;
mod sessions;
mod wrapper;

use std::ffi::OsString;

/// The client's allocator: a bump arena for its first megabyte, then the system allocator.
/// A call's allocations (environment, arguments, one request and one reply) are small and
/// live until the process exits, so freeing them is wasted work; musl's allocator maps and
/// unmaps memory for them, which is expensive on a virtual machine.
#[global_allocator]
static ALLOCATOR: arena::ArenaThenSystem = arena::ArenaThenSystem;

mod arena {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::UnsafeCell;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SIZE: usize = 1 << 20;

    #[repr(C, align(4096))]
    struct Arena(UnsafeCell<[u8; SIZE]>);

    // SAFETY: disjoint ranges of the arena are handed out by an atomic bump pointer.
    unsafe impl Sync for Arena {}

    static ARENA: Arena = Arena(UnsafeCell::new([0; SIZE]));
    /// Bytes of the arena handed out so far.
    static USED: AtomicUsize = AtomicUsize::new(0);

    pub struct ArenaThenSystem;

    fn base() -> usize {
        ARENA.0.get() as usize
    }

    fn in_arena(ptr: *mut u8) -> bool {
        (base()..base() + SIZE).contains(&(ptr as usize))
    }

    // SAFETY: arena blocks are disjoint, aligned as asked and never reused; everything else is
    // the system allocator's.
    unsafe impl GlobalAlloc for ArenaThenSystem {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let mut used = USED.load(Ordering::Relaxed);
            loop {
                let start = (base() + used).next_multiple_of(layout.align()) - base();
                let end = start + layout.size();
                if end > SIZE {
                    // SAFETY: forwarded as given.
                    return unsafe { System.alloc(layout) };
                }
                match USED.compare_exchange_weak(used, end, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => return (base() + start) as *mut u8,
                    Err(now) => used = now,
                }
            }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if !in_arena(ptr) {
                // SAFETY: a block from the system allocator, as the caller promises.
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if !in_arena(ptr) {
                // SAFETY: a block from the system allocator, as the caller promises.
                return unsafe { System.realloc(ptr, layout, new_size) };
            }
            if new_size <= layout.size() {
                return ptr;
            }
            // The newest block grows in place (a Vec being filled).
            let start = ptr as usize - base();
            let (end, new_end) = (start + layout.size(), start + new_size);
            if new_end <= SIZE
                && USED
                    .compare_exchange(end, new_end, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                return ptr;
            }
            // SAFETY: the caller guarantees `new_size`, rounded to the alignment, is valid.
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            // SAFETY: as for `alloc`.
            let new = unsafe { self.alloc(new_layout) };
            if !new.is_null() {
                // SAFETY: the new block holds at least the old size and does not overlap it; the
                // old arena block is simply left behind.
                unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size()) };
            }
            new
        }
    }
}

// Under `cargo test` the harness supplies the entry point (this one would run zccache in
// place of the unit tests) and this stays an ordinary function.
#[cfg(unix)]
#[cfg_attr(not(test), no_mangle)]
#[cfg_attr(test, allow(dead_code))]
extern "C" fn main(argc: std::ffi::c_int, argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    // SAFETY: the C runtime passes `argc` valid C strings, as it does to every `main`.
    std::process::exit(run(|| unsafe { args_from(argc, argv) }));
}

/// Windows hands a program its arguments as UTF-16, which std decodes; its runtime's start-up
/// is kept.
#[cfg(not(unix))]
#[cfg_attr(test, allow(dead_code))]
fn main() {
    std::process::exit(run(|| std::env::args_os().collect()));
}

/// Runs the command the arguments name and returns its exit code.
#[cfg_attr(test, allow(dead_code))]
fn run(args: impl FnOnce() -> Vec<OsString>) -> i32 {
    // A panic must not unwind into C: report it as std's runtime would (exit 101).
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let args = args();
        match args.get(1).map(|a| a.to_str()) {
            Some(Some("exec")) => exec::main(&args),
            Some(Some(word)) if wrapper::is_strict_paths_flag(word) => wrapper::main(&args),
            Some(Some(word)) if !commands::is_command(word) => wrapper::main(&args),
            Some(None) => wrapper::main(&args),
            _ => commands::main(&args),
        }
    }))
    .unwrap_or(101)
}

/// The arguments as the C runtime gives them to `main`. Not `std::env::args_os`: without std's
/// `main` only glibc hands them to std, and the client is also built against musl.
///
/// # Safety
/// `argv` must hold `argc` pointers to NUL-terminated strings.
#[cfg(unix)]
#[cfg_attr(test, allow(dead_code))]
unsafe fn args_from(argc: std::ffi::c_int, argv: *const *const std::ffi::c_char) -> Vec<OsString> {
    use std::os::unix::ffi::OsStringExt;
    (0..argc.max(0) as usize)
        .map(|i| {
            // SAFETY: `i < argc`, and each entry is a C string (the caller's contract).
            let arg = unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) };
            OsString::from_vec(arg.to_bytes().to_vec())
        })
        .collect()
}
