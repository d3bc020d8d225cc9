"""perf.sh's measuring: see perf.sh for the options and what is measured.

    python3 scripts/perf/perf.py HERE VENV BUILT [options]

HERE is the checkout, VENV perf.sh's private venv (the peers), BUILT the directory of the
release binaries. Writes perf.md, perf.json and the charts (scripts/perf/charts.py) to --out.
"""
import json, os, random, shutil, statistics, subprocess, sys, tempfile, time, hashlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from projects import generated_workspace, write  # noqa: E402

here, venv, built = sys.argv[1], sys.argv[2], sys.argv[3]
opts = sys.argv[4:]
quick = "--quick" in opts
no_peers = "--no-peers" in opts
out_dir = os.path.abspath(opts[opts.index("--out") + 1]) if "--out" in opts else os.path.join(here, "perf-results")
only = set(opts[opts.index("--only") + 1].split(",")) if "--only" in opts else None
draw_charts = "--no-charts" not in opts
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
    def __init__(self, name, wrapper, env_var=None, start=None, stop=None, extra_env=None, c_only=False):
        self.name, self.wrapper, self.env_var = name, wrapper, env_var
        self.cache = os.path.join(caches, name)
        self._stop = stop
        self.killed = 0
        self.extra_env = extra_env or {}
        # Measured on the C and C++ workloads only.
        self.c_only = c_only

    def env(self):
        env = dict(os.environ)
        for var in ["RUSTC_WRAPPER", "CC", "CXX", "RUSTFLAGS", "ZCCACHE_WATCH", "MAKEFLAGS", "MFLAGS"]:
            env.pop(var, None)
        if self.env_var:
            env[self.env_var] = self.cache
        env["ZCCACHE_IDLE_TIMEOUT"] = "600"
        env.update(self.extra_env)
        return env

    def measures(self, workload):
        if not self.c_only:
            return True
        # In a quick run, on the gcc workloads only.
        return not isinstance(workload, RustWorkload) and not (quick and getattr(workload, "ext", "c") == "cpp")

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


tools = [Tool("bare", None), Tool("zccache", zc, "ZCCACHE_CACHE_DIR", stop=[zc, "stop"]),
         Tool("zccache-nowatch", zc, "ZCCACHE_CACHE_DIR", stop=[zc, "stop"], extra_env={"ZCCACHE_WATCH": "0"}, c_only=True)]


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
if "--no-nowatch" in opts:
    tools = [t for t in tools if t.name != "zccache-nowatch"]
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
            # A quick run's C++ compiles (~0.5 s each, for every tool) are most of its time.
            self.units = 3 if quick else files

    def setup(self):
        header = "#include <vector>\n#include <string>\n#include <map>\n" if self.ext == "cpp" else "#include <stdio.h>\n#include <string.h>\n"
        for i in range(self.units):
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
        return [os.path.join(self.at(tool), f"src{i}.o") for i in range(self.units)]

    def clean(self, tool):
        for p in self.outputs(tool):
            if os.path.exists(p):
                os.remove(p)

    def run(self, tool):
        env = tool.env()
        prefix = [tool.wrapper] if tool.wrapper else []
        if self.multi:
            run(prefix + [self.compiler, "-c"] + self.flags() + [f"src{i}.{self.ext}" for i in range(self.units)], self.at(tool), env)
        else:
            for i in range(self.units):
                run(prefix + [self.compiler, "-c"] + self.flags() + [f"src{i}.{self.ext}", "-o", f"src{i}.o"], self.at(tool), env)


class GeneratedWorkload(CWorkload):
    """c-gcc's 50 sources, each written by a "generator" right before its compile: the same
    text every time, with a new mtime, as code generators (protoc, moc, a configure step)
    leave them."""

    def __init__(self):
        super().__init__("generated", "gcc", "c", False, False)

    def setup(self):
        super().setup()
        self.texts = {}
        for i in range(self.units):
            with open(os.path.join(self.dir, f"src{i}.c")) as f:
                self.texts[i] = f.read()

    def run(self, tool):
        env = tool.env()
        prefix = [tool.wrapper] if tool.wrapper else []
        for i in range(self.units):
            with open(os.path.join(self.at(tool), f"src{i}.c"), "w") as f:
                f.write(self.texts[i])
            run(prefix + [self.compiler, "-c", "-O1", f"src{i}.c", "-o", f"src{i}.o"], self.at(tool), env)


