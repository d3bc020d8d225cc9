#!/usr/bin/env bash
# Runs the whole test suite. The integration tests drive real gcc, clang, cmake, ninja and make,
# so they are installed first when missing (Debian/Ubuntu, as root or through sudo).
set -euo pipefail
cd "$(dirname "$0")"

# Each tool and the Debian package that brings it; only the packages of missing tools are
# installed (a machine with Node.js from elsewhere, whose npm comes with it, must not be asked
# to take Debian's npm, which conflicts with it).
missing=()
packages=()
while read -r tool package; do
  if ! command -v "$tool" >/dev/null 2>&1 && ! { [ "$tool" = nginx ] && [ -x /usr/sbin/nginx ]; }; then
    missing+=("$tool")
    packages+=("$package")
  fi
done <<'TOOLS'
gcc gcc
g++ g++
clang clang
clang++ clang
cmake cmake
ninja ninja-build
make make
clang-tidy clang-tidy
include-what-you-use iwyu
emcc emscripten
node nodejs
npm npm
ld.lld lld
python3 python3
zstd zstd
redis-server redis-server
redis-cli redis-server
nginx nginx
TOOLS
python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3-venv)
if [ ${#packages[@]} -gt 0 ]; then
  echo "==> [${SECONDS}s] installing missing tools: ${missing[*]:-python3-venv}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # shellcheck disable=SC2046 # one word per package, deduplicated
  $sudo apt-get install -y -qq $(printf '%s\n' "${packages[@]}" | sort -u) >/dev/null
fi

# rustfmt and clippy are driven by the Rust tests.
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

# The official GitHub cache client (@actions/cache), which tests/gha's cache server is checked
# against, into tests/gha/node_modules (pinned by its package-lock.json).
# tests/action's runner emulator (yaml, @actions/cache) likewise.
for dir in tests/gha tests/action; do
  if [ ! -d "$dir/node_modules/@actions/cache" ]; then
    echo "==> [${SECONDS}s] npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund >/dev/null)
  fi
done

# The S3-compatible server the remote tier's tests start (moto_server), in a private venv.
if ! command -v moto_server >/dev/null 2>&1; then
  if [ ! -x .test-venv/bin/moto_server ]; then
    echo "==> [${SECONDS}s] pip install 'moto[server]' into .test-venv"
    python3 -m venv .test-venv 2>/dev/null || {
      sudo=""
      [ "$(id -u)" = 0 ] || sudo="sudo"
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv .test-venv
    }
    .test-venv/bin/pip install -q 'moto[server]'
  fi
  export PATH="$PWD/.test-venv/bin:$PATH"
fi

# mingw-w64 and Wine for the Windows build and tests below; the Linux suite also cross-links
# a Rust program for x86_64-pc-windows-gnu with mingw's gcc.
if ! command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || ! command -v wine >/dev/null 2>&1; then
  echo "==> [${SECONDS}s] installing mingw-w64 and wine for the Windows build and tests"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -qq --no-install-recommends gcc-mingw-w64-x86-64 wine wine64 >/dev/null 2>&1 ||
    { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends gcc-mingw-w64-x86-64 wine wine64 >/dev/null; }
fi
rustup target list --installed 2>/dev/null | grep -q '^x86_64-pc-windows-gnu$' || rustup target add x86_64-pc-windows-gnu

echo "==> [${SECONDS}s] Linux: cargo test --workspace"
cargo test --workspace --locked "$@"

# Windows (issue 30): every crate builds for x86_64-pc-windows-gnu with mingw; the unit tests
# of the portable crates run under Wine (tests/windows/wine-runner.sh supplies the ProcessPrng
# shim Wine 8 lacks), and the zccache and download daemons run end to end as Windows programs.
echo "==> [${SECONDS}s] Windows: unit tests under Wine"
CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$PWD/tests/windows/wine-runner.sh" \
  cargo test --locked --target x86_64-pc-windows-gnu \
  -p zccache-platform -p zccache-protocol -p zccache-core -p zccache-ipc -p zccache-ino \
  -p zccache-download-client -p zccache-compiler -p zccache-fscache -p zccache-artifact -p zccache-watch
CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$PWD/tests/windows/wine-runner.sh" \
  cargo test --locked --target x86_64-pc-windows-gnu -p zccache-daemon --lib
cargo check --locked --target x86_64-pc-windows-gnu -p zccache-remote -p zccache-client -p zccache-ci
# zccache and the download daemon as Windows programs end to end: each daemon started
# detached on a named pipe, concurrent clients, a Windows tool cached through `zccache exec`,
# cargo.exe and rustc.exe of a Windows-host toolchain (rustup) through RUSTC_WRAPPER, three
# download clients sharing one transfer from nginx, stop.
cargo build --locked --target x86_64-pc-windows-gnu -p zccache-cli -p zccache-download
tests/windows/zccache-e2e.sh "${CARGO_TARGET_DIR:-target}"
tests/windows/rust-e2e.sh "${CARGO_TARGET_DIR:-target}"
ZCCACHE_WATCH=1 tests/windows/rust-e2e.sh "${CARGO_TARGET_DIR:-target}"
tests/windows/download-e2e.sh "${CARGO_TARGET_DIR:-target}"

# macOS (issue 30): every crate (libraries and binaries) type-checks for x86_64-apple-darwin,
# and the zccache client and zccache-download are built and linked for aarch64-apple-darwin
# with cargo-zigbuild, zig (`ziglang` from PyPI, in .zig-venv) compiling the C parts of
# dependencies and linking. The daemon and zccache-ci link Apple's Security and
# CoreFoundation frameworks (the remote tier's Redis client reads the system's root
# certificates), which need the macOS SDK: not available here, so they are checked, not
# linked.
# cargo-zigbuild comes from PyPI as a prebuilt binary (its wheel pulls in ziglang): compiling
# it with `cargo install` cost CI about three minutes.
if [ ! -x .zig-venv/bin/cargo-zigbuild ] || ! .zig-venv/bin/python -c 'import ziglang' 2>/dev/null; then
  echo "==> [${SECONDS}s] pip install cargo-zigbuild and ziglang into .zig-venv"
  [ -x .zig-venv/bin/python ] || python3 -m venv .zig-venv
  .zig-venv/bin/pip install -q cargo-zigbuild==0.24.1 ziglang
fi
for triple in aarch64-apple-darwin x86_64-apple-darwin; do
  rustup target list --installed 2>/dev/null | grep -q "^$triple\$" || rustup target add "$triple"
done
echo "==> [${SECONDS}s] macOS: cargo check for x86_64-apple-darwin"
ZIG_PYTHON="$PWD/.zig-venv/bin/python" CC_x86_64_apple_darwin="$PWD/tests/macos/zig-cc.sh" \
  cargo check --locked --target x86_64-apple-darwin --workspace --exclude zccache-py
echo "==> [${SECONDS}s] macOS: zccache and zccache-download linked for aarch64-apple-darwin (cargo zigbuild)"
PATH="$PWD/.zig-venv/bin:$PATH" \
  cargo zigbuild --locked --target aarch64-apple-darwin -p zccache-cli -p zccache-download \
  --bin zccache --bin zccache-download
for bin in zccache zccache-download; do
  file "${CARGO_TARGET_DIR:-target}/aarch64-apple-darwin/debug/$bin" | grep -q 'Mach-O 64-bit arm64 executable' ||
    { echo "test.sh: $bin is not an arm64 Mach-O executable" >&2; exit 1; }
done

# The Python package, installed the way a user does it (`pip install ./python`: maturin for
# the module, scripts/build-release.sh for the binaries) into a private venv, and its pytest
# suite run against that installation (from outside the source tree, so the installed
# package is the one imported).
echo "==> [${SECONDS}s] pip install ./python into .py-venv, then its pytest suite"
[ -x .py-venv/bin/python ] || python3 -m venv .py-venv
.py-venv/bin/pip install -q "./python[test]"
here="$PWD"
(cd "$(mktemp -d)" && "$here/.py-venv/bin/pytest" -q -p no:cacheprovider "$here/python/tests")

# Release archives: the release binaries built just above (by scripts/build-release.sh, through
# the package's build backend) packaged as this machine's release archive, served from
# 127.0.0.1 and installed by install.sh under dash, as `curl … | sh` runs it. PowerShell cannot
# be installed here, so install.ps1 is parsed with tree-sitter's PowerShell grammar, not run.
echo "==> [${SECONDS}s] release archive: packaged, served from 127.0.0.1, installed by install.sh under dash"
release_bins="$PWD/target/zccache-release"
[ -d "$release_bins" ] || release_bins="$(scripts/build-release.sh)"
tests/install/release-archive.sh "$release_bins"
echo "==> [${SECONDS}s] install.ps1: parsed with tree-sitter's PowerShell grammar"
.py-venv/bin/pip install -q tree-sitter==0.26.1 tree-sitter-powershell==0.26.4
.py-venv/bin/python tests/install/ps1-syntax.py install.ps1
