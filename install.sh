#!/bin/sh
# Installs `zccache`, `zccache-daemon`, `zccache-ci` and `zccache-download`, and shows a real
# compile becoming a cache hit. POSIX sh (dash, bash, busybox ash, zsh's sh): it is piped to `sh`.
#
#   curl -LsSf https://github.com/zackees/zccache/releases/latest/download/install.sh | sh
#   curl -LsSf https://github.com/zackees/zccache/releases/latest/download/install.sh | sudo sh -s -- --global
#   ./install.sh                 # from a checkout: builds from source (scripts/build-release.sh)
#
# Options:
#   --prefix DIR     install into DIR/bin (default ~/.local, so ~/.local/bin)
#   --global         install into /usr/local/bin (as root, e.g. through sudo)
#   --release        install a release archive even when run from a checkout
#   --version X.Y.Z  the release to install (or ZCCACHE_VERSION; default: the version this
#                    script was released with, else the latest release)
#   --no-demo        skip the demonstration
#
# A release archive (zccache-vX.Y.Z-<arch>-unknown-linux-musl.tar.gz on Linux,
# zccache-vX.Y.Z-<arch>-apple-darwin.tar.gz on macOS) is downloaded with curl or wget from
# ZCCACHE_RELEASE_URL (default https://github.com/zackees/zccache/releases/download/vX.Y.Z;
# the latest release is the one .../releases/latest redirects to), checked against its
# .sha256 file, and unpacked in a temporary directory. In GitHub Actions (GITHUB_PATH set) the
# bin directory is added to the job's PATH.
set -eu

# Set by `scripts/build-release.sh --archive` in the copy it publishes with a release.
stamped_version=""

# The repository (ZCCACHE_REPO_URL: a mirror with GitHub's layout, or a test server).
repo="${ZCCACHE_REPO_URL:-https://github.com/zackees/zccache}"
repo="${repo%/}"
binaries="zccache zccache-daemon zccache-ci zccache-download"

usage() {
  cat <<'USAGE'
usage: install.sh [--prefix DIR | --global] [--release] [--version X.Y.Z] [--no-demo]

  --prefix DIR     install into DIR/bin (default ~/.local, so ~/.local/bin)
  --global         install into /usr/local/bin (as root, e.g. through sudo)
  --release        install a release archive even when run from a checkout
  --version X.Y.Z  the release to install (or ZCCACHE_VERSION)
  --no-demo        skip the demonstration

From a checkout (Cargo.toml and scripts/build-release.sh beside it) it builds from source;
otherwise (piped from curl, or --release) it installs a release archive from
ZCCACHE_RELEASE_URL (default https://github.com/zackees/zccache/releases/download/vX.Y.Z).
USAGE
}

say() { printf '%s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

prefix="${HOME:-}/.local"
demo=1
release=0
version="${ZCCACHE_VERSION:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    --global) prefix="/usr/local"; shift ;;
    --release) release=1; shift ;;
    --version) [ $# -ge 2 ] || die "--version needs a version"; version="$2"; shift 2 ;;
    --version=*) version="${1#--version=}"; shift ;;
    --no-demo) demo=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) printf 'install.sh: unknown option %s\n' "$1" >&2; usage >&2; exit 2 ;;
  esac
done
[ -n "$prefix" ] || die "no install prefix (HOME is not set): pass --prefix DIR"
version="${version#v}"
# A relative prefix is the caller's (the source path and the demonstration change directory).
case "$prefix" in /*) ;; *) prefix="$PWD/$prefix" ;; esac
bindir="${prefix}/bin"

# Temporary directories, removed on exit (also on Ctrl-C); the demonstration's daemon stopped.
work=""
demo_dir=""
cleanup() {
  if [ -n "$demo_dir" ]; then
    "$bindir/zccache" stop >/dev/null 2>&1 || true
    rm -rf "$demo_dir"
  fi
  [ -z "$work" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# Source or release: a checkout of zccache beside this script (not when piped to sh, when $0
# is the shell) builds from source, unless --release; a copy published with a release
# (stamped with its version) always installs that release's archive.
here=""
case "$0" in
  */install.sh | install.sh)
    if [ -f "$0" ]; then here="$(cd "$(dirname "$0")" && pwd)"; fi
    ;;
esac
from_source=0
if [ "$release" = 0 ] && [ -z "$stamped_version" ] && [ -n "$here" ] &&
  [ -f "$here/Cargo.toml" ] && [ -x "$here/scripts/build-release.sh" ]; then
  from_source=1
fi

