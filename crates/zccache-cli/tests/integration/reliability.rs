//! Faults, bad input and load: builds never break, objects are never wrong, and nobody else
//! gets in. (docs/RELIABILITY.md summarizes what these tests try.)

use crate::sandbox::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use zccache_protocol::{MAX_FRAME_LEN, PROTOCOL_VERSION};

fn spawn(sb: &Sandbox, args: &[String]) -> Child {
    sb.zccache()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// A small deterministic generator (xorshift); the seed is printed so a failure can be rerun.
struct Rng(u64);

impl Rng {
    fn from_time() -> Rng {
        let seed = std::env::var("ZCCACHE_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("seed: {seed} (ZCCACHE_TEST_SEED to repeat)");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn socket_path(sb: &Sandbox) -> std::path::PathBuf {
    sb.cache.join(format!("daemon-v{PROTOCOL_VERSION}.sock"))
}

#[test]
fn thirty_two_identical_and_thirty_two_distinct_concurrent_misses() {
    let sb = Sandbox::new();
    sb.write_old("same.h", "#define K 5\n");
    sb.write_old(
        "same.c",
        "#include \"same.h\"\nint same(void) { return K; }\n",
    );
    for i in 0..32 {
        sb.write_old(
            &format!("d{i}.c"),
            &format!("int d{i}(int x) {{ return x * {i} + {}; }}\n", i * i),
        );
    }
    std::fs::create_dir_all(sb.path("out")).unwrap();
    for round in 0..2 {
        let mut children = Vec::new();
        for i in 0..32 {
            children.push(spawn(
                &sb,
                &strings(&["gcc", "-c", "same.c", "-o", &format!("out/same{i}.o")]),
            ));
            children.push(spawn(
                &sb,
                &strings(&[
                    "gcc",
                    "-c",
                    &format!("d{i}.c"),
                    "-o",
                    &format!("out/d{i}.o"),
                ]),
            ));
        }
        for child in children {
            assert_success(&child.wait_with_output().unwrap(), &["concurrent compile"]);
        }
        let same = sb.bare_object(&["gcc", "-c", "same.c", "-o", "x.o"]);
        for i in 0..32 {
            assert_eq!(
                sb.read(&format!("out/same{i}.o")),
                same,
                "round {round} same{i}"
            );
            let distinct = sb.bare_object(&["gcc", "-c", &format!("d{i}.c"), "-o", "x.o"]);
            assert_eq!(
                sb.read(&format!("out/d{i}.o")),
                distinct,
                "round {round} d{i}"
            );
        }
        for i in 0..32 {
            std::fs::remove_file(sb.path(&format!("out/same{i}.o"))).unwrap();
            std::fs::remove_file(sb.path(&format!("out/d{i}.o"))).unwrap();
        }
    }
    let status = sb.status();
    assert_eq!(
        status["hits"].as_u64().unwrap() + status["misses"].as_u64().unwrap(),
        128
    );
    assert!(status["hits"].as_u64().unwrap() >= 64, "{status}");
    assert_eq!(status["errors"], 0);
}

#[test]
fn daemon_killed_at_random_moments_fifty_rounds() {
    let sb = Sandbox::new();
    let mut rng = Rng::from_time();
    let count = 6;
    for i in 0..count {
        sb.write_old(
            &format!("k{i}.c"),
            &format!("#include \"k.h\"\nint k{i}(void) {{ return K + {i}; }}\n"),
        );
    }
    sb.write_old("k.h", "#define K 0\n");
    std::fs::create_dir_all(sb.path("obj")).unwrap();
    let mut kills = 0;
    for round in 0..50 {
        if round % 5 == 0 {
            // New header content every few rounds: misses as well as hits get killed.
            std::fs::write(sb.path("k.h"), format!("#define K {round}\n")).unwrap();
        }
        let children: Vec<Child> = (0..count)
            .map(|i| {
                spawn(
                    &sb,
                    &strings(&[
                        "gcc",
                        "-O1",
                        "-c",
                        &format!("k{i}.c"),
                        "-o",
                        &format!("obj/k{i}.o"),
                    ]),
                )
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.below(60)));
        for pid in sb.daemon_processes() {
            // SAFETY: signalling this test's own daemon.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            kills += 1;
        }
        for child in children {
            assert_success(&child.wait_with_output().unwrap(), &["compile during kill"]);
        }
        for i in 0..count {
            let bare = sb.bare_object(&["gcc", "-O1", "-c", &format!("k{i}.c"), "-o", "b.o"]);
            assert_eq!(sb.read(&format!("obj/k{i}.o")), bare, "round {round} k{i}");
        }
    }
    assert!(kills >= 25, "only {kills} kills landed");
    // What the store kept through all that is served correctly.
    for _ in 0..2 {
        for i in 0..count {
            std::fs::remove_file(sb.path(&format!("obj/k{i}.o"))).unwrap();
            sb.ok(&[
                "gcc",
                "-O1",
                "-c",
                &format!("k{i}.c"),
                "-o",
                &format!("obj/k{i}.o"),
            ]);
            let bare = sb.bare_object(&["gcc", "-O1", "-c", &format!("k{i}.c"), "-o", "b.o"]);
            assert_eq!(
                sb.read(&format!("obj/k{i}.o")),
                bare,
                "after the kills: k{i}"
            );
        }
    }
    assert!(sb.hits() >= count as u64, "the last round must hit");
}

/// The processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid …
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split(' ').nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            pids.push(pid);
        }
    }
    pids
}

