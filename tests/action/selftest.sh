#!/usr/bin/env bash
# Self-test of tests/action/runner.mjs, the one-job GitHub Actions runner
# emulator: runs small jobs (and a throwaway composite action) through it and
# checks what they saw and the final JSON line. The actions/cache checks talk to
# tests/gha/server.py, started on a free 127.0.0.1 port for the duration.
# Exits non-zero if any check fails. Needs node, npm, python3, tar, zstd or gzip.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUNNER="$HERE/runner.mjs"
SERVER="$HERE/../gha/server.py"
PYTHON="${PYTHON:-python3}"
NODE="${NODE:-node}"

PASSED=0
FAILED=0
SERVER_PID=""
T="$(mktemp -d "${TMPDIR:-/tmp}/zccache-action-selftest.XXXXXX")"

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
        tail -n 40 "$2" >&2
        log "----"
    fi
}

# run_job NAME ROOT [runner args...]: runs $T/NAME.yml with --repo $T/repo and
# --runner-root ROOT; stdout in $T/NAME.out, the final JSON line in
# $T/NAME.json, the exit status in $T/NAME.rc.
run_job() {
    local name="$1" root="$2"
    shift 2
    "$NODE" "$RUNNER" --workflow "$T/$name.yml" --repo "$T/repo" --runner-root "$root" "$@" \
        >"$T/$name.out" 2>"$T/$name.err"
    echo $? >"$T/$name.rc"
    tail -n 1 "$T/$name.out" >"$T/$name.json"
    cat "$T/$name.err" >>"$T/$name.out"
}

# expect NAME DESCRIPTION PYTHON-EXPR: the expression is true of the final JSON
# document `d` (with `steps` = d["steps"], `rc` = the exit status, `out` = the
# printed output).
expect() {
    local name="$1" desc="$2" expr="$3"
    if "$PYTHON" - "$T/$name.json" "$T/$name.rc" "$T/$name.out" "$expr" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"final line is not JSON: {e}", file=sys.stderr)
    sys.exit(1)
rc = int(open(sys.argv[2]).read().strip())
out = open(sys.argv[3]).read()
steps = d.get("steps", [])
post = d.get("post", [])
ok = eval(sys.argv[4])
if not ok:
    print(f"not true: {sys.argv[4]}", file=sys.stderr)
sys.exit(0 if ok else 1)
EOF
    then
        pass "$name: $desc"
    else
        fail "$name: $desc" "$T/$name.out"
    fi
}

# expect_line NAME DESCRIPTION FIXED-STRING: a printed line is exactly that.
expect_line() {
    if grep -qxF -- "$3" "$T/$1.out"; then
        pass "$1: $2"
    else
        log "(no line '$3')"
        fail "$1: $2" "$T/$1.out"
    fi
}

# ---- dependencies ---------------------------------------------------------
if [ ! -f "$HERE/node_modules/@actions/cache/package.json" ] || [ ! -f "$HERE/node_modules/yaml/package.json" ] ||
    [ ! -f "$HERE/node_modules/@actions/glob/package.json" ]; then
    log "installing npm dependencies into $HERE/node_modules"
    (cd "$HERE" && npm ci --no-audit --no-fund) >&2 || { log "npm ci failed"; exit 1; }
fi

mkdir -p "$T/repo"

# ---- 1. file commands -------------------------------------------------------
cat >"$T/files.yml" <<'EOF'
env:
  JOBV: job