# Whether DIR can be created and written: the nearest existing directory at or above it is
# writable.
writable() {
  w_dir="$1"
  while [ ! -d "$w_dir" ]; do
    w_parent="$(dirname "$w_dir")"
    [ "$w_parent" != "$w_dir" ] || return 1
    w_dir="$w_parent"
  done
  [ -w "$w_dir" ]
}

# Puts each binary of SRC_DIR into $bindir. Beside a running daemon, safely: every new file is
# written first (as .NAME.new), then each is renamed over the old one.
install_binaries() {
  src_dir="$1"
  mkdir -p "$bindir" || die "cannot create $bindir"
  for bin in $binaries; do
    rm -f "$bindir/.$bin.new"
    if ! { cp "$src_dir/$bin" "$bindir/.$bin.new" && chmod 0755 "$bindir/.$bin.new"; }; then
      rm -f "$bindir/.$bin.new"
      die "cannot write $bindir/.$bin.new"
    fi
  done
  for bin in $binaries; do
    mv -f "$bindir/.$bin.new" "$bindir/$bin"
  done
}

# ---- the release archive ----

# The archive's target triple for this machine.
detect_triple() {
  os="$(uname -s)"
  arch="$(uname -m)"
  case "$arch" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64 | armv8l) arch=aarch64 ;;
    *) die "no zccache release for the $arch processor; build from source instead (git clone $repo && cd zccache && ./install.sh)" ;;
  esac
  case "$os" in
    Linux) say "$arch-unknown-linux-musl" ;;
    Darwin)
      # A shell translated by Rosetta sees x86_64 on Apple silicon: install the native build.
      if [ "$arch" = x86_64 ] && [ "$(sysctl -n sysctl.proc_translated 2>/dev/null || echo 0)" = 1 ]; then
        arch=aarch64
      fi
      say "$arch-apple-darwin"
      ;;
    MINGW* | MSYS* | CYGWIN* | Windows_NT)
      die "on Windows, use install.ps1: powershell -ExecutionPolicy Bypass -c \"irm $repo/releases/latest/download/install.ps1 | iex\"" ;;
    *) die "no zccache release for $os; build from source instead (git clone $repo && cd zccache && ./install.sh)" ;;
  esac
}

# download URL FILE: with curl, else wget.
download() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    die "neither curl nor wget is installed: install one of them"
  fi
}

# The latest release's version, from the redirect of $repo/releases/latest to .../tag/vX.Y.Z.
latest_version() {
  if command -v curl >/dev/null 2>&1; then
    l_headers="$(curl -sI "$repo/releases/latest")" || return 1
  elif command -v wget >/dev/null 2>&1; then
    l_headers="$(wget -S --spider --max-redirect=0 "$repo/releases/latest" 2>&1)" || true
  else
    die "neither curl nor wget is installed: install one of them"
  fi
  printf '%s\n' "$l_headers" | tr -d '\r' |
    sed -n 's#^ *[Ll][Oo][Cc][Aa][Tt][Ii][Oo][Nn]: *.*/releases/tag/v\{0,1\}\([^/ ]*\) *$#\1#p' | head -n 1
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d' ' -f1
  elif command -v openssl >/dev/null 2>&1; then
    openssl dgst -sha256 "$1" | sed 's/^.*= *//'
  else
    die "no sha256sum, shasum or openssl to check the download with"
  fi
}

