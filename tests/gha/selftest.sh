#!/usr/bin/env bash
# Self-test of tests/gha/server.py against the official @actions/cache client
# (driven through tests/gha/actions-cache.mjs). Starts the server on a free
# 127.0.0.1 port in a temp dir, runs the checks, stops the server.
# Exits non-zero if any check fails. Needs python3, node, npm, curl, tar, zstd.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HARNESS="$HERE/actions-cache.mjs"
PYTHON="${PYTHON:-python3}"
NODE="${NODE:-node}"

PASSED=0
FAILED=0
SERVER_PID=""
T="$(mktemp -d "${TMPDIR:-/tmp}/zccache-gha-selftest.XXXXXX")"

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[selftest] %s\n' "$*" >&2; }
pass() { PASSED=$((PASSED + 1)); log "PASS: $1"; }
fail() {
    FAILED=$((FAILED + 1))
    log "FAIL: $1"
    if [ -n "${2:-}" ] && [ -f "$2" ]; then
        log "---- last lines of $2 ----"
        tail -n 25 "$2" >&2
        log "----"
    fi
}

# json FIELD: read a top-level field of the JSON document on stdin (prints
# "null" for null, true/false for booleans).
json() {
    "$PYTHON" -c 'import json,sys
v = json.load(sys.stdin)
for part in sys.argv[1].split("."):
    v = v[int(part)] if isinstance(v, list) else v.get(part)
print(json.dumps(v) if not isinstance(v, str) else v)' "$1"
}

# ---- dependencies ---------------------------------------------------------
if [ ! -f "$HERE/node_modules/@actions/cache/package.json" ]; then
    log "installing npm dependencies into $HERE/node_modules"
    if [ -f "$HERE/package-lock.json" ]; then
        (cd "$HERE" && npm ci --no-audit --no-fund) >&2 || { log "npm ci failed"; exit 1; }
    else
        npm install --prefix "$HERE" --no-audit --no-fund >&2 || { log "npm install failed"; exit 1; }
    fi
fi

