//! `zccache fp`: a CI step skipped while its input files are as at its last success.

use crate::sandbox::*;

/// `zccache fp … check …`: true when the step should run (exit 0), false to skip (exit 1).
fn check(sb: &Sandbox, kind: &str) -> bool {
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
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!("{other:?}: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

fn mark(sb: &Sandbox, what: &str) {
    sb.ok(&["fp", "--cache-file", ".cache/lint.json", what]);
}

#[test]
fn a_step_runs_after_each_change_and_is_skipped_otherwise() {
    for kind in ["hash", "two-layer"] {
        let sb = Sandbox::new();
        sb.write("src/a.rs", "fn a() {}\n");
        sb.write("src/m/b.rs", "fn b() {}\n");
        sb.write("src/target/gen.rs", "excluded\n");
        sb.write("src/README.md", "not selected\n");
        assert!(check(&sb, kind), "{kind}: no state yet");
        mark(&sb, "mark-success");
        assert!(!check(&sb, kind), "{kind}: unchanged");
        for (what, change) in [
            ("edited", ("src/a.rs", Some("fn a() { 1; }\n"))),
            ("added", ("src/m/c.rs", Some("fn c() {}\n"))),
            ("deleted", ("src/m/c.rs", None)),
        ] {
            match change {
                (path, Some(text)) => sb.write(path, text),
                (path, None) => std::fs::remove_file(sb.path(path)).unwrap(),
            }
            assert!(check(&sb, kind), "{kind}: {what}");
            mark(&sb, "mark-success");
            assert!(!check(&sb, kind), "{kind}: {what}, then unchanged");
        }
        sb.write("src/target/gen.rs", "edited\n");
        sb.write("src/README.md", "edited\n");
        assert!(!check(&sb, kind), "{kind}: excluded and unselected files");
        // A failed step is not remembered as done.
        sb.write("src/a.rs", "fn a() { 2; }\n");
        assert!(check(&sb, kind));
        mark(&sb, "mark-failure");
        assert!(check(&sb, kind), "{kind}: after a failure");
        mark(&sb, "invalidate");
        assert!(check(&sb, kind), "{kind}: after invalidate");
        // No daemon was needed for any of it.
        assert_eq!(sb.daemon_pid(), None);
    }
}
