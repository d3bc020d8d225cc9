"""perf.md from perf.json's results (see perf.py)."""

# Workloads whose warm build is one process per unit, run one after another: their warm time
# per unit is the cost of one hit, which the per-hit table compares with a process spawn.
PER_HIT = ("cpp-single", "rsp-single", "c-gcc", "generated")


def cell(value, fmt):
    return "–" if value is None else fmt.format(value)


def markdown(results):
    workloads = results["workloads"]
    names = results["tools"]
    quick = results["quick"]
    cold_counts = sorted({results[w]["cold_reps"] for w in workloads})
    cold_desc = " or ".join(str(n) for n in cold_counts)
    lines = ["# zccache perf", "",
             f"{'quick' if quick else 'full'} run; cold = median of {cold_desc} round(s) (per workload, "
             f"below), warm = median of {results['warm_reps']}; ms. A dash: the tool does not do "
             "that workload (zccache-nowatch runs the C and C++ ones).", ""]

    def tool(w, n):
        return results[w]["tools"].get(n)

    def get(w, n, key):
        t = tool(w, n)
        return None if t is None else t.get(key)

    def ms(w, n, key):
        seconds = get(w, n, key)
        return None if seconds is None else 1000 * seconds

    lines.append("| workload | units | " + " | ".join(f"{n} cold" for n in names) + " | "
                 + " | ".join(f"{n} warm" for n in names) + " |")
    lines.append("|---" * (2 * len(names) + 2) + "|")
    for w in workloads:
        cold = " | ".join(cell(ms(w, n, "cold"), "{:.0f}") for n in names)
        warm = " | ".join(cell(ms(w, n, "warm"), "{:.0f}") for n in names)
        lines.append(f"| {w} | {results[w]['units']} | {cold} | {warm} |")

    peers = [n for n in names if n not in ("zccache", "bare")]
    lines += ["", "Warm: each tool's time over zccache's (higher: zccache is that many times faster). "
              "Cold: each tool's overhead over bare, paired by round (median; min..max over rounds).", ""]
    cold_tools = [n for n in names if n != "bare"] + (["exec-wrapper"] if results.get("exec_wrapper") else [])
    lines.append("| workload | " + " | ".join(f"warm {n} / zccache" for n in peers) + " | "
                 + " | ".join(f"cold {n}" for n in cold_tools) + " | cold rounds |")
    lines.append("|---" * (len(peers) + len(cold_tools) + 2) + "|")
    for w in workloads:
        zw = get(w, "zccache", "warm")
        ratios = " | ".join(cell(None if get(w, n, "warm") is None else get(w, n, "warm") / zw, "{:.1f}x") for n in peers)
        colds = []
        for n in cold_tools:
            rounds = get(w, n, "cold_overhead_rounds")
            if rounds is None:
                colds.append("–")
            elif len(rounds) == 1:
                colds.append(f"{100 * rounds[0]:+.1f} %")
            else:
                colds.append(f"{100 * get(w, n, 'cold_overhead_paired'):+.1f} % ({100 * min(rounds):+.1f}..{100 * max(rounds):+.1f})")
        lines.append(f"| {w} | {ratios} | {' | '.join(colds)} | {results[w]['cold_reps']} |")

    fl = results["floor"]
    spawn = fl.get("static_noop_ms")
    hit_workloads = [w for w in workloads if w in PER_HIT]
    if hit_workloads:
        lines += ["", "Per hit (warm ms per unit, one compile after another)" +
                  (f", and above the spawn of a static no-op binary ({spawn:.2f} ms)" if spawn else "") + ":", ""]
        hit_tools = [n for n in names if n != "bare"]
        lines.append("| workload | " + " | ".join(hit_tools) + (" | zccache / spawn | zccache above spawn / peer's above spawn |" if spawn else " |"))
        lines.append("|---" * (len(hit_tools) + (3 if spawn else 1)) + "|")
        for w in hit_workloads:
            per = {n: get(w, n, "warm_per_unit_ms") for n in hit_tools}
            row = " | ".join(cell(per[n], "{:.2f}") for n in hit_tools)
            if spawn:
                z = per["zccache"]
                above = [f"{n} {(z - spawn) / (per[n] - spawn):.2f}" for n in peers if per.get(n) and per[n] > spawn]
                row += f" | {z / spawn:.2f}x | {', '.join(above) or '–'}"
            lines.append(f"| {w} | {row} |")

    if results.get("exec_wrapper"):
        lines += ["", f"exec-wrapper: a static C program that only execs the compiler ({results['exec_wrapper']}), "
                  "run as a launcher in the cold rounds: what one more process start per compile costs, the "
                  "least any launcher adds."]
    floor = f"Floor: /bin/true {fl['true_ms']:.2f} ms"
    if spawn:
        floor += f", a static no-op binary {spawn:.2f} ms"
    lines += ["", floor + f", zccache --version {fl['zccache_version_ms']:.2f} ms per run.", ""]
    memory = results.get("daemon_memory_mb", {})
    if memory:
        lines += ["Daemon memory (largest peak over the workloads, each daemon restarted per workload): "
                  + ", ".join(f"{n} {m['peak']:.0f} MB peak" for n, m in sorted(memory.items())) + ".", ""]
    if "scale" in workloads:
        for n in ("zccache", "zccache-nowatch"):
            t = tool("scale", n)
            if not t or "status" not in t:
                continue
            st, memos = t["status"], t["status"].get("memos") or {}
            lines.append(
                f"scale, {n} after its warm builds: {st['hits']} hits, {st['misses']} misses; daemon "
                f"{st['resident_bytes'] / 2**20:.0f} MiB resident (peak {t.get('daemon_peak_mb', 0):.0f} MB); "
                f"manifests held {memos.get('manifests')} ({memos.get('manifest_bytes', 0) / 2**20:.1f} of "
                f"{memos.get('manifest_budget', 0) / 2**20:.0f} MiB, {memos.get('manifests_dropped')} dropped), "
                f"{memos.get('file_digests')} file digests, {memos.get('verified')} entries vouched for, "
                f"{memos.get('shadow_candidates')} shadow checks ({memos.get('shadow_candidate_bytes', 0) / 2**20:.1f} MiB).")
        lines.append("")
    import tiers

    for tier in results.get("tiers", []):
        lines += tiers.markdown(tier) + [""]
    lines += [f"- {n}" for n in results.get("notes", [])]
    lines.append("Warm outputs were byte-identical to cold ones for every tool and workload.")
    return lines
