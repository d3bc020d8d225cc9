#!/usr/bin/env bash
# A release archive end to end, on this machine only: packages the binaries in BIN_DIR with
# `scripts/build-release.sh --package-only`, serves the archive from 127.0.0.1 (python3's
# http.server, with GitHub's redirect of releases/latest added), and installs it with
# install.sh under dash (POSIX sh, as `curl … | sh` runs it) from a copy outside the checkout,
# through ZCCACHE_RELEASE_URL. Checks that:
#   - the four binaries are installed, executable, identical to the archive's, and
#     `zccache --version` prints the version; the published install.sh (version stamped in)
#     installs that version without being told it; told nothing, install.sh installs the
#     release that <repo>/releases/latest redirects to (ZCCACHE_REPO_URL, served here);
#   - a corrupted archive, and a wrong .sha256, are refused (non-zero exit) with nothing installed;
#   - in GitHub Actions (GITHUB_PATH set) the bin directory is appended to GITHUB_PATH;
#   - archives with a `../` member, an absolute member or a symlink are refused, nothing
#     written outside the temporary directory;
#   - a Windows archive is a .zip with the same layout (the .exe files).
# Nothing is sent anywhere but 127.0.0.1.
#
#   tests/install/release-archive.sh BIN_DIR     (BIN_DIR: zccache, zccache-daemon, zccache-ci,
#                                                 zccache-download built for this machine)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
[ $# -eq 1 ] || { echo "usage: $0 BIN_DIR" >&2; exit 2; }
bin_dir="$(cd "$1" && pwd)"
command -v dash >/dev/null 2>&1 || { echo "release-archive: dash is needed (apt-get install dash)" >&2; exit 1; }

binaries=(zccache zccache-daemon zccache-ci zccache-download)
version="$("$repo/scripts/build-release.sh" --print-version)"
case "$(uname -m)" in
  x86_64 | amd64) arch=x86_64 ;;
  aarch64 | arm64) arch=aarch64 ;;
  *) echo "release-archive: no release archive for $(uname -m)" >&2; exit 1 ;;
esac
case "$(uname -s)" in
  Linux) triple="$arch-unknown-linux-musl" ;;
  Darwin) triple="$arch-apple-darwin" ;;
  *) echo "release-archive: no release archive for $(uname -s)" >&2; exit 1 ;;
esac
name="zccache-v$version-$triple"
archive="$name.tar.gz"

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
passed=0
fail() { echo "release-archive: FAILED: $*" >&2; exit 1; }
pass() { passed=$((passed + 1)); echo "    ok: $*"; }

echo "==> packaging $bin_dir as $archive"
"$repo/scripts/build-release.sh" --package-only "$bin_dir" --triple "$triple" --out "$work/dist" >/dev/null
for file in "$archive" "$archive.sha256" install.sh install.ps1; do
  [ -f "$work/dist/$file" ] || fail "build-release.sh wrote no $file"
done
(cd "$work/dist" && sha256sum -c --quiet "$archive.sha256") || fail "$archive.sha256 does not match the archive"
tar -tzf "$work/dist/$archive" > "$work/members"
tops="$(cut -d/ -f1 "$work/members" | sort -u)"
[ "$tops" = "$name" ] || fail "the archive's top level is '$tops', not $name/"
for file in "${binaries[@]}" README.md LICENSE-MIT LICENSE-APACHE; do
  grep -qx "$name/$file" "$work/members" || fail "the archive holds no $name/$file"
done
grep -qx "stamped_version=\"$version\"" "$work/dist/install.sh" || fail "the published install.sh is not stamped with $version"
grep -q "^    \$StampedVersion = '$version'\$" "$work/dist/install.ps1" || fail "the published install.ps1 is not stamped with $version"
# What the archive holds, to compare the installed files with.
mkdir "$work/expected"
tar -xzf "$work/dist/$archive" -C "$work/expected"
pass "$archive: one top-level directory, the binaries, README and licences; its .sha256; install scripts stamped with $version"

# The server: python3's http.server on a free port of 127.0.0.1, serving one directory per
# case, and GitHub's redirect of <repo>/releases/latest to <repo>/releases/tag/v<version>.
mkdir -p "$work/srv/good" "$work/srv/corrupt" "$work/srv/badsum" "$work/srv/evil" "$work/srv/abs" "$work/srv/link" \
  "$work/srv/repo/releases/download/v$version"
cp "$work/dist/$archive" "$work/dist/$archive.sha256" "$work/srv/good/"
cp "$work/dist/$archive" "$work/dist/$archive.sha256" "$work/srv/repo/releases/download/v$version/"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat > "$work/server.py" <<'PY'
import functools, http.server, sys
port, directory, version = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class Handler(http.server.SimpleHTTPRequestHandler):
    def latest(self):
        if self.path.rstrip("/").endswith("/releases/latest"):
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{port}/repo/releases/tag/v{version}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        return False
    def do_GET(self):
        if not self.latest():
            super().do_GET()
    def do_HEAD(self):
        if not self.latest():
            super().do_HEAD()
