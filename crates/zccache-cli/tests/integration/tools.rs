//! Links (gcc, clang, emcc), Emscripten compiles, clang-tidy and include-what-you-use, each
//! against the real tool: cold then warm with the same bytes and exit code as the bare tool,
//! and every input that matters (source, header, library, configuration) missing when edited.

use crate::sandbox::{assert_success, Sandbox};
use std::process::Output;

/// Runs `args` through zccache and bare in `dir`; asserts the same exit code, stdout and
/// stderr, and returns zccache's output.
fn same_as_bare(sb: &Sandbox, dir: &str, args: &[&str]) -> Output {
    let bare = sb.bare(dir, args);
    let ours = sb.run_in(dir, args);
    assert_eq!(
        ours.status.code(),
        bare.status.code(),
        "exit code of {args:?}\nstderr:\n{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&bare.stdout),
        "stdout of {args:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&ours.stderr),
        String::from_utf8_lossy(&bare.stderr),
        "stderr of {args:?}"
    );
    ours
}

fn counts(sb: &Sandbox) -> (u64, u64) {
    (sb.hits(), sb.misses())
}

/// Links `args` bare into the named output, then through zccache (a miss), then again after
/// removing the outputs (a hit); every output byte-identical to the bare link's each time.
fn link_cold_and_warm(sb: &Sandbox, args: &[&str], outputs: &[&str]) {
    let before = counts(sb);
    let bare = sb.bare(".", args);
    assert_success(&bare, args);
    let expected: Vec<(Vec<u8>, u32)> = outputs.iter().map(|o| (sb.read(o), sb.mode(o))).collect();
    for (round, outcome) in [(0, "miss"), (1, "hit")] {
        for output in outputs {
            std::fs::remove_file(sb.path(output)).unwrap();
        }
        sb.ok(args);
        for (output, (bytes, mode_bits)) in outputs.iter().zip(&expected) {
            assert!(sb.read(output) == *bytes, "{output} differs ({outcome})");
            assert_eq!(sb.mode(output), *mode_bits, "mode of {output} ({outcome})");
        }
        let (hits, misses) = counts(sb);
        assert_eq!(
            (hits - before.0, misses - before.1),
            (round, 1),
            "{args:?} after the {outcome}"
        );
    }
}