steps:
  - id: a
    run: |
      echo "SIMPLE=one" >> "$GITHUB_ENV"
      { echo "MULTI<<EOF_X"; echo "l1"; echo "l2"; echo "EOF_X"; } >> "$GITHUB_ENV"
      mkdir -p "$RUNNER_TEMP/bin1" "$RUNNER_TEMP/bin2"
      echo "$RUNNER_TEMP/bin1" >> "$GITHUB_PATH"
      echo "$RUNNER_TEMP/bin2" >> "$GITHUB_PATH"
      echo "out=v1" >> "$GITHUB_OUTPUT"
      { echo "ml<<END"; echo "a"; echo "b"; echo "END"; } >> "$GITHUB_OUTPUT"
      echo "JOBV=from-github-env" >> "$GITHUB_ENV"
      echo "### summary" >> "$GITHUB_STEP_SUMMARY"
  - id: b
    env:
      STEPV: step
      JOBV: step-wins
    run: |
      echo "simple=$SIMPLE multi=$(printf '%s' "$MULTI" | tr '\n' ,)"
      echo "path=$(echo "$PATH" | cut -d: -f1-2 | tr : '\n' | xargs -n1 basename | tr '\n' ,)"
      echo 'out=${{ steps.a.outputs.out }} ml=${{ toJSON(steps.a.outputs.ml) }}'
      echo "jobv=$JOBV ctx=${{ env.JOBV }} stepv=$STEPV"
      [ -f "$GITHUB_OUTPUT" ] && [ ! -s "$GITHUB_OUTPUT" ] && [ "$GITHUB_OUTPUT" = "${{ github.output }}" ] && echo "fresh-output-file"
      case "$GITHUB_ENV" in "$RUNNER_TEMP"/_runner_file_commands/set_env_*) echo "env-file-in-runner-temp";; esac
      echo "ci=$CI actions=$GITHUB_ACTIONS os=$RUNNER_OS arch=$RUNNER_ARCH run_id=$GITHUB_RUN_ID attempt=$GITHUB_RUN_ATTEMPT repo=$GITHUB_REPOSITORY"
      echo "home=$([ "$HOME" = "$(cd "$GITHUB_WORKSPACE/../../../home" && pwd)" ] && echo ok) pwd=$([ "$PWD" = "$GITHUB_WORKSPACE" ] && echo ok)"
  - run: echo "jobv-after=$JOBV"
EOF
run_job files "$T/root-files"
expect files "job succeeds, exit 0" 'd["result"] == "success" and rc == 0'
expect files "GITHUB_OUTPUT (NAME=value and heredoc) becomes steps.a.outputs" 'steps[0]["outputs"] == {"out": "v1", "ml": "a\nb"}'
expect files "GITHUB_STEP_SUMMARY is collected" 'steps[0].get("summary") == "### summary\n"'
expect_line files "GITHUB_ENV NAME=value and heredoc reach later steps" "[2] simple=one multi=l1,l2"
expect_line files "GITHUB_PATH entries are prepended, most recent first" "[2] path=bin2,bin1,"
expect_line files "outputs reach expressions" '[2] out=v1 ml="a\nb"'
expect_line files "step env beats GITHUB_ENV beats job env" "[2] jobv=step-wins ctx=step-wins stepv=step"
expect_line files "GITHUB_ENV overrides job env" "[3] jobv-after=from-github-env"
expect_line files "each step gets a fresh GITHUB_OUTPUT file" "[2] fresh-output-file"
expect_line files "file commands live in RUNNER_TEMP/_runner_file_commands" "[2] env-file-in-runner-temp"
expect_line files "runner variables" "[2] ci=true actions=true os=Linux arch=X64 run_id=1 attempt=1 repo=zccache/zccache"
expect_line files "HOME and working directory" "[2] home=ok pwd=ok"

# ---- 2. composite action ----------------------------------------------------
mkdir -p "$T/repo/comp"
cat >"$T/repo/comp/action.yml" <<'EOF'
name: throwaway composite
inputs:
  who:
    description: who
    default: world
  flag:
    description: flag
  nodefault:
    description: no default
  key:
    description: key
    default: "${{ runner.os }}-${{ github.run_id }}"
outputs:
  greeting:
    description: g
    value: ${{ steps.hello.outputs.text }}
  combined:
    description: c
    value: "${{ inputs.who }}/${{ steps.hello.outcome }}/${{ steps.boom.outcome }}"