handler = functools.partial(Handler, directory=directory)
http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()
PY
python3 "$work/server.py" "$port" "$work/srv" "$version" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fs -o /dev/null "http://127.0.0.1:$port/good/$archive.sha256" && break
  sleep 0.1
done
curl -fs -o /dev/null "http://127.0.0.1:$port/good/$archive.sha256" || fail "the local server did not start (see $(cat "$work/server.log"))"

# install.sh copied outside the checkout, so that it cannot take the from-source path.
mkdir "$work/script"
cp "$repo/install.sh" "$work/script/install.sh"
# run_install CASE PREFIX [args...]: the environment of a user's shell, GITHUB_PATH unset.
run_install() {
  local case="$1" prefix="$2"
  shift 2
  (cd "$work/script" && env -u GITHUB_PATH -u ZCCACHE_VERSION ZCCACHE_RELEASE_URL="http://127.0.0.1:$port/$case" \
    dash ./install.sh --release --prefix "$prefix" --no-demo "$@")
}
assert_nothing_installed() {
  local bin
  for bin in "${binaries[@]}"; do
    if [ -e "$1/bin/$bin" ] || [ -e "$1/bin/.$bin.new" ]; then fail "$1/bin/$bin was installed: $2"; fi
  done
}

echo "==> dash install.sh --release --version $version from http://127.0.0.1:$port/good"
run_install good "$work/p1" --version "$version" > "$work/p1.log" 2>&1 || { cat "$work/p1.log"; fail "install.sh failed"; }
for bin in "${binaries[@]}"; do
  if [ ! -f "$work/p1/bin/$bin" ] || [ ! -x "$work/p1/bin/$bin" ]; then fail "$work/p1/bin/$bin is not an installed executable"; fi
  cmp -s "$work/p1/bin/$bin" "$work/expected/$name/$bin" || fail "$work/p1/bin/$bin differs from the archive's"
done
printed="$("$work/p1/bin/zccache" --version)" || fail "zccache --version failed"
case "$printed" in *"$version"*) ;; *) fail "zccache --version prints '$printed', not $version" ;; esac
grep -qF "sha256 $(cut -d' ' -f1 "$work/dist/$archive.sha256") (verified)" "$work/p1.log" || fail "install.sh did not say it verified the checksum"
pass "installed the four binaries, identical to the archive's; zccache --version prints $version"

# The published install.sh knows its version (no --version, no latest release looked up).
cp "$work/dist/install.sh" "$work/script/published-install.sh"
(cd "$work/script" && env -u GITHUB_PATH -u ZCCACHE_VERSION ZCCACHE_RELEASE_URL="http://127.0.0.1:$port/good" \
  dash ./published-install.sh --prefix "$work/p1b" --no-demo) > "$work/p1b.log" 2>&1 ||
  { cat "$work/p1b.log"; fail "the published install.sh failed"; }
cmp -s "$work/p1b/bin/zccache" "$work/expected/$name/zccache" || fail "the published install.sh installed another zccache"
pass "the published install.sh installs v$version without --version"

# No version anywhere: the latest release, found from the redirect, from the default URL.
(cd "$work/script" && env -u GITHUB_PATH -u ZCCACHE_VERSION -u ZCCACHE_RELEASE_URL ZCCACHE_REPO_URL="http://127.0.0.1:$port/repo" \
  dash ./install.sh --release --prefix "$work/p1c" --no-demo) > "$work/p1c.log" 2>&1 ||
  { cat "$work/p1c.log"; fail "install.sh failed to install the latest release"; }
grep -qF "downloading http://127.0.0.1:$port/repo/releases/download/v$version/$archive" "$work/p1c.log" ||
  { cat "$work/p1c.log"; fail "install.sh did not download the latest release from <repo>/releases/download/v$version"; }
cmp -s "$work/p1c/bin/zccache-daemon" "$work/expected/$name/zccache-daemon" || fail "the latest release's zccache-daemon differs"
pass "without a version: the latest release (v$version, from <repo>/releases/latest's redirect) from <repo>/releases/download/v$version"

