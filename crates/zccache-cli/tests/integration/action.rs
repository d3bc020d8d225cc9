//! The GitHub Action (`action/action.yml`, `action/cleanup/action.yml`) run end to end as the
//! runner runs it: `tests/action/runner.mjs` executes a job's steps with the runner's files and
//! variables, the runtime pointing at the local cache service (`tests/gha/server.py`). Every
//! run is a fresh runner: its home, cache root, temp dir and checkout are wiped and recreated
//! at the same paths, as on GitHub-hosted runners.

use crate::gha::GhaServer;
use crate::sandbox::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A cargo workspace: `app` prints `c2::value()`, c2 → c1 → c0 (path crates), and `itoa` from
/// crates.io (the registry layer).
fn project(sb: &Sandbox, c1_value: u32) {
    sb.write(
        "src/Cargo.toml",
        "[workspace]\nresolver = \"2\"\nmembers = [\"c0\", \"c1\", \"c2\", \"app\"]\n",
    );
    for (i, dep) in [(0, ""), (1, "c0"), (2, "c1")] {
        let deps = if dep.is_empty() {
            String::new()
        } else {
            format!("{dep} = {{ path = \"../{dep}\" }}\n")
        };
        sb.write(
            &format!("src/c{i}/Cargo.toml"),
            &format!(
                "[package]\nname = \"c{i}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[dependencies]\n{deps}"
            ),
        );
        let value = if i == 1 { c1_value } else { i };
        let body = if dep.is_empty() {
            format!("pub fn value() -> u32 {{ {value} }}\n")
        } else {
            format!("pub fn value() -> u32 {{ {dep}::value() * 10 + {value} }}\n")
        };
        sb.write(&format!("src/c{i}/src/lib.rs"), &body);
    }
    sb.write(
        "src/app/Cargo.toml",
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[dependencies]\n\
         c2 = { path = \"../c2\" }\nitoa = \"1\"\n",
    );
    sb.write(
        "src/app/src/main.rs",
        "fn main() { println!(\"{}\", itoa::Buffer::new().format(c2::value())); }\n",
    );
    // A committed lockfile, as a real project has (the keys and warm read it).
    if !sb.path("src/Cargo.lock").exists() {
        let lock = Command::new("cargo")
            .arg("generate-lockfile")
            .current_dir(sb.path("src"))
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .unwrap();
        assert_success(&lock, &["cargo generate-lockfile"]);
    }
}

/// The job: a checkout (a copy of `src`), the action, a build, the program, statistics, and
/// the cleanup action.
fn job(with: &str) -> String {
    format!(
        r#"steps:
  - name: checkout
    run: cp -a "$SOURCE"/. .
  - uses: ./action
    id: zc
    with:
      zccache-version: {bin}
      shared-key: test
{with}
  - name: build
    run: cargo build -v 2> "$RESULTS/build.txt" || {{ cat "$RESULTS/build.txt" >&2; exit 1; }}
  - name: program
    run: ./target/debug/app > "$RESULTS/out.txt"
  - name: statistics
    run: zccache status --json > "$RESULTS/status.json"
  - if: always()
    uses: ./action/cleanup
"#,
        bin = Path::new(ZCCACHE).parent().unwrap().display(),
    )
}

struct Run {
    report: Value,
    build: String,
    out: String,
    status: Value,
}

impl Run {
    /// The setup action's output `name`.
    fn output(&self, name: &str) -> String {
        self.report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "zc")
            .and_then(|s| s["outputs"][name].as_str())
            .unwrap_or("")
            .to_string()
    }

    /// Crates cargo ran rustc for.
    fn compiled(&self) -> Vec<String> {
        self.build
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Compiling "))
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect()
    }
}

/// Runs the job on a fresh runner at `runner` (same paths every time).
fn run_job(sb: &Sandbox, server: &GhaServer, runner: &Path, with: &str, name: &str) -> Run {
    run_job_env(sb, server, runner, with, name, &[])
}

