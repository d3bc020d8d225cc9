#!/usr/bin/env bash
# The zccache action's cache keys and settings, exported through $GITHUB_ENV for the restore
# steps and for the cleanup action (which has no inputs of its own).
set -euo pipefail

# NAME value: a variable for the later steps (multi-line values in the heredoc form).
export_var() {
  local name="$1" value="$2" delim
  delim="ZCCACHE_EOF_$RANDOM$RANDOM"
  printf '%s<<%s\n%s\n%s\n' "$name" "$delim" "$value" "$delim" >>"$GITHUB_ENV"
}

os="${RUNNER_OS:-$(uname -s)}"
shared="${INPUT_SHARED_KEY:-}"
workspace="${GITHUB_WORKSPACE:-$PWD}"
cache_dir="${ZCCACHE_CACHE_DIR:-$HOME/.zccache}"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
target_dir="${INPUT_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$workspace/$target_dir" ;; esac

# The toolchain: its version line and host (a toolchain change changes every key).
rustc_hash="$( (rustc -vV 2>/dev/null || echo no-rustc) | sha256sum | cut -c1-12)"
# Every lockfile of the workspace.
lock_hash="$(cd "$workspace" && find . -name Cargo.lock -not -path './target/*' -not -path "./${INPUT_TARGET_DIR:-target}/*" -print0 2>/dev/null |
  LC_ALL=C sort -z | xargs -0 -r sha256sum | sha256sum | cut -c1-16)"
# The source tree: git's tree id when there is one, else a hash of every file (target and .git
# left out). Target snapshots are restored exactly for the same tree unless asked otherwise.
tree_hash="$(cd "$workspace" && git rev-parse 'HEAD^{tree}' 2>/dev/null | cut -c1-16 || true)"
if [ -z "$tree_hash" ]; then
  tree_hash="$(cd "$workspace" && find . \( -path ./.git -o -path ./target -o -path "./${INPUT_TARGET_DIR:-target}" \) -prune -o -type f -print0 |
    LC_ALL=C sort -z | xargs -0 -r sha256sum | sha256sum | cut -c1-16)"
fi
commit="${GITHUB_SHA:-$tree_hash}"

base="$os-${shared:-default}"
comp="zccache-comp-v1-$base-$rustc_hash"
compilation_key="$comp-$lock_hash-${commit:0:16}"
compilation_restore=""
if [ "${INPUT_COMPILATION_RESTORE_FALLBACK:-true}" = true ]; then
  compilation_restore="$(printf '%s\n%s\n%s' "$comp-$lock_hash-" "$comp-" "zccache-comp-v1-$base-")"
fi
registry_key="zccache-registry-v1-$os-$lock_hash"
registry_restore="zccache-registry-v1-$os-"
registry_paths="$(printf '%s\n%s\n%s' "$cargo_home/registry/index" "$cargo_home/registry/cache" "$cargo_home/git/db")"
tgt="zccache-target-v1-$base-$rustc_hash"
target_key="$tgt-$lock_hash-$tree_hash"
target_restore=""
if [ "${INPUT_TARGET_RESTORE_FALLBACK:-false}" = true ]; then
  target_restore="$(printf '%s\n%s' "$tgt-$lock_hash-" "$tgt-")"
fi

export_var ZCCACHE_CACHE_DIR "$cache_dir"
export_var ZCCACHE_ACTION_NATIVE "${ZCCACHE_NATIVE:-false}"
export_var ZCCACHE_ACTION_CACHE_DIR "$cache_dir"
export_var ZCCACHE_ACTION_COMPILATION_KEY "$compilation_key"
export_var ZCCACHE_ACTION_COMPILATION_RESTORE_KEYS "$compilation_restore"
export_var ZCCACHE_ACTION_REGISTRY_KEY "$registry_key"
export_var ZCCACHE_ACTION_REGISTRY_RESTORE_KEYS "$registry_restore"
export_var ZCCACHE_ACTION_REGISTRY_PATHS "$registry_paths"
export_var ZCCACHE_ACTION_TARGET_KEY "$target_key"
export_var ZCCACHE_ACTION_TARGET_RESTORE_KEYS "$target_restore"
export_var ZCCACHE_ACTION_TARGET_DIR "$target_dir"
export_var ZCCACHE_ACTION_SNAPSHOT_DIR "${RUNNER_TEMP:-/tmp}/zccache-target"
export_var ZCCACHE_ACTION_CACHE_COMPILATION "${INPUT_CACHE_COMPILATION:-true}"
export_var ZCCACHE_ACTION_CACHE_REGISTRY "${INPUT_CACHE_CARGO_REGISTRY:-true}"
export_var ZCCACHE_ACTION_CACHE_TARGET "${INPUT_CACHE_TARGET:-false}"
export_var ZCCACHE_ACTION_SAVE_CACHE "${INPUT_SAVE_CACHE:-true}"
export_var ZCCACHE_ACTION_SNAPSHOT_MODE "${INPUT_TARGET_SNAPSHOT_MODE:-hot}"
export_var ZCCACHE_ACTION_SNAPSHOT_MAX_SIZE "${INPUT_TARGET_SNAPSHOT_MAX_SIZE:-2GiB}"
export_var ZCCACHE_ACTION_SNAPSHOT_TOO_LARGE "${INPUT_TARGET_SNAPSHOT_TOO_LARGE:-skip}"
export_var ZCCACHE_ACTION_PRUNE_INCREMENTAL "${INPUT_TARGET_PRUNE_INCREMENTAL:-true}"
export_var ZCCACHE_ACTION_PRUNE_BUILD_SCRIPT_OUT "${INPUT_TARGET_PRUNE_BUILD_SCRIPT_OUT:-false}"
mkdir -p "${RUNNER_TEMP:-/tmp}/zccache-target"
echo "compilation key: $compilation_key"
echo "registry key:    $registry_key"
echo "target key:      $target_key"
