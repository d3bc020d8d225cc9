//! The `zccache` command.
//!
//! `zccache <compiler> args…` is the wrapper fast path (`wrapper.rs`): no argument-parsing
//! framework, no async runtime, one connection, one request, one reply — and the compiler run
//! directly whenever the daemon cannot help. `zccache exec … -- TOOL args…` takes the same path
//! for a tool the call describes (`exec.rs`). Everything else (`start`, `stop`, `status`,
//! `clear`, sessions, `analyze`, `inspect`, `--version`) is a subcommand (`commands.rs`).

mod analyze;
mod client;
mod commands;
mod exec;
mod inspect;
mod sessions;
mod wrapper;

use std::ffi::OsString;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let code = match args.get(1).map(|a| a.to_str()) {
        Some(Some("exec")) => exec::main(&args),
        Some(Some(word)) if !commands::is_command(word) => wrapper::main(&args),
        Some(None) => wrapper::main(&args),
        _ => commands::main(&args),
    };
    std::process::exit(code);
}
