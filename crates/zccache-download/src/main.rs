//! `zccache-download`: the download daemon and its command-line client.
//!
//! `daemon start|stop|status|run`, `fetch` (blocking), `get` (start or join, print the id),
//! `wait`, `status`, `cancel`, `exists`; `--json` for one JSON object per command.
//! `fetch --no-daemon` runs the engine in this process instead.
//!
//! Exit codes: 0 done (or, for `exists`, the state was reported), 1 failed or cancelled or
//! refused, 2 bad usage, 3 `wait` timed out with the transfer still running.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use zccache_download::daemon::{self, DaemonOptions};
use zccache_download::{download, DownloadRequest};
use zccache_download_client::cli::TransferArgs;
use zccache_download_client::{
    status_lines, ClientError, DownloadClient, DownloadStatus, FetchRequest, FetchStatus, Phase,
};

#[derive(Parser)]
#[command(
    name = "zccache-download",
    version,
    about = "zccache's download daemon and its client: shared, segmented, resumable, verified downloads",
    after_help = "Exit codes: 0 done, 1 failed/cancelled/refused, 2 usage, 3 wait timed out (still running)."
)]
struct Cli {
    /// Print one JSON object instead of text lines.
    #[arg(long, global = true)]
    json: bool,
    /// The cache root whose download daemon to use (default: ZCCACHE_CACHE_DIR, else ~/.zccache).
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Control the download daemon.
    Daemon {
        #[command(subcommand)]
        action: DaemonAction,
    },
    /// Download URL to DEST (or a path chosen from the URL under the cache root) and wait
    /// until it is published (and unpacked).
    Fetch(FetchArgs),
    /// Start (or join) the download and print its id without waiting.
    Get(FetchArgs),
    /// Wait for download ID to end.
    Wait {
        id: u64,
        /// Give up waiting after this many milliseconds (exit 3).
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
    /// Show download ID.
    Status { id: u64 },
    /// Cancel download ID (for every client attached to it); its part file stays to resume.
    Cancel { id: u64 },
    /// Say what is at DEST for URL: absent, cached, partial, downloading or stale.
    Exists { url: String, dest: PathBuf },
}

#[derive(Subcommand)]
enum DaemonAction {
    /// Start the daemon unless it runs.
    Start,
    /// Stop the daemon (running transfers stop and are resumed by the next fetch).
    Stop,
    /// Show the daemon's state.
    Status,
    /// Run the daemon in the foreground (what `start` runs).
    #[command(hide = true)]
    Run {
        #[arg(long)]
        notify_ready: bool,
        /// Exit after this many idle seconds (0: never).
        #[arg(long, default_value_t = 1800)]
        idle_timeout: u64,
    },
}

#[derive(Args)]
struct FetchArgs {
    /// URL of the whole file (omit with --part-url), then where to publish it (default: a
    /// path under the cache root chosen from the URL).
    #[arg(value_name = "URL|DEST", num_args = 0..=2)]
    positional: Vec<String>,
    #[command(flatten)]
    transfer: TransferArgs,
    /// Run the transfer in this process, without the daemon (no sharing, no records).
    #[arg(long)]
    no_daemon: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let client = DownloadClient::new(cli.cache_dir.clone());
    let code = match cli.command {
        Command::Daemon { action } => daemon_command(&client, action, cli.json),
        Command::Fetch(args) if args.no_daemon => direct(&client, args, cli.json),
        Command::Fetch(args) => fetch(&client, args, false, cli.json),
        Command::Get(args) => fetch(&client, args, true, cli.json),
        Command::Wait { id, timeout_ms } => {
            let status = client.handle(id).wait(timeout_ms);
            match status {
                Ok(status) if !status.phase.is_terminal() => {
                    print_status(&status, cli.json);
                    3
                }
                other => report(other, cli.json),
            }
        }
        Command::Status { id } => report(client.handle(id).status(), cli.json),
        Command::Cancel { id } => match client.handle(id).cancel() {
            Ok(status) => {
                print_status(&status, cli.json);
                0
            }
            Err(e) => fail(&e),
        },
        Command::Exists { url, dest } => match client.exists(&url, &dest) {
            Ok(state) => {
                if cli.json {
                    println!("{}", serde_json::to_string(&state).unwrap_or_default());
                } else {
                    println!(
                        "kind: {}",
                        zccache_download_client::serde_plain(&state.kind)
                    );
                    println!("path: {}", state.cache_path.display());
                    if let Some(sha) = &state.sha256 {
                        println!("sha256: {sha}");
                    }
                    println!("reason: {}", state.reason);
                }
                0
            }
            Err(e) => fail(&e),
        },
    };
    ExitCode::from(code)
}

fn daemon_command(client: &DownloadClient, action: DaemonAction, json: bool) -> u8 {
    match action {
        DaemonAction::Run {
            notify_ready,
            idle_timeout,
        } => {
            let options = DaemonOptions {
                root: client.root().path().to_path_buf(),
                notify_ready,
                idle_timeout: (idle_timeout > 0).then(|| Duration::from_secs(idle_timeout)),
            };
            match daemon::run(options) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("zccache-download daemon: {e}");
                    1
                }
            }
        }
        DaemonAction::Start => match client.start_daemon() {
            Ok(started) => {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "started": started, "socket": client.socket() })
                    );
                } else if started {
                    println!("download daemon started ({})", client.socket().display());
                } else {
                    println!(
                        "download daemon already running ({})",
                        client.socket().display()
                    );
                }
                0
            }
            Err(e) => fail(&e),
        },
        DaemonAction::Stop => match client.stop_daemon() {
            Ok(stopped) => {
                if json {
                    println!("{}", serde_json::json!({ "stopped": stopped }));
                } else if stopped {
                    println!("download daemon stopped");
                } else {
                    println!("download daemon was not running");
                }
                0
            }
            Err(e) => fail(&e),
        },
        DaemonAction::Status => match client.daemon_status() {
            Ok(Some(status)) => {
                if json {
                    println!("{}", serde_json::to_string(&status).unwrap_or_default());
                } else {
                    println!(
                        "running: yes (pid {}, version {})",
                        status.pid, status.version
                    );
                    println!("socket: {}", status.socket.display());
                    println!("uptime: {} s", status.uptime_secs);
                    println!("active: {}", status.active);
                    println!("started: {}", status.started);
                    println!("shared: {}", status.shared);
                    println!("completed: {}", status.completed);
                    println!("failed: {}", status.failed);
                    println!("cached: {}", status.cached);
                    println!("bytes downloaded: {}", status.bytes_downloaded);
                }
                0
            }
            Ok(None) => {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "running": false, "socket": client.socket() })
                    );
                } else {
                    println!("running: no ({})", client.socket().display());
                }
                0
            }
            Err(e) => fail(&e),
        },
    }
}

