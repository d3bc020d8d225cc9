#!/usr/bin/env bash
# zccache as a Windows program, under Wine: zccache.exe starts zccache-daemon.exe detached,
# which serves a named pipe; `zccache exec` caches a Windows tool (built here with mingw):
# a miss runs it, a hit restores its output without running it, an edited input runs it
# again; the tool is also found on PATH through PATHEXT; concurrent clients share the daemon;
# `defender-exclusions` reports that Wine's PowerShell cannot answer; stop ends the daemon.
#
#   tests/windows/zccache-e2e.sh TARGET_DIR   (cargo's, holding x86_64-pc-windows-gnu/debug)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target_dir="$(cd "$1" && pwd)"
bin="$target_dir/x86_64-pc-windows-gnu/debug"
exe="$bin/zccache.exe"
[ -f "$exe" ] && [ -f "$bin/zccache-daemon.exe" ] || { echo "zccache-e2e: $exe not built" >&2; exit 1; }
# shellcheck source=tests/windows/wine-env.sh
. "$here/wine-env.sh"
e2e_scaffold zccache-e2e "$exe" stop

wine_env "$target_dir" "$bin"
export ZCCACHE_CACHE_DIR="$(winpath "$work/cache")"

# Output through files, not pipes: a Wine process started by this one (the daemon) keeps the
# Unix descriptors it inherited, and a pipe reader would wait for it to exit.
zc() {
  local rc=0
  wine "$exe" "$@" > "$work/.out" 2> "$work/.err" || rc=$?
  tr -d '\r' < "$work/.out"
  return $rc
}
stat_of() { zc status --json | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

echo "==> zccache.exe --version, defender-exclusions"
zc --version | grep -q '^zccache ' || fail "--version"
rc=0; zc defender-exclusions check >/dev/null || rc=$?
[ "$rc" = 1 ] || fail "defender-exclusions check under Wine exited $rc, not 1"
grep -q 'powershell.exe gave no answer' "$work/.err" || fail "defender-exclusions: $(cat "$work/.err")"

echo "==> start: the daemon, detached, on a named pipe"
zc start | grep -q 'running (pid' || fail "start: $(cat "$work/.out" "$work/.err")"
pid="$(stat_of pid)"
[ "$pid" -gt 0 ] || fail "status pid"
grep -q 'serving \\\\.\\pipe\\zccache-' "$work/cache/logs/daemon.log" || fail "no named pipe in the log"

echo "==> zccache exec: a Windows tool cached"
tool_dir="$work/tool"
mkdir -p "$tool_dir"
x86_64-w64-mingw32-gcc -O2 -o "$tool_dir/upper.exe" "$here/fixtures/upper.c"
src="$work/src"
mkdir -p "$src"
printf 'hello windows\n' > "$src/in.txt"
run_upper() { # TOOL-NAME
  (cd "$src" && zc exec --input in.txt --output out.txt -- "$1" in.txt out.txt)
}
runs() { [ -f "$src/out.txt.runs" ] && wc -l < "$src/out.txt.runs" || echo 0; }
first="$(run_upper "$(winpath "$tool_dir/upper.exe")")"
[ "$first" = "upper: 14 bytes" ] || fail "miss stdout: $first"
[ "$(cat "$src/out.txt")" = "HELLO WINDOWS" ] || fail "miss output"
[ "$(runs)" = 1 ] || fail "the tool ran $(runs) times"
cp "$src/out.txt" "$work/expected.txt"
rm "$src/out.txt"
second="$(run_upper "$(winpath "$tool_dir/upper.exe")")"
[ "$second" = "$first" ] || fail "hit stdout: $second"
grep -q 'upper: done' "$work/.err" || fail "hit stderr: $(cat "$work/.err")"
cmp -s "$src/out.txt" "$work/expected.txt" || fail "hit output differs"
[ "$(runs)" = 1 ] || fail "a hit ran the tool"
[ "$(stat_of hits)" = 1 ] || fail "hits $(stat_of hits)"

echo "==> the tool found on PATH by its bare name (PATHEXT): its own entry (argv[0] differs)"
rm "$src/out.txt"
third="$(WINEPATH="$(winpath "$tool_dir")" run_upper upper)"
[ "$third" = "$first" ] || fail "PATH miss stdout: $third"
[ "$(runs)" = 2 ] || fail "the PATH call did not run the tool"
rm "$src/out.txt"
fourth="$(WINEPATH="$(winpath "$tool_dir")" run_upper upper)"
[ "$fourth" = "$first" ] || fail "PATH hit stdout: $fourth"
cmp -s "$src/out.txt" "$work/expected.txt" || fail "PATH hit output differs"
[ "$(runs)" = 2 ] || fail "the second PATH call ran the tool"
[ "$(stat_of hits)" = 2 ] || fail "hits after the PATH calls: $(stat_of hits)"

echo "==> an edited input runs the tool again"
printf 'edited\n' > "$src/in.txt"
run_upper "$(winpath "$tool_dir/upper.exe")" >/dev/null
[ "$(cat "$src/out.txt")" = "EDITED" ] || fail "edit: $(cat "$src/out.txt")"
[ "$(runs)" = 3 ] || fail "the edit did not run the tool"
[ "$(stat_of misses)" = 3 ] || fail "misses $(stat_of misses)"

echo "==> four clients at once over the named pipe"
for i in 1 2 3 4; do
  mkdir -p "$work/c$i"
  printf 'client %s\n' "$i" > "$work/c$i/in.txt"
done
pids=()
for i in 1 2 3 4; do
  (cd "$work/c$i" && wine "$exe" exec --input in.txt --output out.txt -- "$(winpath "$tool_dir/upper.exe")" in.txt out.txt \
    > "$work/c$i/.out" 2> "$work/c$i/.err") &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent client failed"; done
for i in 1 2 3 4; do
  [ "$(cat "$work/c$i/out.txt")" = "CLIENT $i" ] || fail "client $i output"
done
[ "$(stat_of misses)" = 7 ] || fail "misses after the concurrent clients: $(stat_of misses)"
[ "$(stat_of pid)" = "$pid" ] || fail "the daemon changed"

echo "==> stop"
zc stop >/dev/null || fail "stop"
zc status | grep -q 'not running' || fail "status after stop: $(cat "$work/.out")"
echo "zccache-e2e: OK (hits 2, misses 7 before stop; one daemon, pid $pid)"
