# Sourced by the Windows end-to-end scripts: the Wine environment they share.
#
#   wine_env TARGET_DIR BIN_DIR   builds the ProcessPrng shim once (Wine 8 lacks ProcessPrng,
#                                 which Rust's std needs), puts it beside BIN_DIR's programs,
#                                 and exports a private prefix (TARGET_DIR/wine-prefix) with
#                                 Wine's debug output off
#   e2e_scaffold NAME STOP...     a temp dir in $work, and at exit: the command STOP... (a
#                                 daemon's stop, under wine), then e2e_extra_cleanup if the
#                                 script defines it, wineserver -k, the dir removed;
#                                 `fail MESSAGE` reports as NAME and exits 1
#   winpath PATH                  PATH as Windows programs name it (Wine maps Z: to /)
# The shim's directory is left in $wine_shim_dir, for WINEPATH.
wine_env() {
  local target_dir="$1" bin_dir="$2" here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  wine_shim_dir="$target_dir/wine-shim"
  if [ ! -f "$wine_shim_dir/bcryptprimitives.dll" ]; then
    mkdir -p "$wine_shim_dir"
    x86_64-w64-mingw32-gcc -shared -O2 -o "$wine_shim_dir/bcryptprimitives.dll.tmp" \
      "$here/processprng.c" "$here/bcryptprimitives.def" -ladvapi32
    mv "$wine_shim_dir/bcryptprimitives.dll.tmp" "$wine_shim_dir/bcryptprimitives.dll"
  fi
  cp -f "$wine_shim_dir/bcryptprimitives.dll" "$bin_dir/bcryptprimitives.dll"
  export WINEPREFIX="$target_dir/wine-prefix" WINEDEBUG=-all WINEDLLOVERRIDES="bcryptprimitives=n,b"
  [ -d "$WINEPREFIX" ] || wineboot --init >/dev/null 2>&1 || true
}

winpath() { echo "Z:${1//\//\\}"; }

e2e_scaffold() {
  e2e_name="$1"
  shift
  e2e_stop=("$@")
  work="$(mktemp -d)"
  trap e2e_cleanup EXIT
}

e2e_cleanup() {
  wine "${e2e_stop[@]}" >/dev/null 2>&1 || true
  if declare -F e2e_extra_cleanup >/dev/null; then e2e_extra_cleanup; fi
  wineserver -k 2>/dev/null || true
  rm -rf "$work"
}

fail() { echo "$e2e_name: FAILED: $*" >&2; exit 1; }