#[test]
fn gcc_and_clang_links_are_cached_with_libraries_maps_and_modes() {
    for compiler in ["gcc", "clang"] {
        let sb = Sandbox::new();
        sb.write_old(
            "main.c",
            "int part(void); int q(void);\n#include <stdio.h>\nint main(void) { printf(\"%d %d\\n\", part(), q()); return 0; }\n",
        );
        sb.write_old("part.c", "int part(void) { return 1; }\n");
        sb.write_old("q.c", "int q(void) { return 10; }\n");
        for source in ["main.c", "part.c", "q.c"] {
            sb.ok(&[compiler, "-c", source]);
        }
        std::fs::create_dir_all(sb.path("lib")).unwrap();
        std::fs::create_dir_all(sb.path("first")).unwrap();
        assert_success(&sb.bare(".", &["ar", "rcs", "lib/libq.a", "q.o"]), &["ar"]);
        let link = [
            compiler,
            "main.o",
            "part.o",
            "-Lfirst",
            "-Llib",
            "-lq",
            "-o",
            "prog",
            "-Wl,-Map=prog.map",
        ];
        link_cold_and_warm(&sb, &link, &["prog", "prog.map"]);
        assert_eq!(sb.mode("prog") & 0o111, 0o111, "the program is executable");
        assert_eq!(sb.bare(".", &["./prog"]).stdout, b"1 10\n");

        // A shared library, linked and restored with its mode.
        sb.write_old("shared.c", "int shared(void) { return 7; }\n");
        sb.ok(&[compiler, "-c", "-fPIC", "shared.c"]);
        link_cold_and_warm(
            &sb,
            &[compiler, "-shared", "shared.o", "-o", "libshared.so"],
            &["libshared.so"],
        );

        // An object changes: a miss, and the program says so.
        sb.write_old("part.c", "int part(void) { return 2; }\n");
        sb.ok(&[compiler, "-c", "part.c"]);
        let misses = sb.misses();
        sb.ok(&link);
        assert_eq!(sb.misses(), misses + 1, "edited object");
        assert_eq!(sb.bare(".", &["./prog"]).stdout, b"2 10\n");

        // The archive found through -L changes: a miss.
        sb.write_old("q.c", "int q(void) { return 20; }\n");
        sb.ok(&[compiler, "-c", "q.c"]);
        std::fs::remove_file(sb.path("lib/libq.a")).unwrap();
        assert_success(&sb.bare(".", &["ar", "rcs", "lib/libq.a", "q.o"]), &["ar"]);
        let misses = sb.misses();
        sb.ok(&link);
        assert_eq!(sb.misses(), misses + 1, "rebuilt archive");
        assert_eq!(sb.bare(".", &["./prog"]).stdout, b"2 20\n");

        // A library of the same name appears earlier on the -L path: the linker would use
        // it, so the cached program must not be served.
        sb.write_old("q.c", "int q(void) { return 30; }\n");
        sb.ok(&[compiler, "-c", "q.c"]);
        assert_success(
            &sb.bare(".", &["ar", "rcs", "first/libq.a", "q.o"]),
            &["ar"],
        );
        let misses = sb.misses();
        sb.ok(&link);
        assert_eq!(sb.misses(), misses + 1, "shadowing library");
        assert_eq!(sb.bare(".", &["./prog"]).stdout, b"2 30\n");

        // The linker reads a version script: an edit to it misses.
        sb.write_old("v.map", "{ global: main; local: *; };\n");
        let scripted = [
            compiler,
            "main.o",
            "part.o",
            "-Llib",
            "-lq",
            "-o",
            "scripted",
            "-Wl,--version-script=v.map",
        ];
        link_cold_and_warm(&sb, &scripted, &["scripted"]);
        sb.write_old("v.map", "{ global: main; part; local: *; };\n");
        let misses = sb.misses();
        sb.ok(&scripted);
        assert_eq!(sb.misses(), misses + 1, "version script edit");

        // A failed link: the linker's message and exit code, every time, nothing stored.
        sb.write_old(
            "lonely.c",
            "int missing(void); int main(void) { return missing(); }\n",
        );
        sb.ok(&[compiler, "-c", "lonely.c"]);
        for _ in 0..2 {
            let out = same_as_bare(&sb, ".", &[compiler, "lonely.o", "-o", "lonely"]);
            assert!(!out.status.success());
        }
        assert!(!sb.path("lonely").exists());
        assert!(sb.reason_count("not_stored", "compile_failed") >= 2);

        // Compiling and linking in one call is passed through.
        sb.ok(&[compiler, "main.c", "part.c", "q.c", "-o", "direct"]);
        assert_eq!(sb.reason_count("non_cacheable", "compile_and_link"), 1);
    }
}

