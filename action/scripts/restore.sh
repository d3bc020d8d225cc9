#!/usr/bin/env bash
# Restores the enabled layers with zccache's own client of the cache service. A miss or a
# failure is reported and the job goes on (outputs: compilation, registry, target = the key
# restored, empty when none).
set -uo pipefail

# Prints --restore-key for each line of $1.
restore_keys() {
  local line
  while IFS= read -r line; do
    [ -n "$line" ] && printf -- '--restore-key\n%s\n' "$line"
  done <<<"$1"
}
# Prints --path for each line of $1.
paths() {
  local line
  while IFS= read -r line; do
    [ -n "$line" ] && printf -- '--path\n%s\n' "$line"
  done <<<"$1"
}

if [ "$ZCCACHE_ACTION_CACHE_COMPILATION" = true ]; then
  mapfile -t extra < <(restore_keys "$ZCCACHE_ACTION_COMPILATION_RESTORE_KEYS")
  if matched="$(zccache gha-cache restore --cache --key "$ZCCACHE_ACTION_COMPILATION_KEY" "${extra[@]}")"; then
    echo "compilation=$matched" >>"$GITHUB_OUTPUT"
  fi
fi
if [ "$ZCCACHE_ACTION_CACHE_REGISTRY" = true ]; then
  mapfile -t extra < <(restore_keys "$ZCCACHE_ACTION_REGISTRY_RESTORE_KEYS"; paths "$ZCCACHE_ACTION_REGISTRY_PATHS")
  if matched="$(zccache gha-cache restore --key "$ZCCACHE_ACTION_REGISTRY_KEY" "${extra[@]}")"; then
    echo "registry=$matched" >>"$GITHUB_OUTPUT"
  fi
fi
if [ "$ZCCACHE_ACTION_CACHE_TARGET" = true ]; then
  mapfile -t extra < <(restore_keys "$ZCCACHE_ACTION_TARGET_RESTORE_KEYS")
  if matched="$(zccache gha-cache restore --key "$ZCCACHE_ACTION_TARGET_KEY" "${extra[@]}" --path "$ZCCACHE_ACTION_SNAPSHOT_DIR")"; then
    echo "target=$matched" >>"$GITHUB_OUTPUT"
  fi
fi
exit 0
