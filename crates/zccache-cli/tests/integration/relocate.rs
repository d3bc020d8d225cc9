//! The same project built from another directory: a second clone, a CI runner whose workspace
//! path differs. crates.io crates are compiled from the same `~/.cargo/registry` sources in both
//! and hit; what the other clone's outputs would not have (its target directory's paths) never
//! reaches them.

use crate::sandbox::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// A binary crate using crates.io's serde (with derive) and regex, and a path dependency
/// whose build script compiles C with the `cc` crate. The program prints its manifest
/// directory (`env!`), so each clone's binary holds its own path.
fn project(sb: &Sandbox, dir: &str) {
    sb.write_old(
        &format!("{dir}/Cargo.toml"),
        "[package]\nname = \"reloc\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         [dependencies]\nserde = { version = \"1\", features = [\"derive\"] }\n\
         regex = { version = \"1\", default-features = false, features = [\"std\"] }\n\
         cfoo = { path = \"cfoo\" }\n",
    );
    sb.write_old(
        &format!("{dir}/src/main.rs"),
        "#[derive(serde::Serialize)]\nstruct Point { x: i32 }\n\
         fn main() {\n    let re = regex::Regex::new(\"a+b\").unwrap();\n    let p = Point { x: 3 };\n\
         \x20   println!(\"{} {} {} {}\", re.is_match(\"xaab\"), p.x, cfoo::twice(21), env!(\"CARGO_MANIFEST_DIR\"));\n}\n",
    );
    sb.write_old(
        &format!("{dir}/cfoo/Cargo.toml"),
        "[package]\nname = \"cfoo\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         [build-dependencies]\ncc = \"1\"\n",
    );
    sb.write_old(
        &format!("{dir}/cfoo/build.rs"),
        "fn main() { cc::Build::new().file(\"foo.c\").compile(\"foo\"); }\n",
    );
    sb.write_old(
        &format!("{dir}/cfoo/foo.c"),
        "int foo_twice(int x) { return 2 * x; }\n",
    );
    sb.write_old(
        &format!("{dir}/cfoo/src/lib.rs"),
        "extern \"C\" { fn foo_twice(x: i32) -> i32; }\npub fn twice(x: i32) -> i32 { unsafe { foo_twice(x) } }\n",
    );
}

/// cargo in `dir`, through zccache when `wrapped`; the target directory is the project's own.
fn cargo(sb: &Sandbox, dir: &str, args: &[&str], wrapped: bool) {
    let mut command = cargo_in(sb, dir, args);
    if wrapped {
        command.env("RUSTC_WRAPPER", ZCCACHE);
    }
    let out = command.output().unwrap();
    assert_success(&out, args);
}

/// The journal's records from line `from` on: (crate name, cwd, outcome).
fn compiles(sb: &Sandbox, from: usize) -> Vec<(String, String, String)> {
    sb.status(); // flushes the journal
    let text = std::fs::read_to_string(sb.cache.join("logs/compile_journal.jsonl")).unwrap();
    text.lines()
        .skip(from)
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            let args: Vec<&str> = record["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap_or(""))
                .collect();
            let name = args
                .iter()
                .position(|a| *a == "--crate-name")
                .map_or("?", |i| args[i + 1]);
            (
                name.to_string(),
                record["cwd"].as_str().unwrap().to_string(),
                record["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn journal_lines(sb: &Sandbox) -> usize {
    sb.status();
    std::fs::read_to_string(sb.cache.join("logs/compile_journal.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Whether crate `name`'s dep-info in `deps` says its sources read `OUT_DIR` (the build
/// script's output directory, under the target directory).
fn reads_out_dir(deps: &Path, name: &str) -> bool {
    std::fs::read_dir(deps).unwrap().flatten().any(|entry| {
        let file = entry.file_name().to_string_lossy().into_owned();
        file.starts_with(&format!("{name}-"))
            && file.ends_with(".d")
            && std::fs::read_to_string(entry.path())
                .unwrap()
                .contains("# env-dep:OUT_DIR=")
    })
}

#[test]
fn a_crates_io_project_copied_elsewhere_hits_every_registry_crate_that_does_not_read_its_target_dir(
) {
    let sb = Sandbox::new();
    project(&sb, "one/reloc");
    let lock = Command::new("cargo")
        .args(["generate-lockfile"])
        .current_dir(sb.path("one/reloc"))
        .output()
        .unwrap();
    assert_success(&lock, &["cargo generate-lockfile"]);
    cargo(&sb, "one/reloc", &["build"], true);
    // The same tree at another absolute path (its own target directory, same CARGO_HOME).
    project(&sb, "elsewhere/deeper/reloc");
    std::fs::copy(
        sb.path("one/reloc/Cargo.lock"),
        sb.path("elsewhere/deeper/reloc/Cargo.lock"),
    )
    .unwrap();
    let before = journal_lines(&sb);
    cargo(&sb, "elsewhere/deeper/reloc", &["build"], true);
    let second = compiles(&sb, before);
    let deps = sb.path("elsewhere/deeper/reloc/target/debug/deps");
    let mut registry_hits = 0;
    for (name, cwd, outcome) in &second {
        if outcome == "error" || outcome == "non_cacheable" {
            continue; // build scripts' probes of rustc
        }
        if cwd.contains("/registry/src/") {
            if reads_out_dir(&deps, name) {
                // Its sources include a file from its build script's OUT_DIR, under the
                // target directory: spans and debug info hold that path.
                assert_eq!(outcome, "miss", "{name} reads OUT_DIR");
            } else {
                assert_eq!(outcome, "hit", "{name} in {cwd}: {second:?}");
                registry_hits += 1;
            }
        } else {
            // The project's own crates: their directory (and `env!("CARGO_MANIFEST_DIR")`)
            // reach the output.
            assert_eq!(outcome, "miss", "{name} in {cwd}");
        }
    }
    eprintln!("second clone: {registry_hits} registry crates hit; {second:?}");
    assert!(registry_hits >= 10, "{second:?}");
    let run = sb.bare("elsewhere/deeper/reloc", &["target/debug/reloc"]);
    let expected = format!(
        "true 3 42 {}\n",
        sb.path("elsewhere/deeper/reloc").display()
    );
    assert_eq!(String::from_utf8_lossy(&run.stdout), expected);
    // Byte for byte what a build without zccache makes at that path: the program, and the
    // dep-info files restored from the first clone's entries (they name this clone's paths).
    let through_zccache = sb.read("elsewhere/deeper/reloc/target/debug/reloc");
    let depinfo = || -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&deps)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".d") && !f.starts_with("reloc-") && !f.starts_with("cfoo-"))
            .map(|f| (f.clone(), std::fs::read(deps.join(&f)).unwrap()))
            .collect();
        files.sort();
        files
    };
    let restored = depinfo();
    assert!(restored.len() >= 10, "{restored:?}");
    assert!(
        restored
            .iter()
            .all(|(_, text)| !String::from_utf8_lossy(text)
                .contains(sb.path("one").to_str().unwrap()))
    );
    cargo(&sb, "elsewhere/deeper/reloc", &["clean"], false);
    cargo(&sb, "elsewhere/deeper/reloc", &["build"], false);
    assert!(
        through_zccache == sb.read("elsewhere/deeper/reloc/target/debug/reloc"),
        "the binary differs from a bare build's"
    );
    assert_eq!(restored, depinfo());
}
