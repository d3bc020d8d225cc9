//! `zccache analyze FILE.jsonl`: a compile journal rolled up, without the daemon.

use serde::Serialize;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use zccache_core::journal::{JournalEntry, JournalOutcome};

/// Source file extensions, for naming the source of a journal line.
const SOURCE_EXTENSIONS: &[&str] = &[
    "c", "cc", "cpp", "cxx", "c++", "cp", "C", "CC", "CPP", "m", "mm", "M", "s", "S", "sx", "i",
    "ii", "cu", "rs",
];

/// Calls and what became of them.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Counts {
    pub calls: u64,
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    pub non_cacheable: u64,
    pub link_hits: u64,
    pub link_misses: u64,
    /// Sum of the calls' latencies, in milliseconds.
    pub total_ms: f64,
}

impl Counts {
    fn add(&mut self, entry: &JournalEntry) {
        self.calls += 1;
        match entry.outcome {
            JournalOutcome::Hit => self.hits += 1,
            JournalOutcome::Miss => self.misses += 1,
            JournalOutcome::Error => self.errors += 1,
            JournalOutcome::NonCacheable => self.non_cacheable += 1,
            JournalOutcome::LinkHit => self.link_hits += 1,
            JournalOutcome::LinkMiss => self.link_misses += 1,
        }
        self.total_ms += entry.latency_ns as f64 / 1e6;
    }

    /// Hits over cacheable calls (hits and misses, links included), as a percentage.
    pub fn hit_rate(&self) -> f64 {
        let hits = self.hits + self.link_hits;
        let cacheable = hits + self.misses + self.link_misses;
        if cacheable == 0 {
            0.0
        } else {
            100.0 * hits as f64 / cacheable as f64
        }
    }
}

/// One of the slowest misses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowMiss {
    pub ms: f64,
    pub tool: String,
    pub source: String,
    pub ts: String,
}

/// The whole roll-up.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Analysis {
    pub lines: u64,
    /// Lines that are not journal entries (torn writes, other files).
    pub unreadable: u64,
    pub total: Counts,
    pub hit_rate: f64,
    pub by_tool: Vec<(String, Counts)>,
    pub by_output: Vec<(String, Counts)>,
    /// Sources with the most misses first.
    pub by_source: Vec<(String, Counts)>,
    pub slowest_misses: Vec<SlowMiss>,
    pub non_cacheable: Vec<(String, u64)>,
    pub sessions: u64,
}

/// Rolls up journal lines; `top` bounds the per-source and slowest-miss lists.
pub fn analyze(lines: impl Iterator<Item = String>, top: usize) -> Analysis {
    let mut analysis = Analysis::default();
    let mut by_tool: BTreeMap<String, Counts> = BTreeMap::new();
    let mut by_output: BTreeMap<String, Counts> = BTreeMap::new();
    let mut by_source: BTreeMap<String, Counts> = BTreeMap::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut sessions = std::collections::BTreeSet::new();
    let mut misses = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        analysis.lines += 1;
        let Ok(entry) = serde_json::from_str::<JournalEntry>(&line) else {
            analysis.unreadable += 1;
            continue;
        };
        let tool = tool_name(&entry);
        let sources = sources(&entry);
        analysis.total.add(&entry);
        by_tool.entry(tool.clone()).or_default().add(&entry);
        by_output
            .entry(output_kind(&entry, &tool))
            .or_default()
            .add(&entry);
        for source in &sources {
            by_source.entry(source.clone()).or_default().add(&entry);
        }
        if entry.outcome == JournalOutcome::NonCacheable {
            let reason = entry.reason.clone().unwrap_or_else(|| "unknown".into());
            *reasons.entry(reason).or_default() += 1;
        }
        if let Some(id) = &entry.session_id {
            sessions.insert(id.clone());
        }
        if matches!(
            entry.outcome,
            JournalOutcome::Miss | JournalOutcome::LinkMiss
        ) {
            misses.push(SlowMiss {
                ms: entry.latency_ns as f64 / 1e6,
                tool,
                source: if sources.is_empty() {
                    "-".into()
                } else {
                    sources.join(" ")
                },
                ts: entry.ts.clone(),
            });
        }
    }
    analysis.hit_rate = analysis.total.hit_rate();
    let by_calls = |map: BTreeMap<String, Counts>| {
        let mut rows: Vec<_> = map.into_iter().collect();
        rows.sort_by(|a, b| b.1.calls.cmp(&a.1.calls).then(a.0.cmp(&b.0)));
        rows
    };
    analysis.by_tool = by_calls(by_tool);
    analysis.by_output = by_calls(by_output);
    let mut by_source: Vec<_> = by_source.into_iter().collect();
    by_source.sort_by(|a, b| {
        (b.1.misses + b.1.errors)
            .cmp(&(a.1.misses + a.1.errors))
            .then(b.1.calls.cmp(&a.1.calls))
            .then(a.0.cmp(&b.0))
    });
    by_source.truncate(top);
    analysis.by_source = by_source;
    misses.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    misses.truncate(top);
    analysis.slowest_misses = misses;
    let mut reasons: Vec<_> = reasons.into_iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    analysis.non_cacheable = reasons;
    analysis.sessions = sessions.len() as u64;
    analysis
}

