//! Depfiles on a hit are what the compiler writes for this call.

use crate::sandbox::*;

/// Runs the same compile through zccache (twice: miss then hit) and bare, and returns the three
/// depfiles.
fn three_depfiles(sb: &Sandbox, args: &[&str], depfile: &str) -> (String, String, String) {
    let mut cached = args.to_vec();
    cached.push("-o");
    cached.push("obj/out.o");
    sb.ok(&cached);
    let cold = sb.read_string(depfile);
    std::fs::remove_file(sb.path(depfile)).unwrap();
    std::fs::remove_file(sb.path("obj/out.o")).unwrap();
    sb.ok(&cached);
    let warm = sb.read_string(depfile);
    std::fs::remove_file(sb.path(depfile)).unwrap();
    let bare = sb.bare(".", &cached);
    assert_success(&bare, &cached);
    let expected = sb.read_string(depfile);
    (cold, warm, expected)
}

fn project(sb: &Sandbox) {
    // Long and awkward names so that line wrapping and escaping are exercised.
    sb.write_old(
        "include/a_rather_long_directory_name/with_a_long_header_name_one.h",
        "#define ONE 1\n",
    );
    sb.write_old(
        "include/a_rather_long_directory_name/with_a_long_header_name_two.h",
        "#define TWO 2\n",
    );
    sb.write_old("include/sp ace/dollar$name.h", "#define THREE 3\n");
    sb.write_old("include/x.h", "#define X 4\n");
    sb.write_old(
        "src/main.c",
        "#include <stdio.h>\n#include <string.h>\n\
         #include \"a_rather_long_directory_name/with_a_long_header_name_one.h\"\n\
         #include \"a_rather_long_directory_name/with_a_long_header_name_two.h\"\n\
         #include \"dollar$name.h\"\n#include \"x.h\"\n\
         int main(void) { return ONE + TWO + THREE + X; }\n",
    );
    std::fs::create_dir_all(sb.path("obj")).unwrap();
}

#[test]
fn depfiles_match_the_compiler_byte_for_byte() {
    let flag_sets: &[&[&str]] = &[
        &["-MD"],
        &["-MMD"],
        &["-MD", "-MP"],
        &["-MMD", "-MP"],
        &["-MD", "-MT", "custom/target.o"],
        &["-MMD", "-MT", "t1", "-MQ", "t$2 with space"],
        &["-MMD", "-MP", "-MF", "deps/explicit.d"],
    ];
    for compiler in ["gcc", "clang", "g++", "clang++"] {
        for flags in flag_sets {
            let sb = Sandbox::new();
            project(&sb);
            std::fs::create_dir_all(sb.path("deps")).unwrap();
            let mut args = vec![
                compiler,
                "-c",
                "src/main.c",
                "-Iinclude",
                "-Iinclude/sp ace",
            ];
            args.extend_from_slice(flags);
            let depfile = if flags.contains(&"-MF") {
                "deps/explicit.d"
            } else {
                "obj/out.d"
            };
            let (cold, warm, expected) = three_depfiles(&sb, &args, depfile);
            assert_eq!(cold, expected, "{compiler} {flags:?}: cold depfile");
            assert_eq!(warm, expected, "{compiler} {flags:?}: warm depfile");
            assert_eq!(sb.hits(), 1, "{compiler} {flags:?}");
        }
    }
}

#[test]
fn hit_depfile_names_the_requested_target() {
    let sb = Sandbox::new();
    project(&sb);
    let base = [
        "gcc",
        "-c",
        "src/main.c",
        "-Iinclude",
        "-Iinclude/sp ace",
        "-MD",
        "-MF",
        "m.d",
    ];
    let mut first = base.to_vec();
    first.extend(["-MT", "first.o", "-o", "first.o"]);
    sb.ok(&first);
    let mut second = base.to_vec();
    second.extend(["-MT", "second.o", "-o", "second.o"]);
    sb.ok(&second);
    let text = sb.read_string("m.d");
    assert!(text.starts_with("second.o:"), "{text}");
    assert!(text.contains("with_a_long_header_name_two.h"), "{text}");
    assert!(text.contains("/stdio.h"), "{text}");
    // Same -MT value, other object path: a hit.
    let mut third = base.to_vec();
    third.extend(["-MT", "second.o", "-o", "third.o"]);
    sb.ok(&third);
    assert_eq!(sb.hits(), 1);
    assert_eq!(sb.read_string("m.d"), text);
}

#[test]
fn depfile_to_dev_null_writes_nothing_and_still_caches() {
    let sb = Sandbox::new();
    sb.write_old("s.c", "int s(void) { return 1; }\n");
    let args = ["gcc", "-c", "s.c", "-MD", "-MF", "/dev/null", "-o", "s.o"];
    sb.ok(&args);
    sb.ok(&args);
    assert_eq!(sb.hits(), 1);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
}

/// The daemon hands gcc the same scratch depfile miss after miss: each compile must record
/// the headers it read itself, not those of the compile that used the file before it.
#[test]
fn a_reused_scratch_depfile_records_only_its_own_compiles_headers() {
    let sb = Sandbox::new();
    sb.write_old("big.h", "#define BIG 1\n");
    sb.write_old("a.c", "#include \"big.h\"\nint a(void) { return BIG; }\n");
    sb.write_old("b.c", "int b(void) { return 2; }\n");
    sb.ok(&["gcc", "-c", "a.c", "-o", "a.o"]);
    sb.ok(&["gcc", "-c", "b.c", "-o", "b.o"]);
    assert_eq!((sb.hits(), sb.misses()), (0, 2));
    // b.c never read big.h: editing it leaves b.o a hit and makes a.o a miss.
    sb.write_old("big.h", "#define BIG 22\n");
    std::fs::remove_file(sb.path("b.o")).unwrap();
    sb.ok(&["gcc", "-c", "b.c", "-o", "b.o"]);
    assert_eq!((sb.hits(), sb.misses()), (1, 2));
    sb.ok(&["gcc", "-c", "a.c", "-o", "a.o"]);
    assert_eq!((sb.hits(), sb.misses()), (1, 3));
}

/// Scratch files live in a private directory in memory where there is `/dev/shm`, not in
/// the cache's `tmp/`, and go when the daemon stops.
#[test]
fn scratch_files_live_in_a_private_memory_dir_and_go_with_the_daemon() {
    use std::os::unix::fs::PermissionsExt;
    if !std::path::Path::new("/dev/shm").is_dir() {
        eprintln!("skipped: no /dev/shm here");
        return;
    }
    let sb = Sandbox::new();
    sb.write_old("a.c", "int a(void) { return 1; }\n");
    sb.ok(&["gcc", "-c", "a.c", "-o", "a.o"]);
    let root = zccache_core::CacheRoot::new(&sb.cache);
    let scratch = root
        .ensure_scratch_dir(zccache_protocol::PROTOCOL_VERSION)
        .unwrap();
    let names = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|name| name.starts_with("scratch-"))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names(&scratch).len(), 1, "one compile, one scratch file");
    assert!(names(&root.tmp_dir()).is_empty());
    for dir in [scratch.as_path(), scratch.parent().unwrap()] {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
    let stop = sb.zccache().arg("stop").output().unwrap();
    assert_success(&stop, &["stop"]);
    assert!(!scratch.exists(), "the daemon's scratch dir outlived it");
}
