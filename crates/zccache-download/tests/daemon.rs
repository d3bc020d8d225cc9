//! The download daemon through `zccache-download`, against real nginx on 127.0.0.1: shared
//! transfers, records answering repeat requests, get/wait/status/cancel and resume, unpacking,
//! exists, errors, and the daemon's lifecycle. Each test has its own cache root and stops
//! its daemon at the end.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{random_bytes, sha256_hex, Nginx};
use serde_json::Value;

/// A cache root of its own, whose download daemon is stopped when the test ends.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        Root {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_zccache-download"));
        command
            .args(args)
            .env("ZCCACHE_CACHE_DIR", self.cache())
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs `--json args…`, asserts the exit code, and parses the one JSON line.
    fn json(&self, args: &[&str], code: i32) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{all:?}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{all:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    fn daemon_status(&self) -> Value {
        self.json(&["daemon", "status"], 0)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = self.run(&["daemon", "stop"]);
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_published_file_is_answered_from_the_record_until_it_changes() {
    let server = Nginx::start();
    let data = random_bytes(3 << 20, 1);
    server.put("a.bin", &data);
    let root = Root::new();
    let dest = root.path("out/a.bin");
    let url = server.url("a.bin");

    let first = root.json(&["fetch", &url, s(&dest)], 0);
    assert_eq!(first["status"], "downloaded");
    assert_eq!(first["phase"], "done");
    assert_eq!(first["sha256"], sha256_hex(&data).as_str());
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let gets = server.gets("a.bin");

    let again = root.json(&["fetch", &url, s(&dest)], 0);
    assert_eq!(again["status"], "cached");
    assert_eq!(again["sha256"], sha256_hex(&data).as_str());
    assert_eq!(
        server.gets("a.bin"),
        gets,
        "a cached answer sends no request"
    );
    let state = root.json(&["exists", &url, s(&dest)], 0);
    assert_eq!(state["kind"], "cached");

    // Another URL for the same path is not the recorded file.
    let other = root.json(&["exists", &server.url("b.bin"), s(&dest)], 0);
    assert_eq!(other["kind"], "stale");

    // Edited in place: no longer vouched for, downloaded again.
    std::fs::write(&dest, b"edited").unwrap();
    assert_eq!(root.json(&["exists", &url, s(&dest)], 0)["kind"], "stale");
    let refetched = root.json(&["fetch", &url, s(&dest)], 0);
    assert_eq!(refetched["status"], "downloaded");
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert!(server.gets("a.bin") > gets);

    // --force downloads even a valid file.
    let gets = server.gets("a.bin");
    let forced = root.json(&["fetch", &url, s(&dest), "--force"], 0);
    assert_eq!(forced["status"], "downloaded");
    assert!(server.gets("a.bin") > gets);

    let daemon = root.daemon_status();
    assert_eq!(daemon["running"], true);
    assert_eq!(daemon["started"], 3);
    assert_eq!(daemon["cached"], 1);
    assert_eq!(daemon["completed"], 3);
}

#[test]
fn clients_asking_for_the_same_artifact_share_one_transfer() {
    // 6 MiB at 3 MiB/s on one connection: the transfer runs ~2 s, long enough to be joined.
    let server = Nginx::start_limited(Some("3m"));
    let data = random_bytes(6 << 20, 2);
    server.put("shared.bin", &data);
    let root = Root::new();
    let dest = root.path("shared.bin");
    let url = server.url("shared.bin");
    let args = [
        "--json",
        "fetch",
        url.as_str(),
        s(&dest),
        "--max-connections",
        "1",
    ];
    let first = root.command(&args).stdout(Stdio::piped()).spawn().unwrap();
    // The second client comes once the first one's transfer runs.
    let deadline = Instant::now() + Duration::from_secs(20);
    while root.json(&["exists", &url, s(&dest)], 0)["kind"] != "downloading" {
        assert!(
            Instant::now() < deadline,
            "the first transfer never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let locked = root.json(&["fetch", &url, s(&dest), "--no-wait"], 1);
    assert_eq!(locked["status"], "locked");
    let second = root.command(&args).stdout(Stdio::piped()).spawn().unwrap();
    let outputs = [first, second].map(|child| child.wait_with_output().unwrap());
    let mut ids = Vec::new();
    for out in &outputs {
        assert!(out.status.success());
        let status: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(status["status"], "downloaded");
        assert_eq!(status["sha256"], sha256_hex(&data).as_str());
        assert_eq!(status["attached_clients"], 2);
        ids.push(status["download_id"].clone());
    }
    assert_eq!(ids[0], ids[1], "both clients followed one transfer");
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    // One transfer: the range probe and one body request, not two of each.
    assert_eq!(server.gets("shared.bin"), 2);
    let daemon = root.daemon_status();
    assert_eq!(
        (daemon["started"].clone(), daemon["shared"].clone()),
        (1.into(), 1.into())
    );

    // A different URL for the same destination while it runs is refused, not mixed in.
    server.put("other.bin", &data);
    std::fs::remove_file(&dest).unwrap();
    let started = root.json(&["get", &url, s(&dest), "--max-connections", "1"], 0);
    let refused = root.run(&["fetch", &server.url("other.bin"), s(&dest)]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is being downloaded from"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let id = started["download_id"].to_string();
    assert_eq!(root.json(&["wait", &id], 0)["phase"], "done");
}

#[test]
fn a_cancelled_transfer_is_resumed_by_the_next_fetch() {
    // 12 MiB at 6 MiB/s on one connection.
    let server = Nginx::start_limited(Some("6m"));
    let data = random_bytes(12 << 20, 3);
    server.put("big.bin", &data);
    let root = Root::new();
    let dest = root.path("big.bin");
    let url = server.url("big.bin");
    let started = root.json(&["get", &url, s(&dest), "--max-connections", "1"], 0);
    assert_eq!(started["phase"], "downloading");
    let id = started["download_id"].to_string();

    // Short waits time out (exit 3) while it runs; status shows progress.
    let waited = root.json(&["wait", &id, "--timeout-ms", "100"], 3);
    assert_eq!(waited["phase"], "downloading");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = root.json(&["status", &id], 0);
        if status["downloaded_bytes"].as_u64().unwrap() >= 5 << 20 {
            break;
        }
        assert_eq!(status["phase"], "downloading", "{status}");
        assert!(Instant::now() < deadline, "no progress: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cancelled = root.json(&["cancel", &id], 0);
    assert_eq!(cancelled["phase"], "cancelled");
    assert_eq!(root.json(&["wait", &id], 1)["status"], "cancelled");
    assert!(
        !dest.exists(),
        "nothing is published by a cancelled transfer"
    );
    let state = root.json(&["exists", &url, s(&dest)], 0);
    assert_eq!(state["kind"], "partial");

    let resumed = root.json(&["fetch", &url, s(&dest), "--max-connections", "1"], 0);
    assert_eq!(resumed["status"], "downloaded");
    assert!(
        resumed["resumed_bytes"].as_u64().unwrap() >= 2 << 20,
        "{resumed}"
    );
    assert_eq!(resumed["sha256"], sha256_hex(&data).as_str());
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

fn tar_zst_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, *data).unwrap();
    }
    zstd::encode_all(&builder.into_inner().unwrap()[..], 3).unwrap()
}

#[test]
fn archives_are_unpacked_once_and_again_when_the_tree_is_gone() {
    let server = Nginx::start();
    let archive = tar_zst_of(&[
        ("tool/bin/run", b"#!/bin/sh\necho hi\n"),
        ("tool/README", b"r"),
    ]);
    // A name that does not say the format: --archive-format does.
    server.put("toolchain", &archive);
    let root = Root::new();
    let dest = root.path("dl/toolchain");
    let tree = root.path("tree");
    let url = server.url("toolchain");
    let refused = root.run(&["fetch", &url, s(&dest), "--expanded", s(&tree)]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("archive format"));

    let args = [
        "fetch",
        url.as_str(),
        s(&dest),
        "--expanded",
        s(&tree),
        "--archive-format",
        "tar.zst",
    ];
    let first = root.json(&args, 0);
    assert_eq!(first["status"], "downloaded");
    assert_eq!(first["expanded_path"], s(&tree));
    assert_eq!(std::fs::read(tree.join("tool/README")).unwrap(), b"r");
    let gets = server.gets("toolchain");

    assert_eq!(root.json(&args, 0)["status"], "cached");
    std::fs::remove_dir_all(&tree).unwrap();
    let again = root.json(&args, 0);
    assert_eq!(again["status"], "expanded", "{again}");
    assert!(tree.join("tool/bin/run").is_file());
    assert_eq!(
        server.gets("toolchain"),
        gets,
        "unpacking again downloads nothing"
    );

    // The default destination: under the cache root, named after the URL.
    let chosen = root.json(&["fetch", &url], 0);
    let path = PathBuf::from(chosen["cache_path"].as_str().unwrap());
    assert!(
        path.starts_with(root.cache().join("download/files")),
        "{path:?}"
    );
    assert_eq!(path.file_name().unwrap(), "toolchain");
}

#[test]
fn failures_name_their_cause_and_publish_nothing() {
    let server = Nginx::start();
    let data = random_bytes(1 << 20, 4);
    server.put("c.bin", &data);
    let root = Root::new();
    let dest = root.path("c.bin");
    let wrong = "0".repeat(64);
    let out = root.run(&["fetch", &server.url("c.bin"), s(&dest), "--sha256", &wrong]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sha256 mismatch"), "{stderr}");
    assert!(!dest.exists());
    assert_eq!(
        root.json(&["exists", &server.url("c.bin"), s(&dest)], 0)["kind"],
        "absent"
    );

    let out = root.run(&["fetch", &server.url("missing.bin"), s(&dest)]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing.bin") && stderr.contains("404"),
        "{stderr}"
    );

    let out = root.run(&["status", "999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no download with id 999"));

    let out = root.run(&[
        "fetch",
        &server.url("c.bin"),
        s(&root.path("")),
        "--sha256",
        "xyz",
    ]);
    assert_eq!(out.status.code(), Some(1));

    let good = root.json(
        &[
            "fetch",
            &server.url("c.bin"),
            s(&dest),
            "--sha256",
            &sha256_hex(&data).to_uppercase(),
        ],
        0,
    );
    assert_eq!(good["status"], "downloaded");
    let daemon = root.daemon_status();
    assert_eq!(daemon["failed"], 2);
}

#[test]
fn the_daemon_starts_stops_and_keeps_its_files_private() {
    let root = Root::new();
    let status = root.daemon_status();
    assert_eq!(status["running"], false);
    // Without a daemon, exists reads the records directly and starts nothing.
    let state = root.json(&["exists", "http://127.0.0.1:9/x", s(&root.path("x"))], 0);
    assert_eq!(state["kind"], "absent");
    assert_eq!(root.daemon_status()["running"], false);

    assert_eq!(root.json(&["daemon", "start"], 0)["started"], true);
    assert_eq!(root.json(&["daemon", "start"], 0)["started"], false);
    let status = root.daemon_status();
    assert_eq!(status["running"], true);
    let pid = status["pid"].as_u64().unwrap();
    let socket = PathBuf::from(status["socket"].as_str().unwrap());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(&root.cache().join("download")), 0o700);
    assert_eq!(mode(&root.cache()), 0o700);

    // A second daemon for the same root refuses to start.
    let out = root.run(&["daemon", "run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another download daemon"));

    assert_eq!(root.json(&["daemon", "stop"], 0)["stopped"], true);
    assert!(
        !Path::new(&format!("/proc/{pid}/status")).exists() || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.contains(") Z")
        }
    );
    assert_eq!(root.daemon_status()["running"], false);
    assert_eq!(root.json(&["daemon", "stop"], 0)["stopped"], false);
}
