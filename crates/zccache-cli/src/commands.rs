//! Subcommands: `start`, `stop`, `status`, `clear`, sessions, `analyze`, `--version` (and
//! `exec`, which `main` sends to `exec.rs` before clap sees it; it is listed here for `--help`).

use crate::client::Endpoint;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use zccache_core::Config;
use zccache_protocol::{Request, Response, StatusReport};

/// Words that select a subcommand rather than a compiler.
pub fn is_command(word: &str) -> bool {
    crate::ci_args::CI_COMMANDS.contains(&word)
        || word.starts_with('-')
        || matches!(
            word,
            "start"
                | "stop"
                | "status"
                | "clear"
                | "help"
                | "session-start"
                | "session-stats"
                | "session-end"
                | "analyze"
                | "inspect"
                | "exec"
                | "cargo-registry"
                | "fp"
                | "ino"
                | "download"
                | "defender-exclusions"
        )
}

#[derive(Parser)]
#[command(
    name = "zccache",
    version,
    about = "A local-first compiler cache. Use as `zccache <compiler> args…`.",
    after_help = "Compiling: zccache [--strict-paths=off|consistent|absolute] <compiler> args…\n\
        \n\
        --strict-paths (or ZCCACHE_STRICT_PATHS; 1 = absolute) fails a gcc/clang call before\n\
        the compiler runs when an include-path flag (-I, -isystem, -iquote, -idirafter,\n\
        -include, -include-pch, -imacros, -F, -iframework, -imsvc, /I) mixes '/' and '\\'\n\
        within a path or across the call (consistent), or is not a forward-slash absolute\n\
        path free of . and .. components (absolute). Response files are checked expanded.\n\
        \n\
        ZCCACHE_COMPILE_PRIORITY=auto|low|normal|idle|high: the CPU priority of the tools the\n\
        daemon runs (auto: normal, or low while the CPUs are 95 % busy)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Convert an Arduino `.ino` sketch into a `.ino.cpp` (the Arduino include, prototypes
    /// for the functions it defines, `#line` directives naming the sketch).
    Ino {
        /// The `.ino` sketch.
        #[arg(long)]
        input: PathBuf,
        /// The `.ino.cpp` to write (whole or not at all).
        #[arg(long)]
        output: PathBuf,
        /// Accepted for compatibility with zccache 1.15, which parsed the sketch with libclang;
        /// this converter needs no compiler.
        #[arg(long = "clang-arg", allow_hyphen_values = true)]
        clang_args: Vec<String>,
        /// Do not put `#include <Arduino.h>` first.
        #[arg(long)]
        no_arduino_include: bool,
    },
    /// Download (and optionally unpack) an artifact through the download daemon, waiting
    /// until it is published; prints its path, sha256 and unpack directory.
    ///
    /// `zccache download URL [PATH]` or `zccache download [PATH] --url URL`; without PATH
    /// the artifact goes to a path under the cache root chosen from the URL. More control
    /// (daemon, get/wait/status/cancel, exists, JSON) is in `zccache-download`.
    Download(crate::download::DownloadArgs),
    /// Start the daemon for this cache root (it also starts on first use).
    Start,
    /// Stop the daemon.
    Stop,
    /// Inspect or change Windows Defender's real-time scan exclusion for the cache root
    /// (prints that it is Windows-only and exits 0 elsewhere).
    #[command(subcommand)]
    DefenderExclusions(crate::defender::DefenderCmd),
    /// Show daemon and cache statistics.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove every cached entry.
    Clear,
    /// Open a session: compiles run with ZCCACHE_SESSION_ID set to its id are counted to it.
    /// Prints `export ZCCACHE_SESSION_ID=…` for `eval "$(zccache session-start)"`.
    SessionStart {
        /// Kept for compatibility: every session keeps statistics.
        #[arg(long)]
        stats: bool,
        /// Also write a readable line per compile of this session to FILE.
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
        /// Also write this session's journal lines to FILE (must end in .jsonl).
        #[arg(long, value_name = "FILE.jsonl")]
        journal: Option<PathBuf>,
        /// Print {"session_id": …} as JSON instead of a shell export.
        #[arg(long)]
        json: bool,
    },
    /// Show a session's statistics so far.
    SessionStats {
        /// The session id (default: $ZCCACHE_SESSION_ID).
        id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// End a session and show its final statistics.
    SessionEnd {
        /// The session id (default: $ZCCACHE_SESSION_ID).
        id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Explain what the cache would do with a compile, and for a miss, what changed since the
    /// closest earlier compile of the same source. Runs nothing.
    ///
    /// `zccache inspect <compiler> args…`, or `zccache inspect <source file>` for the last
    /// compile of that file through zccache.
    Inspect {
        #[arg(long)]
        json: bool,
        /// A compiler and its arguments, or one source file.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "COMMAND"
        )]
        command: Vec<OsString>,
    },
    /// Run any deterministic tool through the cache, keyed by what the call declares:
    /// `zccache exec [--input F]… [--output F]… [--env NAME]… -- TOOL ARGS…`.
    Exec {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<OsString>,
    },
    /// Save, restore, key and clean the archive of cargo's downloaded crates and index
    /// (`registry/index`, `registry/cache`, `git/db`) that a fresh CI runner restores.
    #[command(subcommand)]
    CargoRegistry(RegistryCmd),
    /// The CI commands (gha-cache, warm, target-snapshot): run by the `zccache-ci` program
    /// beside this one, so that its network and archive code stays out of the compile path.
    #[command(flatten)]
    Ci(crate::ci_args::CiCmd),
    /// Whether files changed since a step last succeeded: `check` exits 0 (run) or 1 (skip);
    /// `mark-success`, `mark-failure`, `invalidate` keep the state in the cache file.
    Fp {
        /// The state file (e.g. .cache/lint.json).
        #[arg(long)]
        cache_file: PathBuf,
        /// `hash` (every file read each time) or `two-layer` (stat first).
        #[arg(long, default_value = "two-layer")]
        cache_type: String,
        /// The daemon's socket (default: this cache root's); `check` asks a running daemon
        /// and scans the files itself when there is none.
        #[arg(long)]
        endpoint: Option<PathBuf>,
        #[command(subcommand)]
        command: FpCmd,
    },
    /// Summarize a compile journal (hits and misses by tool, output type and source; the
    /// slowest misses; why calls were not cacheable). Works without the daemon.
    Analyze {
        /// A journal: `~/.zccache/logs/compile_journal.jsonl` or a session's.
        file: PathBuf,
        #[arg(long)]
        json: bool,
        /// How many rows per table.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
}

