//! cargo through `RUSTC_WRAPPER=zccache` with the real toolchain.

use crate::sandbox::*;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// A workspace: leaf (with a build script and an `env!`) ← mid ← app, plus a proc-macro.
fn workspace(sb: &Sandbox) {
    sb.write_old(
        "ws/Cargo.toml",
        "[workspace]\nresolver = \"2\"\nmembers = [\"leaf\", \"mid\", \"mac\", \"app\"]\n",
    );
    sb.write_old(
        "ws/leaf/Cargo.toml",
        "[package]\nname = \"leaf\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[features]\nextra = []\n",
    );
    sb.write_old(
        "ws/leaf/build.rs",
        "fn main() { println!(\"cargo:rustc-env=LEAF_GREETING=hello\"); }\n",
    );
    sb.write_old(
        "ws/leaf/src/lib.rs",
        "pub fn leaf_value() -> u32 { 40 }\npub const GREETING: &str = env!(\"LEAF_GREETING\");\n\
         #[cfg(feature = \"extra\")]\npub fn extra() -> u32 { 1 }\n",
    );
    sb.write_old(
        "ws/mid/Cargo.toml",
        "[package]\nname = \"mid\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[dependencies]\nleaf = { path = \"../leaf\" }\n",
    );
    sb.write_old(
        "ws/mid/src/lib.rs",
        "pub fn mid_value() -> u32 { leaf::leaf_value() + 2 }\n\
         pub fn greeting() -> &'static str { leaf::GREETING }\n\
         pub fn suffix() -> &'static str { match option_env!(\"ZC_TEST_SUFFIX\") { Some(s) => s, None => \"\" } }\n",
    );
    sb.write_old(
        "ws/mac/Cargo.toml",
        "[package]\nname = \"mac\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[lib]\nproc-macro = true\n",
    );
    sb.write_old(
        "ws/mac/src/lib.rs",
        "use proc_macro::TokenStream;\n#[proc_macro]\npub fn answer(_: TokenStream) -> TokenStream { \"42u32\".parse().unwrap() }\n",
    );
    sb.write_old(
        "ws/app/Cargo.toml",
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[dependencies]\nmid = { path = \"../mid\" }\nmac = { path = \"../mac\" }\n",
    );
    sb.write_old(
        "ws/app/src/main.rs",
        "fn main() { println!(\"{} {} {}{}\", mid::greeting(), mid::mid_value(), mac::answer!(), mid::suffix()); }\n",
    );
}

fn cargo_command(sb: &Sandbox, args: &[&str]) -> Command {
    sb.settle_writes();
    let mut command = Command::new("cargo");
    command
        .args(args)
        .current_dir(sb.path("ws"))
        .env("RUSTC_WRAPPER", ZCCACHE)
        .env("ZCCACHE_CACHE_DIR", &sb.cache)
        .env("CARGO_TARGET_DIR", sb.path("ws/target"))
        .env("CARGO_TERM_COLOR", "never")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("ZC_TEST_SUFFIX")
        .stdin(Stdio::null());
    command
}

fn cargo_env(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = cargo_command(sb, args);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    assert_success(&out, args);
    out
}

fn cargo(sb: &Sandbox, args: &[&str]) -> Output {
    cargo_env(sb, args, &[])
}

fn run_app(sb: &Sandbox, profile: &str) -> String {
    let out = Command::new(sb.path(&format!("ws/target/{profile}/app")))
        .output()
        .unwrap();
    assert_success(&out, &["app"]);
    String::from_utf8(out.stdout).unwrap()
}

fn counts(sb: &Sandbox) -> (u64, u64) {
    (sb.hits(), sb.misses())
}

/// The lines cargo printed for warnings and errors, without its progress and lock-wait lines
/// (other tests run cargo at the same time and share its caches).
fn diagnostics(out: &Output) -> Vec<String> {
    const PROGRESS: [&str; 6] = [
        "Compiling",
        "Finished",
        "Checking",
        "Blocking",
        "Locking",
        "Updating",
    ];
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !PROGRESS.iter().any(|p| l.trim_start().starts_with(p)))
        .map(str::to_string)
        .collect()
}