# ---- server ---------------------------------------------------------------
"$PYTHON" "$HERE/server.py" --port-file "$T/port" --data-dir "$T/data" 2>"$T/server.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do
    [ -s "$T/port" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
if [ ! -s "$T/port" ]; then
    log "server did not start"
    cat "$T/server.log" >&2
    exit 1
fi
PORT="$(cat "$T/port")"
BASE="http://127.0.0.1:$PORT"
log "server pid $SERVER_PID on $BASE"

TOKEN="selftest-secret-token-$RANDOM$RANDOM"
export ACTIONS_RESULTS_URL="$BASE/"
export ACTIONS_CACHE_URL="$BASE/"
export ACTIONS_RUNTIME_TOKEN="$TOKEN"
export ACTIONS_CACHE_SERVICE_V2=true
export GITHUB_WORKSPACE="$T/ws"
export RUNNER_TEMP="$T/runner-temp"
unset GITHUB_SERVER_URL RUNNER_DEBUG
mkdir -p "$GITHUB_WORKSPACE" "$RUNNER_TEMP"
cd "$GITHUB_WORKSPACE" || exit 1

TWIRP="$BASE/twirp/github.actions.results.api.v1.CacheService"
control() { curl -sS -X POST -H 'Content-Type: application/json' --data "$1" "$BASE/_control" >/dev/null; }
server_stat() { curl -sS "$BASE/_stats" | json "$1"; }

# run_harness NAME ARGS...: runs the harness, stdout -> $OUT, stderr -> $T/NAME.log
run_harness() {
    local name="$1"
    shift
    OUT="$("$NODE" "$HARNESS" "$@" 2>"$T/$name.log")"
    RC=$?
}

SUFFIX="$RANDOM$RANDOM"

# ---- 1. version string ----------------------------------------------------
run_harness version version data
expected="$(printf '%s' "data|zstd-without-long|1.0" | sha256sum | cut -d' ' -f1)"
if [ "$RC" = 0 ] && [ "$OUT" = "$expected" ]; then
    pass "version string = sha256(paths|compression|salt)"
else
    fail "version: got '$OUT' rc=$RC, expected $expected" "$T/version.log"
fi

# ---- 2. save + exact restore ----------------------------------------------
mkdir -p data/sub/deeper data/empty-dir
printf 'hello\n' >data/a.txt
: >data/empty-file
printf 'with space\n' >"data/sub/name with space.txt"
head -c 100000 /dev/urandom >data/sub/deeper/random.bin
ln -s ../a.txt data/sub/link-to-a
KEY_A="selftest-a-$SUFFIX"

run_harness save-a save "$KEY_A" data
id_a="$(printf '%s' "$OUT" | json cacheId 2>/dev/null)"
if [ "$RC" = 0 ] && [ -n "$id_a" ] && [ "$id_a" -gt 0 ] 2>/dev/null; then
    pass "save $KEY_A -> cacheId $id_a"
else
    fail "save $KEY_A: rc=$RC out='$OUT'" "$T/save-a.log"
fi

mv data data.orig
run_harness restore-a restore "$KEY_A" data
matched="$(printf '%s' "$OUT" | json matchedKey 2>/dev/null)"
if [ "$RC" = 0 ] && [ "$matched" = "$KEY_A" ] && diff -r --no-dereference data.orig data >"$T/diff-a.log" 2>&1; then
    pass "exact restore is byte-identical"
else
    fail "exact restore: rc=$RC matched='$matched'" "$T/restore-a.log"
    cat "$T/diff-a.log" >&2
fi
rm -rf data && mv data.orig data

# ---- 3. second save of the same key (409) --------------------------------
conflicts_before="$(server_stat create_conflict)"
run_harness save-a2 save "$KEY_A" data
conflicts_after="$(server_stat create_conflict)"
if [ "$RC" = 0 ] && [ "$(printf '%s' "$OUT" | json cacheId)" = "-1" ] &&
    [ "$conflicts_after" -eq $((conflicts_before + 1)) ] &&
    grep -q 'Failed to save: Unable to reserve cache' "$T/save-a2.log"; then
    pass "duplicate save: 409 -> client logs 'Failed to save', returns -1, no throw"
else
    fail "duplicate save: rc=$RC out='$OUT' conflicts $conflicts_before->$conflicts_after" "$T/save-a2.log"
fi

# ---- 4. restore-key prefix fallback, newest first -------------------------
mkdir -p pfx && echo one >pfx/f
run_harness save-p1 save "selftest-p-$SUFFIX-1" pfx
echo two >pfx/f
run_harness save-p2 save "selftest-p-$SUFFIX-2" pfx
rm -rf pfx
run_harness restore-miss restore "missing-$SUFFIX" data --restore-key "selftest-a-"
m1="$(printf '%s' "$OUT" | json matchedKey 2>/dev/null)"
run_harness restore-pfx restore "missing-$SUFFIX" pfx --restore-key "nothing-$SUFFIX" --restore-key "selftest-p-$SUFFIX-"
m2="$(printf '%s' "$OUT" | json matchedKey 2>/dev/null)"
content="$(cat pfx/f 2>/dev/null)"
if [ "$m1" = "$KEY_A" ] && [ "$m2" = "selftest-p-$SUFFIX-2" ] && [ "$content" = two ]; then
    pass "restore-key prefix match (newest entry wins)"
else
    fail "restore-key: m1='$m1' m2='$m2' content='$content'" "$T/restore-pfx.log"
fi
run_harness restore-none restore "missing-$SUFFIX" nothing --restore-key "also-missing-$SUFFIX"
if [ "$RC" = 0 ] && [ "$(printf '%s' "$OUT" | json matchedKey)" = "null" ]; then
    pass "complete miss -> matchedKey null"
else
    fail "complete miss: rc=$RC out='$OUT'" "$T/restore-none.log"
fi

# ---- 5. large archive -> staged blocks ------------------------------------
# @actions/cache v2 uploads with BlockBlobClient.uploadFile(maxSingleShotSize
# 128 MiB, blockSize 64 MiB): only a >128 MiB archive is sent in blocks.
mkdir -p big
head -c $((136 * 1024 * 1024)) /dev/urandom >big/random.bin
blocks_before="$(server_stat blocks_staged)"
KEY_BIG="selftest-big-$SUFFIX"
run_harness save-big save "$KEY_BIG" big
blocks_after="$(server_stat blocks_staged)"
id_big="$(printf '%s' "$OUT" | json cacheId 2>/dev/null)"
mv big big.orig
run_harness restore-big restore "$KEY_BIG" big
m="$(printf '%s' "$OUT" | json matchedKey 2>/dev/null)"
if [ -n "$id_big" ] && [ "$id_big" -gt 0 ] 2>/dev/null && [ "$blocks_after" -gt "$blocks_before" ] &&
    [ "$m" = "$KEY_BIG" ] && cmp -s big.orig/random.bin big/random.bin; then
    pass "large archive: $((blocks_after - blocks_before)) blocks staged, round-trip identical"
else
    fail "large archive: id='$id_big' blocks $blocks_before->$blocks_after matched='$m'" "$T/save-big.log"
    tail -n 20 "$T/restore-big.log" >&2
fi
rm -rf big big.orig

# ---- 6. throttling (429 + Retry-After) ------------------------------------
control '{"throttle": 1, "retry_after": 1}'
thr_before="$(server_stat throttled)"
echo throttled >data/throttle.txt
run_harness save-thr save "selftest-thr-$SUFFIX" data
thr_after="$(server_stat throttled)"
id_thr="$(printf '%s' "$OUT" | json cacheId 2>/dev/null)"
if [ "$RC" = 0 ] && [ -n "$id_thr" ] && [ "$id_thr" -gt 0 ] 2>/dev/null && [ "$thr_after" -eq $((thr_before + 1)) ]; then
    pass "save survives one 429"
else
    fail "throttled save: rc=$RC out='$OUT' throttled $thr_before->$thr_after" "$T/save-thr.log"
fi
rm data/throttle.txt
control '{"throttle": 1, "retry_after": 1}'
mv data data.orig
run_harness restore-thr restore "$KEY_A" data
if [ "$RC" = 0 ] && [ "$(printf '%s' "$OUT" | json matchedKey)" = "$KEY_A" ] && diff -r --no-dereference data.orig data >/dev/null 2>&1; then
    pass "restore survives one 429"
else
    fail "throttled restore: rc=$RC out='$OUT'" "$T/restore-thr.log"
fi
rm -rf data && mv data.orig data

# ---- 7. read-only token ---------------------------------------------------
control '{"read_only_tokens": ["selftest-read-only"]}'
KEY_RO="selftest-ro-$SUFFIX"
ACTIONS_RUNTIME_TOKEN=selftest-read-only run_harness save-ro save "$KEY_RO" data
ro_entries="$(curl -sS "$BASE/_entries" | "$PYTHON" -c 'import json,sys; print(sum(e["key"]==sys.argv[1] for e in json.load(sys.stdin)))' "$KEY_RO")"
if [ "$RC" = 0 ] && [ "$(printf '%s' "$OUT" | json cacheId)" = "-1" ] && [ "$ro_entries" = 0 ] &&
    grep -q 'Failed to save' "$T/save-ro.log"; then
    pass "read-only save: 403 -> client logs 'Failed to save', returns -1, no entry"
else
    fail "read-only save: rc=$RC out='$OUT' entries=$ro_entries" "$T/save-ro.log"
fi
mv data data.orig
ACTIONS_RUNTIME_TOKEN=selftest-read-only run_harness restore-ro restore "$KEY_A" data
if [ "$RC" = 0 ] && [ "$(printf '%s' "$OUT" | json matchedKey)" = "$KEY_A" ] && diff -r --no-dereference data.orig data >/dev/null 2>&1; then
    pass "read-only restore works"
else
    fail "read-only restore: rc=$RC out='$OUT'" "$T/restore-ro.log"
fi
rm -rf data && mv data.orig data
control '{"read_only_tokens": []}'

# ---- 8. raw protocol checks -----------------------------------------------
VERSION_A="$(printf '%s' "data|zstd-without-long|1.0" | sha256sum | cut -d' ' -f1)"
code="$(curl -sS -o "$T/noauth.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    --data "{\"key\":\"$KEY_A\",\"version\":\"$VERSION_A\"}" "$TWIRP/GetCacheEntryDownloadURL")"
if [ "$code" = 401 ] && [ "$(json code <"$T/noauth.json")" = unauthenticated ]; then
    pass "missing token -> 401 unauthenticated"
