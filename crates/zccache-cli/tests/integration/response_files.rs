//! `@file` arguments: expanded for the key, nested, quoted, and passed through when broken.

use crate::sandbox::*;

/// A nested set of response files in the shape of a large build: ~200 -D, ~50 -I, ~30 warnings.
fn project(sb: &Sandbox) {
    let mut defines = String::new();
    for i in 0..200 {
        defines.push_str(&format!("-DFEATURE_{i}={i}\n"));
    }
    defines.push_str("-DQUOTED=\"\\\"two words\\\"\"\n'-DSINGLE=\"x y\"'\n");
    let mut includes = String::new();
    for i in 0..50 {
        std::fs::create_dir_all(sb.path(&format!("inc{i}"))).unwrap();
        includes.push_str(&format!("-Iinc{i}\n"));
    }
    sb.write_old("inc49/deep.h", "#define DEEP 7\n");
    let warnings: String = [
        "-Wall",
        "-Wextra",
        "-Wshadow",
        "-Wformat=2",
        "-Wundef",
        "-Wcast-align",
    ]
    .iter()
    .cycle()
    .take(30)
    .map(|w| format!("{w}\n"))
    .collect();
    sb.write_old("rsp/defines.rsp", &defines);
    sb.write_old("rsp/includes.rsp", &includes);
    sb.write_old("rsp/warnings.rsp", &warnings);
    sb.write_old(
        "rsp/all.rsp",
        "@rsp/defines.rsp @rsp/includes.rsp\n@rsp/warnings.rsp -O1 -c\n",
    );
    sb.write_old(
        "m.c",
        "#include <string.h>\n#include \"deep.h\"\nint f(void) { return FEATURE_199 + DEEP + (int)strlen(QUOTED) + (int)strlen(SINGLE); }\n",
    );
}

fn bare_object(sb: &Sandbox, compiler: &str, extra: &[&str]) -> Vec<u8> {
    let mut args = vec![compiler, "@rsp/all.rsp", "m.c", "-o", "bare.o"];
    args.extend_from_slice(extra);
    let out = sb.bare(".", &args);
    assert_success(&out, &args);
    sb.read("bare.o")
}

#[test]
fn nested_response_files_hit_and_match_the_compiler() {
    for compiler in COMPILERS {
        let sb = Sandbox::new();
        project(&sb);
        let args = [compiler, "@rsp/all.rsp", "m.c", "-o", "m.o"];
        sb.ok(&args);
        assert_eq!(
            sb.read("m.o"),
            bare_object(&sb, compiler, &[]),
            "{compiler} cold"
        );
        std::fs::remove_file(sb.path("m.o")).unwrap();
        sb.ok(&args);
        assert_eq!(
            sb.read("m.o"),
            bare_object(&sb, compiler, &[]),
            "{compiler} warm"
        );
        assert_eq!(
            (sb.hits(), sb.misses()),
            (1, 1),
            "{compiler}: -c inside a response file is a compile"
        );
        // Editing a nested file misses, and the object follows the edit.
        let defines = sb
            .read_string("rsp/defines.rsp")
            .replace("-DFEATURE_199=199", "-DFEATURE_199=1");
        sb.write("rsp/defines.rsp", &defines);
        settle();
        sb.ok(&args);
        assert_eq!((sb.hits(), sb.misses()), (1, 2), "{compiler}");
        assert_eq!(
            sb.read("m.o"),
            bare_object(&sb, compiler, &[]),
            "{compiler} after edit"
        );
    }
}

#[test]
fn depfile_flags_inside_a_response_file() {
    let sb = Sandbox::new();
    project(&sb);
    sb.write_old("rsp/deps.rsp", "-MMD -MP -MF deps.d\n");
    let args = ["gcc", "@rsp/all.rsp", "@rsp/deps.rsp", "m.c", "-o", "m.o"];
    sb.ok(&args);
    sb.ok(&args);
    assert_eq!(sb.hits(), 1);
    let ours = sb.read_string("deps.d");
    let bare = sb.bare(".", &args);
    assert_success(&bare, &args);
    assert_eq!(ours, sb.read_string("deps.d"));
}

#[test]
fn missing_and_circular_response_files_behave_like_the_compiler() {
    let sb = Sandbox::new();
    sb.write_old("m.c", "int m(void) { return 0; }\n");
    sb.write_old("a.rsp", "-c @b.rsp\n");
    sb.write_old("b.rsp", "@a.rsp\n");
    for args in [
        vec!["gcc", "@missing.rsp", "m.c", "-c"],
        vec!["gcc", "@a.rsp", "m.c"],
        vec!["clang", "@missing.rsp", "m.c", "-c"],
    ] {
        let ours = sb.run(&args);
        let bare = sb.bare(".", &args);
        assert_eq!(ours.status.code(), bare.status.code(), "{args:?}");
        assert_eq!(ours.stderr, bare.stderr, "{args:?}");
    }
    assert_eq!(sb.hits(), 0);
}

/// With 50 `-I` directories and 100 headers an entry has too many would-be shadows to keep
/// them all; a hit after the object was written into the source's directory derives those of
/// that directory (and keeps them for the next hit). A header created in the source's
/// directory, or in a directory searched before the one that held it, must still miss.
#[test]
fn headers_appearing_earlier_on_a_long_include_path_miss() {
    for compiler in COMPILERS {
        let sb = Sandbox::new();
        project(&sb);
        let mut source = String::from("#include \"deep.h\"\n");
        for i in 0..100 {
            sb.write_old(&format!("inc49/h{i}.h"), &format!("int h{i}(void);\n"));
            source.push_str(&format!("#include \"h{i}.h\"\n"));
        }
        source.push_str("int g(void) { return DEEP + FEATURE_3; }\n");
        sb.write_old("n.c", &source);
        let args = [compiler, "@rsp/all.rsp", "n.c", "-o", "n.o"];
        let bare = |sb: &Sandbox| {
            let bare_args = [compiler, "@rsp/all.rsp", "n.c", "-o", "bare.o"];
            assert_success(&sb.bare(".", &bare_args), &bare_args);
            sb.read("bare.o")
        };
        sb.ok(&args);
        for _ in 0..3 {
            std::fs::remove_file(sb.path("n.o")).unwrap();
            sb.ok(&args);
        }
        assert_eq!((sb.hits(), sb.misses()), (3, 1), "{compiler}");
        let mut misses = 1;
        for shadow in [
            "deep.h",
            "inc0/deep.h",
            "inc48/deep.h",
            "h7.h",
            "inc3/h99.h",
        ] {
            sb.write(shadow, "#define DEEP 8\nint h7(void); int h99(void);\n");
            settle();
            sb.ok(&args);
            misses += 1;
            assert_eq!(sb.misses(), misses, "{compiler}: {shadow} shadows a header");
            assert_eq!(sb.read("n.o"), bare(&sb), "{compiler}: {shadow}");
            // Served again while the shadow stays.
            std::fs::remove_file(sb.path("n.o")).unwrap();
            sb.ok(&args);
            assert_eq!(sb.misses(), misses, "{compiler}: {shadow} kept");
            std::fs::remove_file(sb.path(shadow)).unwrap();
        }
        // Back to the original headers: the first entry serves again.
        settle();
        sb.ok(&args);
        assert_eq!(sb.misses(), misses, "{compiler}: original layout");
        assert_eq!(sb.read("n.o"), bare(&sb), "{compiler}: original");
    }
}