/// A daemon that goes away in the middle of a compile leaves the compiler it started
/// running, writing the caller's object. The client, which then compiles by other means, must
/// not return (and let the build read or link the object) while that compiler may still
/// rewrite it: an assembler that has just truncated the object leaves it empty for a moment.
/// `end_daemon` ends the daemon while its gcc is held stopped; the gcc is let go 1.5 s after.
fn orphaned_compiler_finishes_before_the_client_returns(end_daemon: impl FnOnce(&Sandbox, u32)) {
    let sb = Sandbox::new();
    let mut source = String::new();
    for i in 0..400 {
        source.push_str(&format!(
            "int f{i}(int *v, int n) {{ int s = {i}; for (int j = 0; j < n; j++) s += v[j] * (j ^ {i}); return s; }}\n"
        ));
    }
    sb.write_old("slow.c", &source);
    sb.write_old("warm.c", "int warm(void) { return 1; }\n");
    sb.ok(&["gcc", "-c", "warm.c", "-o", "warm.o"]);
    let daemon = sb.daemon_pid().expect("a daemon runs");
    let mut client = spawn(&sb, &strings(&["gcc", "-c", "slow.c", "-o", "slow.o"]));
    // The daemon's gcc driver, caught while cc1 runs and before it starts the assembler.
    let deadline = Instant::now() + Duration::from_secs(30);
    let driver = loop {
        if let Some(&pid) = children_of(daemon).first() {
            break pid;
        }
        assert!(Instant::now() < deadline, "the daemon never started gcc");
        std::thread::sleep(Duration::from_millis(1));
    };
    // SAFETY: signalling a process this test started.
    unsafe { libc::kill(driver as i32, libc::SIGSTOP) };
    end_daemon(&sb, daemon);
    let deadline = Instant::now() + Duration::from_secs(30);
    while zccache_core::process_is_running(daemon) {
        assert!(Instant::now() < deadline, "the daemon never went away");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let returned_while_gcc_ran = client.try_wait().unwrap().is_some();
    // SAFETY: as above.
    unsafe { libc::kill(driver as i32, libc::SIGCONT) };
    let output = client.wait_with_output().unwrap();
    assert_success(&output, &["gcc", "-c", "slow.c"]);
    assert!(
        !returned_while_gcc_ran,
        "the client returned while the old daemon's gcc could still write slow.o"
    );
    assert!(
        !zccache_core::process_is_running(driver),
        "the old daemon's gcc still runs"
    );
    let root = zccache_core::CacheRoot::new(&sb.cache);
    assert!(
        !root.compilers_lock_path(daemon).exists(),
        "the lock of a daemon whose compilers are gone is removed"
    );
    let bare = sb.bare_object(&["gcc", "-c", "slow.c", "-o", "b.o"]);
    assert_eq!(sb.read("slow.o"), bare);
    // What was stored meanwhile is right too.
    std::fs::remove_file(sb.path("slow.o")).unwrap();
    sb.ok(&["gcc", "-c", "slow.c", "-o", "slow.o"]);
    assert_eq!(sb.read("slow.o"), bare);
    // A daemon that stops with no compile running removes its own lock.
    let serving = sb.daemon_pid().expect("a daemon runs");
    assert!(root.compilers_lock_path(serving).exists());
    sb.ok(&["stop"]);
    assert!(!root.compilers_lock_path(serving).exists());
}

#[test]
fn a_killed_daemons_compiler_finishes_before_the_client_returns() {
    orphaned_compiler_finishes_before_the_client_returns(|_, daemon| {
        // SAFETY: signalling this test's own daemon.
        unsafe { libc::kill(daemon as i32, libc::SIGKILL) };
    });
}

/// `zccache stop` waits a few seconds for the calls in flight and then exits; a compile that
/// takes longer is left running, and its lock with it.
#[test]
fn a_stopped_daemons_unfinished_compiler_finishes_before_the_client_returns() {
    orphaned_compiler_finishes_before_the_client_returns(|sb, _| {
        sb.ok(&["stop"]);
    });
}

#[test]
fn garbage_on_the_socket_leaves_the_daemon_serving() {
    let sb = Sandbox::new();
    let mut rng = Rng::from_time();
    sb.write_old("m.c", "int m(void) { return 1; }\n");
    sb.ok(&["gcc", "-c", "m.c"]);
    let pid = sb.daemon_pid().unwrap();
    let socket = socket_path(&sb);
    let header = |version: u16, len: u32| {
        let mut h = b"ZC".to_vec();
        h.extend_from_slice(&version.to_le_bytes());
        h.extend_from_slice(&len.to_le_bytes());
        h
    };
    let mut sent = 0;
    for round in 0..60 {
        let frame: Vec<u8> = match round % 6 {
            0 => {
                let len = 1 + rng.below(300) as usize;
                rng.bytes(len)
            }
            1 => header(PROTOCOL_VERSION, MAX_FRAME_LEN + 1),
            2 => header(PROTOCOL_VERSION + 1, 4),
            // A valid header announcing more than is sent, then the client goes away.
            3 => [header(PROTOCOL_VERSION, 1000), rng.bytes(10)].concat(),
            // The right length, random content.
            4 => {
                let len = 1 + rng.below(200) as u32;
                [header(PROTOCOL_VERSION, len), rng.bytes(len as usize)].concat()
            }
            // Connect and leave at once.
            _ => Vec::new(),
        };
        let mut stream = UnixStream::connect(&socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = stream.write_all(&frame);
        if round % 6 == 3 || round % 6 == 5 {
            drop(stream);
        } else {
            // The daemon answers with an error or closes the connection; either way it returns.
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let mut reply = Vec::new();
            let _ = stream.read_to_end(&mut reply);
        }
        sent += 1;
        if round % 10 == 9 {
            sb.ok(&["gcc", "-c", "m.c"]);
        }
    }
    // A client killed mid-request harms nothing either.
    for _ in 0..5 {
        let mut child = spawn(&sb, &strings(&["gcc", "-c", "m.c", "-o", "killed.o"]));
        std::thread::sleep(Duration::from_millis(rng.below(20)));
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(sent, 60);
    assert_eq!(sb.daemon_pid(), Some(pid), "the daemon survived");
    std::fs::remove_file(sb.path("m.o")).unwrap();
    sb.ok(&["gcc", "-c", "m.c"]);
    assert_eq!(
        sb.read("m.o"),
        sb.bare_object(&["gcc", "-c", "m.c", "-o", "b.o"])
    );
    assert!(sb.hits() >= 7);
}

#[test]
fn hostile_arguments_behave_as_the_bare_compiler() {
    let sb = Sandbox::new();
    sb.write_old("sub/m.c", "int m(void) { return 2; }\n");
    std::fs::create_dir_all(sb.path("real")).unwrap();
    // Output through a symlinked directory, through `..`, a very long -D, odd bytes.
    std::os::unix::fs::symlink(sb.path("real"), sb.path("link")).unwrap();
    let long = format!("-DLONG={}", "x".repeat(100_000));
    let odd = "-DODD=\"\u{e9}\u{1}\\t$(x)`y`\"";
    let cases: Vec<Vec<String>> = vec![
        strings(&["gcc", "-c", "sub/m.c", "-o", "link/m.o"]),
        strings(&["gcc", "-c", "sub/../sub/m.c", "-o", "sub/../real/n.o"]),
        strings(&["gcc", "-c", "sub/m.c", &long, "-o", "real/long.o"]),
        strings(&["gcc", "-c", "sub/m.c", odd, "-o", "real/odd.o"]),
    ];
    for round in 0..2 {
        for args in &cases {
            let out = sb.run(args);
            let mut bare_args = args.clone();
            let at = bare_args.iter().position(|a| a == "-o").unwrap();
            let target = bare_args[at + 1].clone();
            bare_args[at + 1] = "bare.o".into();
            let bare = sb.bare(".", &bare_args);
            assert_eq!(out.status.code(), bare.status.code(), "{args:?}");
            assert_eq!(out.stderr, bare.stderr, "{args:?}");
            assert_eq!(
                sb.read(&target),
                sb.read("bare.o"),
                "round {round} {args:?}"
            );
        }
    }
    // The object went through the symlink into the real directory, as gcc would write it.
    assert!(sb.path("real/m.o").exists());
    assert!(std::fs::symlink_metadata(sb.path("link"))
        .unwrap()
        .file_type()
        .is_symlink());
}

/// Root can create other users' processes; the isolation tests need that.
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `args` as uid/gid 4242 (no such user needs to exist).
fn as_other_user(
    args: &[&str],
    cwd: &std::path::Path,
    env: &[(&str, &std::path::Path)],
) -> std::process::Output {
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=4242", "--regid=4242", "--clear-groups", "--"])
        .args(args)
        .current_dir(cwd)
        .env("HOME", cwd);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

#[test]
fn another_user_cannot_reach_or_read_the_cache() {
    if !is_root() {
        eprintln!("skipped: needs root to act as a second user");
        return;
    }
    let sb = Sandbox::new();
    sb.write_old("m.c", "int m(void) { return 3; }\n");
    sb.ok(&["gcc", "-c", "m.c"]);
    let before = sb.status();
    // The other user's own work dir.
    let theirs = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        theirs.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::write(theirs.path().join("t.c"), "int t(void) { return 4; }\n").unwrap();
    let socket = socket_path(&sb);
    let connect = as_other_user(
        &[
            "/usr/bin/python3",
            "-c",
            &format!(
                "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect({:?})\n print('connected')\nexcept OSError as e:\n print('refused', e.errno)",
                socket.display().to_string()
            ),
        ],
        theirs.path(),
        &[],
    );
    let said = String::from_utf8_lossy(&connect.stdout);
    assert!(
        said.starts_with("refused"),
        "other user: {said} {}",
        String::from_utf8_lossy(&connect.stderr)
    );
    let read = as_other_user(
        &["cat", sb.cache.join("index.redb").to_str().unwrap()],
        theirs.path(),
        &[],
    );
    assert!(!read.status.success(), "other user read the index");
    let list = as_other_user(&["ls", sb.cache.to_str().unwrap()], theirs.path(), &[]);
    assert!(!list.status.success(), "other user listed the cache root");
    // Pointing their zccache at our cache: their compile still works, without our cache.
    let compile = as_other_user(
        &[ZCCACHE, "gcc", "-c", "t.c"],
        theirs.path(),
        &[("ZCCACHE_CACHE_DIR", &sb.cache)],
    );
    assert_success(&compile, &["other user's compile"]);
    assert!(theirs.path().join("t.o").exists());
    let status = as_other_user(
        &[ZCCACHE, "status"],
        theirs.path(),
        &[("ZCCACHE_CACHE_DIR", &sb.cache)],
    );
    assert!(
        !String::from_utf8_lossy(&status.stdout).contains("hits"),
        "other user saw our statistics"
    );
    let after = sb.status();
    assert_eq!(before["misses"], after["misses"]);
    assert_eq!(before["artifact_count"], after["artifact_count"]);
}

#[test]
fn a_cache_root_owned_by_someone_else_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to create another user's directory");
        return;
    }
    let sb = Sandbox::new();
    sb.write_old("m.c", "int m(void) { return 5; }\n");
    let foreign = sb.path("foreign-cache");
    std::fs::create_dir(&foreign).unwrap();
    std::os::unix::fs::chown(&foreign, Some(4242), Some(4242)).unwrap();
    let out = sb.ok_env(&[("ZCCACHE_CACHE_DIR", &foreign)], &["gcc", "-c", "m.c"]);
    assert!(out.status.success());
    assert_eq!(
        sb.read("m.o"),
        sb.bare_object(&["gcc", "-c", "m.c", "-o", "b.o"])
    );
    assert_eq!(
        std::fs::read_dir(&foreign).unwrap().count(),
        0,
        "nothing may be written into another user's root"
    );
    let status = sb.ok_env(&[("ZCCACHE_CACHE_DIR", &foreign)], &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("owned by uid 4242"), "{text}");
}

/// A small tmpfs mounted at `name` in the sandbox's work dir; `None` (test skipped) without
/// root or where mounting is not allowed.
fn mount_tmpfs(sb: &Sandbox, name: &str, size: &str) -> Option<std::path::PathBuf> {
    if !is_root() {
        eprintln!("skipped: needs root to mount a file system");
        return None;
    }
    let dir = sb.work.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(&dir)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: tmpfs cannot be mounted here");
    }
    mounted.then_some(dir)
}

fn unmount(dir: &std::path::Path) {
    let _ = Command::new("umount").arg("-l").arg(dir).status();
}

#[test]
fn a_full_disk_under_the_cache_never_breaks_a_build() {
    let sb = Sandbox::new();
    let Some(root) = mount_tmpfs(&sb, "small-cache", "1536k") else {
        return;
    };
    // Objects of ~160 KiB each: the store fills up after a few.
    for i in 0..12 {
        sb.write_old(
            &format!("big{i}.c"),
            &format!(
                "const char big{i}[160000] = {{ {i} }};\nint f{i}(void) {{ return big{i}[0]; }}\n"
            ),
        );
    }
    let env = [("ZCCACHE_CACHE_DIR", root.as_path())];
    for round in 0..2 {
        for i in 0..12 {
            let args = [
                "gcc",
                "-c",
                &format!("big{i}.c"),
                "-o",
                &format!("big{i}.o"),
            ];
            sb.ok_env(&env, &args);
            assert_eq!(
                sb.read(&format!("big{i}.o")),
                sb.bare_object(&["gcc", "-c", &format!("big{i}.c"), "-o", "b.o"]),
                "round {round} big{i}"
            );
        }
    }
    let status = sb.ok_env(&env, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let not_stored = status["not_stored"].to_string();
    let evictions = status["evictions"].as_u64().unwrap_or(0);
    assert!(
        not_stored.contains("store_unwritable")
            || evictions > 0
            || !status["warnings"].as_array().unwrap().is_empty(),
        "a full disk must show in status: {status}"
    );
    let _ = sb.ok_env(&env, &["stop"]);
    unmount(&root);
}

#[test]
fn a_read_only_cache_root_never_breaks_a_build() {
    let sb = Sandbox::new();
    let Some(root) = mount_tmpfs(&sb, "ro-cache", "1m") else {
        return;
    };
    let remounted = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&root)
        .status()
        .is_ok_and(|s| s.success());
    assert!(remounted);
    sb.write_old("m.c", "int m(void) { return 6; }\n");
    let env = [("ZCCACHE_CACHE_DIR", root.as_path())];
    let started = Instant::now();
    for _ in 0..3 {
        sb.ok_env(&env, &["gcc", "-c", "m.c"]);
        assert_eq!(
            sb.read("m.o"),
            sb.bare_object(&["gcc", "-c", "m.c", "-o", "b.o"])
        );
    }
    eprintln!("three uncached compiles took {:?}", started.elapsed());
    let status = sb.ok_env(&env, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("read-only") || text.contains("not writable"),
        "{text}"
    );
    unmount(&root);
}

#[test]
fn make_j16_repeated_gives_identical_outputs() {
    use crate::projects::c_project;
    let sb = Sandbox::new();
    c_project(&sb);
    settle();
    let make = |target: &str| {
        let out = Command::new("make")
            .args(["-j16", target, &format!("CC={ZCCACHE} gcc")])
            .env("ZCCACHE_CACHE_DIR", &sb.cache)
            .current_dir(sb.path("proj"))
            .output()
            .unwrap();
        assert_success(&out, &["make -j16", target]);
    };
    let objects = |sb: &Sandbox| -> Vec<Vec<u8>> {
        let mut names: Vec<_> = std::fs::read_dir(sb.path("proj/build"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".o") || n.ends_with(".d"))
            .collect();
        names.sort();
        assert_eq!(names.len(), 22);
        names
            .iter()
            .map(|n| sb.read(&format!("proj/build/{n}")))
            .collect()
    };
    make("build/app");
    let first = objects(&sb);
    for round in 0..4 {
        make("clean");
        make("build/app");
        assert_eq!(objects(&sb), first, "round {round}");
        let run = sb.bare("proj", &["./build/app"]);
        assert_eq!(String::from_utf8_lossy(&run.stdout), "1.0 12 14\n");
    }
    // 11 objects and the link, then hits for all of them in each of the 4 rounds.
    assert_eq!((sb.hits(), sb.misses()), (48, 12));
}

#[test]
fn an_older_daemon_on_the_same_cache_is_asked_to_make_way() {
    // A daemon of the previous protocol version listens on its own socket in this root (as
    // after an upgrade while it still runs). The new daemon asks it to stop, in its version's
    // framing, so that it can take the index.
    use std::os::unix::fs::DirBuilderExt;
    use zccache_protocol::shutdown_frame;
    let sb = Sandbox::new();
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&sb.cache)
        .unwrap();
    let old_version = PROTOCOL_VERSION - 1;
    let listener = std::os::unix::net::UnixListener::bind(
        sb.cache.join(format!("daemon-v{old_version}.sock")),
    )
    .unwrap();
    let old_daemon = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut frame = vec![0u8; 12];
        stream.read_exact(&mut frame).unwrap();
        let _ = stream.write_all(b"ok");
        frame
    });
    sb.write_old("m.c", "int m(void) { return 7; }\n");
    sb.ok(&["gcc", "-c", "m.c"]);
    assert_eq!(old_daemon.join().unwrap(), shutdown_frame(old_version));
    let status = sb.status();
    let warnings = status["warnings"].to_string();
    assert!(warnings.contains("older zccache"), "{warnings}");
    sb.ok(&["gcc", "-c", "m.c"]);
    assert_eq!(sb.hits(), 1);
}

