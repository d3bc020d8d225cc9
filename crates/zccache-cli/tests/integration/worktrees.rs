//! Sibling git worktrees sharing one cache under `ZCCACHE_PATH_REMAP=auto`: the second
//! checkout's build is served from the first one's entries, with outputs that name only its
//! own paths, and a file that differs between them is never served across.

use crate::sandbox::*;
use serde_json::Value;
use std::process::{Command, Output, Stdio};

fn git(sb: &Sandbox, dir: &str, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
        .args(args)
        .current_dir(sb.path(dir))
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .unwrap();
    assert_success(&out, args);
}

/// A repository at `repo` holding what `files` wrote, committed, and a worktree of it at
/// `sibling`.
fn repo_with_worktree(sb: &Sandbox, files: impl Fn(&str)) {
    files("repo");
    git(sb, "repo", &["init", "-q", "."]);
    sb.write_old("repo/.gitignore", "build/\ntarget/\n");
    git(sb, "repo", &["add", "-A"]);
    git(sb, "repo", &["commit", "-q", "-m", "init"]);
    git(sb, "repo", &["worktree", "add", "-q", "../sibling"]);
}

fn c_project(sb: &Sandbox, dir: &str) {
    sb.write_old(
        &format!("{dir}/CMakeLists.txt"),
        "cmake_minimum_required(VERSION 3.16)\nproject(demo C)\n\
         add_executable(demo src/main.c src/util.c)\n\
         target_include_directories(demo PRIVATE include)\n",
    );
    sb.write_old(
        &format!("{dir}/include/util.h"),
        "#define GREETING \"hello\"\nint twice(int);\n",
    );
    sb.write_old(
        &format!("{dir}/src/main.c"),
        "#include <stdio.h>\n#include \"util.h\"\n\
         int main(void) { printf(\"%s %d %s\\n\", GREETING, twice(21), __FILE__); return 0; }\n",
    );
    sb.write_old(
        &format!("{dir}/src/util.c"),
        "#include \"util.h\"\nint twice(int x) { return 2 * x; }\n",
    );
}

/// Configures (Debug: `-g`) and builds `dir` with CMake + Ninja through zccache.
fn cmake_build(sb: &Sandbox, dir: &str, remap: bool) {
    sb.settle_writes();
    let with_env = |command: &mut Command| {
        command
            .env("ZCCACHE_CACHE_DIR", &sb.cache)
            .env_remove("ZCCACHE_WORKTREE_ROOT")
            .current_dir(sb.path(dir))
            .stdin(Stdio::null());
        if remap {
            command.env("ZCCACHE_PATH_REMAP", "auto");
        } else {
            command.env_remove("ZCCACHE_PATH_REMAP");
        }
    };
    let mut configure = Command::new("cmake");
    configure
        .args(["-G", "Ninja", "-S", ".", "-B", "build"])
        .args(["-DCMAKE_BUILD_TYPE=Debug", "-DCMAKE_C_COMPILER=gcc"])
        .arg(format!("-DCMAKE_C_COMPILER_LAUNCHER={ZCCACHE}"));
    with_env(&mut configure);
    assert_success(&configure.output().unwrap(), &["cmake configure"]);
    let mut build = Command::new("ninja");
    build.args(["-C", "build"]);
    with_env(&mut build);
    assert_success(&build.output().unwrap(), &["ninja"]);
}

