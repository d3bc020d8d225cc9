//! `zccache fp`: a CI step skipped while its input files are as at its last success.

use crate::sandbox::*;

/// `zccache fp … check …`: true when the step should run (exit 0), false to skip (exit 1).
fn check(sb: &Sandbox, kind: &str) -> bool {
    check_said(sb, kind).0
}

/// [`check`], and what it said on stderr.
fn check_said(sb: &Sandbox, kind: &str) -> (bool, String) {
    let out = sb.run(&[
        "fp",
        "--cache-file",
        ".cache/lint.json",
        "--cache-type",
        kind,
        "check",
        "--root",
        "src",
        "--include",
        "**/*.rs",
        "--exclude",
        "target",
    ]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => (true, said),
        Some(1) => (false, said),
        other => panic!("{other:?}: {said}"),
    }
}

fn mark(sb: &Sandbox, what: &str) {
    sb.ok(&["fp", "--cache-file", ".cache/lint.json", what]);
}

#[test]
fn a_step_runs_after_each_change_and_is_skipped_otherwise() {
    for kind in ["hash", "two-layer"] {
        let sb = Sandbox::new();
        run_and_skip(&sb, kind);
        // No daemon was needed for any of it.
        assert_eq!(sb.daemon_pid(), None);
    }
}

#[test]
fn a_running_daemon_answers_from_its_watcher_with_the_same_answers() {
    for kind in ["hash", "two-layer"] {
        let sb = Sandbox::new();
        sb.ok(&["start"]);
        run_and_skip(&sb, kind);
        assert!(sb.daemon_pid().is_some());
        // Once the daemon knows the tree, an unchanged check reads no directory.
        mark(&sb, "mark-success");
        check(&sb, kind);
        let (run, said) = check_said(&sb, kind);
        assert!(!run, "{said}");
        assert!(said.contains("daemon, watched"), "{kind}: {said}");
        // A file added, an edit without a new name, a file removed: each seen at once.
        sb.write("src/m/new.rs", "fn n() {}\n");
        let (run, said) = check_said(&sb, kind);
        assert!(run && said.contains("daemon"), "{kind}: added: {said}");
        mark(&sb, "mark-success");
        check(&sb, kind);
        sb.write("src/m/b.rs", "fn b() { 3; }\n");
        let (run, said) = check_said(&sb, kind);
        assert!(
            run && said.contains("daemon, watched"),
            "{kind}: edited: {said}"
        );
        mark(&sb, "mark-success");
        std::fs::remove_file(sb.path("src/m/new.rs")).unwrap();
        let (run, said) = check_said(&sb, kind);
        assert!(run && said.contains("daemon"), "{kind}: removed: {said}");
        mark(&sb, "mark-success");
        // An excluded directory's changes do not count.
        sb.write("src/target/more.rs", "excluded\n");
        let (run, said) = check_said(&sb, kind);
        assert!(!run, "{kind}: excluded: {said}");
    }
}

/// Edits, additions, deletions, excluded and unselected files, failure and invalidation.
fn run_and_skip(sb: &Sandbox, kind: &str) {
    {
        sb.write("src/a.rs", "fn a() {}\n");
        sb.write("src/m/b.rs", "fn b() {}\n");
        sb.write("src/target/gen.rs", "excluded\n");
        sb.write("src/README.md", "not selected\n");
        assert!(check(sb, kind), "{kind}: no state yet");
        mark(sb, "mark-success");
        assert!(!check(sb, kind), "{kind}: unchanged");
        for (what, change) in [
            ("edited", ("src/a.rs", Some("fn a() { 1; }\n"))),
            ("added", ("src/m/c.rs", Some("fn c() {}\n"))),
            ("deleted", ("src/m/c.rs", None)),
        ] {
            match change {
                (path, Some(text)) => sb.write(path, text),
                (path, None) => std::fs::remove_file(sb.path(path)).unwrap(),
            }
            assert!(check(sb, kind), "{kind}: {what}");
            mark(sb, "mark-success");
            assert!(!check(sb, kind), "{kind}: {what}, then unchanged");
        }
        sb.write("src/target/gen.rs", "edited\n");
        sb.write("src/README.md", "edited\n");
        assert!(!check(sb, kind), "{kind}: excluded and unselected files");
        // A failed step is not remembered as done.
        sb.write("src/a.rs", "fn a() { 2; }\n");
        assert!(check(sb, kind));
        mark(sb, "mark-failure");
        assert!(check(sb, kind), "{kind}: after a failure");
        mark(sb, "invalidate");
        assert!(check(sb, kind), "{kind}: after invalidate");
    }
}
