//! Blobs on disk, manifests in redb, and a memory copy of both for the hit path.

use crate::memo::{ManifestMemo, MemoUsage, DEFAULT_MANIFEST_BUDGET};
use dashmap::DashMap;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use zccache_core::{hex, CacheRoot, Hash};

const MANIFESTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("manifests");
const BLOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blobs");
/// Key → last time (milliseconds since the epoch) it was stored or served, for LRU eviction.
const LAST_USE: TableDefinition<&[u8], u64> = TableDefinition::new("last_use");

/// Absolute source path → the last few [`SourceRecord`]s, for `zccache inspect`.
const SOURCES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sources");

/// A source's absolute path and its records, newest first.
pub type SourceRecords = (Vec<u8>, Vec<SourceRecord>);

/// Records kept per source (a file built in several configurations has one per key).
pub const MAX_RECORDS_PER_SOURCE: usize = 4;

/// Eviction brings the store down to this share of its limit, so it does not run again at once.
const EVICT_TO_PERCENT: u64 = 90;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Results kept per key; older ones (other header versions) fall off.
pub const MAX_ENTRIES_PER_KEY: usize = 16;

/// How a source was compiled into the store: the key's parts, so `zccache inspect` can say
/// which part changed when a later compile of the same source misses, and the call itself, so
/// it can be looked at again from the source's name alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub key: Hash,
    /// The key's inputs in order: a label (`argument`, `env CPATH`, `source`…) and a value
    /// shown as text.
    pub parts: Vec<(String, String)>,
    /// The call: argv as the build gave it, the compiler's path, its directory, and the
    /// environment variables the key depends on.
    pub argv: Vec<Vec<u8>>,
    pub program: Vec<u8>,
    pub cwd: Vec<u8>,
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
    /// Milliseconds since the epoch when it was stored.
    pub stored_ms: u64,
}

/// A dependency and the digest its content had when the result was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepDigest {
    /// As the compiler named it: relative paths resolve against the caller's cwd.
    pub path: Vec<u8>,
    pub hash: Hash,
}

/// A stored blob and the signature it must still have to be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub hash: Hash,
    pub size: u64,
}

/// One output of a stored result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredOutput {
    /// What the output is to the tool (`object`, `depfile`, or a file name in rustc's output
    /// directory); the daemon maps it to a path.
    pub role: String,
    pub blob: BlobRef,
    /// The tool created it executable (linked programs and libraries).
    pub executable: bool,
}

/// An environment variable the result depends on, and its value then (`None`: unset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvDep {
    pub name: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// What one tool run produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResult {
    pub outputs: Vec<StoredOutput>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// How long the tool ran, to report time saved by hits.
    pub compile_ms: u64,
    /// The tool's exit code: 0 for compiles; analysers' failures are results too.
    pub exit_code: i32,
}

/// A directory's stat signature when a result was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirStamp {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

/// A directory whose listing a result depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedDir {
    pub path: Vec<u8>,
    /// `None` when it changed too recently to be trusted: always re-checked.
    pub stamp: Option<DirStamp>,
}

/// What it takes to tell whether a file has appeared that the tool would have read instead of
/// one it did read: the search path it used, and the directories that decide it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowCheck {
    /// The working directory the paths below were resolved in.
    pub cwd: Vec<u8>,
    /// Search directories as written, in order, split where system directories begin.
    pub user: Vec<Vec<u8>>,
    pub system: Vec<Vec<u8>>,
    pub watched: Vec<WatchedDir>,
    /// Would-be shadows (as written) that already existed and were passed by: only files that
    /// are not in this list count as new.
    pub existing: Vec<Vec<u8>>,
}

/// A result, valid while every dependency has its recorded digest, every environment variable
/// its value, and no shadowing file has appeared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub deps: Vec<DepDigest>,
    /// Environment variables the tool reported reading (rustc's `env!`).
    pub env: Vec<EnvDep>,
    /// Headers that would shadow one that was used (C family).
    pub shadow: Option<ShadowCheck>,
    pub result: StoredResult,
}

/// The candidate results for one key, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub entries: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct BlobMeta {
    size: u64,
    mtime_ns: i128,
}

/// How a blob reaches its requested path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Hardlink (copy if the link fails, e.g. across filesystems). A blob older than
    /// `not_older_than_ns` is copied instead: its old mtime would make the output look older
    /// than its inputs to make and ninja, which would then rebuild it every time.
    Link { not_older_than_ns: i128 },
    /// Always a fresh copy (fresh mtime, own inode): for files that tools rewrite in place,
    /// and for executables, which need their own mode.
    Copy { executable: bool },
}