runs:
  using: composite
  steps:
    - id: hello
      shell: bash
      run: |
        echo "who=${{ inputs.who }} flag=${{ inputs.flag }} nodefault=[${{ inputs.nodefault }}] key=${{ inputs.key }}"
        [ "$GITHUB_ACTION_PATH" = "${{ github.action_path }}" ] && echo "action-path=$(basename "$GITHUB_ACTION_PATH")"
        echo "outer=${OUTER-unset}"
        echo "text=hello ${{ inputs.who }}" >> "$GITHUB_OUTPUT"
        echo "FROM_COMPOSITE=yes" >> "$GITHUB_ENV"
    - id: boom
      if: inputs.flag == 'true'
      shell: bash
      run: exit 7
    - shell: bash
      run: echo "after-boom-ran"
    - if: failure() && steps.boom.outcome == 'failure'
      shell: bash
      run: echo "composite-failure-handler status=${{ github.action_status }}"
    - if: always()
      shell: bash
      run: echo "always-in-composite env=$FROM_COMPOSITE"
EOF
cat >"$T/composite.yml" <<'EOF'
steps:
  - id: ok
    uses: ./comp
    env:
      OUTER: outer-env
    with:
      who: bob
      flag: false
  - id: bad
    uses: ./comp
    with:
      flag: true
  - run: echo "must not run after a failure"
  - if: always()
    run: echo "always greeting=${{ steps.ok.outputs.greeting }} combined=${{ steps.ok.outputs.combined }} bad=${{ steps.bad.outcome }} env=$FROM_COMPOSITE"
  - if: failure()
    run: echo "failure-ran"
  - id: cleanup
    if: always()
    uses: ./comp
EOF
run_job composite "$T/root-composite"
expect composite "a failing composite fails the job, exit 1" 'd["result"] == "failure" and rc == 1'
expect composite "composite outputs from steps.<id>.outputs and inputs" 'steps[0]["outputs"] == {"greeting": "hello bob", "combined": "bob/success/skipped"}'
expect composite "nested steps: if: inputs.flag == 'true' is false for with: false" '[s["outcome"] for s in steps[0]["steps"]] == ["success", "skipped", "success", "skipped", "success"]'
expect composite "after a failing nested step: skipped, failure() and always() run" '[s["outcome"] for s in steps[1]["steps"]] == ["success", "failure", "skipped", "success", "success"]'
expect composite "job steps: skipped after failure; always() and failure() run" '[s["conclusion"] for s in steps[1:]] == ["failure", "skipped", "success", "success", "success"]'
expect composite "default input values and the outputs of a failed composite" 'steps[1]["outputs"]["greeting"] == "hello world"'
expect composite "if: always() composite after a failure runs its plain steps (success() = composite status)" '[s["outcome"] for s in steps[5]["steps"]] == ["success", "skipped", "success", "skipped", "success"]'
expect_line composite "inputs: with:, boolean as 'false', no default = '', evaluated default" "[1.1] who=bob flag=false nodefault=[] key=Linux-1"
expect_line composite "GITHUB_ACTION_PATH = github.action_path = the action's directory" "[1.1] action-path=comp"
expect_line composite "env of the uses: step reaches nested steps" "[1.1] outer=outer-env"
expect_line composite "github.action_status inside a failed composite" "[2.4] composite-failure-handler status=failure"
expect_line composite "GITHUB_ENV from a nested step reaches the job" "[4] always greeting=hello bob combined=bob/success/skipped bad=failure env=yes"

# ---- 3. expressions and hashFiles -------------------------------------------
cat >"$T/expr.yml" <<'EOF'
steps:
  - run: |
      mkdir -p a/b .hidden
      printf one > Cargo.lock; printf two > a/Cargo.lock; printf three > a/b/Cargo.lock; printf four > .hidden/Cargo.lock
      printf x > a/other.txt
  - id: e
    run: |
      echo "h=${{ hashFiles('**/Cargo.lock') }}"
      echo "h2=${{ hashFiles('a/**/Cargo.lock', '!a/b/**') }}"
      echo "none=[${{ hashFiles('nothing/**') }}]"
      echo "eq=${{ 1 == '1' }},${{ 'ABC' == 'abc' }},${{ true == 1 }},${{ null == 0 }},${{ '' == 0 }},${{ 'true' == true }},${{ '0x10' == 16 }},${{ fromJSON('[1]') == fromJSON('[1]') }}"
      echo "logic=${{ '' || 'fallback' }},${{ 'a' && 'b' }},${{ !'' }},${{ 0 && 'x' }},${{ (1 < 2) && 'lt' }}"
      echo "fn=${{ format('{0}-{1}{{}}', runner.os, github.run_id) }},${{ contains('Hello', 'ELL') }},${{ contains(fromJSON('["x","y"]'), 'Y') }},${{ startsWith(github.ref, 'REFS/heads/') }},${{ endsWith(github.repository, '/ZCCACHE') }},${{ join(fromJSON('["a","b"]'), '+') }}"
      echo "json=${{ toJSON(fromJSON('{"k":[1,true,null]}').k) }}"
  - if: github.event_name == 'PUSH' && steps.e.outcome == 'success'
    run: echo "bare-if-ok"
  - if: ${{ false }}
    run: echo "must not run"
