#!/usr/bin/env bash
# Builds the release binaries of zccache and prints the directory that holds them.
#
#   scripts/build-release.sh                      # build; print the directory of the binaries
#   scripts/build-release.sh --archive [--out DIR]
#       build, then package them as a release archive in DIR (default target/dist):
#       zccache-v<version>-<triple>.tar.gz (.zip for a Windows triple), its .sha256, and
#       install.sh and install.ps1 with the version stamped in; prints the archive's path
#   scripts/build-release.sh --package-only BIN_DIR --triple TRIPLE [--out DIR] [--no-strip]
#       package binaries already built in BIN_DIR, compiling nothing
#   scripts/build-release.sh --print-version      # the workspace version
#
# The packaging is described above package() below.
#
# On glibc Linux they are linked statically (static-pie). Every cache hit starts a `zccache`
# process, and a static one skips the dynamic loader and symbol binding: about 0.5 ms less per
# hit on the reference machine (1.7 vs 2.2 ms per warm clang++ hit). The target is named
# explicitly so the flag applies to the binaries only, not to build scripts and proc-macros.
#
# The client (`zccache`) is built against musl when Rust's x86_64 musl target is available (it
# is added with rustup when possible; ZCCACHE_CLIENT_LIBC=glibc skips it). glibc's start-up
# probes the CPU's features and caches with some thirty `cpuid` instructions, each a trap to
# the hypervisor on a virtual machine: on the reference VM that was a third of the client's
# CPU time, and a hit went from ~1.3 to ~0.95 ms. The daemon stays on glibc (its allocator and
# `posix_spawn` are what it was measured with).
#
# The musl client is also linked at a fixed address (`-C relocation-model=static`, not a
# static-pie): a static-pie relocates itself at start-up, writing to pages of its own image
# that each cost a page fault (43 faults per call, 34 without). That took a hit from 0.83-0.94
# to 0.67-0.80 ms (`perf stat -r 300`). The price is no address randomization for the client's
# own code, in a process that lives for one compile and talks only to its own user's daemon;
# the daemon keeps it.
set -euo pipefail
caller="$PWD"
cd "$(dirname "$0")/.."

binaries="zccache zccache-daemon zccache-ci zccache-download"

die() { echo "build-release.sh: $*" >&2; exit 1; }

# The version of the workspace: `version` under `[workspace.package]` in Cargo.toml.
workspace_version() {
  awk '/^\[/ { section = $0; next }
       section == "[workspace.package]" && /^version *=/ { gsub(/^version *= *"|".*$/, ""); print; exit }' Cargo.toml
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | cut -d' ' -f1
  else python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"
  fi
}