/// The request `args` describe, or a usage message.
fn request_of(client: &DownloadClient, args: FetchArgs) -> Result<FetchRequest, String> {
    args.transfer.request(client.root(), args.positional, None)
}

fn fetch(client: &DownloadClient, args: FetchArgs, background: bool, json: bool) -> u8 {
    let mut request = match request_of(client, args) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("zccache-download: {e}");
            return 2;
        }
    };
    request.background = background;
    match client.fetch(request) {
        Ok(result) => {
            print_status(&result.detail, json);
            u8::from(result.status == FetchStatus::Locked)
        }
        Err(e) => fail(&e),
    }
}

/// `fetch --no-daemon`: the engine in this process.
fn direct(client: &DownloadClient, args: FetchArgs, json: bool) -> u8 {
    let request = match request_of(client, args) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("zccache-download: {e}");
            return 2;
        }
    };
    let engine = DownloadRequest {
        unarchive: request.destination_path_expanded.clone(),
        archive_kind: zccache_download::archive_kind(request.archive_format),
        ..DownloadRequest::from_fetch(&request)
    };
    match download(&engine, None) {
        Ok(done) => {
            let status = DownloadStatus {
                phase: Phase::Done,
                status: FetchStatus::Downloaded,
                cache_path: done.path,
                expanded_path: done.unarchived_to,
                downloaded_bytes: done.bytes,
                total_bytes: Some(done.bytes),
                resumed_bytes: done.resumed_from,
                connections: done.connections_used,
                sha256: Some(done.sha256),
                reason: "downloaded without the daemon".into(),
                ..DownloadStatus::started(0, &request)
            };
            print_status(&status, json);
            0
        }
        Err(e) => {
            eprintln!("zccache-download: {e}");
            1
        }
    }
}

fn print_status(status: &DownloadStatus, json: bool) {
    if json {
        println!("{}", serde_json::to_string(status).unwrap_or_default());
    } else {
        print!("{}", status_lines(status));
    }
}

fn report(status: Result<DownloadStatus, ClientError>, json: bool) -> u8 {
    match status {
        Ok(status) => {
            print_status(&status, json);
            u8::from(matches!(status.phase, Phase::Failed | Phase::Cancelled))
        }
        Err(e) => fail(&e),
    }
}

fn fail(error: &ClientError) -> u8 {
    eprintln!("zccache-download: {error}");
    1
}
