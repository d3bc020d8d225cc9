"""perf.sh's tiers beyond one checkout on one machine. Each returns a dict perf.json keeps under
"tiers": rows for perf.md and what charts.tier_chart draws.

second_ci_run: scripts/ci-runs.py's two CI runs per setup (bare, sccache, sccache with a
    registry cache, the zccache action without and with its target snapshot) on emulated
    fresh runners.
second_machine: scripts/remote-figures.py's figures (Redis and S3 on loopback, machine A
    filling the remote, machine B building from it, sccache beside it, a dead remote).
sibling_worktree: a C project (CMake + Ninja, Debug: -g) and a cargo workspace in a git
    repository and a `git worktree` of it, with ZCCACHE_PATH_REMAP=auto. Per round, in a
    shuffled order: the bare build of the second worktree; and through zccache (a fresh cache)
    the first worktree's cold build, its warm build (outputs removed: all hits), then the
    second worktree's build from the first's entries. Medians over the rounds; hits counted.
"""
import json
import os
import random
import shutil
import statistics
import subprocess
import time

from projects import c_project, generated_workspace, repo_with_worktree, rust_project


def clean_env(extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ZCCACHE_", "SCCACHE_", "CCACHE_", "CARGO_TARGET_DIR", "RUSTC_WRAPPER", "RUSTFLAGS"))}
    env["CARGO_TERM_COLOR"] = "never"
    env["CARGO_INCREMENTAL"] = "0"
    env.update(extra)
    return env


def timed(cmd, cwd, env):
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise SystemExit(f"command failed in {cwd}: {' '.join(cmd)}\n{result.stderr.decode(errors='replace')[-2000:]}")
    return time.perf_counter() - start


def status(zc, env):
    out = subprocess.run([zc, "status", "--json"], env=env, capture_output=True, text=True).stdout
    return json.loads(out)


def sibling_worktree(zc, work, quick, rounds):
    c_units, crates = (12, 3) if quick else (40, 6)
    projects = [
        ("C, CMake Debug (-g)", "c", lambda root: c_project(root, c_units), c_units + 1,
         lambda launcher: ["sh", "-c", "cmake -G Ninja -S . -B build -DCMAKE_BUILD_TYPE=Debug"
                           + (f" -DCMAKE_C_COMPILER_LAUNCHER={launcher}" if launcher else "")
                           + " >/dev/null && ninja -C build >/dev/null"],
         "build", lambda d: os.path.join(d, "build", "demo")),
        ("Rust, cargo workspace", "rust", lambda root: rust_project(root, crates), crates + 1,
         lambda launcher: ["cargo", "build", "-q", "--offline"],
         "target", lambda d: os.path.join(d, "target", "debug", "app")),
    ]
    rows, values = [], {}
    for label, key, make, units, build, out_dir, program in projects:
        base = os.path.join(work, "worktree", key)
        repo, sibling = repo_with_worktree(base, make)
        times = {"bare": [], "cold": [], "warm": [], "sibling": []}
        hits = {}
        for rep in range(rounds):
            cache = os.path.join(base, f"cache{rep}")
            env = clean_env({"ZCCACHE_CACHE_DIR": cache, "ZCCACHE_PATH_REMAP": "auto", "ZCCACHE_IDLE_TIMEOUT": "600"})
            if key == "rust":
                env["RUSTC_WRAPPER"] = zc

            def clean(d):
                shutil.rmtree(os.path.join(d, out_dir), ignore_errors=True)

            def bare():
                clean(sibling)
                times["bare"].append(timed(build(None), sibling, clean_env({})))
                return run_output(program(sibling))

            def zccache():
                clean(repo)
                clean(sibling)
                times["cold"].append(timed(build(zc), repo, env))
                clean(repo)
                before = status(zc, env)["hits"]
                times["warm"].append(timed(build(zc), repo, env))
                middle = status(zc, env)
                times["sibling"].append(timed(build(zc), sibling, env))
                after = status(zc, env)
                hits.update(warm=middle["hits"] - before, sibling=after["hits"] - middle["hits"],
                            from_other=after.get("worktree_hits", 0) - middle.get("worktree_hits", 0),
                            sibling_misses=after["misses"] - middle["misses"])
                subprocess.run([zc, "stop"], env=env, capture_output=True)
                return run_output(program(sibling))

            outputs = {}
            for name, step in random.Random(rep).sample([("bare", bare), ("zccache", zccache)], 2):
                outputs[name] = step()
            # The program built in the second worktree from the first's entries prints what the
            # bare one does; its __FILE__ (C) is relative to the worktree, as the remap makes it
            # (-ffile-prefix-map=<root>=.).
            if outputs["bare"].replace(sibling + os.sep, "." + os.sep) != outputs["zccache"]:
                raise SystemExit(f"worktree/{key}: the second worktree's program prints {outputs['zccache']!r}, "
                                 f"bare {outputs['bare']!r}")
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"project": label, "units": units, "rounds": rounds, "bare_s": med["bare"],
                     "first_cold_s": med["cold"], "first_warm_s": med["warm"], "second_s": med["sibling"],
                     "runs": times, **hits})
        for series, k in (("bare (second worktree)", "bare"), ("zccache, first worktree warm", "warm"),
                          ("zccache, second worktree", "sibling")):
            values[f"{label}\t{series}"] = 1000 * med[k]
    return {
        "name": "worktree",
        "title": "Sibling worktree (ZCCACHE_PATH_REMAP=auto): the second worktree's build from the first's entries",
        "ylabel": "build time, ms (median of rounds)",
        "xlabel": "project",
        "groups": [r["project"] for r in rows],
        "series": ["bare (second worktree)", "zccache, first worktree warm", "zccache, second worktree"],
        "colors": {"bare (second worktree)": "bare", "zccache, first worktree warm": "zccache-1.15",
                   "zccache, second worktree": "zccache"},
        "values": values,
        "rows": rows,
    }


