#!/usr/bin/env bash
# Runs a Windows test program under Wine, for cargo (CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER).
#
# Wine 8 (Debian 12) lacks ProcessPrng, which Rust's std needs at start-up since 1.78: the
# shim in this directory is built once with mingw and put beside the program, and Wine is told
# to prefer it to its own bcryptprimitives.dll. The Wine prefix is private to the build
# (target/wine-prefix), created on first use, with Wine's debug output off.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
program="$1"
dir="$(cd "$(dirname "$program")" && pwd)"
target_dir="${CARGO_TARGET_DIR:-$here/../../target}"
shim="$target_dir/wine-shim/bcryptprimitives.dll"
if [ ! -f "$shim" ]; then
  mkdir -p "$(dirname "$shim")"
  x86_64-w64-mingw32-gcc -shared -O2 -o "$shim.tmp" "$here/processprng.c" \
    "$here/bcryptprimitives.def" -ladvapi32
  mv "$shim.tmp" "$shim"
fi
[ -f "$dir/bcryptprimitives.dll" ] || cp "$shim" "$dir/bcryptprimitives.dll"
export WINEPREFIX="${WINEPREFIX:-$target_dir/wine-prefix}"
export WINEDEBUG="${WINEDEBUG:--all}"
# Tests that check what Wine does differently from Windows read this (see zccache-fscache's
# watch_dirs tests: Wine does not keep the order of directory changes across handles).
export ZCCACHE_TEST_UNDER_WINE=1
export WINEDLLOVERRIDES="bcryptprimitives=n,b;${WINEDLLOVERRIDES:-}"
if [ ! -d "$WINEPREFIX" ]; then
  wineboot --init >/dev/null 2>&1 || true
fi
exec wine "$@"