EOF
run_job expr "$T/root-expr"
H="$("$PYTHON" -c 'import hashlib
o = hashlib.sha256()
for c in [b"four", b"one", b"two", b"three"]:  # .hidden/, ./, a/, a/b/ (glob order)
    o.update(hashlib.sha256(c).digest())
print(o.hexdigest())')"
H2="$("$PYTHON" -c 'import hashlib; print(hashlib.sha256(hashlib.sha256(b"two").digest()).hexdigest())')"
expect expr "job succeeds" 'd["result"] == "success" and [s["outcome"] for s in steps] == ["success", "success", "success", "skipped"]'
expect_line expr "hashFiles('**/Cargo.lock') = sha256 of the files' sha256s, glob order, dot files included" "[2] h=$H"
expect_line expr "hashFiles with a negated pattern" "[2] h2=$H2"
expect_line expr "hashFiles with no match is ''" "[2] none=[]"
expect_line expr "loose equality" "[2] eq=true,true,true,true,true,false,true,false"
expect_line expr "&& || ! return operands like GitHub" "[2] logic=fallback,b,true,0,lt"
expect_line expr "functions" "[2] fn=Linux-1{},true,true,true,true,a+b"
expect_line expr "toJSON/fromJSON" '[2] json=['
expect_line expr "bare if: is an expression, string compare case-insensitive" "[3] bare-if-ok"

# ---- 4. mistakes are errors -------------------------------------------------
mkdir -p "$T/repo/noshell"
cat >"$T/repo/noshell/action.yml" <<'EOF'
name: no shell
runs:
  using: composite
  steps:
    - run: echo hi
EOF
mkdir -p "$T/repo/typo"
cat >"$T/repo/typo/action.yml" <<'EOF'
name: typo
inputs:
  shared-key:
    description: k
runs:
  using: composite
  steps:
    - shell: bash
      run: echo "${{ inputs.shared-kye }}"
EOF
cat >"$T/mistakes.yml" <<'EOF'
steps:
  - uses: ./noshell
    continue-on-error: true
  - uses: ./typo
    continue-on-error: true
  - run: echo "${{ github.not_a_thing }}"
    continue-on-error: true
  - uses: actions/checkout@v4
    continue-on-error: true
EOF
run_job mistakes "$T/root-mistakes"
expect mistakes "all four steps fail (continue-on-error keeps the job green)" 'd["result"] == "success" and [s["outcome"] for s in steps] == ["failure"] * 4'
expect mistakes "composite run step without shell" '"Required property is missing: shell" in out'
expect mistakes "undeclared inputs.x is an error, not ''" "\"'inputs.shared-kye' is not available\" in out"
expect mistakes "unknown github.* property is an error" "\"'github.not_a_thing' is not available\" in out"
expect mistakes "remote actions other than the emulated ones are refused" "\"'actions/checkout@v4' is not emulated\" in out"
cat >"$T/badctx.yml" <<'EOF'
steps:
  - run: echo ok
  - if: always()
    run: echo "${{ inputs.x }} ${{ success() }}"
EOF
run_job badctx "$T/root-badctx"
expect badctx "an invalid expression fails the job before any step runs" 'd["result"] == "failure" and rc == 1 and steps == [] and "Unrecognized named-value: '"'"'inputs'"'"'" in d["error"]'

if "$NODE" "$RUNNER" --check --workflow "$T/composite.yml" --repo "$T/repo" >"$T/check-ok.out" 2>&1; then
    pass "--check: a valid job and its local actions"
else
    fail "--check: a valid job and its local actions" "$T/check-ok.out"
