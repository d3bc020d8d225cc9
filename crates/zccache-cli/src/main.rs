//! The `zccache` command.
//!
//! `zccache <compiler> args…` is the wrapper fast path (`wrapper.rs`): no argument-parsing
//! framework, no async runtime, one connection, one request, one reply — and the compiler run
//! directly whenever the daemon cannot help. `zccache exec … -- TOOL args…` takes the same path
//! for a tool the call describes (`exec.rs`). Everything else (`start`, `stop`, `status`,
//! `clear`, sessions, `analyze`, `inspect`, `--version`) is a subcommand (`commands.rs`).

// Every cache hit starts this program, so it skips the Rust runtime's start-up (reading
// /proc/self/maps for the stack guard, the alternate signal stack, ignoring SIGPIPE): about
// 0.1 ms of a ~1.4 ms hit on the reference machine. Arguments are read from `argv` (only glibc
// would hand them to std without std's `main`); SIGPIPE keeps its default, as for the bare
// compiler, and socket writes use MSG_NOSIGNAL.
#![no_main]

mod analyze;
mod client;
mod commands;
mod exec;
mod inspect;
mod sessions;
mod wrapper;

use std::ffi::OsString;

#[no_mangle]
extern "C" fn main(argc: std::ffi::c_int, argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    // A panic must not unwind into C: report it as std's runtime would (exit 101).
    let code = std::panic::catch_unwind(|| {
        // SAFETY: the C runtime passes `argc` valid C strings, as it does to every `main`.
        let args = unsafe { args_from(argc, argv) };
        match args.get(1).map(|a| a.to_str()) {
            Some(Some("exec")) => exec::main(&args),
            Some(Some(word)) if !commands::is_command(word) => wrapper::main(&args),
            Some(None) => wrapper::main(&args),
            _ => commands::main(&args),
        }
    })
    .unwrap_or(101);
    std::process::exit(code);
}

/// The arguments as the C runtime gives them to `main`. Not `std::env::args_os`: without std's
/// `main` only glibc hands them to std, and the client is also built against musl.
///
/// # Safety
/// `argv` must hold `argc` pointers to NUL-terminated strings.
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
