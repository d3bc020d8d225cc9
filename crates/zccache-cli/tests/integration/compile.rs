//! Hits and misses for single-source compiles.

use crate::sandbox::*;

const MAIN_C: &str = r#"#include <stdio.h>
#include "config.h"
int main(void) { printf("value=%d\n", VALUE); return 0; }
"#;

/// Compiles, links (bare) and runs; returns the program's stdout.
fn build_and_run(sb: &Sandbox, compiler: &str, extra: &[&str]) -> String {
    let mut args = vec![compiler, "-c", "main.c", "-o", "main.o", "-Iinc"];
    args.extend_from_slice(extra);
    sb.ok(&args);
    let link = sb.bare(".", &[compiler, "main.o", "-o", "prog"]);
    assert_success(&link, &["link"]);
    let run = sb.bare(".", &["./prog"]);
    String::from_utf8(run.stdout).unwrap()
}

#[test]
fn repeat_compile_hits_with_identical_object_at_any_output_path() {
    for compiler in COMPILERS {
        let sb = Sandbox::new();
        sb.write_old("main.c", MAIN_C);
        sb.write_old("inc/config.h", "#define VALUE 7\n");
        sb.ok(&[compiler, "-c", "main.c", "-o", "a.o", "-Iinc", "-O2"]);
        assert_eq!((sb.hits(), sb.misses()), (0, 1), "{compiler}");
        let cold = sb.read("a.o");
        let bare = sb.bare(
            ".",
            &[compiler, "-c", "main.c", "-o", "bare.o", "-Iinc", "-O2"],
        );
        assert_success(&bare, &[compiler]);
        assert_eq!(
            cold,
            sb.read("bare.o"),
            "{compiler}: cold object differs from bare"
        );

        std::fs::remove_file(sb.path("a.o")).unwrap();
        sb.ok(&[compiler, "-c", "main.c", "-o", "a.o", "-Iinc", "-O2"]);
        assert_eq!((sb.hits(), sb.misses()), (1, 1), "{compiler}");
        assert_eq!(sb.read("a.o"), cold, "{compiler}: warm object differs");

        // Another output path is still a hit, written where asked.
        std::fs::create_dir_all(sb.path("out")).unwrap();
        sb.ok(&[
            compiler,
            "-c",
            "main.c",
            "-o",
            "out/elsewhere.o",
            "-Iinc",
            "-O2",
        ]);
        assert_eq!(sb.hits(), 2, "{compiler}");
        assert_eq!(sb.read("out/elsewhere.o"), cold);

        // Without -o: the compiler's default name in the cwd.
        sb.ok(&[compiler, "-c", "main.c", "-Iinc", "-O2"]);
        assert_eq!(sb.read("main.o"), cold);
        assert_eq!(sb.hits(), 3, "{compiler}");
    }
}

#[test]
fn define_and_optimization_changes_miss_and_order_matters() {
    let sb = Sandbox::new();
    sb.write_old("main.c", "int v(void) { return V; }\n");
    let compile = |args: &[&str]| {
        let mut all = vec!["gcc", "-c", "main.c", "-o", "m.o"];
        all.extend_from_slice(args);
        sb.ok(&all);
    };
    compile(&["-DV=1"]);
    compile(&["-DV=2"]);
    assert_eq!((sb.hits(), sb.misses()), (0, 2));
    compile(&["-DV=1", "-DV=2"]);
    compile(&["-DV=2", "-DV=1"]);
    assert_eq!((sb.hits(), sb.misses()), (0, 4));
    compile(&["-DV=1", "-O2", "-O0"]);
    compile(&["-DV=1", "-O0", "-O2"]);
    assert_eq!((sb.hits(), sb.misses()), (0, 6));
    compile(&["-DV=2", "-DV=1"]);
    assert_eq!((sb.hits(), sb.misses()), (1, 6));
}

