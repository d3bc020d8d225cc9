//! `zccache fp`: whether a step's input files changed since it last succeeded (see
//! `zccache_ci::fp`). Needs no daemon.

use crate::registry::fail;
use std::path::Path;

/// `zccache fp`: a check that cannot decide (a bad pattern, an unreadable file) says "run":
/// skipping a step on a guess could hide a change.
pub(crate) fn main(cache_file: &Path, cache_type: &str, command: crate::commands::FpCmd) -> i32 {
    use crate::commands::FpCmd;
    use zccache_ci::fp;
    let Some(kind) = fp::CacheType::parse(cache_type) else {
        eprintln!("zccache: --cache-type {cache_type:?}: expected hash or two-layer");
        return 2;
    };
    let result = match command {
        FpCmd::Check {
            root,
            ext,
            include,
            exclude,
        } => {
            let selection = fp::Selection {
                root,
                include,
                ext,
                exclude,
            };
            return match fp::check(cache_file, kind, &selection) {
                Ok(true) => 0,
                Ok(false) => 1,
                Err(e) => {
                    eprintln!("zccache: fp check: {e}; running the step");
                    0
                }
            };
        }
        FpCmd::MarkSuccess => fp::mark_success(cache_file).map(|pending| {
            if !pending {
                eprintln!("zccache: fp mark-success: no check was pending");
            }
        }),
        FpCmd::MarkFailure => fp::mark_failure(cache_file),
        FpCmd::Invalidate => fp::invalidate(cache_file),
    };
    match result {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}
