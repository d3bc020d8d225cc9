//! End-to-end tests: the built `zccache` and `zccache-daemon` binaries driving real gcc and
//! clang on real files, each test in its own temp dir with its own cache root and daemon.
//!
//! They drive Linux tools (gcc, clang, sh, cargo) and run where those are; the Windows build
//! is tested end to end by `tests/windows/*.sh` under Wine.
#![cfg(unix)]

mod action;
mod cli;
mod compile;
mod daemon;
mod depfiles;
mod download;
mod exec;
mod fp;
mod generated;
mod gha;
mod ino;
mod inspect;
mod limit;
mod multi;
mod priority;
mod projects;
mod registry;
mod reliability;
mod relocate;
mod remote;
mod response_files;
mod rust;
mod rustfmt;
mod sandbox;
mod sessions;
mod stale;
mod strict_paths;
mod target;
mod tools;
mod watcher;
mod worktrees;
