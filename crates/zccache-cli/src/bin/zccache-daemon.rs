//! The zccache daemon executable. Started by the `zccache` client on first use; see
//! `zccache-daemon` (the crate) for what it does.

use std::path::PathBuf;
use std::time::Duration;
use zccache_daemon::{run, DaemonOptions};

/// std's `Command` starts a process with `posix_spawn` (vfork-like: no copy of the daemon's
/// page tables) only when it finds `posix_spawn_file_actions_addchdir_np`, which it references
/// weakly; every compile sets a working directory. In a static build a weak reference does not
/// pull the function out of libc.a, so std would fork the whole daemon for every miss. This
/// strong reference links it in.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[used]
static LINK_ADDCHDIR: unsafe extern "C" fn(
    *mut libc::posix_spawn_file_actions_t,
    *const libc::c_char,
) -> libc::c_int = libc::posix_spawn_file_actions_addchdir_np;

/// Allocator arenas for the daemon's threads (see `limit_allocator_arenas`); glibc's own
/// `MALLOC_ARENA_MAX`, when set, wins.
const ALLOCATOR_ARENAS: i32 = 2;

fn main() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        zccache_platform::process::limit_allocator_arenas(ALLOCATOR_ARENAS);
    }
    let mut cache_dir: Option<PathBuf> = None;
    let mut notify_ready = false;
    let mut identify: Option<PathBuf> = None;
    let mut idle_timeout: Option<Option<Duration>> = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--cache-dir") => cache_dir = args.next().map(PathBuf::from),
            Some("--idle-timeout") => {
                let text = args.next().unwrap_or_default();
                match zccache_core::parse_duration(&text.to_string_lossy()) {
                    Some(d) => idle_timeout = Some((!d.is_zero()).then_some(d)),
                    None => usage(&format!("bad --idle-timeout {text:?}")),
                }
            }
            Some("--protocol") => {
                // The client says which protocol it speaks; a daemon binary from another
                // build must not start (the client then compiles directly and says why).
                let theirs = args.next().unwrap_or_default();
                let ours = zccache_protocol::PROTOCOL_VERSION.to_string();
                if theirs.to_str() != Some(ours.as_str()) {
                    eprintln!(
                        "zccache-daemon: the client speaks protocol {}, this daemon {ours}",
                        theirs.to_string_lossy()
                    );
                    std::process::exit(3);
                }
            }
            Some("--notify-ready") => notify_ready = true,
            Some("--identify") => identify = args.next().map(PathBuf::from),
            Some("--version" | "-V") => {
                println!("zccache-daemon {}", zccache_core::VERSION);
                return;
            }
            _ => usage(&format!("unexpected argument {arg:?}")),
        }
    }
    // The environment is only a fallback for what the command line says.
    let config = zccache_core::Config::from_process();
    let cache_dir = match (cache_dir, &config) {
        (Some(dir), _) => dir,
        (None, Ok(config)) => config.cache_dir.clone(),
        (None, Err(e)) => usage(&e.to_string()),
    };
    let idle_timeout = idle_timeout.unwrap_or(match &config {
        Ok(config) => config.idle_timeout,
        Err(_) => Some(zccache_core::DEFAULT_IDLE_TIMEOUT),
    });
    let max_size = match &config {
        Ok(config) => zccache_core::Config {
            cache_dir: cache_dir.clone(),
            ..config.clone()
        }
        .max_size(),
        Err(_) => zccache_core::DEFAULT_MAX_SIZE,
    };
    let (session_timeout, journal_max_size) = match &config {
        Ok(config) => (config.session_timeout, config.journal_max_size),
        Err(_) => (
            zccache_core::DEFAULT_SESSION_TIMEOUT,
            zccache_core::DEFAULT_JOURNAL_MAX_SIZE,
        ),
    };
    // This daemon matches its client: an earlier mismatch note is stale.
    let _ = std::fs::remove_file(cache_dir.join("daemon-mismatch"));
    std::process::exit(run(DaemonOptions {
        cache_dir,
        idle_timeout,
        max_size,
        session_timeout,
        journal_max_size,
        notify_ready,
        identify,
    }));
}

fn usage(problem: &str) -> ! {
    eprintln!("zccache-daemon: {problem}");
    eprintln!("usage: zccache-daemon [--cache-dir DIR] [--idle-timeout SECONDS] [--protocol N] [--notify-ready] [--identify COMPILER]");
    std::process::exit(2);
}
