//! Never stale: every edit that finished before a compile started is seen by it.

use crate::sandbox::*;
use std::io::Write;

/// Overwrites a file in place with same-size content and puts its old mtime back.
fn same_size_edit_restoring_mtime(path: &std::path::Path, content: &str) {
    let before = std::fs::metadata(path).unwrap();
    assert_eq!(
        before.len() as usize,
        content.len(),
        "edit must keep the size"
    );
    let mtime = before.modified().unwrap();
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all(content.as_bytes()).unwrap();
    file.set_modified(mtime).unwrap();
}

#[test]
fn same_size_edit_with_restored_mtime_just_before_compile_is_seen() {
    for compiler in COMPILERS {
        let sb = Sandbox::new();
        sb.write_old("v.h", "#define V 1\n");
        sb.write_old("s.c", "#include \"v.h\"\nint v(void) { return V; }\n");
        let args = [compiler, "-c", "s.c", "-o", "s.o"];
        for round in 0..3 {
            // The header, then the source: each edited in place right before the compile.
            let v = if round % 2 == 0 { 2 } else { 3 };
            same_size_edit_restoring_mtime(&sb.path("v.h"), &format!("#define V {v}\n"));
            sb.ok(&args);
            assert_eq!(
                sb.read("s.o"),
                sb.bare_object(&args),
                "{compiler} round {round} (header)"
            );
            same_size_edit_restoring_mtime(
                &sb.path("s.c"),
                &format!("#include \"v.h\"\nint v(void) {{ return {v}; }}\n"),
            );
            sb.ok(&args);
            assert_eq!(
                sb.read("s.o"),
                sb.bare_object(&args),
                "{compiler} round {round} (source)"
            );
        }
        // Files edited a moment before their compile are stored (the daemon waits out the
        // clock tick of the source's last write): the one (source, header) pair that comes
        // back, round 2's source step (`return 2` with `V 2`, first seen in round 0), hits,
        // and its object matched the bare compiler's above.
        assert_eq!(
            sb.hits(),
            1,
            "{compiler}: only the repeated source and header pair hits"
        );
    }
}

#[test]
fn warm_entry_then_same_size_edit_misses_after_settling() {
    // The cached digest was trusted (old file); an in-place edit with the mtime restored must
    // still be noticed through ctime.
    let sb = Sandbox::new();
    sb.write_old("v.h", "#define V 1\n");
    sb.write_old("s.c", "#include \"v.h\"\nint v(void) { return V; }\n");
    settle();
    let args = ["gcc", "-c", "s.c", "-o", "s.o"];
    sb.ok(&args);
    sb.ok(&args);
    assert_eq!(sb.hits(), 1);
    settle();
    same_size_edit_restoring_mtime(&sb.path("v.h"), "#define V 9\n");
    sb.ok(&args);
    assert_eq!(sb.hits(), 1, "edited header must miss");
    assert_eq!(sb.read("s.o"), sb.bare_object(&args));
}

#[test]
fn file_changed_while_compiling_is_not_stored() {
    // A real gcc behind a script that edits the header after gcc has read it and before the
    // compile returns: the object matches the old header, so it must not be stored.
    let sb = Sandbox::new();
    let gcc = which("gcc");
    sb.write(
        "tools/gcc",
        &format!(
            "#!/bin/sh\n{} \"$@\"\ncode=$?\ncase \" $* \" in *\" -c \"*) printf '#define V 2\\n' > \"$EDIT_AFTER\";; esac\nexit $code\n",
            gcc.display()
        ),
    );
    let tool = sb.path("tools/gcc");
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    sb.write_old("v.h", "#define V 1\n");
    sb.write_old("s.c", "#include \"v.h\"\nint v(void) { return V; }\n");
    sb.ok_env(
        &[("EDIT_AFTER", sb.path("v.h"))],
        &[tool.to_str().unwrap(), "-c", "s.c", "-o", "s.o"],
    );
    assert_eq!(
        sb.reason_count("not_stored", "input_modified_during_compile"),
        1
    );
    // The next compile must see V 2, not a stored V 1 object.
    sb.ok(&["gcc", "-c", "s.c", "-o", "s2.o"]);
    let bare = sb.bare(".", &["gcc", "-c", "s.c", "-o", "bare.o"]);
    assert_success(&bare, &["bare"]);
    assert_eq!(sb.read("s2.o"), sb.read("bare.o"));
}