#[test]
fn program_built_from_a_hit_behaves_like_the_source_says() {
    let sb = Sandbox::new();
    sb.write_old("main.c", MAIN_C);
    // Each build's result is stored before the header changes (the counts wait for it): a
    // store checks the headers after the reply, and one rewritten before it does (within the
    // link and run, on a fast host) rightly costs that entry.
    let built = |value: u32, counts: (u64, u64)| {
        assert_eq!(build_and_run(&sb, "gcc", &[]), format!("value={value}\n"));
        let found = (sb.hits(), sb.misses());
        if found != counts {
            sb.print_daemon_records();
        }
        assert_eq!(found, counts, "after the build of VALUE {value}");
    };
    sb.write_old("inc/config.h", "#define VALUE 1\n");
    built(1, (0, 1));
    sb.write_old("inc/config.h", "#define VALUE 2\n");
    built(2, (0, 2));
    sb.write_old("inc/config.h", "#define VALUE 1\n");
    built(1, (1, 2));
}

#[test]
fn warnings_are_replayed_on_a_hit() {
    for compiler in COMPILERS {
        let sb = Sandbox::new();
        sb.write_old("w.c", "int f(int x) { int unused; return x; }\n");
        let args = [compiler, "-c", "w.c", "-Wall", "-o", "w.o"];
        let cold = sb.ok(&args);
        let warm = sb.ok(&args);
        let bare = sb.bare(".", &args);
        assert!(!bare.stderr.is_empty(), "{compiler} gave no warning");
        assert_eq!(cold.stderr, bare.stderr, "{compiler}");
        assert_eq!(warm.stderr, bare.stderr, "{compiler}");
        assert_eq!(warm.stdout, bare.stdout, "{compiler}");
        assert_eq!(sb.hits(), 1, "{compiler}");
    }
}

#[test]
fn compile_errors_pass_through_and_are_not_cached() {
    for compiler in COMPILERS {
        let sb = Sandbox::new();
        sb.write_old("bad.c", "int f(void) { return missing; }\n");
        let args = [compiler, "-c", "bad.c", "-o", "bad.o"];
        let bare = sb.bare(".", &args);
        assert!(!bare.status.success());
        for _ in 0..2 {
            let through = sb.run(&args);
            assert_eq!(through.status.code(), bare.status.code(), "{compiler}");
            assert_eq!(through.stderr, bare.stderr, "{compiler}");
            assert_eq!(through.stdout, bare.stdout, "{compiler}");
            assert!(!sb.path("bad.o").exists());
        }
        assert_eq!(sb.hits(), 0);
        assert_eq!(sb.reason_count("not_stored", "compile_failed"), 2);
        // Fixed, it compiles and caches.
        sb.write_old("bad.c", "int f(void) { return 0; }\n");
        sb.ok(&args);
        sb.ok(&args);
        assert_eq!(sb.hits(), 1, "{compiler}");
    }
}

#[test]
fn same_source_in_two_directories_with_and_without_debug_info() {
    let sb = Sandbox::new();
    for dir in ["one", "two"] {
        sb.write_old(&format!("{dir}/x.c"), "int x(void) { return 42; }\n");
    }
    // Without -g the output does not depend on the directory: a hit.
    for dir in ["one", "two"] {
        let out = sb.run_in(dir, &["gcc", "-c", "x.c", "-o", "x.o", "-O1"]);
        assert_success(&out, &["gcc"]);
    }
    assert_eq!((sb.hits(), sb.misses()), (1, 1));
    // With -g the object records its directory: a miss, and no path from "one" leaks into "two".
    for dir in ["one", "two"] {
        let out = sb.run_in(dir, &["gcc", "-c", "x.c", "-o", "xg.o", "-g"]);
        assert_success(&out, &["gcc"]);
    }
    assert_eq!((sb.hits(), sb.misses()), (1, 3));
    let two = sb.read("two/xg.o");
    let one_dir = sb.path("one");
    let needle = one_dir.to_string_lossy();
    assert!(
        !two.windows(needle.len()).any(|w| w == needle.as_bytes()),
        "debug info of two/xg.o mentions {needle}"
    );
}

