//! Daemon lifecycle, concurrency and crashes.

use crate::sandbox::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use zccache_protocol::PROTOCOL_VERSION;

fn spawn_compile(sb: &Sandbox, args: &[String]) -> Child {
    spawn_compile_with(sb, &[], args)
}

/// [`spawn_compile`] with extra environment variables (a daemon it starts has them too).
fn spawn_compile_with(sb: &Sandbox, env: &[(&str, &Path)], args: &[String]) -> Child {
    sb.zccache()
        .envs(env.iter().copied())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn sixteen_wrappers_at_once_start_exactly_one_daemon() {
    let sb = Sandbox::new();
    for i in 0..16 {
        sb.write_old(
            &format!("f{i}.c"),
            &format!("int f{i}(void) {{ return {i}; }}\n"),
        );
    }
    assert!(sb.daemon_processes().is_empty());
    let children: Vec<Child> = (0..16)
        .map(|i| {
            let args = ["gcc", "-c", &format!("f{i}.c")].map(String::from);
            spawn_compile(&sb, &args)
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_success(&out, &["concurrent compile"]);
    }
    let pids = sb.daemon_processes();
    assert_eq!(pids.len(), 1, "daemons: {pids:?}");
    assert_eq!(sb.daemon_pid(), Some(pids[0]));
    assert_eq!(sb.misses(), 16);
    // gcc was probed once (by the new daemon, at its start, for the client that started
    // it), not once per call that found it unknown.
    let log = std::fs::read_to_string(sb.cache.join("logs/daemon.log")).unwrap();
    let probes = log
        .lines()
        .filter(|l| l.contains("identified compiler"))
        .count();
    assert_eq!(probes, 1, "daemon log:\n{log}");
}

/// The first rustc calls of a parallel cargo build all find rustc unknown; they wait for one
/// `rustc -vV` instead of each running their own.
#[test]
fn concurrent_first_rustc_calls_probe_rustc_once() {
    let sb = Sandbox::new();
    let rustc = real_rustc();
    for i in 0..8 {
        sb.write_old(
            &format!("c{i}.rs"),
            &format!("pub fn f{i}() -> u32 {{ {i} }}\n"),
        );
    }
    std::fs::create_dir_all(sb.path("out")).unwrap();
    sb.ok(&["start"]);
    let children: Vec<Child> = (0..8)
        .map(|i| {
            let args = [
                rustc.as_str(),
                "--crate-name",
                &format!("c{i}"),
                "--edition=2021",
                "--crate-type",
                "lib",
                "--emit=dep-info,metadata,link",
                "--out-dir",
                "out",
                &format!("c{i}.rs"),
            ]
            .map(String::from);
            spawn_compile(&sb, &args)
        })
        .collect();
    for child in children {
        assert_success(&child.wait_with_output().unwrap(), &["concurrent rustc"]);
    }
    assert_eq!(sb.misses(), 8);
    for i in 0..8 {
        assert!(sb.path(&format!("out/libc{i}.rlib")).exists());
    }
    let log = std::fs::read_to_string(sb.cache.join("logs/daemon.log")).unwrap();
    let probes = log
        .lines()
        .filter(|l| l.contains("identified tool") && l.contains("rustc"))
        .count();
    assert_eq!(probes, 1, "daemon log:\n{log}");
}

#[test]
fn sixteen_identical_concurrent_compiles_give_identical_valid_objects() {
    let sb = Sandbox::new();
    sb.write_old("h.h", "#define N 11\n");
    sb.write_old("m.c", "#include \"h.h\"\nint main(void) { return N; }\n");
    let bare = sb.bare(".", &["gcc", "-c", "m.c", "-o", "bare.o"]);
    assert_success(&bare, &["bare"]);
    let expected = sb.read("bare.o");
    for round in 0..2 {
        let children: Vec<Child> = (0..16)
            .map(|i| {
                let args =
                    ["gcc", "-c", "m.c", "-o", &format!("out{round}_{i}.o")].map(String::from);
                spawn_compile(&sb, &args)
            })
            .collect();
        for child in children {
            assert_success(&child.wait_with_output().unwrap(), &["identical compile"]);
        }
        for i in 0..16 {
            assert_eq!(
                sb.read(&format!("out{round}_{i}.o")),
                expected,
                "round {round} #{i}"
            );
        }
    }
    let link = sb.bare(".", &["gcc", "out1_3.o", "-o", "prog"]);
    assert_success(&link, &["link"]);
    assert_eq!(sb.bare(".", &["./prog"]).status.code(), Some(11));
    assert_eq!(sb.hits() + sb.misses(), 32);
    assert!(sb.hits() >= 16, "the second round must be all hits");
}

#[test]
fn daemon_killed_during_a_parallel_build_then_rebuild_is_correct() {
    let sb = Sandbox::new();
    let count = 24;
    for i in 0..count {
        sb.write_old(
            &format!("src/f{i}.c"),
            &format!("#include <stdio.h>\nint f{i}(void) {{ return {i} * 7; }}\n"),
        );
    }
    let build = |sb: &Sandbox, kill: bool| {
        let mut children: Vec<Child> = Vec::new();
        for i in 0..count {
            let args = [
                "gcc",
                "-O1",
                "-c",
                &format!("src/f{i}.c"),
                "-o",
                &format!("obj/f{i}.o"),
            ]
            .map(String::from);
            children.push(spawn_compile(sb, &args));
            if kill && i == count / 2 {
                if let Some(pid) = sb.daemon_processes().first() {
                    // SAFETY: sending a signal to a process id we just looked up.
                    unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
                }
            }
        }
        for child in children {
            assert_success(&child.wait_with_output().unwrap(), &["build during kill"]);
        }
    };
    std::fs::create_dir_all(sb.path("obj")).unwrap();
    build(&sb, true);
    let check = |sb: &Sandbox| {
        for i in 0..count {
            let bare = sb.bare(
                ".",
                &["gcc", "-O1", "-c", &format!("src/f{i}.c"), "-o", "bare.o"],
            );
            assert_success(&bare, &["bare"]);
            assert_eq!(sb.read(&format!("obj/f{i}.o")), sb.read("bare.o"), "f{i}.o");
        }
    };
    check(&sb);
    std::fs::remove_dir_all(sb.path("obj")).unwrap();
    std::fs::create_dir_all(sb.path("obj")).unwrap();
    build(&sb, false);
    check(&sb);
}

#[test]
fn unreachable_daemon_never_breaks_the_build() {
    let sb = Sandbox::new();
    sb.write_old("m.c", "int main(void) { return 0; }\n");
    // The cache root cannot be created: a regular file is in the way.
    sb.write("blocker", "not a directory");
    let out = Command::new(ZCCACHE)
        .env("ZCCACHE_CACHE_DIR", sb.path("blocker/cache"))
        .current_dir(&sb.work)
        .args(["gcc", "-c", "m.c", "-o", "m.o"])
        .output()
        .unwrap();
    assert_success(&out, &["gcc with unusable cache root"]);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sb.path("m.o").exists());
    // A failing compile keeps its exit code and diagnostics.
    sb.write_old("bad.c", "int main(void) { return nope; }\n");
    let out = Command::new(ZCCACHE)
        .env("ZCCACHE_CACHE_DIR", sb.path("blocker/cache"))
        .current_dir(&sb.work)
        .args(["gcc", "-c", "bad.c"])
        .output()
        .unwrap();
    let bare = sb.bare(".", &["gcc", "-c", "bad.c"]);
    assert_eq!(out.status.code(), bare.status.code());
    assert_eq!(out.stderr, bare.stderr);
}

#[test]
fn stale_socket_from_a_killed_daemon_is_replaced() {
    let sb = Sandbox::new();
    sb.write_old("m.c", "int m(void) { return 0; }\n");
    sb.ok(&["gcc", "-c", "m.c"]);
    let pid = sb.daemon_pid().unwrap();
    // SAFETY: signalling our own test daemon.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while sb.daemon_processes().contains(&pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        sb.cache
            .join(format!("daemon-v{PROTOCOL_VERSION}.sock"))
            .exists(),
        "socket left behind"
    );
    let root = zccache_core::CacheRoot::new(&sb.cache);
    let dead_lock = root.compilers_lock_path(pid);
    assert!(dead_lock.exists(), "the killed daemon's compilers lock");
    sb.ok(&["gcc", "-c", "m.c"]);
    assert_ne!(sb.daemon_pid().unwrap(), pid);
    // The store survived the kill: this is a hit.
    assert_eq!(sb.hits(), 1);
    // The new daemon removes the compilers lock of the dead one (no compiler holds it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while dead_lock.exists() {
        assert!(
            Instant::now() < deadline,
            "{} left behind",
            dead_lock.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Holds back the opening of the store of daemons started while the returned file exists
/// (`ZCCACHE_TEST_STORE_GATE`).
fn store_gate(sb: &Sandbox) -> PathBuf {
    let gate = sb.path("store-gate");
    std::fs::write(&gate, "").unwrap();
    gate
}

/// Lets the store open 300 ms into `compile` (which is then waiting for it, or not) and
/// returns the compile's output.
fn open_store_gate_during(compile: Child, gate: &Path) -> Output {
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(gate).unwrap();
    compile.wait_with_output().unwrap()
}

/// A new cache's index is created beside the first compiles. Nothing can be in it before it
/// is open, so their lookups miss at once instead of waiting for it (here it is held back
/// until the first compile has returned), and their results are stored once it opens.
#[test]
fn a_new_caches_first_compile_does_not_wait_for_its_store_to_open() {
    let sb = Sandbox::new();
    sb.write_old("m.c", "int m(int x) { return x * 3; }\n");
    let gate = store_gate(&sb);
    let args = ["gcc", "-c", "m.c", "-o", "m.o"];
    sb.ok_env(&[("ZCCACHE_TEST_STORE_GATE", &gate)], &args);
    let bare = sb.bare_object(&args);
    assert_eq!(sb.read("m.o"), bare);
    // The same compile again, the store still held back: its result is on its way into the
    // store, so this one waits for the store, and hits.
    std::fs::remove_file(sb.path("m.o")).unwrap();
    let again = open_store_gate_during(spawn_compile(&sb, &args.map(String::from)), &gate);
    assert_success(&again, &args);
    assert_eq!(sb.read("m.o"), bare);
    // Waiting for the store would have ended after 10 s in an uncached run.
    assert_eq!(sb.reason_count("non_cacheable", "store_unavailable"), 0);
    assert_eq!((sb.hits(), sb.misses()), (1, 1));
}

/// A new cache's first results are checked against their inputs as soon as they are
/// replied to, not once the store has opened: a header the build rewrites in between (here
/// while the store is held back) does not cost the entry.
#[test]
fn a_new_caches_first_results_are_checked_before_its_store_opens() {
    let sb = Sandbox::new();
    sb.write_old("m.c", "#include \"v.h\"\nint m(void) { return VALUE; }\n");
    sb.write_old("v.h", "#define VALUE 1\n");
    let gate = store_gate(&sb);
    let args = ["gcc", "-c", "m.c", "-o", "m.o"];
    sb.ok_env(&[("ZCCACHE_TEST_STORE_GATE", &gate)], &args);
    let first = sb.read("m.o");
    // The store worker has checked the result's inputs once it waits for the index (a fixed
    // 2 s sleep here was once not enough on a loaded 2-core machine).
    let waiting = sb.path("store-gate.waiting");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !waiting.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the store never waited for the index"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    sb.write_old("v.h", "#define VALUE 2\n");
    std::fs::remove_file(&gate).unwrap();
    sb.ok(&args);
    assert_ne!(sb.read("m.o"), first);
    // The second result is checked and stored after the reply, on a store worker: on a loaded
    // machine that can come after the edit below, and then the daemon rightly refuses it as
    // modified during its compile (what failed this test in CI). `status` waits for the
    // stores in flight.
    sb.status();
    sb.write_old("v.h", "#define VALUE 1\n");
    sb.ok(&args);
    assert_eq!(sb.read("m.o"), first);
    let refused = sb.reason_count("not_stored", "input_modified_during_compile");
    if refused != 0 {
        sb.print_daemon_records();
    }
    assert_eq!(refused, 0);
    assert_eq!((sb.hits(), sb.misses()), (1, 2));
}

/// The other side of the first of these tests: a daemon started on an existing index waits
/// for it to open before it answers a lookup, and serves the hit.
#[test]
fn a_lookup_in_an_existing_index_waits_for_it_to_open() {
    let sb = Sandbox::new();
    sb.write_old("m.c", "int m(int x) { return x * 5; }\n");
    let args = ["gcc", "-c", "m.c", "-o", "m.o"];
    sb.ok(&args);
    sb.ok(&["stop"]);
    std::fs::remove_file(sb.path("m.o")).unwrap();
    let gate = store_gate(&sb);
    let env = [("ZCCACHE_TEST_STORE_GATE", gate.as_path())];
    let compile = spawn_compile_with(&sb, &env, &args.map(String::from));
    let output = open_store_gate_during(compile, &gate);
    assert_success(&output, &args);
    assert_eq!((sb.hits(), sb.misses()), (1, 0));
}

/// Entries are synced to disk in groups, not one by one: nothing asks the daemon for its
/// status here, so only the periodic sync can have kept the entry through the kill.
#[test]
fn an_entry_survives_a_kill_once_the_sync_interval_has_passed() {
    let sb = Sandbox::new();
    sb.write_old("m.c", "int m(void) { return 0; }\n");
    sb.ok(&["gcc", "-c", "m.c"]);
    let pid = *sb.daemon_processes().first().expect("a daemon");
    // A sync is due 500 ms after the last entry and looked for every 250 ms; the rest is room
    // for a loaded machine (CI's runs two test binaries at once on 2 cores).
    std::thread::sleep(Duration::from_millis(3000));
    // SAFETY: signalling our own test daemon.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while sb.daemon_processes().contains(&pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    sb.ok(&["gcc", "-c", "m.c"]);
    assert_eq!((sb.hits(), sb.misses()), (1, 0));
}

/// A daemon killed a moment ago can still hold the lock while its threads are torn down, and
/// its listener still takes connections into the backlog, though no one will answer them.
/// Played here by a lock and a listener that never accepts, both let go after 700 ms.
fn play_a_dying_daemon(sb: &Sandbox) -> std::thread::JoinHandle<()> {
    use std::os::unix::io::AsRawFd;
    std::fs::create_dir_all(&sb.cache).unwrap();
    let lock =
        std::fs::File::create(sb.cache.join(format!("daemon-v{PROTOCOL_VERSION}.lock"))).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let socket = sb.cache.join(format!("daemon-v{PROTOCOL_VERSION}.sock"));
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        drop(listener);
        drop(lock);
    })
}