# A release archive, from binaries already built (nothing is compiled here):
#
#   DIR/zccache-v<version>-<triple>.tar.gz     (.zip for *-windows-* triples, binaries *.exe)
#     zccache-v<version>-<triple>/             one top-level directory, holding
#       zccache zccache-daemon zccache-ci zccache-download   (mode 0755)
#       README.md LICENSE-MIT LICENSE-APACHE                 (mode 0644)
#   DIR/zccache-v<version>-<triple>.tar.gz.sha256   `<sha256>  <archive name>` (sha256sum -c)
#   DIR/install.sh, DIR/install.ps1            with the version stamped in, so that a release's
#                                              install scripts fetch that release's archives
#
# Linux archives are named `<arch>-unknown-linux-musl` whatever libc the binaries were built
# against, because every one of them is statically linked (on x86_64 the client against musl,
# the daemon, zccache-ci and zccache-download against glibc as static-pies; see build() below):
# they need no shared library and run on any Linux of that architecture, glibc or musl. A
# dynamically linked binary is refused for a Linux archive (ZCCACHE_PACKAGE_ALLOW_DYNAMIC=1
# lets one through, for testing packaging with debug builds only).
#
# Debug information is stripped from copies of the binaries, as for the wheel (release builds
# keep line tables for profiling), when the host's `strip` handles the triple's format;
# --no-strip keeps the binaries byte for byte.
package() {
  local bin_dir="$1" triple="$2" dist="$3" version="$4" strip="$5"
  local exe="" ext="tar.gz"
  case "$triple" in
    *-windows-*) exe=".exe"; ext="zip" ;;
  esac
  local name="zccache-v$version-$triple"
  local archive="$name.$ext"
  [ -d "$bin_dir" ] || die "$bin_dir: no such directory"
  mkdir -p "$dist"
  dist="$(cd "$dist" && pwd)"
  local stage
  stage="$(mktemp -d)"
  # shellcheck disable=SC2064 # the directory is known now
  trap "rm -rf '$stage'" EXIT
  mkdir "$stage/$name"
  local bin file
  for bin in $binaries; do
    file="$bin_dir/$bin$exe"
    [ -f "$file" ] || die "$file: not found (a $triple archive holds $binaries, as $exe files)"
    case "$triple" in
      *-linux-*)
        if [ "${ZCCACHE_PACKAGE_ALLOW_DYNAMIC:-0}" != 1 ] && command -v readelf >/dev/null 2>&1 &&
          readelf -l "$file" 2>/dev/null | grep -q 'Requesting program interpreter'; then
          die "$file is dynamically linked; a $triple archive holds static binaries only (build them with scripts/build-release.sh)"
        fi
        ;;
    esac
    cp "$file" "$stage/$name/$bin$exe"
    chmod 0755 "$stage/$name/$bin$exe"
    if [ "$strip" = 1 ]; then
      case "$triple:$(uname -s)" in
        *-linux-*:Linux) strip --strip-debug "$stage/$name/$bin$exe" 2>/dev/null ||
          { echo "==> $bin: not stripped (strip does not handle it)" >&2; cp "$file" "$stage/$name/$bin$exe"; } ;;
        *-apple-darwin:Darwin) strip -S "$stage/$name/$bin$exe" 2>/dev/null ||
          { echo "==> $bin: not stripped (strip does not handle it)" >&2; cp "$file" "$stage/$name/$bin$exe"; } ;;
      esac
    fi
  done
  for file in README.md LICENSE-MIT LICENSE-APACHE; do
    cp "$file" "$stage/$name/$file"
    chmod 0644 "$stage/$name/$file"
  done

  rm -f "$dist/$archive" "$dist/$archive.sha256"
  if [ "$ext" = zip ]; then
    if command -v zip >/dev/null 2>&1; then
      (cd "$stage" && zip -q -X -r "$dist/$archive" "$name")
    else
      (cd "$stage" && python3 - "$dist/$archive" "$name" <<'PY'
import os, sys, zipfile
archive, top = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
    z.write(top)
    for name in sorted(os.listdir(top)):
        z.write(os.path.join(top, name))
PY
      )
    fi
  else
    # Members are owned by root, in name order, so that the archive does not say who built it.
    if tar --version 2>/dev/null | grep -q 'GNU tar'; then
      tar -C "$stage" --owner=0 --group=0 --numeric-owner --sort=name -czf "$dist/$archive" "$name"
    else
      tar -C "$stage" --uid 0 --gid 0 -czf "$dist/$archive" "$name"
    fi
  fi
  echo "$(sha256_of "$dist/$archive")  $archive" > "$dist/$archive.sha256"

  # The install scripts of the release, which fetch this version's archives.
  sed "s/^stamped_version=\"\"/stamped_version=\"$version\"/" install.sh > "$dist/install.sh"
  grep -q "^stamped_version=\"$version\"\$" "$dist/install.sh" || die "install.sh: no stamped_version=\"\" line to stamp"
  chmod 0755 "$dist/install.sh"
  sed "s/^    \\\$StampedVersion = ''\$/    \\\$StampedVersion = '$version'/" install.ps1 > "$dist/install.ps1"
  grep -q "^    \\\$StampedVersion = '$version'\$" "$dist/install.ps1" || die "install.ps1: no \$StampedVersion = '' line to stamp"

  rm -rf "$stage"
  trap - EXIT
  echo "$dist/$archive"
}

