#!/usr/bin/env bash
# The download daemon as a Windows program, under Wine: zccache-download.exe (built for
# x86_64-pc-windows-gnu) starts its daemon detached, which listens on a named pipe; clients
# ask for status, fetch from nginx on the Linux side (rate-limited, so that concurrent clients
# overlap), get the record's 'cached' answer, share one transfer, and stop the daemon.
#
#   tests/windows/download-e2e.sh TARGET_DIR     (TARGET_DIR: cargo's, holding x86_64-pc-windows-gnu/debug)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target_dir="$(cd "$1" && pwd)"
exe="$target_dir/x86_64-pc-windows-gnu/debug/zccache-download.exe"
[ -f "$exe" ] || { echo "download-e2e: $exe not built" >&2; exit 1; }
# shellcheck source=tests/windows/wine-env.sh
. "$here/wine-env.sh"
nginx_pid=""
e2e_extra_cleanup() { if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; fi; }
e2e_scaffold download-e2e "$exe" daemon stop

# The runner's environment: the ProcessPrng shim beside the program, a private prefix.
wine_env "$target_dir" "$(dirname "$exe")"
# A cache root and outputs on the Windows side (Wine maps Z: to /).
export ZCCACHE_CACHE_DIR="$(winpath "$work/cache")"
out="$(winpath "$work/out")"

mkdir -p "$work/www" "$work/nginx/logs"
head -c 8000000 /dev/urandom > "$work/www/blob.bin"
want="$(sha256sum "$work/www/blob.bin" | cut -d' ' -f1)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
n="$work/nginx"
cat > "$n/nginx.conf" <<CONF
daemon off; master_process off; pid $n/nginx.pid; error_log $n/error.log;
events {}
http { access_log $n/access.log; client_body_temp_path $n/body; proxy_temp_path $n/proxy;
  fastcgi_temp_path $n/fcgi; uwsgi_temp_path $n/uwsgi; scgi_temp_path $n/scgi;
  server { listen 127.0.0.1:$port; root $work/www; limit_rate 2m; } }
CONF
/usr/sbin/nginx -p "$n" -e "$n/error.log" -c "$n/nginx.conf" & nginx_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
url="http://127.0.0.1:$port/blob.bin"

# Output through a file, not a pipe: a Wine process started by this one (the daemon) keeps
# the Unix descriptors it inherited, and a pipe reader would wait for it to exit.
dl() {
  local rc=0
  wine "$exe" "$@" > "$work/.out" 2> "$work/.err" || rc=$?
  tr -d '\r' < "$work/.out"
  return $rc
}

dl --json daemon status | grep -q '"running":false' || fail "a daemon ran before the test"
dl --json daemon start | grep -q '"started":true' || fail "daemon start"
status="$(dl --json daemon status)"
echo "$status" | grep -q '"running":true' || fail "daemon status: $status"
echo "$status" | grep -q 'pipe\\\\zccache-' || fail "the endpoint is not a named pipe: $status"

# Three clients at once over the pipe: one transfer (4 s at 2 MiB/s), shared.
clients=()
for i in 1 2 3; do
  wine "$exe" --json fetch "$url" "$out\\blob.bin" --max-connections 1 > "$work/client$i.json" &
  clients+=($!)
done
wait "${clients[@]}"
for i in 1 2 3; do
  grep -q "\"sha256\":\"$want\"" "$work/client$i.json" || fail "client $i: $(cat "$work/client$i.json")"
done
[ "$(sha256sum "$work/out/blob.bin" | cut -d' ' -f1)" = "$want" ] || fail "published file differs"
gets="$(grep -c 'GET /blob.bin' "$n/access.log")"
[ "$gets" = 2 ] || fail "expected one transfer (probe + body = 2 GETs), nginx saw $gets"
dl --json daemon status | grep -q '"shared":2' || fail "two clients did not join: $(dl --json daemon status)"

# The record answers again without a request.
dl fetch "$url" "$out\\blob.bin" | grep -q '^status: cached' || fail "second fetch not cached"
[ "$(grep -c 'GET /blob.bin' "$n/access.log")" = 2 ] || fail "a cached answer sent a request"
dl exists "$url" "$out\\blob.bin" | grep -q '^kind: cached' || fail "exists"

dl daemon stop | grep -q 'stopped' || fail "daemon stop"
dl --json daemon status | grep -q '"running":false' || fail "still running after stop"
echo "download-e2e: ok (daemon over a named pipe, 3 clients sharing 1 transfer, cached repeat, stop)"
