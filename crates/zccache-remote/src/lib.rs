//! zccache-remote: the second tier behind the local store, on Redis (the redis crate) or
//! S3-compatible storage (Apache OpenDAL), shared by every machine that points at it.
//!
//! Both clients are async; they run on a small tokio runtime owned by [`Remote`], never on the
//! daemon's request threads, and the thin client never links this crate. Every call is bounded
//! by its own deadline (for S3 OpenDAL's `TimeoutLayer` under its `RetryLayer`, and for both a
//! tokio timeout around the whole call: a dead Redis never answers on its connection, a
//! black-holed S3 endpoint never answers). A [`breaker::Breaker`] skips a failing remote for a
//! while. Entries are framed ([`frame`]) so whatever comes back is verified before use. Uploads
//! are write-behind: queued within a byte budget, sent by the runtime, dropped (and counted)
//! when the queue is full, flushed with a time limit at shutdown.

mod backend;
pub mod breaker;
pub mod config;
pub mod frame;

pub use config::{Mode, RemoteConfig, Target};

use backend::Backend;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest one lookup may take, end to end.
pub const GET_TIMEOUT: Duration = Duration::from_millis(2000);

/// How long after the tier is set up lookups wait for the first contact with the remote (a
/// connection and one request, made at once in the background), unless
/// `ZCCACHE_REMOTE_CONNECT_MS` says: [`FIRST_CONTACT_MIN`], or [`CONTACT_ROUND_TRIPS`] times
/// the time the connection took when that is longer, up to [`FIRST_CONTACT_MAX`]. A nearby
/// remote (loopback, LAN, a cloud region's own storage) answers well within the least; one
/// further away earns a wait in proportion to its distance; one that never answers costs a
/// build the least, after which lookups skip it until it has answered.
pub const FIRST_CONTACT_MIN: Duration = Duration::from_millis(50);
pub const FIRST_CONTACT_MAX: Duration = Duration::from_millis(500);
/// A request after the connection costs a TLS handshake (two round trips) and the request
/// itself; the rest is the server's own time.
pub const CONTACT_ROUND_TRIPS: u32 = 8;

/// How long lookups wait for the first contact, counted from the tier's set-up: `fixed` when
/// configured, else by the time the connection took (`None` while it is being made).
pub fn first_contact_wait(fixed: Option<Duration>, connected_after: Option<Duration>) -> Duration {
    if let Some(fixed) = fixed {
        return fixed;
    }
    match connected_after {
        None => FIRST_CONTACT_MIN,
        Some(took) => (took * CONTACT_ROUND_TRIPS).clamp(FIRST_CONTACT_MIN, FIRST_CONTACT_MAX),
    }
}

/// The longest one upload may take.
pub const PUT_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes waiting to be uploaded at most; past it uploads are dropped.
pub const QUEUE_BYTES: u64 = 64 << 20;

/// Uploads in flight at once.
const PARALLEL_PUTS: usize = 4;

/// How long a key found missing is not asked for again.
const NEGATIVE_TTL: Duration = Duration::from_secs(30);
const NEGATIVE_MAX: usize = 4096;

/// Combines an entry about to be uploaded (first) with the remote's (second): the bytes to
/// upload instead, or `None` to upload the first as it is.
pub type Merge = Box<dyn FnOnce(&[u8], &[u8]) -> Option<Vec<u8>> + Send>;

/// What a lookup gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// The entry, verified.
    Hit(Vec<u8>),
    Miss,
    /// Not asked: write-only mode, the breaker is open, or the key was missing a moment ago.
    Skipped,
    /// The remote failed (the reason is counted and kept for `status`).
    Failed,
    /// The remote answered with something that is not the entry: refused.
    Corrupt,
}