def run_output(program):
    return subprocess.run([program], capture_output=True, text=True).stdout


def markdown(tier):
    if tier["name"] == "remote":
        return remote_markdown(tier)
    if tier["name"] == "ci":
        return ci_markdown(tier)
    if tier["name"] != "worktree":
        return []
    lines = ["", "Sibling worktree (ZCCACHE_PATH_REMAP=auto; s, median of rounds): the second worktree's build "
             "from the first's entries, beside its bare build and the first worktree's warm build.", "",
             "| project | units | bare, second worktree | first worktree cold | first worktree warm / hits | "
             "second worktree / hits (from the other worktree) / misses | rounds |",
             "|---|---|---|---|---|---|---|"]
    for r in tier["rows"]:
        lines.append(f"| {r['project']} | {r['units']} | {r['bare_s']:.2f} | {r['first_cold_s']:.2f} | "
                     f"{r['first_warm_s']:.2f} / {r.get('warm')} | {r['second_s']:.2f} / {r.get('sibling')} "
                     f"({r.get('from_other')}) / {r.get('sibling_misses')} | {r['rounds']} |")
    return lines


REMOTE_SERIES = [
    ("bare", "bare", "bare"),
    ("zccache A (cold, uploads)", "zccache, machine A cold (uploads)", "zccache-baseline"),
    ("zccache B (from the remote)", "zccache, machine B from the remote", "zccache"),
    ("zccache B warm (local)", "zccache, machine B warm (local)", "zccache-nowatch"),
    ("sccache B (from the remote)", "sccache, machine B from the remote", "sccache"),
]


def second_machine(here, built, work, quick, rounds, servers, workloads, path_dirs):
    """scripts/remote-figures.py run for perf.sh: machine A fills the remote (Redis, S3 from
    moto_server, on loopback), machine B (an empty cache on the same remote) builds from it;
    sccache on the same servers; a black-holed and a refused remote against none."""
    out = os.path.join(work, "remote-figures.json")
    cmd = [os.environ.get("PYTHON", "python3"), os.path.join(here, "scripts", "remote-figures.py"), built,
           "--reps", str(rounds), "--servers", ",".join(servers), "--workloads", ",".join(workloads), "--json", out]
    if quick:
        cmd.append("--quick")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(path_dirs + [env.get("PATH", "")])
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"scripts/remote-figures.py failed:\n{done.stderr[-3000:]}")
    with open(out) as f:
        doc = json.load(f)
    os.remove(out)
    medians, units = doc["medians"], doc["units"]
    rows, values, groups = [], {}, []
    for key, med in medians.items():
        server, name = key.split("/", 1)
        if server == "dead":
            continue
        group = f"{server}: {name}"
        groups.append(group)
        for raw, series, _ in REMOTE_SERIES:
            if med.get(raw) is not None:
                values[f"{group}\t{series}"] = med[raw]
        dead = medians.get(f"dead/{name}", {})
        rows.append({
            "server": server, "workload": name, "units": units[name],
            **{raw: med.get(raw) for raw, _, _ in REMOTE_SERIES},
            "per_remote_hit_ms": (med["zccache B (from the remote)"] - med["zccache B local, fresh daemon"]) / units[name],
            "remote_over_local_warm": med["zccache B (from the remote)"] / med["zccache B warm (local)"],
            "black_holed_added_ms": dead.get("black-holed remote", 0) - dead.get("no remote", 0) if dead else None,
            "refused_added_ms": dead.get("refused remote", 0) - dead.get("no remote", 0) if dead else None,
        })
    return {
        "name": "remote",
        "title": "Second machine: machine B's build from a remote machine A filled (loopback servers)",
        "ylabel": "build time, ms (median of rounds)",
        "xlabel": "server: workload",
        "groups": groups,
        "series": [series for _, series, _ in REMOTE_SERIES],
        "colors": {series: color for _, series, color in REMOTE_SERIES},
        "values": values,
        "rows": rows,
        "rounds": rounds,
    }