#[test]
fn same_file_name_in_two_dirs_with_their_own_headers() {
    let sb = Sandbox::new();
    for (dir, value) in [("one", 1), ("two", 2)] {
        sb.write_old(&format!("{dir}/x.h"), &format!("#define X {value}\n"));
        sb.write_old(
            &format!("{dir}/x.c"),
            "#include <stdio.h>\n#include \"x.h\"\nint main(void){printf(\"%d %s\\n\", X, __FILE__);return 0;}\n",
        );
    }
    for (dir, expected) in [
        ("one", "1 x.c\n"),
        ("two", "2 x.c\n"),
        ("one", "1 x.c\n"),
        ("two", "2 x.c\n"),
    ] {
        let out = sb.run_in(dir, &["gcc", "-c", "x.c", "-o", "x.o"]);
        assert_success(&out, &["gcc"]);
        let link = sb.bare(dir, &["gcc", "x.o", "-o", "prog"]);
        assert_success(&link, &["link"]);
        let run = sb.bare(dir, &["./prog"]);
        assert_eq!(String::from_utf8_lossy(&run.stdout), expected, "{dir}");
    }
    assert_eq!((sb.hits(), sb.misses()), (2, 2));
}

#[test]
fn uncacheable_calls_run_as_called_and_are_counted() {
    let sb = Sandbox::new();
    sb.write_old("a.c", "int main(void) { return 3; }\n");
    sb.write_old("b.c", "int b(void) { return 4; }\n");
    // Link.
    sb.ok(&["gcc", "a.c", "-o", "prog"]);
    assert_eq!(sb.bare(".", &["./prog"]).status.code(), Some(3));
    // Preprocess to stdout: same bytes as the bare compiler.
    let pre = sb.ok(&["gcc", "-E", "a.c"]);
    assert_eq!(pre.stdout, sb.bare(".", &["gcc", "-E", "a.c"]).stdout);
    // Several sources.
    // Several sources whose objects would collide (one.c and sub/one.c both make one.o).
    sb.write_old("one.c", "int one(void) { return 1; }\n");
    sb.write_old("sub/one.c", "int one_again(void) { return 1; }\n");
    let ours = sb.run(&["gcc", "-c", "one.c", "sub/one.c"]);
    let bare = sb.bare(".", &["gcc", "-c", "one.c", "sub/one.c"]);
    assert_eq!(ours.status.code(), bare.status.code());
    // Source from stdin.
    let stdin_compile = sb
        .zccache()
        .args(["gcc", "-c", "-x", "c", "-", "-o", "stdin.o"])
        .stdin(std::fs::File::open(sb.path("b.c")).unwrap())
        .output()
        .unwrap();
    assert_success(&stdin_compile, &["stdin compile"]);
    assert!(sb.path("stdin.o").exists());
    // __TIME__ makes the output depend on the clock: compiled, never stored.
    sb.write_old("t.c", "const char *t = __TIME__;\n");
    sb.ok(&["gcc", "-c", "t.c"]);
    sb.ok(&["gcc", "-c", "t.c"]);
    assert_eq!(sb.reason_count("non_cacheable", "compile_and_link"), 1);
    assert_eq!(sb.reason_count("non_cacheable", "preprocess_only"), 1);
    assert_eq!(sb.reason_count("non_cacheable", "multiple_sources"), 1);
    assert_eq!(sb.reason_count("non_cacheable", "stdin_input"), 1);
    assert_eq!(sb.reason_count("not_stored", "time_macros"), 2);
    assert_eq!(sb.hits(), 0);
}

