//! zccache-platform: the one place where Linux, macOS and Windows differ.
//!
//! The rest of zccache calls these functions instead of `std::os::unix`, `libc` or the
//! Windows API, so the pipeline has no `cfg` of its own. Each function keeps what Linux did
//! before it moved here (the same system calls, in the same order): the hit path must not
//! notice the layer.
//!
//! - [`process`]: exit codes, whether a process lives, starting a daemon detached and
//!   waiting for it to say it is ready, finding executables;
//! - [`lock`]: whole-file exclusive and shared locks (`flock` on Unix, `LockFileEx` on
//!   Windows, through std);
//! - [`defender`]: Windows Defender's exclusions for the cache root;
//! - [`clock`]: the clock written files are stamped with;
//! - [`os_str`]: arguments and paths as bytes, and back;
//! - [`stamp`]: what a `stat` says of a file, and how fine its file system's stamps are;
//! - [`fs`]: private directories owned by this user, which file systems are local, and what an
//!   I/O error means for a cache.

pub mod clock;
pub mod defender;
pub mod fs;
pub mod lock;
pub mod os_str;
pub mod process;
pub mod stamp;
