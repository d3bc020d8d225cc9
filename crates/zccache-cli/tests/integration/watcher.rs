//! The file watcher lets a hit skip `stat`, and never at the cost of a stale hit: whatever the
//! order and speed at which events arrive, an edit that finished before a compile is seen.

use crate::sandbox::*;
use std::io::Write;

/// A header edited in place, same size, mtime put back: only the watcher (or ctime) tells.
fn rewrite_in_place(path: &std::path::Path, content: &str) {
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all(content.as_bytes()).unwrap();
    file.set_modified(mtime).unwrap();
}

/// Hits first (so the header's digest is vouched for by the watcher), then edits made right
/// before each compile; every object must be the compiler's own.
fn edits_right_before_compiles_are_seen(env: &[(&str, &str)]) {
    let sb = Sandbox::new();
    sb.write_old("inc/v.h", "#define V 10\n");
    sb.write_old("s.c", "#include \"v.h\"\nint v(void) { return V; }\n");
    let args = ["gcc", "-Iinc", "-c", "s.c", "-o", "s.o"];
    sb.ok_env(env, &["start"]);
    sb.ok(&args);
    sb.ok(&args);
    assert_eq!(sb.hits(), 1);
    for round in 0..12 {
        let v = 11 + round % 3;
        match round % 3 {
            // In place, mtime restored.
            0 => rewrite_in_place(&sb.path("inc/v.h"), &format!("#define V {v}\n")),
            // Replaced by rename, as editors save.
            1 => {
                std::fs::write(sb.path("inc/v.h.new"), format!("#define V {v}\n")).unwrap();
                std::fs::rename(sb.path("inc/v.h.new"), sb.path("inc/v.h")).unwrap();
            }
            // Plain rewrite.
            _ => std::fs::write(sb.path("inc/v.h"), format!("#define V {v}\n")).unwrap(),
        }
        sb.ok(&args);
        assert_eq!(sb.read("s.o"), sb.bare_object(&args), "round {round}");
        // And the unchanged state is a hit served from the watcher's word.
        sb.ok(&args);
        assert_eq!(sb.read("s.o"), sb.bare_object(&args), "round {round} again");
    }
}

#[test]
fn edits_right_before_a_compile_are_seen_with_the_watcher() {
    edits_right_before_compiles_are_seen(&[]);
}

#[test]
fn edits_are_seen_when_events_arrive_late() {
    // The watcher thread handles events 40 ms late: requests read the queue themselves.
    edits_right_before_compiles_are_seen(&[("ZCCACHE_TEST_WATCH_DELAY_MS", "40")]);
}

#[test]
fn edits_are_seen_with_the_watcher_off() {
    edits_right_before_compiles_are_seen(&[("ZCCACHE_WATCH", "0")]);
}

#[test]
fn status_reports_the_watcher() {
    let sb = Sandbox::new();
    sb.write_old("s.c", "#include <stdio.h>\nint v(void) { return 1; }\n");
    sb.ok(&["gcc", "-c", "s.c"]);
    sb.ok(&["gcc", "-c", "s.c"]);
    let status = sb.status();
    let watching = status["watching"].as_array().expect("watcher on");
    assert!(watching[0].as_u64().unwrap() > 0 && watching[1].as_u64().unwrap() > 0);
}

#[test]
fn writes_through_another_hardlink_are_seen() {
    let sb = Sandbox::new();
    sb.write_old("inc/v.h", "#define V 1\n");
    std::fs::hard_link(sb.path("inc/v.h"), sb.path("elsewhere.h")).unwrap();
    sb.write_old("s.c", "#include \"v.h\"\nint v(void) { return V; }\n");
    let args = ["gcc", "-Iinc", "-c", "s.c", "-o", "s.o"];
    sb.ok(&args);
    sb.ok(&args);
    assert_eq!(sb.hits(), 1);
    rewrite_in_place(&sb.path("elsewhere.h"), "#define V 2\n");
    sb.ok(&args);
    assert_eq!(sb.hits(), 1, "an edit through another link must miss");
    assert_eq!(sb.read("s.o"), sb.bare_object(&args));
}