# Refuses an archive with a member that could land outside the directory it is unpacked in:
# an absolute path, a `..` component, or anything but a plain file or directory (a link).
check_members() {
  c_list="$work/members"
  tar -tzf "$1" > "$c_list" || die "$2: not a readable .tar.gz archive"
  while IFS= read -r c_member || [ -n "$c_member" ]; do
    case "$c_member" in
      /* | [A-Za-z]:*) die "$2: refusing an archive member with an absolute path: $c_member" ;;
      .. | ../* | */.. | */../*) die "$2: refusing an archive member outside the archive: $c_member" ;;
    esac
  done < "$c_list"
  tar -tvzf "$1" > "$c_list" || die "$2: not a readable .tar.gz archive"
  while IFS= read -r c_member || [ -n "$c_member" ]; do
    case "$c_member" in
      -* | d*) ;;
      *) die "$2: refusing an archive member that is not a plain file or directory: $c_member" ;;
    esac
  done < "$c_list"
}

install_release() {
  triple="$(detect_triple)"
  base="${ZCCACHE_RELEASE_URL:-}"
  [ -n "$version" ] || version="$stamped_version"
  if [ -z "$version" ]; then
    [ -z "$base" ] || die "ZCCACHE_RELEASE_URL is set but no version: pass --version X.Y.Z (or set ZCCACHE_VERSION)"
    say "==> finding the latest release"
    version="$(latest_version)" || true
    [ -n "$version" ] || die "could not find the latest release from $repo/releases/latest: pass --version X.Y.Z"
  fi
  [ -n "$base" ] || base="$repo/releases/download/v$version"
  base="${base%/}"
  name="zccache-v$version-$triple"
  archive="$name.tar.gz"

  writable "$bindir" || die "cannot write to $bindir: run as a user who can (for --global: curl -LsSf $repo/releases/latest/download/install.sh | sudo sh -s -- --global), or pass --prefix DIR"

  work="$(mktemp -d "${TMPDIR:-/tmp}/zccache-install.XXXXXX")"
  say "==> downloading $base/$archive"
  download "$base/$archive" "$work/$archive" || die "could not download $base/$archive"
  download "$base/$archive.sha256" "$work/$archive.sha256" || die "could not download $base/$archive.sha256"
  expected="$(sed -n '1s/^\([0-9a-fA-F]\{64\}\).*/\1/p' "$work/$archive.sha256" | tr 'A-F' 'a-f')"
  [ -n "$expected" ] || die "$archive.sha256 holds no SHA-256: refusing to install"
  actual="$(sha256_of "$work/$archive" | tr 'A-F' 'a-f')"
  if [ "$actual" != "$expected" ]; then
    die "checksum mismatch for $archive: expected $expected, downloaded $actual; refusing to install (a damaged or altered download: try again)"
  fi
  say "    sha256 $actual (verified)"

  check_members "$work/$archive" "$archive"
  mkdir "$work/unpacked"
  # -o: the files are the installing user's (GNU tar, bsdtar and busybox alike), not root's
  # idea of the archive's owner.
  tar -xozf "$work/$archive" -C "$work/unpacked" || die "$archive: could not unpack"
  # One top-level directory zccache-vX.Y.Z-<triple>/ (a flat archive is accepted too).
  src="$work/unpacked/$name"
  [ -d "$src" ] || src="$work/unpacked"
  for bin in $binaries; do
    if [ ! -f "$src/$bin" ] || [ -L "$src/$bin" ]; then
      die "$archive holds no $name/$bin: refusing to install"
    fi
  done
  install_binaries "$src"
}

# ---- from source ----

install_from_source() {
  cd "$here"
  say "==> building zccache (release)"
  built="$(./scripts/build-release.sh)"
  install_binaries "$built"
}

if [ "$from_source" = 1 ]; then
  install_from_source
else
  install_release
fi

say "==> installed zccache, zccache-daemon, zccache-ci and zccache-download into $bindir"
case ":$PATH:" in
  *":$bindir:"*) ;;
  *) say "    note: $bindir is not on your PATH; add it with: export PATH=\"$bindir:\$PATH\"" ;;
esac
if [ -n "${GITHUB_PATH:-}" ]; then
  printf '%s\n' "$bindir" >> "$GITHUB_PATH"
  say "    added $bindir to GITHUB_PATH (the next steps of this job have it on PATH)"
fi
"$bindir/zccache" --version

[ "$demo" = 1 ] || exit 0
cc=""
for candidate in clang gcc cc; do
  if command -v "$candidate" >/dev/null 2>&1; then cc="$candidate"; break; fi
done
if [ -z "$cc" ]; then
  say "==> no C compiler found; skipping the demonstration"
  exit 0
fi
demo_dir="$(mktemp -d)"
export ZCCACHE_CACHE_DIR="$demo_dir/cache"
cat > "$demo_dir/hello.c" <<'C'
#include <stdio.h>
int main(void) { printf("hello from a cached object\n"); return 0; }
C
cd "$demo_dir"
say "==> demonstration with $cc (private cache in $ZCCACHE_CACHE_DIR)"
sleep 0.2 2>/dev/null || sleep 1 # let the new file's timestamps settle, as any real edit would be
say "\$ zccache $cc -c hello.c -o hello.o    # first time: a miss, the compiler runs"
"$bindir/zccache" "$cc" -c hello.c -o hello.o
rm hello.o
say "\$ zccache $cc -c hello.c -o hello.o    # second time: served from the cache"
"$bindir/zccache" "$cc" -c hello.c -o hello.o
"$cc" hello.o -o hello && ./hello
"$bindir/zccache" status | grep -E '^(hits|misses|hit rate)'
hits="$("$bindir/zccache" status --json | sed -n 's/.*"hits":\([0-9]*\).*/\1/p')"
if [ "$hits" != "1" ]; then
  echo "install.sh: expected one cache hit, saw '${hits}'" >&2
  exit 1
fi
say "==> zccache works: the second compile was a cache hit"