#[test]
fn a_daemon_binary_from_another_build_is_refused_with_one_message() {
    // A zccache whose zccache-daemon speaks another protocol (a half-done upgrade): the real
    // daemon binary, told by a wrapper script to expect another version, refuses to start.
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let bin = sb.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(ZCCACHE, bin.join("zccache")).unwrap();
    let real_daemon = std::path::Path::new(ZCCACHE).with_file_name("zccache-daemon");
    let script = bin.join("zccache-daemon");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec {} \"$@\" --protocol {}\n",
            real_daemon.display(),
            PROTOCOL_VERSION + 1
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    sb.write_old("m.c", "int m(void) { return 7; }\n");
    let compile = ["gcc", "-c", "m.c", "-o", "m.o"];
    let expected = sb.bare_object(&compile);
    let run = |args: &[&str]| {
        Command::new(bin.join("zccache"))
            .args(args)
            .env("ZCCACHE_CACHE_DIR", &sb.cache)
            .current_dir(&sb.work)
            .output()
            .unwrap()
    };
    let first = run(&compile);
    assert_success(&first, &compile);
    let said = String::from_utf8_lossy(&first.stderr).into_owned();
    assert!(
        said.contains("does not speak this zccache's protocol"),
        "{said}"
    );
    assert!(sb.read("m.o") == expected);
    // Said once; the build keeps working uncached.
    let second = run(&compile);
    assert_success(&second, &compile);
    assert!(
        second.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(sb.read("m.o") == expected);
    let status = run(&["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("does not speak"));
    // A matching daemon installed: cached again, and the note is gone.
    std::fs::remove_file(&script).unwrap();
    std::fs::copy(&real_daemon, &script).unwrap();
    assert_success(&run(&compile), &compile);
    assert_success(&run(&compile), &compile);
    assert!(!sb.cache.join("daemon-mismatch").exists());
    let status = run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["hits"], 1);
    let _ = run(&["stop"]);
}