/// The tier's counters.
#[derive(Debug, Default)]
pub struct RemoteStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub errors: AtomicU64,
    pub corrupt: AtomicU64,
    pub uploads: AtomicU64,
    pub dropped: AtomicU64,
    pub bytes_down: AtomicU64,
    pub bytes_up: AtomicU64,
    /// Sum and count of lookup latencies (microseconds) that reached the remote.
    pub latency_us: AtomicU64,
    pub lookups: AtomicU64,
}

/// A copy of [`RemoteStats`] for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    pub corrupt: u64,
    pub uploads: u64,
    pub dropped: u64,
    pub bytes_down: u64,
    pub bytes_up: u64,
    /// Mean latency of the lookups that reached the remote, in microseconds.
    pub mean_latency_us: u64,
    pub queued_bytes: u64,
}

struct Shared {
    /// Replaced by a fresh one when a probe finds the remote back: the old one's connection
    /// died with the server (Redis), or its client would still be redialling with backoff.
    backend: parking_lot::RwLock<Backend>,
    config: RemoteConfig,
    breaker: Mutex<breaker::Breaker>,
    stats: RemoteStats,
    queued_bytes: AtomicU64,
    in_flight: AtomicU64,
    negative: Mutex<HashMap<String, Instant>>,
    puts: tokio::sync::Semaphore,
    /// Whether the first contact has had its answer, and how long its connection took (which
    /// sets how long lookups wait for it: [`first_contact_wait`]).
    contacted: Mutex<FirstContact>,
    contact_answered: parking_lot::Condvar,
    opened_at: Instant,
}

#[derive(Default)]
struct FirstContact {
    answered: bool,
    /// After the tier's set-up; `None` while the connection is being made.
    connected_after: Option<Duration>,
}

/// The remote tier of one daemon.
pub struct Remote {
    runtime: tokio::runtime::Runtime,
    shared: Arc<Shared>,
}

/// One contact with the remote: a connection to its address (refused or unresolvable: at
/// once), then one request through the storage client ("not found" is an answer), each within
/// [`GET_TIMEOUT`].
async fn contact(
    config: &RemoteConfig,
    backend: &Backend,
    connected: impl FnOnce(),
) -> Result<(), String> {
    let address = config.target.contact_address();
    match tokio::time::timeout(GET_TIMEOUT, tokio::net::TcpStream::connect(&address)).await {
        Ok(Ok(_)) => connected(),
        Ok(Err(e)) => return Err(format!("cannot connect to {address}: {e}")),
        Err(_) => {
            return Err(format!(
                "no connection to {address} within {} ms",
                GET_TIMEOUT.as_millis()
            ))
        }
    }
    match tokio::time::timeout(GET_TIMEOUT, backend.probe()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "connected to {address}, no answer within {} ms",
            GET_TIMEOUT.as_millis()
        )),
    }
}

