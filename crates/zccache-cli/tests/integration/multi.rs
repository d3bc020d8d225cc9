//! `cc -c a.c b.c …`: per-source lookups, one compiler process for the misses.

use crate::sandbox::*;

fn sources(sb: &Sandbox, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let name = format!("s{i}.c");
            sb.write_old(&name, &format!("#include <stdio.h>\n#include \"common.h\"\nint f{i}(void) {{ return COMMON + {i}; }}\n"));
            name
        })
        .collect()
}

fn bare_objects(sb: &Sandbox, compiler: &str, names: &[String], flags: &[&str]) -> Vec<Vec<u8>> {
    std::fs::create_dir_all(sb.path("bare")).unwrap();
    names
        .iter()
        .map(|name| {
            let mut args = vec![
                compiler.to_string(),
                "-c".into(),
                format!("../{name}"),
                "-I..".into(),
            ];
            args.extend(flags.iter().map(|f| f.to_string()));
            let out = sb.bare("bare", &args);
            assert_success(&out, &args);
            sb.read(&format!("bare/{}", name.replace(".c", ".o")))
        })
        .collect()
}

#[test]
fn hits_and_misses_in_one_call() {
    for compiler in COMPILERS {
        let sb = Sandbox::new();
        sb.write_old("common.h", "#define COMMON 100\n");
        let names = sources(&sb, 6);
        let mut args: Vec<String> = vec![compiler.into(), "-c".into(), "-O1".into(), "-I.".into()];
        args.extend(names.iter().cloned());
        sb.ok(&args);
        assert_eq!((sb.hits(), sb.misses()), (0, 6), "{compiler}");
        let objects = |sb: &Sandbox| -> Vec<Vec<u8>> {
            names
                .iter()
                .map(|n| sb.read(&n.replace(".c", ".o")))
                .collect()
        };
        // No depfile was asked for, and none is left behind.
        assert!(!sb.path("s0.d").exists());
        let expected = bare_objects(&sb, compiler, &names, &["-O1"]);
        assert_eq!(objects(&sb), expected, "{compiler} cold");
        for name in &names {
            std::fs::remove_file(sb.path(&name.replace(".c", ".o"))).unwrap();
        }
        sb.ok(&args);
        assert_eq!((sb.hits(), sb.misses()), (6, 6), "{compiler}");
        assert_eq!(objects(&sb), expected, "{compiler} warm");
        // Edit two sources: two misses compiled together, four hits.
        sb.write("s1.c", "int f1(void) { return 1; }\n");
        sb.write("s4.c", "int f4(void) { return 4; }\n");
        settle();
        sb.ok(&args);
        assert_eq!((sb.hits(), sb.misses()), (10, 8), "{compiler}");
        let expected = bare_objects(&sb, compiler, &names, &["-O1"]);
        assert_eq!(objects(&sb), expected, "{compiler} after edits");
        // A single source compiled alone shares the entry.
        sb.ok(&[compiler, "-c", "-O1", "-I.", "s2.c"]);
        assert_eq!(sb.hits(), 11, "{compiler}");
    }
}

#[test]
fn a_compile_error_among_hits_and_misses_is_reported_like_the_compiler() {
    let sb = Sandbox::new();
    sb.write_old("common.h", "#define COMMON 1\n");
    let names = sources(&sb, 3);
    let mut args: Vec<String> = vec!["gcc".into(), "-c".into(), "-I.".into()];
    args.extend(names.iter().cloned());
    sb.ok(&args);
    sb.write("s1.c", "int f1(void) { return missing; }\n");
    sb.write("s2.c", "int f2(void) { return 2; }\n");
    settle();
    for name in &names {
        let _ = std::fs::remove_file(sb.path(&name.replace(".c", ".o")));
    }
    let ours = sb.run(&args);
    let ours_objects: Vec<bool> = names
        .iter()
        .map(|n| sb.path(&n.replace(".c", ".o")).exists())
        .collect();
    let ours_s2 = sb.read("s2.o");
    for name in &names {
        let _ = std::fs::remove_file(sb.path(&name.replace(".c", ".o")));
    }
    let bare = sb.bare(".", &args);
    let bare_objects: Vec<bool> = names
        .iter()
        .map(|n| sb.path(&n.replace(".c", ".o")).exists())
        .collect();
    assert_eq!(ours.status.code(), bare.status.code());
    assert_eq!(ours.stderr, bare.stderr);
    assert_eq!(ours_objects, bare_objects);
    assert_eq!(ours_s2, sb.read("s2.o"));
    assert_eq!(sb.hits(), 1, "s0 was a hit");
    assert_eq!(sb.reason_count("not_stored", "compile_failed"), 2);
}

