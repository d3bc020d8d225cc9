//! zccache's cache directory in the GitHub cache, in few entries: a run uploads one *pack*
//! (the blobs that are new since the entry it restored, and the index) and one *manifest*
//! naming the chain of packs to unpack in order. Blobs are content-addressed and never change,
//! so each pack adds to the ones before it; the index of pack `k` names only blobs of packs
//! `0..=k`, so a chain restored up to any pack is consistent. After [`MAX_CHAIN`] packs a run
//! uploads everything again as a single pack.
//!
//! The service allows 200 new entries per minute per repository: a run adds two, or none when
//! it compiled nothing new.

use super::{blob, scratch_dir, CacheService, GhaError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Component, Path};

/// Packs in a chain before a run starts a new one.
pub const MAX_CHAIN: usize = 8;

/// What restore leaves in the cache directory for the save at the end of the run.
pub const BASELINE_FILE: &str = "gha-baseline.json";

const INDEX_FILE: &str = "index.redb";
const ARTIFACTS_DIR: &str = "artifacts";
/// The pack's record of its blobs' modification times to the nanosecond: the store serves a
/// blob only while its mtime is the one it recorded, and tar keeps whole seconds.
const MTIMES_FILE: &str = "mtimes.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackRef {
    pub key: String,
    pub bytes: u64,
    pub blobs: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    packs: Vec<PackRef>,
}

/// The state restored: the chain unpacked and the blobs it brought.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Baseline {
    manifest_key: String,
    packs: Vec<PackRef>,
    blobs: BTreeSet<String>,
}

/// Versions of the two kinds of entry: never those of `actions/cache` paths, and a zccache of
/// another version (whose index may differ) neither restores nor extends them.
fn manifest_version() -> String {
    super::archive::sha256_hex(concat!(
        "zccache cache manifest|",
        env!("CARGO_PKG_VERSION")
    ))
}

fn pack_version() -> String {
    super::archive::sha256_hex(concat!("zccache cache pack|", env!("CARGO_PKG_VERSION")))
}

/// What a restore brought back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub matched_key: String,
    /// Packs unpacked, and in the manifest (fewer when the service had evicted one).
    pub packs: usize,
    pub chain: usize,
    pub blobs: u64,
    pub bytes: u64,
}

/// What a save did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerSaved {
    /// Nothing was compiled that the restored entry lacks: nothing uploaded.
    NothingNew,
    Uploaded {
        /// Entries created (a pack and a manifest) and their bytes.
        entries: u32,
        bytes: u64,
        new_blobs: u64,
        chain: usize,
    },
    /// The key existed already (409).
    Exists,
}

