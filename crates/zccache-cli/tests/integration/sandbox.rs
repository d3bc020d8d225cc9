//! A private work dir and cache root per test, and helpers to run things in it.

use serde_json::Value;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

/// The client under test: this build's, or the one `ZCCACHE_TEST_CLIENT` names when the tests
/// are built (e.g. `target/zccache-release/zccache` from `scripts/build-release.sh`, whose
/// client may link musl); its daemon is the `zccache-daemon` beside it.
pub const ZCCACHE: &str = match option_env!("ZCCACHE_TEST_CLIENT") {
    Some(client) => client,
    None => env!("CARGO_BIN_EXE_zccache"),
};

pub struct Sandbox {
    _dir: tempfile::TempDir,
    /// Files were written with [`Sandbox::write_old`] since the last run: their ctime is
    /// fresh, so let it age before the next compile (see [`settle`]).
    unsettled: std::sync::atomic::AtomicBool,
    pub cache: PathBuf,
    pub work: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("zccache-test-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().canonicalize().unwrap();
        let cache = root.join("cache");
        let work = root.join("work");
        std::fs::create_dir_all(&work).unwrap();
        Sandbox {
            _dir: dir,
            unsettled: std::sync::atomic::AtomicBool::new(false),
            cache,
            work,
        }
    }

    /// `zccache` with this sandbox's cache root, run in the work dir.
    pub fn zccache(&self) -> Command {
        let mut command = Command::new(ZCCACHE);
        command
            .env("ZCCACHE_CACHE_DIR", &self.cache)
            .env("ZCCACHE_IDLE_TIMEOUT", "120")
            .env_remove("ZCCACHE_DISABLE")
            .current_dir(&self.work);
        command
    }

