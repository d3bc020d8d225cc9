//! `zccache-ci`: the CI commands (`gha-cache`, `warm`, `target-snapshot`), which `zccache`
//! runs in its place for those words. A program of their own so that their HTTP client, TLS,
//! zstd and the store's reader never load with the `zccache` that every compile starts.

#[path = "../ci_args.rs"]
#[allow(dead_code)]
mod ci_args;
use zccache_client as client;
#[path = "../gha.rs"]
mod gha;
#[path = "../target.rs"]
mod target;

use ci_args::{CiCmd, GhaCmd, SnapshotCmd};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "zccache",
    version,
    about = "zccache's CI commands (also run as `zccache gha-cache|warm|target-snapshot …`)."
)]
struct Cli {
    #[command(subcommand)]
    command: CiCmd,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            std::process::exit(e.exit_code());
        }
    };
    let config = match zccache_core::Config::from_process() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("zccache: {e}");
            std::process::exit(2);
        }
    };
    let endpoint = client::Endpoint::new(&config);
    let code = match cli.command {
        CiCmd::GhaCache(command) => match command {
            GhaCmd::Status => gha::status(),
            GhaCmd::Save { key, path, cache } => gha::save(&endpoint, &key, &path, cache),
            GhaCmd::Restore {
                key,
                restore_key,
                path,
                cache,
            } => gha::restore(&endpoint, &key, &restore_key, &path, cache),
        },
        CiCmd::Warm {
            target_dir,
            profile,
            target,
            lockfile,
            endpoint: _,
        } => target::warm(
            &endpoint,
            &target_dir,
            &profile,
            target.as_deref(),
            &lockfile,
        ),
        CiCmd::TargetSnapshot(command) => match command {
            SnapshotCmd::Save(args) => target::snapshot_save(&args),
            SnapshotCmd::Restore {
                archive,
                target_dir,
                workspace,
            } => target::snapshot_restore(&archive, &target_dir, &workspace),
        },
    };
    std::process::exit(code);
}
