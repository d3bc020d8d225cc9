#!/usr/bin/env bash
# Builds zccache from source, installs `zccache`, `zccache-daemon`, `zccache-ci` and
# `zccache-download`, and shows a real compile becoming a cache hit.
#
#   ./install.sh                 # installs into ~/.local/bin
#   ./install.sh --prefix DIR    # installs into DIR/bin
#   ./install.sh --no-demo       # skip the demonstration
set -euo pipefail

prefix="${HOME}/.local"
demo=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    --no-demo) demo=0; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
echo "==> building zccache (release)"
built="$(./scripts/build-release.sh)"
bindir="${prefix}/bin"
mkdir -p "$bindir"
for bin in zccache zccache-daemon zccache-ci zccache-download; do
  # Install beside a running daemon safely: write a new file, then rename over the old one.
  install -m 0755 "$built/$bin" "$bindir/.$bin.new"
  mv -f "$bindir/.$bin.new" "$bindir/$bin"
done
echo "==> installed zccache, zccache-daemon, zccache-ci and zccache-download into $bindir"
case ":$PATH:" in
  *":$bindir:"*) ;;
  *) echo "    note: $bindir is not on your PATH; add it with: export PATH=\"$bindir:\$PATH\"" ;;
esac
"$bindir/zccache" --version

[ "$demo" = 1 ] || exit 0
cc=""
for candidate in clang gcc cc; do
  if command -v "$candidate" >/dev/null 2>&1; then cc="$candidate"; break; fi
done
if [ -z "$cc" ]; then
  echo "==> no C compiler found; skipping the demonstration"
  exit 0
fi
demo_dir="$(mktemp -d)"
trap '"$bindir/zccache" stop >/dev/null 2>&1 || true; rm -rf "$demo_dir"' EXIT
export ZCCACHE_CACHE_DIR="$demo_dir/cache"
cat > "$demo_dir/hello.c" <<'C'
#include <stdio.h>
int main(void) { printf("hello from a cached object\n"); return 0; }
C
cd "$demo_dir"
echo "==> demonstration with $cc (private cache in $ZCCACHE_CACHE_DIR)"
sleep 0.2 # let the new file's timestamps settle, as any real edit would be
echo "\$ zccache $cc -c hello.c -o hello.o    # first time: a miss, the compiler runs"
"$bindir/zccache" "$cc" -c hello.c -o hello.o
rm hello.o
echo "\$ zccache $cc -c hello.c -o hello.o    # second time: served from the cache"
"$bindir/zccache" "$cc" -c hello.c -o hello.o
"$cc" hello.o -o hello && ./hello
"$bindir/zccache" status | grep -E '^(hits|misses|hit rate)'
hits="$("$bindir/zccache" status --json | sed -n 's/.*"hits":\([0-9]*\).*/\1/p')"
if [ "$hits" != "1" ]; then
  echo "install.sh: expected one cache hit, saw '${hits}'" >&2
  exit 1
fi
echo "==> zccache works: the second compile was a cache hit"
