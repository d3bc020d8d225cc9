#!/usr/bin/env python3
"""The remote tier's figures: a second machine building from Redis and S3 on loopback.

    scripts/remote-figures.py BUILT_DIR [--reps N] [--quick] [--servers redis,s3]
                              [--workloads c-gcc,cpp-clang,rust-build] [--json FILE]

BUILT_DIR holds the release `zccache` binaries (scripts/build-release.sh prints it). Needs
redis-server, moto_server, gcc, clang++ and cargo; sccache from .perf-venv when present.

For each server (redis-server, moto_server) and workload (50 x `gcc -c`, 20 x `clang++ -c`,
a 10-crate cargo workspace), interleaved per round:
  bare            the compiler alone;
  zccache A       machine A, empty cache: cold build, uploads, then `zccache stop` (flush);
  zccache B       machine B, empty cache, same remote: the build from the remote;
  zccache B warm  B again, outputs removed: all local hits;
  B local, fresh  B once more after `zccache stop`: local hits with the daemon's start-up,
                  as the remote build had it (the cost per remote hit is the difference);
  sccache A / B   the same with sccache 0.16 on the same server (its own key prefix).
Then, per workload: zccache with no remote against a black-holed remote (a port that accepts
and never answers) and a refused one, cold; and machine B's daemon peak memory (VmHWM).
Each round uses a fresh key prefix (S3) or database flush (Redis). Medians in ms.
"""
import json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time

built = os.path.abspath(sys.argv[1])
zc = os.path.join(built, "zccache")
reps = int(sys.argv[sys.argv.index("--reps") + 1]) if "--reps" in sys.argv else 3
quick = "--quick" in sys.argv


def option(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


servers_wanted = option("--servers", "redis,s3").split(",")
workloads_wanted = option("--workloads", "c-gcc,cpp-clang,rust-build").split(",")
json_out = option("--json", None)
here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sccache = os.path.join(here, ".perf-venv", "bin", "sccache")
if not os.path.exists(sccache):
    sccache = shutil.which("sccache")
work = tempfile.mkdtemp(prefix="zccache-remote-figures-")
C_FILES, CPP_FILES, CRATES = (20, 8, 4) if quick else (50, 20, 10)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def run(cmd, cwd, env):
    done = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}: {done.stderr.decode()[-2000:]}")


class Redis:
    name = "redis"

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        wait_port(self.port)

    def fresh(self, rep):
        subprocess.run(["redis-cli", "-p", str(self.port), "FLUSHALL"], stdout=subprocess.DEVNULL, check=True)

    def zccache_env(self, rep):
        return {"ZCCACHE_REMOTE": f"redis://127.0.0.1:{self.port}/0"}

    def sccache_env(self, rep):
        return {"SCCACHE_REDIS_ENDPOINT": f"redis://127.0.0.1:{self.port}"}


class Moto:
    name = "s3"

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.port)
        conn.request("PUT", "/figures", body=b"")
        assert conn.getresponse().status == 200

    def fresh(self, rep):
        pass  # each round has its own prefix

    def aws(self):
        return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}

    def zccache_env(self, rep):
        return {"ZCCACHE_REMOTE": f"s3://figures/z{rep}", "ZCCACHE_S3_ENDPOINT": f"http://127.0.0.1:{self.port}", **self.aws()}

    def sccache_env(self, rep):
        return {"SCCACHE_BUCKET": "figures", "SCCACHE_ENDPOINT": f"http://127.0.0.1:{self.port}",
                "SCCACHE_S3_USE_SSL": "false", "SCCACHE_REGION": "us-east-1",
                "SCCACHE_S3_KEY_PREFIX": f"s{rep}", **self.aws()}