#[derive(Subcommand)]
enum RegistryCmd {
    /// Save the cargo registry to `<cache root>/cargo-registry/<key>.tar.gz` (or --output).
    Save {
        /// Cache key (the archive's file name when --output is not given).
        #[arg(long)]
        key: String,
        /// Cargo home directory (default: $CARGO_HOME, else ~/.cargo).
        #[arg(long)]
        cargo_home: Option<PathBuf>,
        /// Write the archive exactly here.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Restore the cargo registry saved under a key.
    Restore {
        #[arg(long)]
        key: String,
        #[arg(long)]
        cargo_home: Option<PathBuf>,
    },
    /// Print a key for the content of Cargo.lock.
    Hash {
        #[arg(long, default_value = "Cargo.lock")]
        lockfile: PathBuf,
    },
    /// Remove the saved registry archives.
    Clean,
}

#[derive(Subcommand)]
pub(crate) enum FpCmd {
    /// Exit 0 when the selected files changed since the last success (run the step), 1 when
    /// not (skip it).
    Check {
        /// Root directory to scan.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// File extensions to include, without the dot (not with --include).
        #[arg(long)]
        ext: Vec<String>,
        /// Globs relative to the root (not with --ext).
        #[arg(long)]
        include: Vec<String>,
        /// Directory or file names, or globs, to leave out.
        #[arg(long)]
        exclude: Vec<String>,
    },
    /// The step succeeded on what the last check saw.
    MarkSuccess,
    /// The step failed: the next check says run.
    MarkFailure,
    /// Forget the state: the next check says run.
    Invalidate,
}

pub fn main(args: &[OsString]) -> i32 {
    if let [_, flag] = args {
        if flag == "--version" || flag == "-V" {
            // What clap prints, without building the whole command tree first: build scripts
            // and wrappers ask for it to tell which zccache they have, often once per run.
            println!("zccache {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let config = match Config::from_process() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("zccache: {e}");
            return 2;
        }
    };
    let endpoint = Endpoint::new(&config);
    match cli.command {
        None => {
            let _ = <Cli as clap::CommandFactory>::command().print_help();
            println!();
            0
        }
        Some(Cmd::Ino {
            input,
            output,
            clang_args: _,
            no_arduino_include,
        }) => {
            let options = zccache_ino::Options {
                arduino_include: !no_arduino_include,
            };
            match zccache_ino::convert_file(&input, &output, &options) {
                Ok(_) => 0,
                Err(e) => {
                    eprintln!("zccache ino: {e}");
                    1
                }
            }
        }
        Some(Cmd::Download(args)) => crate::download::main(&config, args),
        Some(Cmd::Start) => start(&endpoint),
        Some(Cmd::Stop) => stop(&endpoint),
        Some(Cmd::DefenderExclusions(command)) => crate::defender::main(&config.cache_dir, command),
        Some(Cmd::Status { json }) => status(&endpoint, json),
        Some(Cmd::Clear) => clear(&endpoint),
        Some(Cmd::SessionStart {
            stats: _,
            log,
            journal,
            json,
        }) => crate::sessions::start(&endpoint, log, journal, json),
        Some(Cmd::SessionStats { id, json }) => crate::sessions::stats(&endpoint, id, json, false),
        Some(Cmd::SessionEnd { id, json }) => crate::sessions::stats(&endpoint, id, json, true),
        Some(Cmd::Analyze { file, json, top }) => crate::analyze::main(&file, json, top),
        Some(Cmd::Fp {
            cache_file,
            cache_type,
            endpoint: socket,
            command,
        }) => {
            let mut endpoint = endpoint;
            if let Some(socket) = socket {
                endpoint.socket = socket;
            }
            crate::fp::main(&endpoint, &cache_file, &cache_type, command)
        }
        Some(Cmd::CargoRegistry(command)) => {
            let root = &config.cache_dir;
            match command {
                RegistryCmd::Save {
                    key,
                    cargo_home,
                    output,
                } => crate::registry::save(root, &key, cargo_home, output),
                RegistryCmd::Restore { key, cargo_home } => {
                    crate::registry::restore(root, &key, cargo_home)
                }
                RegistryCmd::Hash { lockfile } => crate::registry::hash(&lockfile),
                RegistryCmd::Clean => crate::registry::clean(root),
            }
        }
        Some(Cmd::Ci(_)) => crate::ci_args::exec_ci(args),
        Some(Cmd::Inspect { json, command }) => crate::inspect::main(&endpoint, &command, json),
        // Reached only if `main` did not route it (it always does); same behaviour either way.
        Some(Cmd::Exec { args: rest }) => {
            let mut all = args[..1].to_vec();
            all.push("exec".into());
            all.extend(rest);
            crate::exec::main(&all)
        }
    }
}

pub(crate) fn request(
    endpoint: &Endpoint,
    start: bool,
    request: &Request,
) -> Result<Response, String> {
    endpoint.request(start, request)
}

fn start(endpoint: &Endpoint) -> i32 {
    match request(endpoint, true, &Request::Ping) {
        Ok(Response::Pong { version, pid }) => {
            println!(
                "zccache daemon {version} running (pid {pid}), cache root {}",
                endpoint.root.path().display()
            );
            0
        }
        Ok(other) => {
            eprintln!("zccache: unexpected reply {other:?}");
            1
        }
        Err(e) => {
            eprintln!("zccache: cannot start the daemon: {e}");
            1
        }
    }
}

fn stop(endpoint: &Endpoint) -> i32 {
    if endpoint.stop_daemon() {
        println!("zccache daemon stopped");
    } else {
        println!("zccache daemon is not running");
    }
    0
}

fn clear(endpoint: &Endpoint) -> i32 {
    match request(endpoint, true, &Request::Clear) {
        Ok(Response::Done) => {
            println!("cache cleared: {}", endpoint.root.path().display());
            0
        }
        Ok(other) => {
            eprintln!("zccache: clear failed: {other:?}");
            1
        }
        Err(e) => {
            eprintln!("zccache: clear failed: {e}");
            1
        }
    }
}

fn status(endpoint: &Endpoint, json: bool) -> i32 {
    let report = match request(endpoint, false, &Request::Status) {
        Ok(Response::Status(report)) => report,
        Ok(other) => {
            eprintln!("zccache: unexpected reply {other:?}");
            return 1;
        }
        Err(_) => {
            if json {
                println!("{}", crate::client::not_running_json(endpoint));
            } else {
                println!(
                    "zccache daemon is not running (cache root {})",
                    endpoint.root.path().display()
                );
                if let Some(problem) = crate::client::not_running_problem(endpoint) {
                    println!("{problem}");
                }
            }
            return 0;
        }
    };
    if json {
        println!("{}", crate::client::status_json(&report));
    } else {
        print!("{}", render_status(&report));
    }
    0
}

/// One `label  value` row of a human-readable table.
pub(crate) fn line(out: &mut String, label: &str, value: String) {
    out.push_str(&format!("{label:<34}{value}\n"));
}

/// Rows for a breakdown: the total, then each reason indented.
pub(crate) fn breakdown(out: &mut String, label: &str, counts: &[(String, u64)]) {
    line(
        out,
        label,
        counts.iter().map(|(_, n)| n).sum::<u64>().to_string(),
    );
    for (reason, count) in counts {
        line(out, &format!("  {reason}"), count.to_string());
    }
}

/// The counters `status` and the session commands share.
pub(crate) struct Counters<'a> {
    pub hits: u64,
    pub worktree_hits: u64,
    pub remote_hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
    pub time_saved_ms: u64,
    pub errors: u64,
    pub non_cacheable: &'a [(String, u64)],
    pub not_stored: &'a [(String, u64)],
    pub worktree_fallbacks: &'a [(String, u64)],
}

/// Rows for hits, misses, hit rate, time saved, errors and the two breakdowns.
pub(crate) fn counter_rows(out: &mut String, c: &Counters) {
    line(out, "hits", c.hits.to_string());
    if c.worktree_hits > 0 {
        line(out, "  from another worktree", c.worktree_hits.to_string());
    }
    if c.remote_hits > 0 {
        line(out, "  from the remote", c.remote_hits.to_string());
    }
    line(out, "misses", c.misses.to_string());
    line(out, "hit rate", format!("{:.1} %", c.hit_rate));
    line(
        out,
        "time saved",
        format!("{:.1} s", c.time_saved_ms as f64 / 1000.0),
    );
    line(out, "errors", c.errors.to_string());
    breakdown(out, "not cacheable", c.non_cacheable);
    breakdown(out, "compiled, not stored", c.not_stored);
    if !c.worktree_fallbacks.is_empty() {
        breakdown(out, "path remap not applied", c.worktree_fallbacks);
    }
}

/// The human-readable status table.
fn render_status(r: &StatusReport) -> String {
    let mut out = String::new();
    line(
        &mut out,
        "zccache daemon",
        format!("{} (pid {})", r.version, r.pid),
    );
    line(&mut out, "uptime", human_duration(r.uptime_secs));
    line(&mut out, "cache root", r.cache_root.clone());
    counter_rows(
        &mut out,
        &Counters {
            hits: r.hits,
            worktree_hits: r.worktree_hits,
            remote_hits: r.remote_hits,
            misses: r.misses,
            hit_rate: r.hit_rate(),
            time_saved_ms: r.time_saved_ms,
            errors: r.errors,
            non_cacheable: &r.non_cacheable,
            not_stored: &r.not_stored,
            worktree_fallbacks: &r.worktree_fallbacks,
        },
    );
    line(
        &mut out,
        "compiler queries",
        format!(
            "{} answered from memory, {} run",
            r.queries_answered, r.queries_run
        ),
    );
    line(
        &mut out,
        "artifacts",
        format!(
            "{} ({} of {} limit)",
            r.artifact_count,
            human_bytes(r.artifact_bytes),
            human_bytes(r.max_size)
        ),
    );
    line(&mut out, "evictions", r.evictions.to_string());
    line(
        &mut out,
        "file watcher",
        match r.watching {
            Some((dirs, files)) => format!("on ({dirs} directories, {files} files)"),
            None => "off (hits check files with stat)".into(),
        },
    );
    if r.resident_bytes > 0 {
        line(&mut out, "daemon memory", human_bytes(r.resident_bytes));
    }
    let m = &r.memos;
    line(
        &mut out,
        "  manifests held",
        format!(
            "{} ({} of {} budget; {} dropped, read back when used)",
            m.manifests,
            human_bytes(m.manifest_bytes),
            human_bytes(m.manifest_budget),
            m.manifests_dropped
        ),
    );
    line(
        &mut out,
        "  other memos",
        format!(
            "{} file digests, {} entries vouched for, {} shadow checks ({})",
            m.file_digests,
            m.verified,
            m.shadow_candidates,
            human_bytes(m.shadow_candidate_bytes)
        ),
    );
    if let Some(remote) = &r.remote {
        line(&mut out, "remote", remote.clone());
        line(
            &mut out,
            "remote lookups",
            format!(
                "{} compiles served, {} not found, {} errors ({} damaged entries refused), \
                 mean {:.1} ms",
                r.remote_hits,
                r.remote_misses,
                r.remote_errors,
                r.remote_corrupt,
                r.remote_latency_us as f64 / 1000.0
            ),
        );
        line(
            &mut out,
            "remote uploads",
            format!(
                "{} ({} down, {} up, {} dropped)",
                r.remote_uploads,
                human_bytes(r.remote_bytes_down),
                human_bytes(r.remote_bytes_up),
                r.remote_dropped
            ),
        );
    }
    for warning in &r.warnings {
        line(&mut out, "warning", warning.clone());
    }
    out
}

pub(crate) fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_version_is_the_one_clap_prints() {
        let clap = <Cli as clap::CommandFactory>::command().render_version();
        assert_eq!(clap, format!("zccache {}\n", env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn commands_versus_compilers() {
        for word in [
            "start",
            "stop",
            "status",
            "clear",
            "--version",
            "-V",
            "--help",
            "exec",
        ] {
            assert!(is_command(word), "{word}");
        }
        for word in ["gcc", "/usr/bin/clang++", "cc", "./my-gcc"] {
            assert!(!is_command(word), "{word}");
        }
    }

    #[test]
    fn status_table_mentions_every_counter() {
        let report = StatusReport {
            version: "0.1.0".into(),
            pid: 42,
            hits: 3,
            misses: 1,
            non_cacheable: vec![("link".into(), 2)],
            not_stored: vec![("compile_failed".into(), 1)],
            artifact_count: 4,
            artifact_bytes: 2048,
            ..StatusReport::default()
        };
        let text = render_status(&report);
        for needle in ["pid 42", "75.0 %", "link", "compile_failed", "2.0 KiB"] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(61), "1m 1s");
        assert_eq!(human_duration(7260), "2h 1m");
    }
}
