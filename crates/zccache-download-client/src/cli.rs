//! The flags `zccache download` and `zccache-download fetch|get` share, and how a command
//! line becomes a [`FetchRequest`].

use std::path::PathBuf;
use zccache_core::CacheRoot;

use crate::{default_destination, ArchiveFormat, FetchRequest, WaitMode};

#[derive(clap::Args, Debug, Clone)]
pub struct TransferArgs {
    /// One URL per part of an explicit multipart download, in concatenation order.
    #[arg(long = "part-url", value_name = "URL")]
    pub part_urls: Vec<String>,
    /// Unpack the artifact into this directory (replacing it).
    #[arg(long = "unarchive", visible_alias = "expanded", value_name = "DIR")]
    pub unarchive: Option<PathBuf>,
    /// auto (from the file name), tar, tar.gz, tar.xz, tar.zst or zip.
    #[arg(long, default_value = "auto")]
    pub archive_format: String,
    /// Expected SHA-256 of the artifact; on a mismatch nothing is published.
    #[arg(long, value_name = "SHA256")]
    pub sha256: Option<String>,
    /// Parallel range connections for a single URL (default 8).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Smallest range segment in bytes (default 8 MiB).
    #[arg(long)]
    pub min_segment_size: Option<u64>,
    /// Split a single-URL download into this many ranged parts.
    #[arg(long)]
    pub multipart_parts: Option<usize>,
    /// Return at once with `locked` if another client is downloading the artifact.
    #[arg(long)]
    pub no_wait: bool,
    /// Download and unpack again even if the recorded state is valid.
    #[arg(long)]
    pub force: bool,
    /// Report what would happen without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

impl TransferArgs {
    /// The request for `positional` words (a URL, which has `://`, and a path, in either
    /// order) and an optional `--url`; without a path, one under `root` chosen from the URL.
    pub fn request(
        &self,
        root: &CacheRoot,
        positional: Vec<String>,
        url: Option<String>,
    ) -> Result<FetchRequest, String> {
        let mut url = url;
        let mut path = None;
        for word in positional {
            if url.is_none() && word.contains("://") {
                url = Some(word);
            } else if path.is_none() {
                path = Some(PathBuf::from(word));
            } else {
                return Err(format!("unexpected argument {word:?}"));
            }
        }
        let url = url.unwrap_or_default();
        if url.is_empty() && self.part_urls.is_empty() {
            return Err("give a URL (or --url, or --part-url for each part)".into());
        }
        Ok(FetchRequest {
            destination_path: path
                .unwrap_or_else(|| default_destination(root, &url, &self.part_urls)),
            source_url: url,
            part_urls: self.part_urls.clone(),
            destination_path_expanded: self.unarchive.clone(),
            archive_format: ArchiveFormat::parse(&self.archive_format)?,
            expected_sha256: self.sha256.clone(),
            max_connections: self.max_connections,
            min_segment_size: self.min_segment_size,
            multipart_parts: self.multipart_parts,
            wait_mode: if self.no_wait {
                WaitMode::NoWait
            } else {
                WaitMode::Block
            },
            force: self.force,
            dry_run: self.dry_run,
            background: false,
        })
    }
}
