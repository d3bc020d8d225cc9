//! zccache-ci: what a CI run needs besides the compile cache, as library functions the CLI's
//! commands call (the GitHub Action's steps stay thin shell).
//!
//! [`gha`], GitHub Actions' cache service without `actions/cache` (entries it can restore
//! too, and zccache's cache directory as a chain of packs); [`cargo_registry`], the archive of
//! cargo's downloaded crates and index that a fresh runner restores instead of downloading
//! them again; [`fp`], whether a step's input files changed since it last succeeded. This
//! crate knows the cache directory's layout (blobs and index files) but not the store's
//! contents, the daemon or compilers.

pub mod cargo_registry;
pub mod fp;
pub mod gha;
pub mod snapshot;