fi
if ! "$NODE" "$RUNNER" --check --workflow "$T/mistakes.yml" --repo "$T/repo" >"$T/check-bad.out" 2>&1 &&
    grep -q "Required property is missing: shell" "$T/check-bad.out" && grep -q "actions/checkout@v4' is not emulated" "$T/check-bad.out"; then
    pass "--check: finds the mistakes without running anything"
else
    fail "--check: finds the mistakes without running anything" "$T/check-bad.out"
fi

# ---- 5. runtime secrets -----------------------------------------------------
cat >"$T/secrets.yml" <<'EOF'
steps:
  - run: echo "run1 token=[${ACTIONS_RUNTIME_TOKEN-unset}] results=[${ACTIONS_RESULTS_URL-unset}] v2=[${ACTIONS_CACHE_SERVICE_V2-unset}] extra=[$EXTRA]"
  - id: gs
    uses: actions/github-script@v7
    with:
      script: |
        core.info(`js token=[${process.env.ACTIONS_RUNTIME_TOKEN}] results=[${process.env.ACTIONS_RESULTS_URL}] v2=[${process.env.ACTIONS_CACHE_SERVICE_V2}] extra=[${process.env.EXTRA}]`);
        core.exportVariable('ACTIONS_RUNTIME_TOKEN', process.env.ACTIONS_RUNTIME_TOKEN);
        core.setOutput('seen', 'yes');
        return { n: 42 };
  - run: echo "run2 token=[${ACTIONS_RUNTIME_TOKEN-unset}] results=[${ACTIONS_RESULTS_URL-unset}]" 'result=${{ steps.gs.outputs.result }}'
EOF
run_job secrets "$T/root-secrets" --env ACTIONS_RUNTIME_TOKEN=tok123 --env ACTIONS_RESULTS_URL=http://127.0.0.1:9/ \
    --env ACTIONS_CACHE_SERVICE_V2=true --env EXTRA=x
expect secrets "job succeeds; github-script outputs (setOutput, JSON result)" 'd["result"] == "success" and steps[1]["outputs"] == {"seen": "yes", "result": "{\"n\":42}"}'
expect_line secrets "run steps do not get the runtime variables" "[1] run1 token=[unset] results=[unset] v2=[unset] extra=[x]"
expect_line secrets "JavaScript actions do" "[2] js token=[tok123] results=[http://127.0.0.1:9/] v2=[true] extra=[x]"
expect_line secrets "core.exportVariable makes one visible to later run steps" '[3] run2 token=[tok123] results=[unset] result={"n":42}'

# ---- 6. processes: timeout, background children ------------------------------
cat >"$T/procs.yml" <<'EOF'
steps:
  - timeout-minutes: 0.02
    continue-on-error: true
    run: exec sleep 30
  - run: |
      sleep 300 >/dev/null 2>&1 &
      echo $! > "$HOME/bg.pid"
      (sleep 30; echo late) &
      echo started
EOF
start=$(date +%s)
run_job procs "$T/root-procs"
elapsed=$(($(date +%s) - start))
expect procs "timeout-minutes stops a step" 'steps[0]["outcome"] == "failure" and "has timed out" in out'
if [ "$elapsed" -lt 20 ]; then pass "procs: a background child holding stdout ends the step ~5 s after exit (${elapsed}s)"; else fail "procs: took ${elapsed}s" "$T/procs.out"; fi
BGPID="$(cat "$T/root-procs/home/bg.pid" 2>/dev/null)"
# gone, or a zombie nobody reaps (PID 1 of a container may not)
if [ -n "$BGPID" ] && { ! kill -0 "$BGPID" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$BGPID/stat" 2>/dev/null)" = Z ]; }; then
    pass "procs: orphan processes of the job are killed at its end"
else
    kill "$BGPID" 2>/dev/null
    fail "procs: background process $BGPID survived the job" "$T/procs.out"
fi
expect procs "orphan cleanup is reported" '"Terminate orphan process: pid" in out'