#[test]
fn a_project_moved_aside_and_replaced_is_seen() {
    // `mv proj proj.old` and a fresh checkout at the same path: the watched directories are
    // other directories now, though nothing inside them was touched.
    let sb = Sandbox::new();
    sb.write_old("proj/inc/v.h", "#define V 1\n");
    sb.write_old("proj/s.c", "#include \"v.h\"\nint v(void) { return V; }\n");
    let args = ["gcc", "-Iinc", "-c", "s.c", "-o", "s.o"];
    let run = |sb: &Sandbox| {
        let out = sb.run_in("proj", &args);
        assert_success(&out, &args);
    };
    run(&sb);
    run(&sb);
    assert_eq!(sb.hits(), 1);
    std::fs::rename(sb.path("proj"), sb.path("proj.old")).unwrap();
    sb.write_old("proj/inc/v.h", "#define V 2\n");
    sb.write_old("proj/s.c", "#include \"v.h\"\nint v(void) { return V; }\n");
    run(&sb);
    assert_eq!(sb.hits(), 1, "the new checkout must miss");
    let bare = sb.bare("proj", &["gcc", "-Iinc", "-c", "s.c", "-o", "bare.o"]);
    assert_success(&bare, &["bare"]);
    assert_eq!(sb.read("proj/s.o"), sb.read("proj/bare.o"));
}

/// Headers that would be found first, created right before hits in the source's directory
/// (which changes with every object written, so its listing is what decides): each must miss
/// and give the compiler's own object, with the watcher, with its events late, and without it.
fn shadowing_headers_created_right_before_hits_are_seen(env: &[(&str, &str)]) {
    let sb = Sandbox::new();
    sb.write_old("inc/v.h", "#define V 1\n");
    sb.write_old("inc/deep/w.h", "#define W 10\n");
    sb.write_old(
        "s.c",
        "#include \"v.h\"\n#include \"deep/w.h\"\nint v(void) { return V + W; }\n",
    );
    let args = ["gcc", "-Iinc", "-c", "s.c", "-o", "s.o"];
    sb.ok_env(env, &["start"]);
    for _ in 0..3 {
        sb.ok(&args);
    }
    assert_eq!(sb.hits(), 2);
    // `hit`: whether it must be a hit (`None`: either; a header written an instant ago may
    // be too fresh to store a result for).
    let expect = |sb: &Sandbox, what: &str, hit: Option<bool>| {
        let before = sb.hits();
        sb.ok(&args);
        assert_eq!(sb.read("s.o"), sb.bare_object(&args), "{what}");
        if let Some(hit) = hit {
            assert_eq!(
                sb.hits(),
                before + u64::from(hit),
                "{what}: hit expected: {hit}"
            );
        }
    };
    // Created beside the source (searched first for "..." includes).
    sb.write("v.h", "#define V 2\n");
    expect(&sb, "v.h created beside the source", Some(false));
    expect(&sb, "the same again", None);
    std::fs::remove_file(sb.path("v.h")).unwrap();
    expect(&sb, "v.h removed: the first result again", Some(true));
    // A new directory with a shadowing header in it.
    sb.write("deep/w.h", "#define W 20\n");
    expect(&sb, "deep/w.h created beside the source", Some(false));
    std::fs::remove_dir_all(sb.path("deep")).unwrap();
    expect(&sb, "deep/ removed", Some(true));
    // Renamed into place, as editors and build tools do.
    sb.write("inc2/staged.h", "#define V 3\n");
    std::fs::rename(sb.path("inc2/staged.h"), sb.path("v.h")).unwrap();
    expect(&sb, "v.h renamed into place", Some(false));
}

#[test]
fn shadowing_headers_right_before_hits_are_seen_with_the_watcher() {
    shadowing_headers_created_right_before_hits_are_seen(&[]);
}

#[test]
fn shadowing_headers_right_before_hits_are_seen_when_events_arrive_late() {
    shadowing_headers_created_right_before_hits_are_seen(&[("ZCCACHE_TEST_WATCH_DELAY_MS", "40")]);
}

#[test]
fn shadowing_headers_right_before_hits_are_seen_with_the_watcher_off() {
    shadowing_headers_created_right_before_hits_are_seen(&[("ZCCACHE_WATCH", "0")]);
}
