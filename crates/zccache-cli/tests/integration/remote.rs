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

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server on {port} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn redis() -> Server {
    redis_on(free_port())
}

fn redis_on(port: u16) -> Server {
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
        env: vec![patient()],
    }
}

/// Daemons just started wait this long for the remote's first answer: long enough for a test
/// machine under load, where the default (50 ms on loopback) could skip their first lookups.
fn patient() -> (String, String) {
    ("ZCCACHE_REMOTE_CONNECT_MS".into(), "10000".into())
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
            patient(),
        ],
    }
}

/// `zccache args` as machine `cache` with the remote `server`.
fn on(sb: &Sandbox, cache: &Path, server: &Server, args: &[&str]) -> Output {
    command_on(sb, cache, server, args).output().unwrap()
}

fn command_on(sb: &Sandbox, cache: &Path, server: &Server, args: &[&str]) -> Command {
    let mut command = sb.zccache();
    command
        .env("ZCCACHE_CACHE_DIR", cache)
        .env("ZCCACHE_REMOTE", &server.url)
        .args(args);
    for (k, v) in &server.env {
        command.env(k, v);
    }
    command
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

fn two_machines(mut server: Server) {
    let sb = Sandbox::new();
    sources(&sb);
    let (a, b): (PathBuf, PathBuf) = (sb.path("machine-a"), sb.path("machine-b"));
    let built_a = build(&sb, &a, &server);
    // Stopping the daemon flushes its uploads.
    assert!(on(&sb, &a, &server, &["stop"]).status.success());
    // Machine B, empty, in a session: every unit comes from the remote, stored locally, then
    // served.
    let started = on(&sb, &b, &server, &["session-start"]);
    let id = String::from_utf8(started.stdout).unwrap();
    let id = id
        .trim()
        .strip_prefix("export ZCCACHE_SESSION_ID=")
        .unwrap()
        .to_string();
    server.env.push(("ZCCACHE_SESSION_ID".into(), id.clone()));
    let built_b = build(&sb, &b, &server);
    server.env.pop();
    let session = on(&sb, &b, &server, &["session-stats", &id, "--json"]);
    let session: Value = serde_json::from_slice(&session.stdout).unwrap();
    assert_eq!(
        (
            &session["hits"],
            &session["remote_hits"],
            &session["remote_misses"]
        ),
        (&Value::from(UNITS), &Value::from(UNITS), &Value::from(0)),
        "{session}"
    );
    let text = on(&sb, &b, &server, &["session-stats", &id]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("from the remote"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    assert_eq!(
        built_a, built_b,
        "objects from the remote are the compiler's"
    );
    let s = status(&sb, &b, &server);
    assert_eq!(s["hits"], UNITS as u64, "{s}");
    assert_eq!(s["misses"], 0, "{s}");
    assert_eq!(s["remote_hits"], UNITS as u64, "{s}");
    assert_eq!(s["remote_misses"], 0, "{s}");
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
    assert_eq!(after["remote_misses"], 1, "no entry that matches: {after}");
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

/// A C++ project (CMake + Ninja, Debug: `-g`) at `dir`.
fn cxx_project(sb: &Sandbox, dir: &str) {
    sb.write_old(
        &format!("{dir}/CMakeLists.txt"),
        "cmake_minimum_required(VERSION 3.16)\nproject(shapes CXX)\n\
         add_library(shapes STATIC src/circle.cpp src/square.cpp)\n\
         target_include_directories(shapes PUBLIC include)\n\
         add_executable(report src/main.cpp)\ntarget_link_libraries(report shapes)\n",
    );
    sb.write_old(
        &format!("{dir}/include/shapes.hpp"),
        "#pragma once\n#include <string>\nstd::string circle(int r);\nstd::string square(int s);\n",
    );
    sb.write_old(
        &format!("{dir}/src/circle.cpp"),
        "#include \"shapes.hpp\"\nstd::string circle(int r) { return \"circle \" + std::to_string(3 * r * r); }\n",
    );
    sb.write_old(
        &format!("{dir}/src/square.cpp"),
        "#include \"shapes.hpp\"\nstd::string square(int s) { return \"square \" + std::to_string(s * s); }\n",
    );
    sb.write_old(
        &format!("{dir}/src/main.cpp"),
        "#include <iostream>\n#include \"shapes.hpp\"\n\
         int main() { std::cout << circle(2) << ' ' << square(5) << std::endl; }\n",
    );
}

/// A cargo workspace at `dir`: a library, a binary using it, and a build script generating code.
fn cargo_workspace(sb: &Sandbox, dir: &str) {
    sb.write_old(
        &format!("{dir}/Cargo.toml"),
        "[workspace]\nresolver = \"2\"\nmembers = [\"app\", \"geometry\"]\n",
    );
    sb.write_old(
        &format!("{dir}/geometry/Cargo.toml"),
        "[package]\nname = \"geometry\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    sb.write_old(
        &format!("{dir}/geometry/src/lib.rs"),
        "pub fn area(w: u32, h: u32) -> u32 { w * h }\n",
    );
    sb.write_old(
        &format!("{dir}/app/Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         [dependencies]\ngeometry = { path = \"../geometry\" }\n",
    );
    sb.write_old(
        &format!("{dir}/app/build.rs"),
        "fn main() {\n    let out = std::env::var(\"OUT_DIR\").unwrap();\n    \
         std::fs::write(format!(\"{out}/sides.rs\"), \"pub const SIDES: u32 = 4;\\n\").unwrap();\n}\n",
    );
    sb.write_old(
        &format!("{dir}/app/src/main.rs"),
        "include!(concat!(env!(\"OUT_DIR\"), \"/sides.rs\"));\n\
         fn main() { println!(\"area {} sides {}\", geometry::area(6, 7), SIDES); }\n",
    );
}

/// Applies machine `cache`'s settings with `server` and path remapping rooted at `root`.
fn as_machine(command: &mut Command, cache: &Path, server: &Server, root: &Path) {
    command
        .env("ZCCACHE_CACHE_DIR", cache)
        .env("ZCCACHE_REMOTE", &server.url)
        .env("ZCCACHE_PATH_REMAP", "auto")
        .env("ZCCACHE_WORKTREE_ROOT", root)
        .current_dir(root)
        .stdin(Stdio::null());
    for (k, v) in &server.env {
        command.env(k, v);
    }
}

fn cmake_build_on(sb: &Sandbox, cache: &Path, server: &Server, dir: &str) {
    let root = sb.path(dir);
    let _ = std::fs::remove_dir_all(root.join("build"));
    let mut configure = Command::new("cmake");
    configure
        .args(["-G", "Ninja", "-S", ".", "-B", "build"])
        .args(["-DCMAKE_BUILD_TYPE=Debug", "-DCMAKE_CXX_COMPILER=g++"])
        .arg(format!("-DCMAKE_CXX_COMPILER_LAUNCHER={ZCCACHE}"));
    as_machine(&mut configure, cache, server, &root);
    assert_success(&configure.output().unwrap(), &["cmake configure"]);
    let mut build = Command::new("ninja");
    build.args(["-C", "build"]);
    as_machine(&mut build, cache, server, &root);
    assert_success(&build.output().unwrap(), &["ninja"]);
}

fn cargo_build_on(sb: &Sandbox, cache: &Path, server: &Server, dir: &str, rustc: &Path) {
    let root = sb.path(dir);
    let _ = std::fs::remove_dir_all(root.join("target"));
    let mut build = cargo_in(sb, dir, &["build"]);
    build.env("RUSTC_WRAPPER", ZCCACHE).env("RUSTC", rustc);
    as_machine(&mut build, cache, server, &root);
    assert_success(&build.output().unwrap(), &["cargo build"]);
}

fn run_program(sb: &Sandbox, program: &str) -> String {
    let out = Command::new(sb.path(program)).output().unwrap();
    assert_success(&out, &[program]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The machine's toolchain installed again at another path (another user's home): a copy of
/// the sysroot, hard-linked where the file system allows; elsewhere a copy of its `bin` with
/// the rest linked (rustc finds its libraries through the links).
fn toolchain_elsewhere(sb: &Sandbox) -> PathBuf {
    let sysroot = PathBuf::from(real_rustc())
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let copy = sb.path("home-b/toolchain");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    let linked = Command::new("cp")
        .arg("-al")
        .arg(&sysroot)
        .arg(&copy)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    if !linked.success() {
        let _ = std::fs::remove_dir_all(&copy);
        std::fs::create_dir_all(copy.join("bin")).unwrap();
        for entry in std::fs::read_dir(&sysroot).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() != "bin" {
                std::os::unix::fs::symlink(entry.path(), copy.join(entry.file_name())).unwrap();
            }
        }
        std::fs::copy(sysroot.join("bin/rustc"), copy.join("bin/rustc")).unwrap();
    }
    copy.join("bin/rustc")
}

fn counts(s: &Value) -> (u64, u64, u64) {
    (
        s["hits"].as_u64().unwrap(),
        s["misses"].as_u64().unwrap(),
        s["remote_hits"].as_u64().unwrap(),
    )
}

/// Machine A builds a CMake + Ninja C++ project and a cargo workspace; machine B, with an
/// empty cache, its checkouts at another path and its Rust toolchain under another home,
/// gets every unit from the remote; the programs run; B's second build is all local.
fn projects_on_two_machines(server: Server) {
    let sb = Sandbox::new();
    let (a, b) = (sb.path("machine-a"), sb.path("machine-b"));
    for dir in ["a/src/shapes", "b/work/elsewhere/shapes"] {
        cxx_project(&sb, dir);
    }
    for dir in ["a/src/ws", "b/work/elsewhere/ws"] {
        cargo_workspace(&sb, dir);
    }
    let rustc_a = PathBuf::from(real_rustc());
    let rustc_b = toolchain_elsewhere(&sb);

    cmake_build_on(&sb, &a, &server, "a/src/shapes");
    assert_eq!(
        run_program(&sb, "a/src/shapes/build/report"),
        "circle 12 square 25\n"
    );
    cargo_build_on(&sb, &a, &server, "a/src/ws", &rustc_a);
    assert_eq!(
        run_program(&sb, "a/src/ws/target/debug/app"),
        "area 42 sides 4\n"
    );
    let (_, built_a, _) = counts(&status(&sb, &a, &server));
    // 3 C++ compiles (CMake archives and links without the launcher); geometry, app's build
    // script and app.
    assert_eq!(built_a, 6);
    assert!(on(&sb, &a, &server, &["stop"]).status.success());

    cmake_build_on(&sb, &b, &server, "b/work/elsewhere/shapes");
    assert_eq!(
        run_program(&sb, "b/work/elsewhere/shapes/build/report"),
        "circle 12 square 25\n"
    );
    cargo_build_on(&sb, &b, &server, "b/work/elsewhere/ws", &rustc_b);
    assert_eq!(
        run_program(&sb, "b/work/elsewhere/ws/target/debug/app"),
        "area 42 sides 4\n"
    );
    let s = status(&sb, &b, &server);
    let (hits, misses, remote_hits) = counts(&s);
    assert_eq!(
        (hits, misses),
        (built_a, 0),
        "every unit from the remote: {s}"
    );
    assert_eq!(remote_hits, built_a, "{s}");

    // B again, build directories removed: every unit a local hit.
    cmake_build_on(&sb, &b, &server, "b/work/elsewhere/shapes");
    cargo_build_on(&sb, &b, &server, "b/work/elsewhere/ws", &rustc_b);
    assert_eq!(
        run_program(&sb, "b/work/elsewhere/ws/target/debug/app"),
        "area 42 sides 4\n"
    );
    let again = status(&sb, &b, &server);
    assert_eq!(counts(&again), (2 * built_a, 0, remote_hits), "{again}");
    for cache in [&a, &b] {
        on(&sb, cache, &server, &["stop"]);
    }
}

#[test]
fn projects_build_on_a_second_machine_from_redis() {
    projects_on_two_machines(redis());
}

#[test]
fn projects_build_on_a_second_machine_from_s3() {
    projects_on_two_machines(moto());
}

/// The server killed in the middle of a parallel build: every compile succeeds with the
/// compiler's object; restarted, the tier comes back (here after the 1 s the breaker was
/// configured to wait): what is built then reaches another machine.
#[test]
fn a_remote_killed_mid_build_and_restarted_comes_back() {
    const PARALLEL: usize = 12;
    const AFTER: usize = 3;
    let sb = Sandbox::new();
    sb.write_old("inc/common.h", "#define SCALE 3\n");
    for i in 0..=PARALLEL + AFTER {
        sb.write_old(
            &format!("u{i}.c"),
            &format!("#include \"common.h\"\nint f{i}(int x) {{ return x * SCALE - {i}; }}\n"),
        );
    }
    let compile = |i: usize| -> Vec<String> {
        [
            "gcc",
            "-Iinc",
            "-O1",
            "-c",
            &format!("u{i}.c"),
            "-o",
            &format!("u{i}.o"),
        ]
        .map(String::from)
        .to_vec()
    };
    let port = free_port();
    let mut server = redis_on(port);
    server
        .env
        .push(("ZCCACHE_REMOTE_RETRY_SECS".into(), "1".into()));
    let (a, b) = (sb.path("machine-a"), sb.path("machine-b"));
    on(&sb, &a, &server, &["start"]);
    // `make -j4`-like waves; the server is killed after the first.
    for wave in (0..PARALLEL).collect::<Vec<_>>().chunks(4) {
        if wave[0] == 4 {
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
        let running: Vec<(usize, Child)> = wave
            .iter()
            .map(|&i| {
                let args = compile(i);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let child = command_on(&sb, &a, &server, &args)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                (i, child)
            })
            .collect();
        for (i, child) in running {
            assert_success(&child.wait_with_output().unwrap(), &compile(i));
        }
    }
    for i in 0..PARALLEL {
        let args = compile(i);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(sb.read(&format!("u{i}.o")), sb.bare_object(&args), "u{i}.o");
    }
    let during = status(&sb, &a, &server);
    assert_eq!(during["misses"], PARALLEL as u64, "{during}");
    let lost =
        during["remote_errors"].as_u64().unwrap() + during["remote_dropped"].as_u64().unwrap();
    assert!(
        lost >= 1,
        "uploads after the kill failed or were dropped: {during}"
    );

    // Restarted (empty): once the breaker's second is up, new results reach it again.
    let mut restarted = redis_on(port);
    std::mem::swap(&mut server.child, &mut restarted.child);
    std::thread::sleep(Duration::from_millis(1500));
    // The first lookup since then starts a probe (no compile waits for it; this one is not
    // looked up remotely) that finds the server back.
    let args = compile(PARALLEL);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_success(&on(&sb, &a, &server, &args), &args);
    std::thread::sleep(Duration::from_millis(500));
    for i in PARALLEL + 1..=PARALLEL + AFTER {
        let args = compile(i);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_success(&on(&sb, &a, &server, &args), &args);
    }
    assert!(on(&sb, &a, &server, &["stop"]).status.success());
    for i in PARALLEL + 1..=PARALLEL + AFTER {
        let args = compile(i);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let expected = sb.read(&format!("u{i}.o"));
        std::fs::remove_file(sb.path(&format!("u{i}.o"))).unwrap();
        assert_success(&on(&sb, &b, &server, &args), &args);
        assert_eq!(sb.read(&format!("u{i}.o")), expected);
    }
    let s = status(&sb, &b, &server);
    assert_eq!(
        (s["hits"].as_u64(), s["misses"].as_u64()),
        (Some(AFTER as u64), Some(0)),
        "{s}"
    );
    assert_eq!(s["remote_hits"], AFTER as u64, "{s}");
    on(&sb, &b, &server, &["stop"]);
}

/// A multi-file call's units are looked up on the remote together and all served from it.
#[test]
fn a_multi_file_calls_units_come_from_the_remote() {
    let sb = Sandbox::new();
    sources(&sb);
    let server = redis();
    let (a, b) = (sb.path("machine-a"), sb.path("machine-b"));
    let mut args = vec!["gcc", "-Iinc", "-O1", "-c"];
    let names: Vec<String> = (0..UNITS).map(|i| format!("u{i}.c")).collect();
    args.extend(names.iter().map(String::as_str));
    let objects = || -> Vec<Vec<u8>> {
        (0..UNITS)
            .map(|i| {
                let path = format!("u{i}.o");
                let bytes = sb.read(&path);
                std::fs::remove_file(sb.path(&path)).unwrap();
                bytes
            })
            .collect()
    };
    assert_success(&on(&sb, &a, &server, &args), &args);
    let built_a = objects();
    assert!(on(&sb, &a, &server, &["stop"]).status.success());
    assert_success(&on(&sb, &b, &server, &args), &args);
    assert_eq!(objects(), built_a);
    let s = status(&sb, &b, &server);
    assert_eq!(
        (s["hits"].as_u64(), s["misses"].as_u64()),
        (Some(UNITS as u64), Some(0)),
        "{s}"
    );
    assert_eq!(s["remote_hits"], UNITS as u64, "{s}");
    on(&sb, &b, &server, &["stop"]);
}

/// Machines that compiled the same source with different headers each add their entry to the
/// remote manifest (merged, not overwritten), and a machine whose local entries do not match
/// asks the remote, which has the one that does.
#[test]
fn entries_of_several_machines_are_merged_and_found() {
    let sb = Sandbox::new();
    sources(&sb);
    let server = redis();
    let (a, b, c) = (
        sb.path("machine-a"),
        sb.path("machine-b"),
        sb.path("machine-c"),
    );
    let args = ["gcc", "-Iinc", "-O1", "-c", "u0.c", "-o", "u0.o"];
    let compile_on = |cache: &Path| {
        assert_success(&on(&sb, cache, &server, &args), &args);
        let object = sb.read("u0.o");
        std::fs::remove_file(sb.path("u0.o")).unwrap();
        object
    };
    let with_scale = |scale: u32| {
        sb.write_old("inc/common.h", &format!("#define SCALE {scale}\n"));
        let object = sb.bare_object(&args);
        std::fs::remove_file(sb.path("bare.o")).unwrap();
        object
    };
    let three = with_scale(3);
    assert_eq!(compile_on(&a), three);
    assert!(on(&sb, &a, &server, &["stop"]).status.success());
    // B compiles with another header: the remote's entry does not match; B's is added to it.
    let five = with_scale(5);
    assert_eq!(compile_on(&b), five);
    assert!(on(&sb, &b, &server, &["stop"]).status.success());
    // Back to A's header on B (a new daemon: its counters start at 0): B's own entry does
    // not match, and the remote still has A's beside B's.
    with_scale(3);
    assert_eq!(compile_on(&b), three);
    let s = status(&sb, &b, &server);
    assert_eq!(counts(&s), (1, 0, 1), "hits, misses, remote hits: {s}");
    // A new machine with B's header: B's entry is there too.
    with_scale(5);
    assert_eq!(compile_on(&c), five);
    let s = status(&sb, &c, &server);
    assert_eq!(counts(&s), (1, 0, 1), "{s}");
    for cache in [&a, &b, &c] {
        on(&sb, cache, &server, &["stop"]);
    }
}

/// ZCCACHE_REMOTE_MODE: a write-only machine (a CI job that fills the cache) uploads and never
/// asks; a read-only one (a developer's) is served and uploads nothing.
#[test]
fn write_only_and_read_only_machines() {
    let sb = Sandbox::new();
    sources(&sb);
    let mut server = redis();
    let (a, b, c) = (
        sb.path("machine-a"),
        sb.path("machine-b"),
        sb.path("machine-c"),
    );
    server
        .env
        .push(("ZCCACHE_REMOTE_MODE".into(), "write-only".into()));
    build(&sb, &a, &server);
    let s = status(&sb, &a, &server);
    assert_eq!(
        (&s["remote_hits"], &s["remote_misses"], &s["remote_uploads"]),
        (&Value::from(0), &Value::from(0), &Value::from(2 * UNITS)),
        "never asked; a manifest and an object per unit: {s}"
    );
    assert!(on(&sb, &a, &server, &["stop"]).status.success());
    server.env.pop();
    server
        .env
        .push(("ZCCACHE_REMOTE_MODE".into(), "read-only".into()));
    build(&sb, &b, &server);
    sb.write_old("extra.c", "int extra(void) { return 42; }\n");
    let extra = ["gcc", "-O1", "-c", "extra.c", "-o", "extra.o"];
    assert_success(&on(&sb, &b, &server, &extra), &extra);
    let s = status(&sb, &b, &server);
    assert_eq!(counts(&s), (UNITS as u64, 1, UNITS as u64), "{s}");
    assert!(s["remote"].as_str().unwrap().contains("read-only"), "{s}");
    assert_eq!(s["remote_uploads"], 0, "{s}");
    assert!(on(&sb, &b, &server, &["stop"]).status.success());
    // B uploaded nothing: a read-write machine does not find extra.c's result.
    server.env.pop();
    assert_success(&on(&sb, &c, &server, &extra), &extra);
    let s = status(&sb, &c, &server);
    assert_eq!(counts(&s), (0, 1, 0), "{s}");
    on(&sb, &c, &server, &["stop"]);
}

/// Entries damaged on the server (an object's bytes changed, a manifest truncated) are
/// refused and counted; machine B compiles those units itself, with the compiler's objects.
#[test]
fn entries_damaged_on_the_server_are_refused_and_rebuilt() {
    let sb = Sandbox::new();
    sources(&sb);
    let server = redis();
    let port = server
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/0");
    let cli = |args: &[&str]| -> String {
        let out = Command::new("redis-cli")
            .args(["-p", port, "--raw"])
            .args(args)
            .output()
            .expect("redis-cli (installed with redis-server)");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (a, b) = (sb.path("machine-a"), sb.path("machine-b"));
    let built_a = build(&sb, &a, &server);
    assert!(on(&sb, &a, &server, &["stop"]).status.success());
    let keys = |kind: &str| -> Vec<String> {
        let mut keys: Vec<String> = cli(&["KEYS", &format!("*v1/{kind}/*")])
            .lines()
            .map(String::from)
            .collect();
        keys.sort();
        keys
    };
    let (manifests, blobs) = (keys("m"), keys("b"));
    assert_eq!((manifests.len(), blobs.len()), (UNITS, UNITS));
    // Every object's bytes changed, one manifest cut short.
    for blob in &blobs {
        cli(&["SETRANGE", blob, "60", "XXXX"]);
    }
    cli(&[
        "EVAL",
        "return redis.call('SET', KEYS[1], string.sub(redis.call('GET', KEYS[1]), 1, 40))",
        "1",
        &manifests[0],
    ]);
    let built_b = build(&sb, &b, &server);
    assert_eq!(built_b, built_a, "the compiler's objects");
    let s = status(&sb, &b, &server);
    assert_eq!(counts(&s), (0, UNITS as u64, 0), "{s}");
    assert_eq!(s["remote_corrupt"], UNITS as u64, "{s}");
    on(&sb, &b, &server, &["stop"]);
}