#[test]
fn cargo_build_and_check_after_clean_are_all_hits() {
    let sb = Sandbox::new();
    workspace(&sb);
    settle();
    cargo(&sb, &["build"]);
    assert_eq!(run_app(&sb, "debug"), "hello 42 42\n");
    // build script, leaf, mid, mac (proc-macro), app (bin).
    assert_eq!(counts(&sb), (0, 5));
    cargo(&sb, &["clean"]);
    cargo(&sb, &["build"]);
    assert_eq!(
        counts(&sb),
        (5, 5),
        "every unit, linked ones included, is a hit"
    );
    assert_eq!(run_app(&sb, "debug"), "hello 42 42\n");

    // cargo check: libraries and the binary are checked (metadata only), the build script
    // and proc-macro are still built.
    // cargo check builds the proc-macro without debug info and checks every member (mac
    // included): the build script is a hit, five units are new.
    cargo(&sb, &["clean"]);
    cargo(&sb, &["check"]);
    assert_eq!(counts(&sb), (6, 10));
    cargo(&sb, &["clean"]);
    cargo(&sb, &["check"]);
    assert_eq!(
        counts(&sb),
        (12, 10),
        "a second check after clean is all hits"
    );
    // cargo build after cargo check: everything it needs is cached already.
    cargo(&sb, &["build"]);
    assert_eq!(run_app(&sb, "debug"), "hello 42 42\n");
    let (hits, misses) = counts(&sb);
    assert_eq!(misses, 10);
    assert!(hits >= 16, "{hits}");
    assert_eq!(
        sb.reason_count("non_cacheable", "rustc_probe"),
        0,
        "probes never reach the daemon"
    );
}

#[test]
fn edits_recompile_the_crate_and_its_dependents() {
    let sb = Sandbox::new();
    workspace(&sb);
    settle();
    cargo(&sb, &["build"]);
    sb.write(
        "ws/leaf/src/lib.rs",
        &sb.read_string("ws/leaf/src/lib.rs").replace("40", "50"),
    );
    settle();
    cargo(&sb, &["build"]);
    assert_eq!(run_app(&sb, "debug"), "hello 52 42\n");
    assert_eq!(counts(&sb), (0, 8), "leaf, mid and app recompiled");
    // A comment-only edit: leaf misses; its metadata comes out identical, so mid and app,
    // whose keys hold that metadata's content, are hits. Reverting makes all three hits.
    let original = sb.read_string("ws/leaf/src/lib.rs");
    sb.write(
        "ws/leaf/src/lib.rs",
        &format!("{original}// just a comment\n"),
    );
    settle();
    cargo(&sb, &["build"]);
    assert_eq!(run_app(&sb, "debug"), "hello 52 42\n");
    if counts(&sb) != (2, 9) {
        // Failed once in a CI run under load (0 hits, 10 misses), never since: show why.
        sb.print_daemon_records();
    }
    assert_eq!(counts(&sb), (2, 9), "only the edited crate misses");
    sb.write("ws/leaf/src/lib.rs", &original);
    settle();
    cargo(&sb, &["build"]);
    assert_eq!(
        counts(&sb),
        (5, 9),
        "the reverted sources are served from the cache"
    );
    assert_eq!(run_app(&sb, "debug"), "hello 52 42\n");
}

#[test]
fn flags_features_profile_env_and_version_changes_miss() {
    let sb = Sandbox::new();
    workspace(&sb);
    settle();
    cargo(&sb, &["build"]);
    let base = counts(&sb);
    // RUSTFLAGS / --cfg: everything misses, then hits when repeated after a clean.
    cargo_env(&sb, &["build"], &[("RUSTFLAGS", "--cfg zc_test")]);
    let after_flags = counts(&sb);
    assert_eq!(after_flags.0, base.0);
    assert!(after_flags.1 >= base.1 + 5, "{after_flags:?}");
    // A feature.
    cargo(&sb, &["build", "--features", "leaf/extra"]);
    let after_feature = counts(&sb);
    assert_eq!(after_feature.0, after_flags.0);
    assert!(after_feature.1 > after_flags.1);
    // The release profile.
    cargo(&sb, &["build", "--release"]);
    assert_eq!(run_app(&sb, "release"), "hello 42 42\n");
    let after_release = counts(&sb);
    assert_eq!(after_release.0, after_feature.0);
    // An option_env! variable: mid and app miss, and the program shows the new value.
    cargo_env(&sb, &["build"], &[("ZC_TEST_SUFFIX", "!")]);
    assert_eq!(run_app(&sb, "debug"), "hello 42 42!\n");
    let after_env = counts(&sb);
    assert!(after_env.1 > after_release.1);
    // Back to unset: cargo rebuilds mid; the cache has it.
    let hits_before = after_env.0;
    cargo(&sb, &["build"]);
    assert_eq!(run_app(&sb, "debug"), "hello 42 42\n");
    assert!(sb.hits() > hits_before);
    // CARGO_PKG_VERSION.
    let misses_before = sb.misses();
    sb.write(
        "ws/leaf/Cargo.toml",
        &sb.read_string("ws/leaf/Cargo.toml")
            .replace("0.1.0", "0.1.1"),
    );
    settle();
    cargo(&sb, &["build"]);
    assert!(sb.misses() >= misses_before + 3);
    assert_eq!(run_app(&sb, "debug"), "hello 42 42\n");
}

