//! Sessions, the compile journal and `analyze`, over real builds.

use crate::projects::{c_project, make_env};
use crate::sandbox::*;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

/// `zccache session-start <args>`: the id from its `export ZCCACHE_SESSION_ID=…` line.
fn session_start(sb: &Sandbox, env: &[(&str, &str)], args: &[&str]) -> String {
    let mut all = vec!["session-start"];
    all.extend_from_slice(args);
    let out = sb.ok_env(env, &all);
    let text = String::from_utf8(out.stdout).unwrap();
    let id = text
        .trim()
        .strip_prefix("export ZCCACHE_SESSION_ID=")
        .unwrap_or_else(|| panic!("not an export line: {text:?}"));
    id.to_string()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn session_json(sb: &Sandbox, command: &str, id: &str) -> Value {
    let out = sb.ok(&[command, id, "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn count_of(list: &Value, reason: &str) -> u64 {
    list.as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == reason)
        .map(|pair| pair[1].as_u64().unwrap())
        .unwrap_or(0)
}

#[test]
fn a_session_counts_a_make_build_exactly_and_journals_it() {
    let sb = Sandbox::new();
    c_project(&sb);
    // Work from before the session is not counted to it.
    sb.write_old("before.c", "int before(void) { return 0; }\n");
    sb.ok(&["gcc", "-c", "before.c", "-o", "before.o"]);
    let journal = sb.path("build.jsonl");
    let log = sb.path("build.log");
    let id = session_start(
        &sb,
        &[],
        &[
            "--stats",
            "--journal",
            journal.to_str().unwrap(),
            "--log",
            "build.log",
        ],
    );
    let in_session = [("ZCCACHE_SESSION_ID", id.as_str())];
    make_env(&sb, "build/app", &in_session);
    let mid = session_json(&sb, "session-stats", &id);
    // 11 compiles and the link, all misses (links are cached too).
    assert_eq!(
        (mid["hits"].as_u64(), mid["misses"].as_u64()),
        (Some(0), Some(12))
    );
    assert_eq!(count_of(&mid["non_cacheable"], "link"), 0);
    assert_eq!(mid["ended"], false);
    make_env(&sb, "clean", &in_session);
    make_env(&sb, "build/app", &in_session);
    // A compile outside the session, during it, is not counted to it.
    sb.ok(&["gcc", "-c", "before.c", "-o", "before.o"]);
    let run = sb.bare("proj", &["./build/app"]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "1.0 12 14\n");

    let end = sb.ok(&["session-end", &id]);
    let text = String::from_utf8_lossy(&end.stdout);
    assert!(
        text.contains("(ended)") && text.contains("50.0 %"),
        "{text}"
    );
    let after = sb.run(&["session-stats", &id]);
    assert!(!after.status.success());
    assert!(String::from_utf8_lossy(&after.stderr).contains("unknown session"));

    // The daemon's totals include the work outside the session.
    assert_eq!((sb.hits(), sb.misses()), (13, 13));

    // The session journal: one line per call in the session, in the documented shape.
    let lines = json_lines(&std::fs::read_to_string(&journal).unwrap());
    assert_eq!(lines.len(), 24, "11 compiles + 1 link, twice");
    let outcome = |v: &Value| v["outcome"].as_str().unwrap().to_string();
    let count = |name: &str| lines.iter().filter(|l| outcome(l) == name).count();
    assert_eq!(
        (
            count("miss"),
            count("hit"),
            count("link_miss"),
            count("link_hit")
        ),
        (11, 11, 1, 1)
    );
    for line in &lines {
        assert_eq!(line["session_id"], id.as_str());
        assert!(line["ts"].as_str().unwrap().ends_with('Z'));
        assert!(line["compiler"].as_str().unwrap().ends_with("gcc"));
        assert_eq!(line["cwd"], sb.path("proj").to_str().unwrap());
        assert!(line["latency_ns"].as_u64().unwrap() > 0);
        match outcome(line).as_str() {
            "link_miss" | "link_hit" => {
                assert_eq!(line["exit_code"], 0);
                let args = line["args"].as_array().unwrap();
                assert!(args.iter().all(|a| a != "-c"), "{line}");
            }
            _ => {
                assert_eq!(line["exit_code"], 0);
                let args = line["args"].as_array().unwrap();
                assert!(args.iter().any(|a| a == "-MMD"), "{line}");
            }
        }
    }
    // The readable log has the same calls.
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log_text.lines().count(), 24);
    assert!(log_text.contains(" hit ") && log_text.contains(" link_hit "));

    // The global journal has the session's lines and the two outside it.
    let global = std::fs::read_to_string(sb.cache.join("logs/compile_journal.jsonl")).unwrap();
    let global = json_lines(&global);
    assert_eq!(global.len(), 26);
    assert_eq!(
        global
            .iter()
            .filter(|l| l["session_id"] == id.as_str())
            .count(),
        24
    );

    // analyze rolls the session journal up into the same numbers, without the daemon.
    sb.ok(&["stop"]);
    let out = sb.ok(&["analyze", journal.to_str().unwrap(), "--json"]);
    let analysis: Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = &analysis["total"];
    assert_eq!(
        (
            total["calls"].as_u64(),
            total["hits"].as_u64(),
            total["misses"].as_u64(),
            total["non_cacheable"].as_u64()
        ),
        (Some(24), Some(11), Some(11), Some(0))
    );
    assert_eq!(
        (total["link_hits"].as_u64(), total["link_misses"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(analysis["hit_rate"].as_f64(), Some(50.0));
    assert_eq!(analysis["by_tool"][0][0], "gcc");
    assert!(analysis["slowest_misses"].as_array().unwrap().len() == 10);
    let out = sb.ok(&["analyze", journal.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("src/main.c") && table.contains("slowest misses"));
    assert_eq!(
        sb.daemon_processes(),
        Vec::<u32>::new(),
        "analyze needs no daemon"
    );
}

#[test]
fn the_global_journal_records_each_outcome_and_rotates() {
    let sb = Sandbox::new();
    sb.write_old("ok.c", "int ok(void) { return 1; }\n");
    sb.write_old("bad.c", "int bad(void) { return }\n");
    sb.write_old("main.c", "int main(void) { return 0; }\n");
    let small = [("ZCCACHE_JOURNAL_MAX_SIZE", "4K")];
    sb.ok_env(&small, &["gcc", "-c", "ok.c", "-o", "ok.o"]);
    sb.ok_env(
        &[("ONLY_HERE", "yes")],
        &["gcc", "-c", "ok.c", "-o", "ok.o"],
    );
    let failed = sb.run(&["gcc", "-c", "bad.c", "-o", "bad.o"]);
    assert_eq!(failed.status.code(), Some(1));
    sb.ok(&["gcc", "main.c", "-o", "main"]);
    sb.status();
    let path = sb.cache.join("logs/compile_journal.jsonl");
    let lines = json_lines(&std::fs::read_to_string(&path).unwrap());
    let summary: Vec<(String, Value, Value)> = lines
        .iter()
        .map(|l| {
            (
                l["outcome"].as_str().unwrap().to_string(),
                l["exit_code"].clone(),
                l["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("miss".into(), 0.into(), Value::Null),
            ("hit".into(), 0.into(), Value::Null),
            ("error".into(), 1.into(), "compile_failed".into()),
            (
                "non_cacheable".into(),
                Value::Null,
                "compile_and_link".into()
            ),
        ]
    );
    assert_eq!(
        lines[0]["args"],
        serde_json::json!(["-c", "ok.c", "-o", "ok.o"])
    );
    assert_eq!(lines[0]["session_id"], Value::Null);
    // Only what differs from the daemon's environment is written.
    assert!(lines[0].get("env").is_none(), "{}", lines[0]);
    assert_eq!(lines[1]["env"], serde_json::json!([["ONLY_HERE", "yes"]]));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "the journal is private");

    // Past its size limit the journal is rotated, and the current file stays under it.
    for i in 0..40 {
        sb.ok(&["gcc", "-c", "ok.c", "-o", &format!("ok{i}.o")]);
    }
    sb.status();
    let previous = sb.cache.join("logs/compile_journal.1.jsonl");
    assert!(previous.exists(), "journal was not rotated");
    assert!(std::fs::metadata(&path).unwrap().len() <= 4096);
    let last = json_lines(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(last.last().unwrap()["args"][3], "ok39.o");
}

#[test]
fn session_mistakes_get_clear_messages() {
    let sb = Sandbox::new();
    let out = sb.run(&["session-start", "--journal", "build.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must end in .jsonl"));
    let out = sb.run(&["session-stats", "no-such-session"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no daemon is running"));
    sb.ok(&["start"]);
    let out = sb.run(&["session-stats", "no-such-session"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown session"));
    let out = sb.run(&["session-end"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a session id"));
    // --json prints the id as JSON for scripts that use jq.
    let out = sb.ok(&["session-start", "--json"]);
    let started: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = started["session_id"].as_str().unwrap();
    assert_eq!(session_json(&sb, "session-end", id)["ended"], true);
}

#[test]
fn a_session_left_open_by_a_killed_build_expires() {
    let sb = Sandbox::new();
    sb.write_old("a.c", "int a(void) { return 1; }\n");
    // The daemon starts here, with a one-second session timeout.
    sb.ok_env(&[("ZCCACHE_SESSION_TIMEOUT", "1")], &["start"]);
    // The session belongs to a shell that exits at once, as a killed build's would.
    let out = Command::new("sh")
        .args(["-c", &format!("{ZCCACHE} session-start --json; true")])
        .env("ZCCACHE_CACHE_DIR", &sb.cache)
        .output()
        .unwrap();
    assert_success(&out, &["sh", "-c", "session-start"]);
    let started: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = started["session_id"].as_str().unwrap().to_string();
    sb.ok_env(&[("ZCCACHE_SESSION_ID", &id)], &["gcc", "-c", "a.c"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        let report = session_json(&sb, "session-stats", &id);
        if !report["expired"].is_null() || Instant::now() > deadline {
            break report;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        report["expired"]
            .as_str()
            .unwrap_or_default()
            .contains("exited without session-end"),
        "{report}"
    );
    assert_eq!(report["misses"], 1);
    // session-end still gives the final numbers, with a note on stderr.
    let end = sb.ok(&["session-end", &id]);
    assert!(String::from_utf8_lossy(&end.stderr).contains("expired"));
    assert!(String::from_utf8_lossy(&end.stdout).contains("(expired)"));
    // A compile that still names it is counted to the daemon only.
    sb.ok_env(&[("ZCCACHE_SESSION_ID", &id)], &["gcc", "-c", "a.c"]);
    assert_eq!(sb.hits(), 1);
}