build() {
  host="$(rustc -vV | sed -n 's/^host: //p')"
  case "$host" in
    *-linux-gnu)
      RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        cargo build --release --locked -q -p zccache-cli -p zccache-download --target "$host" >&2
      out="$PWD/target/zccache-release"
      mkdir -p "$out"
      for bin in zccache-daemon zccache zccache-ci zccache-download; do
        cp -f "target/$host/release/$bin" "$out/"
      done
      musl="${host%-linux-gnu}-linux-musl"
      if [ "${ZCCACHE_CLIENT_LIBC:-musl}" = musl ] && [ "${host%%-*}" = x86_64 ]; then
        sysroot="$(rustc --print sysroot)"
        if [ ! -d "$sysroot/lib/rustlib/$musl" ] && command -v rustup >/dev/null 2>&1; then
          echo "==> adding Rust's $musl target for the client (rustup target add)" >&2
          timeout 120 rustup target add "$musl" >&2 2>&1 || true
        fi
        # The client's C parts (ring for TLS, zstd) are compiled with musl-gcc.
        if ! command -v musl-gcc >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
          echo "==> installing musl-tools (musl-gcc) for the client's C dependencies" >&2
          sudo=""
          [ "$(id -u)" = 0 ] || sudo="sudo -n"
          DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq musl-tools >/dev/null 2>&1 ||
            { $sudo apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq musl-tools >/dev/null 2>&1; } || true
        fi
        if [ -d "$sysroot/lib/rustlib/$musl" ] &&
          RUSTFLAGS="${RUSTFLAGS:-} -C relocation-model=static" \
            cargo build --release --locked -q -p zccache-cli --bin zccache --target "$musl" >&2; then
          cp -f "target/$musl/release/zccache" "$out/zccache"
        else
          echo "==> $musl client not built; the client links glibc statically" >&2
        fi
      fi
      echo "$out"
      ;;
    *)
      cargo build --release --locked -q -p zccache-cli -p zccache-download >&2
      echo "$PWD/target/release"
      ;;
  esac
}

mode=build
out=""
bin_dir=""
triple=""
strip=1
while [ $# -gt 0 ]; do
  case "$1" in
    --archive) mode=archive; shift ;;
    --package-only) [ $# -ge 2 ] || die "--package-only needs a directory"; mode=package; bin_dir="$2"; shift 2 ;;
    --triple) [ $# -ge 2 ] || die "--triple needs a target triple"; triple="$2"; shift 2 ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out="$2"; shift 2 ;;
    --no-strip) strip=0; shift ;;
    --print-version) mode=version; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
# Directories named on the command line are the caller's, not the checkout's.
case "$bin_dir" in "" | /*) ;; *) bin_dir="$caller/$bin_dir" ;; esac
case "$out" in "") out="$PWD/target/dist" ;; /*) ;; *) out="$caller/$out" ;; esac
version="$(workspace_version)"
[ -n "$version" ] || die "no version under [workspace.package] in Cargo.toml"

case "$mode" in
  version) echo "$version" ;;
  build) build ;;
  package)
    [ -n "$triple" ] || die "--package-only needs --triple (e.g. x86_64-unknown-linux-musl)"
    package "$bin_dir" "$triple" "$out" "$version" "$strip"
    ;;
  archive)
    built="$(build)"
    host="$(rustc -vV | sed -n 's/^host: //p')"
    # glibc Linux builds are static throughout (see package()): named -musl, as the releases are.
    case "$host" in
      *-linux-gnu) host="${host%-gnu}-musl" ;;
    esac
    package "$built" "${triple:-$host}" "$out" "$version" "$strip"
    ;;
esac
