//! Files written a moment before their compile: code generators, a tree just checked out. They
//! are stored and hit like any others, and an edit in the clock tick a compile starts in, or
//! during it, is still never stored.

use crate::sandbox::*;
use crate::stale::which;
use std::process::Command;

/// Hits so far; 0 before the daemon has started.
fn hits(sb: &Sandbox) -> u64 {
    sb.status()["hits"].as_u64().unwrap_or(0)
}

/// Hits so far, minus `before`.
fn hits_since(sb: &Sandbox, before: u64) -> u64 {
    hits(sb) - before
}

#[test]
fn sources_and_headers_generated_right_before_each_compile_hit_when_unchanged() {
    for compiler in COMPILERS {
        let sb = Sandbox::new();
        // Set B: sources written long ago, each including a header a generator rewrites right
        // before the source is compiled (moc, protoc, configure_file).
        for i in 0..5 {
            sb.write_old(
                &format!("b{i}.c"),
                &format!("#include \"genb.h\"\nint b{i}(void) {{ return GB + {i}; }}\n"),
            );
        }
        // The generated text of each round: the same, except round 2's.
        let texts = [1, 1, 2, 1];
        let mut per_round = Vec::new();
        for (round, text) in texts.iter().enumerate() {
            // Set A: the generator writes a header and five sources, then they are compiled.
            let before = hits(&sb);
            std::fs::write(sb.path("gena.h"), format!("#define GA {text}\n")).unwrap();
            for i in 0..5 {
                std::fs::write(
                    sb.path(&format!("a{i}.c")),
                    format!("#include \"gena.h\"\nint a{i}(void) {{ return GA * {i}; }}\n"),
                )
                .unwrap();
            }
            for i in 0..5 {
                let args = [compiler, "-c", &format!("a{i}.c"), "-o", &format!("a{i}.o")];
                sb.ok(&args);
                assert_eq!(
                    sb.read(&format!("a{i}.o")),
                    sb.bare_object(&args),
                    "{compiler} round {round} a{i}"
                );
            }
            let hits_a = hits_since(&sb, before);
            let before = hits(&sb);
            for i in 0..5 {
                std::fs::write(sb.path("genb.h"), format!("#define GB {text}\n")).unwrap();
                let args = [compiler, "-c", &format!("b{i}.c"), "-o", &format!("b{i}.o")];
                sb.ok(&args);
                assert_eq!(
                    sb.read(&format!("b{i}.o")),
                    sb.bare_object(&args),
                    "{compiler} round {round} b{i}"
                );
            }
            per_round.push((hits_a, hits_since(&sb, before)));
        }
        let refused = sb.reason_count("not_stored", "input_modified_during_compile");
        eprintln!("{compiler}: hits per round (set A, set B) {per_round:?}, refused {refused}");
        // A's sources are written after its header and waited out before their compile
        // starts, so round 0 stores all five: round 1 and round 3 (the same text) are hits,
        // round 2 (a new header text) compiles anew.
        assert_eq!(per_round[0], (0, 0), "{compiler}: cold");
        assert_eq!(per_round[1].0, 5, "{compiler}: {per_round:?}");
        assert_eq!(per_round[2], (0, 0), "{compiler}: changed text");
        assert_eq!(per_round[3].0, 5, "{compiler}: {per_round:?}");
        // B's header may be written in the tick its compile starts in, the first times (not
        // stored); once a compile has read it fresh, the daemon waits that tick out before
        // every compile, so by round 3 every compile of the same text hits.
        assert_eq!(per_round[3].1, 5, "{compiler}: {per_round:?}");
        assert!(refused <= 5, "{compiler}: only the first round may refuse");
    }
}

