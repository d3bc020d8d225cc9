#!/usr/bin/env bash
# After the restores: the target snapshot and warm (cache-target), the daemon, RUSTC_WRAPPER,
# and the action's outputs.
set -uo pipefail

compilation="${NATIVE_COMPILATION:-}${FALLBACK_COMPILATION:-}"
registry="${NATIVE_REGISTRY:-}${FALLBACK_REGISTRY:-}"
target="${NATIVE_TARGET:-}${FALLBACK_TARGET:-}"
{
  echo "ZCCACHE_ACTION_RESTORED_COMPILATION=$compilation"
  echo "ZCCACHE_ACTION_RESTORED_REGISTRY=$registry"
  echo "ZCCACHE_ACTION_RESTORED_TARGET=$target"
} >>"$GITHUB_ENV"

snapshot="$ZCCACHE_ACTION_SNAPSHOT_DIR/target.tzst"
if [ "$ZCCACHE_ACTION_CACHE_TARGET" = true ] && [ -n "$target" ] && [ -f "$snapshot" ]; then
  if zccache target-snapshot restore --archive "$snapshot" --target-dir "$ZCCACHE_ACTION_TARGET_DIR" --workspace "$GITHUB_WORKSPACE"; then
    # Backfill what the snapshot lacks, for each profile (and target triple) it holds.
    lockfile="$GITHUB_WORKSPACE/Cargo.lock"
    for deps in "$ZCCACHE_ACTION_TARGET_DIR"/*/deps "$ZCCACHE_ACTION_TARGET_DIR"/*/*/deps; do
      [ -d "$deps" ] && [ -f "$lockfile" ] || continue
      rel="${deps#"$ZCCACHE_ACTION_TARGET_DIR"/}"
      rel="${rel%/deps}"
      if [ "${rel%/*}" != "$rel" ]; then
        zccache warm --target-dir "$ZCCACHE_ACTION_TARGET_DIR" --target "${rel%/*}" --profile "${rel#*/}" --lockfile "$lockfile" || true
      else
        zccache warm --target-dir "$ZCCACHE_ACTION_TARGET_DIR" --profile "$rel" --lockfile "$lockfile" || true
      fi
    done
  else
    echo "::warning::zccache: the target snapshot could not be restored; building without it"
    target=""
  fi
fi

if [ "$ZCCACHE_ACTION_CACHE_COMPILATION" = true ]; then
  zccache start || echo "::warning::zccache: the daemon did not start; compiles run uncached"
  echo "RUSTC_WRAPPER=zccache" >>"$GITHUB_ENV"
  # Incremental compilation writes per-session state that no cache can share.
  [ -n "${CARGO_INCREMENTAL:-}" ] || echo "CARGO_INCREMENTAL=0" >>"$GITHUB_ENV"
fi

hit() { [ -n "$1" ] && echo true || echo false; }
{
  echo "cache-hit-compilation=$(hit "$compilation")"
  echo "cache-hit-registry=$(hit "$registry")"
  echo "cache-hit-target=$(hit "$target")"
} >>"$GITHUB_OUTPUT"
exit 0