class ScaleWorkload(Workload):
    """Thousands of small C units in 100-unit directories, each including three of 20 project
    headers and two system headers, built by `make -j<cores>`: what each tool costs as a
    project grows, and the daemons' memory after serving that many entries."""

    full_cold_reps = 1

    def __init__(self, units):
        self.name = "scale"
        self.units = units
        self.dir = os.path.join(work, self.name)

    def objects(self):
        return [f"m{i // 100}/u{i}.o" for i in range(self.units)]

    def setup(self):
        for h in range(20):
            write(os.path.join(self.dir, f"include/h{h}.h"), f"#pragma once\n#define H{h} {h}\nstatic inline int h{h}(int x) {{ return x + H{h}; }}\n")
        for i in range(self.units):
            inc = "".join(f'#include "h{(i + k) % 20}.h"\n' for k in range(3))
            write(os.path.join(self.dir, f"m{i // 100}/u{i}.c"),
                  f"#include <stdio.h>\n#include <string.h>\n{inc}"
                  f"int u{i}(int x) {{ char b[32]; snprintf(b, sizeof b, \"%d\", h{i % 20}(x) + {i}); return (int)strlen(b); }}\n")
        write(os.path.join(self.dir, "Makefile"),
              "all: " + " ".join(self.objects()) + "\n%.o: %.c\n\t$(CC) -O1 -Iinclude -c $< -o $@\n")
        age(self.dir)

    def outputs(self, tool):
        return [os.path.join(self.at(tool), o) for o in self.objects()]

    def clean(self, tool):
        for p in self.outputs(tool):
            if os.path.exists(p):
                os.remove(p)

    def run(self, tool):
        cc = f"{tool.wrapper} gcc" if tool.wrapper else "gcc"
        run(["make", "-s", f"-j{os.cpu_count() or 2}", f"CC={cc}"], self.at(tool), tool.env())


class RustWorkload(Workload):
    """A generated cargo workspace: a chain of library crates and a binary."""

    def __init__(self, mode):
        self.name, self.mode = f"rust-{mode}", mode
        self.dir = os.path.join(work, self.name)
        self.units = crates + 1

    def setup(self):
        generated_workspace(self.dir, crates)
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
workloads.append(GeneratedWorkload())
if which("make"):
    workloads.append(ScaleWorkload(80 if quick else 4000))
else:
    notes.append("make not found: the scale workload skipped")
if which("cargo"):
    workloads += [RustWorkload("build"), RustWorkload("check")]

if quick and not only:
    # rsp-multi's path (response files, several sources per call) is rsp-single's and
    # cpp-multi's together; a quick run leaves it out to stay within a few minutes.
    workloads = [w for w in workloads if w.name != "rsp-multi"]
if only:
    unknown = only - {w.name for w in workloads} - {"worktree", "remote", "ci"}
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


run_started = time.time()
for workload in workloads:
    workload.setup()
    wtools = [t for t in tools if t.measures(workload)]
    wcold = wtools + cold_only
    for tool in wcold:
        workload.copy_for(tool)
    print(f"==> {workload.name} ({time.time() - run_started:.0f} s into the run)", file=sys.stderr)
    workload_started = time.time()
    entry = results[workload.name] = {"units": workload.units, "tools": {}}
    # One unmeasured bare build first: the first measured tool must not pay for bringing the
    # toolchain into the page cache.
    timed(workload, tools[0])
    # Cold: each tool from an empty cache (and a stopped daemon), interleaved; the median of
    # `cold_reps` such rounds, since one cold build swings by several per cent between runs.
    cold_reps = 1 if quick else workload.full_cold_reps
    entry["cold_reps"] = cold_reps
    cold_digest = {}
    for tool in wcold:
        entry["tools"][tool.name] = {"cold_runs": [], "warm_runs": []}
    for rep in range(cold_reps):
        for tool in round_order(wcold, rep):
            tool.clear()
            seconds = timed(workload, tool)
            entry["tools"][tool.name]["cold_runs"].append(seconds)
            outputs = digest(workload.outputs(tool))
            if cold_digest.setdefault(tool.name, outputs) != outputs:
                raise SystemExit(f"{workload.name}/{tool.name}: cold outputs differ between runs")
    for tool in wcold:
        t = entry["tools"][tool.name]
        t["cold"] = statistics.median(t["cold_runs"])
    # The same overhead paired by round: each round's build against that round's bare one, a
    # few seconds apart. The host's speed drifts by 10-20 % over minutes, which the ratio of
    # the two medians takes in and a per-round ratio mostly cancels.
    def paired_rounds(name):
        return [z / b - 1 for z, b in zip(entry["tools"][name]["cold_runs"], entry["tools"]["bare"]["cold_runs"])]
    for tool in wcold:
        if tool.name != "bare":
            rounds = paired_rounds(tool.name)
            entry["tools"][tool.name]["cold_overhead_rounds"] = rounds
            entry["tools"][tool.name]["cold_overhead_paired"] = statistics.median(rounds)
    entry["cold_overhead_paired"] = entry["tools"]["zccache"]["cold_overhead_paired"]
    if cold_only:
        entry["exec_wrapper_overhead_paired"] = entry["tools"]["exec-wrapper"]["cold_overhead_paired"]
    for rep in range(reps):
        for tool in round_order(wtools, rep):
            seconds = timed(workload, tool)
            entry["tools"][tool.name]["warm_runs"].append(seconds)
            if digest(workload.outputs(tool)) != cold_digest[tool.name]:
                raise SystemExit(f"{workload.name}/{tool.name}: warm outputs differ from cold ones")
    for tool in wtools:
        mem = daemon_memory(tool)
        if mem:
            memory[tool.name] = max(memory.get(tool.name, (0, 0)), mem)
            entry["tools"][tool.name]["daemon_peak_mb"] = mem[0]
            entry["tools"][tool.name]["daemon_resident_mb"] = mem[1]
        t = entry["tools"][tool.name]
        t["warm"] = statistics.median(t["warm_runs"])
        t["warm_per_unit_ms"] = 1000 * t["warm"] / workload.units
        entry["seconds"] = time.time() - workload_started
        if tool.wrapper == zc:
            status = subprocess.run([zc, "status", "--json"], env=tool.env(), capture_output=True, text=True)
            try:
                doc = json.loads(status.stdout)
                t["status"] = {k: doc.get(k) for k in ("hits", "misses", "resident_bytes", "memos")}
            except ValueError:
                pass
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


