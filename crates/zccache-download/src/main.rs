//! `zccache-download`: command-line front end to the download engine, for scripts and
//! for trying the engine by hand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use zccache_download::{
    download, DownloadRequest, DEFAULT_MAX_CONNECTIONS, DEFAULT_MIN_SEGMENT_SIZE,
};

#[derive(Parser)]
#[command(
    name = "zccache-download",
    version,
    about = "Download files (segmented, resumable, verified)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download URL (or the --part-url list) to --output.
    Get {
        /// URL of the whole file; may be omitted when --part-url is given (it is then ignored).
        #[arg(required_unless_present = "part_url")]
        url: Option<String>,
        /// Destination file.
        #[arg(long, short)]
        output: PathBuf,
        /// Expected sha256 (hex); on mismatch nothing is published.
        #[arg(long)]
        sha256: Option<String>,
        /// Maximum simultaneous connections.
        #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// Smallest segment of a ranged download, in bytes.
        #[arg(long, default_value_t = DEFAULT_MIN_SEGMENT_SIZE)]
        min_segment_size: u64,
        /// Part URL of an explicit multipart download, in order (repeatable).
        #[arg(long = "part-url")]
        part_url: Vec<String>,
        /// Extract the downloaded archive into this directory.
        #[arg(long)]
        unarchive: Option<PathBuf>,
        /// Print one JSON object instead of text lines.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let Command::Get {
        url,
        output,
        sha256,
        max_connections,
        min_segment_size,
        part_url,
        unarchive,
        json,
    } = Cli::parse().command;
    let request = DownloadRequest {
        url: url.unwrap_or_default(),
        part_urls: part_url,
        destination: output,
        sha256,
        max_connections,
        min_segment_size,
        unarchive,
    };
    match download(&request, None) {
        Ok(done) => {
            if json {
                let value = serde_json::json!({
                    "path": done.path,
                    "sha256": done.sha256,
                    "bytes": done.bytes,
                    "connections_used": done.connections_used,
                    "resumed_from": done.resumed_from,
                    "unarchived_to": done.unarchived_to,
                });
                println!("{value}");
            } else {
                println!("path: {}", done.path.display());
                println!("sha256: {}", done.sha256);
                println!("bytes: {}", done.bytes);
                println!("connections_used: {}", done.connections_used);
                println!("resumed_from: {}", done.resumed_from);
                if let Some(dir) = &done.unarchived_to {
                    println!("unarchived_to: {}", dir.display());
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("zccache-download: {e}");
            ExitCode::FAILURE
        }
    }
}