class BlackHole:
    """Accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.held = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            conn, _ = self.sock.accept()
            self.held.append(conn)


class CWork:
    def __init__(self, name, compiler, ext, files):
        self.name, self.compiler, self.ext, self.files = name, compiler, ext, files
        self.dir = os.path.join(work, name)
        self.units = files
        header = "#include <vector>\n#include <string>\n#include <map>\n" if ext == "cpp" else "#include <stdio.h>\n#include <string.h>\n"
        for i in range(files):
            body = (f"int f{i}(int x) {{ std::vector<int> v(x, {i}); std::map<std::string,int> m; m[\"k\"] = x; return (int)v.size() + m.size(); }}\n"
                    if ext == "cpp" else
                    f"int f{i}(int x) {{ char b[32]; snprintf(b, sizeof b, \"%d\", x + {i}); return (int)strlen(b); }}\n")
            write(os.path.join(self.dir, f"src{i}.{ext}"), header + body)

    def clean(self):
        for i in range(self.files):
            p = os.path.join(self.dir, f"src{i}.o")
            if os.path.exists(p):
                os.remove(p)

    def build(self, wrapper, env):
        for i in range(self.files):
            run(([wrapper] if wrapper else []) + [self.compiler, "-O1", "-c", f"src{i}.{self.ext}", "-o", f"src{i}.o"], self.dir, env)


class RustWork:
    name = "rust-build"

    def __init__(self, crates):
        self.dir = os.path.join(work, "rust")
        self.units = crates + 1
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

    def clean(self):
        shutil.rmtree(os.path.join(self.dir, "target"), ignore_errors=True)

    def build(self, wrapper, env):
        env = dict(env, CARGO_INCREMENTAL="0")
        if wrapper:
            env["RUSTC_WRAPPER"] = wrapper
        run(["cargo", "build", "--offline", "-q"], self.dir, env)


def base_env():
    env = dict(os.environ)
    for var in list(env):
        if var.startswith(("ZCCACHE_", "SCCACHE_", "AWS_")) or var in ("RUSTC_WRAPPER", "CC", "CXX", "RUSTFLAGS"):
            env.pop(var)
    return env


def zenv(machine, extra):
    return dict(base_env(), ZCCACHE_CACHE_DIR=os.path.join(work, "caches", machine), ZCCACHE_IDLE_TIMEOUT="600", **extra)


def senv(machine, port, extra):
    return dict(base_env(), SCCACHE_DIR=os.path.join(work, "caches", machine), SCCACHE_SERVER_PORT=str(port),
                SCCACHE_IDLE_TIMEOUT="0", **extra)


def wipe(machine):
    shutil.rmtree(os.path.join(work, "caches", machine), ignore_errors=True)


def zstop(env):
    subprocess.run([zc, "stop"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def sstop(env):
    subprocess.run([sccache, "--stop-server"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def timed(work_, wrapper, env):
    work_.clean()
    t = time.perf_counter()
    work_.build(wrapper, env)
    return (time.perf_counter() - t) * 1000


def zstatus(env):
    out = subprocess.run([zc, "status", "--json"], env=env, capture_output=True)
    return json.loads(out.stdout)


def peak_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None


def measure(server, work_, rep, rows):
    server.fresh(rep)
    r = {}
    r["bare"] = timed(work_, None, base_env())
    a, b = zenv("za", server.zccache_env(rep)), zenv("zb", server.zccache_env(rep))
    wipe("za"), wipe("zb")
    r["zccache A (cold, uploads)"] = timed(work_, zc, a)
    zstop(a)
    r["zccache B (from the remote)"] = timed(work_, zc, b)
    s = zstatus(b)
    assert s["misses"] == 0 and s["remote_hits"] == work_.units, s
    r["zccache B warm (local)"] = timed(work_, zc, b)
    r["zccache B peak KiB"] = peak_kib(s["pid"])
    zstop(b)
    # The same local hits with the daemon started by the build, as the remote build had it:
    # what the remote adds per hit is the difference.
    r["zccache B local, fresh daemon"] = timed(work_, zc, b)
    zstop(b)
    if sccache:
        sa, sb = senv("sa", free_port(), server.sccache_env(rep)), senv("sb", free_port(), server.sccache_env(rep))
        wipe("sa"), wipe("sb")
        r["sccache A (cold, uploads)"] = timed(work_, sccache, sa)
        sstop(sa)
        r["sccache B (from the remote)"] = timed(work_, sccache, sb)
        stats = subprocess.run([sccache, "--show-stats", "--stats-format", "json"], env=sb, capture_output=True)
        try:
            hits = json.loads(stats.stdout)["stats"]["cache_hits"]["counts"]
            r["sccache B hits"] = sum(hits.values())
        except Exception:
            pass
        sstop(sb)
    rows.setdefault((server.name, work_.name), []).append(r)


def dead_remote(work_, rows):
    hole = BlackHole()
    refused = free_port()
    r = {}
    for label, extra in [("no remote", {}), ("black-holed remote", {"ZCCACHE_REMOTE": f"redis://127.0.0.1:{hole.port}/0"}),
                         ("refused remote", {"ZCCACHE_REMOTE": f"redis://127.0.0.1:{refused}/0"})]:
        wipe("zd")
        env = zenv("zd", extra)
        subprocess.run([zc, "start"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r[label] = timed(work_, zc, env)
        zstop(env)
    rows.setdefault(("dead", work_.name), []).append(r)


def main():
    works = [w for w in (CWork("c-gcc", "gcc", "c", C_FILES), CWork("cpp-clang", "clang++", "cpp", CPP_FILES), RustWork(CRATES))
             if w.name in workloads_wanted]
    servers = [make() for name, make in (("redis", Redis), ("s3", Moto)) if name in servers_wanted]
    rows = {}
    try:
        for rep in range(reps):
            for server in servers:
                for w in works:
                    measure(server, w, rep, rows)
            for w in works:
                dead_remote(w, rows)
            print(f"round {rep + 1}/{reps} done", file=sys.stderr)
    finally:
        for server in servers:
            server.proc.send_signal(signal.SIGTERM)
            server.proc.wait()
    out = {}
    for (server, name), runs in rows.items():
        keys = runs[0].keys()
        med = {k: statistics.median(r[k] for r in runs if r.get(k) is not None) for k in keys}
        out[f"{server}/{name}"] = med
        units = next(w.units for w in works if w.name == name)
        print(f"\n## {server} / {name} ({units} units, median of {len(runs)})")
        for k, v in med.items():
            print(f"  {k:32s} {v:10.0f}" if "KiB" not in k and "hits" not in k else f"  {k:32s} {v:10.0f}")
        if server != "dead":
            per_hit = (med["zccache B (from the remote)"] - med["zccache B local, fresh daemon"]) / units
            print(f"  {'cost per remote hit (ms)':32s} {per_hit:10.2f}")
            print(f"  {'B remote / B local warm':32s} {med['zccache B (from the remote)'] / med['zccache B warm (local)']:10.2f}x")
    units = {w.name: w.units for w in works}
    doc = {"medians": out, "units": units, "rounds": reps, "sccache": bool(sccache)}
    with open(json_out or os.path.join(work, "remote-figures.json"), "w") as f:
        json.dump(doc, f, indent=1)
    if json_out:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"\n(raw: {work}/remote-figures.json)")


main()
