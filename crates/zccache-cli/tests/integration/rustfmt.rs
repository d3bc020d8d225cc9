//! `zccache rustfmt` against the real rustfmt: `--check` and formatting runs, cold then warm
//! with the bare tool's bytes and exit code, child modules included, and every input that
//! matters (a file, a child module, the configuration, the edition, the toolchain) missing
//! when it changes.

use crate::sandbox::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Output, Stdio};

const MAIN: &str = "mod m;\nfn main(){let x=1;println!(\"{}\",x);}\n";
const M: &str = "mod n;\npub fn f( )->u32{1}\n";
const N: &str = "pub fn g( )->u32{2}\n";

/// A crate in `dir`: `src/main.rs` with the out-of-line modules `m` (src/m.rs) and `m::n`
/// (src/m/n.rs), none formatted.
fn unformatted_crate(sb: &Sandbox, dir: &str) {
    sb.write_old(&format!("{dir}/src/main.rs"), MAIN);
    sb.write_old(&format!("{dir}/src/m.rs"), M);
    sb.write_old(&format!("{dir}/src/m/n.rs"), N);
}

const FILES: [&str; 3] = ["src/main.rs", "src/m.rs", "src/m/n.rs"];

fn contents(sb: &Sandbox, dir: &str) -> Vec<Vec<u8>> {
    FILES
        .iter()
        .map(|f| sb.read(&format!("{dir}/{f}")))
        .collect()
}

fn counts(sb: &Sandbox) -> (u64, u64) {
    (sb.hits(), sb.misses())
}

/// Runs `rustfmt args` bare and through zccache in `dir`; asserts the same exit code, stdout
/// and stderr, and returns zccache's output.
fn same_as_bare(sb: &Sandbox, dir: &str, args: &[&str]) -> Output {
    let mut line = vec!["rustfmt"];
    line.extend_from_slice(args);
    let bare = sb.bare(dir, &line);
    let ours = sb.run_in(dir, &line);
    assert_same(&ours, &bare, args);
    ours
}

/// `zccache rustfmt args` in `dir` with extra variables; never asserts success.
fn rustfmt_env(sb: &Sandbox, dir: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    settle();
    let mut command = sb.zccache();
    command.current_dir(sb.path(dir)).arg("rustfmt").args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.stdin(Stdio::null()).output().unwrap()
}

fn assert_same(ours: &Output, expected: &Output, args: &[&str]) {
    assert_eq!(
        ours.status.code(),
        expected.status.code(),
        "exit code of {args:?}\nstderr:\n{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&expected.stdout),
        "stdout of {args:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&ours.stderr),
        String::from_utf8_lossy(&expected.stderr),
        "stderr of {args:?}"
    );
}

const CHECK: &[&str] = &["--check", "--edition", "2021", "src/main.rs"];

#[test]
fn rustfmt_check_cold_then_warm_replays_diffs_and_exit_code() {
    let sb = Sandbox::new();
    unformatted_crate(&sb, "c");
    let cold = same_as_bare(&sb, "c", CHECK);
    assert_eq!(cold.status.code(), Some(1));
    let diffs = String::from_utf8_lossy(&cold.stdout);
    for file in FILES {
        let path = sb.path(&format!("c/{file}"));
        assert!(
            diffs.contains(&format!("Diff in {}:1:", path.display())),
            "{file} missing from\n{diffs}"
        );
    }
    assert!(!diffs.contains("Formatting "), "-v lines leak:\n{diffs}");
    assert_eq!(counts(&sb), (0, 1));
    let warm = same_as_bare(&sb, "c", CHECK);
    assert_eq!(counts(&sb), (1, 1), "the second check is a hit");
    assert_eq!(warm.stdout, cold.stdout);
    assert_eq!(
        contents(&sb, "c"),
        [MAIN, M, N].map(|s| s.as_bytes().to_vec())
    );

    // Formatted code: exit 0, a miss and then a hit too.
    let formatted = sb.bare("c", &["rustfmt", "--edition", "2021", "src/main.rs"]);
    assert_success(&formatted, &["rustfmt"]);
    settle();
    let clean = same_as_bare(&sb, "c", CHECK);
    assert_eq!(clean.status.code(), Some(0));
    assert!(clean.stdout.is_empty());
    assert_eq!(counts(&sb), (1, 2));
    same_as_bare(&sb, "c", CHECK);
    assert_eq!(counts(&sb), (2, 2));
}