#[test]
fn new_header_earlier_on_the_include_path_is_seen() {
    for compiler in COMPILERS {
        let sb = Sandbox::new();
        sb.write_old("late/cfg.h", "#define V 1\n");
        std::fs::create_dir_all(sb.path("early")).unwrap();
        sb.write_old(
            "s.c",
            "#include \"cfg.h\"\n#include <stdio.h>\nint v(void) { return V; }\n",
        );
        let args = [compiler, "-c", "s.c", "-o", "s.o", "-Iearly", "-Ilate"];
        sb.ok(&args);
        sb.ok(&args);
        assert_eq!(sb.hits(), 1, "{compiler}");
        // A header appears in a directory searched first.
        sb.write_old("early/cfg.h", "#define V 2\n");
        sb.ok(&args);
        assert_eq!(sb.hits(), 1, "{compiler}: shadowing header must miss");
        assert_eq!(sb.read("s.o"), sb.bare_object(&args), "{compiler}");
        // Beside the source counts too: it is searched before any -I for "..." includes.
        sb.write_old("cfg.h", "#define V 3\n");
        sb.ok(&args);
        assert_eq!(sb.read("s.o"), sb.bare_object(&args), "{compiler}");
        // And a user header shadowing a system one.
        sb.write_old("early/stdio.h", "#define V 4\n");
        sb.ok(&args);
        assert_eq!(sb.read("s.o"), sb.bare_object(&args), "{compiler}");
        assert_eq!(sb.hits(), 1, "{compiler}");
    }
}

#[test]
fn deleted_header_with_edited_includer_misses_without_error() {
    let sb = Sandbox::new();
    sb.write_old("gone.h", "#define G 1\n");
    sb.write_old("s.c", "#include \"gone.h\"\nint g(void) { return G; }\n");
    sb.ok(&["gcc", "-c", "s.c"]);
    std::fs::remove_file(sb.path("gone.h")).unwrap();
    sb.write_old("s.c", "int g(void) { return 5; }\n");
    sb.ok(&["gcc", "-c", "s.c"]);
    assert_eq!((sb.hits(), sb.misses()), (0, 2));
    // Deleted header, source untouched: the compile fails like the bare compiler's would.
    sb.write_old("s.c", "#include \"gone.h\"\nint g(void) { return G; }\n");
    let out = sb.run(&["gcc", "-c", "s.c"]);
    assert!(!out.status.success());
}

#[test]
fn compiler_replaced_in_place_misses() {
    let sb = Sandbox::new();
    // A private copy of a real gcc, then overwritten in place by a real clang.
    let gcc = which("gcc").canonicalize().unwrap();
    let clang = which("clang").canonicalize().unwrap();
    std::fs::create_dir_all(sb.path("bin")).unwrap();
    let tool = sb.path("bin/gcc");
    std::fs::copy(&gcc, &tool).unwrap();
    sb.write_old("s.c", "int s(int x) { return x * 3; }\n");
    let args = [tool.to_str().unwrap(), "-c", "s.c", "-o", "s.o", "-O2"];
    // The copied gcc finds its cc1 through GCC_EXEC_PREFIX (part of the key, set for all runs).
    let compile = || sb.ok_env(&[("GCC_EXEC_PREFIX", "/usr/lib/gcc/")], &args);
    compile();
    compile();
    assert_eq!(sb.hits(), 1);
    let gcc_object = sb.read("s.o");
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&tool).unwrap());
    std::fs::write(&tool, std::fs::read(&clang).unwrap()).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&tool).unwrap()),
        inode,
        "replaced in place"
    );
    compile();
    assert_eq!(sb.hits(), 1, "a replaced compiler must miss");
    assert_ne!(sb.read("s.o"), gcc_object);
}

#[test]
fn edit_made_right_before_compile_in_a_tight_loop() {
    // Many rounds of edit-then-compile with no pause: every object matches its source.
    let sb = Sandbox::new();
    sb.write_old("s.c", "int v(void) { return 0; }\n");
    for round in 0..20 {
        let text = format!("int v(void) {{ return {}; }}\n", round % 10);
        std::fs::write(sb.path("s.c"), &text).unwrap();
        let args = ["gcc", "-c", "s.c", "-o", "s.o"];
        sb.ok(&args);
        assert_eq!(sb.read("s.o"), sb.bare_object(&args), "round {round}");
    }
}

pub fn which(name: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not on PATH"))
}

#[test]
fn header_in_an_include_directory_created_later_is_seen() {
    // -Inot_yet names a directory that does not exist at the first compile; objects are
    // written beside the sources, so the source directory changes with every compile too.
    for compiler in COMPILERS {
        let sb = Sandbox::new();
        sb.write_old("inc/deep/cfg.h", "#define V 1\n");
        sb.write_old(
            "s.c",
            "#include \"deep/cfg.h\"\nint v(void) { return V; }\n",
        );
        let args = [compiler, "-c", "s.c", "-o", "s.o", "-Inot_yet", "-Iinc"];
        sb.ok(&args);
        sb.ok(&args);
        sb.ok(&args);
        assert_eq!(sb.hits(), 2, "{compiler}");
        sb.write_old("not_yet/deep/cfg.h", "#define V 2\n");
        sb.ok(&args);
        assert_eq!(
            sb.hits(),
            2,
            "{compiler}: header in a new directory must miss"
        );
        assert_eq!(sb.read("s.o"), sb.bare_object(&args), "{compiler}");
        sb.ok(&args);
        assert_eq!(sb.hits(), 3, "{compiler}: and hits again once stored");
    }
}
