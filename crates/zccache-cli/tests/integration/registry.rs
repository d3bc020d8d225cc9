//! `zccache cargo-registry`: a fresh runner restores cargo's downloads and builds offline.

use crate::sandbox::*;
use std::path::Path;
use std::process::Command;

/// Every file under the archived parts of a cargo home, with its content.
fn downloads(home: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![home.join("registry/index"), home.join("registry/cache")];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
            } else {
                let rel = path.strip_prefix(home).unwrap().display().to_string();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn cargo(sb: &Sandbox, dir: &str, home: &Path, args: &[&str]) -> std::process::Output {
    cargo_in(sb, dir, args)
        .env("CARGO_HOME", home)
        .output()
        .unwrap()
}

#[test]
fn a_saved_registry_restored_on_a_fresh_runner_builds_offline() {
    let sb = Sandbox::new();
    sb.write_old(
        "app/Cargo.toml",
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         [dependencies]\nitoa = \"1\"\n",
    );
    sb.write_old(
        "app/src/main.rs",
        "fn main() { println!(\"{}\", itoa::Buffer::new().format(42u8)); }\n",
    );
    // Runner 1 downloads the crates (crates.io) into its own cargo home and saves them.
    let first = sb.path("runner1/cargo");
    let fetch = cargo(&sb, "app", &first, &["fetch"]);
    assert_success(&fetch, &["cargo fetch"]);
    let key = sb.ok(&["cargo-registry", "hash", "--lockfile", "app/Cargo.lock"]);
    let key = String::from_utf8(key.stdout).unwrap().trim().to_string();
    assert_eq!(key.len(), 16, "{key}");
    let save = sb.ok(&[
        "cargo-registry",
        "save",
        "--key",
        &key,
        "--cargo-home",
        first.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&save.stdout).contains(&format!("cargo-registry/{key}.tar.gz")));
    // Runner 2: a new cargo home, restored, then a build that may not touch the network.
    let second = sb.path("runner2/cargo");
    sb.ok(&[
        "cargo-registry",
        "restore",
        "--key",
        &key,
        "--cargo-home",
        second.to_str().unwrap(),
    ]);
    assert_eq!(downloads(&second), downloads(&first), "byte for byte");
    assert!(downloads(&second)
        .iter()
        .any(|(f, _)| f.ends_with(".crate")));
    let build = cargo(&sb, "app", &second, &["build", "--offline"]);
    assert_success(&build, &["cargo build --offline"]);
    let run = Command::new(sb.path("app/target/debug/app"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "42\n");
    // An unknown key fails the step (the action treats that as a cold start), and clean
    // removes the archives.
    let missing = sb.run(&["cargo-registry", "restore", "--key", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no cached registry found for key: nope")
    );
    let clean = sb.ok(&["cargo-registry", "clean"]);
    assert_eq!(
        String::from_utf8_lossy(&clean.stdout),
        "removed 1 cached registry archive(s)\n"
    );
}
