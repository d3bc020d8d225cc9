//! zccache-ci: what a CI run needs besides the compile cache, as library functions the CLI's
//! commands call (the GitHub Action's steps stay thin shell).
//!
//! Today: [`cargo_registry`], the archive of cargo's downloaded crates and index that a fresh
//! runner restores instead of downloading them again, and [`fp`], whether a step's input files
//! changed since it last succeeded. This crate knows nothing of the store, the daemon or
//! compilers.

pub mod cargo_registry;
pub mod fp;
