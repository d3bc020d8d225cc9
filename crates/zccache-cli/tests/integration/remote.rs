//! The remote tier between two "machines" (two cache roots, each with its own daemon) through a
//! real redis-server or moto_server (S3) on 127.0.0.1, started and stopped here.

use crate::sandbox::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    url: String,
    env: Vec<(String, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server on {port} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn redis() -> Server {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (test.sh installs it)");
    wait_for(port);
    Server {
        child,
        url: format!("redis://127.0.0.1:{port}/0"),
        env: Vec::new(),
    }
}

fn moto() -> Server {
    let port = free_port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server (test.sh installs it)");
    wait_for(port);
    // CreateBucket (moto does not check signatures).
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "PUT /builds HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "create bucket: {reply}");
    Server {
        child,
        url: "s3://builds/zccache".into(),
        env: vec![
            (
                "ZCCACHE_S3_ENDPOINT".into(),
                format!("http://127.0.0.1:{port}"),
            ),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
        ],
    }
}

/// `zccache args` as machine `cache` with the remote `server`.
fn on(sb: &Sandbox, cache: &Path, server: &Server, args: &[&str]) -> Output {
    let mut command = sb.zccache();
    command
        .env("ZCCACHE_CACHE_DIR", cache)
        .env("ZCCACHE_REMOTE", &server.url)
        .args(args);
    for (k, v) in &server.env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn status(sb: &Sandbox, cache: &Path, server: &Server) -> Value {
    let out = on(sb, cache, server, &["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

const UNITS: usize = 6;

fn sources(sb: &Sandbox) {
    sb.write_old("inc/common.h", "#define SCALE 3\n");
    for i in 0..UNITS {
        sb.write_old(
            &format!("u{i}.c"),
            &format!("#include \"common.h\"\nint f{i}(int x) {{ return x * SCALE + {i}; }}\n"),
        );
    }
}

fn build(sb: &Sandbox, cache: &Path, server: &Server) -> Vec<Vec<u8>> {
    (0..UNITS)
        .map(|i| {
            let (src, obj) = (format!("u{i}.c"), format!("u{i}.o"));
            let out = on(
                sb,
                cache,
                server,
                &["gcc", "-Iinc", "-O1", "-c", &src, "-o", &obj],
            );
            assert_success(&out, &[&src]);
            let bytes = sb.read(&obj);
            std::fs::remove_file(sb.path(&obj)).unwrap();
            bytes
        })
        .collect()
}

fn two_machines(server: Server) {
    let sb = Sandbox::new();
    sources(&sb);
    let (a, b): (PathBuf, PathBuf) = (sb.path("machine-a"), sb.path("machine-b"));
    let built_a = build(&sb, &a, &server);
    // Stopping the daemon flushes its uploads.
    assert!(on(&sb, &a, &server, &["stop"]).status.success());
    // Machine B, empty: every unit comes from the remote, stored locally, then served.
    let built_b = build(&sb, &b, &server);
    assert_eq!(
        built_a, built_b,
        "objects from the remote are the compiler's"
    );
    let s = status(&sb, &b, &server);
    assert_eq!(s["hits"], UNITS as u64, "{s}");
    assert_eq!(s["misses"], 0, "{s}");
    assert_eq!(
        s["remote_hits"].as_u64().unwrap(),
        2 * UNITS as u64,
        "manifest and object each: {s}"
    );
    // B again: all local.
    build(&sb, &b, &server);
    let again = status(&sb, &b, &server);
    assert_eq!(again["hits"], 2 * UNITS as u64, "{again}");
    assert_eq!(again["remote_hits"], s["remote_hits"], "{again}");
    // A header edited on B: a miss there (the remote's entry does not match), never stale.
    sb.write_old("inc/common.h", "#define SCALE 5\n");
    let edited = on(
        &sb,
        &b,
        &server,
        &["gcc", "-Iinc", "-O1", "-c", "u0.c", "-o", "u0.o"],
    );
    assert_success(&edited, &["u0.c"]);
    let bare = sb.bare_object(&["gcc", "-Iinc", "-O1", "-c", "u0.c", "-o", "u0.o"]);
    assert_eq!(sb.read("u0.o"), bare);
    let after = status(&sb, &b, &server);
    assert_eq!(after["misses"], 1, "{after}");
    for cache in [&a, &b] {
        on(&sb, cache, &server, &["stop"]);
    }
}

#[test]
fn a_second_machine_builds_from_redis() {
    two_machines(redis());
}

#[test]
fn a_second_machine_builds_from_s3() {
    two_machines(moto());
}

#[test]
fn a_dead_remote_is_reported_and_the_build_goes_on() {
    let sb = Sandbox::new();
    sources(&sb);
    let dead = Server {
        child: Command::new("true").spawn().unwrap(),
        url: format!("redis://127.0.0.1:{}/0", free_port()),
        env: Vec::new(),
    };
    let cache = sb.path("machine");
    build(&sb, &cache, &dead);
    build(&sb, &cache, &dead);
    let s = status(&sb, &cache, &dead);
    assert_eq!(s["hits"], UNITS as u64, "{s}");
    assert!(s["remote_errors"].as_u64().unwrap() >= 1, "{s}");
    let warnings = s["warnings"].to_string();
    assert!(warnings.contains("unreachable"), "{s}");
    on(&sb, &cache, &dead, &["stop"]);
}
