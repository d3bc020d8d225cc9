//! `zccache download`: the blocking front of the download daemon (see
//! `zccache_download_client`), with zccache 1.15's flags. Exit 0 when the artifact is
//! published, 1 when it failed (or `--no-wait` found it locked), 2 on usage.

use clap::Args;
use zccache_core::{CacheRoot, Config};
use zccache_download_client::cli::TransferArgs;
use zccache_download_client::{status_lines, DownloadClient, FetchStatus};

#[derive(Args)]
pub struct DownloadArgs {
    /// The source URL, then optionally the archive/cache path (zccache 1.15 order: the path
    /// alone, with --url).
    #[arg(value_name = "URL|PATH", num_args = 0..=2)]
    positional: Vec<String>,
    /// Source URL for a normal single-file download.
    #[arg(long)]
    url: Option<String>,
    #[command(flatten)]
    transfer: TransferArgs,
    /// Print the daemon's status as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn main(config: &Config, args: DownloadArgs) -> i32 {
    let root = CacheRoot::new(&config.cache_dir);
    let request = match args.transfer.request(&root, args.positional, args.url) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("zccache download: {e}");
            return 2;
        }
    };
    let client = DownloadClient::new(Some(config.cache_dir.clone()));
    match client.fetch(request) {
        Ok(result) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&result.detail).unwrap_or_default()
                );
            } else {
                print!("{}", status_lines(&result.detail));
            }
            i32::from(result.status == FetchStatus::Locked)
        }
        Err(e) => {
            eprintln!("zccache download: {e}");
            1
        }
    }
}
