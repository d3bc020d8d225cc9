#!/usr/bin/env bash
# Soak: many compiles through one daemon, reporting the daemon's resident memory, open file
# descriptors and per-compile latency as the run goes on.
#
#   ./soak.sh [COMPILES]         (default 20000; a mix of hits, misses and non-cacheable calls)
#   ./soak.sh --kill [COMPILES]  also SIGKILL the daemon at a random moment every 50 compiles
#                                and check every object against the bare compiler's
#
# Uses the release build; its own cache root and sources in a temp dir.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
kill=0
if [ "${1:-}" = "--kill" ]; then kill=1; shift; fi
total="${1:-20000}"
built="$("$here/scripts/build-release.sh")"
exec python3 - "$built/zccache" "$total" "$kill" <<'PY'
import os, random, signal, statistics, subprocess, sys, tempfile, threading, time
zc, total, kill = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
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

def compile_(i, edit=True):
    k = i % sources
    if edit and i % 97 == 0:  # a header edit now and then: misses among the hits
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

def daemon_pids():
    needle = env["ZCCACHE_CACHE_DIR"].encode()
    pids = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().split(") ")[1][0]
        except (OSError, IndexError):
            continue
        if b"zccache-daemon" in cmd and needle in cmd and state != "Z":
            pids.append(int(pid))
    return pids

if kill:
    # Rounds of 50 compiles on 4 threads; the daemon is killed at a random moment in each.
    rng = random.Random(int(os.environ.get("ZCCACHE_TEST_SEED", "0")) or None)
    rounds, kills, checked = total // 50, 0, 0
    for r in range(rounds):
        batch = list(range(r * 50, (r + 1) * 50))
        errors = []
        if r % 3 == 0:  # header edits between rounds, never during one
            with open(os.path.join(work, f"h{r % 10}.h"), "w") as f:
                f.write(f"#define H {r}\n")
        def worker(items):
            for i in items:
                try:
                    compile_(i, edit=False)
                except subprocess.CalledProcessError as e:
                    errors.append(e)
        threads = [threading.Thread(target=worker, args=(batch[t::4],)) for t in range(4)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0, 0.08))
        for pid in daemon_pids():
            os.kill(pid, signal.SIGKILL)
            kills += 1
        for t in threads:
            t.join()
        if errors:
            sys.exit(f"round {r}: a compile failed: {errors[0]}")
        for k in sorted({i % sources for i in batch if i % 50 != 0}):
            subprocess.run(["gcc", "-c", f"s{k}.c", "-o", "bare.o"], cwd=work, check=True)
            with open(os.path.join(work, f"o{k}.o"), "rb") as a, open(os.path.join(work, "bare.o"), "rb") as b:
                if a.read() != b.read():
                    sys.exit(f"round {r}: o{k}.o differs from gcc's")
            checked += 1
    print(f"{rounds} rounds, {kills} daemon kills, {rounds * 50} compiles: none failed; {checked} objects checked against gcc, all identical")
    subprocess.run([zc, "status"], env=env)
    subprocess.run([zc, "stop"], env=env, stdout=subprocess.DEVNULL)
    sys.exit(0)

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