def remote_markdown(tier):
    lines = ["", f"Second machine (remote tier on loopback; ms, median of {tier['rounds']} round(s)): machine A "
             "builds and uploads, machine B (empty cache) builds from the remote.", "",
             "| server | workload | units | bare | zccache A cold | zccache B from remote | zccache B warm local | "
             "sccache B from remote | per remote hit | B remote / B local warm | black-holed remote adds | "
             "refused remote adds |",
             "|---" * 12 + "|"]

    def ms(v):
        return "–" if v is None else f"{v:.0f}"

    for r in tier["rows"]:
        lines.append(f"| {r['server']} | {r['workload']} | {r['units']} | {ms(r['bare'])} | "
                     f"{ms(r['zccache A (cold, uploads)'])} | {ms(r['zccache B (from the remote)'])} | "
                     f"{ms(r['zccache B warm (local)'])} | {ms(r['sccache B (from the remote)'])} | "
                     f"{r['per_remote_hit_ms']:.2f} ms | {r['remote_over_local_warm']:.2f}x | "
                     f"{ms(r['black_holed_added_ms'])} ms | {ms(r['refused_added_ms'])} ms |")
    return lines


CI_SERIES = [("bare", "bare"), ("sccache", "sccache"), ("sccache+registry", "ccache"),
             ("zccache", "zccache-nowatch"), ("zccache+tgt", "zccache")]


def second_ci_run(here, built, work, venv, project):
    """scripts/ci-runs.py run for perf.sh: two CI runs per setup on emulated fresh GitHub
    runners (tests/action/runner.mjs) against the local cache service (tests/gha/server.py):
    bare, sccache, sccache with a registry cache, the zccache action, and the action with
    cache-target: true. The second run is what a cache is for."""
    out = os.path.join(work, "ci-runs.json")
    cmd = [os.environ.get("PYTHON", "python3"), os.path.join(here, "scripts", "ci-runs.py"), "--zccache-dir", built,
           "--peers", venv, "--project", project, "--json", out]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"scripts/ci-runs.py failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    with open(out) as f:
        doc = json.load(f)
    os.remove(out)
    rows = doc["rows"]
    # cargo's own no-op build of the same workspace: the floor of a second run that restores
    # a target directory.
    noop_ms = None
    src = os.path.join(work, "ci-noop")
    shutil.rmtree(src, ignore_errors=True)
    try:
        env = clean_env({})
        if project == "generated":
            generated_workspace(src)
            subprocess.run(["cargo", "build", "-q", "--offline"], cwd=src, env=env, check=True)
            noop_ms = 1000 * timed(["cargo", "build", "-q", "--offline"], src, env)
    finally:
        shutil.rmtree(src, ignore_errors=True)
    values = {}
    for r in rows:
        values[f"run {r['run']}\t{r['setup']}"] = r["build_ms"]
    return {
        "name": "ci",
        "title": f"Second CI run: `cargo build` on a fresh emulated runner after the caches' restore ({project} workspace)",
        "ylabel": "cargo build step, ms",
        "xlabel": "CI run",
        "groups": ["run 1", "run 2"],
        "series": [s for s, _ in CI_SERIES if any(r["setup"] == s for r in rows)],
        "colors": dict(CI_SERIES),
        "values": values,
        "rows": rows,
        "noop_ms": noop_ms,
        "project": project,
        "lines": [{"value": noop_ms, "label": f"cargo's no-op build, {noop_ms:.0f} ms"}] if noop_ms else [],
    }


def ci_markdown(tier):
    lines = ["", f"Second CI run (scripts/ci-runs.py, {tier['project']} workspace; emulated fresh runners, local GitHub "
             "cache service): the `cargo build` step, the units cargo compiled, the whole job and what it uploaded."
             + (f" cargo's own no-op build of the workspace: {tier['noop_ms']:.0f} ms." if tier.get("noop_ms") else ""), "",
             "| setup | run | cargo build | units compiled | whole job | entries uploaded | bytes uploaded |",
             "|---|---|---|---|---|---|---|"]
    for r in tier["rows"]:
        lines.append(f"| {r['setup']} | {r['run']} | {r['build_ms']} ms | {r['compiled']} | {r['job_s']} s | "
                     f"{r['entries']} | {r['bytes'] / 1e6:.2f} MB |")
    return lines