#[test]
fn time_macro_in_a_header_prevents_storing() {
    let sb = Sandbox::new();
    sb.write_old("stamp.h", "#define STAMP __DATE__ \" \" __TIME__\n");
    sb.write_old("s.c", "#include \"stamp.h\"\nconst char *s = STAMP;\n");
    sb.ok(&["clang", "-c", "s.c"]);
    sb.ok(&["clang", "-c", "s.c"]);
    assert_eq!(sb.hits(), 0);
    assert_eq!(sb.reason_count("not_stored", "time_macros"), 2);
}

#[test]
fn cpp_and_assembler_with_cpp_are_cached() {
    let sb = Sandbox::new();
    sb.write_old("v.h", "#define N 5\n");
    sb.write_old(
        "k.cpp",
        "#include <vector>\n#include \"v.h\"\nint k() { std::vector<int> v(N); return v.size(); }\n",
    );
    sb.write_old("s.S", "#include \"v.h\"\n.globl sym\nsym: .long N\n");
    for args in [
        vec!["clang++", "-c", "k.cpp", "-std=c++17", "-O1"],
        vec!["g++", "-c", "k.cpp", "-std=c++17", "-O1"],
        vec!["gcc", "-c", "s.S", "-o", "s.o"],
    ] {
        sb.ok(&args);
        sb.ok(&args);
    }
    assert_eq!((sb.hits(), sb.misses()), (3, 3));
}

#[test]
fn hardlinked_output_modified_in_place_is_never_served() {
    let sb = Sandbox::new();
    sb.write_old("m.c", "int m(void) { return 1; }\n");
    sb.ok(&["gcc", "-c", "m.c", "-o", "first.o"]);
    sb.ok(&["gcc", "-c", "m.c", "-o", "second.o"]);
    assert_eq!(sb.hits(), 1);
    let good = sb.read("first.o");
    // Corrupt the delivered output in place (it shares the stored blob's inode).
    let path = sb.path("second.o");
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&path, perms).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"garbage"))
        .unwrap();
    sb.ok(&["gcc", "-c", "m.c", "-o", "third.o"]);
    assert_eq!(sb.read("third.o"), good);
    assert_eq!(sb.misses(), 2, "the damaged blob must not be served");
    sb.ok(&["gcc", "-c", "m.c", "-o", "fourth.o"]);
    assert_eq!(sb.read("fourth.o"), good);
    assert_eq!(sb.hits(), 2);
}

#[test]
fn diagnostics_are_coloured_on_a_terminal_and_plain_otherwise() {
    // `script` gives the command a terminal; TERM makes gcc and clang colour on their own.
    for compiler in COMPILERS {
        let sb = Sandbox::new();
        sb.write_old("w.c", "int f(int x) { int unused; return x; }\n");
        let on_terminal = |command: &str| {
            sb.settle_writes();
            let out = std::process::Command::new("script")
                .args(["-qec", command, "/dev/null"])
                .current_dir(&sb.work)
                .env("TERM", "xterm-256color")
                .env("ZCCACHE_CACHE_DIR", &sb.cache)
                .output()
                .unwrap();
            assert_success(&out, &[command]);
            out.stdout
        };
        let cached = format!("{ZCCACHE} {compiler} -Wall -c w.c -o w.o");
        let bare = on_terminal(&format!("{compiler} -Wall -c w.c -o bare.o"));
        assert!(
            bare.windows(2).any(|w| w == b"\x1b["),
            "{compiler} colours on a terminal"
        );
        // Miss on a terminal, then a hit on a terminal, then a hit on a pipe.
        assert_eq!(on_terminal(&cached), bare, "{compiler} miss on a terminal");
        assert_eq!(on_terminal(&cached), bare, "{compiler} hit on a terminal");
        let piped = sb.ok(&[compiler, "-Wall", "-c", "w.c", "-o", "w.o"]);
        assert_eq!(
            piped.stderr,
            sb.bare(".", &[compiler, "-Wall", "-c", "w.c", "-o", "bare.o"])
                .stderr
        );
        assert_eq!(sb.hits(), 2, "{compiler}: colour is not part of the key");
    }
}
