#!/usr/bin/env python3
"""Hits when a code generator rewrites files right before each compile, per tool.

Each round, a generator writes a header and five sources (the same text every round) and the
five are compiled at once, one after another; then (set B) an old source is compiled right
after the generator rewrites the header it includes, five times. Four rounds: rounds 2-4 can
hit 5 + 5 times each. Every tool gets its own tree and cache; tools whose binary is missing are
skipped.

    scripts/generator-loop.py [--zccache PATH] [--peers VENV] [--rounds N] [--compiler gcc]

The peers (ccache, sccache, zccache 1.15) come from a venv such as perf.sh's .perf-venv
(`./perf.sh --install-peers` makes it).
"""
import argparse, json, os, re, shutil, subprocess, sys, tempfile

here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--zccache", default=os.path.join(here, "target", "debug", "zccache"))
ap.add_argument("--peers", default=os.path.join(here, ".perf-venv"))
ap.add_argument("--rounds", type=int, default=4)
ap.add_argument("--compiler", default="gcc")
opts = ap.parse_args()
opts.zccache = os.path.abspath(opts.zccache)


def zccache_hits(binary, env):
    out = subprocess.run([binary, "status", "--json"], env=env, capture_output=True, text=True).stdout
    doc = json.loads(out)
    # This tree's zccache reports "hits"; 1.15 nests "cache_hits" under "daemon".
    return doc["hits"] if "hits" in doc else doc["daemon"]["cache_hits"]


def ccache_hits(binary, env):
    out = subprocess.run([binary, "--print-stats"], env=env, capture_output=True, text=True).stdout
    stats = dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)
    return int(stats.get("direct_cache_hit", 0)) + int(stats.get("preprocessed_cache_hit", 0))


def sccache_hits(binary, env):
    out = subprocess.run([binary, "--show-stats", "--stats-format", "json"], env=env,
                         capture_output=True, text=True).stdout
    counts = json.loads(out)["stats"]["cache_hits"]["counts"]
    return sum(counts.values())


tools = [("zccache", opts.zccache, "ZCCACHE_CACHE_DIR", zccache_hits, ["stop"])]
for name, binary, var, hits, stop in [
    ("ccache", "ccache", "CCACHE_DIR", ccache_hits, None),
    ("sccache", "sccache", "SCCACHE_DIR", sccache_hits, ["--stop-server"]),
    ("zccache-1.15", "zccache", "ZCCACHE_CACHE_DIR", zccache_hits, ["stop"]),
]:
    tools.append((name, os.path.join(opts.peers, "bin", binary), var, hits, stop))

work = tempfile.mkdtemp(prefix="zccache-genloop-")
rows = []
try:
    for name, binary, var, hits, stop in tools:
        if not os.access(binary, os.X_OK):
            print(f"{name}: skipped ({binary} missing)", file=sys.stderr)
            continue
        tree = os.path.join(work, name)
        os.makedirs(tree)
        env = dict(os.environ, **{var: os.path.join(work, name + "-cache")})
        if name == "sccache":
            env["SCCACHE_IDLE_TIMEOUT"] = "0"
        path = lambda rel: os.path.join(tree, rel)
        for i in range(5):
            with open(path(f"b{i}.c"), "w") as f:
                f.write(f'#include "genb.h"\nint b{i}(void) {{ return GB + {i}; }}\n')
        old = os.stat(path("b0.c")).st_mtime - 3600
        for i in range(5):
            os.utime(path(f"b{i}.c"), (old, old))

        def compile(src):
            obj = src[:-2] + ".o"
            subprocess.run([binary, opts.compiler, "-c", src, "-o", obj], cwd=tree, env=env, check=True)

        per_round = []
        count = lambda: hits(binary, env) if os.path.exists(env[var]) else 0
        for _ in range(opts.rounds):
            before = count()
            with open(path("gena.h"), "w") as f:
                f.write("#define GA 1\n")
            for i in range(5):
                with open(path(f"a{i}.c"), "w") as f:
                    f.write(f'#include "gena.h"\nint a{i}(void) {{ return GA * {i}; }}\n')
            for i in range(5):
                compile(f"a{i}.c")
            mid = count()
            for i in range(5):
                with open(path("genb.h"), "w") as f:
                    f.write("#define GB 1\n")
                compile(f"b{i}.c")
            per_round.append((mid - before, count() - mid))
        if stop:
            subprocess.run([binary] + stop, env=env, capture_output=True)
        # zccache 1.15 can leave daemons behind after its stop command.
        subprocess.run(["pkill", "-f", env[var]], capture_output=True)
        rows.append((name, per_round))
finally:
    shutil.rmtree(work, ignore_errors=True)

possible = 5 * (opts.rounds - 1)
print(f"| tool | hits per round: A (header + 5 sources generated) / B (header generated before an old source) | A total (of {possible}) | B total (of {possible}) |")
print("|---|---|---|---|")
for name, per_round in rows:
    cells = " ".join(f"{a}/{b}" for a, b in per_round)
    print(f"| {name} | {cells} | {sum(a for a, _ in per_round)} | {sum(b for _, b in per_round)} |")
