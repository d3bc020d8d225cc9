#!/usr/bin/env python3
"""Two CI runs of a crates.io workspace per setup, on emulated fresh GitHub runners.

    scripts/ci-runs.py [--zccache-dir DIR] [--peers VENV] [--profile debug|release] [--out FILE]

Each job runs on a fresh runner (tests/action/runner.mjs; home, caches, temp dir and checkout
wiped and recreated at the same paths) against the local GitHub cache service
(tests/gha/server.py on 127.0.0.1): checkout, the cache setup, `cargo fetch`, then the timed
`cargo build`, then the cleanup. Setups:

  bare          no cache
  sccache       RUSTC_WRAPPER=sccache with its GitHub Actions backend (SCCACHE_GHA_ENABLED),
                the runtime exported by a github-script step as sccache-action does
  sccache+registry  the same, and actions/cache@v4 of ~/.cargo/registry and ~/.cargo/git keyed
                by Cargo.lock's hash (what rust-cache adds beside sccache)
  zccache       the zccache action (action/), cache-target false
  zccache+tgt   the zccache action with cache-target: true

Reported per run: the build step's wall time, the whole job's, and the entries and bytes the
run uploaded to the cache service. Needs network access to crates.io (the first fetch).
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "perf"))
from projects import generated_workspace  # noqa: E402

here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--zccache-dir", default=os.path.join(here, "target", "zccache-release"))
ap.add_argument("--peers", default=os.path.join(here, ".perf-venv"))
ap.add_argument("--profile", default="debug", choices=["debug", "release"])
ap.add_argument("--out")
ap.add_argument("--only", help="comma-separated setups (bare,sccache,sccache+registry,zccache,zccache+tgt)")
ap.add_argument("--project", default="crates", choices=["crates", "generated"],
                help="crates: a workspace with crates.io dependencies (default); generated: perf.sh's "
                     "chain of path crates, no dependency")
ap.add_argument("--json", help="write the rows as JSON here")
ap.add_argument("--keep", action="store_true", help="keep the work directory (logs) and say where")
opts = ap.parse_args()


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def project(root):
    """A workspace of crates.io dependencies (serde with derive, serde_json, regex, anyhow,
    itoa, memchr) and four path crates; 30-odd units."""
    write(f"{root}/Cargo.toml", '[workspace]\nresolver = "2"\nmembers = ["core", "model", "text", "app"]\n')
    crates = {
        "core": ("", "pub fn base() -> u64 { 42 }\n"),
        "model": ('core = { path = "../core" }\nserde = { version = "1", features = ["derive"] }\nserde_json = "1"\n',
                  "#[derive(serde::Serialize, serde::Deserialize, Debug)]\npub struct Item { pub id: u64, pub name: String }\n"
                  "pub fn item() -> Item { Item { id: core::base(), name: \"x\".into() } }\n"
                  "pub fn json() -> String { serde_json::to_string(&item()).unwrap() }\n"),
        "text": ('regex = "1"\nmemchr = "2"\nitoa = "1"\n',
                 "pub fn count(s: &str) -> usize { regex::Regex::new(r\"\\w+\").unwrap().find_iter(s).count() + memchr::memchr_iter(b' ', s.as_bytes()).count() }\n"
                 "pub fn fmt(n: u64) -> String { itoa::Buffer::new().format(n).to_string() }\n"),
        "app": ('model = { path = "../model" }\ntext = { path = "../text" }\nanyhow = "1"\n',
                None),
    }
    for name, (deps, lib) in crates.items():
        write(f"{root}/{name}/Cargo.toml", f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n[dependencies]\n{deps}')
        if lib:
            write(f"{root}/{name}/src/lib.rs", lib)
    write(f"{root}/app/src/main.rs",
          "fn main() -> anyhow::Result<()> { let j = model::json(); println!(\"{} {}\", j, text::fmt(text::count(&j) as u64)); Ok(()) }\n")
    subprocess.run(["cargo", "generate-lockfile"], cwd=root, check=True, stderr=subprocess.DEVNULL)


def generated_project(root):
    generated_workspace(root)
    subprocess.run(["cargo", "generate-lockfile", "--offline"], cwd=root, check=True, stderr=subprocess.DEVNULL)


def server_start(tmp):
    port_file = f"{tmp}/port"
    log = open(f"{tmp}/server.log", "w")
    proc = subprocess.Popen([sys.executable, f"{here}/tests/gha/server.py", "--port-file", port_file,
                             "--data-dir", f"{tmp}/blobs"], stderr=log)
    for _ in range(300):
        if os.path.exists(port_file):
            return proc, int(open(port_file).read().strip())
        time.sleep(0.05)
    raise SystemExit("cache server did not start")


def http(port, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


build_flag = " --release" if opts.profile == "release" else ""
TIMED = f"""  - name: fetch
    run: cargo fetch
  - name: build
    run: |
      start=$(date +%s%N)
      cargo build{build_flag} 2> "$RESULTS/build.txt"
      echo $(( ($(date +%s%N) - start) / 1000000 )) > "$RESULTS/build.ms"