#[test]
fn rustfmt_quiet_and_colourless_checks_are_cached_too() {
    let sb = Sandbox::new();
    unformatted_crate(&sb, "c");
    sb.ok(&["start"]);
    for args in [
        &["-q", "--check", "src/main.rs"][..],
        &["--check", "--color", "never", "-l", "src/main.rs"],
        &["--check", "--color=always", "src/main.rs"],
    ] {
        let before = counts(&sb);
        let cold = same_as_bare(&sb, "c", args);
        assert_eq!(cold.status.code(), Some(1), "{args:?}");
        same_as_bare(&sb, "c", args);
        assert_eq!(
            counts(&sb),
            (before.0 + 1, before.1 + 1),
            "{args:?}: a miss, then a hit"
        );
    }
}

#[test]
fn rustfmt_diff_lines_ending_in_the_verbose_marker_are_exact() {
    // `-v` ends every diff line with ⏎; a line of the file that ends with one keeps it.
    let sb = Sandbox::new();
    sb.write_old("c/src/main.rs", "fn main(){let x=1;} // ⏎\n");
    let args = ["--check", "src/main.rs"];
    let cold = same_as_bare(&sb, "c", &args);
    assert!(String::from_utf8_lossy(&cold.stdout).contains("// ⏎\n"));
    same_as_bare(&sb, "c", &args);
    assert_eq!(counts(&sb), (1, 1));
}