/// The compiler's file name (`clang++`, `rustc`).
fn tool_name(entry: &JournalEntry) -> String {
    Path::new(&entry.compiler)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| entry.compiler.clone())
}

/// Arguments that name source files.
fn sources(entry: &JournalEntry) -> Vec<String> {
    let mut previous_takes_value = false;
    let mut found = Vec::new();
    for arg in &entry.args {
        let takes_value = matches!(
            arg.as_str(),
            "-o" | "-MF" | "-MT" | "-MQ" | "-include" | "-x" | "--out-dir" | "-I" | "-isystem"
        );
        if !previous_takes_value && !arg.starts_with('-') && has_source_extension(arg) {
            found.push(arg.clone());
        }
        previous_takes_value = takes_value;
    }
    found
}

fn has_source_extension(arg: &str) -> bool {
    Path::new(arg)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| SOURCE_EXTENSIONS.contains(&e))
}

/// What the call produced: the `-o` file's extension, or what the mode implies.
fn output_kind(entry: &JournalEntry, tool: &str) -> String {
    let args = &entry.args;
    let value_of = |flag: &str| {
        args.iter().enumerate().find_map(|(i, arg)| {
            if arg == flag {
                args.get(i + 1).cloned()
            } else {
                arg.strip_prefix(flag)
                    .and_then(|rest| rest.strip_prefix('=').or(Some(rest)))
                    .filter(|rest| !rest.is_empty())
                    .map(String::from)
            }
        })
    };
    let is_rust = tool.contains("rustc") || tool.contains("clippy");
    if is_rust {
        if value_of("--emit").is_some_and(|emit| !emit.contains("link")) {
            return "rmeta".into();
        }
        return match value_of("--crate-type").as_deref() {
            Some("bin") => "(executable)".into(),
            Some("proc-macro") => "so (proc-macro)".into(),
            Some("cdylib" | "dylib") => "so".into(),
            Some("staticlib") => "a".into(),
            _ => "rlib".into(),
        };
    }
    if let Some(output) = value_of("-o") {
        return match Path::new(&output).extension() {
            Some(ext) => ext.to_string_lossy().into_owned(),
            None => "(no extension)".into(),
        };
    }
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has("-c") {
        "o".into()
    } else if has("-S") {
        "s".into()
    } else if has("-E") {
        "(stdout)".into()
    } else {
        "(executable)".into()
    }
}

pub fn main(file: &Path, json: bool, top: usize) -> i32 {
    let reader = match std::fs::File::open(file) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => {
            eprintln!("zccache: cannot read {}: {e}", file.display());
            return 1;
        }
    };
    let analysis = analyze(reader.lines().map_while(Result::ok), top);
    if json {
        println!(
            "{}",
            serde_json::to_string(&analysis).unwrap_or_else(|_| "{}".into())
        );
    } else {
        print!("{}", render(file, &analysis));
    }
    0
}

fn render(file: &Path, a: &Analysis) -> String {
    use crate::commands::line;
    let mut out = String::new();
    line(
        &mut out,
        "journal",
        format!(
            "{} ({} lines, {} unreadable, {} sessions)",
            file.display(),
            a.lines,
            a.unreadable,
            a.sessions
        ),
    );
    let t = &a.total;
    line(&mut out, "calls", t.calls.to_string());
    line(&mut out, "hits", (t.hits + t.link_hits).to_string());
    line(&mut out, "misses", (t.misses + t.link_misses).to_string());
    line(&mut out, "errors", t.errors.to_string());
    line(&mut out, "not cacheable", t.non_cacheable.to_string());
    line(&mut out, "hit rate", format!("{:.1} %", a.hit_rate));
    table(&mut out, "by tool", &a.by_tool);
    table(&mut out, "by output", &a.by_output);
    table(&mut out, "by source (most misses first)", &a.by_source);
    if !a.slowest_misses.is_empty() {
        out.push_str("\nslowest misses\n");
        for miss in &a.slowest_misses {
            out.push_str(&format!(
                "  {:>10.1} ms  {:<12} {}\n",
                miss.ms, miss.tool, miss.source
            ));
        }
    }
    if !a.non_cacheable.is_empty() {
        out.push_str("\nnot cacheable, by reason\n");
        for (reason, count) in &a.non_cacheable {
            out.push_str(&format!("  {reason:<32}{count:>8}\n"));
        }
    }
    out
}