#[test]
fn emcc_compiles_and_links_are_cached_with_the_wasm_beside_the_js() {
    let sb = Sandbox::new();
    sb.write_old("inc/v.h", "#define V 4\n");
    sb.write_old(
        "app.c",
        "#include <stdio.h>\n#include \"v.h\"\nint main(void) { printf(\"v=%d\\n\", V); return 0; }\n",
    );
    let compile = ["emcc", "-Iinc", "-O1", "-c", "app.c", "-o", "app.o"];
    let expected = sb.bare_object(&compile);
    for _ in 0..2 {
        let _ = std::fs::remove_file(sb.path("app.o"));
        sb.ok(&compile);
        assert!(
            sb.read("app.o") == expected,
            "object differs from bare emcc"
        );
    }
    assert_eq!(counts(&sb), (1, 1));

    // The link writes app.js and, beside it, app.wasm: both come back on a hit.
    let link = [
        "emcc",
        "app.o",
        "-o",
        "app.js",
        "-sWASM_ASYNC_COMPILATION=0",
    ];
    link_cold_and_warm(&sb, &link, &["app.js", "app.wasm"]);
    let run = sb.bare(".", &["node", "app.js"]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "v=4\n");

    // A header edit misses, and the program built from it says so.
    sb.write_old("inc/v.h", "#define V 5\n");
    sb.ok(&compile);
    sb.ok(&link);
    assert_eq!(
        String::from_utf8_lossy(&sb.bare(".", &["node", "app.js"]).stdout),
        "v=5\n"
    );
    assert_eq!(counts(&sb), (2, 4));

    // Emscripten's config and its settings variables are part of the key.
    let config = std::fs::read_to_string("/usr/share/emscripten/.emscripten")
        .or_else(|_| {
            std::fs::read_to_string(std::env::var("HOME").unwrap_or_default() + "/.emscripten")
        })
        .expect("an emscripten config");
    sb.write_old("em-config", &format!("{config}\n# a change\n"));
    let em_config = sb.path("em-config");
    sb.ok_env(&[("EM_CONFIG", em_config.as_os_str())], &compile);
    assert_eq!(counts(&sb), (2, 5), "another config");
    sb.ok_env(&[("EMCC_CFLAGS", "-DEXTRA=1")], &compile);
    assert_eq!(counts(&sb), (2, 6), "EMCC_CFLAGS");
    sb.ok(&compile);
    assert_eq!(counts(&sb), (3, 6), "back to the first setup");

    // A compile error is emcc's own message and exit code.
    sb.write_old("bad.c", "int f(void) { return }\n");
    for _ in 0..2 {
        let out = same_as_bare(&sb, ".", &["emcc", "-c", "bad.c", "-o", "bad.o"]);
        assert!(!out.status.success());
    }
}

/// A small C++ project: a source with a short variable name in it and in its header.
fn tidy_project(sb: &Sandbox) {
    sb.write_old(
        "inc/h.h",
        "inline int twice(int value) { return 2 * value; }\n",
    );
    sb.write_old(
        "src/a.cpp",
        "#include \"h.h\"\nint compute(int x) { int y = twice(x); return y; }\n",
    );
    sb.write_old(
        ".clang-tidy",
        "Checks: '-*,readability-identifier-length'\n",
    );
}

#[test]
fn clang_tidy_diagnostics_are_replayed_and_keyed_by_source_headers_and_config() {
    let sb = Sandbox::new();
    tidy_project(&sb);
    let tidy = [
        "clang-tidy",
        "src/a.cpp",
        "--header-filter=.*",
        "--",
        "-Iinc",
        "-std=c++17",
    ];
    let cold = same_as_bare(&sb, ".", &tidy);
    let warm = same_as_bare(&sb, ".", &tidy);
    assert_eq!(cold.stdout, warm.stdout);
    assert!(String::from_utf8_lossy(&warm.stdout).contains("variable name 'y' is too short"));
    assert_eq!(counts(&sb), (1, 1));

    // A header edit: the new diagnostic in the header appears.
    sb.write_old("inc/h.h", "inline int twice(int v) { return 2 * v; }\n");
    let out = same_as_bare(&sb, ".", &tidy);
    assert!(String::from_utf8_lossy(&out.stdout).contains("parameter name 'v' is too short"));
    assert_eq!(counts(&sb), (1, 2), "header edit");
    // A source edit.
    sb.write_old(
        "src/a.cpp",
        "#include \"h.h\"\nint compute(int x) { return twice(x); }\n",
    );
    same_as_bare(&sb, ".", &tidy);
    assert_eq!(counts(&sb), (1, 3), "source edit");
    // The config changes, then a nearer config appears.
    sb.write_old(
        ".clang-tidy",
        "Checks: '-*,readability-identifier-length'\nCheckOptions:\n  - key: readability-identifier-length.MinimumParameterNameLength\n    value: 1\n",
    );
    let out = same_as_bare(&sb, ".", &tidy);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("parameter name"));
    assert_eq!(counts(&sb), (1, 4), "config edit");
    sb.write_old(
        "src/.clang-tidy",
        "Checks: '-*,modernize-use-trailing-return-type'\n",
    );
    let out = same_as_bare(&sb, ".", &tidy);
    assert!(String::from_utf8_lossy(&out.stdout).contains("trailing return type"));
    assert_eq!(counts(&sb), (1, 5), "nearer config");
    same_as_bare(&sb, ".", &tidy);
    assert_eq!(counts(&sb), (2, 5));

    // Warnings as errors: exit code 1 and the same text, replayed by the hit.
    let strict = [
        "clang-tidy",
        "src/a.cpp",
        "--warnings-as-errors=*",
        "--",
        "-Iinc",
        "-std=c++17",
    ];
    for _ in 0..2 {
        let out = same_as_bare(&sb, ".", &strict);
        assert_eq!(out.status.code(), Some(1));
    }
    assert_eq!(counts(&sb), (3, 6));

    // --fix rewrites sources: run, never cached.
    sb.ok(&[
        "clang-tidy",
        "--fix",
        "src/a.cpp",
        "--",
        "-Iinc",
        "-std=c++17",
    ]);
    assert_eq!(sb.reason_count("non_cacheable", "clang_tidy_fix"), 1);
}

