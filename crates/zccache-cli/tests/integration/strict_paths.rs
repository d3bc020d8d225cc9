//! `--strict-paths` and `ZCCACHE_STRICT_PATHS`: badly spelled include paths fail the call
//! before the compiler runs, with the flag, the mode and the command line on stderr.

use crate::sandbox::*;
use std::process::{Command, Output};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The call was refused: exit code 2, a `zccache:` message naming `needles`, no object
/// written (the compiler did not run).
fn assert_refused(sb: &Sandbox, output: &Output, needles: &[&str]) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.starts_with("zccache: "), "{text}");
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
    assert!(!sb.path("m.o").exists(), "the compiler ran: {text}");
}

fn project(sb: &Sandbox) {
    sb.write_old("inc/cfg.h", "#define CFG 1\n");
    sb.write_old("m.c", "#include \"cfg.h\"\nint m(void) { return CFG; }\n");
}

#[test]
fn absolute_mode_refuses_relative_and_dotted_paths_and_passes_clean_ones() {
    let sb = Sandbox::new();
    project(&sb);
    let out = sb.run(&[
        "--strict-paths=absolute",
        "gcc",
        "-c",
        "m.c",
        "-o",
        "m.o",
        "-Iinc",
    ]);
    assert_refused(
        &sb,
        &out,
        &[
            "-I \"inc\"",
            "absolute",
            "--strict-paths=absolute gcc -c m.c -o m.o -Iinc",
        ],
    );
    let dotted = format!("{}/./inc", sb.work.display());
    sb.write_old("plain.c", "int plain(void) { return 0; }\n");
    let out = sb.run(&[
        "--strict-paths",
        "absolute",
        "gcc",
        "-c",
        "plain.c",
        "-o",
        "m.o",
    ]);
    assert_success(&out, &["no path flags at all"]);
    std::fs::remove_file(sb.path("m.o")).unwrap();
    let out = sb.run(&[
        "--strict-paths=absolute",
        "gcc",
        "-c",
        "m.c",
        "-o",
        "m.o",
        "-isystem",
        &dotted,
    ]);
    assert_refused(&sb, &out, &["-isystem", &dotted, "absolute"]);
    let clean = format!("-I{}/inc", sb.work.display());
    let out = sb.run(&[
        "--strict-paths=absolute",
        "gcc",
        "-c",
        "m.c",
        "-o",
        "m.o",
        &clean,
    ]);
    assert_success(&out, &["clean absolute -I"]);
    assert!(sb.path("m.o").exists());
}

#[test]
fn consistent_mode_checks_response_files_expanded() {
    let sb = Sandbox::new();
    project(&sb);
    // In a response file a backslash escapes the next character: `\\` is one backslash.
    sb.write_old("flags.rsp", "-Iinc\\\\win -DX=1\n");
    let env = [("ZCCACHE_STRICT_PATHS", "consistent")];
    let out = sb.run_env(
        &env,
        &["gcc", "-c", "m.c", "-o", "m.o", "-I./inc", "@flags.rsp"],
    );
    assert_refused(
        &sb,
        &out,
        &[
            "-I \"inc\\win\"",
            "consistent",
            "-I \"./inc\"",
            "gcc -c m.c -o m.o -I./inc @flags.rsp",
        ],
    );
    // One style throughout, relative paths included, passes (and `inc\win` is just a name
    // that does not exist, which gcc ignores).
    sb.ok_env(
        &env,
        &["gcc", "-c", "m.c", "-o", "m.o", "-Iinc", "@flags.rsp"],
    );
    assert!(sb.path("m.o").exists());
}

#[test]
fn the_flag_wins_and_bad_values_are_named() {
    let sb = Sandbox::new();
    project(&sb);
    let call = ["gcc", "-c", "m.c", "-o", "m.o", "-Iinc"];
    // `1` means absolute.
    let out = sb.run_env(&[("ZCCACHE_STRICT_PATHS", "1")], &call);
    assert_refused(&sb, &out, &["-I \"inc\"", "absolute"]);
    let out = sb.run_env(&[("ZCCACHE_STRICT_PATHS", "sometimes")], &call);
    assert_refused(&sb, &out, &["ZCCACHE_STRICT_PATHS", "sometimes"]);
    let out = sb.run(&["--strict-paths=strict", "gcc", "-c", "m.c", "-o", "m.o"]);
    assert_refused(&sb, &out, &["--strict-paths", "strict"]);
    // `--strict-paths=off` overrides the variable.
    let mut flagged = vec!["--strict-paths=off"];
    flagged.extend(call);
    sb.ok_env(&[("ZCCACHE_STRICT_PATHS", "absolute")], &flagged);
    assert!(sb.path("m.o").exists());
}

#[test]
fn checked_without_a_daemon_and_skipped_when_disabled() {
    let sb = Sandbox::new();
    project(&sb);
    // The cache root cannot be created: the daemon is unreachable, the check still holds.
    sb.write("blocker", "not a directory");
    let args = [
        "--strict-paths=absolute",
        "gcc",
        "-c",
        "m.c",
        "-o",
        "m.o",
        "-Iinc",
    ];
    let out = Command::new(ZCCACHE)
        .env("ZCCACHE_CACHE_DIR", sb.path("blocker/cache"))
        .env_remove("ZCCACHE_DISABLE")
        .current_dir(&sb.work)
        .args(args)
        .output()
        .unwrap();
    assert_refused(&sb, &out, &["-I \"inc\"", "absolute"]);
    // ZCCACHE_DISABLE=1: zccache only runs the compiler.
    sb.ok_env(&[("ZCCACHE_DISABLE", "1")], &args);
    assert!(sb.path("m.o").exists());
    assert!(
        sb.daemon_processes().is_empty(),
        "no daemon was needed for any of this"
    );
}
