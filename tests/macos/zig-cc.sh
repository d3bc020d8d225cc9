#!/usr/bin/env bash
# A C compiler for the Apple targets on Linux: zig's (`ziglang` from PyPI), which carries the
# macOS headers that the C parts of our dependencies (blake3, ring, zstd, lzma) include. Used
# as CC_<target> for `cargo check --target {aarch64,x86_64}-apple-darwin`; the flags cc-rs adds
# for Apple targets that zig takes its own way are dropped.
#
#   ZIG_PYTHON: the python with ziglang installed (test.sh's .zig-venv).
set -euo pipefail
zig_target=aarch64-macos
args=()
for a in "$@"; do
  case "$a" in
    --target=x86_64-apple-*) zig_target=x86_64-macos ;;
    --target=*|-mmacosx-version-min=*) ;;
    *) args+=("$a") ;;
  esac
done
exec "${ZIG_PYTHON:?ZIG_PYTHON names the python that has ziglang}" -m ziglang cc -target "$zig_target" "${args[@]}"
