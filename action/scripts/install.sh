#!/usr/bin/env bash
# The zccache action's install step.
#   install.sh plan     decide where zccache comes from (outputs: build, install-dir, binary-key)
#   install.sh install  put zccache, zccache-daemon and zccache-ci on the PATH
# ZCCACHE_VERSION: latest | <version> | source | <directory holding the binaries>.
# A release archive is used when one exists for the version and this runner; otherwise zccache
# is built from the action's own source (cargo build --release) and kept in the cache.
set -euo pipefail
action_dir="$(cd "$(dirname "$0")/.." && pwd)"
source_dir="$(cd "$action_dir/.." && pwd)"
version="${ZCCACHE_VERSION:-latest}"
tool_cache="${RUNNER_TOOL_CACHE:-$RUNNER_TEMP}"

triple() {
  local arch os
  case "$(uname -m)" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *) arch="$(uname -m)" ;;
  esac
  case "$(uname -s)" in
    Linux) os=unknown-linux-musl ;;
    Darwin) os=apple-darwin ;;
    *) os=pc-windows-msvc ;;
  esac
  echo "$arch-$os"
}

# The content of the action's source that a build depends on.
source_hash() {
  (cd "$source_dir" && find Cargo.toml Cargo.lock crates -type f \( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) -print0 2>/dev/null |
    LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

try_release() {
  local dest="$1" url base
  command -v curl >/dev/null || return 1
  if [ "$version" = latest ]; then
    base="https://github.com/zccache/zccache/releases/latest/download"
  else
    base="https://github.com/zccache/zccache/releases/download/v${version#v}"
  fi
  url="$base/zccache-$(triple).tar.gz"
  local tmp
  tmp="$(mktemp -d "${RUNNER_TEMP:-/tmp}/zccache-release.XXXXXX")"
  if curl --fail --silent --show-error --location --max-time 120 -o "$tmp/zccache.tar.gz" "$url" &&
    curl --fail --silent --location --max-time 30 -o "$tmp/zccache.tar.gz.sha256" "$url.sha256"; then
    if (cd "$tmp" && echo "$(cut -d' ' -f1 zccache.tar.gz.sha256)  zccache.tar.gz" | sha256sum -c --quiet -); then
      mkdir -p "$dest"
      tar -xzf "$tmp/zccache.tar.gz" -C "$dest" --strip-components=1 --no-same-owner
      rm -rf "$tmp"
      [ -x "$dest/zccache" ] && [ -x "$dest/zccache-daemon" ] && [ -x "$dest/zccache-ci" ] && return 0
    fi
    echo "::warning::zccache release archive $url failed its checksum or lacks the binaries"
  fi
  rm -rf "$tmp"
  return 1
}

build_from_source() {
  local dest="$1"
  echo "zccache: building from the action's source ($source_dir); no release archive was used"
  local target_dir="$tool_cache/zccache/build"
  env -u RUSTC_WRAPPER -u CARGO_BUILD_RUSTC_WRAPPER CARGO_TARGET_DIR="$target_dir" \
    cargo build --release --locked --manifest-path "$source_dir/Cargo.toml" -p zccache-cli
  mkdir -p "$dest"
  cp "$target_dir/release/zccache" "$target_dir/release/zccache-daemon" "$target_dir/release/zccache-ci" "$dest/"
}

case "${1:-}" in
  plan)
    if [ -d "$version" ]; then
      echo "build=false" >>"$GITHUB_OUTPUT"
      echo "install-dir=$version" >>"$GITHUB_OUTPUT"
    elif [ "$version" = source ]; then
      hash="$(source_hash)"
      echo "build=true" >>"$GITHUB_OUTPUT"
      echo "install-dir=$tool_cache/zccache/source-$hash/bin" >>"$GITHUB_OUTPUT"
      echo "binary-key=zccache-bin-${RUNNER_OS:-Linux}-$(uname -m)-source-$hash" >>"$GITHUB_OUTPUT"
    else
      # A release if there is one; the build from source is the fallback, cached as above.
      hash="$(source_hash)"
      dir="$tool_cache/zccache/$version-$hash/bin"
      if [ -x "$dir/zccache" ]; then
        echo "build=false" >>"$GITHUB_OUTPUT"
      elif try_release "$dir"; then
        echo "zccache: release archive for $version installed"
        echo "build=false" >>"$GITHUB_OUTPUT"
      else
        echo "zccache: no release archive for $version on $(triple); zccache will be built from source"
        echo "build=true" >>"$GITHUB_OUTPUT"
        echo "binary-key=zccache-bin-${RUNNER_OS:-Linux}-$(uname -m)-source-$hash" >>"$GITHUB_OUTPUT"
      fi
      echo "install-dir=$dir" >>"$GITHUB_OUTPUT"
    fi
    ;;
  install)
    dir="$ZCCACHE_INSTALL_DIR"
    if [ ! -x "$dir/zccache" ] || [ ! -x "$dir/zccache-daemon" ] || [ ! -x "$dir/zccache-ci" ]; then
      build_from_source "$dir"
    fi
    echo "$dir" >>"$GITHUB_PATH"
    "$dir/zccache" --version
    ;;
  *)
    echo "usage: install.sh plan|install" >&2
    exit 2
    ;;
esac
