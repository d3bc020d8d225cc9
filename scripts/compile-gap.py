#!/usr/bin/env python3
"""Measures what zccache adds between two cold compiles, apart from the compiler's own run.

Whole-build timings of a cold gcc build swing by 10-20 % from one build to the next on a busy
virtual machine (gcc's own run time moves with the host's load), which hides changes of a
fraction of a millisecond per compile. This script traces process execs and exits with
`perf record -e sched:...` during a build of 50 C files, sequential, and reports per compile:

  gap  the time from one gcc's exit to the next gcc's exec: the build tool's fork and exec,
       and, through zccache, the client, the request, the daemon's lookup and spawn, and the
       reply; it does not include the compiler's run, so it is steady from build to build;
  outside gcc  the build's whole time minus its gcc runs: start-up (a new daemon, the first
       compile's probes), every gap (a median hides a slow one) and the last reply; this is
       what the build's wall time adds to the compiler's own;
  start-up  from the build's start to the first compile's exec: through zccache, the client,
       a new daemon, the compiler's probes and the first lookup;
  run  gcc's own run (exec to exit), for reference.

Builds alternate between bare gcc and each zccache given (a fresh, empty cache each time).
Needs `perf` and the right to trace (root, or perf_event_paranoid <= -1).

usage: scripts/compile-gap.py [--builds N] ZCCACHE [ZCCACHE...]
       (a ZCCACHE may carry environment settings: /path/zccache,NAME=VALUE,...)
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SOURCES = 50
EVENTS = "sched:sched_process_exec,sched:sched_process_exit,sched:sched_process_fork"


def write_sources(work):
    for i in range(SOURCES):
        with open(os.path.join(work, f"src{i}.c"), "w") as f:
            f.write(
                "#include <stdio.h>\n#include <string.h>\n"
                f"int f{i}(int x) {{ char b[32]; snprintf(b, sizeof b, \"%d\", x + {i}); "
                "return (int)strlen(b); }\n"
            )
    old = time.time() - 3600
    for name in os.listdir(work):
        os.utime(os.path.join(work, name), (old, old))


def build_command(prefix):
    """A shell loop: the build tool stays one process, as make's would."""
    compiles = " ".join(
        " ".join(prefix + ["gcc", "-c", "-O1", f"src{i}.c", "-o", f"src{i}.o", "&&"])
        for i in range(SOURCES)
    )
    return ["sh", "-c", compiles + " true"]


def traced_build(prefix, env, work, data):
    subprocess.run(
        ["perf", "record", "-q", "-a", "-e", EVENTS, "-o", data, "--"] + build_command(prefix),
        cwd=work,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    script = subprocess.run(
        ["perf", "script", "-i", data], capture_output=True, text=True, check=True
    ).stdout
    gcc_exec, gcc_exit, parent, assemblers = {}, {}, {}, set()
    build_start = build_end = None
    for line in script.splitlines():
        m = re.match(r"\s*(.+?)\s+(\d+)\s+\[\d+\]\s+([\d.]+):\s+sched:(\w+):\s*(.*)", line)
        if not m:
            continue
        comm, pid, at, kind, rest = m.groups()
        pid, at = int(pid), float(at) * 1000
        if kind == "sched_process_fork":
            child = re.search(r"child_pid=(\d+)", rest)
            if child:
                parent[int(child.group(1))] = pid
        elif kind == "sched_process_exec":
            program = rest.split()[0]
            if program.endswith("/sh") and build_start is None:
                build_start, build_pid = at, pid
            elif program.endswith("/gcc"):
                gcc_exec[pid] = at
            elif program.endswith("/as"):
                assemblers.add(pid)
        elif kind == "sched_process_exit":
            if build_start is not None and pid == build_pid:
                build_end = at
            elif pid in gcc_exec and comm == "gcc":
                gcc_exit[pid] = at
    # The compiles are the gcc drivers that ran an assembler; zccache's probes of gcc
    # (-dumpmachine, --version, -E -v) run none.
    drivers = sorted(
        (gcc_exec[d], gcc_exit[d])
        for d in {parent.get(a) for a in assemblers}
        if d in gcc_exec and d in gcc_exit
    )
    execs = [e for e, _ in drivers]
    exits = [x for _, x in drivers]
    # The first compile is left out: through zccache it also starts the daemon.
    gaps = [b - a for a, b in zip(exits[1:], execs[2:])]
    runs = [b - a for a, b in zip(execs[1:], exits[1:])]
    if len(gaps) < SOURCES - 3:
        sys.exit(f"only {len(gaps)} compiles were traced; is perf allowed to trace?")
    # Everything in the build that is not a compile's run: start-up, gaps, the last reply.
    outside = (build_end - build_start) - sum(b - a for a, b in zip(execs, exits))
    # Start-up: from the build's start to the first compile's exec (through zccache: the
    # client, a new daemon, the compiler's probes, the first lookup).
    return statistics.median(gaps), statistics.median(runs), outside, execs[0] - build_start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--builds", type=int, default=3, help="builds per variant (3)")
    parser.add_argument("zccache", nargs="+")
    args = parser.parse_args()
    if not shutil.which("perf"):
        sys.exit("perf is not installed (Debian: apt-get install linux-perf)")
    variants = [("bare", None, {})]
    for spec in args.zccache:
        path, *settings = spec.split(",")
        variants.append((spec, os.path.abspath(path), dict(s.split("=", 1) for s in settings)))
    results = {name: [] for name, _, _ in variants}
    with tempfile.TemporaryDirectory(prefix="zccache-gap-") as tmp:
        work = os.path.join(tmp, "work")
        os.mkdir(work)
        write_sources(work)
        data = os.path.join(tmp, "perf.data")
        for _ in range(args.builds):
            for name, path, settings in variants:
                env = dict(os.environ)
                if path is None:
                    results[name].append(traced_build([], env, work, data))
                    continue
                cache = os.path.join(tmp, "cache")
                env.update(settings, ZCCACHE_CACHE_DIR=cache)
                shutil.rmtree(cache, ignore_errors=True)
                try:
                    results[name].append(traced_build([path], env, work, data))
                finally:
                    subprocess.run([path, "stop"], env=env, capture_output=True)
    print(f"{SOURCES} cold compiles per build, {args.builds} builds each; medians per compile")
    print("| variant | gap (ms) | gap per build | outside gcc (ms) | per build | start-up (ms) | gcc run (ms) |")
    print("|---|---|---|---|---|---|---|")
    for name, _, _ in variants:
        gaps = [g for g, _, _, _ in results[name]]
        runs = [r for _, r, _, _ in results[name]]
        means = [m for _, _, m, _ in results[name]]
        starts = [s for _, _, _, s in results[name]]
        print(
            f"| {name} | {statistics.median(gaps):.2f} | "
            f"{', '.join(f'{g:.2f}' for g in gaps)} | {statistics.median(means):.2f} | "
            f"{', '.join(f'{m:.2f}' for m in means)} | {statistics.median(starts):.2f} | "
            f"{statistics.median(runs):.1f} |"
        )


if __name__ == "__main__":
    main()