#[test]
fn clang_tidy_reads_the_compilation_database_like_clang_tidy() {
    let sb = Sandbox::new();
    tidy_project(&sb);
    let database = |define: &str| {
        let dir = sb.path("build");
        let entry = serde_json::json!([{
            "directory": dir,
            "file": "../src/a.cpp",
            "arguments": ["c++", "-I../inc", define, "-std=c++17", "-c", "../src/a.cpp", "-o", "a.o"],
        }]);
        sb.write_old("build/compile_commands.json", &entry.to_string());
    };
    database("-DONE");
    let tidy = ["clang-tidy", "-p", "build", "src/a.cpp"];
    same_as_bare(&sb, ".", &tidy);
    let out = same_as_bare(&sb, ".", &tidy);
    assert!(String::from_utf8_lossy(&out.stdout).contains("'y' is too short"));
    assert_eq!(counts(&sb), (1, 1));
    // The header is found through the database's -I, relative to its directory.
    sb.write_old("inc/h.h", "inline int twice(int v) { return 2 * v; }\n");
    same_as_bare(&sb, ".", &tidy);
    assert_eq!(counts(&sb), (1, 2), "header edit");
    // The source's compile command changes.
    database("-DTWO");
    same_as_bare(&sb, ".", &tidy);
    assert_eq!(counts(&sb), (1, 3), "database edit");
    same_as_bare(&sb, ".", &tidy);
    assert_eq!(counts(&sb), (2, 3));
}

