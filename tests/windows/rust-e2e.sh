#!/usr/bin/env bash
# Rust on Windows through RUSTC_WRAPPER, under Wine: cargo.exe and rustc.exe of a Windows-host
# toolchain (rustup's 1.95.0-x86_64-pc-windows-gnu, installed with --force-non-host) build a
# two-crate workspace with RUSTC_WRAPPER=zccache.exe. The library and the program are two
# misses, then two hits after target\ is deleted (the restored program prints the same), then
# misses again after an edit (the program prints the new text). The program's link is keyed
# by the linker rustc picks on its own: the toolchain's self-contained mingw gcc, since no
# x86_64-w64-mingw32-gcc is on the Windows PATH. With ZCCACHE_WATCH=1 the same runs with the
# daemon's file watcher on (ReadDirectoryChangesW; off by default on Windows).
#
#   tests/windows/rust-e2e.sh TARGET_DIR   (cargo's, holding x86_64-pc-windows-gnu/debug)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target_dir="$(cd "$1" && pwd)"
bin="$target_dir/x86_64-pc-windows-gnu/debug"
exe="$bin/zccache.exe"
[ -f "$exe" ] || { echo "rust-e2e: $exe not built" >&2; exit 1; }
toolchain_name=1.95.0-x86_64-pc-windows-gnu
if ! rustup toolchain list | grep -q "^$toolchain_name"; then
  echo "==> rustup toolchain install $toolchain_name (Windows host, run under Wine)"
  rustup toolchain install "$toolchain_name" --force-non-host --profile minimal >/dev/null 2>&1
fi
toolchain="$(rustup toolchain list -v | awk -v name="$toolchain_name" '$1 == name { print $NF }')"
[ -f "$toolchain/bin/cargo.exe" ] || { echo "rust-e2e: no cargo.exe in $toolchain" >&2; exit 1; }
# shellcheck source=tests/windows/wine-env.sh
. "$here/wine-env.sh"
e2e_scaffold rust-e2e "$exe" stop

wine_env "$target_dir" "$bin"
# The toolchain's programs, and the ones it builds, find the ProcessPrng shim on the path.
export WINEPATH="$(winpath "$toolchain/bin");$(winpath "$wine_shim_dir")"
export ZCCACHE_CACHE_DIR="$(winpath "$work/cache")" CARGO_HOME="$(winpath "$work/cargo-home")"
# rustc 1.95's incremental cache hits a sharing violation under Wine and then panics.
export CARGO_INCREMENTAL=0 RUSTC_WRAPPER="$(winpath "$exe")"

ws="$work/ws"
mkdir -p "$ws/mylib/src" "$ws/myapp/src"
printf '[workspace]\nmembers = ["mylib", "myapp"]\nresolver = "2"\n' > "$ws/Cargo.toml"
printf '[package]\nname = "mylib"\nversion = "0.1.0"\nedition = "2021"\n' > "$ws/mylib/Cargo.toml"
printf '[package]\nname = "myapp"\nversion = "0.1.0"\nedition = "2021"\n[dependencies]\nmylib = { path = "../mylib" }\n' > "$ws/myapp/Cargo.toml"
cat > "$ws/mylib/src/lib.rs" <<'RS'
use std::collections::HashMap;
pub fn greet(name: &str) -> String { format!("hello, {name}") }
pub fn count(words: &[&str]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for w in words { *m.entry(w.to_string()).or_insert(0) += 1; }
    m
}
RS
cat > "$ws/myapp/src/main.rs" <<'RS'
fn main() {
    println!("{}", mylib::greet("wine"));
    println!("a={}", mylib::count(&["a", "b", "a"])["a"]);
}
RS

# Output through files: a Wine process started by this one (the daemon) keeps the Unix
# descriptors it inherited, and a pipe reader would wait for it to exit.
build() {
  (cd "$ws" && wine "$toolchain/bin/cargo.exe" build > "$work/.out" 2> "$work/.err") ||
    fail "cargo build: $(tr -d '\r' < "$work/.err" | tail -5)"
}
run_app() {
  wine "$ws/target/debug/myapp.exe" > "$work/.run" 2>&1 || fail "myapp.exe: $(cat "$work/.run")"
  tr -d '\r' < "$work/.run"
}
stat_of() {
  wine "$exe" status --json > "$work/.st" 2>/dev/null
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['$1'])" "$work/.st"
}

echo "==> cold build: the library and the program are misses"
build
[ "$(run_app)" = "$(printf 'hello, wine\na=2')" ] || fail "cold program: $(run_app)"
[ "$(stat_of misses)" = 2 ] || fail "misses after the cold build: $(stat_of misses) $(cat $work/.st)"
[ "$(stat_of hits)" = 0 ] || fail "hits after the cold build"

echo "==> target deleted: both are hits, and the restored program prints the same"
rm -rf "$ws/target"
build
[ "$(stat_of hits)" = 2 ] || fail "hits after the rebuild: $(stat_of hits)"
[ "$(stat_of misses)" = 2 ] || fail "misses after the rebuild: $(stat_of misses)"
[ "$(run_app)" = "$(printf 'hello, wine\na=2')" ] || fail "program after the hit: $(run_app)"

echo "==> an edit: a miss, and the program prints the new text"
sed -i 's/hello, {name}/goodbye, {name}/' "$ws/mylib/src/lib.rs"
build
[ "$(stat_of misses)" = 4 ] || fail "misses after the edit: $(stat_of misses)"
[ "$(run_app)" = "$(printf 'goodbye, wine\na=2')" ] || fail "program after the edit: $(run_app)"
if [ "${ZCCACHE_WATCH:-}" = 1 ]; then
  # The file watcher (off by default on Windows) ran: its sentinel directory and the
  # directories above it are watched, and every request above synced through it.
  watching="$(stat_of watching)"
  [ "$watching" != None ] || fail "ZCCACHE_WATCH=1: no watcher in status"
  echo "rust-e2e: OK with the file watcher on (watching $watching)"
  exit 0
fi
echo "rust-e2e: OK (hits 2, misses 4: library and program, link included)"