#[test]
fn warnings_from_several_misses_are_shown_but_not_attributed() {
    let sb = Sandbox::new();
    sb.write_old("w1.c", "int w1(int x) { int unused; return x; }\n");
    sb.write_old("w2.c", "int w2(int x) { int unused2; return x; }\n");
    let args = ["gcc", "-c", "-Wall", "w1.c", "w2.c"];
    let cold = sb.ok(&args);
    let bare = sb.bare(".", &args);
    assert_eq!(cold.stderr, bare.stderr);
    assert_eq!(sb.reason_count("not_stored", "multi_file_diagnostics"), 2);
    // Alone, each is stored with its own warning, and then hits in a batch too.
    sb.ok(&["gcc", "-c", "-Wall", "w1.c"]);
    sb.ok(&["gcc", "-c", "-Wall", "w2.c"]);
    let warm = sb.ok(&args);
    assert_eq!(sb.hits(), 2);
    assert_eq!(warm.stderr, bare.stderr);
}

#[test]
fn depfiles_for_several_sources_match_the_compiler() {
    for compiler in COMPILERS {
        for flag in ["-MD", "-MMD"] {
            let sb = Sandbox::new();
            sb.write_old("common.h", "#define COMMON 3\n");
            let names = sources(&sb, 3);
            let mut args: Vec<String> = vec![
                compiler.into(),
                "-c".into(),
                "-I.".into(),
                flag.into(),
                "-MP".into(),
            ];
            args.extend(names.iter().cloned());
            sb.ok(&args);
            let cold: Vec<String> = (0..3).map(|i| sb.read_string(&format!("s{i}.d"))).collect();
            sb.ok(&args);
            let warm: Vec<String> = (0..3).map(|i| sb.read_string(&format!("s{i}.d"))).collect();
            let bare = sb.bare(".", &args);
            assert_success(&bare, &args);
            let expected: Vec<String> =
                (0..3).map(|i| sb.read_string(&format!("s{i}.d"))).collect();
            assert_eq!(cold, expected, "{compiler} {flag} cold");
            assert_eq!(warm, expected, "{compiler} {flag} warm");
            assert_eq!(sb.hits(), 3, "{compiler} {flag}");
        }
    }
}

/// A new daemon's first call holds a C and a C++ source: the compiler's system dirs are probed
/// for both languages beside the compile, and both results are stored and served.
#[test]
fn c_and_cxx_sources_in_a_new_daemons_first_call() {
    for compiler in COMPILERS {
        let sb = Sandbox::new();
        sb.write_old(
            "a.c",
            "#include <stdio.h>\nint a(void) { return printf(\"a\"); }\n",
        );
        sb.write_old(
            "b.cpp",
            "#include <vector>\nint b() { std::vector<int> v(3); return (int)v.size(); }\n",
        );
        let args = [compiler, "-c", "-O1", "a.c", "b.cpp"];
        sb.ok(&args);
        assert_eq!((sb.hits(), sb.misses()), (0, 2), "{compiler}");
        let cold = (sb.read("a.o"), sb.read("b.o"));
        std::fs::create_dir_all(sb.path("bare")).unwrap();
        let bare_args = [compiler, "-c", "-O1", "../a.c", "../b.cpp"];
        assert_success(&sb.bare("bare", &bare_args), &bare_args);
        assert_eq!(
            cold,
            (sb.read("bare/a.o"), sb.read("bare/b.o")),
            "{compiler}"
        );
        std::fs::remove_file(sb.path("a.o")).unwrap();
        std::fs::remove_file(sb.path("b.o")).unwrap();
        sb.ok(&args);
        assert_eq!((sb.hits(), sb.misses()), (2, 2), "{compiler}");
        assert_eq!(cold, (sb.read("a.o"), sb.read("b.o")), "{compiler}");
    }
}
