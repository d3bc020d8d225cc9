//! `zccache gha-cache` against a local implementation of GitHub's cache service v2 and its blob
//! store (`tests/gha/server.py`, on 127.0.0.1), cross-checked with the official `@actions/cache`
//! client (`tests/gha/actions-cache.mjs`, node modules from `npm ci` in tests/gha, which
//! `test.sh` runs).

use crate::sandbox::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// `tests/gha` in the repository.
pub fn gha_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/gha")
}

/// The cache service, running until dropped.
pub struct GhaServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl GhaServer {
    pub fn start() -> GhaServer {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let child = Command::new("python3")
            .arg(gha_dir().join("server.py"))
            .arg("--port-file")
            .arg(&port_file)
            .arg("--data-dir")
            .arg(dir.path().join("blobs"))
            .stderr(std::fs::File::create(dir.path().join("server.log")).unwrap())
            .spawn()
            .expect("python3 tests/gha/server.py");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.trim().parse().ok())
            {
                break port;
            }
            assert!(Instant::now() < deadline, "the cache server did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        GhaServer {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The runner's variables for this server and `token`.
    pub fn env(&self, token: &str) -> Vec<(String, String)> {
        vec![
            ("ACTIONS_RESULTS_URL".into(), self.url()),
            ("ACTIONS_CACHE_URL".into(), self.url()),
            ("ACTIONS_RUNTIME_TOKEN".into(), token.into()),
            ("ACTIONS_CACHE_SERVICE_V2".into(), "true".into()),
        ]
    }

    fn http(&self, method: &str, path: &str, body: &str) -> Value {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        let (_, json) = reply.split_once("\r\n\r\n").unwrap();
        serde_json::from_str(json).unwrap()
    }

    pub fn stats(&self) -> Value {
        self.http("GET", "/_stats", "")
    }

    pub fn control(&self, json: &str) {
        self.http("POST", "/_control", json);
    }

    /// Finalized entries: (key, version, size).
    pub fn entries(&self) -> Vec<(String, String, u64)> {
        self.stats()["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["finalized"].as_bool() == Some(true))
            .map(|e| {
                (
                    e["key"].as_str().unwrap().to_string(),
                    e["version"].as_str().unwrap().to_string(),
                    e["size"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

impl Drop for GhaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `zccache gha-cache args` in the work dir, as a job step with `token`.
fn gha(sb: &Sandbox, server: &GhaServer, token: &str, args: &[&str]) -> Output {
    let mut command = sb.zccache();
    command.arg("gha-cache").args(args);
    for (k, v) in server.env(token) {
        command.env(k, v);
    }
    command
        .env("GITHUB_WORKSPACE", &sb.work)
        .env("RUNNER_TEMP", sb.path("runner-temp"));
    command.output().unwrap()
}

/// The official client: `node tests/gha/actions-cache.mjs args` in the work dir.
fn official(sb: &Sandbox, server: &GhaServer, args: &[&str]) -> Output {
    let script = gha_dir().join("actions-cache.mjs");
    assert!(
        gha_dir().join("node_modules/@actions/cache").is_dir(),
        "@actions/cache is not installed: run `npm ci` in tests/gha (test.sh does)"
    );
    let mut command = Command::new("node");
    command.arg(script).args(args).current_dir(&sb.work);
    for (k, v) in server.env("token") {
        command.env(k, v);
    }
    command
        .env("GITHUB_WORKSPACE", &sb.work)
        .env("RUNNER_TEMP", sb.path("runner-temp"));
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every file under `dir` with its content and mode, sorted.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            if meta.is_dir() {
                pending.push(path);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.push((rel, target.display().to_string().into_bytes(), 0));
            } else {
                out.push((
                    rel,
                    std::fs::read(&path).unwrap(),
                    meta.permissions().mode(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn fill(sb: &Sandbox, dir: &str) {
    sb.write(&format!("{dir}/a.txt"), "alpha\n");
    sb.write(&format!("{dir}/nested/deeper/b.txt"), "beta\n");
    std::fs::write(sb.path(&format!("{dir}/blob.bin")), vec![42u8; 3 << 20]).unwrap();
    std::os::unix::fs::symlink("a.txt", sb.path(&format!("{dir}/link"))).unwrap();
}

#[test]
fn save_restore_prefix_and_restore_key_fallback() {
    let sb = Sandbox::new();
    let server = GhaServer::start();
    fill(&sb, "out");
    let saved = tree(&sb.path("out"));
    let save = gha(
        &sb,
        &server,
        "t",
        &["save", "--key", "build-linux-abc", "--path", "out"],
    );
    assert!(save.status.success(), "{}", text(&save.stderr));
    // The same key again: 409, which is success.
    let again = gha(
        &sb,
        &server,
        "t",
        &["save", "--key", "build-linux-abc", "--path", "out"],
    );
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("already saved"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(server.stats()["create_conflict"], 1);
    assert_eq!(server.entries().len(), 1);

    // Exact restore, byte-identical, links and modes kept.
    std::fs::remove_dir_all(sb.path("out")).unwrap();
    let exact = gha(
        &sb,
        &server,
        "t",
        &["restore", "--key", "build-linux-abc", "--path", "out"],
    );
    assert!(exact.status.success(), "{}", text(&exact.stderr));
    assert_eq!(text(&exact.stdout).trim(), "build-linux-abc");
    assert_eq!(tree(&sb.path("out")), saved);

    // The key as a prefix, then a restore key.
    std::fs::remove_dir_all(sb.path("out")).unwrap();
    let prefix = gha(
        &sb,
        &server,
        "t",
        &["restore", "--key", "build-linux", "--path", "out"],
    );
    assert!(prefix.status.success(), "{}", text(&prefix.stderr));
    assert_eq!(text(&prefix.stdout).trim(), "build-linux-abc");
    std::fs::remove_dir_all(sb.path("out")).unwrap();
    let fallback = gha(
        &sb,
        &server,
        "t",
        &[
            "restore",
            "--key",
            "build-macos-abc",
            "--restore-key",
            "nothing-",
            "--restore-key",
            "build-",
            "--path",
            "out",
        ],
    );
    assert!(fallback.status.success(), "{}", text(&fallback.stderr));
    assert_eq!(text(&fallback.stdout).trim(), "build-linux-abc");
    assert_eq!(tree(&sb.path("out")), saved);

    // A miss, and other paths (another version): exit 1, nothing written.
    let miss = gha(
        &sb,
        &server,
        "t",
        &["restore", "--key", "other", "--path", "else"],
    );
    assert_eq!(miss.status.code(), Some(1));
    assert!(
        text(&miss.stderr).contains("no cache found"),
        "{}",
        text(&miss.stderr)
    );
    let other_paths = gha(
        &sb,
        &server,
        "t",
        &["restore", "--key", "build-linux-abc", "--path", "else"],
    );
    assert_eq!(other_paths.status.code(), Some(1));
    assert!(!sb.path("else").exists());
}

#[test]
fn throttling_is_waited_out_and_a_read_only_token_or_a_gone_server_is_reported() {
    let sb = Sandbox::new();
    let server = GhaServer::start();
    fill(&sb, "out");
    // Two 429s with Retry-After: 1, then the save goes through.
    server.control(r#"{"throttle": 2, "retry_after": 1}"#);
    let save = gha(&sb, &server, "t", &["save", "--key", "k", "--path", "out"]);
    assert!(save.status.success(), "{}", text(&save.stderr));
    assert_eq!(server.stats()["throttled"], 2);
    assert_eq!(server.entries().len(), 1);

    // A read-only token (a pull request from a fork): save reported, restore works.
    server.control(r#"{"read_only_tokens": ["pr"]}"#);
    let denied = gha(
        &sb,
        &server,
        "pr",
        &["save", "--key", "k2", "--path", "out"],
    );
    assert_eq!(denied.status.code(), Some(1));
    assert!(
        text(&denied.stderr).contains("may only read caches"),
        "{}",
        text(&denied.stderr)
    );
    assert_eq!(server.entries().len(), 1);
    std::fs::remove_dir_all(sb.path("out")).unwrap();
    let restore = gha(
        &sb,
        &server,
        "pr",
        &["restore", "--key", "k", "--path", "out"],
    );
    assert!(restore.status.success(), "{}", text(&restore.stderr));
    assert_eq!(sb.read_string("out/a.txt"), "alpha\n");

    // No runtime at all: reported, exit 1, no panic.
    let mut bare = sb.zccache();
    bare.args(["gha-cache", "save", "--key", "k3", "--path", "out"])
        .env_remove("ACTIONS_RESULTS_URL")
        .env_remove("ACTIONS_RUNTIME_TOKEN");
    let unavailable = bare.output().unwrap();
    assert_eq!(unavailable.status.code(), Some(1));
    assert!(
        text(&unavailable.stderr).contains("ACTIONS_RESULTS_URL"),
        "{}",
        text(&unavailable.stderr)
    );

    // The server gone: both commands report and return.
    let port = server.port;
    let env = server.env("t");
    drop(server);
    for args in [
        &["save", "--key", "k4", "--path", "out"][..],
        &["restore", "--key", "k", "--path", "out"][..],
    ] {
        let mut command = sb.zccache();
        command.arg("gha-cache").args(args);
        for (k, v) in &env {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("unreachable") && err.contains(&port.to_string()),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn entries_cross_over_with_the_official_client() {
    let sb = Sandbox::new();
    let server = GhaServer::start();
    fill(&sb, "ours");
    // A path outside the workspace, named as actions/cache names it (../…).
    let outside = sb.path("../elsewhere");
    std::fs::create_dir_all(outside.join("x")).unwrap();
    std::fs::write(outside.join("x/f.txt"), "outside\n").unwrap();
    let outside_arg = outside.display().to_string();

    // zccache saves, @actions/cache restores.
    let ours = tree(&sb.path("ours"));
    let save = gha(
        &sb,
        &server,
        "t",
        &[
            "save",
            "--key",
            "z-1",
            "--path",
            "ours",
            "--path",
            &outside_arg,
        ],
    );
    assert!(save.status.success(), "{}", text(&save.stderr));
    std::fs::remove_dir_all(sb.path("ours")).unwrap();
    std::fs::remove_dir_all(&outside).unwrap();
    let restore = official(&sb, &server, &["restore", "z-1", "ours", &outside_arg]);
    assert!(restore.status.success(), "{}", text(&restore.stderr));
    assert!(
        text(&restore.stdout).contains("\"z-1\""),
        "{}",
        text(&restore.stdout)
    );
    assert_eq!(tree(&sb.path("ours")), ours);
    assert_eq!(
        std::fs::read_to_string(outside.join("x/f.txt")).unwrap(),
        "outside\n"
    );

    // The version strings agree.
    let version = official(&sb, &server, &["version", "ours", &outside_arg]);
    let (_, ours_version, _) = server.entries().into_iter().find(|e| e.0 == "z-1").unwrap();
    assert_eq!(text(&version.stdout).trim(), ours_version);

    // @actions/cache saves, zccache restores (by restore key).
    fill(&sb, "theirs");
    let theirs = tree(&sb.path("theirs"));
    let save = official(&sb, &server, &["save", "official-7", "theirs"]);
    assert!(save.status.success(), "{}", text(&save.stderr));
    std::fs::remove_dir_all(sb.path("theirs")).unwrap();
    let restore = gha(
        &sb,
        &server,
        "t",
        &[
            "restore",
            "--key",
            "nope",
            "--restore-key",
            "official-",
            "--path",
            "theirs",
        ],
    );
    assert!(restore.status.success(), "{}", text(&restore.stderr));
    assert_eq!(text(&restore.stdout).trim(), "official-7");
    assert_eq!(tree(&sb.path("theirs")), theirs);
}

/// A C project compiled through zccache with `runner`'s cache root.
fn compile_all(sb: &Sandbox, cache: &Path, units: &[&str]) -> Output {
    let mut last = None;
    for unit in units {
        let out = sb
            .zccache()
            .env("ZCCACHE_CACHE_DIR", cache)
            .args([
                "gcc",
                "-O1",
                "-c",
                &format!("{unit}.c"),
                "-o",
                &format!("{unit}.o"),
            ])
            .output()
            .unwrap();
        assert_success(&out, &[unit]);
        last = Some(out);
    }
    last.unwrap()
}

fn cache_status(sb: &Sandbox, cache: &Path) -> Value {
    let out = sb
        .zccache()
        .env("ZCCACHE_CACHE_DIR", cache)
        .args(["status", "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn cache_cmd(sb: &Sandbox, server: &GhaServer, cache: &Path, args: &[&str]) -> Output {
    let mut command = sb.zccache();
    command
        .env("ZCCACHE_CACHE_DIR", cache)
        .env("RUNNER_TEMP", sb.path("runner-temp"))
        .arg("gha-cache")
        .args(args);
    for (k, v) in server.env("t") {
        command.env(k, v);
    }
    command.output().unwrap()
}

#[test]
fn the_compile_cache_travels_as_a_chain_of_packs_with_only_new_blobs() {
    let sb = Sandbox::new();
    let server = GhaServer::start();
    for i in 0..6 {
        sb.write_old(
            &format!("u{i}.c"),
            &format!("int f{i}(int x) {{ return x * {i}; }}\n"),
        );
    }
    let units = |n: usize| (0..n).map(|i| format!("u{i}")).collect::<Vec<_>>();
    let first: Vec<String> = units(3);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();

    // Runner 1: three compiles, saved as pack 1 + manifest.
    let cache1 = sb.path("runner1-cache");
    compile_all(&sb, &cache1, &first);
    let save = cache_cmd(
        &sb,
        &server,
        &cache1,
        &["save", "--cache", "--key", "zc-linux-run1"],
    );
    assert!(save.status.success(), "{}", text(&save.stderr));
    let after1 = server.stats();
    assert_eq!(server.entries().len(), 2, "{after1}");

    // Runner 2: restores by prefix, the three compiles hit, three more are new.
    let cache2 = sb.path("runner2-cache");
    let restore = cache_cmd(
        &sb,
        &server,
        &cache2,
        &[
            "restore",
            "--cache",
            "--key",
            "zc-linux-run2",
            "--restore-key",
            "zc-linux-",
        ],
    );
    assert!(restore.status.success(), "{}", text(&restore.stderr));
    assert_eq!(text(&restore.stdout).trim(), "zc-linux-run1");
    for unit in &first {
        std::fs::remove_file(sb.path(&format!("{unit}.o"))).unwrap();
    }
    compile_all(&sb, &cache2, &first);
    let status = cache_status(&sb, &cache2);
    assert_eq!(status["hits"], 3, "{status}");
    assert_eq!(status["misses"], 0, "{status}");
    let all: Vec<String> = units(6);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    compile_all(&sb, &cache2, &all[3..]);
    server.control(r#"{"reset_stats": true}"#);
    let save = cache_cmd(
        &sb,
        &server,
        &cache2,
        &["save", "--cache", "--key", "zc-linux-run2"],
    );
    assert!(save.status.success(), "{}", text(&save.stderr));
    let err = text(&save.stderr);
    // Only the new blobs travel: one pack and one manifest.
    assert!(err.contains("chain of 2 packs"), "{err}");
    let stats = server.stats();
    assert_eq!(stats["create"], 2, "{stats}");

    // Runner 3: the chain restores whole; all six hit.
    let cache3 = sb.path("runner3-cache");
    let restore = cache_cmd(
        &sb,
        &server,
        &cache3,
        &[
            "restore",
            "--cache",
            "--key",
            "zc-linux-run3",
            "--restore-key",
            "zc-linux-",
        ],
    );
    assert!(restore.status.success(), "{}", text(&restore.stderr));
    assert_eq!(text(&restore.stdout).trim(), "zc-linux-run2");
    let objects: Vec<Vec<u8>> = all.iter().map(|u| sb.read(&format!("{u}.o"))).collect();
    for unit in &all {
        std::fs::remove_file(sb.path(&format!("{unit}.o"))).unwrap();
    }
    compile_all(&sb, &cache3, &all);
    let status = cache_status(&sb, &cache3);
    assert_eq!(status["hits"], 6, "{status}");
    for (unit, object) in all.iter().zip(&objects) {
        assert_eq!(&sb.read(&format!("{unit}.o")), object, "{unit}.o");
    }
    // Nothing new compiled: nothing uploaded.
    server.control(r#"{"reset_stats": true}"#);
    let save = cache_cmd(
        &sb,
        &server,
        &cache3,
        &["save", "--cache", "--key", "zc-linux-run3"],
    );
    assert!(save.status.success(), "{}", text(&save.stderr));
    assert!(
        text(&save.stderr).contains("nothing new"),
        "{}",
        text(&save.stderr)
    );
    assert_eq!(server.stats()["create"], 0);
}