fn run_job_env(
    sb: &Sandbox,
    server: &GhaServer,
    runner: &Path,
    with: &str,
    name: &str,
    extra: &[(&str, &str)],
) -> Run {
    let _ = std::fs::remove_dir_all(runner);
    std::fs::create_dir_all(runner).unwrap();
    let results = sb.path(&format!("results-{name}"));
    std::fs::create_dir_all(&results).unwrap();
    let workflow = sb.path(&format!("job-{name}.yml"));
    std::fs::write(&workflow, job(with)).unwrap();
    let rustup_home = Command::new("rustup")
        .args(["show", "home"])
        .output()
        .unwrap();
    let rustup_home = String::from_utf8(rustup_home.stdout).unwrap();
    let mut command = Command::new("node");
    command
        .arg(repo().join("tests/action/runner.mjs"))
        .arg("--workflow")
        .arg(&workflow)
        .arg("--repo")
        .arg(repo())
        .arg("--runner-root")
        .arg(runner)
        .arg("--log")
        .arg(sb.path(&format!("log-{name}.txt")));
    let mut env: Vec<(String, String)> = server.env("runtime-token");
    env.extend([
        ("SOURCE".into(), sb.path("src").display().to_string()),
        ("RESULTS".into(), results.display().to_string()),
        ("RUSTUP_HOME".into(), rustup_home.trim().to_string()),
        (
            "CARGO_HOME".into(),
            runner.join("home/.cargo").display().to_string(),
        ),
        ("GITHUB_SHA".into(), format!("{:0>40}", name.len())),
        ("GITHUB_RUN_ID".into(), name.to_string()),
    ]);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    for (k, v) in env {
        command.arg("--env").arg(format!("{k}={v}"));
    }
    for var in [
        "CARGO_TARGET_DIR",
        "RUSTC_WRAPPER",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET_DIR",
        "ZCCACHE_CACHE_DIR",
        "ZCCACHE_PATH_REMAP",
    ] {
        command.env_remove(var);
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap_or_else(|e| {
            panic!(
                "{name}: no report ({e}):\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let expected = if name.starts_with("failing") {
        "failure"
    } else {
        "success"
    };
    assert_eq!(report["result"], expected, "{name}:\n{stdout}");
    let read = |f: &str| std::fs::read_to_string(results.join(f)).unwrap_or_default();
    Run {
        build: read("build.txt"),
        out: read("out.txt").trim().to_string(),
        status: serde_json::from_str(&read("status.json")).unwrap_or(Value::Null),
        report,
    }
}

#[test]
fn a_second_ci_run_restores_everything_and_an_edit_rebuilds_only_what_it_touches() {
    let sb = Sandbox::new();
    let server = GhaServer::start();
    let runner = sb.path("runner");
    project(&sb, 1);
    let target_on = "      cache-target: 'true'\n";

    // Run 1: a cold runner builds everything and saves the three layers.
    let cold = run_job(&sb, &server, &runner, target_on, "cold");
    assert_eq!(cold.out, "12");
    assert_eq!(cold.output("cache-hit-compilation"), "false");
    assert_eq!(cold.compiled().len(), 5, "{}", cold.build);
    let keys: Vec<String> = server.entries().into_iter().map(|e| e.0).collect();
    for layer in ["zccache-comp-", "zccache-registry-", "zccache-target-"] {
        assert!(
            keys.iter().any(|k| k.starts_with(layer)),
            "{layer}: {keys:?}"
        );
    }
    // The compilation cache is a pack and a manifest; four entries in all.
    assert_eq!(keys.len(), 4, "{keys:?}");

    // Run 2, same commit, with the target snapshot: restored, and cargo runs no rustc at all.
    let warm = run_job(&sb, &server, &runner, target_on, "again");
    for layer in ["compilation", "registry", "target"] {
        assert_eq!(
            warm.output(&format!("cache-hit-{layer}")),
            "true",
            "{layer}"
        );
    }
    assert_eq!(warm.compiled(), Vec::<String>::new(), "{}", warm.build);
    assert!(!warm.build.contains("Running `"), "{}", warm.build);
    assert_eq!(warm.out, "12");
    // Nothing was new: nothing uploaded.
    assert_eq!(server.entries().len(), 4);

    // Without the target snapshot: every unit compiles through zccache, and every one hits.
    let hits = run_job(&sb, &server, &runner, "", "hits");
    assert_eq!(hits.output("cache-hit-compilation"), "true");
    assert_eq!(hits.output("cache-hit-target"), "false");
    assert_eq!(hits.compiled().len(), 5, "{}", hits.build);
    assert_eq!(hits.status["misses"], 0, "{}", hits.status);
    assert_eq!(hits.status["hits"], 5, "{}", hits.status);
    assert_eq!(hits.out, "12");

    // An edit of c1, restoring a snapshot of the other tree (fallback on): c1 and what depends
    // on it are rebuilt, the rest is fresh, and the program prints the new value.
    project(&sb, 7);
    let edited = run_job(
        &sb,
        &server,
        &runner,
        "      cache-target: 'true'\n      target-restore-fallback: 'true'\n",
        "edited",
    );
    assert_eq!(edited.output("cache-hit-target"), "true");
    assert_eq!(edited.compiled(), ["c1", "c2", "app"], "{}", edited.build);
    assert_eq!(edited.out, "72");
}

#[test]
fn save_cache_false_saves_nothing_and_an_oversized_snapshot_fails_cleanup_only_when_asked() {
    let sb = Sandbox::new();
    let server = GhaServer::start();
    let runner = sb.path("runner");
    project(&sb, 1);
    // A pull request build: restore-only.
    let pr = run_job(
        &sb,
        &server,
        &runner,
        "      cache-target: 'true'\n      save-cache: 'false'\n",
        "pr",
    );
    assert_eq!(pr.out, "12");
    assert_eq!(server.entries().len(), 0, "{:?}", server.entries());
    // A snapshot over target-snapshot-max-size: skipped by default (the job succeeds, the
    // other layers are saved) ...
    let tiny = "      cache-target: 'true'\n      target-snapshot-max-size: '1K'\n";
    run_job(&sb, &server, &runner, tiny, "skip");
    let keys: Vec<String> = server.entries().into_iter().map(|e| e.0).collect();
    assert!(
        keys.iter().any(|k| k.starts_with("zccache-comp-")),
        "{keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.starts_with("zccache-target-")),
        "{keys:?}"
    );
    // ... and with target-snapshot-too-large: fail the cleanup (so the job) fails.
    let fail = format!("{tiny}      target-snapshot-too-large: fail\n");
    let failed = run_job(&sb, &server, &runner, &fail, "failing-too-large");
    let cleanup = failed.report["steps"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(cleanup["outcome"], "failure", "{cleanup}");
    assert!(!server
        .entries()
        .iter()
        .any(|e| e.0.starts_with("zccache-target-")));
}

#[test]
fn without_the_runtime_the_layers_go_through_actions_cache() {
    let sb = Sandbox::new();
    let server = GhaServer::start();
    let runner = sb.path("runner");
    project(&sb, 1);
    let with = "      cache-target: 'true'\n";
    let fallback = [("ZCCACHE_GHA_NATIVE", "false")];
    let cold = run_job_env(&sb, &server, &runner, with, "cold", &fallback);
    assert_eq!(cold.out, "12");
    // Saved by actions/cache: the cache root whole, the registry, the snapshot.
    assert_eq!(server.entries().len(), 3, "{:?}", server.entries());
    let warm = run_job_env(&sb, &server, &runner, with, "again", &fallback);
    for layer in ["compilation", "registry", "target"] {
        assert_eq!(
            warm.output(&format!("cache-hit-{layer}")),
            "true",
            "{layer}"
        );
    }
    assert_eq!(warm.compiled(), Vec::<String>::new(), "{}", warm.build);
    assert_eq!(warm.out, "12");
}