#[test]
fn warnings_replay_and_errors_are_not_cached() {
    let sb = Sandbox::new();
    workspace(&sb);
    sb.write_old(
        "ws/mid/src/lib.rs",
        &format!(
            "{}pub fn unused() {{ let x = 1; }}\n",
            sb.read_string("ws/mid/src/lib.rs")
        ),
    );
    settle();
    let cold = cargo(&sb, &["build"]);
    let warnings = diagnostics(&cold);
    assert!(
        warnings.iter().any(|l| l.contains("unused variable")),
        "{warnings:?}"
    );
    cargo(&sb, &["clean"]);
    let warm = cargo(&sb, &["build"]);
    assert_eq!(diagnostics(&warm), warnings);
    assert_eq!(counts(&sb), (5, 5));
    // A type error: cargo reports it, nothing is stored, and it is reported again.
    sb.write(
        "ws/leaf/src/lib.rs",
        "pub fn leaf_value() -> u32 { \"not a number\" }\npub const GREETING: &str = \"\";\n",
    );
    settle();
    for _ in 0..2 {
        let out = cargo_command(&sb, &["build"]).output().unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("mismatched types"));
    }
    assert_eq!(sb.reason_count("not_stored", "compile_failed"), 2);
}

#[test]
fn clippy_warnings_are_cached_and_deny_warnings_fails_both_times() {
    let sb = Sandbox::new();
    workspace(&sb);
    sb.write_old(
        "ws/mid/src/lib.rs",
        &format!(
            "{}pub fn needless(x: u32) -> u32 {{ return x + 1; }}\n",
            sb.read_string("ws/mid/src/lib.rs")
        ),
    );
    settle();
    let cold = cargo(&sb, &["clippy"]);
    let lints = diagnostics(&cold);
    assert!(
        lints
            .iter()
            .any(|l| l.contains("needless_return") || l.contains("unneeded `return`")),
        "{lints:?}"
    );
    cargo(&sb, &["clean"]);
    let hits = sb.hits();
    let warm = cargo(&sb, &["clippy"]);
    assert_eq!(diagnostics(&warm), lints);
    assert!(sb.hits() >= hits + 5, "clippy units are hits");
    for round in 0..2 {
        cargo(&sb, &["clean"]);
        let out = cargo_command(&sb, &["clippy", "--", "-D", "warnings"])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "round {round}: -D warnings must fail"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("error"),
            "round {round}"
        );
    }
}

