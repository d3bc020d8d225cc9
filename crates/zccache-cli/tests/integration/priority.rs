//! `ZCCACHE_COMPILE_PRIORITY`: the nice value of the compilers the daemon runs.
//!
//! Each compile includes a header that is a FIFO, so cc1 waits in `open` until the test writes
//! it: meanwhile the test reads the nice value of cc1 and of its gcc driver (the daemon's
//! child) from `/proc`. Nothing depends on timing: cc1 waits for as long as it takes.

use crate::sandbox::*;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PRIORITY_ENV: &str = "ZCCACHE_COMPILE_PRIORITY";

/// Field 19 of `/proc/PID/stat` (the nice value) and field 4 (the parent's pid).
fn nice_and_parent(pid: u32) -> Option<(i32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    Some((fields[16].parse().ok()?, fields[1].parse().ok()?))
}

/// The pid of a `cc1` whose command line names `source`.
fn find_cc1(source: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            (comm.trim_end() == "cc1" && String::from_utf8_lossy(&cmdline).contains(source))
                .then_some(pid)
        })
}

/// Serves a FIFO: every open for reading gets `content` and end of file, until stopped. The
/// daemon reads the header too (to hash it) after cc1 did.
struct Feeder {
    fifo: PathBuf,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Feeder {
    fn start(fifo: &Path, content: &'static str) -> Feeder {
        let stop = Arc::new(AtomicBool::new(false));
        let (path, stopped) = (fifo.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || loop {
            // Blocks until a reader opens the FIFO.
            let mut writer = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open fifo for writing");
            if stopped.load(Ordering::SeqCst) {
                return;
            }
            use std::io::Write;
            let _ = writer.write_all(content.as_bytes());
        });
        Feeder {
            fifo: fifo.to_path_buf(),
            stop,
            thread,
        }
    }

    /// Stops the thread: a reader of our own lets its pending open return, and it sees the flag.
    fn stop(self) {
        use std::os::unix::fs::OpenOptionsExt;
        self.stop.store(true, Ordering::SeqCst);
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.fifo)
            .expect("open fifo for reading");
        self.thread.join().unwrap();
        drop(reader);
    }
}

/// The nice values seen while one compile ran.
#[derive(Debug)]
struct Seen {
    daemon: i32,
    driver: i32,
    cc1: i32,
}

/// Compiles `<name>.c`, which includes the FIFO `<name>.h`, through zccache with `env` added,
/// and returns the nice values of the daemon, the gcc it started and that gcc's cc1.
fn compile_and_watch(sb: &Sandbox, name: &str, env: &[(&str, &str)]) -> Seen {
    let header = sb.path(&format!("{name}.h"));
    let path = std::ffi::CString::new(header.to_str().unwrap()).unwrap();
    // SAFETY: a valid path; mkfifo only creates it.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    let source = format!("{name}.c");
    sb.write_old(
        &source,
        &format!("#include \"{name}.h\"\nint value_{name}(void) {{ return VALUE; }}\n"),
    );
    sb.settle_writes();
    let mut command = sb.zccache();
    command.env_remove(PRIORITY_ENV).envs(env.iter().copied());
    let client = command
        .args(["gcc", "-c", &source, "-o", &format!("{name}.o")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // cc1 waits for the header for as long as it takes; the deadline only turns a compile
    // that never reached it into a failure instead of a hang.
    let deadline = Instant::now() + Duration::from_secs(120);
    let cc1 = loop {
        if let Some(pid) = find_cc1(&source) {
            break Some(pid);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let seen = cc1.and_then(|cc1| {
        let (cc1_nice, driver) = nice_and_parent(cc1)?;
        let (driver_nice, daemon) = nice_and_parent(driver)?;
        let (daemon_nice, _) = nice_and_parent(daemon)?;
        Some(Seen {
            daemon: daemon_nice,
            driver: driver_nice,
            cc1: cc1_nice,
        })
    });
    // Let the compile finish, and the daemon store it (status waits for that), before asserting.
    let feeder = Feeder::start(&header, "#define VALUE 7\n");
    let output = client.wait_with_output().unwrap();
    let _ = sb.status();
    feeder.stop();
    assert_success(&output, &[name]);
    seen.unwrap_or_else(|| panic!("no cc1 compiling {source} was seen"))
}

/// Whether this process may raise priorities (`high` then really gives nice -5).
fn privileged() -> bool {
    // SAFETY: geteuid only reads.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn each_priority_gives_compilers_its_nice_value() {
    let sb = Sandbox::new();
    // The daemon's own environment has no setting: each call's decides.
    let mut start = sb.zccache();
    let out = start
        .env_remove(PRIORITY_ENV)
        .arg("start")
        .output()
        .unwrap();
    assert_success(&out, &["start"]);
    let check = |name: &str, value: Option<&str>, expected: &dyn Fn(i32) -> Vec<i32>| {
        let env: Vec<(&str, &str)> = value.map(|v| (PRIORITY_ENV, v)).into_iter().collect();
        let seen = compile_and_watch(&sb, name, &env);
        let allowed = expected(seen.daemon);
        assert!(
            allowed.contains(&seen.driver) && seen.cc1 == seen.driver,
            "{PRIORITY_ENV}={value:?}: {seen:?}, expected one of {allowed:?}"
        );
    };
    let low = |daemon: i32| (daemon + 10).min(19);
    check("normal", Some("normal"), &|d| vec![d]);
    check("low", Some("low"), &|d| vec![low(d)]);
    check("idle", Some("idle"), &|_| vec![19]);
    // Raising the priority needs privileges; without them the compile runs at normal.
    check("high", Some("high"), &|d| {
        if privileged() {
            vec![-5]
        } else {
            vec![d]
        }
    });
    check("bogus", Some("fastest"), &|d| vec![low(d)]);
    // auto: normal below 95 % CPU use, low above; which one depends on the machine.
    check("auto", Some("auto"), &|d| vec![d, low(d)]);
    check("unset", None, &|d| vec![d, low(d)]);
    let log = std::fs::read_to_string(sb.cache.join("logs/daemon.log")).unwrap();
    assert!(
        log.contains("WARN") && log.contains("\"fastest\""),
        "the bad value is logged: {log}"
    );
}

#[test]
fn the_daemons_environment_is_the_default() {
    let sb = Sandbox::new();
    let mut start = sb.zccache();
    let out = start
        .env(PRIORITY_ENV, "idle")
        .arg("start")
        .output()
        .unwrap();
    assert_success(&out, &["start"]);
    let seen = compile_and_watch(&sb, "inherited", &[]);
    assert_eq!((seen.driver, seen.cc1), (19, 19), "{seen:?}");
    let seen = compile_and_watch(&sb, "overridden", &[(PRIORITY_ENV, "normal")]);
    assert_eq!(
        (seen.driver, seen.cc1),
        (seen.daemon, seen.daemon),
        "{seen:?}"
    );
}
