#!/usr/bin/env bash
# The cleanup action: statistics, stop the daemon (which makes every stored result durable),
# then prune and save the enabled layers. With the cache runtime the saves go through
# zccache gha-cache; without it this script says which layers the actions/cache steps after
# it must save (outputs compilation, registry, target = save). Only an oversized target
# snapshot with target-snapshot-too-large: fail fails it.
set -uo pipefail

if ! command -v zccache >/dev/null; then
  echo "::warning::zccache is not installed (did the setup action run?); nothing to save"
  exit 0
fi
zccache status || true
zccache stop || true

if [ "${ZCCACHE_ACTION_SAVE_CACHE:-true}" != true ]; then
  echo "save-cache is false: nothing saved"
  exit 0
fi
native="${ZCCACHE_ACTION_NATIVE:-false}"
status=0

if [ "${ZCCACHE_ACTION_CACHE_COMPILATION:-true}" = true ]; then
  if [ "$native" = true ]; then
    zccache gha-cache save --cache --key "$ZCCACHE_ACTION_COMPILATION_KEY" || true
  elif [ "${ZCCACHE_ACTION_RESTORED_COMPILATION:-}" != "$ZCCACHE_ACTION_COMPILATION_KEY" ]; then
    echo "compilation=save" >>"$GITHUB_OUTPUT"
  fi
fi

if [ "${ZCCACHE_ACTION_CACHE_REGISTRY:-true}" = true ] && [ "${ZCCACHE_ACTION_RESTORED_REGISTRY:-}" != "$ZCCACHE_ACTION_REGISTRY_KEY" ]; then
  registry=()
  while IFS= read -r path; do
    [ -e "$path" ] && registry+=(--path "$path")
  done <<<"$ZCCACHE_ACTION_REGISTRY_PATHS"
  if [ ${#registry[@]} -eq 0 ]; then
    echo "no cargo registry to save"
  elif [ "$native" = true ]; then
    # All three paths, existing or not: the entry's version is made from the paths.
    mapfile -t all < <(while IFS= read -r p; do printf -- '--path\n%s\n' "$p"; done <<<"$ZCCACHE_ACTION_REGISTRY_PATHS")
    zccache gha-cache save --key "$ZCCACHE_ACTION_REGISTRY_KEY" "${all[@]}" || true
  else
    echo "registry=save" >>"$GITHUB_OUTPUT"
  fi
fi

if [ "${ZCCACHE_ACTION_CACHE_TARGET:-false}" = true ] && [ -d "$ZCCACHE_ACTION_TARGET_DIR" ]; then
  if [ "${ZCCACHE_ACTION_RESTORED_TARGET:-}" = "$ZCCACHE_ACTION_TARGET_KEY" ]; then
    echo "target snapshot $ZCCACHE_ACTION_TARGET_KEY was restored exactly: not saved again"
  else
    mkdir -p "$ZCCACHE_ACTION_SNAPSHOT_DIR"
    snapshot="$ZCCACHE_ACTION_SNAPSHOT_DIR/target.tzst"
    rm -f "$snapshot"
    if zccache target-snapshot save \
      --target-dir "$ZCCACHE_ACTION_TARGET_DIR" \
      --workspace "$GITHUB_WORKSPACE" \
      --mode "$ZCCACHE_ACTION_SNAPSHOT_MODE" \
      --max-size "$ZCCACHE_ACTION_SNAPSHOT_MAX_SIZE" \
      --too-large "$ZCCACHE_ACTION_SNAPSHOT_TOO_LARGE" \
      --prune-incremental "$ZCCACHE_ACTION_PRUNE_INCREMENTAL" \
      --prune-build-script-out "$ZCCACHE_ACTION_PRUNE_BUILD_SCRIPT_OUT" \
      --output "$snapshot"; then
      if [ -f "$snapshot" ]; then
        if [ "$native" = true ]; then
          zccache gha-cache save --key "$ZCCACHE_ACTION_TARGET_KEY" --path "$ZCCACHE_ACTION_SNAPSHOT_DIR" || true
        else
          echo "target=save" >>"$GITHUB_OUTPUT"
        fi
      fi
    else
      echo "::error::zccache: the target snapshot was not saved (target-snapshot-too-large: fail)"
      status=1
    fi
  fi
fi
exit $status
