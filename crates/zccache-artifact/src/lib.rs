//! zccache-artifact: the store.
//!
//! Outputs live as content-addressed, read-only blobs under `artifacts/` (named by their blake3
//! digest); the index (`index.redb`) maps a cache key to a [`Manifest`]: the candidate results
//! for that key, each with the dependency digests that must still hold for it to be served.
//! Every write is a temp file in `tmp/` renamed into place, and an index entry is committed
//! only after its blobs exist, so a crash at any instant leaves a usable cache.
//!
//! Only this crate touches redb. It knows nothing of compilers: an output is a role name and a
//! blob, a dependency is a path and a digest.

mod memo;
mod store;

pub use memo::{manifest_bytes, MemoUsage, DEFAULT_MANIFEST_BUDGET};

pub use store::{
    replace_file, BlobRef, DeliverError, Delivery, DepDigest, DirStamp, EnvDep, Manifest,
    ManifestEntry, ShadowCheck, SourceRecord, Store, StoreError, StoredOutput, StoredResult,
    WatchedDir, MAX_ENTRIES_PER_KEY, MAX_RECORDS_PER_SOURCE,
};
