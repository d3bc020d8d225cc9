//! zccache-core: where the cache lives and how it is configured.
//!
//! Every other crate asks this one for paths ([`CacheRoot`]) and settings ([`Config`]) so that
//! the layout on disk is defined once. Configuration is read from an environment passed in by
//! the caller, never from process globals deep inside, so tests can run side by side with a
//! private root each. This crate does no networking and knows nothing of compilers or redb.

mod config;
pub mod journal;
pub mod paths;
mod root;

pub use config::{
    parse_duration, parse_size, Config, ConfigError, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_JOURNAL_MAX_SIZE, DEFAULT_MAX_SIZE, DEFAULT_SESSION_TIMEOUT,
};
pub use root::{make_private_dir, CacheRoot, RootError};
/// Starting a daemon detached, and finding executables (see `zccache_platform::process`).
pub use zccache_platform::process as detach;

/// The version of zccache, shown by `--version` and `status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub use zccache_platform::lock::{lock_exclusive, lock_shared, try_lock_exclusive};
pub use zccache_platform::process::{exit_code, process_is_running};

/// A 32-byte blake3 digest, the unit of identity for files, keys and blobs.
pub type Hash = [u8; 32];

/// Lower-case hex of a digest, for file names and logs.
pub fn hex(hash: &Hash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for byte in hash {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    out
}