# A corrupted archive (one byte changed), and a .sha256 that names another archive.
cp "$work/dist/$archive" "$work/dist/$archive.sha256" "$work/srv/corrupt/"
python3 - "$work/srv/corrupt/$archive" <<'PY'
import sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
data[len(data) // 2] ^= 0xFF
open(path, "wb").write(data)
PY
if run_install corrupt "$work/p2" --version "$version" > "$work/p2.log" 2>&1; then fail "a corrupted archive was installed"; fi
grep -q "checksum mismatch" "$work/p2.log" || { cat "$work/p2.log"; fail "no checksum message for a corrupted archive"; }
assert_nothing_installed "$work/p2" "corrupted archive"
cp "$work/dist/$archive" "$work/srv/badsum/"
echo "$(printf '0%.0s' $(seq 1 64))  $archive" > "$work/srv/badsum/$archive.sha256"
if run_install badsum "$work/p2" --version "$version" > "$work/p2b.log" 2>&1; then fail "an archive with a wrong .sha256 was installed"; fi
grep -q "checksum mismatch" "$work/p2b.log" || { cat "$work/p2b.log"; fail "no checksum message for a wrong .sha256"; }
assert_nothing_installed "$work/p2" "wrong .sha256"
pass "a corrupted archive and a wrong .sha256 are refused, nothing installed: $(grep -m1 'checksum mismatch' "$work/p2.log")"

# GitHub Actions: the bin directory appended to GITHUB_PATH.
printf '/already/there\n' > "$work/github_path"
(cd "$work/script" && env -u ZCCACHE_VERSION GITHUB_PATH="$work/github_path" ZCCACHE_RELEASE_URL="http://127.0.0.1:$port/good" \
  dash ./install.sh --release --version "v$version" --prefix "$work/p3" --no-demo) > "$work/p3.log" 2>&1 ||
  { cat "$work/p3.log"; fail "install.sh failed with GITHUB_PATH set"; }
[ "$(cat "$work/github_path")" = "$(printf '/already/there\n%s' "$work/p3/bin")" ] ||
  fail "GITHUB_PATH holds '$(cat "$work/github_path")', not the bin directory appended"
pass "GITHUB_PATH gets $work/p3/bin appended"

# Archives whose members would land outside the unpack directory, each with a right .sha256
# (the member check, not the checksum, refuses them).
python3 - "$work" "$name" "$archive" "$work/expected/$name" <<'PY'
import hashlib, io, os, sys, tarfile
work, name, archive, good = sys.argv[1:5]
cases = {
    "evil": [("../evil", "file")],
    "abs": [(os.path.join(work, "abs-evil"), "file")],
    "link": [(name + "/escape", "symlink")],
}
for case, extras in cases.items():
    path = os.path.join(work, "srv", case, archive)
    with tarfile.open(path, "w:gz") as tar:
        for member in sorted(os.listdir(good)):
            tar.add(os.path.join(good, member), arcname=name + "/" + member)
        for member, kind in extras:
            info = tarfile.TarInfo(member)
            if kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = "/tmp"
                tar.addfile(info)
            else:
                data = b"escaped\n"
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    with open(path + ".sha256", "w") as f:
        f.write(f"{digest}  {archive}\n")
PY
for case in evil abs link; do
  if run_install "$case" "$work/p4/$case" --version "$version" > "$work/p4-$case.log" 2>&1; then
    fail "an archive with a bad member ($case) was installed"
  fi
  grep -q "refusing an archive member" "$work/p4-$case.log" || { cat "$work/p4-$case.log"; fail "no refusal message ($case)"; }
  assert_nothing_installed "$work/p4/$case" "bad member ($case)"
done
for escaped in "$work/evil" "$work/p4/evil" "$work/abs-evil"; do
  if [ -e "$escaped" ]; then fail "a bad member was written: $escaped"; fi
done
pass "archives with '../evil', an absolute member and a symlink are refused: $(grep -m1 'refusing' "$work/p4-evil.log")"

# A Windows archive: a .zip of the .exe files, same layout.
mkdir "$work/win-bin"
for bin in "${binaries[@]}"; do cp "$bin_dir/$bin" "$work/win-bin/$bin.exe"; done
"$repo/scripts/build-release.sh" --package-only "$work/win-bin" --triple x86_64-pc-windows-msvc --out "$work/win" >/dev/null
zip="zccache-v$version-x86_64-pc-windows-msvc.zip"
(cd "$work/win" && sha256sum -c --quiet "$zip.sha256") || fail "$zip.sha256 does not match"
python3 - "$work/win/$zip" "zccache-v$version-x86_64-pc-windows-msvc" <<'PY' || fail "$zip is not laid out as expected"
import sys, zipfile
path, top = sys.argv[1:3]
names = set(zipfile.ZipFile(path).namelist())
want = {f"{top}/{n}" for n in ["zccache.exe", "zccache-daemon.exe", "zccache-ci.exe", "zccache-download.exe",
                                "README.md", "LICENSE-MIT", "LICENSE-APACHE"]}
missing = want - names
outside = [n for n in names if not n.startswith(top + "/")]
if missing or outside:
    sys.exit(f"missing {sorted(missing)}, outside the top directory {outside}")
PY
pass "$zip: the .exe files, README and licences under zccache-v$version-x86_64-pc-windows-msvc/"

echo "release-archive: $passed passed, 0 failed"
