//! The CI commands' arguments, shared by `zccache` (for `--help`) and `zccache-ci` (which runs
//! them): `gha-cache`, `warm`, `target-snapshot`. Their code (HTTP, TLS, zstd, the store) lives
//! in `zccache-ci` alone, so the `zccache` that every compile starts stays small and fast.

use clap::{Args, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

/// Words that select a CI command.
pub const CI_COMMANDS: &[&str] = &["gha-cache", "warm", "target-snapshot"];

#[derive(Subcommand)]
pub enum CiCmd {
    /// GitHub Actions' cache service (v2), from a workflow step: `--path` entries are
    /// interchangeable with actions/cache's for the same paths; `--cache` saves zccache's cache
    /// directory incrementally. Never fails a job: a missing or read-only runtime is reported.
    #[command(subcommand)]
    GhaCache(GhaCmd),
    /// Pre-populate target/ with cached artifacts for near-instant builds: puts rustc's
    /// cached outputs for the lockfile's crates into <target-dir>/<profile>/deps where
    /// missing, from results whose sources are unchanged. Reads the store (no daemon).
    Warm {
        /// Cargo target directory.
        #[arg(long, default_value = "target")]
        target_dir: PathBuf,
        /// Build profile (dev and test are `debug`).
        #[arg(long, default_value = "debug")]
        profile: String,
        /// Target triple, for builds with --target.
        #[arg(long)]
        target: Option<String>,
        /// The lockfile naming the crates to warm.
        #[arg(long, default_value = "Cargo.lock")]
        lockfile: PathBuf,
        /// Accepted for compatibility; the store is read directly.
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Save or restore a snapshot of cargo's target directory for the next CI run (the
    /// action's cache-target layer).
    #[command(subcommand)]
    TargetSnapshot(SnapshotCmd),
}

#[derive(Subcommand)]
pub enum SnapshotCmd {
    /// Prune, select and archive the target directory (tar + zstd).
    Save(SnapshotSaveArgs),
    /// Unpack a snapshot and date files so cargo sees unchanged crates fresh and rebuilds the
    /// ones whose sources changed.
    Restore {
        #[arg(long)]
        archive: PathBuf,
        #[arg(long, default_value = "target")]
        target_dir: PathBuf,
        #[arg(long, default_value = ".")]
        workspace: PathBuf,
    },
}

/// `target-snapshot save`'s options.
#[derive(Args)]
pub struct SnapshotSaveArgs {
    #[arg(long, default_value = "target")]
    pub target_dir: PathBuf,
    /// The workspace whose files are recorded, to tell changed sources on restore.
    #[arg(long, default_value = ".")]
    pub workspace: PathBuf,
    /// hot: cargo's metadata and the files read or written since the restore; full: the
    /// whole pruned tree.
    #[arg(long, default_value = "hot")]
    pub mode: String,
    /// Skip (or fail) when the selected files exceed this; 0 for no limit.
    #[arg(long, default_value = "2GiB")]
    pub max_size: String,
    /// skip or fail.
    #[arg(long, default_value = "skip")]
    pub too_large: String,
    #[arg(long, default_value = "true", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub prune_incremental: bool,
    #[arg(long, default_value = "false", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub prune_build_script_out: bool,
    /// The archive to write.
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(Subcommand)]
pub enum GhaCmd {
    /// Whether the cache service is reachable from here (ACTIONS_RESULTS_URL and
    /// ACTIONS_RUNTIME_TOKEN set).
    Status,
    /// Save paths (tar + zstd, then upload) or, with --cache, what zccache's cache directory
    /// gained since it was restored. Exit 0 when saved or already there, 1 when not.
    Save {
        /// Cache key (must be unique per content).
        #[arg(long)]
        key: String,
        /// A directory or file to cache; repeat for several.
        #[arg(long, required_unless_present = "cache", conflicts_with = "cache")]
        path: Vec<String>,
        /// zccache's cache directory (the daemon is stopped first).
        #[arg(long)]
        cache: bool,
    },
    /// Restore from the key, else the newest entry whose key starts with it, else the same for
    /// each --restore-key. Prints the key restored; exit 0 when restored, 1 when not.
    Restore {
        /// Cache key to look up.
        #[arg(long)]
        key: String,
        /// Key prefixes to fall back to, in order.
        #[arg(long)]
        restore_key: Vec<String>,
        /// Where to restore (the same paths as saved); repeat for several.
        #[arg(long, required_unless_present = "cache", conflicts_with = "cache")]
        path: Vec<String>,
        /// zccache's cache directory (only into one without an index; the daemon is stopped
        /// first).
        #[arg(long)]
        cache: bool,
    },
}

/// Runs `zccache-ci` (beside this program) with this call's arguments, in this process's place.
#[allow(dead_code)]
pub fn exec_ci(args: &[OsString]) -> i32 {
    let program = zccache_platform::process::sibling_executable("zccache-ci");
    let error = zccache_platform::process::exec_replace(
        std::process::Command::new(&program).args(&args[1..]),
    );
    eprintln!(
        "zccache: {}: {error} (the CI commands are the zccache-ci program, installed beside zccache)",
        program.display()
    );
    1
}