fn table(out: &mut String, title: &str, rows: &[(String, Counts)]) {
    if rows.is_empty() {
        return;
    }
    out.push_str(&format!(
        "\n{title:<34}{:>8}{:>8}{:>8}{:>8}{:>8}{:>10}{:>12}\n",
        "calls", "hits", "misses", "errors", "n/c", "hit rate", "total ms"
    ));
    for (name, c) in rows {
        out.push_str(&format!(
            "  {name:<32}{:>8}{:>8}{:>8}{:>8}{:>8}{:>9.1}%{:>12.1}\n",
            c.calls,
            c.hits + c.link_hits,
            c.misses + c.link_misses,
            c.errors,
            c.non_cacheable,
            c.hit_rate(),
            c.total_ms
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(outcome: &str, compiler: &str, args: &[&str], ms: u64, extra: &str) -> String {
        let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        format!(
            r#"{{"ts":"2026-01-01T00:00:00.000Z","outcome":"{outcome}","compiler":"{compiler}","args":[{}],"cwd":"/w","exit_code":0,"session_id":"s1","latency_ns":{}{extra}}}"#,
            args.join(","),
            ms * 1_000_000
        )
    }

    fn known_journal() -> Vec<String> {
        vec![
            line(
                "miss",
                "/usr/bin/clang++",
                &["-c", "a.cpp", "-o", "a.o"],
                300,
                "",
            ),
            line(
                "hit",
                "/usr/bin/clang++",
                &["-c", "a.cpp", "-o", "a.o"],
                2,
                "",
            ),
            line(
                "miss",
                "/usr/bin/clang++",
                &["-c", "b.cpp", "-o", "b.o"],
                500,
                "",
            ),
            line("hit", "/usr/bin/gcc", &["-c", "-I", "inc.c", "m.c"], 1, ""),
            line(
                "non_cacheable",
                "/usr/bin/gcc",
                &["a.o", "b.o", "-o", "app"],
                1,
                r#","reason":"link""#,
            ),
            line(
                "miss",
                "/r/bin/rustc",
                &["--crate-name", "x", "src/lib.rs", "--crate-type", "lib"],
                900,
                "",
            ),
            "not json".into(),
            String::new(),
        ]
    }

    #[test]
    fn a_known_journal_gives_known_numbers() {
        let a = analyze(known_journal().into_iter(), 10);
        assert_eq!(a.lines, 7);
        assert_eq!(a.unreadable, 1);
        assert_eq!(
            (
                a.total.calls,
                a.total.hits,
                a.total.misses,
                a.total.non_cacheable
            ),
            (6, 2, 3, 1)
        );
        assert!((a.hit_rate - 40.0).abs() < 1e-9);
        assert_eq!(a.sessions, 1);
        let tool = |name: &str| &a.by_tool.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!((tool("clang++").calls, tool("clang++").hits), (3, 1));
        assert_eq!((tool("gcc").calls, tool("gcc").non_cacheable), (2, 1));
        let output = |name: &str| a.by_output.iter().find(|(n, _)| n == name).unwrap().1.calls;
        assert_eq!(output("o"), 4);
        assert_eq!(output("(no extension)"), 1);
        assert_eq!(output("rlib"), 1);
        // The -I value is not a source; m.c is.
        let sources: Vec<&str> = a.by_source.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(sources, ["a.cpp", "b.cpp", "src/lib.rs", "m.c"]);
        let slowest: Vec<(u64, &str)> = a
            .slowest_misses
            .iter()
            .map(|m| (m.ms as u64, m.source.as_str()))
            .collect();
        assert_eq!(
            slowest,
            [(900, "src/lib.rs"), (500, "b.cpp"), (300, "a.cpp")]
        );
        assert_eq!(a.non_cacheable, [("link".to_string(), 1)]);
    }

    #[test]
    fn top_bounds_the_lists_and_the_table_renders() {
        let a = analyze(known_journal().into_iter(), 1);
        assert_eq!(a.slowest_misses.len(), 1);
        assert_eq!(a.by_source.len(), 1);
        let text = render(Path::new("build.jsonl"), &a);
        for needle in ["by tool", "clang++", "slowest misses", "link", "40.0 %"] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}