#[test]
fn include_what_you_use_output_and_exit_codes_are_replayed() {
    let sb = Sandbox::new();
    sb.write_old("inc/used.h", "inline int used() { return 1; }\n");
    sb.write_old("inc/unused.h", "inline int unused() { return 2; }\n");
    sb.write_old(
        "x.cpp",
        "#include \"used.h\"\n#include \"unused.h\"\n#include <vector>\nint f() { return used(); }\n",
    );
    let iwyu = [
        "include-what-you-use",
        "-Iinc",
        "-Xiwyu",
        "--error=3",
        "x.cpp",
    ];
    for _ in 0..2 {
        let out = same_as_bare(&sb, ".", &iwyu);
        assert_eq!(out.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&out.stderr).contains("should remove these lines"));
    }
    assert_eq!(counts(&sb), (1, 1));

    // A source edit: <vector> is used now.
    sb.write_old(
        "x.cpp",
        "#include \"used.h\"\n#include \"unused.h\"\n#include <vector>\nint f() { std::vector<int> v{used()}; return v[0]; }\n",
    );
    let out = same_as_bare(&sb, ".", &iwyu);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("- #include <vector>"));
    assert_eq!(counts(&sb), (1, 2), "source edit");
    // The header starts to be needed: IWYU's verdict changes.
    sb.write_old(
        "inc/used.h",
        "#include \"unused.h\"\ninline int used() { return unused(); }\n",
    );
    same_as_bare(&sb, ".", &iwyu);
    assert_eq!(counts(&sb), (1, 3), "header edit");
    // A mapping file is read by the tool: its content is part of the key.
    sb.write_old("m.imp", "[\n  { include: [\"\\\"unused.h\\\"\", \"private\", \"\\\"used.h\\\"\", \"public\"] }\n]\n");
    let mapped = [
        "include-what-you-use",
        "-Iinc",
        "-Xiwyu",
        "--mapping_file=m.imp",
        "x.cpp",
    ];
    same_as_bare(&sb, ".", &mapped);
    same_as_bare(&sb, ".", &mapped);
    assert_eq!(counts(&sb), (2, 4));
    sb.write_old("m.imp", "[\n]\n");
    same_as_bare(&sb, ".", &mapped);
    assert_eq!(counts(&sb), (2, 5), "mapping edit");
    // A clean source: exit 0 and the same message.
    sb.write_old(
        "clean.cpp",
        "#include \"used.h\"\nint g() { return used(); }\n",
    );
    for _ in 0..2 {
        same_as_bare(&sb, ".", &["include-what-you-use", "-Iinc", "clean.cpp"]);
    }
    assert_eq!(counts(&sb), (3, 6));
}

#[test]
fn static_libraries_built_with_ar_are_cached_by_member_content() {
    let sb = Sandbox::new();
    sb.write_old("one.c", "int one(void) { return 1; }\n");
    sb.write_old("two.c", "int two(void) { return 2; }\n");
    sb.write_old(
        "main.c",
        "#include <stdio.h>\nint one(void); int two(void);\nint main(void) { printf(\"%d\\n\", one() + two()); return 0; }\n",
    );
    for source in ["one.c", "two.c", "main.c"] {
        sb.ok(&["gcc", "-c", source]);
    }
    let (hits, misses) = counts(&sb);
    let ar = ["ar", "rcs", "libnum.a", "one.o", "two.o"];
    // Cold and warm from no archive: the bytes GNU ar writes (deterministic by default here).
    let bare = sb.bare(".", &ar);
    assert_success(&bare, &ar);
    let expected = sb.read("libnum.a");
    for _ in 0..2 {
        std::fs::remove_file(sb.path("libnum.a")).unwrap();
        sb.ok(&ar);
        assert!(
            sb.read("libnum.a") == expected,
            "archive differs from bare ar"
        );
    }
    assert_eq!(counts(&sb), (hits + 1, misses + 1));
    // `ar r` into the existing archive starts from it: another key, the same bytes as bare.
    sb.ok(&ar);
    assert!(sb.read("libnum.a") == expected);
    assert_eq!(counts(&sb), (hits + 1, misses + 2));
    // A member changes: a miss, and a program linked against the archive says so.
    sb.write_old("two.c", "int two(void) { return 20; }\n");
    sb.ok(&["gcc", "-c", "two.c"]);
    std::fs::remove_file(sb.path("libnum.a")).unwrap();
    let misses = sb.misses();
    sb.ok(&ar);
    assert_eq!(sb.misses(), misses + 1, "edited member");
    sb.ok(&["gcc", "main.o", "-L.", "-lnum", "-o", "prog"]);
    assert_eq!(sb.bare(".", &["./prog"]).stdout, b"21\n");
    // Listing, extracting, real timestamps: run as called, not cached.
    let list = same_as_bare(&sb, ".", &["ar", "t", "libnum.a"]);
    assert_eq!(list.stdout, b"one.o\ntwo.o\n");
    sb.ok(&["ar", "rcU", "libnum.a", "one.o"]);
    assert_eq!(sb.reason_count("non_cacheable", "ar_operation"), 1);
    assert_eq!(sb.reason_count("non_cacheable", "ar_timestamps"), 1);
}