/// The blob file names under the cache directory.
fn blobs(root: &Path) -> Result<BTreeSet<String>, GhaError> {
    let dir = root.join(ARTIFACTS_DIR);
    let mut found = BTreeSet::new();
    for entry in walkdir::WalkDir::new(&dir).min_depth(2).max_depth(2) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.io_error().map(|e| e.kind()) == Some(io::ErrorKind::NotFound) => break,
            Err(e) => {
                return Err(GhaError::Io {
                    path: dir.clone(),
                    error: io::Error::other(e.to_string()),
                })
            }
        };
        if entry.file_type().is_file() {
            found.insert(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(found)
}

/// Restores the cache directory `root` from the manifest `key` (or the first restore key that
/// matches). Only into a cache without an index: a cache already in use is left alone.
pub fn restore(
    service: &CacheService,
    root: &Path,
    key: &str,
    restore_keys: &[String],
) -> Result<Option<Restored>, GhaError> {
    if root.join(INDEX_FILE).exists() {
        return Err(GhaError::Input(format!(
            "{} already holds a cache index: restoring would replace it; left as it is",
            root.display()
        )));
    }
    let Some(found) = service.lookup(key, restore_keys, &manifest_version())? else {
        return Ok(None);
    };
    let scratch = scratch_dir()?;
    let manifest_file = scratch.path().join("manifest.json");
    let mut bytes = blob::download(&found.download_url, &manifest_file)?;
    let manifest: Manifest = serde_json::from_slice(
        &fs::read(&manifest_file).map_err(|e| GhaError::io(&manifest_file, e))?,
    )
    .map_err(|e| GhaError::Service(format!("manifest {:?}: {e}", found.matched_key)))?;
    fs::create_dir_all(root).map_err(|e| GhaError::io(root, e))?;
    let mut restored = Vec::new();
    for pack in &manifest.packs {
        // A pack the service evicted ends the chain: the packs before it are consistent.
        let Some(entry) = service.lookup(&pack.key, &[], &pack_version())? else {
            break;
        };
        let file = scratch.path().join("pack.tzst");
        bytes += blob::download(&entry.download_url, &file)?;
        unpack(&file, root)?;
        restored.push(pack.clone());
    }
    let baseline = Baseline {
        manifest_key: found.matched_key.clone(),
        packs: restored,
        blobs: blobs(root)?,
    };
    let path = root.join(BASELINE_FILE);
    fs::write(&path, serde_json::to_vec(&baseline).expect("serializes"))
        .map_err(|e| GhaError::io(&path, e))?;
    Ok(Some(Restored {
        matched_key: found.matched_key,
        packs: baseline.packs.len(),
        chain: manifest.packs.len(),
        blobs: baseline.blobs.len() as u64,
        bytes,
    }))
}

/// Unpacks a pack into `root`: blobs into `artifacts/`, the index last, by rename, so an
/// interrupted pack never leaves an index naming blobs it did not bring.
fn unpack(archive: &Path, root: &Path) -> Result<(), GhaError> {
    let file = File::open(archive).map_err(|e| GhaError::io(archive, e))?;
    let decoder = zstd::Decoder::new(file).map_err(|e| GhaError::io(archive, e))?;
    let mut tar = tar::Archive::new(decoder);
    tar.set_preserve_mtime(true);
    let staged_index = root.join(format!("{INDEX_FILE}.restoring"));
    let mut index = false;
    let mut mtimes: Vec<(String, i128)> = Vec::new();
    for entry in tar.entries().map_err(|e| GhaError::io(archive, e))? {
        let mut entry = entry.map_err(|e| GhaError::io(archive, e))?;
        let name = entry
            .path()
            .map_err(|e| GhaError::io(archive, e))?
            .into_owned();
        let parts: Vec<_> = name.components().collect();
        let dest = match parts.as_slice() {
            [Component::Normal(f)] if *f == INDEX_FILE => {
                index = true;
                staged_index.clone()
            }
            [Component::Normal(f)] if *f == MTIMES_FILE => {
                let mut text = Vec::new();
                io::Read::read_to_end(&mut entry, &mut text)
                    .map_err(|e| GhaError::io(archive, e))?;
                mtimes = serde_json::from_slice(&text).map_err(|e| {
                    GhaError::Service(format!("{}: {MTIMES_FILE}: {e}", archive.display()))
                })?;
                continue;
            }
            [Component::Normal(a), Component::Normal(_), Component::Normal(_)]
                if *a == ARTIFACTS_DIR && entry.header().entry_type().is_file() =>
            {
                root.join(&name)
            }
            _ => {
                return Err(GhaError::Unsafe {
                    archive: archive.to_path_buf(),
                    entry: name.to_string_lossy().into_owned(),
                })
            }
        };
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| GhaError::io(parent, e))?;
        }
        entry.unpack(&dest).map_err(|e| GhaError::io(&dest, e))?;
    }
    for (name, mtime_ns) in mtimes {
        let Some(path) = blob_path(root, &name) else {
            continue;
        };
        let time = std::time::UNIX_EPOCH
            + std::time::Duration::from_nanos(mtime_ns.clamp(0, u64::MAX as i128) as u64);
        File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(time))
            .map_err(|e| GhaError::io(&path, e))?;
    }
    if index {
        let path = root.join(INDEX_FILE);
        fs::rename(&staged_index, &path).map_err(|e| GhaError::io(&path, e))?;
    }
    Ok(())
}