#[test]
fn rustfmt_formatting_run_cold_then_warm_rewrites_like_bare() {
    let sb = Sandbox::new();
    unformatted_crate(&sb, "bare");
    unformatted_crate(&sb, "c");
    let args = ["rustfmt", "--edition", "2021", "-l", "src/main.rs"];
    let bare = sb.bare("bare", &args);
    assert_success(&bare, &args);
    let expected = contents(&sb, "bare");
    assert!(expected
        .iter()
        .zip([MAIN, M, N])
        .all(|(e, o)| e != o.as_bytes()));

    let cold = sb.run_in("c", &args);
    assert_success(&cold, &args);
    assert_eq!(contents(&sb, "c"), expected, "cold run formats like bare");
    assert_eq!(counts(&sb), (0, 1));
    let listed = String::from_utf8_lossy(&cold.stdout).into_owned();
    assert_eq!(
        listed.lines().count(),
        3,
        "-l names the three files:\n{listed}"
    );

    // The unformatted originals again, one of them with a mode of its own.
    unformatted_crate(&sb, "c");
    std::fs::set_permissions(
        sb.path("c/src/m.rs"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let warm = sb.run_in("c", &args);
    assert_success(&warm, &args);
    assert_eq!(counts(&sb), (1, 1), "the second run is a hit");
    assert_eq!(warm.stdout, cold.stdout);
    assert_eq!(warm.stderr, cold.stderr);
    assert_eq!(contents(&sb, "c"), expected, "the hit rewrites every file");
    let m = std::fs::metadata(sb.path("c/src/m.rs")).unwrap();
    assert_eq!(
        m.permissions().mode() & 0o777,
        0o640,
        "the file keeps its mode"
    );
    for file in FILES {
        let meta = std::fs::metadata(sb.path(&format!("c/{file}"))).unwrap();
        assert_eq!(
            meta.nlink(),
            1,
            "{file} is a copy, not a link into the store"
        );
    }

    // Now formatted: a different key, rustfmt changes nothing, and that is stored too.
    settle();
    assert_success(&sb.run_in("c", &args), &args);
    assert_eq!(contents(&sb, "c"), expected);
    assert_eq!(counts(&sb), (1, 2));

    // A child module edited (still unformatted, differently): a miss, formatted like bare.
    unformatted_crate(&sb, "bare");
    unformatted_crate(&sb, "c");
    let n2 = "pub fn g( )->u32{   3   }\n";
    sb.write_old("bare/src/m/n.rs", n2);
    sb.write_old("c/src/m/n.rs", n2);
    assert_success(&sb.bare("bare", &args), &args);
    assert_success(&sb.run_in("c", &args), &args);
    assert_eq!(counts(&sb), (1, 3), "an edited child module misses");
    assert_eq!(contents(&sb, "c"), contents(&sb, "bare"));
}

#[test]
fn rustfmt_every_input_that_matters_misses_when_changed() {
    let sb = Sandbox::new();
    unformatted_crate(&sb, "c");
    same_as_bare(&sb, "c", CHECK);
    same_as_bare(&sb, "c", CHECK);
    assert_eq!(counts(&sb), (1, 1));

    // The file named on the command line.
    sb.write_old("c/src/main.rs", "mod m;\nfn main(){let y=2;}\n");
    same_as_bare(&sb, "c", CHECK);
    assert_eq!(counts(&sb), (1, 2), "an edited root file misses");
    sb.write_old("c/src/main.rs", MAIN);
    same_as_bare(&sb, "c", CHECK);
    assert_eq!(
        counts(&sb),
        (2, 2),
        "back to the original: its entry is still there"
    );

    // A child module only.
    sb.write_old("c/src/m/n.rs", "pub fn g( )->u64{2}\n");
    let out = same_as_bare(&sb, "c", CHECK);
    assert!(String::from_utf8_lossy(&out.stdout).contains("u64"));
    assert_eq!(counts(&sb), (2, 3), "an edited child module misses");
    sb.write_old("c/src/m/n.rs", N);

    // Configuration appearing in the crate, then changing.
    sb.write_old("c/rustfmt.toml", "hard_tabs = true\n");
    let tabs = same_as_bare(&sb, "c", CHECK);
    assert!(String::from_utf8_lossy(&tabs.stdout).contains("+\tlet x = 1;"));
    assert_eq!(counts(&sb), (2, 4), "a new rustfmt.toml misses");
    same_as_bare(&sb, "c", CHECK);
    assert_eq!(counts(&sb), (3, 4));
    sb.write_old("c/rustfmt.toml", "max_width = 40\n");
    same_as_bare(&sb, "c", CHECK);
    assert_eq!(counts(&sb), (3, 5), "an edited rustfmt.toml misses");
    // A .rustfmt.toml higher up, beside a rustfmt.toml that rustfmt finds first, still counts.
    sb.write_old(".rustfmt.toml", "hard_tabs = true\n");
    same_as_bare(&sb, "c", CHECK);
    assert_eq!(counts(&sb), (3, 6));

    // Another edition.
    same_as_bare(&sb, "c", &["--check", "--edition", "2018", "src/main.rs"]);
    assert_eq!(counts(&sb), (3, 7), "another edition misses");

    // A module file that now has a twin (m.rs and m/mod.rs): rustfmt's error, not the entry.
    sb.write_old("c/src/m/mod.rs", "pub fn h() {}\n");
    let twin = same_as_bare(&sb, "c", CHECK);
    assert_ne!(twin.status.code(), Some(0));
    assert_eq!(sb.hits(), 3, "no hit with an ambiguous module");
}

#[test]
fn rustfmt_a_module_it_skips_still_counts() {
    // rustfmt reads gen.rs, sees #![rustfmt::skip] and does not name it even with -v; the
    // entry must still depend on it.
    let sb = Sandbox::new();
    sb.write_old("c/src/main.rs", "mod gen;\nfn main() {}\n");
    sb.write_old("c/src/gen.rs", "#![rustfmt::skip]\npub fn g( )->u32{2}\n");
    let clean = same_as_bare(&sb, "c", CHECK);
    assert_eq!(clean.status.code(), Some(0));
    same_as_bare(&sb, "c", CHECK);
    assert_eq!(counts(&sb), (1, 1));
    sb.write_old("c/src/gen.rs", "pub fn g( )->u32{2}\n");
    let dirty = same_as_bare(&sb, "c", CHECK);
    assert_eq!(dirty.status.code(), Some(1), "no longer skipped: a diff");
    assert_eq!(counts(&sb), (1, 2));
}

#[test]
fn rustfmt_uncacheable_calls_run_directly() {
    let sb = Sandbox::new();
    unformatted_crate(&sb, "c");
    let stdin = sb.run_in("c", &["rustfmt", "--edition", "2021"]);
    assert_success(&stdin, &["rustfmt"]);
    let emit = same_as_bare(&sb, "c", &["--emit", "stdout", "src/main.rs"]);
    assert!(String::from_utf8_lossy(&emit.stdout).contains("fn main() {"));
    same_as_bare(&sb, "c", &["--version"]);
    same_as_bare(&sb, "c", &["--check", "--backup", "src/main.rs"]);
    assert_eq!(counts(&sb), (0, 0));
    assert_eq!(sb.reason_count("non_cacheable", "rustfmt_stdin"), 1);
    assert_eq!(sb.reason_count("non_cacheable", "rustfmt_emit"), 1);
    assert_eq!(sb.reason_count("non_cacheable", "rustfmt_option"), 2);
    assert_eq!(
        contents(&sb, "c"),
        [MAIN, M, N].map(|s| s.as_bytes().to_vec())
    );
}

/// Whether rustup can run `toolchain`'s rustfmt here.
fn has_rustfmt(toolchain: &str) -> bool {
    Command::new("rustfmt")
        .arg("--version")
        .env("RUSTUP_TOOLCHAIN", toolchain)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn rustfmt_toolchain_choice_is_part_of_the_key() {
    if !has_rustfmt("stable") || !has_rustfmt("nightly") {
        eprintln!("skipped: needs rustup with rustfmt on stable and nightly");
        return;
    }
    let sb = Sandbox::new();
    unformatted_crate(&sb, "c");
    let mut expected = (0, 0);
    for toolchain in ["stable", "nightly"] {
        for outcome in ["miss", "hit"] {
            let out = rustfmt_env(&sb, "c", &[("RUSTUP_TOOLCHAIN", toolchain)], CHECK);
            assert_eq!(out.status.code(), Some(1));
            if outcome == "miss" {
                expected.1 += 1;
            } else {
                expected.0 += 1;
            }
            assert_eq!(counts(&sb), expected, "{toolchain}: {outcome}");
        }
    }
    // Without the variable, a rust-toolchain.toml chooses.
    let unset = |sb: &Sandbox| {
        let mut command = sb.zccache();
        command
            .current_dir(sb.path("c"))
            .env_remove("RUSTUP_TOOLCHAIN")
            .arg("rustfmt")
            .args(CHECK)
            .stdin(Stdio::null());
        settle();
        let out = command.output().unwrap();
        assert_eq!(out.status.code(), Some(1));
    };
    unset(&sb);
    let before = counts(&sb);
    sb.write_old(
        "c/rust-toolchain.toml",
        "[toolchain]\nchannel = \"nightly\"\n",
    );
    unset(&sb);
    assert_eq!(
        counts(&sb),
        (before.0, before.1 + 1),
        "rust-toolchain.toml misses"
    );
    unset(&sb);
    assert_eq!(counts(&sb), (before.0 + 1, before.1 + 1));
}
