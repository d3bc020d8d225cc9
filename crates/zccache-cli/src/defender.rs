//! `zccache defender-exclusions check|add|remove`: Windows Defender's scan exclusion for the
//! cache root. On other systems every action prints that it is Windows-only and exits 0, so
//! scripts for several systems may call it unconditionally.

use std::path::Path;
use zccache_platform::defender::{self, Exclusion, NOT_WINDOWS};

#[derive(clap::Subcommand)]
pub(crate) enum DefenderCmd {
    /// Print whether the cache root is on Defender's exclusion list (no elevation needed).
    Check {
        /// Emit a JSON document on stdout instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add the cache root to Defender's exclusion list (needs an elevated shell).
    Add {
        #[arg(long)]
        json: bool,
    },
    /// Remove the cache root from Defender's exclusion list (needs an elevated shell).
    Remove {
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn main(root: &Path, command: DefenderCmd) -> i32 {
    let (action, json) = match command {
        DefenderCmd::Check { json } => ("check", json),
        DefenderCmd::Add { json } => ("add", json),
        DefenderCmd::Remove { json } => ("remove", json),
    };
    if !cfg!(windows) {
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "message": NOT_WINDOWS,
                    "platform": std::env::consts::OS,
                    "supported": false,
                })
            );
        } else {
            println!("{NOT_WINDOWS}");
        }
        return 0;
    }
    let shown = root.display().to_string();
    let result = match action {
        "check" => defender::check(root).map(|state| match state {
            Exclusion::Excluded(entry) => (
                serde_json::json!({"excluded": true, "entry": entry}),
                format!("{shown} is excluded from Defender's real-time scan (entry {entry})"),
            ),
            Exclusion::NotExcluded => (
                serde_json::json!({"excluded": false}),
                format!(
                    "{shown} is not excluded from Defender's real-time scan: every file the cache \
                     writes is scanned. Run `zccache defender-exclusions add` from an elevated shell."
                ),
            ),
            Exclusion::Unknown(detail) => (
                serde_json::json!({"excluded": null, "detail": detail}),
                format!("cannot tell whether {shown} is excluded: {detail}"),
            ),
        }),
        "add" => defender::add(root).map(|()| {
            (
                serde_json::json!({"added": true}),
                format!("added {shown} to Defender's exclusions"),
            )
        }),
        _ => defender::remove(root).map(|()| {
            (
                serde_json::json!({"removed": true}),
                format!("removed {shown} from Defender's exclusions"),
            )
        }),
    };
    match result {
        Ok((mut doc, text)) => {
            if json {
                doc["platform"] = "windows".into();
                doc["supported"] = true.into();
                doc["cache_root"] = shown.into();
                println!("{doc}");
            } else {
                println!("{text}");
            }
            0
        }
        Err(message) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "platform": "windows",
                        "supported": true,
                        "cache_root": shown,
                        "error": message,
                    })
                );
            }
            eprintln!("zccache defender-exclusions {action}: {message}");
            1
        }
    }
}