/// Saves the cache directory `root` (its daemon stopped) under manifest `key`.
pub fn save(service: &CacheService, root: &Path, key: &str) -> Result<LayerSaved, GhaError> {
    let index = root.join(INDEX_FILE);
    if !index.is_file() {
        return Err(GhaError::Input(format!(
            "{}: no cache to save (no {INDEX_FILE})",
            root.display()
        )));
    }
    let baseline: Option<Baseline> = fs::read(root.join(BASELINE_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let now = blobs(root)?;
    let (mut chain, new): (Vec<PackRef>, Vec<&String>) = match &baseline {
        Some(base) if base.packs.len() < MAX_CHAIN && !base.packs.is_empty() => (
            base.packs.clone(),
            now.iter().filter(|b| !base.blobs.contains(*b)).collect(),
        ),
        _ => (Vec::new(), now.iter().collect()),
    };
    if baseline.is_some()
        && now
            .iter()
            .all(|b| baseline.as_ref().is_some_and(|base| base.blobs.contains(b)))
    {
        return Ok(LayerSaved::NothingNew);
    }
    let scratch = scratch_dir()?;
    let pack_file = scratch.path().join("pack.tzst");
    write_pack(root, &new, &pack_file)?;
    let pack_key = format!("{key}-pack");
    let mut bytes = 0;
    let mut entries = 0;
    if let Some(url) = service.create(&pack_key, &pack_version())? {
        let size = blob::upload(&url, &pack_file)?;
        service.finalize(&pack_key, &pack_version(), size)?;
        bytes += size;
        entries += 1;
    }
    chain.push(PackRef {
        key: pack_key,
        bytes: fs::metadata(&pack_file).map(|m| m.len()).unwrap_or(0),
        blobs: new.len() as u64,
    });
    let manifest_file = scratch.path().join("manifest.json");
    let manifest = Manifest {
        format: 1,
        packs: chain,
    };
    fs::write(
        &manifest_file,
        serde_json::to_vec(&manifest).expect("serializes"),
    )
    .map_err(|e| GhaError::io(&manifest_file, e))?;
    let Some(url) = service.create(key, &manifest_version())? else {
        return Ok(LayerSaved::Exists);
    };
    let size = blob::upload(&url, &manifest_file)?;
    service.finalize(key, &manifest_version(), size)?;
    Ok(LayerSaved::Uploaded {
        entries: entries + 1,
        bytes: bytes + size,
        new_blobs: new.len() as u64,
        chain: manifest.packs.len(),
    })
}

/// Where blob `name` lives under `root`; `None` for a name that is not a blob's.
fn blob_path(root: &Path, name: &str) -> Option<std::path::PathBuf> {
    (name.len() > 2 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| root.join(ARTIFACTS_DIR).join(&name[..2]).join(name))
}

/// A pack: the given blobs, their modification times and the index.
fn write_pack(root: &Path, blobs: &[&String], out: &Path) -> Result<(), GhaError> {
    let file = File::create(out).map_err(|e| GhaError::io(out, e))?;
    let encoder = zstd::Encoder::new(BufWriter::new(file), 3).map_err(|e| GhaError::io(out, e))?;
    let mut builder = tar::Builder::new(encoder);
    builder.mode(tar::HeaderMode::Complete);
    let mut mtimes = Vec::with_capacity(blobs.len());
    for name in blobs {
        let Some(path) = blob_path(root, name) else {
            continue;
        };
        let relative = path.strip_prefix(root).expect("under the root");
        let meta = fs::metadata(&path).map_err(|e| GhaError::io(&path, e))?;
        builder
            .append_path_with_name(&path, relative)
            .map_err(|e| GhaError::io(&path, e))?;
        mtimes.push((
            name.to_string(),
            zccache_platform::stamp::FileStamp::of(&meta).mtime_ns,
        ));
    }
    let text = serde_json::to_vec(&mtimes).expect("serializes");
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o600);
    builder
        .append_data(&mut header, MTIMES_FILE, &text[..])
        .map_err(|e| GhaError::io(out, e))?;
    let index = root.join(INDEX_FILE);
    builder
        .append_path_with_name(&index, INDEX_FILE)
        .map_err(|e| GhaError::io(&index, e))?;
    let encoder = builder.into_inner().map_err(|e| GhaError::io(out, e))?;
    let writer = encoder.finish().map_err(|e| GhaError::io(out, e))?;
    writer
        .into_inner()
        .map_err(|e| GhaError::io(out, e.into_error()))?
        .sync_all()
        .map_err(|e| GhaError::io(out, e))
}