/// The store could not do what was asked.
#[derive(Debug)]
pub enum StoreError {
    Io { path: PathBuf, error: io::Error },
    Index(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            StoreError::Index(why) => write!(f, "cache index: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

fn index_err(error: impl Into<redb::Error>) -> StoreError {
    StoreError::Index(error.into().to_string())
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// A blob could not be delivered; the caller treats the entry as a miss.
#[derive(Debug)]
pub enum DeliverError {
    /// The blob is missing or was modified (e.g. written through a hardlink): it was evicted.
    Corrupt(String),
    /// Writing the requested output failed.
    Io { path: PathBuf, error: io::Error },
}

impl fmt::Display for DeliverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliverError::Corrupt(why) => write!(f, "cached blob unusable: {why}"),
            DeliverError::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for DeliverError {}

/// The store of one cache root.
pub struct Store {
    artifacts: PathBuf,
    tmp: PathBuf,
    db: Database,
    /// Manifests for the hit path, within a byte budget (see `memo.rs`).
    manifests: ManifestMemo,
    blobs: DashMap<Hash, BlobMeta>,
    blob_bytes: AtomicU64,
    /// Mode for copied outputs: what the compiler would create under the daemon's umask.
    output_mode: u32,
    warnings: Mutex<Vec<String>>,
    /// Last use of keys since the daemon started (the index has the older ones).
    last_use: DashMap<Hash, u64>,
    max_bytes: AtomicU64,
    evictions: AtomicU64,
    /// Held shared while a blob is being delivered and exclusively while blobs are collected,
    /// so eviction never removes a blob under a reply that is delivering it.
    delivering: std::sync::RwLock<()>,
    /// Blobs written for entries not committed yet: never collected.
    fresh: DashMap<Hash, usize>,
    /// When the oldest and the newest of the entries committed since the index was last
    /// synced to disk were committed; `None` when every entry is on disk (see [`Store::sync`]).
    unsynced: Mutex<Option<Unsynced>>,
}

/// The span of the commits an index sync has yet to make durable.
#[derive(Clone, Copy, Debug)]
struct Unsynced {
    oldest: Instant,
    newest: Instant,
}

impl Store {
    /// Opens (or creates) the store under `root`. A corrupt index is moved aside and replaced
    /// by an empty one; the reason is kept for `status`.
    pub fn open(root: &CacheRoot, output_mode: u32) -> Result<Store, StoreError> {
        let index = root.index_path();
        let mut warnings = Vec::new();
        let db = match open_index(&index) {
            Ok(db) => db,
            // In use (a daemon still shutting down) or not ours to read: not corrupt, never
            // moved aside.
            Err(error @ redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Index(format!("{}: {error}", index.display())));
            }
            Err(redb::DatabaseError::Storage(redb::StorageError::Io(error)))
                if error.kind() == io::ErrorKind::PermissionDenied =>
            {
                return Err(StoreError::Index(format!("{}: {error}", index.display())));
            }
            Err(error) => {
                let aside = index.with_extension(format!("redb.corrupt-{}", std::process::id()));
                let message = format!(
                    "cache index {} could not be opened ({error}); moved to {} and started empty",
                    index.display(),
                    aside.display()
                );
                tracing::warn!("{message}");
                warnings.push(message);
                fs::rename(&index, &aside).map_err(io_err(&index))?;
                Database::create(&index).map_err(index_err)?
            }
        };
        let store = Store {
            artifacts: root.artifacts_dir(),
            tmp: root.tmp_dir(),
            db,
            manifests: ManifestMemo::new(DEFAULT_MANIFEST_BUDGET),
            blobs: DashMap::new(),
            blob_bytes: AtomicU64::new(0),
            output_mode,
            warnings: Mutex::new(warnings),
            last_use: DashMap::new(),
            max_bytes: AtomicU64::new(u64::MAX),
            evictions: AtomicU64::new(0),
            delivering: std::sync::RwLock::new(()),
            fresh: DashMap::new(),
            unsynced: Mutex::new(None),
        };
        store.load_blobs()?;
        Ok(store)
    }

    fn load_blobs(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(index_err)?;
        tx.open_table(MANIFESTS).map_err(index_err)?;
        tx.open_table(LAST_USE).map_err(index_err)?;
        {
            let table = tx.open_table(BLOBS).map_err(index_err)?;
            for item in table.iter().map_err(index_err)? {
                let (key, value) = item.map_err(index_err)?;
                let (Ok(hash), Ok(meta)) = (
                    <Hash>::try_from(key.value()),
                    bincode::deserialize::<BlobMeta>(value.value()),
                ) else {
                    continue;
                };
                self.blob_bytes.fetch_add(meta.size, Ordering::Relaxed);
                self.blobs.insert(hash, meta);
            }
        }
        tx.commit().map_err(index_err)
    }

    /// Repairs what a daemon killed mid-store can leave behind: blob files the index does
    /// not know (written, but their entry never committed) and staging files, both only when
    /// last modified before `before` (the start of this daemon, so nothing it is writing now),
    /// and index records of blobs whose file is gone or has another size. Returns the number
    /// of files removed and of records dropped; anything done is reported in `warnings`.
    pub fn repair(&self, before: std::time::SystemTime) -> Result<(u64, u64), StoreError> {
        let old = |meta: &fs::Metadata| meta.modified().is_ok_and(|m| m < before);
        let mut dropped = Vec::new();
        for blob in self.blobs.iter() {
            let (hash, meta) = (*blob.key(), *blob.value());
            if self.fresh.contains_key(&hash) {
                continue;
            }
            match fs::metadata(self.blob_path(&hash)) {
                Ok(found) if found.len() == meta.size => {}
                _ => dropped.push((hash, meta.size)),
            }
        }
        if !dropped.is_empty() {
            let tx = self.db.begin_write().map_err(index_err)?;
            {
                let mut table = tx.open_table(BLOBS).map_err(index_err)?;
                for (hash, _) in &dropped {
                    table.remove(hash.as_slice()).map_err(index_err)?;
                }
            }
            tx.commit().map_err(index_err)?;
            for (hash, size) in &dropped {
                if self.blobs.remove(hash).is_some() {
                    self.blob_bytes.fetch_sub(*size, Ordering::Relaxed);
                }
            }
        }
        let mut removed = 0u64;
        for dir in fs::read_dir(&self.artifacts)
            .into_iter()
            .flatten()
            .flatten()
        {
            for file in fs::read_dir(dir.path()).into_iter().flatten().flatten() {
                let known = parse_hex(&file.file_name().to_string_lossy())
                    .is_some_and(|h| self.blobs.contains_key(&h) || self.fresh.contains_key(&h));
                if !known
                    && file.metadata().is_ok_and(|m| old(&m))
                    && zccache_platform::fs::remove_file(&file.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        for file in fs::read_dir(&self.tmp).into_iter().flatten().flatten() {
            if file.metadata().is_ok_and(|m| m.is_file() && old(&m))
                && zccache_platform::fs::remove_file(&file.path()).is_ok()
            {
                removed += 1;
            }
        }
        if removed > 0 || !dropped.is_empty() {
            let message = format!(
                "store repaired at start: removed {removed} leftover files, dropped {} records \
                 of missing blobs (a daemon was stopped mid-write)",
                dropped.len()
            );
            tracing::warn!("{message}");
            if let Ok(mut warnings) = self.warnings.lock() {
                warnings.push(message);
            }
        }
        Ok((removed, dropped.len() as u64))
    }

    /// Problems found while opening or using the store, for `status`.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Whether the store holds blob `hash`.
    pub fn has_blob(&self, hash: &Hash) -> bool {
        self.blobs.contains_key(hash)
    }

    /// Number of blobs and their total size.
    pub fn usage(&self) -> (u64, u64) {
        (
            self.blobs.len() as u64,
            self.blob_bytes.load(Ordering::Relaxed),
        )
    }

    /// Creates the fan-out directories blobs go into (`artifacts/00` to `ff`) that are not
    /// there yet. Otherwise a new cache makes one beside each of its first results, and a
    /// result fetched from the remote tier waits for it before it is served: a directory's
    /// inode cost ~0.3 ms on the reference VM's ext4, a third of a remote hit. Run off the
    /// request path, once the store is open.
    pub fn make_fanout_dirs(&self) -> Result<(), StoreError> {
        for first_byte in 0..=u8::MAX {
            let dir = self.fanout_dir(first_byte);
            match fs::create_dir(&dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(io_err(&dir)(e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The directory of the blobs whose hash starts with `first_byte`: `artifacts/<2 hex>`.
    fn fanout_dir(&self, first_byte: u8) -> PathBuf {
        self.artifacts.join(format!("{first_byte:02x}"))
    }

    fn blob_path(&self, hash: &Hash) -> PathBuf {
        self.fanout_dir(hash[0]).join(hex(hash))
    }

    /// The manifest stored for `key`, from memory when possible.
    pub fn manifest(&self, key: &Hash) -> Result<Option<Arc<Manifest>>, StoreError> {
        if let Some(found) = self.manifests.get(key) {
            return Ok(Some(found));
        }
        let tx = self.db.begin_read().map_err(index_err)?;
        let table = tx.open_table(MANIFESTS).map_err(index_err)?;
        let Some(value) = table.get(key.as_slice()).map_err(index_err)? else {
            return Ok(None);
        };
        match bincode::deserialize::<Manifest>(value.value()) {
            Ok(manifest) => {
                let manifest = Arc::new(manifest);
                self.remember_manifest(*key, manifest.clone());
                Ok(Some(manifest))
            }
            Err(error) => {
                tracing::warn!("dropping undecodable manifest {}: {error}", hex(key));
                Ok(None)
            }
        }
    }

    /// Every source's records (see [`Store::source_records`]), read straight from the index.
    pub fn all_source_records(&self) -> Result<Vec<SourceRecords>, StoreError> {
        let tx = self.db.begin_read().map_err(index_err)?;
        let table = match tx.open_table(SOURCES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(index_err(e)),
        };
        let mut out = Vec::new();
        for item in table.iter().map_err(index_err)? {
            let (path, value) = item.map_err(index_err)?;
            if let Ok(records) = bincode::deserialize(value.value()) {
                out.push((path.value().to_vec(), records));
            }
        }
        Ok(out)
    }

    /// How `source` (an absolute path) was compiled into the store, newest first.
    pub fn source_records(&self, source: &[u8]) -> Result<Vec<SourceRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(index_err)?;
        let table = match tx.open_table(SOURCES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(index_err(e)),
        };
        Ok(table
            .get(source)
            .map_err(index_err)?
            .and_then(|v| bincode::deserialize(v.value()).ok())
            .unwrap_or_default())
    }

    /// Keeps a manifest in memory for the hit path, within the memo's budget.
    fn remember_manifest(&self, key: Hash, manifest: Arc<Manifest>) {
        self.manifests.insert(key, manifest);
    }

    /// Bytes of manifests the store may keep in memory (see `memo.rs`); those over it are
    /// dropped (never the most recently used).
    pub fn set_manifest_budget(&self, bytes: usize) {
        self.manifests.set_budget(bytes);
    }

    /// What the in-memory manifests hold.
    pub fn manifest_memory(&self) -> MemoUsage {
        self.manifests.usage()
    }

    /// Copies the file at `source` into the store.
    pub fn put_file(&self, source: &Path) -> Result<BlobRef, StoreError> {
        let mut file = File::open(source).map_err(io_err(source))?;
        self.put_reader(&mut file, source)
    }

    /// Stores `data`. Outputs captured by a miss are already in memory: they are hashed and
    /// written as they are, without the copying buffer a reader needs (a zeroed 128 KiB
    /// allocation per blob, mapped and unmapped each time, cost the storing thread page faults
    /// and TLB shootdowns beside every compile).
    pub fn put_bytes(&self, data: &[u8]) -> Result<BlobRef, StoreError> {
        let mut staged = self.staged_blob()?;
        staged.write_all(data).map_err(io_err(staged.path()))?;
        let blob = BlobRef {
            hash: *blake3::hash(data).as_bytes(),
            size: data.len() as u64,
        };
        self.install_blob(staged, blob)
    }

    fn put_reader(&self, reader: &mut dyn Read, origin: &Path) -> Result<BlobRef, StoreError> {
        let mut staged = self.staged_blob()?;
        let mut hasher = blake3::Hasher::new();
        let mut buffer = vec![0u8; 128 * 1024];
        let mut size = 0u64;
        loop {
            let read = reader.read(&mut buffer).map_err(io_err(origin))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            staged
                .write_all(&buffer[..read])
                .map_err(io_err(staged.path()))?;
            size += read as u64;
        }
        let hash = *hasher.finalize().as_bytes();
        self.install_blob(staged, BlobRef { hash, size })
    }

    /// A new file in the store's temp dir, to become a blob once written.
    fn staged_blob(&self) -> Result<tempfile::NamedTempFile, StoreError> {
        tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&self.tmp)
            .map_err(io_err(&self.tmp))
    }

    /// Moves the written `staged` file into place as `blob`, unless an intact copy is there.
    fn install_blob(
        &self,
        staged: tempfile::NamedTempFile,
        blob: BlobRef,
    ) -> Result<BlobRef, StoreError> {
        let hash = blob.hash;
        // Until the entry naming it is committed (`add_entry`), garbage collection leaves it be.
        *self.fresh.entry(hash).or_default() += 1;
        let target = self.blob_path(&hash);
        if self.blob_is_intact(&hash, &target) {
            return Ok(blob);
        }
        zccache_platform::fs::set_path_mode(staged.path(), 0o444).map_err(io_err(staged.path()))?;
        let dir = target.parent().unwrap_or(&self.artifacts);
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        staged.persist(&target).map_err(|e| StoreError::Io {
            path: target.clone(),
            error: e.error,
        })?;
        let mut meta = fs::metadata(&target).map_err(io_err(&target))?;
        if !meta.permissions().readonly() {
            // tempfile's persist on Windows resets the file's attributes (read-only with them).
            zccache_platform::fs::set_path_mode(&target, 0o444).map_err(io_err(&target))?;
            meta = fs::metadata(&target).map_err(io_err(&target))?;
        }
        let record = BlobMeta {
            size: meta.len(),
            mtime_ns: mtime_ns(&meta),
        };
        // The index learns of the blob in the same transaction as the entry that uses it
        // (`add_entry`); until then it is known in memory only.
        if let Some(old) = self.blobs.insert(hash, record) {
            self.blob_bytes.fetch_sub(old.size, Ordering::Relaxed);
        }
        self.blob_bytes.fetch_add(record.size, Ordering::Relaxed);
        Ok(blob)
    }

    /// True when the blob file exists with the size and mtime recorded when it was stored.
    fn blob_is_intact(&self, hash: &Hash, path: &Path) -> bool {
        let Some(expected) = self.blobs.get(hash).map(|m| *m) else {
            return false;
        };
        match fs::metadata(path) {
            Ok(meta) => meta.len() == expected.size && mtime_ns(&meta) == expected.mtime_ns,
            Err(_) => false,
        }
    }

    /// Adds a result for `key`, replacing one with the same dependencies.
    pub fn add_entry(&self, key: &Hash, entry: ManifestEntry) -> Result<(), StoreError> {
        self.add_entry_recorded(key, entry, None)
    }

    /// [`Store::add_entry`], and in the same transaction records how `source` (an absolute
    /// path) was compiled.
    pub fn add_entry_recorded(
        &self,
        key: &Hash,
        entry: ManifestEntry,
        record: Option<(&[u8], SourceRecord)>,
    ) -> Result<(), StoreError> {
        let blobs: Vec<Hash> = entry.result.outputs.iter().map(|o| o.blob.hash).collect();
        let result = self.commit_entry(key, entry, record);
        for hash in blobs {
            if let Some(mut count) = self.fresh.get_mut(&hash) {
                *count = count.saturating_sub(1);
            }
            self.fresh.remove_if(&hash, |_, count| *count == 0);
        }
        result
    }

    fn commit_entry(
        &self,
        key: &Hash,
        entry: ManifestEntry,
        record: Option<(&[u8], SourceRecord)>,
    ) -> Result<(), StoreError> {
        let mut manifest = self
            .manifest(key)?
            .map(|m| (*m).clone())
            .unwrap_or_default();
        manifest
            .entries
            .retain(|old| old.deps != entry.deps || old.env != entry.env);
        manifest.entries.insert(0, entry);
        manifest.entries.truncate(MAX_ENTRIES_PER_KEY);
        let bytes = bincode::serialize(&manifest).map_err(|e| StoreError::Index(e.to_string()))?;
        let mut tx = self.db.begin_write().map_err(index_err)?;
        // Not synced per entry: on Linux even redb's `Eventual` calls fdatasync on every commit,
        // which cost each miss about a millisecond of the next compile's time. The daemon makes
        // entries durable in groups (`Store::sync`); a crash loses the unsynced ones (their
        // blobs are removed as orphans at the next start) and never leaves the index
        // inconsistent.
        tx.set_durability(redb::Durability::None);
        {
            let mut blobs = tx.open_table(BLOBS).map_err(index_err)?;
            for output in &manifest.entries[0].result.outputs {
                let Some(meta) = self.blobs.get(&output.blob.hash).map(|m| *m) else {
                    return Err(StoreError::Index("entry names an unknown blob".into()));
                };
                let record =
                    bincode::serialize(&meta).map_err(|e| StoreError::Index(e.to_string()))?;
                blobs
                    .insert(output.blob.hash.as_slice(), record.as_slice())
                    .map_err(index_err)?;
            }
            let mut table = tx.open_table(MANIFESTS).map_err(index_err)?;
            table
                .insert(key.as_slice(), bytes.as_slice())
                .map_err(index_err)?;
            let mut last_use = tx.open_table(LAST_USE).map_err(index_err)?;
            last_use
                .insert(key.as_slice(), now_ms())
                .map_err(index_err)?;
            if let Some((source, record)) = record {
                let mut sources = tx.open_table(SOURCES).map_err(index_err)?;
                let mut records: Vec<SourceRecord> = sources
                    .get(source)
                    .map_err(index_err)?
                    .and_then(|v| bincode::deserialize(v.value()).ok())
                    .unwrap_or_default();
                records.retain(|old| old.key != record.key);
                records.insert(0, record);
                records.truncate(MAX_RECORDS_PER_SOURCE);
                let bytes =
                    bincode::serialize(&records).map_err(|e| StoreError::Index(e.to_string()))?;
                sources
                    .insert(source, bytes.as_slice())
                    .map_err(index_err)?;
            }
        }
        tx.commit().map_err(index_err)?;
        self.note_unsynced(Instant::now());
        self.remember_manifest(*key, Arc::new(manifest));
        self.last_use.insert(*key, now_ms());
        Ok(())
    }

    /// Writes blob `blob` at `dest`, atomically replacing what is there. A blob that is missing
    /// or no longer matches its recorded size and mtime is evicted, never served.
    pub fn deliver(&self, blob: &BlobRef, dest: &Path, how: Delivery) -> Result<(), DeliverError> {
        let _delivering = self.delivering.read().unwrap_or_else(|e| e.into_inner());
        let source = self.blob_path(&blob.hash);
        if !self.blob_is_intact(&blob.hash, &source) {
            self.evict_blob(&blob.hash);
            return Err(DeliverError::Corrupt(format!(
                "{} is missing or was modified",
                source.display()
            )));
        }
        let dest_err = |error| DeliverError::Io {
            path: dest.to_path_buf(),
            error,
        };
        let link = match how {
            Delivery::Link { not_older_than_ns } => {
                zccache_platform::fs::HARDLINK_DELIVERY
                    && self
                        .blobs
                        .get(&blob.hash)
                        .is_some_and(|meta| meta.mtime_ns >= not_older_than_ns)
            }
            Delivery::Copy { .. } => false,
        };
        let executable = matches!(how, Delivery::Copy { executable: true });
        if link {
            match fs::hard_link(&source, dest) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if zccache_platform::stamp::same_file(&source, dest) {
                        return Ok(());
                    }
                    let staged = unique_sibling(dest);
                    if fs::hard_link(&source, &staged).is_ok() {
                        return fs::rename(&staged, dest).map_err(|e| {
                            let _ = fs::remove_file(&staged);
                            dest_err(e)
                        });
                    }
                }
                Err(_) => {}
            }
        }
        self.copy_to(&source, dest, executable).map_err(dest_err)
    }

    /// Writes blob `blob` to `dest` as a fresh file after `rewrite` has changed its bytes: a
    /// text that names paths of the caller's checkout (a dep-info file) where the stored one
    /// holds placeholders. Checked like [`Store::deliver`].
    pub fn deliver_rewritten(
        &self,
        blob: &BlobRef,
        dest: &Path,
        rewrite: impl FnOnce(Vec<u8>) -> Vec<u8>,
    ) -> Result<(), DeliverError> {
        let _delivering = self.delivering.read().unwrap_or_else(|e| e.into_inner());
        let source = self.blob_path(&blob.hash);
        let bytes = match fs::read(&source) {
            Ok(bytes) if self.blob_is_intact(&blob.hash, &source) => bytes,
            _ => {
                self.evict_blob(&blob.hash);
                return Err(DeliverError::Corrupt(format!(
                    "{} is missing or was modified",
                    source.display()
                )));
            }
        };
        let rewritten = rewrite(bytes);
        replace_file(dest, &mut rewritten.as_slice(), self.output_mode).map_err(|error| {
            DeliverError::Io {
                path: dest.to_path_buf(),
                error,
            }
        })
    }

    fn copy_to(&self, source: &Path, dest: &Path, executable: bool) -> io::Result<()> {
        let mode = if executable {
            // Execute bits wherever read bits are granted, as a linker would create it.
            self.output_mode | ((self.output_mode & 0o444) >> 2)
        } else {
            self.output_mode
        };
        replace_file(dest, &mut File::open(source)?, mode)
    }

    /// Removes a blob whose file can no longer be trusted.
    fn evict_blob(&self, hash: &Hash) {
        let path = self.blob_path(hash);
        tracing::warn!("evicting damaged or missing blob {}", path.display());
        let _ = zccache_platform::fs::remove_file(&path);
        if let Some((_, meta)) = self.blobs.remove(hash) {
            self.blob_bytes.fetch_sub(meta.size, Ordering::Relaxed);
        }
        if let Ok(tx) = self.db.begin_write() {
            if let Ok(mut table) = tx.open_table(BLOBS) {
                let _ = table.remove(hash.as_slice());
            }
            let _ = tx.commit();
        }
    }

    /// Makes every committed entry durable, if any is not yet: one synced commit for all the
    /// entries stored since the last one.
    pub fn sync(&self) -> Result<(), StoreError> {
        let Some(taken) = self.unsynced_span().take() else {
            return Ok(());
        };
        let result = self
            .db
            .begin_write()
            .map_err(index_err)
            .and_then(|tx| tx.commit().map_err(index_err));
        if result.is_err() {
            self.note_unsynced(taken.oldest);
            self.note_unsynced(taken.newest);
        }
        result
    }

    /// How long ago the oldest and the newest entry not yet on disk were committed; `None`
    /// when all are. The daemon syncs when the store has been quiet for a while, so that no
    /// flush of the disk competes with the compiles of a build.
    pub fn unsynced_age(&self) -> Option<(Duration, Duration)> {
        let span = (*self.unsynced_span())?;
        let now = Instant::now();
        Some((
            now.saturating_duration_since(span.oldest),
            now.saturating_duration_since(span.newest),
        ))
    }

    fn unsynced_span(&self) -> MutexGuard<'_, Option<Unsynced>> {
        self.unsynced.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note_unsynced(&self, at: Instant) {
        let mut span = self.unsynced_span();
        *span = Some(match *span {
            Some(Unsynced { oldest, newest }) => Unsynced {
                oldest: oldest.min(at),
                newest: newest.max(at),
            },
            None => Unsynced {
                oldest: at,
                newest: at,
            },
        });
    }

    /// Records that `key` was just served, for LRU eviction (kept in memory; written to the
    /// index when eviction runs).
    pub fn note_use(&self, key: &Hash) {
        self.last_use.insert(*key, now_ms());
    }

    /// Sets the size limit for blobs, in bytes.
    pub fn set_max_bytes(&self, max: u64) {
        self.max_bytes.store(max, Ordering::Relaxed);
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes.load(Ordering::Relaxed)
    }

    /// Entries evicted since the store was opened.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// True when the blobs take more than the limit.
    pub fn over_limit(&self) -> bool {
        self.blob_bytes.load(Ordering::Relaxed) > self.max_bytes()
    }

    /// Evicts least-recently-used entries, then the blobs no entry names any more, until the
    /// blobs take at most 90 % of the limit. Returns the number of entries evicted.
    pub fn evict_to_limit(&self) -> Result<u64, StoreError> {
        let target = self.max_bytes() / 100 * EVICT_TO_PERCENT;
        if !self.over_limit() {
            return Ok(0);
        }
        let mut keys: Vec<(u64, Hash)> = Vec::new();
        {
            let tx = self.db.begin_read().map_err(index_err)?;
            let manifests = tx.open_table(MANIFESTS).map_err(index_err)?;
            let last_use = tx.open_table(LAST_USE).map_err(index_err)?;
            for item in manifests.iter().map_err(index_err)? {
                let (key, _) = item.map_err(index_err)?;
                let Ok(hash) = <Hash>::try_from(key.value()) else {
                    continue;
                };
                let used = match self.last_use.get(&hash) {
                    Some(t) => *t,
                    None => last_use
                        .get(hash.as_slice())
                        .map_err(index_err)?
                        .map(|v| v.value())
                        .unwrap_or(0),
                };
                keys.push((used, hash));
            }
        }
        keys.sort();
        let batch = (keys.len() / 8).max(1);
        let mut evicted = 0u64;
        for chunk in keys.chunks(batch) {
            if self.blob_bytes.load(Ordering::Relaxed) <= target {
                break;
            }
            let tx = self.db.begin_write().map_err(index_err)?;
            {
                let mut manifests = tx.open_table(MANIFESTS).map_err(index_err)?;
                let mut last_use = tx.open_table(LAST_USE).map_err(index_err)?;
                for (_, key) in chunk {
                    manifests.remove(key.as_slice()).map_err(index_err)?;
                    last_use.remove(key.as_slice()).map_err(index_err)?;
                }
            }
            tx.commit().map_err(index_err)?;
            for (_, key) in chunk {
                self.manifests.remove(key);
                self.last_use.remove(key);
            }
            evicted += chunk.len() as u64;
            self.collect_garbage()?;
        }
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
        tracing::info!(
            "evicted {evicted} entries; blobs now {} bytes (limit {})",
            self.blob_bytes.load(Ordering::Relaxed),
            self.max_bytes()
        );
        Ok(evicted)
    }

    /// Removes blobs that no entry names (except those whose entry is about to be committed).
    fn collect_garbage(&self) -> Result<(), StoreError> {
        let mut referenced: std::collections::HashSet<Hash> = std::collections::HashSet::new();
        {
            let tx = self.db.begin_read().map_err(index_err)?;
            let manifests = tx.open_table(MANIFESTS).map_err(index_err)?;
            for item in manifests.iter().map_err(index_err)? {
                let (_, value) = item.map_err(index_err)?;
                if let Ok(manifest) = bincode::deserialize::<Manifest>(value.value()) {
                    for entry in &manifest.entries {
                        referenced.extend(entry.result.outputs.iter().map(|o| o.blob.hash));
                    }
                }
            }
        }
        let garbage: Vec<Hash> = self
            .blobs
            .iter()
            .filter(|b| !referenced.contains(b.key()) && !self.fresh.contains_key(b.key()))
            .map(|b| *b.key())
            .collect();
        if garbage.is_empty() {
            return Ok(());
        }
        let _exclusive = self.delivering.write().unwrap_or_else(|e| e.into_inner());
        let tx = self.db.begin_write().map_err(index_err)?;
        {
            let mut blobs = tx.open_table(BLOBS).map_err(index_err)?;
            for hash in &garbage {
                blobs.remove(hash.as_slice()).map_err(index_err)?;
            }
        }
        tx.commit().map_err(index_err)?;
        for hash in &garbage {
            let _ = zccache_platform::fs::remove_file(&self.blob_path(hash));
            if let Some((_, meta)) = self.blobs.remove(hash) {
                self.blob_bytes.fetch_sub(meta.size, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Empties the store: index, blobs and memory. Safe while requests run: a hit whose blob
    /// vanishes becomes a miss.
    pub fn clear(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(index_err)?;
        tx.delete_table(MANIFESTS).map_err(index_err)?;
        tx.delete_table(BLOBS).map_err(index_err)?;
        tx.delete_table(LAST_USE).map_err(index_err)?;
        tx.delete_table(SOURCES).map_err(index_err)?;
        tx.open_table(MANIFESTS).map_err(index_err)?;
        tx.open_table(BLOBS).map_err(index_err)?;
        tx.open_table(LAST_USE).map_err(index_err)?;
        tx.commit().map_err(index_err)?;
        self.manifests.clear();
        self.last_use.clear();
        self.blobs.clear();
        self.blob_bytes.store(0, Ordering::Relaxed);
        if let Ok(dirs) = fs::read_dir(&self.artifacts) {
            for dir in dirs.flatten() {
                let _ = zccache_platform::fs::remove_dir_all(&dir.path());
            }
        }
        Ok(())
    }
}

/// A blob file's name back to its digest.
fn parse_hex(name: &str) -> Option<Hash> {
    if name.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(name.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(hash)
}

/// redb's page cache (its default is 1 GiB): the hit path reads manifests from memory, so
/// the index only needs enough cache for writes and the occasional cold lookup. 8 MiB: at
/// 50 000 entries, 16 MiB put the daemon at ~100 MB resident with no faster warm build.
const INDEX_CACHE_BYTES: usize = 8 << 20;

/// How long opening the index waits for a previous daemon to let go of it.
const INDEX_LOCK_WAIT: Duration = Duration::from_secs(5);

/// Opens the index, waiting while another process (a daemon that is exiting: its lock file is
/// released a moment before its index) still holds it.
fn open_index(path: &Path) -> Result<Database, redb::DatabaseError> {
    let deadline = Instant::now() + INDEX_LOCK_WAIT;
    loop {
        match Database::builder()
            .set_cache_size(INDEX_CACHE_BYTES)
            .create(path)
        {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Writes `contents` to `dest` with `mode`: staged beside it under an unpredictable name, then
/// renamed over it, so readers see the old file or the new one, never a partial one.
pub fn replace_file(dest: &Path, contents: &mut dyn Read, mode: u32) -> io::Result<()> {
    let dir = match dest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut staged = tempfile::Builder::new()
        .prefix(".zccache-")
        .tempfile_in(dir)?;
    io::copy(contents, &mut staged)?;
    zccache_platform::fs::set_path_mode(staged.path(), mode)?;
    staged.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

fn mtime_ns(meta: &fs::Metadata) -> i128 {
    zccache_platform::stamp::FileStamp::of(meta).mtime_ns
}

/// A name beside `dest` that nothing else uses, for a link that is then renamed over `dest`.
fn unique_sibling(dest: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.zccache-{}-{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINK: Delivery = Delivery::Link {
        not_older_than_ns: 0,
    };

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let root = CacheRoot::new(dir.path().join("cache"));
        root.ensure().unwrap();
        let store = Store::open(&root, 0o644).unwrap();
        (dir, store)
    }

    fn entry(blob: BlobRef) -> ManifestEntry {
        ManifestEntry {
            deps: vec![DepDigest {
                path: b"a.h".to_vec(),
                hash: [1; 32],
            }],
            env: vec![],
            shadow: None,
            result: StoredResult {
                outputs: vec![StoredOutput {
                    role: "object".into(),
                    blob,
                    executable: false,
                }],
                stdout: vec![],
                stderr: b"warning".to_vec(),
                compile_ms: 5,
                exit_code: 0,
            },
        }
    }

    #[test]
    fn the_fanout_dirs_made_ahead_are_where_blobs_go() {
        let (_dir, store) = store();
        store.make_fanout_dirs().unwrap();
        let dirs: Vec<String> = fs::read_dir(&store.artifacts)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(dirs.len(), 256);
        for byte in [0u8, 0x0a, 0xa0, 0xff] {
            let parent = store.blob_path(&[byte; 32]).parent().unwrap().to_path_buf();
            assert!(parent.is_dir(), "{} was not made", parent.display());
        }
        // Again over the existing ones, and a blob stored after them lands in one.
        store.make_fanout_dirs().unwrap();
        let blob = store.put_bytes(b"object code").unwrap();
        assert!(store.blob_is_intact(&blob.hash, &store.blob_path(&blob.hash)));
        assert_eq!(fs::read_dir(&store.artifacts).unwrap().count(), 256);
    }

    #[test]
    fn blobs_are_content_addressed_read_only_and_deliverable() {
        let (dir, store) = store();
        let blob = store.put_bytes(b"object code").unwrap();
        assert_eq!(blob.hash, *blake3::hash(b"object code").as_bytes());
        let path = store.blob_path(&blob.hash);
        assert_eq!(
            zccache_platform::fs::mode_of(&fs::metadata(&path).unwrap()) & 0o777,
            0o444
        );
        let out = dir.path().join("a.o");
        store.deliver(&blob, &out, LINK).unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"object code");
        // Delivering again over an existing (different) file replaces it.
        let other = dir.path().join("b.o");
        fs::write(&other, b"stale").unwrap();
        store
            .deliver(&blob, &other, Delivery::Copy { executable: false })
            .unwrap();
        assert_eq!(fs::read(&other).unwrap(), b"object code");
        assert_eq!(
            zccache_platform::fs::mode_of(&fs::metadata(&other).unwrap()) & 0o777,
            0o644
        );
        assert_eq!(store.usage(), (1, 11));
    }

    #[test]
    fn unsynced_entries_are_dated_until_a_sync_puts_them_on_disk() {
        let (_dir, store) = store();
        assert!(store.unsynced_age().is_none());
        let blob = store.put_bytes(b"object code").unwrap();
        store.add_entry(&[1; 32], entry(blob)).unwrap();
        let (oldest, newest) = store.unsynced_age().expect("an unsynced entry");
        assert!(oldest >= newest);
        std::thread::sleep(Duration::from_millis(20));
        store.add_entry(&[2; 32], entry(blob)).unwrap();
        let (oldest, newest) = store.unsynced_age().expect("unsynced entries");
        assert!(
            oldest >= Duration::from_millis(20),
            "the oldest keeps its date"
        );
        assert!(
            newest < Duration::from_millis(20),
            "the newest is the last commit"
        );
        store.sync().unwrap();
        assert!(store.unsynced_age().is_none());
    }

    #[test]
    fn stored_bytes_and_a_stored_file_are_one_blob() {
        let (dir, store) = store();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let from_bytes = store.put_bytes(&data).unwrap();
        let file = dir.path().join("big.o");
        fs::write(&file, &data).unwrap();
        let from_file = store.put_file(&file).unwrap();
        assert_eq!(from_bytes.hash, from_file.hash);
        assert_eq!(from_bytes.size, data.len() as u64);
        assert_eq!(from_bytes.hash, *blake3::hash(&data).as_bytes());
        assert_eq!(fs::read(store.blob_path(&from_bytes.hash)).unwrap(), data);
    }

    #[test]
    fn modified_blob_is_evicted_not_served() {
        let (dir, store) = store();
        let blob = store.put_bytes(b"object code").unwrap();
        let out = dir.path().join("a.o");
        store.deliver(&blob, &out, LINK).unwrap();
        // Someone appends to the output in place, through the hardlink; where outputs are
        // copies (Windows), to the blob itself.
        let victim = if zccache_platform::fs::HARDLINK_DELIVERY {
            out.clone()
        } else {
            store.blob_path(&blob.hash)
        };
        zccache_platform::fs::set_path_mode(&victim, 0o644).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(&victim)
            .unwrap()
            .write_all(b"!")
            .unwrap();
        let again = dir.path().join("again.o");
        assert!(matches!(
            store.deliver(&blob, &again, LINK),
            Err(DeliverError::Corrupt(_))
        ));
        assert!(!again.exists());
        assert_eq!(store.usage(), (0, 0));
    }

    #[test]
    fn manifests_survive_reopen_and_replace_same_deps() {
        let dir = tempfile::tempdir().unwrap();
        let root = CacheRoot::new(dir.path().join("cache"));
        root.ensure().unwrap();
        let key = [7u8; 32];
        {
            let store = Store::open(&root, 0o644).unwrap();
            let blob = store.put_bytes(b"x").unwrap();
            store.add_entry(&key, entry(blob)).unwrap();
            store.add_entry(&key, entry(blob)).unwrap();
        }
        let store = Store::open(&root, 0o644).unwrap();
        let manifest = store.manifest(&key).unwrap().unwrap();
        assert_eq!(manifest.entries.len(), 1);
        assert_eq!(manifest.entries[0].result.stderr, b"warning");
        assert_eq!(store.usage().0, 1);
    }

    #[test]
    fn an_index_still_held_by_an_exiting_daemon_is_waited_for_not_discarded() {
        // Regression: a daemon started while the previous one was still exiting found the
        // index locked, took it for corrupt and moved it aside, losing the cache.
        let dir = tempfile::tempdir().unwrap();
        let root = CacheRoot::new(dir.path().join("cache"));
        root.ensure().unwrap();
        let first = Store::open(&root, 0o644).unwrap();
        let blob = first.put_bytes(b"kept").unwrap();
        first.add_entry(&[7; 32], entry(blob)).unwrap();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(first);
        });
        let second = Store::open(&root, 0o644).unwrap();
        holder.join().unwrap();
        assert!(second.warnings().is_empty(), "{:?}", second.warnings());
        assert!(
            second.manifest(&[7; 32]).unwrap().is_some(),
            "entry survived"
        );
    }

    #[test]
    fn corrupt_index_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let root = CacheRoot::new(dir.path().join("cache"));
        root.ensure().unwrap();
        fs::write(
            root.index_path(),
            b"this is not a redb file at all, not even close",
        )
        .unwrap();
        let store = Store::open(&root, 0o644).unwrap();
        assert_eq!(store.warnings().len(), 1);
        assert!(store.manifest(&[0; 32]).unwrap().is_none());
    }

    #[test]
    fn eviction_removes_least_recently_used_entries_and_their_blobs() {
        let (_dir, store) = store();
        let mut blobs = Vec::new();
        for i in 0..10u8 {
            let blob = store.put_bytes(&vec![i; 1000]).unwrap();
            store.add_entry(&[i; 32], entry(blob)).unwrap();
            blobs.push(blob);
        }
        // Key 0 was used just now; the others long ago, oldest first.
        for i in 1..10u8 {
            store.last_use.insert([i; 32], i as u64);
        }
        store.note_use(&[0; 32]);
        store.set_max_bytes(5000);
        assert!(store.over_limit());
        let evicted = store.evict_to_limit().unwrap();
        assert!(evicted >= 5, "{evicted}");
        let (count, bytes) = store.usage();
        assert!(bytes <= 4500, "{bytes}");
        assert_eq!(count as usize, 10 - evicted as usize);
        assert!(
            store.manifest(&[0; 32]).unwrap().is_some(),
            "recently used entry survives"
        );
        assert!(
            store.manifest(&[1; 32]).unwrap().is_none(),
            "oldest entry is gone"
        );
        assert!(!store.blob_path(&blobs[1].hash).exists());
        assert!(store.blob_path(&blobs[0].hash).exists());
        assert_eq!(store.evictions(), evicted);
    }

    #[test]
    fn clear_empties_everything() {
        let (_dir, store) = store();
        let blob = store.put_bytes(b"x").unwrap();
        store.add_entry(&[1; 32], entry(blob)).unwrap();
        store.clear().unwrap();
        assert!(store.manifest(&[1; 32]).unwrap().is_none());
        assert_eq!(store.usage(), (0, 0));
        assert!(!store.blob_path(&blob.hash).exists());
    }

    #[test]
    fn source_records_keep_the_newest_per_key() {
        let (_dir, store) = store();
        let record = |key: u8| SourceRecord {
            key: [key; 32],
            parts: vec![("argument".into(), format!("-DV={key}"))],
            argv: vec![b"gcc".to_vec()],
            program: b"/usr/bin/gcc".to_vec(),
            cwd: b"/w".to_vec(),
            env: vec![],
            stored_ms: key as u64,
        };
        assert!(store.source_records(b"/w/a.c").unwrap().is_empty());
        for key in [1, 2, 1, 3, 4, 5] {
            let blob = store.put_bytes(&[key]).unwrap();
            store
                .add_entry_recorded(&[key; 32], entry(blob), Some((b"/w/a.c", record(key))))
                .unwrap();
        }
        let keys: Vec<u8> = store
            .source_records(b"/w/a.c")
            .unwrap()
            .iter()
            .map(|r| r.key[0])
            .collect();
        assert_eq!(
            keys,
            [5, 4, 3, 1],
            "newest first, one per key, at most four"
        );
        assert!(store.source_records(b"/w/b.c").unwrap().is_empty());
        store.clear().unwrap();
        assert!(store.source_records(b"/w/a.c").unwrap().is_empty());
    }

    #[test]
    fn repair_removes_orphan_files_and_drops_records_of_missing_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let root = CacheRoot::new(dir.path().join("cache"));
        root.ensure().unwrap();
        let (kept, lost);
        {
            let store = Store::open(&root, 0o644).unwrap();
            kept = store.put_bytes(b"kept").unwrap();
            store.add_entry(&[1; 32], entry(kept)).unwrap();
            lost = store.put_bytes(b"lost").unwrap();
            store.add_entry(&[2; 32], entry(lost)).unwrap();
            // Written but never committed: what a kill between the two leaves.
            let orphan = store.put_bytes(b"orphan").unwrap();
            assert!(store.blob_path(&orphan.hash).exists());
            zccache_platform::fs::remove_file(&store.blob_path(&lost.hash)).unwrap();
            fs::write(root.tmp_dir().join("blob-leftover"), b"partial").unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        let store = Store::open(&root, 0o644).unwrap();
        let (removed, dropped) = store.repair(std::time::SystemTime::now()).unwrap();
        assert_eq!((removed, dropped), (2, 1));
        assert_eq!(store.usage(), (1, 4));
        assert_eq!(store.warnings().len(), 1);
        assert!(store.blob_path(&kept.hash).exists());
        assert_eq!(fs::read_dir(root.tmp_dir()).unwrap().count(), 0);
        // Files newer than the daemon's start are never touched.
        let fresh = store.put_bytes(b"being written").unwrap();
        assert_eq!(
            store
                .repair(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
                .unwrap(),
            (0, 0)
        );
        assert!(store.blob_path(&fresh.hash).exists());
    }

    #[test]
    fn manifests_in_memory_stay_within_their_byte_budget_and_are_read_back_from_the_index() {
        let (_dir, store) = store();
        let blob = store.put_bytes(b"shared").unwrap();
        // A manifest with many dependencies, as a C++ file has: its size is what counts.
        let big = |i: usize| {
            let mut e = entry(blob);
            e.deps = (0..200)
                .map(|d| DepDigest {
                    path: format!("/usr/include/c++/14/bits/header_{i}_{d}.h").into_bytes(),
                    hash: [d as u8; 32],
                })
                .collect();
            e
        };
        let one = crate::manifest_bytes(&Manifest {
            entries: vec![big(0)],
        });
        assert!(
            one > 200 * (32 + 40),
            "{one} bytes estimated for 200 dependencies"
        );
        let budget = 20 * one;
        store.set_manifest_budget(budget);
        let key = |i: usize| {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            key
        };
        let count = 170;
        for i in 0..count {
            store.add_entry(&key(i), big(i)).unwrap();
            // Entry 0 is used all along: among the most recently used, it is never dropped.
            assert!(store.manifest(&key(0)).unwrap().is_some());
            let usage = store.manifest_memory();
            assert!(usage.bytes <= budget + one, "{usage:?} after {i}");
        }
        let usage = store.manifest_memory();
        assert!(usage.items < 21 && usage.items >= 10, "{usage:?}");
        assert!(usage.dropped >= (count - 21) as u64, "{usage:?}");
        assert!(
            store.manifests.get(&key(0)).is_some(),
            "the one in use was kept"
        );
        let old_held = (1..count / 2)
            .filter(|i| store.manifests.get(&key(*i)).is_some())
            .count();
        assert!(old_held < 10, "{old_held} of the older half still held");
        // Every one, dropped or not, is still served, read back from the index whole.
        for i in [0usize, 1, count / 2, count - 1] {
            let manifest = store.manifest(&key(i)).unwrap().expect("in the index");
            assert_eq!(manifest.entries[0].deps, big(i).deps, "entry {i}");
        }
        // Clearing the memo returns its bytes to zero.
        store.manifests.clear();
        assert_eq!(store.manifest_memory().bytes, 0);
    }
}
