"""perf.sh's charts, drawn with matplotlib (installed in perf.sh's private venv): each as PNG
(to look at) and SVG (to scale). matplotlib rather than hand-drawn SVG: axes, ticks, a log
scale, a legend that fits, and values on bars come with it.

    draw(results, out_dir) -> [file names written]
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# One color per tool, the same in every chart.
COLORS = {
    "bare": "#7f7f7f",
    "zccache": "#d62728",
    "zccache-nowatch": "#ff9896",
    "zccache-baseline": "#8c564b",
    "ccache": "#1f77b4",
    "sccache": "#2ca02c",
    "zccache-1.15": "#9467bd",
    "exec-wrapper": "#bcbd22",
}


def color(name):
    return COLORS.get(name, "#17becf")


def save(fig, out_dir, stem):
    written = []
    for ext in ("png", "svg"):
        path = os.path.join(out_dir, f"{stem}.{ext}")
        fig.savefig(path, dpi=110, bbox_inches="tight")
        written.append(os.path.basename(path))
    plt.close(fig)
    return written


def label(value):
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def grouped_bars(ax, groups, series, values, fmt, log=False, hatch=None, palette=None):
    """Bars of `series` (tools) per group (workload); `values[(group, tool)]` or missing. Each
    bar carries its value."""
    n = max(len(series), 1)
    width = 0.8 / n
    for i, name in enumerate(series):
        xs, ys = [], []
        for g, group in enumerate(groups):
            v = values.get((group, name))
            if v is not None:
                xs.append(g - 0.4 + width * (i + 0.5))
                ys.append(v)
        if not xs:
            continue
        bars = ax.bar(xs, ys, width * 0.92, label=name, color=color((palette or {}).get(name, name)),
                      hatch=(hatch or {}).get(name), edgecolor="white" if not hatch or name not in hatch else "black",
                      linewidth=0.5)
        for bar, v in zip(bars, ys):
            height = bar.get_height()
            y = height if height > 0 or log else 0
            ax.annotate(fmt(v), (bar.get_x() + bar.get_width() / 2, y), xytext=(0, 2 if v >= 0 else -2),
                        textcoords="offset points", ha="center", va="bottom" if v >= 0 else "top",
                        fontsize=7, rotation=90)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    if log:
        ax.set_yscale("log")


def figure(groups):
    return plt.subplots(figsize=(max(7.5, 1.5 * len(groups) + 3), 5.2))


def legend(ax):
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def warm_chart(results, out_dir):
    workloads = results["workloads"]
    tools = results["tools"]
    values = {}
    for w in workloads:
        for n in tools:
            t = results[w]["tools"].get(n)
            if t and "warm_per_unit_ms" in t:
                values[(w, n)] = t["warm_per_unit_ms"]
    fig, ax = figure(workloads)
    grouped_bars(ax, workloads, tools, values, label, log=True)
    floor = results["floor"].get("static_noop_ms") or results["floor"]["true_ms"]
    what = "static no-op spawn" if results["floor"].get("static_noop_ms") else "/bin/true"
    ax.axhline(floor, color="black", linestyle="--", linewidth=1, label=f"floor: {what}, {floor:.2f} ms")
    top = max(values.values()) if values else 1
    ax.set_ylim(min(min(values.values(), default=floor), floor) / 2, top * 4)
    ax.set_ylabel("milliseconds per compile unit (log scale)")
    ax.set_xlabel("workload")
    ax.set_title("Warm builds: time per unit, outputs removed and restored (lower is better)")
    ax.grid(axis="y", which="major", alpha=0.3)
    legend(ax)
    return save(fig, out_dir, "perf-warm")


def cold_chart(results, out_dir):
    workloads = results["workloads"]
    tools = [n for n in results["tools"] if n != "bare"]
    if results.get("exec_wrapper"):
        tools.append("exec-wrapper")
    values = {}
    for w in workloads:
        for n in tools:
            t = results[w]["tools"].get(n)
            if t and "cold_overhead_paired" in t:
                values[(w, n)] = 100 * t["cold_overhead_paired"]
    fig, ax = figure(workloads)
    grouped_bars(ax, workloads, tools, values, lambda v: f"{v:+.1f}", hatch={"exec-wrapper": "//"})
    ax.axhline(0, color="black", linewidth=0.8)
    lo = min(0, min(values.values(), default=0))
    hi = max(values.values(), default=1)
    ax.set_ylim(lo - 0.15 * (hi - lo) - 1, hi + 0.25 * (hi - lo) + 1)
    ax.set_ylabel("overhead over the bare compiler, % (median of rounds)")
    ax.set_xlabel("workload")
    reps = sorted({results[w]["cold_reps"] for w in workloads})
    ax.set_title("Cold builds: what each tool adds to an empty-cache build\n"
                 f"(exec-wrapper, hatched: one more process start per compile, the floor; "
                 f"{'/'.join(map(str, reps))} round(s))", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    legend(ax)
    return save(fig, out_dir, "perf-cold")


def tier_chart(tier, out_dir):
    """One chart per tier: `tier` holds a title, a y label, groups (bars side by side per
    group), series and values {(group, series): value}, and optional reference lines."""
    groups, series = tier["groups"], tier["series"]
    fig, ax = figure(groups)
    grouped_bars(ax, groups, series, {tuple(k.split("\t")): v for k, v in tier["values"].items()}, label,
                 log=tier.get("log", False), palette=tier.get("colors"))
    for ref in tier.get("lines", []):
        ax.axhline(ref["value"], color="black", linestyle="--", linewidth=1, label=ref["label"])
    values = list(tier["values"].values())
    if values and not tier.get("log"):
        ax.set_ylim(0, max(values + [r["value"] for r in tier.get("lines", [])]) * 1.25)
    ax.set_ylabel(tier["ylabel"])
    ax.set_xlabel(tier.get("xlabel", ""))
    ax.set_title(tier["title"], fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    legend(ax)
    return save(fig, out_dir, f"perf-{tier['name']}")


def draw(results, out_dir):
    written = warm_chart(results, out_dir) + cold_chart(results, out_dir) if results["workloads"] else []
    for tier in results.get("tiers", []):
        written += tier_chart(tier, out_dir)
    return written
