//! `zccache exec`: any tool, cached by its declared inputs, outputs and variables.

use crate::sandbox::*;
use std::os::unix::fs::MetadataExt;
use std::process::{Output, Stdio};

/// `zccache exec <args>` in the work dir with extra variables; never asserts success.
fn exec_env(sb: &Sandbox, env: &[(&str, &str)], args: &[&str]) -> Output {
    settle();
    let mut command = sb.zccache();
    command.arg("exec");
    for (name, value) in env {
        command.env(name, value);
    }
    command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run zccache exec")
}

fn exec(sb: &Sandbox, args: &[&str]) -> Output {
    exec_env(sb, &[], args)
}

/// Sorts the words of `in.txt` into `sorted.txt`, writes an executable script, and prints
/// on both streams.
const SORT_AND_SCRIPT: &[&str] = &[
    "--input",
    "in.txt",
    "--output",
    "sorted.txt",
    "--output=bin/run.sh",
    "--",
    "sh",
    "-c",
    "tr ' ' '\\n' < in.txt | sort > sorted.txt && mkdir -p bin && \
     printf '#!/bin/sh\\necho hi\\n' > bin/run.sh && chmod 755 bin/run.sh && \
     echo sorted $(wc -l < sorted.txt) words && echo 'note: done' >&2",
];

#[test]
fn exec_cold_then_warm_restores_outputs_and_replays_streams() {
    let sb = Sandbox::new();
    sb.write_old("in.txt", "pear apple fig\n");
    let cold = exec(&sb, SORT_AND_SCRIPT);
    assert_success(&cold, SORT_AND_SCRIPT);
    assert_eq!(String::from_utf8_lossy(&cold.stdout), "sorted 3 words\n");
    assert_eq!(String::from_utf8_lossy(&cold.stderr), "note: done\n");
    assert_eq!((sb.hits(), sb.misses()), (0, 1));
    let sorted = sb.read("sorted.txt");
    assert_eq!(sorted, b"apple\nfig\npear\n");
    let script = sb.read("bin/run.sh");
    let (sorted_mode, script_mode) = (sb.mode("sorted.txt"), sb.mode("bin/run.sh"));
    assert_eq!(script_mode, 0o755);

    std::fs::remove_file(sb.path("sorted.txt")).unwrap();
    std::fs::remove_dir_all(sb.path("bin")).unwrap();
    let warm = exec(&sb, SORT_AND_SCRIPT);
    assert_eq!((sb.hits(), sb.misses()), (1, 1), "the second run is a hit");
    assert_eq!(warm.status.code(), cold.status.code());
    assert_eq!(warm.stdout, cold.stdout);
    assert_eq!(warm.stderr, cold.stderr);
    assert_eq!(sb.read("sorted.txt"), sorted);
    assert_eq!(sb.read("bin/run.sh"), script);
    assert_eq!(sb.mode("sorted.txt"), sorted_mode);
    assert_eq!(sb.mode("bin/run.sh"), 0o755);
    // Restored by copy: a file of its own, not a link into the store.
    assert_eq!(std::fs::metadata(sb.path("bin/run.sh")).unwrap().nlink(), 1);
    let ran = sb.bare(".", &["./bin/run.sh"]);
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "hi\n");
}

#[test]
fn exec_edited_input_misses() {
    let sb = Sandbox::new();
    sb.write_old("in.txt", "pear apple fig\n");
    assert_success(&exec(&sb, SORT_AND_SCRIPT), SORT_AND_SCRIPT);
    sb.write_old("in.txt", "kiwi banana\n");
    let edited = exec(&sb, SORT_AND_SCRIPT);
    assert_success(&edited, SORT_AND_SCRIPT);
    assert_eq!((sb.hits(), sb.misses()), (0, 2));
    assert_eq!(sb.read("sorted.txt"), b"banana\nkiwi\n");
    assert_eq!(String::from_utf8_lossy(&edited.stdout), "sorted 2 words\n");
    // Back to the first content: its entry is still there.
    sb.write_old("in.txt", "pear apple fig\n");
    assert_success(&exec(&sb, SORT_AND_SCRIPT), SORT_AND_SCRIPT);
    assert_eq!((sb.hits(), sb.misses()), (1, 2));
    assert_eq!(sb.read("sorted.txt"), b"apple\nfig\npear\n");
}

#[test]
fn exec_declared_variables_are_keyed_and_others_are_not() {
    let sb = Sandbox::new();
    let args = [
        "--env",
        "GREETING",
        "--output",
        "out.txt",
        "--",
        "sh",
        "-c",
        "echo \"$GREETING $OTHER\" > out.txt",
    ];
    let run = |greeting: &str, other: &str| {
        let out = exec_env(&sb, &[("GREETING", greeting), ("OTHER", other)], &args);
        assert_success(&out, &args);
        String::from_utf8(sb.read("out.txt")).unwrap()
    };
    assert_eq!(run("hello", "x"), "hello x\n");
    assert_eq!((sb.hits(), sb.misses()), (0, 1));
    // OTHER is not declared: the stored result is served, as documented.
    assert_eq!(run("hello", "y"), "hello x\n");
    assert_eq!((sb.hits(), sb.misses()), (1, 1));
    assert_eq!(run("bonjour", "y"), "bonjour y\n");
    assert_eq!((sb.hits(), sb.misses()), (1, 2));
}