#[test]
fn incremental_build_after_a_hit_is_correct() {
    let sb = Sandbox::new();
    workspace(&sb);
    settle();
    cargo(&sb, &["build"]);
    cargo(&sb, &["clean"]);
    cargo(&sb, &["build"]);
    assert_eq!(counts(&sb), (5, 5));
    // The hits left no incremental state; the next edits compile incrementally from there.
    for (value, expected) in [("60", "hello 62 42\n"), ("70", "hello 72 42\n")] {
        let text = sb.read_string("ws/leaf/src/lib.rs");
        let old = text
            .split("{ ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        sb.write("ws/leaf/src/lib.rs", &text.replacen(&old, value, 1));
        settle();
        cargo(&sb, &["build"]);
        assert_eq!(run_app(&sb, "debug"), expected);
    }
    sb.write(
        "ws/app/src/main.rs",
        "fn main() { println!(\"changed {}\", mid::mid_value()); }\n",
    );
    settle();
    cargo(&sb, &["build"]);
    assert_eq!(run_app(&sb, "debug"), "changed 72\n");
}

#[test]
fn daemon_killed_mid_cargo_build_still_succeeds() {
    let sb = Sandbox::new();
    workspace(&sb);
    settle();
    let child: Child = cargo_command(&sb, &["build"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(pid) = sb.daemon_processes().first() {
            // SAFETY: signalling the test's own daemon.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
            break;
        }
        assert!(std::time::Instant::now() < deadline, "daemon never started");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(run_app(&sb, "debug"), "hello 42 42\n");
}

#[test]
fn crates_io_project_with_c_built_by_a_build_script() {
    // serde with derive (a registry proc-macro), itoa, and a build script compiling C with the
    // cc crate through CC="zccache cc".
    let sb = Sandbox::new();
    sb.write_old(
        "ws/Cargo.toml",
        "[package]\nname = \"real\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         [dependencies]\nserde = { version = \"1\", features = [\"derive\"] }\nitoa = \"1\"\n\
         [build-dependencies]\ncc = \"1\"\n",
    );
    sb.write_old(
        "ws/build.rs",
        "fn main() { cc::Build::new().file(\"c/add.c\").compile(\"add\"); }\n",
    );
    sb.write_old(
        "ws/c/add.c",
        "int add_numbers(int a, int b) { return a + b; }\n",
    );
    sb.write_old(
        "ws/src/main.rs",
        "#[derive(serde::Serialize, Debug)] struct P { x: i32 }\n\
         extern \"C\" { fn add_numbers(a: i32, b: i32) -> i32; }\n\
         fn main() { let s = unsafe { add_numbers(40, 2) }; let mut b = itoa::Buffer::new(); println!(\"{} {:?}\", b.format(s), P { x: 1 }); }\n",
    );
    settle();
    let cc = format!("{ZCCACHE} cc");
    cargo_env(&sb, &["build"], &[("CC", &cc)]);
    let out = Command::new(sb.path("ws/target/debug/real"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42 P { x: 1 }\n");
    let (cold_hits, cold_misses) = counts(&sb);
    assert_eq!(cold_hits, 0);
    // cc probes the compiler with compiles that fail on purpose; those are never cached.
    let failed = |sb: &Sandbox| sb.reason_count("not_stored", "compile_failed");
    let cold_failed = failed(&sb);
    cargo(&sb, &["clean"]);
    cargo_env(&sb, &["build"], &[("CC", &cc)]);
    let (hits, misses) = counts(&sb);
    let warm_failed = failed(&sb) - cold_failed;
    assert_eq!(
        misses - cold_misses,
        warm_failed,
        "warm build after clean: only failing probes miss"
    );
    assert_eq!(
        hits,
        cold_misses - cold_failed,
        "every stored unit (rust and C) is a hit"
    );
    assert!(
        sb.status()["non_cacheable"].as_array().unwrap().is_empty(),
        "{}",
        sb.status()
    );
    let out = Command::new(sb.path("ws/target/debug/real"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42 P { x: 1 }\n");
    eprintln!(
        "crates.io project: {cold_misses} compiles cold ({cold_failed} failing cc probes), {hits} hits warm"
    );
}

#[test]
fn rustc_wrapper_in_cargo_config_works_the_same() {
    let sb = Sandbox::new();
    workspace(&sb);
    sb.write_old(
        "ws/.cargo/config.toml",
        &format!("[build]\nrustc-wrapper = \"{ZCCACHE}\"\n"),
    );
    settle();
    for _ in 0..2 {
        let out = cargo_command(&sb, &["build"])
            .env_remove("RUSTC_WRAPPER")
            .output()
            .unwrap();
        assert_success(&out, &["cargo build (config.toml wrapper)"]);
        cargo(&sb, &["clean"]);
    }
    assert_eq!(counts(&sb), (5, 5));
}

/// cargo starts the crates that depend on a library as soon as rustc reports the library's
/// metadata written (pipelining); a wrapper that holds rustc's stderr back until rustc exits
/// serializes the whole build. Here rustc's link step waits (through its `-C linker`; other
/// calls of the linker, such as the cache's version probe, pass) until the metadata notice has
/// come out of `zccache`'s stderr; it gives up after 10 s and says so.
/// A library crate `gate/lib.rs` whose `-C linker` (`cc-gate`) holds rustc's link step until
/// `gate/go` exists (giving up after 10 s, leaving `gate/timed-out`); other calls of the linker,
/// such as the cache's version probe, pass. Returns the gate directory and the rustc call.
fn gated_crate(sb: &Sandbox) -> (std::path::PathBuf, Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    sb.write_old("gate/lib.rs", "pub fn seven() -> u32 { 7 }\n");
    sb.write_old(
        "gate/cc-gate",
        "#!/bin/sh\ncase \" $* \" in *\" -o \"*) ;; *) exec cc \"$@\" ;; esac\ni=0\n\
         while [ ! -e \"$GATE_DIR/go\" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n\
         [ -e \"$GATE_DIR/go\" ] || touch \"$GATE_DIR/timed-out\"\nexec cc \"$@\"\n",
    );
    let gate = sb.path("gate");
    std::fs::set_permissions(gate.join("cc-gate"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(gate.join("out")).unwrap();
    let linker = format!("linker={}", gate.join("cc-gate").display());
    let rustc = real_rustc();
    let args = [
        rustc.as_str(),
        "--crate-name",
        "gate",
        "--edition=2021",
        "--crate-type",
        "rlib",
        "--crate-type",
        "cdylib",
        "--emit=dep-info,metadata,link",
        "--json=artifacts",
        "--error-format=json",
        "-C",
        &linker,
        "--out-dir",
        "out",
        "lib.rs",
    ];
    settle();
    (gate, args.iter().map(|a| a.to_string()).collect())
}

/// Runs the gated rustc call through zccache, calling `on_metadata` when the metadata notice
/// comes out of its stderr and then opening the gate. Returns the stderr lines.
fn run_gated(sb: &Sandbox, gate: &Path, args: &[String], on_metadata: impl Fn()) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    let _ = std::fs::remove_file(gate.join("go"));
    for output in ["libgate.rlib", "libgate.rmeta", "libgate.so", "gate.d"] {
        let _ = std::fs::remove_file(gate.join("out").join(output));
    }
    let mut child = sb
        .zccache()
        .current_dir(gate)
        .env("GATE_DIR", gate)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if line.contains("\"emit\":\"metadata\"") {
            on_metadata();
            std::fs::write(gate.join("go"), "").unwrap();
        }
        lines.push(std::mem::take(&mut line));
    }
    assert!(child.wait().unwrap().success(), "{lines:?}");
    assert!(
        !gate.join("timed-out").exists(),
        "the metadata notice came only after rustc finished: {lines:?}"
    );
    assert!(gate.join("out/libgate.so").exists() && gate.join("out/libgate.rlib").exists());
    lines
}

/// cargo starts the crates that depend on a library as soon as rustc reports the library's
/// metadata written (pipelining); a wrapper that holds rustc's stderr back until rustc exits
/// serializes the whole build. Here rustc's link step waits until the metadata notice has come
/// out of `zccache`'s stderr.
#[test]
fn a_rustc_miss_passes_the_metadata_notice_on_while_rustc_still_runs() {
    let sb = Sandbox::new();
    let (gate, args) = gated_crate(&sb);
    let cold = run_gated(&sb, &gate, &args, || {});
    let warm = run_gated(&sb, &gate, &args, || {});
    // The first round compiled through the daemon (not run beside it), the second was served;
    // both printed the same notices.
    assert_eq!((sb.hits(), sb.misses()), (1, 1));
    assert_eq!(cold, warm);
    assert!(cold.iter().any(|l| l.contains("\"emit\":\"metadata\"")));
}

/// The daemon dies after part of rustc's stderr reached the build: the client compiles by
/// itself and does not print again what it already printed (cargo must not be told twice that
/// the metadata is written).
#[test]
fn a_daemon_killed_in_a_streamed_miss_prints_each_notice_once() {
    let sb = Sandbox::new();
    let (gate, args) = gated_crate(&sb);
    sb.ok(&["start"]);
    let pid = sb.daemon_pid().expect("daemon running");
    let lines = run_gated(&sb, &gate, &args, || {
        // SAFETY: kill(2) on the sandbox daemon's pid.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let bare = {
        let out = std::process::Command::new(&args[0])
            .current_dir(&gate)
            .env("GATE_DIR", &gate)
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    assert_eq!(lines.concat(), bare);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("\"emit\":\"metadata\""))
            .count(),
        1,
        "{lines:?}"
    );
}

/// `zccache rustc` where `rustc` is a rustup proxy: what it compiles with depends on
/// `RUSTUP_TOOLCHAIN` (and `rust-toolchain.toml`, rustup's settings), so it is not cached; a
/// stable result was once served to a nightly call.
#[test]
fn a_rustup_proxy_is_run_uncached() {
    if !rustc_on_path_is_a_rustup_proxy() {
        eprintln!("skipped: rustc on PATH is not a rustup proxy");
        return;
    }
    let sb = Sandbox::new();
    sb.write_old("tc/lib.rs", "pub fn one() -> u32 { 1 }\n");
    std::fs::create_dir_all(sb.path("tc/out")).unwrap();
    settle();
    let args = [
        "rustc",
        "--crate-type",
        "lib",
        "--crate-name",
        "tc",
        "--edition=2021",
        "--emit=dep-info,metadata,link",
        "--out-dir",
        "out",
        "lib.rs",
    ];
    let toolchains: &[&str] = if has_nightly() {
        &["stable", "nightly", "stable"]
    } else {
        &["stable", "stable"]
    };
    for toolchain in toolchains {
        let _ = std::fs::remove_file(sb.path("tc/out/libtc.rlib"));
        let out = sb
            .zccache()
            .current_dir(sb.path("tc"))
            .env("RUSTUP_TOOLCHAIN", toolchain)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{toolchain}: {out:?}");
        let ours = sb.read("tc/out/libtc.rlib");
        let bare = Command::new("rustc")
            .current_dir(sb.path("tc"))
            .env("RUSTUP_TOOLCHAIN", toolchain)
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(bare.status.success());
        assert_eq!(
            ours,
            sb.read("tc/out/libtc.rlib"),
            "{toolchain}: as bare rustc"
        );
    }
    assert_eq!((sb.hits(), sb.misses()), (0, 0));
    assert_eq!(
        sb.reason_count("non_cacheable", "rustup_proxy"),
        toolchains.len() as u64
    );
}

/// `rustc` on PATH is rustup's proxy (a link to `rustup`).
fn rustc_on_path_is_a_rustup_proxy() -> bool {
    let rustc = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join("rustc"))
        .find(|p| p.is_file())
        .expect("rustc on PATH");
    std::fs::canonicalize(rustc).is_ok_and(|p| p.file_stem().is_some_and(|s| s == "rustup"))
}

/// rustup has a nightly toolchain.
fn has_nightly() -> bool {
    Command::new("rustc")
        .env("RUSTUP_TOOLCHAIN", "nightly")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A private toolchain directory `tc` whose `bin/rustc` is a copy of the real toolchain's
/// `toolchain` rustc (a copy, so the test can change it) and whose `lib` is the real one.
fn private_toolchain(sb: &Sandbox, toolchain: Option<&str>) -> std::path::PathBuf {
    let mut rustc = Command::new("rustc");
    if let Some(toolchain) = toolchain {
        rustc.env("RUSTUP_TOOLCHAIN", toolchain);
    }
    let sysroot = rustc.args(["--print", "sysroot"]).output().unwrap();
    let sysroot = std::path::PathBuf::from(String::from_utf8(sysroot.stdout).unwrap().trim());
    let bin = sb.path("tc/bin");
    std::fs::create_dir_all(&bin).unwrap();
    // Replaced the way an update replaces it: a new file renamed over the old one.
    std::fs::copy(sysroot.join("bin/rustc"), bin.join("rustc.new")).unwrap();
    std::fs::rename(bin.join("rustc.new"), bin.join("rustc")).unwrap();
    let _ = std::fs::remove_file(sb.path("tc/lib"));
    std::os::unix::fs::symlink(sysroot.join("lib"), sb.path("tc/lib")).unwrap();
    bin.join("rustc")
}

/// The probe cargo runs once per build after `cargo clean` (with stdin on /dev/null).
const CARGO_PROBE: &[&str] = &[
    "-",
    "--crate-name",
    "___",
    "--print=file-names",
    "--crate-type",
    "bin",
    "--crate-type",
    "rlib",
    "--crate-type",
    "proc-macro",
    "--print=sysroot",
    "--print=split-debuginfo",
    "--print=crate-name",
    "--print=cfg",
    "-Wwarnings",
];

fn queries(sb: &Sandbox) -> (u64, u64) {
    let status = sb.status();
    (
        status["queries_run"].as_u64().unwrap(),
        status["queries_answered"].as_u64().unwrap(),
    )
}

/// cargo asks `rustc -vV` up to four times and runs its `--print` probe once per build after
/// `cargo clean`: the daemon answers a repeat from memory, byte for byte what rustc prints, and
/// runs rustc again when the binary, the arguments or a variable that can change the answer
/// differ.
#[test]
fn rustc_queries_are_answered_from_memory_until_the_toolchain_changes() {
    let sb = Sandbox::new();
    let rustc = private_toolchain(&sb, None);
    // `rustc args` as `command` starts it (bare, or through zccache), stdin on /dev/null.
    let run = |mut command: Command, args: &[&str], env: &[(&str, &str)]| {
        let out = command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        out
    };
    let bare = |args: &[&str], env: &[(&str, &str)]| run(Command::new(&rustc), args, env);
    let ours = |args: &[&str], env: &[(&str, &str)]| {
        let mut zccache = sb.zccache();
        zccache.arg(&rustc);
        run(zccache, args, env)
    };
    let same = |args: &[&str], env: &[(&str, &str)]| {
        let (ours, bare) = (ours(args, env), bare(args, env));
        assert_eq!(ours.stdout, bare.stdout, "{args:?} {env:?}");
        assert_eq!(ours.stderr, bare.stderr, "{args:?} {env:?}");
        String::from_utf8(ours.stdout).unwrap()
    };
    let stable = same(&["-vV"], &[]);
    assert!(stable.contains("commit-hash"), "{stable}");
    same(&["-vV"], &[]);
    assert_eq!(queries(&sb), (1, 1), "the repeat comes from memory");
    let probe = same(CARGO_PROBE, &[]);
    assert!(probe.contains("target_os="), "{probe}");
    same(CARGO_PROBE, &[]);
    assert_eq!(queries(&sb), (2, 2));
    // Other arguments, or a variable rustc (or its loader) reads: asked afresh.
    same(&["--print", "cfg", "-C", "target-feature=+avx2"], &[]);
    same(&["-vV"], &[("LD_LIBRARY_PATH", "/nonexistent")]);
    same(&["-vV"], &[("RUST_LOG", "off")]);
    assert_eq!(queries(&sb), (5, 2));
    // The same content again (a reinstall) is answered; changed content is run again.
    private_toolchain(&sb, None);
    same(&["-vV"], &[]);
    assert_eq!(queries(&sb), (5, 3));
    let mut changed = std::fs::read(&rustc).unwrap();
    changed.push(0);
    std::fs::write(sb.path("tc/bin/rustc.new"), changed).unwrap();
    std::fs::set_permissions(
        sb.path("tc/bin/rustc.new"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::rename(sb.path("tc/bin/rustc.new"), &rustc).unwrap();
    assert_eq!(same(&["-vV"], &[]), stable);
    assert_eq!(queries(&sb), (6, 3), "a changed binary is asked again");
    // Another toolchain at the same path answers for itself.
    if has_nightly() {
        private_toolchain(&sb, Some("nightly"));
        let nightly = same(&["-vV"], &[]);
        assert_ne!(nightly, stable);
        assert!(nightly.contains("nightly"), "{nightly}");
        same(CARGO_PROBE, &[]);
        assert_eq!(queries(&sb), (8, 3));
    } else {
        eprintln!("nightly round skipped: no nightly toolchain");
    }
    // Input that is not /dev/null is read by rustc: zccache runs it without asking the daemon.
    let before = queries(&sb);
    let mut child = sb
        .zccache()
        .arg(&rustc)
        .args(["-", "--print=crate-name"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"#![crate_name = \"from_stdin\"]\nfn main() {}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "from_stdin");
    assert_eq!(queries(&sb), before);
    // Not answered from memory, run each time: a target named by `--target` (it may be a
    // `<name>.json` in the cwd), a codegen option that reads a file, and a script standing
    // in front of rustc (as Nix's wrapper does: what it adds is nobody's key).
    let host = stable
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap()
        .to_string();
    let script = sb.path("wrapped/bin/rustc");
    std::fs::create_dir_all(script.parent().unwrap()).unwrap();
    std::fs::write(
        &script,
        format!("#!/bin/sh\nexec {} \"$@\"\n", rustc.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let before = queries(&sb);
    for _ in 0..2 {
        same(&["--print", "cfg", "--target", &host], &[]);
        let out = sb
            .zccache()
            .arg(&script)
            .arg("-vV")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.stdout, bare(&["-vV"], &[]).stdout);
    }
    assert_eq!(queries(&sb), before);
}

/// On a terminal rustc colours what it writes to stderr, and the daemon runs it through a
/// pipe: a query whose stderr is a colour terminal goes straight to rustc. Only `TERM` differs
/// between the two calls here (`script` gives stderr a terminal; stdin is /dev/null, stdout a
/// file, as cargo's are).
#[test]
fn a_query_from_a_colour_terminal_goes_straight_to_rustc() {
    let sb = Sandbox::new();
    let rustc = private_toolchain(&sb, None);
    let bare = Command::new(&rustc).arg("-vV").output().unwrap();
    let on_terminal = |term: &str| {
        let command = format!("{ZCCACHE} {} -vV </dev/null >vv.txt", rustc.display());
        let out = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .current_dir(&sb.work)
            .env("TERM", term)
            .env("ZCCACHE_CACHE_DIR", &sb.cache)
            .output()
            .unwrap();
        assert_success(&out, &[&command]);
        assert_eq!(sb.read("vv.txt"), bare.stdout, "TERM={term}");
    };
    sb.ok(&["start"]);
    on_terminal("xterm-256color");
    assert_eq!(
        queries(&sb),
        (0, 0),
        "a colour terminal: rustc runs without the daemon"
    );
    on_terminal("dumb");
    assert_eq!(queries(&sb), (1, 0), "no colour: the daemon runs the query");
}

/// A rustup proxy's answer depends on the caller's toolchain selection: never from memory.
#[test]
fn a_query_through_a_rustup_proxy_is_not_answered_from_memory() {
    if !rustc_on_path_is_a_rustup_proxy() || !has_nightly() {
        eprintln!("skipped: needs rustc on PATH to be a rustup proxy, and a nightly toolchain");
        return;
    }
    let sb = Sandbox::new();
    for toolchain in ["stable", "nightly", "stable", "nightly"] {
        let ours = sb
            .zccache()
            .args(["rustc", "-vV"])
            .env("RUSTUP_TOOLCHAIN", toolchain)
            .output()
            .unwrap();
        let bare = Command::new("rustc")
            .arg("-vV")
            .env("RUSTUP_TOOLCHAIN", toolchain)
            .output()
            .unwrap();
        assert!(ours.status.success(), "{ours:?}");
        assert_eq!(ours.stdout, bare.stdout, "{toolchain}");
    }
    assert_eq!(queries(&sb), (0, 0));
    assert_eq!(sb.reason_count("non_cacheable", "rustup_proxy"), 4);
}

/// A wrapper named `x86_64-w64-mingw32-gcc` in `dir`, running the real one; `tag` makes its
/// content (and so its identity) differ between wrappers.
fn mingw_wrapper(sb: &Sandbox, dir: &str, tag: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v x86_64-w64-mingw32-gcc"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        !real.trim().is_empty(),
        "x86_64-w64-mingw32-gcc is needed (test.sh installs gcc-mingw-w64-x86-64)"
    );
    let script = sb.path(&format!("{dir}/x86_64-w64-mingw32-gcc"));
    sb.write(
        &format!("{dir}/x86_64-w64-mingw32-gcc"),
        &format!("#!/bin/sh\n# {tag}\nexec {} \"$@\"\n", real.trim()),
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    sb.path(dir)
}

/// For a `*-windows-gnu` target rustc links with `x86_64-w64-mingw32-gcc` from PATH, not
/// `cc`: that is the linker the program's key must hold. Another mingw gcc first on PATH
/// makes the program a miss (before, the key held `cc`'s identity, and it was a hit made by
/// the other linker). The libraries, which are not linked, stay hits.
#[test]
fn a_windows_gnu_cross_link_is_keyed_by_the_mingw_gcc_rustc_runs() {
    let sb = Sandbox::new();
    workspace(&sb);
    let path = std::env::var("PATH").unwrap();
    let first = mingw_wrapper(&sb, "wrap1", "first");
    let with = |dir: &Path| [("PATH", format!("{}:{path}", dir.display()))];
    let build = |dir: &Path| {
        let env = with(dir);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        cargo_env(&sb, &["build", "--target", "x86_64-pc-windows-gnu"], &env);
        let program = std::fs::read(sb.path("ws/target/x86_64-pc-windows-gnu/debug/app.exe"))
            .expect("app.exe built");
        assert_eq!(&program[..2], b"MZ", "a Windows program");
    };
    build(&first);
    let (hits, misses) = counts(&sb);
    assert!(
        misses >= 4,
        "leaf, mid, mac and app compiled: {misses} misses"
    );
    std::fs::remove_dir_all(sb.path("ws/target")).unwrap();
    build(&first);
    let (hits_again, misses_again) = counts(&sb);
    assert_eq!(misses_again, misses, "everything a hit, the link included");
    assert!(hits_again >= hits + 4);

    let second = mingw_wrapper(&sb, "wrap2", "second");
    std::fs::remove_dir_all(sb.path("ws/target")).unwrap();
    build(&second);
    let (_, misses_other) = counts(&sb);
    assert_eq!(
        misses_other,
        misses + 1,
        "only the program (linked by the other mingw gcc) runs rustc"
    );
}