"""


def job(setup):
    head = '  - name: checkout\n    run: cp -a "$SOURCE"/. .\n'
    if setup == "bare":
        return "steps:\n" + head + TIMED
    if setup in ("sccache", "sccache+registry"):
        registry = ("  - uses: actions/cache@v4\n    with:\n      path: |\n        ~/.cargo/registry\n        ~/.cargo/git\n"
                    "      key: cargo-registry-${{ hashFiles('Cargo.lock') }}\n") if setup == "sccache+registry" else ""
        return ("env:\n  RUSTC_WRAPPER: sccache\n  SCCACHE_GHA_ENABLED: 'true'\n  CARGO_INCREMENTAL: '0'\nsteps:\n" + head + registry +
                "  - uses: actions/github-script@v7\n    with:\n      script: |\n"
                "        for (const v of ['ACTIONS_RESULTS_URL', 'ACTIONS_RUNTIME_TOKEN', 'ACTIONS_CACHE_URL', 'ACTIONS_CACHE_SERVICE_V2'])\n"
                "          if (process.env[v]) core.exportVariable(v, process.env[v]);\n"
                "  - run: sccache --start-server\n" + TIMED +
                "  - if: always()\n    run: sccache --show-stats && sccache --stop-server\n")
    target = "'true'" if setup == "zccache+tgt" else "'false'"
    return ("steps:\n" + head +
            f"  - uses: ./action\n    with:\n      zccache-version: {opts.zccache_dir}\n      cache-target: {target}\n" +
            TIMED + "  - if: always()\n    uses: ./action/cleanup\n")


def run(tmp, port, setup, n):
    runner = f"{tmp}/runner"
    shutil.rmtree(runner, ignore_errors=True)
    os.makedirs(runner)
    results = f"{tmp}/results-{setup}-{n}"
    os.makedirs(results, exist_ok=True)
    write(f"{tmp}/job.yml", job(setup))
    rustup_home = subprocess.run(["rustup", "show", "home"], capture_output=True, text=True).stdout.strip()
    env = {
        "ACTIONS_RESULTS_URL": f"http://127.0.0.1:{port}/", "ACTIONS_CACHE_URL": f"http://127.0.0.1:{port}/",
        "ACTIONS_RUNTIME_TOKEN": "token", "ACTIONS_CACHE_SERVICE_V2": "true",
        "SOURCE": f"{tmp}/src", "RESULTS": results, "RUSTUP_HOME": rustup_home,
        "CARGO_HOME": f"{runner}/home/.cargo", "GITHUB_SHA": f"{n:040d}", "GITHUB_RUN_ID": str(n),
        "SCCACHE_DIR": f"{runner}/home/.cache/sccache",
    }
    cmd = ["node", f"{here}/tests/action/runner.mjs", "--workflow", f"{tmp}/job.yml", "--repo", here,
           "--runner-root", runner, "--log", f"{results}/log.txt"]
    for k, v in env.items():
        cmd += ["--env", f"{k}={v}"]
    penv = {k: v for k, v in os.environ.items() if k not in ("CARGO_TARGET_DIR", "RUSTC_WRAPPER", "ZCCACHE_CACHE_DIR", "RUSTFLAGS")}
    penv["PATH"] = f"{opts.peers}/bin:" + penv["PATH"]
    http(port, "POST", "/_control", {"reset_stats": True})
    start = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, env=penv)
    job_s = time.monotonic() - start
    report = json.loads(out.stdout.strip().splitlines()[-1])
    if report["result"] != "success":
        raise SystemExit(f"{setup} run {n} failed; see {results}/log.txt")
    stats = http(port, "GET", "/_stats")
    build_ms = int(open(f"{results}/build.ms").read())
    compiled = sum(1 for l in open(f"{results}/build.txt") if l.strip().startswith("Compiling "))
    return {"setup": setup, "run": n, "build_ms": build_ms, "job_s": round(job_s, 1), "compiled": compiled,
            "entries": stats["finalize"], "bytes": stats["bytes_uploaded"]}


def main():
    tmp = tempfile.mkdtemp(prefix="zccache-ci-runs-")
    (generated_project if opts.project == "generated" else project)(f"{tmp}/src")
    rows = []
    setups = ["bare", "sccache", "sccache+registry", "zccache", "zccache+tgt"]
    if opts.only:
        setups = [s for s in setups if s in opts.only.split(",")]
    for setup in setups:
        proc, port = server_start(_mk(f"{tmp}/{setup.replace('+', '-')}-server"))
        try:
            for n in (1, 2):
                row = run(tmp, port, setup, n)
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            proc.terminate()
            proc.wait()
    print()
    print(f"| setup | run | cargo build{build_flag} | units compiled | whole job | entries uploaded | bytes uploaded |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setup']} | {r['run']} | {r['build_ms']} ms | {r['compiled']} | {r['job_s']} s | {r['entries']} | {r['bytes'] / 1e6:.2f} MB |")
    if opts.out:
        write(opts.out, json.dumps(rows, indent=1))
    if opts.json:
        write(opts.json, json.dumps({"project": opts.project, "profile": opts.profile, "rows": rows}, indent=1))
    if opts.keep:
        print(f"work directory kept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def _mk(path):
    os.makedirs(path, exist_ok=True)
    return path


if __name__ == "__main__":
    main()