#[test]
fn an_edit_in_the_tick_the_compiler_starts_is_never_stored() {
    // A real gcc behind a script that rewrites a file (same size, mtime put back) as it starts,
    // in the clock tick in which the daemon started it or the next: the compiler reads the new
    // text, while the key holds the old source. Nothing may be stored, and the next compile
    // must build the new text.
    for edited in ["s.c", "v.h"] {
        let sb = Sandbox::new();
        let gcc = which("gcc");
        sb.write(
            "tools/gcc",
            &format!(
                "#!/bin/sh\ncase \" $* \" in *\" -c \"*) cp \"$EDIT_FROM\" \"$EDIT\"; touch -m -r \"$EDIT_FROM\" \"$EDIT\";; esac\nexec {} \"$@\"\n",
                gcc.display()
            ),
        );
        let tool = sb.path("tools/gcc");
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        sb.write_old("v.h", "#define V 1\n");
        sb.write_old("s.c", "#include \"v.h\"\nint v(void) { return V + 1; }\n");
        let new_text = match edited {
            "v.h" => "#define V 7\n",
            _ => "#include \"v.h\"\nint v(void) { return V + 9; }\n",
        };
        sb.write_old("edit_from", new_text);
        // The replacement carries the edited file's own mtime, as a same-size edit with the
        // mtime restored would.
        let mtime = std::fs::metadata(sb.path(edited))
            .unwrap()
            .modified()
            .unwrap();
        set_mtime(&sb.path("edit_from"), mtime);
        sb.ok_env(
            &[
                ("EDIT", sb.path(edited)),
                ("EDIT_FROM", sb.path("edit_from")),
            ],
            &[tool.to_str().unwrap(), "-c", "s.c", "-o", "s.o"],
        );
        assert_eq!(
            sb.reason_count("not_stored", "input_modified_during_compile"),
            1,
            "{edited}"
        );
        let args = ["gcc", "-c", "s.c", "-o", "s2.o"];
        sb.ok(&args);
        assert_eq!(sb.hits(), 0, "{edited}");
        assert_eq!(sb.read("s2.o"), sb.bare_object(&args), "{edited}");
    }
}

/// A ninja build whose custom command generates a header that three units include.
fn generator_project(sb: &Sandbox, value: u32) {
    sb.write_old(
        "gp/gen.sh",
        &format!("#!/bin/sh\nprintf '#define VALUE {value}\\n' > \"$1\"\n"),
    );
    std::fs::set_permissions(
        sb.path("gp/gen.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for name in ["one", "two", "three"] {
        sb.write_old(
            &format!("gp/{name}.c"),
            &format!("#include \"gen/value.h\"\nint {name}(void) {{ return VALUE; }}\n"),
        );
    }
    sb.write_old(
        "gp/main.c",
        "#include <stdio.h>\nint one(void); int two(void); int three(void);\n\
         int main(void) { printf(\"%d\\n\", one() + two() + three()); return 0; }\n",
    );
    sb.write_old(
        "gp/build.ninja",
        &format!(
            "rule gen\n  command = ./gen.sh $out\n\
             rule cc\n  command = {ZCCACHE} gcc -MD -MF $out.d -I. -c $in -o $out\n  depfile = $out.d\n  deps = gcc\n\
             rule link\n  command = gcc $in -o $out\n\
             build gen/value.h: gen | gen.sh\n\
             build one.o: cc one.c || gen/value.h\n\
             build two.o: cc two.c || gen/value.h\n\
             build three.o: cc three.c || gen/value.h\n\
             build main.o: cc main.c\n\
             build app: link one.o two.o three.o main.o\n"
        ),
    );
}

fn ninja(sb: &Sandbox, args: &[&str]) {
    sb.settle_writes();
    let out = Command::new("ninja")
        .args(["-j2"])
        .args(args)
        .env("ZCCACHE_CACHE_DIR", &sb.cache)
        .current_dir(sb.path("gp"))
        .output()
        .unwrap();
    assert_success(&out, &["ninja"]);
}

#[test]
fn a_header_generated_by_the_build_is_stored_and_hits_from_clean() {
    let sb = Sandbox::new();
    generator_project(&sb, 4);
    let mut per_build = Vec::new();
    for build in 0..3 {
        let before = hits(&sb);
        ninja(&sb, &["-t", "clean"]);
        ninja(&sb, &[]);
        let run = sb.bare("gp", &["./app"]);
        assert_eq!(
            String::from_utf8_lossy(&run.stdout),
            "12\n",
            "build {build}"
        );
        per_build.push(hits_since(&sb, before));
    }
    let refused = sb.reason_count("not_stored", "input_modified_during_compile");
    eprintln!("hits per build from clean {per_build:?}, refused {refused}");
    assert_eq!(per_build[0], 0);
    // A unit whose compile started in the tick the header was written may be refused once;
    // the daemon then waits that tick out for it, so the third build is all hits.
    assert!(refused <= 3, "{refused}");
    assert_eq!(
        per_build[1] + refused,
        4,
        "{per_build:?}, refused {refused}"
    );
    assert_eq!(per_build[2], 4, "{per_build:?}");
    // The generator's text changes: the units that include it compile it, the program says so.
    generator_project(&sb, 5);
    // Only the generator is new to ninja (write_old backdates every file).
    set_mtime(&sb.path("gp/gen.sh"), std::time::SystemTime::now());
    let before = hits(&sb);
    ninja(&sb, &[]);
    let run = sb.bare("gp", &["./app"]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "15\n");
    assert_eq!(hits_since(&sb, before), 0, "three units with new text");
}