def static_noop():
    """A static binary that does nothing: the spawn every launcher pays at least."""
    source, binary = os.path.join(work, "noop.c"), os.path.join(work, "noop")
    with open(source, "w") as f:
        f.write("int main(void) { return 0; }\n")
    for cc, flags in (("musl-gcc", ["-static"]), ("gcc", ["-static"])):
        if which(cc) and subprocess.run([cc, "-O2", *flags, "-o", binary, source], capture_output=True).returncode == 0:
            return binary
    return None


noop = static_noop()
import tiers  # noqa: E402  (scripts/perf/tiers.py)

results["tiers"] = []
if (only is None or "worktree" in only) and which("git") and which("cmake") and which("ninja") and which("cargo"):
    print(f"==> worktree ({time.time() - run_started:.0f} s into the run)", file=sys.stderr)
    results["tiers"].append(tiers.sibling_worktree(zc, work, quick, 1 if quick else 3))
elif only is None:
    notes.append("worktree tier skipped: it needs git, cmake, ninja and cargo")
if only is None or "remote" in only:
    moto_dirs = [d for d in (os.path.join(here, ".test-venv", "bin"), os.path.join(venv, "bin"))
                 if os.access(os.path.join(d, "moto_server"), os.X_OK)]
    servers = (["redis"] if which("redis-server") else []) + \
              (["s3"] if not quick and (which("moto_server") or moto_dirs) else [])
    if servers:
        print(f"==> remote ({time.time() - run_started:.0f} s into the run)", file=sys.stderr)
        # A quick run (a CI smoke) keeps to gcc: the tiers must not take it past five minutes.
        remote_workloads = ["c-gcc"] if quick else ["c-gcc", "cpp-clang", "rust-build"]
        results["tiers"].append(tiers.second_machine(here, built, work, quick, 1 if quick else 3, servers,
                                                     remote_workloads, moto_dirs))
        if "s3" not in servers:
            notes.append("remote tier: S3 (moto_server) not measured" + (" in a quick run" if quick else
                         ": no moto_server on PATH, in .test-venv or .perf-venv"))
    else:
        notes.append("remote tier skipped: no redis-server")
if (only is None and not quick) or (only and "ci" in only):
    if which("node") and os.path.isdir(os.path.join(here, "tests", "action", "node_modules", "@actions", "cache")):
        print(f"==> ci ({time.time() - run_started:.0f} s into the run)", file=sys.stderr)
        results["tiers"].append(tiers.second_ci_run(here, built, work, venv, "generated"))
    else:
        notes.append("ci tier skipped: needs node and tests/action's node modules (`npm ci` there, as test.sh does)")
results["floor"] = {"true_ms": floor(["/bin/true"]), "zccache_version_ms": floor([zc, "--version"])}
if noop:
    results["floor"]["static_noop_ms"] = floor([noop])
results["daemon_memory_mb"] = {name: {"peak": hwm, "resident": rss} for name, (hwm, rss) in memory.items()}
results["notes"] = notes
results["tools"] = [t.name for t in tools]
results["exec_wrapper"] = exec_wrapper_build
results["workloads"] = [w.name for w in workloads]
results["quick"] = quick
results["warm_reps"] = reps
os.makedirs(out_dir, exist_ok=True)
with open(os.path.join(out_dir, "perf.json"), "w") as f:
    json.dump(results, f, indent=2)

import report  # noqa: E402  (scripts/perf/report.py)

lines = report.markdown(results)
with open(os.path.join(out_dir, "perf.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
written = ["perf.md", "perf.json"]
if draw_charts:
    import charts  # noqa: E402  (scripts/perf/charts.py; needs matplotlib)

    written += charts.draw(results, out_dir)
shutil.rmtree(work, ignore_errors=True)
print("\n".join(lines))
print(f"\nwritten to {out_dir}: {', '.join(written)}", file=sys.stderr)