fn run(sb: &Sandbox, dir: &str, program: &str) -> String {
    let out: Output = sb.bare(dir, &[program]);
    assert_success(&out, &[program]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `needle` occurs in file `rel`.
fn contains(sb: &Sandbox, rel: &str, needle: &str) -> bool {
    let bytes = sb.read(rel);
    bytes
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn worktree_hits(sb: &Sandbox) -> u64 {
    sb.status()["worktree_hits"].as_u64().unwrap()
}

fn journal(sb: &Sandbox) -> Vec<Value> {
    sb.status();
    std::fs::read_to_string(sb.cache.join("logs/compile_journal.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn a_sibling_worktree_of_a_cmake_debug_build_is_served_with_its_own_paths() {
    let sb = Sandbox::new();
    repo_with_worktree(&sb, |dir| c_project(&sb, dir));
    let first_root = sb.path("repo");
    let first = first_root.to_str().unwrap();
    let sibling = sb.path("sibling");
    cmake_build(&sb, "repo", true);
    assert_eq!(run(&sb, "repo", "build/demo"), "hello 42 ./src/main.c\n");
    assert_eq!((sb.hits(), sb.misses()), (0, 2));
    cmake_build(&sb, "sibling", true);
    assert_eq!(
        (sb.hits(), sb.misses()),
        (2, 2),
        "the sibling's build is all hits"
    );
    assert_eq!(worktree_hits(&sb), 2);
    assert_eq!(
        journal(&sb)
            .iter()
            .filter(|line| line["worktree_hit"] == true)
            .count(),
        2
    );
    // Its program runs and holds no path of the first worktree: `__FILE__` and debug info
    // are relative to the root in both.
    assert_eq!(run(&sb, "sibling", "build/demo"), "hello 42 ./src/main.c\n");
    for file in [
        "sibling/build/demo",
        "sibling/build/CMakeFiles/demo.dir/src/main.c.o",
    ] {
        assert!(!contains(&sb, file, first), "{file} names {first}");
    }
    // Ninja recorded the sibling's own files from the delivered depfiles.
    let deps = Command::new("ninja")
        .args(["-C", "build", "-t", "deps"])
        .current_dir(&sibling)
        .output()
        .unwrap();
    let deps = String::from_utf8_lossy(&deps.stdout).into_owned();
    assert!(
        deps.contains(&format!("{}/include/util.h", sibling.display())),
        "{deps}"
    );
    assert!(!deps.contains(first), "{deps}");
    // A header that differs in the sibling (edited now: ninja rebuilds what includes it)
    // misses there and shows there only.
    sb.write(
        "sibling/include/util.h",
        "#define GREETING \"bonjour\"\nint twice(int);\n",
    );
    cmake_build(&sb, "sibling", true);
    assert_eq!(
        run(&sb, "sibling", "build/demo"),
        "bonjour 42 ./src/main.c\n"
    );
    assert_eq!((sb.hits(), sb.misses()), (2, 4));
    // The first worktree, built again from clean, gets its own text back from the cache.
    std::fs::remove_dir_all(sb.path("repo/build")).unwrap();
    cmake_build(&sb, "repo", true);
    assert_eq!(run(&sb, "repo", "build/demo"), "hello 42 ./src/main.c\n");
    assert_eq!((sb.hits(), sb.misses()), (4, 4));
    assert_eq!(worktree_hits(&sb), 2, "its own entries: same-root hits");
}

#[test]
fn without_path_remap_a_sibling_worktree_of_a_debug_build_compiles_again() {
    let sb = Sandbox::new();
    repo_with_worktree(&sb, |dir| c_project(&sb, dir));
    cmake_build(&sb, "repo", false);
    cmake_build(&sb, "sibling", false);
    assert_eq!((sb.hits(), sb.misses()), (0, 4), "-g keys the directory");
    assert_eq!(run(&sb, "sibling", "build/demo").split(' ').count(), 3);
    assert_eq!(worktree_hits(&sb), 0);
}

#[test]
fn calls_that_cannot_be_shared_are_keyed_by_their_paths_and_counted() {
    let sb = Sandbox::new();
    sb.write_old("plain/a.c", "int a(void) { return 1; }\n");
    // No git checkout and no ZCCACHE_WORKTREE_ROOT.
    let out = sb
        .zccache()
        .args(["gcc", "-c", "a.c", "-o", "a.o"])
        .current_dir(sb.path("plain"))
        .env("ZCCACHE_PATH_REMAP", "auto")
        .output()
        .unwrap();
    assert_success(&out, &["gcc plain"]);
    // A -D value naming the checkout would be compiled into the object as written.
    repo_with_worktree(&sb, |dir| c_project(&sb, dir));
    let define = format!("-DWHERE=\"{}/data\"", sb.path("repo").display());
    let out = sb
        .zccache()
        .args([
            "gcc",
            &define,
            "-Iinclude",
            "-c",
            "src/util.c",
            "-o",
            "util.o",
        ])
        .current_dir(sb.path("repo"))
        .env("ZCCACHE_PATH_REMAP", "auto")
        .output()
        .unwrap();
    assert_success(&out, &["gcc -D"]);
    // The same with the flag and its value apart.
    let value = format!("WHERE=\"{}/data\"", sb.path("repo").display());
    let out = sb
        .zccache()
        .args([
            "gcc",
            "-D",
            &value,
            "-Iinclude",
            "-c",
            "src/util.c",
            "-o",
            "util2.o",
        ])
        .current_dir(sb.path("repo"))
        .env("ZCCACHE_PATH_REMAP", "auto")
        .output()
        .unwrap();
    assert_success(&out, &["gcc -D apart"]);
    let fallbacks = sb.status()["worktree_fallbacks"].clone();
    assert_eq!(
        fallbacks,
        serde_json::json!([["git_root_unavailable", 1], ["path_sensitive_arg", 2]])
    );
    let lines = journal(&sb);
    assert_eq!(lines[0]["remap_fallback"], "git_root_unavailable");
    assert_eq!(lines[1]["remap_fallback"], "path_sensitive_arg");
}

fn rust_project(sb: &Sandbox, dir: &str) {
    sb.write_old(
        &format!("{dir}/Cargo.toml"),
        "[workspace]\nresolver = \"2\"\nmembers = [\"app\", \"util\", \"place\"]\n",
    );
    sb.write_old(
        &format!("{dir}/util/Cargo.toml"),
        "[package]\nname = \"util\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    sb.write_old(
        &format!("{dir}/util/src/lib.rs"),
        "pub fn value() -> u32 { 7 }\npub fn source() -> &'static str { file!() }\n",
    );
    // A crate whose output holds its own directory: it must compile in each worktree.
    sb.write_old(
        &format!("{dir}/place/Cargo.toml"),
        "[package]\nname = \"place\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    sb.write_old(
        &format!("{dir}/place/src/lib.rs"),
        "pub fn dir() -> &'static str { env!(\"CARGO_MANIFEST_DIR\") }\n",
    );
    sb.write_old(
        &format!("{dir}/app/Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         [dependencies]\nutil = { path = \"../util\" }\nplace = { path = \"../place\" }\n",
    );
    sb.write_old(
        &format!("{dir}/app/src/main.rs"),
        "fn main() { println!(\"{} {}\", util::value(), util::source()); }\n",
    );
    sb.write_old(
        &format!("{dir}/app/src/bin/where.rs"),
        "fn main() { println!(\"{}\", place::dir()); }\n",
    );
}

fn cargo_build(sb: &Sandbox, dir: &str, remap: bool) {
    let mut command = cargo_in(sb, dir, &["build"]);
    command.env("RUSTC_WRAPPER", ZCCACHE);
    if remap {
        command.env("ZCCACHE_PATH_REMAP", "auto");
    }
    assert_success(&command.output().unwrap(), &["cargo build"]);
}

#[test]
fn a_sibling_worktree_of_a_cargo_workspace_hits_every_crate_its_path_does_not_reach() {
    for remap in [true, false] {
        let sb = Sandbox::new();
        repo_with_worktree(&sb, |dir| rust_project(&sb, dir));
        cargo_build(&sb, "repo", remap);
        assert_eq!(run(&sb, "repo", "target/debug/app"), "7 util/src/lib.rs\n");
        let cold = sb.misses();
        assert_eq!((sb.hits(), cold), (0, 4), "util, place, app and where");
        cargo_build(&sb, "sibling", remap);
        assert_eq!(
            run(&sb, "sibling", "target/debug/app"),
            "7 util/src/lib.rs\n"
        );
        let first = sb.path("repo");
        // `env!("CARGO_MANIFEST_DIR")`: each worktree's program names its own directory.
        assert_eq!(
            run(&sb, "sibling", "target/debug/where"),
            format!("{}\n", sb.path("sibling/place").display())
        );
        if remap {
            // util hits; place (its dep-info names CARGO_MANIFEST_DIR, and its metadata
            // holds the path) compiles again, and so do the programs linking it.
            assert_eq!((sb.hits(), sb.misses()), (1, 7), "util hits");
            assert_eq!(worktree_hits(&sb), 1);
            assert!(!contains(
                &sb,
                "sibling/target/debug/app",
                first.to_str().unwrap()
            ));
            // The restored dep-info names the sibling's target directory.
            let deps = std::fs::read_dir(sb.path("sibling/target/debug/deps")).unwrap();
            for entry in deps.flatten() {
                if entry.path().extension().is_some_and(|e| e == "d") {
                    let text = std::fs::read_to_string(entry.path()).unwrap();
                    assert!(!text.contains(first.to_str().unwrap()), "{text}");
                }
            }
        } else {
            assert_eq!(
                (sb.hits(), sb.misses()),
                (0, 8),
                "nothing changes without remap"
            );
        }
    }
}

/// A proc-macro that reads `CARGO_MANIFEST_DIR` with `std::env::var` (not tracked by rustc's
/// dep-info) and writes it into the crate that uses it.
fn proc_macro_project(sb: &Sandbox, dir: &str) {
    sb.write_old(
        &format!("{dir}/Cargo.toml"),
        "[workspace]\nresolver = \"2\"\nmembers = [\"pm\", \"app\"]\n",
    );
    sb.write_old(
        &format!("{dir}/pm/Cargo.toml"),
        "[package]\nname = \"pm\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[lib]\nproc-macro = true\n",
    );
    sb.write_old(
        &format!("{dir}/pm/src/lib.rs"),
        "use proc_macro::TokenStream;\n#[proc_macro]\npub fn here(_: TokenStream) -> TokenStream {\n\
         \x20   format!(\"{:?}\", std::env::var(\"CARGO_MANIFEST_DIR\").unwrap()).parse().unwrap()\n}\n",
    );
    sb.write_old(
        &format!("{dir}/app/Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         [dependencies]\npm = { path = \"../pm\" }\n",
    );
    sb.write_old(
        &format!("{dir}/app/src/main.rs"),
        "fn main() { println!(\"{}\", pm::here!()); }\n",
    );
}

#[test]
fn an_output_that_names_its_checkout_is_not_served_to_another() {
    let sb = Sandbox::new();
    repo_with_worktree(&sb, |dir| proc_macro_project(&sb, dir));
    cargo_build(&sb, "repo", true);
    assert_eq!(
        run(&sb, "repo", "target/debug/app"),
        format!("{}\n", sb.path("repo/app").display())
    );
    cargo_build(&sb, "sibling", true);
    // The proc-macro itself is shared; the program it wrote the first checkout's path into
    // is compiled again, and names the sibling.
    assert_eq!(
        run(&sb, "sibling", "target/debug/app"),
        format!("{}\n", sb.path("sibling/app").display())
    );
    assert_eq!(
        (sb.hits(), sb.misses()),
        (1, 3),
        "pm hits, app compiles again"
    );
    let fallbacks = sb.status()["worktree_fallbacks"].clone();
    assert_eq!(fallbacks, serde_json::json!([["path_in_output", 1]]));
}