    /// Waits out [`settle`] if files were written with [`Sandbox::write_old`] since the last
    /// run. Builds a test drives through make, cmake or cargo call this first, as `run` does.
    pub fn settle_writes(&self) {
        if self
            .unsettled
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            settle();
        }
    }

    /// Runs `zccache <args>` in `dir` (relative to the work dir) and returns its output.
    pub fn run_in<S: AsRef<OsStr>>(&self, dir: &str, args: &[S]) -> Output {
        self.settle_writes();
        self.zccache()
            .current_dir(self.work.join(dir))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run zccache")
    }

    /// Runs `zccache <args>` in the work dir.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.run_in(".", args)
    }

    /// `zccache <args>` in the work dir with extra environment variables.
    pub fn run_env<S: AsRef<OsStr>, V: AsRef<OsStr>>(
        &self,
        env: &[(&str, V)],
        args: &[S],
    ) -> Output {
        self.settle_writes();
        let mut command = self.zccache();
        for (name, value) in env {
            command.env(name, value);
        }
        command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run zccache")
    }

    /// Like [`Sandbox::run_env`], and asserts success.
    pub fn ok_env<S: AsRef<OsStr>, V: AsRef<OsStr>>(
        &self,
        env: &[(&str, V)],
        args: &[S],
    ) -> Output {
        let output = self.run_env(env, args);
        assert_success(&output, args);
        output
    }

    /// Like [`Sandbox::run`], and asserts success.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let output = self.run(args);
        assert_success(&output, args);
        output
    }

    /// Runs a command directly (no zccache) in `dir` relative to the work dir.
    pub fn bare<S: AsRef<OsStr>>(&self, dir: &str, args: &[S]) -> Output {
        Command::new(args[0].as_ref())
            .args(&args[1..])
            .current_dir(self.work.join(dir))
            .stdin(Stdio::null())
            .output()
            .expect("run bare command")
    }

    /// What the bare compiler writes for `args` (which name their object with `-o`): the same
    /// command run directly, into `bare.o`.
    pub fn bare_object(&self, args: &[&str]) -> Vec<u8> {
        let mut bare: Vec<&str> = args.to_vec();
        let at = bare
            .iter()
            .position(|a| *a == "-o")
            .expect("args name their object with -o");
        bare[at + 1] = "bare.o";
        let out = self.bare(".", &bare);
        assert_success(&out, &bare);
        self.read("bare.o")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.work.join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// Writes `content` and backdates the file so that it looks long settled.
    pub fn write_old(&self, rel: &str, content: &str) {
        self.write(rel, content);
        set_mtime(
            &self.path(rel),
            SystemTime::now() - Duration::from_secs(3600),
        );
        self.unsettled
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Prints the compile journal and the daemon log, for a test about to fail on counts.
    pub fn print_daemon_records(&self) {
        for name in ["logs/compile_journal.jsonl", "logs/daemon.log"] {
            let text = std::fs::read_to_string(self.cache.join(name)).unwrap_or_default();
            eprintln!("--- {name}:\n{text}");
        }
    }

    /// The permission bits of a file in the work dir.
    pub fn mode(&self, rel: &str) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(self.path(rel))
            .unwrap_or_else(|e| panic!("stat {rel}: {e}"))
            .permissions()
            .mode()
            & 0o777
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn read_string(&self, rel: &str) -> String {
        String::from_utf8(self.read(rel)).unwrap()
    }

    /// `zccache status --json`.
    pub fn status(&self) -> Value {
        let output = self.ok(&["status", "--json"]);
        serde_json::from_slice(&output.stdout).expect("status json")
    }

    pub fn hits(&self) -> u64 {
        self.status()["hits"].as_u64().unwrap()
    }

    pub fn misses(&self) -> u64 {
        self.status()["misses"].as_u64().unwrap()
    }

    /// Count for `reason` in the status list `list` (`non_cacheable` or `not_stored`).
    pub fn reason_count(&self, list: &str, reason: &str) -> u64 {
        self.status()[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|pair| pair[0] == reason)
            .map(|pair| pair[1].as_u64().unwrap())
            .unwrap_or(0)
    }

    /// The pid of this sandbox's daemon, if one answers.
    pub fn daemon_pid(&self) -> Option<u32> {
        let status = self.status();
        status["pid"].as_u64().map(|p| p as u32)
    }

    /// Processes whose command line mentions this sandbox's cache root.
    pub fn daemon_processes(&self) -> Vec<u32> {
        let needle = self.cache.to_string_lossy().into_owned();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let zombie = stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z'));
            if cmdline.contains("zccache-daemon") && cmdline.contains(&needle) && !zombie {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self
            .zccache()
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub fn assert_success<S: AsRef<OsStr>>(output: &Output, args: &[S]) {
    let line: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    assert!(
        output.status.success(),
        "`{}` failed with {}\nstdout:\n{}\nstderr:\n{}",
        line.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn set_mtime(path: &Path, time: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .or_else(|_| std::fs::File::open(path))
        .unwrap()
        .set_modified(time)
        .unwrap();
}

/// Lets file timestamps age well past the clock tick they were written in. Tests about other
/// things call it so that their hit counts never depend on how the daemon treats fresh files
/// (`generated.rs` tests that).
pub fn settle() {
    std::thread::sleep(Duration::from_millis(120));
}

/// `cargo args` in `dir` (relative to the work dir) with this sandbox's cache root and none of
/// the caller's build settings (target directory, flags, wrappers): each test sets its own.
pub fn cargo_in(sb: &Sandbox, dir: &str, args: &[&str]) -> Command {
    sb.settle_writes();
    let mut command = Command::new("cargo");
    command
        .args(args)
        .current_dir(sb.path(dir))
        .env("ZCCACHE_CACHE_DIR", &sb.cache)
        .env("CARGO_TERM_COLOR", "never")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_INCREMENTAL")
        .env_remove("ZCCACHE_PATH_REMAP")
        .env_remove("ZCCACHE_WORKTREE_ROOT")
        .stdin(Stdio::null());
    command
}

/// The real compilers every test runs against.
pub const COMPILERS: [&str; 2] = ["gcc", "clang"];

/// The toolchain's own rustc (cargo passes this one to its wrapper), not a rustup proxy.
pub fn real_rustc() -> String {
    let out = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let sysroot = String::from_utf8(out.stdout).unwrap();
    format!("{}/bin/rustc", sysroot.trim())
}