#[test]
fn exec_failure_is_replayed_and_leaves_outputs_alone() {
    let sb = Sandbox::new();
    sb.write_old("in.txt", "data\n");
    let args = [
        "--input",
        "in.txt",
        "--output",
        "out.txt",
        "--",
        "sh",
        "-c",
        "echo partial > out.txt; echo 'error: bad data' >&2; echo some output; exit 3",
    ];
    let cold = exec(&sb, &args);
    assert_eq!(cold.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&cold.stderr), "error: bad data\n");
    assert_eq!((sb.hits(), sb.misses()), (0, 1));
    sb.write("out.txt", "mine\n");
    let warm = exec(&sb, &args);
    assert_eq!(warm.status.code(), Some(3));
    assert_eq!(warm.stdout, cold.stdout);
    assert_eq!(warm.stderr, cold.stderr);
    assert_eq!((sb.hits(), sb.misses()), (1, 1), "the failure is a hit");
    assert_eq!(
        sb.read_string("out.txt"),
        "mine\n",
        "a failed hit writes no output"
    );
}

#[test]
fn exec_success_without_its_declared_output_is_not_stored() {
    let sb = Sandbox::new();
    let args = ["--output", "never.txt", "--", "sh", "-c", "echo ran"];
    for _ in 0..2 {
        let out = exec(&sb, &args);
        assert_success(&out, &args);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    }
    assert_eq!((sb.hits(), sb.misses()), (0, 2));
    assert_eq!(sb.reason_count("not_stored", "missing_output"), 2);
}

#[test]
fn exec_runs_uncached_what_it_cannot_key() {
    let sb = Sandbox::new();
    sb.write_old("in.txt", "data\n");
    std::fs::create_dir_all(sb.path("dir")).unwrap();
    let cases: [(&[&str], &str); 3] = [
        (
            &["--input", "absent.txt", "--", "sh", "-c", "echo ran"],
            "exec_input_missing",
        ),
        (
            &["--input", "dir", "--", "sh", "-c", "echo ran"],
            "exec_input_directory",
        ),
        (
            &[
                "--input", "in.txt", "--output", "./in.txt", "--", "sh", "-c", "echo ran",
            ],
            "exec_output_is_input",
        ),
    ];
    for (args, reason) in cases {
        let out = exec(&sb, args);
        assert_success(&out, args);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n", "{reason}");
        assert_eq!(sb.reason_count("non_cacheable", reason), 1, "{reason}");
    }
    assert_eq!((sb.hits(), sb.misses()), (0, 0));
}

#[test]
fn exec_usage_errors_exit_2() {
    let sb = Sandbox::new();
    for args in [&["sh", "-c", "true"][..], &["--input", "x", "--"], &[]] {
        let out = exec(&sb, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage: zccache exec"));
    }
}

#[test]
fn exec_without_a_daemon_still_runs_the_tool() {
    let sb = Sandbox::new();
    let args = [
        "--output",
        "out.txt",
        "--",
        "sh",
        "-c",
        "echo x > out.txt; echo hi; exit 4",
    ];
    let disabled = exec_env(&sb, &[("ZCCACHE_DISABLE", "1")], &args);
    assert_eq!(disabled.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&disabled.stdout), "hi\n");
    assert_eq!(sb.read_string("out.txt"), "x\n");
    assert!(sb.daemon_processes().is_empty(), "no daemon was started");
    // A cache root that cannot exist (under a regular file): no daemon can serve it.
    sb.write("blocker", "");
    let unreachable = sb.path("blocker/cache");
    let unreachable = exec_env(
        &sb,
        &[("ZCCACHE_CACHE_DIR", unreachable.to_str().unwrap())],
        &args,
    );
    assert_eq!(unreachable.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&unreachable.stdout), "hi\n");
}

/// A tool that leaves a background process holding its stdout and stderr: the call ends when
/// the tool exits, with what it printed, not when the last holder of its output closes it.
#[test]
fn exec_returns_when_the_tool_exits_though_a_child_keeps_its_output_open() {
    let sb = Sandbox::new();
    sb.write_old("in.txt", "x\n");
    let args: &[&str] = &[
        "--input",
        "in.txt",
        "--output",
        "out.txt",
        "--",
        "sh",
        "-c",
        "echo printed; echo warned >&2; sleep 30 & echo $! > bg.pid; cp in.txt out.txt",
    ];
    let cold = exec(&sb, args);
    let pid = String::from_utf8(sb.read("bg.pid")).unwrap();
    let pid = pid.trim();
    // Alive and not a zombie left for a slow reaper.
    let still_running = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(") ")
            .next()
            .is_some_and(|s| !s.starts_with('Z'))
    });
    let _ = std::process::Command::new("kill").arg(pid).status();
    assert!(
        still_running,
        "zccache exec waited for the tool's background process to close its output"
    );
    assert_success(&cold, args);
    assert_eq!(String::from_utf8_lossy(&cold.stdout), "printed\n");
    assert_eq!(String::from_utf8_lossy(&cold.stderr), "warned\n");
    std::fs::remove_file(sb.path("out.txt")).unwrap();
    let warm = exec(&sb, args);
    assert_eq!((sb.hits(), sb.misses()), (1, 1));
    assert_eq!((warm.stdout, warm.stderr), (cold.stdout, cold.stderr));
    assert_eq!(sb.read("out.txt"), b"x\n");
}
