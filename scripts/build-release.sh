#!/usr/bin/env bash
# Builds the release binaries of zccache and prints the directory that holds them.
#
# On glibc Linux they are linked statically (static-pie). Every cache hit starts a `zccache`
# process, and a static one skips the dynamic loader and symbol binding: about 0.5 ms less per
# hit on the reference machine (1.7 vs 2.2 ms per warm clang++ hit). The target is named
# explicitly so the flag applies to the binaries only, not to build scripts and proc-macros.
set -euo pipefail
cd "$(dirname "$0")/.."
host="$(rustc -vV | sed -n 's/^host: //p')"
case "$host" in
  *-linux-gnu)
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
      cargo build --release --locked -q -p zccache-cli --target "$host" >&2
    echo "$PWD/target/$host/release"
    ;;
  *)
    cargo build --release --locked -q -p zccache-cli >&2
    echo "$PWD/target/release"
    ;;
esac
