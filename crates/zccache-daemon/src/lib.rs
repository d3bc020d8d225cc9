//! zccache-daemon: the long-lived process that answers compile requests.
//!
//! It owns the store, the file-state cache and the statistics; it is the only place that runs
//! compilers on the cache's behalf. [`run`] takes the per-root lock (one daemon per root and
//! protocol version), binds the socket, and serves until stopped or idle. Each request is one
//! message and one reply (see `zccache-protocol`); `pipeline.rs` holds what every cached tool
//! shares, `cc.rs` and `rust.rs` the gcc/clang and rustc/clippy front ends.

mod after_reply;
mod analysis;
mod archive;
mod cc;
mod exec;
mod fp;
mod fresh;
mod inspect;
mod journal;
mod link;
mod pending;
mod pipeline;
mod priority;
mod remote;
mod rust;
mod rustfmt;
mod scratch;
mod search;
mod server;
mod session;
mod stats;
mod toolchain;
pub mod warm;
mod worktree;

pub use server::{run, DaemonOptions};

use stats::Stats;
use std::time::Instant;
use toolchain::Toolchains;
use zccache_artifact::Store;
use zccache_core::CacheRoot;
use zccache_fscache::FsCache;

/// Everything a request handler needs, shared by all of them.
pub(crate) struct Daemon {
    root: CacheRoot,
    /// Opened on its own thread while the daemon starts serving (see [`Daemon::store`]).
    store: std::sync::OnceLock<OpenedStore>,
    /// There was no index when the daemon started: the store it is creating holds nothing
    /// until it is open (see [`Daemon::lookup_store`]).
    index_was_absent: bool,
    fs: FsCache,
    toolchains: Toolchains,
    /// Analysers' identities and the compilation databases they read.
    analysis: analysis::AnalysisCache,
    /// Each in-memory entry's would-be shadowing headers, worked out on first need.
    derived_shadows: search::DerivedMemo,
    /// Entries whose dependencies the watcher vouches for (see [`pipeline::VerifiedMemo`]).
    verified: pipeline::VerifiedMemo,
    stats: Stats,
    sessions: session::Sessions,
    journal: journal::Journal,
    /// Inputs a code generator rewrote before a source's last run (see `fresh.rs`).
    fresh: fresh::FreshInputs,
    /// Results being stored after their reply was sent.
    pending: pending::PendingStores,
    /// The threads that check and write them, a few at once.
    store_queue: std::sync::Arc<pending::StoreQueue>,
    /// An eviction pass is running (one at a time, off the request path).
    evicting: std::sync::atomic::AtomicBool,
    started: Instant,
    /// Mode for files we create at output paths: 0666 under the daemon's umask.
    output_mode: u32,
    /// Depfiles and response files handed to compilers, reused from one miss to the next.
    scratch: scratch::ScratchFiles,
    /// `zccache fp check`'s file lists, kept current by the watcher.
    fp_trees: fp::FpTrees,
    /// The remote tier, when one is configured (see `remote.rs`), and why one configured is
    /// not used.
    remote: Option<zccache_remote::Remote>,
    remote_problem: Option<String>,
}

/// How long a request waits for the store to open before it runs uncached.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where a cache lookup looks (see [`Daemon::lookup_store`]).
#[derive(Clone, Copy)]
pub(crate) enum LookupStore<'a> {
    Open(&'a Store),
    /// The index is being created: nothing can be in it yet, so every lookup misses.
    Empty,
}

/// The store once opening it has been tried, and what went wrong.
struct OpenedStore {
    /// `None` when the store could not be opened: every compile then runs uncached.
    store: Option<Store>,
    /// Why, or another problem with it worth a user's attention (an older daemon stopped).
    problem: Option<String>,
}

impl Daemon {
    /// The store, once open. Opening a new index syncs it to disk several times (~5 ms that a
    /// cold build's first call would wait for), and the first calls (cargo's rustc queries)
    /// need no store, so it opens beside the first requests; a request that needs it waits.
    fn store(&self) -> Option<&Store> {
        self.opened_store()?.store.as_ref()
    }

    /// The store to look entries up in; `None` when it is unavailable. A new cache's index
    /// is created beside the first compiles (~10 ms of syncs and set-up on a new root); since
    /// nothing can be in it before it is open, their lookups miss at once instead of waiting
    /// for it, unless a result for their key is on its way in (see [`Daemon::look_up`]).
    /// Storing results waits for it as before.
    fn lookup_store(&self) -> Option<LookupStore<'_>> {
        match self.store.get() {
            Some(opened) => opened.store.as_ref().map(LookupStore::Open),
            None if self.index_was_absent => Some(LookupStore::Empty),
            None => self.store().map(LookupStore::Open),
        }
    }

    /// Opening the store has ended (in success or failure).
    fn store_is_open(&self) -> bool {
        self.store.get().is_some()
    }

    /// The outcome of opening the store; `None` if it is still opening after [`STORE_WAIT`]
    /// (an older daemon that does not answer, a slow disk): calls then run uncached.
    fn opened_store(&self) -> Option<&OpenedStore> {
        // No clock read once the store is open: every lookup comes here.
        let mut deadline = None;
        loop {
            if let Some(opened) = self.store.get() {
                return Some(opened);
            }
            if Instant::now() >= *deadline.get_or_insert_with(|| Instant::now() + STORE_WAIT) {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}