else
    fail "missing token: HTTP $code $(cat "$T/noauth.json")"
fi

curl -sS -o "$T/url.json" -X POST -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" \
    --data "{\"key\":\"$KEY_A\",\"restore_keys\":[],\"version\":\"$VERSION_A\"}" "$TWIRP/GetCacheEntryDownloadURL"
URL="$(json signed_download_url <"$T/url.json")"
SIZE="$(curl -sS "$BASE/_entries" | "$PYTHON" -c 'import json,sys; print([e["size"] for e in json.load(sys.stdin) if e["key"]==sys.argv[1]][0])' "$KEY_A")"
curl -sS -o "$T/full.bin" "$URL"
hdrs="$(curl -sS -D - -o "$T/part.bin" -H 'x-ms-range: bytes=10-19' "$URL")"
if printf '%s' "$hdrs" | grep -q '^HTTP/1.1 206' &&
    printf '%s' "$hdrs" | grep -qi "^content-range: bytes 10-19/$SIZE" &&
    cmp -s "$T/part.bin" <(tail -c +11 "$T/full.bin" | head -c 10); then
    pass "ranged GET (x-ms-range) -> 206 with Content-Range"
else
    fail "ranged GET: $hdrs"
fi
BAD_URL="$(printf '%s' "$URL" | sed 's/sig=[^&]*/sig=AAAA/')"
code="$(curl -sS -o "$T/badsig.xml" -w '%{http_code}' "$BAD_URL")"
if [ "$code" = 403 ] && grep -q '<Code>AuthenticationFailed</Code>' "$T/badsig.xml"; then
    pass "bad SAS sig -> 403 AuthenticationFailed"
else
    fail "bad sig: HTTP $code $(cat "$T/badsig.xml")"
fi
code="$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H 'x-ms-blob-type: BlockBlob' --data-binary x "$URL")"
if [ "$code" = 403 ]; then
    pass "read-only SAS cannot PUT -> 403"
else
    fail "PUT with read SAS: HTTP $code"
fi

if grep -qF "$TOKEN" "$T/server.log" || grep -q 'sig=' "$T/server.log"; then
    fail "server log leaks the token or a SAS signature"
else
    pass "server log has no token or signature"
fi

log "stats: $(curl -sS "$BASE/_stats" | "$PYTHON" -c 'import json,sys; d=json.load(sys.stdin); d.pop("entries"); print(json.dumps(d))')"
echo "selftest: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