/// A client whose connection the dying daemon took gets no reply: it starts a daemon and
/// compiles through it, instead of compiling uncached.
#[test]
fn a_compile_the_dying_daemon_hung_up_on_goes_through_a_new_one() {
    let sb = Sandbox::new();
    sb.write_old("m.c", "int m(void) { return 0; }\n");
    let dying = play_a_dying_daemon(&sb);
    sb.ok(&["gcc", "-c", "m.c"]);
    dying.join().unwrap();
    let status = sb.status();
    assert_eq!(status["running"], true, "a daemon serves: {status}");
    assert_eq!(sb.misses(), 1, "the compile went through the new daemon");
}

/// A daemon starting beside the dying one waits for its lock: a listener that takes the
/// connection is not a daemon that answers.
#[test]
fn a_starting_daemon_waits_for_a_dying_one_instead_of_leaving() {
    use std::io::Read;
    let sb = Sandbox::new();
    let dying = play_a_dying_daemon(&sb);
    let mut daemon = Command::new(std::path::Path::new(ZCCACHE).with_file_name("zccache-daemon"))
        .arg("--cache-dir")
        .arg(&sb.cache)
        .args(["--idle-timeout", "60", "--notify-ready"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut byte = [0u8; 1];
    daemon
        .stdout
        .take()
        .unwrap()
        .read_exact(&mut byte)
        .expect("the daemon serves once the dying one is gone");
    dying.join().unwrap();
    assert_eq!(sb.status()["pid"].as_u64(), Some(daemon.id() as u64));
    sb.ok(&["stop"]);
    daemon.wait().unwrap();
}

#[test]
fn cache_survives_a_restart() {
    let sb = Sandbox::new();
    sb.write_old("m.c", "int m(void) { return 0; }\n");
    sb.ok(&["clang", "-c", "m.c"]);
    sb.ok(&["stop"]);
    assert!(sb.daemon_processes().is_empty());
    sb.ok(&["clang", "-c", "m.c"]);
    assert_eq!(sb.hits(), 1);
}

#[test]
fn idle_daemon_exits() {
    let sb = Sandbox::new();
    sb.write_old("m.c", "int m(void) { return 0; }\n");
    sb.ok_env(&[("ZCCACHE_IDLE_TIMEOUT", "1")], &["gcc", "-c", "m.c"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !sb.daemon_processes().is_empty() {
        assert!(
            Instant::now() < deadline,
            "daemon still running after its idle timeout"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn corrupt_index_is_rebuilt_and_reported() {
    let sb = Sandbox::new();
    sb.write_old("m.c", "int m(void) { return 0; }\n");
    sb.ok(&["gcc", "-c", "m.c"]);
    sb.ok(&["stop"]);
    std::fs::write(sb.cache.join("index.redb"), b"garbage, not a database").unwrap();
    sb.ok(&["gcc", "-c", "m.c"]);
    sb.ok(&["gcc", "-c", "m.c"]);
    let status = sb.status();
    assert_eq!(status["hits"], 1);
    let warnings: Vec<&str> = status["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    // The index was replaced, and the blobs it named (now unknown) were cleaned up.
    assert_eq!(
        warnings.iter().filter(|w| w.contains("index")).count(),
        1,
        "{warnings:?}"
    );
    assert!(warnings.len() <= 2, "{warnings:?}");
}

#[test]
fn cache_root_and_socket_are_private_whatever_the_umask() {
    let sb = Sandbox::new();
    sb.write_old("m.c", "int m(void) { return 0; }\n");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("umask 000 && exec {ZCCACHE} gcc -c m.c"))
        .env("ZCCACHE_CACHE_DIR", &sb.cache)
        .current_dir(&sb.work)
        .output()
        .unwrap();
    assert_success(&out, &["umask 000 compile"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sb.cache), 0o700);
    assert_eq!(mode(&sb.cache.join("artifacts")), 0o700);
    assert_eq!(
        mode(&sb.cache.join(format!("daemon-v{PROTOCOL_VERSION}.sock"))),
        0o600
    );
}

/// The client waits for the daemon's word that it accepts connections instead of polling: the
/// daemon writes one byte to its stdout once the socket is bound, and nothing else; a daemon
/// that finds another one serving says nothing and exits.
#[test]
fn a_started_daemon_says_when_it_accepts_connections() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    let sb = Sandbox::new();
    let daemon = std::path::Path::new(ZCCACHE).with_file_name("zccache-daemon");
    let start = |stdout: Stdio| {
        Command::new(&daemon)
            .args(["--cache-dir"])
            .arg(&sb.cache)
            .args(["--idle-timeout", "60", "--notify-ready"])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = start(Stdio::piped());
    let mut ready = first.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    ready.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"r");
    // No retry: the socket takes the connection the moment the byte has arrived.
    UnixStream::connect(sb.cache.join(format!("daemon-v{PROTOCOL_VERSION}.sock")))
        .expect("connect right after the notice");
    assert!(sb.status()["pid"].as_u64() == Some(first.id() as u64));
    // The notice is the whole of what the daemon writes there.
    let mut second = start(Stdio::piped());
    let mut rest = Vec::new();
    second
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut rest)
        .unwrap();
    assert!(
        rest.is_empty(),
        "a second daemon exits without a notice: {rest:?}"
    );
    assert!(second.wait().unwrap().success());
    sb.ok(&["stop"]);
    let mut after = Vec::new();
    ready.read_to_end(&mut after).unwrap();
    assert!(after.is_empty(), "{after:?}");
    first.wait().unwrap();
}
