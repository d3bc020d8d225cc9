#!/usr/bin/env python3
"""Hits and build times across checkouts of one project.

    scripts/checkouts.py [--zccache PATH] [--peers VENV] [relocated] [worktrees]

relocated: a crates.io project (serde with derive, regex, a path crate built with `cc`) is
    built, then copied to another absolute path (same CARGO_HOME) and built there, through
    this tree's zccache, sccache and zccache 1.15 (from perf.sh's .perf-venv), each with its
    own cache; the second build's hits and time, and a bare build's time at that path.
worktrees: a C project (CMake + Ninja, Debug: -g; 40 sources) and a cargo workspace (6 crates
    and a path dependency) in a git repository and a `git worktree` of it, with
    ZCCACHE_PATH_REMAP=auto: the bare build of the second worktree, the first worktree's warm
    build (from clean, all hits), and the second worktree's build from the first's entries.

Needs network access to crates.io for the relocated project's first build.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "perf"))
from projects import c_project, repo_with_worktree, rust_project, write  # noqa: E402

here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--zccache", default=os.path.join(here, "target", "debug", "zccache"))
ap.add_argument("--peers", default=os.path.join(here, ".perf-venv"))
ap.add_argument("what", nargs="*", default=["relocated", "worktrees"])
opts = ap.parse_args()
zc = os.path.abspath(opts.zccache)


def timed(cmd, cwd, env):
    start = time.monotonic()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - start


def base_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ZCCACHE_", "SCCACHE_", "CCACHE_", "CARGO_TARGET_DIR", "RUSTC_WRAPPER", "RUSTFLAGS"))}
    env["CARGO_TERM_COLOR"] = "never"
    env.update(extra)
    return env


def zccache_hits(binary, env):
    doc = json.loads(subprocess.run([binary, "status", "--json"], env=env, capture_output=True, text=True).stdout)
    if "hits" in doc:
        return doc["hits"], doc.get("worktree_hits", 0)
    return doc.get("daemon", {}).get("cache_hits", 0), 0


def sccache_hits(binary, env):
    out = subprocess.run([binary, "--show-stats", "--stats-format", "json"], env=env, capture_output=True, text=True).stdout
    return sum(json.loads(out)["stats"]["cache_hits"]["counts"].values()), 0


RELOC = {
    "Cargo.toml": '[package]\nname = "reloc"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n'
                  'serde = { version = "1", features = ["derive"] }\n'
                  'regex = { version = "1", default-features = false, features = ["std"] }\ncfoo = { path = "cfoo" }\n',
    "src/main.rs": '#[derive(serde::Serialize)]\nstruct Point { x: i32 }\nfn main() {\n'
                   '    let re = regex::Regex::new("a+b").unwrap();\n    let p = Point { x: 3 };\n'
                   '    println!("{} {} {}", re.is_match("xaab"), p.x, cfoo::twice(21));\n}\n',
    "cfoo/Cargo.toml": '[package]\nname = "cfoo"\nversion = "0.1.0"\nedition = "2021"\n\n[build-dependencies]\ncc = "1"\n',
    "cfoo/build.rs": 'fn main() { cc::Build::new().file("foo.c").compile("foo"); }\n',
    "cfoo/foo.c": "int foo_twice(int x) { return 2 * x; }\n",
    "cfoo/src/lib.rs": 'extern "C" { fn foo_twice(x: i32) -> i32; }\npub fn twice(x: i32) -> i32 { unsafe { foo_twice(x) } }\n',
}


def relocated(work):
    tools = [("zccache", zc, "ZCCACHE_CACHE_DIR", zccache_hits, ["stop"]),
             ("sccache", os.path.join(opts.peers, "bin", "sccache"), "SCCACHE_DIR", sccache_hits, ["--stop-server"]),
             ("zccache-1.15", os.path.join(opts.peers, "bin", "zccache"), "ZCCACHE_CACHE_DIR", zccache_hits, ["stop"])]
    rows = []
    for name, binary, var, hits, stop in tools:
        if not os.access(binary, os.X_OK):
            print(f"{name}: skipped ({binary} missing)", file=sys.stderr)
            continue
        one = os.path.join(work, name, "one", "reloc")
        two = os.path.join(work, name, "elsewhere", "deeper", "reloc")
        for rel, text in RELOC.items():
            write(os.path.join(one, rel), text)
        env = base_env(**{var: os.path.join(work, name + "-cache"), "RUSTC_WRAPPER": binary, "SCCACHE_IDLE_TIMEOUT": "0"})
        subprocess.run(["cargo", "generate-lockfile", "-q"], cwd=one, env=env, check=True)
        first = timed(["cargo", "build", "-q"], one, env)
        before, _ = hits(binary, env)
        shutil.copytree(one, two, ignore=shutil.ignore_patterns("target"))
        second = timed(["cargo", "build", "-q"], two, env)
        after, _ = hits(binary, env)
        units = len([l for l in open(os.path.join(two, "Cargo.lock")) if l.startswith("name = ")])
        bare_env = base_env()
        subprocess.run(["cargo", "clean", "-q"], cwd=two, env=bare_env, check=True)
        bare = timed(["cargo", "build", "-q"], two, bare_env)
        subprocess.run([binary] + stop, env=env, capture_output=True)
        # zccache 1.15 can leave daemons behind after its stop command.
        subprocess.run(["pkill", "-f", env[var]], capture_output=True)
        rows.append((name, after - before, units, second, first, bare))
    print("\nRelocated crates.io project (second path, same CARGO_HOME):")
    print("| tool | hits at the second path | packages in Cargo.lock | second build (s) | first build (s) | bare build at the second path (s) |")
    print("|---|---|---|---|---|---|")
    for name, h, units, second, first, bare in rows:
        print(f"| {name} | {h} | {units} | {second:.2f} | {first:.2f} | {bare:.2f} |")


def worktrees(work):
    rows = []
    for lang, make, build_cmd, clean in [
        ("C (CMake Debug, 41 units)", c_project,
         lambda wrap: ["sh", "-c", f"cmake -G Ninja -S . -B build -DCMAKE_BUILD_TYPE=Debug {'-DCMAKE_C_COMPILER_LAUNCHER=' + zc if wrap else ''} >/dev/null && ninja -C build >/dev/null"],
         lambda d: shutil.rmtree(os.path.join(d, "build"), ignore_errors=True)),
        ("Rust (cargo workspace, 7 crates)", rust_project,
         lambda wrap: ["cargo", "build", "-q"],
         lambda d: shutil.rmtree(os.path.join(d, "target"), ignore_errors=True)),
    ]:
        base = os.path.join(work, lang.split()[0])
        repo, sibling = repo_with_worktree(base, make)
        cache = os.path.join(base, "cache")
        env = base_env(ZCCACHE_CACHE_DIR=cache, ZCCACHE_PATH_REMAP="auto")
        if lang.startswith("Rust"):
            env["RUSTC_WRAPPER"] = zc
        bare_env = base_env()
        bare = timed(build_cmd(False), sibling, bare_env)
        clean(sibling)
        cold = timed(build_cmd(True), repo, env)
        clean(repo)
        h0, _ = zccache_hits(zc, env)
        warm = timed(build_cmd(True), repo, env)
        h1, _ = zccache_hits(zc, env)
        second = timed(build_cmd(True), sibling, env)
        h2, w2 = zccache_hits(zc, env)
        status = json.loads(subprocess.run([zc, "status", "--json"], env=env, capture_output=True, text=True).stdout)
        subprocess.run([zc, "stop"], env=env, capture_output=True)
        rows.append((lang, bare, cold, warm, h1 - h0, second, h2 - h1, w2, status["misses"]))
    print("\nSibling worktrees (ZCCACHE_PATH_REMAP=auto):")
    print("| project | bare build of the second worktree (s) | first worktree cold (s) | first worktree warm, from clean (s) / hits | second worktree (s) / hits (from the other worktree) | misses in all |")
    print("|---|---|---|---|---|---|")
    for lang, bare, cold, warm, wh, second, sh, w2, misses in rows:
        print(f"| {lang} | {bare:.2f} | {cold:.2f} | {warm:.2f} / {wh} | {second:.2f} / {sh} ({w2}) | {misses} |")


work = tempfile.mkdtemp(prefix="zccache-checkouts-")
try:
    if "relocated" in opts.what:
        relocated(work)
    if "worktrees" in opts.what:
        worktrees(work)
finally:
    shutil.rmtree(work, ignore_errors=True)
