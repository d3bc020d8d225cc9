//! The compile journal's line format: one JSON object per compile, shared by the daemon that
//! writes it and `zccache analyze` that reads it.

use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// The journal's file name under `<root>/logs/`.
pub const JOURNAL_FILE: &str = "compile_journal.jsonl";

/// The rotated-out previous journal.
pub const JOURNAL_PREVIOUS_FILE: &str = "compile_journal.1.jsonl";

/// How a call was handled, as the journal names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalOutcome {
    /// Served from the cache.
    Hit,
    /// Compiled (and stored, unless a reason such as a file edited during the compile stopped it).
    Miss,
    /// The compiler failed, or the daemon could not handle the call.
    Error,
    /// Passed through to the compiler; `reason` says why.
    NonCacheable,
    /// A link served from the cache.
    LinkHit,
    /// A link run and stored.
    LinkMiss,
}

impl JournalOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            JournalOutcome::Hit => "hit",
            JournalOutcome::Miss => "miss",
            JournalOutcome::Error => "error",
            JournalOutcome::NonCacheable => "non_cacheable",
            JournalOutcome::LinkHit => "link_hit",
            JournalOutcome::LinkMiss => "link_miss",
        }
    }
}

/// One journal line: enough to replay the call (compiler, args, cwd, env) and to see what the
/// cache did with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// When the daemon received the call, ISO 8601 UTC with milliseconds.
    pub ts: String,
    pub outcome: JournalOutcome,
    /// Why a call was not cacheable, or why a compiled result was not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The compiler's full path.
    pub compiler: String,
    /// The arguments after the compiler, as the build passed them.
    pub args: Vec<String>,
    pub cwd: String,
    /// Variables the call set differently from the daemon's own environment; omitted when
    /// the call inherited the daemon's environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
    /// `None` when the client ran the compiler itself (not cacheable).
    pub exit_code: Option<i32>,
    /// The session the call was counted to (`ZCCACHE_SESSION_ID`), if any.
    pub session_id: Option<String>,
    /// Wall-clock time the daemon spent on the call.
    pub latency_ns: u64,
    /// A hit served from an entry another checkout stored (`ZCCACHE_PATH_REMAP=auto`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub worktree_hit: bool,
    /// Why a call that asked for path remapping was keyed by its real paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remap_fallback: Option<String>,
}

/// `2026-03-17T10:30:00.123Z` for `time`.
pub fn iso8601_utc(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days` algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_iso8601_utc() {
        let at = |secs: u64, ms: u64| {
            iso8601_utc(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_773_743_400, 123), "2026-03-17T10:30:00.123Z");
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
    }

    #[test]
    fn lines_round_trip_in_the_documented_shape() {
        let entry = JournalEntry {
            ts: "2026-03-17T10:30:00.123Z".into(),
            outcome: JournalOutcome::Hit,
            reason: None,
            compiler: "/usr/bin/clang++".into(),
            args: vec!["-c".into(), "foo.cpp".into(), "-o".into(), "foo.o".into()],
            cwd: "/project/build".into(),
            env: vec![("CC".into(), "clang".into())],
            exit_code: Some(0),
            session_id: None,
            latency_ns: 1_234_567,
            worktree_hit: false,
            remap_fallback: None,
        };
        let line = serde_json::to_string(&entry).unwrap();
        assert_eq!(
            line,
            r#"{"ts":"2026-03-17T10:30:00.123Z","outcome":"hit","compiler":"/usr/bin/clang++","args":["-c","foo.cpp","-o","foo.o"],"cwd":"/project/build","env":[["CC","clang"]],"exit_code":0,"session_id":null,"latency_ns":1234567}"#
        );
        assert_eq!(serde_json::from_str::<JournalEntry>(&line).unwrap(), entry);
        let non_cacheable: JournalEntry = serde_json::from_str(
            r#"{"ts":"t","outcome":"non_cacheable","reason":"link","compiler":"cc","args":[],"cwd":"/","exit_code":null,"session_id":"s","latency_ns":1}"#,
        )
        .unwrap();
        assert_eq!(non_cacheable.outcome, JournalOutcome::NonCacheable);
        assert_eq!(non_cacheable.reason.as_deref(), Some("link"));
        assert!(non_cacheable.env.is_empty());
    }
}
