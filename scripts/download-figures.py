#!/usr/bin/env python3
"""The download engine's throughput beside curl, from nginx on loopback.

    scripts/download-figures.py BUILT_DIR [--size-mib N] [--rate R] [--reps N]

BUILT_DIR holds the release binaries (scripts/build-release.sh prints it). Needs nginx
(/usr/sbin/nginx) and curl.

nginx serves one random file twice: at full speed, and with `limit_rate R` per response (a
server or CDN that caps each connection, the case parallel ranges are for). For each, in
interleaved rounds, the median wall time and throughput of:
  curl               one connection (`curl -s -o`), no verification;
  curl + sha256sum   the same, then the digest the others check;
  engine 1           `zccache-download fetch --no-daemon --max-connections 1`;
  engine 8           the same with 8 connections (segments of at least 4 MiB);
  daemon 8           `zccache download URL PATH --max-connections 8` (client + daemon);
  daemon, cached     the same request again: answered from the record, no transfer.
Every result's sha256 is checked against the file's.
"""
import hashlib, os, shutil, socket, statistics, subprocess, sys, tempfile, time

built = os.path.abspath(sys.argv[1])
size_mib = int(sys.argv[sys.argv.index("--size-mib") + 1]) if "--size-mib" in sys.argv else 128
rate = sys.argv[sys.argv.index("--rate") + 1] if "--rate" in sys.argv else "16m"
reps = int(sys.argv[sys.argv.index("--reps") + 1]) if "--reps" in sys.argv else 3
work = tempfile.mkdtemp(prefix="zccache-download-figures-")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nginx(limit):
    base = os.path.join(work, f"nginx-{limit or 'full'}")
    os.makedirs(os.path.join(base, "logs"))
    os.symlink(os.path.join(work, "www"), os.path.join(base, "www"))
    port = free_port()
    limit_line = f"limit_rate {limit};" if limit else ""
    conf = f"""daemon off; master_process off; pid {base}/nginx.pid; error_log {base}/error.log;
events {{}}
http {{ access_log off; client_body_temp_path {base}/body; proxy_temp_path {base}/proxy;
  fastcgi_temp_path {base}/fcgi; uwsgi_temp_path {base}/uwsgi; scgi_temp_path {base}/scgi;
  server {{ listen 127.0.0.1:{port}; root {base}/www; {limit_line} }} }}
"""
    with open(os.path.join(base, "nginx.conf"), "w") as f:
        f.write(conf)
    proc = subprocess.Popen(["/usr/sbin/nginx", "-p", base, "-e", f"{base}/error.log", "-c",
                             f"{base}/nginx.conf"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.time() < deadline, "nginx did not start"
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}/blob.bin"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    os.makedirs(os.path.join(work, "www"))
    blob = os.path.join(work, "www", "blob.bin")
    with open(blob, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(1 << 20))
    want = sha256(blob)
    env = dict(os.environ, ZCCACHE_CACHE_DIR=os.path.join(work, "cache"))
    dl = os.path.join(built, "zccache-download")
    zc = os.path.join(built, "zccache")
    servers = {"full speed": nginx(None), f"limit_rate {rate}": nginx(rate)}
    results = {}
    try:
        for round_no in range(reps):
            for label, (_, url) in servers.items():
                tools = {
                    "curl": lambda out: ["curl", "-s", "-o", out, url],
                    "curl + sha256sum": lambda out: ["sh", "-c", f"curl -s -o {out} {url} && "
                                                     f"sha256sum {out} >/dev/null"],
                    "engine 1": lambda out: [dl, "fetch", "--no-daemon", url, out,
                                             "--max-connections", "1"],
                    "engine 8": lambda out: [dl, "fetch", "--no-daemon", url, out,
                                             "--max-connections", "8",
                                             "--min-segment-size", str(4 << 20)],
                    "daemon 8": lambda out: [zc, "download", url, out, "--max-connections", "8",
                                             "--min-segment-size", str(4 << 20)],
                }
                for name, argv in tools.items():
                    out = os.path.join(work, f"out-{round_no}-{abs(hash((label, name)))}.bin")
                    start = time.perf_counter()
                    subprocess.run(argv(out), check=True, env=env, stdout=subprocess.DEVNULL)
                    took = time.perf_counter() - start
                    assert sha256(out) == want, (label, name)
                    results.setdefault((label, name), []).append(took)
                    if name == "daemon 8":
                        start = time.perf_counter()
                        subprocess.run(argv(out), check=True, env=env, stdout=subprocess.DEVNULL)
                        results.setdefault((label, "daemon, cached"), []).append(
                            time.perf_counter() - start)
                    os.remove(out)
    finally:
        subprocess.run([dl, "daemon", "stop"], env=env, stdout=subprocess.DEVNULL)
        for proc, _ in servers.values():
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{size_mib} MiB file, nginx on 127.0.0.1, medians of {reps} interleaved rounds\n")
    print("| server | tool | wall s | MiB/s |")
    print("|---|---|---|---|")
    for (label, name), times in results.items():
        median = statistics.median(times)
        print(f"| {label} | {name} | {median:.3f} | {size_mib / median:.0f} |")


if __name__ == "__main__":
    main()
