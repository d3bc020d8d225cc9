#!/usr/bin/env bash
# Soak: many compiles through one daemon, reporting the daemon's resident memory, open file
# descriptors and per-compile latency as the run goes on.
#
#   ./soak.sh [COMPILES]     (default 20000; a mix of hits, misses and non-cacheable calls)
#
# Uses the release build; its own cache root and sources in a temp dir.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
total="${1:-20000}"
(cd "$here" && cargo build --release --locked -q -p zccache-cli)
exec python3 - "$here/target/release/zccache" "$total" <<'PY'
import os, statistics, subprocess, sys, tempfile, time
zc, total = sys.argv[1], int(sys.argv[2])
work = tempfile.mkdtemp(prefix="zccache-soak-")
env = dict(os.environ, ZCCACHE_CACHE_DIR=os.path.join(work, "cache"), ZCCACHE_IDLE_TIMEOUT="0")
sources = 200
for i in range(sources):
    with open(os.path.join(work, f"s{i}.c"), "w") as f:
        f.write(f'#include <stdio.h>\n#include "h{i % 10}.h"\nint f{i}(void) {{ return H + {i}; }}\n')
for i in range(10):
    with open(os.path.join(work, f"h{i}.h"), "w") as f:
        f.write(f"#define H {i}\n")
old = time.time() - 3600
for n in os.listdir(work):
    p = os.path.join(work, n)
    if os.path.isfile(p):
        os.utime(p, (old, old))

def compile_(i):
    k = i % sources
    if i % 97 == 0:  # a header edit now and then: misses among the hits
        with open(os.path.join(work, f"h{k % 10}.h"), "w") as f:
            f.write(f"#define H {i}\n")
    args = [zc, "gcc", "-c", f"s{k}.c", "-o", f"o{k}.o"]
    if i % 50 == 0:  # and a link: not cacheable
        args = [zc, "gcc", f"o{k}.o", "-shared", "-o", f"lib{k}.so"] if os.path.exists(os.path.join(work, f"o{k}.o")) else args
    start = time.perf_counter()
    subprocess.run(args, cwd=work, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start

def daemon():
    out = subprocess.run([zc, "status", "--json"], env=env, capture_output=True, text=True).stdout
    import json
    pid = json.loads(out)["pid"]
    status = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status").read().splitlines() if ":" in l)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return pid, int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024, fds

compile_(0)
pid0, *_ = daemon()
step = max(total // 20, 1)
print(f"{'compiles':>9} {'rss MB':>8} {'peak MB':>8} {'fds':>5} {'median ms':>10}")
window = []
for i in range(1, total + 1):
    window.append(compile_(i))
    if i % step == 0:
        pid, rss, hwm, fds = daemon()
        if pid != pid0:
            sys.exit(f"daemon restarted during the soak ({pid0} -> {pid})")
        print(f"{i:>9} {rss:>8.1f} {hwm:>8.1f} {fds:>5} {1000 * statistics.median(window):>10.2f}", flush=True)
        window = []
subprocess.run([zc, "status"], env=env)
subprocess.run([zc, "stop"], env=env, stdout=subprocess.DEVNULL)
PY