impl Remote {
    /// Sets up the tier and contacts the remote in the background (see [`first_contact_wait`]).
    pub fn open(config: RemoteConfig) -> Result<Remote, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("zccache-remote")
            .enable_all()
            .build()
            .map_err(|e| format!("remote tier runtime: {e}"))?;
        let backend = {
            let _guard = runtime.enter();
            Backend::open(&config)?
        };
        let breaker = Mutex::new(breaker::Breaker::new(config.retry_after));
        let remote = Remote {
            runtime,
            shared: Arc::new(Shared {
                backend: parking_lot::RwLock::new(backend),
                config,
                breaker,
                stats: RemoteStats::default(),
                queued_bytes: AtomicU64::new(0),
                in_flight: AtomicU64::new(0),
                negative: Mutex::new(HashMap::new()),
                puts: tokio::sync::Semaphore::new(PARALLEL_PUTS),
                contacted: Mutex::new(FirstContact::default()),
                contact_answered: parking_lot::Condvar::new(),
                opened_at: Instant::now(),
            }),
        };
        remote.first_contact();
        Ok(remote)
    }

    /// Contacts the remote in the background as soon as the tier is set up, so a dead one
    /// is known before the build needs it (see [`first_contact_wait`]).
    fn first_contact(&self) {
        let backend = self.shared.backend.read().clone();
        self.contact_behind(backend, true);
    }

    pub fn config(&self) -> &RemoteConfig {
        &self.shared.config
    }

    /// Looks `key` up, within [`GET_TIMEOUT`]. Blocks the calling thread (a request's, after
    /// a local miss) but never a tokio worker.
    pub fn get(&self, key: &str) -> Fetched {
        self.get_many(&[key]).pop().unwrap_or(Fetched::Skipped)
    }

    /// Looks `keys` up side by side (one round trip's time for all, each within
    /// [`GET_TIMEOUT`]): a multi-file call's manifests, a unit's outputs. Answers in order.
    pub fn get_many(&self, keys: &[&str]) -> Vec<Fetched> {
        let shared = &self.shared;
        let mut answers: Vec<Option<Fetched>> = keys.iter().map(|key| self.skip(key)).collect();
        let started = Instant::now();
        let asked: Vec<(usize, tokio::task::JoinHandle<_>)> = answers
            .iter()
            .enumerate()
            .filter(|(_, answer)| answer.is_none())
            .map(|(i, _)| {
                let backend = shared.backend.read().clone();
                let path = keys[i].to_string();
                let read = self.runtime.spawn(async move {
                    tokio::time::timeout(GET_TIMEOUT, backend.read(&path)).await
                });
                (i, read)
            })
            .collect();
        for (i, read) in asked {
            let result = self.runtime.block_on(read);
            let fetched = match result {
                Ok(Ok(Ok(Some(bytes)))) => self.answered(keys[i], bytes),
                Ok(Ok(Ok(None))) => self.missing(keys[i]),
                Ok(Ok(Err(e))) => self.failed(e),
                Ok(Err(_)) => self.timed_out(),
                Err(e) => self.failed(format!("lookup task: {e}")),
            };
            if !matches!(fetched, Fetched::Failed) {
                shared
                    .stats
                    .latency_us
                    .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                shared.stats.lookups.fetch_add(1, Ordering::Relaxed);
            }
            answers[i] = Some(fetched);
        }
        answers
            .into_iter()
            .map(|answer| answer.unwrap_or(Fetched::Skipped))
            .collect()
    }

    /// `Some(Skipped)` when `key` is not to be asked for now: write-only mode, missing a
    /// moment ago, or the breaker open (whose time being up starts a probe instead).
    fn skip(&self, key: &str) -> Option<Fetched> {
        let shared = &self.shared;
        if !shared.config.mode.reads() {
            return Some(Fetched::Skipped);
        }
        {
            // Until the first contact has answered, lookups wait for it, up to its wait after
            // the tier was set up (which the connection may lengthen meanwhile); past that they
            // skip the remote until it answers.
            let mut contacted = shared.contacted.lock();
            while !contacted.answered {
                let wait =
                    first_contact_wait(shared.config.first_contact, contacted.connected_after);
                let deadline = shared.opened_at + wait;
                if Instant::now() >= deadline {
                    return Some(Fetched::Skipped);
                }
                shared.contact_answered.wait_until(&mut contacted, deadline);
            }
        }
        {
            let mut negative = shared.negative.lock();
            if let Some(at) = negative.get(key) {
                if at.elapsed() < NEGATIVE_TTL {
                    return Some(Fetched::Skipped);
                }
                negative.remove(key);
            }
        }
        let allowed = shared.breaker.lock().allow(Instant::now());
        match allowed {
            breaker::Allowed::Yes => None,
            breaker::Allowed::No => Some(Fetched::Skipped),
            breaker::Allowed::ProbeFirst => {
                self.probe_behind();
                Some(Fetched::Skipped)
            }
        }
    }

    /// The remote's bytes for `key`: the entry if its frame holds.
    fn answered(&self, key: &str, bytes: Vec<u8>) -> Fetched {
        let shared = &self.shared;
        shared.breaker.lock().success();
        shared
            .stats
            .bytes_down
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        match frame::decode(&bytes) {
            Ok(raw) => {
                shared.stats.hits.fetch_add(1, Ordering::Relaxed);
                Fetched::Hit(raw)
            }
            Err(why) => {
                tracing::warn!("remote entry {key}: {why}; ignored");
                shared.stats.corrupt.fetch_add(1, Ordering::Relaxed);
                Fetched::Corrupt
            }
        }
    }

    /// `key` is not on the remote: remembered for [`NEGATIVE_TTL`].
    fn missing(&self, key: &str) -> Fetched {
        let shared = &self.shared;
        shared.breaker.lock().success();
        shared.stats.misses.fetch_add(1, Ordering::Relaxed);
        let mut negative = shared.negative.lock();
        if negative.len() >= NEGATIVE_MAX {
            negative.clear();
        }
        negative.insert(key.to_string(), Instant::now());
        Fetched::Miss
    }

    /// Asks the remote, on the runtime, whether it answers again, with a fresh operator
    /// (the old one's connection died with the server, or its client is redialling).
    /// No compile waits for it: a remote that stays dead costs the build nothing past its
    /// first failures.
    fn probe_behind(&self) {
        let fresh = {
            let _guard = self.runtime.enter();
            Backend::open(&self.shared.config)
        };
        match fresh {
            Ok(backend) => self.contact_behind(backend, false),
            Err(why) => self.shared.breaker.lock().failure(Instant::now(), why),
        }
    }

    /// Contacts the remote through `backend` on the runtime ("not found" is an answer): an
    /// answer closes the breaker (and `backend` serves from then on); none opens it (at once for the
    /// first contact, which then also counts an error and lets waiting lookups go on).
    fn contact_behind(&self, backend: Backend, first: bool) {
        let shared = self.shared.clone();
        self.runtime.spawn(async move {
            let answer = contact(&shared.config, &backend, || {
                if first {
                    // The connection's time sets how long lookups wait for the answer.
                    shared.contacted.lock().connected_after = Some(shared.opened_at.elapsed());
                    shared.contact_answered.notify_all();
                }
            })
            .await;
            {
                let mut breaker = shared.breaker.lock();
                match answer {
                    Ok(()) => {
                        *shared.backend.write() = backend;
                        breaker.success();
                    }
                    Err(why) if first => {
                        tracing::warn!("remote {}: {why}", shared.config);
                        shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                        breaker.trip(Instant::now(), why);
                    }
                    Err(why) => breaker.failure(Instant::now(), why),
                }
            }
            if first {
                shared.contacted.lock().answered = true;
                shared.contact_answered.notify_all();
            }
        });
    }

    /// A lookup that got no answer within its deadline: the remote is skipped at once.
    fn timed_out(&self) -> Fetched {
        let why = format!("no answer within {} ms", GET_TIMEOUT.as_millis());
        tracing::warn!("remote {}: {why}", self.shared.config);
        self.shared.stats.errors.fetch_add(1, Ordering::Relaxed);
        self.shared.breaker.lock().trip(Instant::now(), why);
        Fetched::Failed
    }

    fn failed(&self, why: String) -> Fetched {
        tracing::warn!("remote {}: {why}", self.shared.config);
        self.shared.stats.errors.fetch_add(1, Ordering::Relaxed);
        self.shared.breaker.lock().failure(Instant::now(), why);
        Fetched::Failed
    }

    /// Queues `raw` for upload under `key` and returns at once; false when not queued (read-only
    /// mode, the breaker open, or the queue full: counted as dropped).
    pub fn put_behind(&self, key: String, raw: &[u8]) -> bool {
        self.enqueue(key, raw, None)
    }

    /// Like [`Remote::put_behind`], for an entry others may have written too (a manifest
    /// several machines add to): just before the upload, what the remote holds under `key`
    /// (when it answers, in time and undamaged) and `raw` are combined by `merge`; its
    /// `None` uploads `raw` as it is. Two machines merging at the same instant can still
    /// lose one's addition until it uploads again: the remote is a cache.
    pub fn put_merged_behind(&self, key: String, raw: &[u8], merge: Merge) -> bool {
        self.enqueue(key, raw, Some(merge))
    }

    fn enqueue(&self, key: String, raw: &[u8], merge: Option<Merge>) -> bool {
        let shared = self.shared.clone();
        if !shared.config.mode.writes() {
            return false;
        }
        if shared.breaker.lock().is_open() {
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let framed = frame::encode(raw);
        let size = framed.len() as u64;
        let queued = shared.queued_bytes.fetch_add(size, Ordering::SeqCst) + size;
        if queued > QUEUE_BYTES || raw.len() as u64 > frame::MAX_ENTRY {
            shared.queued_bytes.fetch_sub(size, Ordering::SeqCst);
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        shared.negative.lock().remove(&key);
        self.runtime.spawn(async move {
            let _permit = shared.puts.acquire().await;
            let backend = shared.backend.read().clone();
            let framed = match merge {
                Some(merge) => {
                    let theirs = tokio::time::timeout(GET_TIMEOUT, backend.read(&key)).await;
                    let merged = match theirs {
                        Ok(Ok(Some(bytes))) => frame::decode(&bytes).ok().and_then(|theirs| {
                            frame::decode(&framed)
                                .ok()
                                .and_then(|ours| merge(&ours, &theirs))
                        }),
                        _ => None,
                    };
                    merged.map_or(framed, |raw| frame::encode(&raw))
                }
                None => framed,
            };
            let sent = tokio::time::timeout(PUT_TIMEOUT, backend.write(&key, framed)).await;
            match sent {
                Ok(Ok(_)) => {
                    shared.breaker.lock().success();
                    shared.stats.uploads.fetch_add(1, Ordering::Relaxed);
                    shared.stats.bytes_up.fetch_add(size, Ordering::Relaxed);
                }
                Ok(Err(e)) => {
                    shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                    shared.breaker.lock().failure(Instant::now(), e);
                }
                Err(_) => {
                    shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                    shared
                        .breaker
                        .lock()
                        .failure(Instant::now(), "upload timed out".into());
                }
            }
            shared.queued_bytes.fetch_sub(size, Ordering::SeqCst);
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        });
        true
    }

    /// Waits until every queued upload is done, at most `limit`; the number still pending.
    pub fn flush(&self, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        loop {
            let pending = self.shared.in_flight.load(Ordering::SeqCst);
            if pending == 0 || Instant::now() >= deadline {
                return pending;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.shared.stats;
        let lookups = s.lookups.load(Ordering::Relaxed);
        StatsSnapshot {
            hits: s.hits.load(Ordering::Relaxed),
            misses: s.misses.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            corrupt: s.corrupt.load(Ordering::Relaxed),
            uploads: s.uploads.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            bytes_down: s.bytes_down.load(Ordering::Relaxed),
            bytes_up: s.bytes_up.load(Ordering::Relaxed),
            mean_latency_us: s
                .latency_us
                .load(Ordering::Relaxed)
                .checked_div(lookups)
                .unwrap_or(0),
            queued_bytes: self.shared.queued_bytes.load(Ordering::SeqCst),
        }
    }

    /// Why the remote is being skipped, when it is.
    pub fn problem(&self) -> Option<String> {
        let breaker = self.shared.breaker.lock();
        breaker.is_open().then(|| {
            format!(
                "remote {} unreachable, skipped for now: {}",
                self.shared.config,
                breaker.last_error.as_deref().unwrap_or("repeated failures")
            )
        })
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // Uploads still queued are abandoned: the runtime's threads must not outlive it.
        self.flush(Duration::from_millis(0));
    }
}