# ---- 7. actions/cache through tests/gha/server.py ---------------------------
"$PYTHON" "$SERVER" --port-file "$T/port" --data-dir "$T/cache-data" 2>"$T/server.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do
    [ -s "$T/port" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
if [ ! -s "$T/port" ]; then
    log "cache server did not start"
    cat "$T/server.log" >&2
    FAILED=$((FAILED + 1))
else
    PORT="$(cat "$T/port")"
    CACHE_ENV=(--env "ACTIONS_RESULTS_URL=http://127.0.0.1:$PORT/" --env ACTIONS_RUNTIME_TOKEN=x --env ACTIONS_CACHE_SERVICE_V2=true)
    log "cache server on 127.0.0.1:$PORT"

    cat >"$T/save.yml" <<'EOF'
steps:
  - run: mkdir -p target/sub && echo payload > target/sub/f.txt && echo lock > Cargo.lock
  - id: save
    uses: actions/cache/save@v4
    with:
      path: |
        target
      key: selftest-${{ hashFiles('Cargo.lock') }}
EOF
    cat >"$T/restore.yml" <<'EOF'
steps:
  - run: rm -rf target && echo lock > Cargo.lock
  - id: restore
    uses: actions/cache/restore@v4
    with:
      path: target
      key: selftest-${{ hashFiles('Cargo.lock') }}
  - run: cat target/sub/f.txt
  - id: partial
    uses: actions/cache/restore@v4
    with:
      path: target
      key: selftest-other
      restore-keys: |
        selftest-
  - id: miss
    uses: actions/cache/restore@v4
    with:
      path: target
      key: nothing-here
EOF
    run_job save "$T/root-cache" "${CACHE_ENV[@]}"
    expect save "actions/cache/save succeeds" 'd["result"] == "success" and "Cache saved with key: selftest-" in out'
    run_job restore "$T/root-cache" "${CACHE_ENV[@]}"
    expect restore "job succeeds" 'd["result"] == "success"'
    expect restore "exact hit: cache-hit true, primary = matched key" 'steps[1]["outputs"]["cache-hit"] == "true" and steps[1]["outputs"]["cache-matched-key"] == steps[1]["outputs"]["cache-primary-key"] != ""'
    expect_line restore "the saved files are back" "[3] payload"
    expect restore "restore-keys prefix match: cache-hit false" 'steps[3]["outputs"]["cache-hit"] == "false" and steps[3]["outputs"]["cache-matched-key"].startswith("selftest-") and steps[3]["outputs"]["cache-primary-key"] == "selftest-other"'
    expect restore "miss: no cache-hit output (actions/cache v4 leaves it unset)" 'steps[4]["outputs"] == {"cache-primary-key": "nothing-here"}'

    cat >"$T/combined.yml" <<'EOF'
steps:
  - run: rm -rf d
  - id: c
    uses: actions/cache@v4
    with:
      path: d
      key: combined-1
  - run: |
      echo "hit=[${{ steps.c.outputs.cache-hit }}]"
      if [ -f d/f ]; then cat d/f; else mkdir -p d && echo made > d/f; fi
EOF
    run_job combined "$T/root-combined" "${CACHE_ENV[@]}"
    expect combined "first run: miss, post step saves" 'd["result"] == "success" and post[0]["outcome"] == "success" and "Cache saved with key: combined-1" in out'
    expect_line combined "first run: cache-hit unset on a miss" "[3] hit=[]"
    cp "$T/combined.out" "$T/combined-1.out"
    run_job combined "$T/root-combined" "${CACHE_ENV[@]}"
    expect combined "second run (same paths, fresh state): exact hit, post does not save" 'steps[1]["outputs"] == {"cache-hit": "true"} and "Cache hit occurred on the primary key combined-1, not saving cache." in out'
    expect_line combined "second run: files restored" "[3] made"
    cat >"$T/combinedfail.yml" <<'EOF'
steps:
  - uses: actions/cache@v4
    with:
      path: d
      key: combined-fail
  - run: exit 1
EOF
    run_job combinedfail "$T/root-combinedfail" "${CACHE_ENV[@]}"
    expect combinedfail "post-if: success() skips the save when the job failed" 'd["result"] == "failure" and post[0]["outcome"] == "skipped"'
fi

log "passed: $PASSED, failed: $FAILED"
[ "$FAILED" -eq 0 ]
