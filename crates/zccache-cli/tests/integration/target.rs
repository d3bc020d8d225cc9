//! `zccache target-snapshot` and `zccache warm`: cargo's target directory carried to a fresh
//! checkout, where cargo runs no rustc for what did not change, rebuilds what did, and never
//! links a crate built from other sources.

use crate::sandbox::*;
use std::process::Output;

/// A workspace: `b` (a program) prints `a::v()`.
fn workspace(sb: &Sandbox, value: u32) {
    sb.write_old(
        "ws/Cargo.toml",
        "[workspace]\nmembers = [\"a\", \"b\"]\nresolver = \"2\"\n",
    );
    sb.write_old(
        "ws/a/Cargo.toml",
        "[package]\nname = \"a\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    set_value(sb, value);
    sb.write_old(
        "ws/b/Cargo.toml",
        "[package]\nname = \"b\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         [dependencies]\na = { path = \"../a\" }\n",
    );
    sb.write_old(
        "ws/b/src/main.rs",
        "fn main() { println!(\"v={}\", a::v()); }\n",
    );
}

fn set_value(sb: &Sandbox, value: u32) {
    sb.write_old(
        "ws/a/src/lib.rs",
        &format!("pub fn v() -> u32 {{ {value} }}\n"),
    );
}

fn build(sb: &Sandbox) -> Output {
    let out = cargo_in(sb, "ws", &["build", "-v"])
        .env("RUSTC_WRAPPER", ZCCACHE)
        .output()
        .unwrap();
    assert_success(&out, &["cargo build"]);
    out
}

/// The crates cargo ran rustc for.
fn compiled(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Compiling "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

fn program(sb: &Sandbox) -> String {
    let out = std::process::Command::new(sb.path("ws/target/debug/b"))
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A fresh checkout on a new runner: no target directory, every file dated now.
fn fresh_checkout(sb: &Sandbox) {
    std::fs::remove_dir_all(sb.path("ws/target")).unwrap();
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "a/Cargo.toml",
        "a/src/lib.rs",
        "b/Cargo.toml",
        "b/src/main.rs",
    ] {
        set_mtime(
            &sb.path(&format!("ws/{file}")),
            std::time::SystemTime::now(),
        );
    }
}

fn zc(sb: &Sandbox, args: &[&str]) -> Output {
    let out = sb.run_in("ws", args);
    assert_success(&out, args);
    out
}

#[test]
fn a_restored_snapshot_runs_no_rustc_and_an_edit_rebuilds_its_crate_and_dependants() {
    let sb = Sandbox::new();
    workspace(&sb, 1);
    build(&sb);
    assert_eq!(program(&sb), "v=1");
    let archive = sb.path("snap.tzst").display().to_string();
    zc(
        &sb,
        &[
            "target-snapshot",
            "save",
            "--mode",
            "full",
            "--output",
            &archive,
        ],
    );

    // Same sources: nothing compiled at all.
    fresh_checkout(&sb);
    zc(&sb, &["target-snapshot", "restore", "--archive", &archive]);
    let out = build(&sb);
    assert_eq!(
        compiled(&out),
        Vec::<String>::new(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(program(&sb), "v=1");

    // `a` edited: a and b rebuilt, and the program prints the new value.
    fresh_checkout(&sb);
    set_value(&sb, 2);
    set_mtime(&sb.path("ws/a/src/lib.rs"), std::time::SystemTime::now());
    zc(&sb, &["target-snapshot", "restore", "--archive", &archive]);
    let out = build(&sb);
    assert_eq!(compiled(&out), ["a", "b"]);
    assert_eq!(program(&sb), "v=2");
}

#[test]
fn warm_backfills_deleted_deps_and_never_a_crate_built_from_other_sources() {
    let sb = Sandbox::new();
    workspace(&sb, 1);
    build(&sb);
    let archive = sb.path("snap.tzst").display().to_string();
    zc(
        &sb,
        &[
            "target-snapshot",
            "save",
            "--mode",
            "full",
            "--output",
            &archive,
        ],
    );
    // The cache also holds a and b built with a = 3 (same file names: same metadata hash).
    set_value(&sb, 3);
    set_mtime(&sb.path("ws/a/src/lib.rs"), std::time::SystemTime::now());
    build(&sb);
    assert_eq!(program(&sb), "v=3");
    set_value(&sb, 1);
    // And a release build of it, which is never warmed into debug/deps.
    let release = cargo_in(&sb, "ws", &["build", "--release"])
        .env("RUSTC_WRAPPER", ZCCACHE)
        .output()
        .unwrap();
    assert_success(&release, &["cargo build --release"]);

    // A new runner restores the snapshot of v=1, but target/debug/deps is gone.
    fresh_checkout(&sb);
    zc(&sb, &["target-snapshot", "restore", "--archive", &archive]);
    std::fs::remove_dir_all(sb.path("ws/target/debug/deps")).unwrap();
    let warm = zc(&sb, &["warm"]);
    let said = String::from_utf8_lossy(&warm.stdout).into_owned();
    assert!(said.contains("3 files for 2 crates"), "{said}");
    let out = build(&sb);
    assert_eq!(
        compiled(&out),
        Vec::<String>::new(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // b linked against a = 3 was in the store under the same name: not used.
    assert_eq!(program(&sb), "v=1");
}
