#!/usr/bin/env node
// tests/action/runner.mjs: a small emulator of the GitHub Actions runner for ONE
// job, so tests can run our composite action (action/action.yml,
// action/cleanup/action.yml) end to end on this machine.
//
// Usage
//   node tests/action/runner.mjs --workflow JOB.yml --repo DIR --runner-root DIR
//        [--env K=V]... [--log FILE] [--job ID] [--keep-temp] [--debug] [--check]
//
//   --workflow    a job in workflow syntax ({env, defaults, steps}), or a whole
//                 workflow with `jobs:` (one job, or pick it with --job)
//   --repo        where `uses: ./path` actions are read from
//   --runner-root the runner's file system, fixed paths so two runs can reuse them:
//                   DIR/home               HOME
//                   DIR/work/repo/repo     GITHUB_WORKSPACE (created empty if missing)
//                   DIR/temp               RUNNER_TEMP (emptied at job start and end)
//                   DIR/temp/_runner_file_commands/  GITHUB_ENV, _PATH, _OUTPUT, _STATE,
//                                          _STEP_SUMMARY: fresh files for every step (under
//                                          RUNNER_TEMP, where the real runner keeps them)
//                   DIR/tool-cache         RUNNER_TOOL_CACHE
//                   DIR/work/_actions/...  github.action_path of the emulated actions
//   --env K=V     given to every step, as if set on the runner machine. Except:
//                   ACTIONS_RUNTIME_TOKEN, ACTIONS_RUNTIME_URL, ACTIONS_RESULTS_URL,
//                   ACTIONS_CACHE_URL, ACTIONS_CACHE_SERVICE_V2, ACTIONS_CACHE_MODE go
//                   to JavaScript actions only (never to `run:` steps, as on GitHub;
//                   a `run:` step sees them only after a step exported them through
//                   GITHUB_ENV); GITHUB_SHA, GITHUB_REF, GITHUB_RUN_ID,
//                   GITHUB_RUN_ATTEMPT, GITHUB_RUN_NUMBER, GITHUB_REPOSITORY,
//                   GITHUB_JOB, GITHUB_EVENT_NAME, GITHUB_WORKFLOW, GITHUB_ACTOR,
//                   GITHUB_HEAD_REF, GITHUB_BASE_REF, GITHUB_TOKEN configure the
//                   github context; RUNNER_DEBUG=1 is --debug.
//   --log FILE    also write everything printed to FILE
//   --keep-temp   do not empty RUNNER_TEMP at the end (for debugging)
//   --debug       show ::debug:: lines (runner.debug = '1', RUNNER_DEBUG=1)
//   --check       only validate the job and every local action it uses (recursively):
//                 keys, `shell` in composites, syntax/contexts/functions of every
//                 expression; prints "ok" or the errors, exit 0 or 1; runs nothing
//
// Output: every step's header, its stdout+stderr lines prefixed with the step's
// number ([2], [2.1] inside a composite, [post 2.3] ...), its result; then, as
// the LAST line of stdout, one JSON document:
//   {"result":"success"|"failure",
//    "steps":[{"id":..|null,"name":..,"outcome":..,"conclusion":..,"outputs":{..},
//              "summary":"..." (if any), "steps":[..nested, for composites..]}, ...],
//    "post":[..same, for post steps..],
//    "annotations":[{"level":"error"|"warning"|"notice","message":..,"step":"2.1"}, ...]}
// outcome/conclusion: "success" | "failure" | "skipped" (conclusion is after
// continue-on-error). Exit status 0 if the job succeeded, 1 if it failed, 2 on bad usage.
//
// What is emulated (following actions/runner's sources and GitHub's docs)
//   - steps: run (shell bash/sh/python/pwsh/custom "cmd {0}"; no shell = `bash -e {0}`,
//     `shell: bash` = `bash --noprofile --norc -e -o pipefail {0}`; script written to
//     RUNNER_TEMP/<uuid>.sh), working-directory, id, name, env, if, continue-on-error,
//     timeout-minutes (SIGINT, 7.5 s, SIGTERM, 2.5 s, SIGKILL), job/workflow env and
//     defaults.run; a step ends when its process exits (waiting at most 5 s more
//     for output from children that keep stdout open, as the runner does)
//   - uses: ./path (composite and node actions read from --repo), actions/github-script
//     (core, require, process), actions/cache, actions/cache/restore, actions/cache/save
//     (v4 behaviour, with the official @actions/cache client; actions/cache saves in
//     its post step with post-if: success(); cache-hit is 'true'/'false' when an entry
//     was restored and, as in v4, left unset on a miss), each with its inputs' defaults,
//     INPUT_*/STATE_* variables and an "Unexpected input(s)" warning
//   - composite actions: inputs (with: values, else evaluated defaults, '' if none),
//     outputs, steps context of their own, github.action_path / GITHUB_ACTION_PATH,
//     `shell` required, success()/failure() meaning the composite's own status, a
//     failing nested step fails it, nested post steps, env of the `uses:` step seen
//     by the nested steps
//   - file commands: GITHUB_ENV (NAME=value and NAME<<DELIM), GITHUB_PATH,
//     GITHUB_OUTPUT, GITHUB_STATE (STATE_* in the post step), GITHUB_STEP_SUMMARY;
//     workflow commands ::add-mask:: (masked in what is printed), ::error/warning/
//     notice::, ::group::, ::debug::, ::set-output::, ::save-state::,
//     ::stop-commands::, and ::set-env::/::add-path:: refused as on GitHub
//   - expressions everywhere GitHub evaluates them (see expressions.mjs), with the
//     contexts github, env, steps, job, runner, inputs (in composites) where GitHub
//     allows them; `if:` without a status function means success() && (...);
//     hashFiles() computed like the runner (node + @actions/glob, SHA-256 of the
//     per-file SHA-256s, '' when nothing matches)
//   - post steps (registered when the main step runs) in reverse order, then the
//     orphan-process cleanup: processes carrying this job's RUNNER_TRACKING_ID are
//     killed, as the runner does
//
// What is not: other jobs, needs, matrix/strategy, secrets, vars, services,
// containers, docker actions, remote actions other than the ones above (no
// download), pre steps, job-level if/timeout/outputs, cancellation, wildcard
// filters (a.*.b), format() specifiers, problem matchers, the github.event payload
// (an almost empty object), github-script's github/context/exec/glob/io (an error
// if used). Stricter than GitHub on purpose: an unknown context, function,
// github.*/runner.* property, undeclared `inputs.x` or unknown `steps.<id>` is an
// error, not an empty string, so a mistake in an action.yml is caught here; every
// expression of the job and of each local action is checked when it is loaded
// (syntax, contexts, functions), as GitHub does, even in steps that do not run.
//
// Files: expressions.mjs (the expression language), node-actions.mjs (the emulated
// JavaScript actions, run as node child processes), hashfiles.mjs (hashFiles()),
// selftest.sh (bash tests/action/selftest.sh). Dependencies (package-lock.json):
// yaml, @actions/cache 4.1.0, @actions/glob 0.7.0 (the runner's hashFiles uses it);
// npm ci --prefix tests/action --no-audit --no-fund.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import * as X from './expressions.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

const USAGE = `usage: node tests/action/runner.mjs --workflow JOB.yml --repo DIR --runner-root DIR
           [--env K=V]... [--log FILE] [--job ID] [--keep-temp] [--debug] [--check]
`;

// Variables only JavaScript actions get (the runner's job-scoped runtime data).
const RUNTIME_VARS = new Set([
  'ACTIONS_RUNTIME_TOKEN',
  'ACTIONS_RUNTIME_URL',
  'ACTIONS_RESULTS_URL',
  'ACTIONS_CACHE_URL',
  'ACTIONS_CACHE_SERVICE_V2',
  'ACTIONS_CACHE_MODE',
]);
// Given to node actions, and to run steps too (ScriptHandler does the same).
const ID_TOKEN_VARS = new Set(['ACTIONS_ID_TOKEN_REQUEST_URL', 'ACTIONS_ID_TOKEN_REQUEST_TOKEN']);
// --env names that configure the github context.
const GITHUB_CONFIG = {
  GITHUB_RUN_ID: 'run_id',
  GITHUB_RUN_ATTEMPT: 'run_attempt',
  GITHUB_RUN_NUMBER: 'run_number',
  GITHUB_SHA: 'sha',
  GITHUB_REF: 'ref',
  GITHUB_REPOSITORY: 'repository',
  GITHUB_JOB: 'job',
  GITHUB_EVENT_NAME: 'event_name',
  GITHUB_WORKFLOW: 'workflow',
  GITHUB_ACTOR: 'actor',
  GITHUB_HEAD_REF: 'head_ref',
  GITHUB_BASE_REF: 'base_ref',
  GITHUB_TOKEN: 'token',
};
// github context keys the runner exports as GITHUB_<KEY> (GitHubContext.cs).
const GITHUB_ENV_ALLOW = new Set([
  'action_path', 'action_ref', 'action_repository', 'action', 'actor', 'actor_id', 'api_url',
  'artifacts', 'base_ref', 'env', 'event_name', 'event_path', 'graphql_url', 'head_ref', 'job',
  'output', 'path', 'ref_name', 'ref_protected', 'ref_type', 'ref', 'repository',
  'repository_id', 'repository_owner', 'repository_owner_id', 'retention_days', 'run_attempt',
  'run_id', 'run_number', 'server_url', 'sha', 'state', 'step_summary', 'triggering_actor',
  'workflow', 'workflow_ref', 'workflow_sha', 'workspace',
]);

// Where each kind of value may use which contexts / functions (action_yaml.json
// and workflow-v1.0.json of the runner; not-emulated contexts left out).
const STATUS = ['always', 'success', 'failure', 'cancelled'];
const allow = (contexts, functions = []) => ({ contexts: new Set(contexts), functions: new Set(functions) });
const ALLOW = {
  jobStep: allow(['github', 'steps', 'job', 'runner', 'env'], ['hashfiles']),
  jobIf: allow(['github', 'steps', 'job', 'runner', 'env'], ['hashfiles', ...STATUS]),
  compStep: allow(['github', 'inputs', 'steps', 'job', 'runner', 'env'], ['hashfiles']),
  compIf: allow(['github', 'inputs', 'steps', 'job', 'runner', 'env'], ['hashfiles', ...STATUS]),
  inputDefault: allow(['github', 'job', 'runner'], ['hashfiles']),
  outputValue: allow(['github', 'steps', 'inputs', 'job', 'runner', 'env']),
  jobEnv: allow(['github']),
  defaultsRun: allow(['github', 'env']),
};

const JOB_RUN_KEYS = ['name', 'id', 'if', 'timeout-minutes', 'run', 'continue-on-error', 'env', 'working-directory', 'shell'];
const JOB_USES_KEYS = ['name', 'id', 'if', 'continue-on-error', 'timeout-minutes', 'uses', 'with', 'env'];
const COMP_RUN_KEYS = ['name', 'id', 'if', 'run', 'env', 'continue-on-error', 'working-directory', 'shell'];
const COMP_USES_KEYS = ['name', 'id', 'if', 'uses', 'continue-on-error', 'with', 'env'];

const CACHE_SAVE_ALWAYS_DEPRECATION =
  'save-always does not work as intended and will be removed in a future release.\n' +
  'A separate `actions/cache/restore` step should be used instead.\n' +
  'See https://github.com/actions/cache/tree/main/save#always-save-cache for more details.';

// The remote actions we emulate: their inputs (action.yml) and what runs.
const EMULATED = {
  'actions/github-script': {
    inputs: {
      script: { required: true },
      'github-token': { default: '${{ github.token }}' },
      debug: { default: "${{ runner.debug == '1' }}" },
      'user-agent': { default: 'actions/github-script' },
      previews: {},
      'result-encoding': { default: 'json' },
      retries: { default: '0' },
      'retry-exempt-status-codes': { default: '400,401,403,404,422' },
      'base-url': {},
    },
    main: 'github-script',
  },
  'actions/cache': {
    inputs: {
      path: { required: true },
      key: { required: true },
      'restore-keys': {},
      'upload-chunk-size': {},
      enableCrossOsArchive: { default: 'false' },
      'fail-on-cache-miss': { default: 'false' },
      'lookup-only': { default: 'false' },
      'save-always': { default: 'false', deprecationMessage: CACHE_SAVE_ALWAYS_DEPRECATION },
    },
    main: 'cache-restore',
    post: 'cache-save',
    postIf: 'success()',
    versionNote: 'v4',
  },
  'actions/cache/restore': {
    inputs: {
      path: { required: true },
      key: { required: true },
      'restore-keys': {},
      enableCrossOsArchive: { default: 'false' },
      'fail-on-cache-miss': { default: 'false' },
      'lookup-only': { default: 'false' },
    },
    main: 'cache-restore-only',
    versionNote: 'v4',
  },
  'actions/cache/save': {
    inputs: {
      path: { required: true },
      key: { required: true },
      'upload-chunk-size': {},
      enableCrossOsArchive: { default: 'false' },
    },
    main: 'cache-save-only',
    versionNote: 'v4',
  },
};

class StepError extends Error {}

// ---------------------------------------------------------------------------
// Command line, output
// ---------------------------------------------------------------------------

function usage(msg) {
  process.stderr.write(`runner.mjs: ${msg}\n${USAGE}`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = { env: [], keepTemp: false, debug: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--workflow':
        o.workflow = val();
        break;
      case '--repo':
        o.repo = val();
        break;
      case '--runner-root':
        o.root = val();
        break;
      case '--env': {
        const kv = val();
        const eq = kv.indexOf('=');
        if (eq <= 0) usage(`--env wants K=V, got '${kv}'`);
        o.env.push([kv.slice(0, eq), kv.slice(eq + 1)]);
        break;
      }
      case '--log':
        o.log = val();
        break;
      case '--job':
        o.job = val();
        break;
      case '--keep-temp':
        o.keepTemp = true;
        break;
      case '--debug':
        o.debug = true;
        break;
      case '--check':
        o.check = true;
        break;
      case '-h':
      case '--help':
        process.stdout.write(USAGE);
        process.exit(0);
        break;
      default:
        usage(`unknown argument '${a}'`);
    }
  }
  if (!o.workflow || !o.repo || (!o.root && !o.check)) usage('--workflow, --repo and --runner-root are required');
  return o;
}

let logFd = null;
const masks = [];

function maskText(s) {
  for (const m of masks) if (m && s.includes(m)) s = s.split(m).join('***');
  return s;
}

function out(line) {
  const s = maskText(line) + '\n';
  process.stdout.write(s);
  if (logFd !== null) fs.writeSync(logFd, s);
}

// Prints text under a step's label, every line of it.
function emit(label, text) {
  for (const line of String(text).split('\n')) out(`[${label}] ${line}`);
}

function annotate(level, message, label) {
  S.annotations.push({ level, message, step: label });
}

// ---------------------------------------------------------------------------
// Job state
// ---------------------------------------------------------------------------

const S = {
  jobStatus: 'success',
  globalEnv: {}, // job env + GITHUB_ENV
  prependPath: [], // GITHUB_PATH, oldest first
  post: [], // post steps, a stack
  annotations: [],
  defaults: {},
  children: new Set(),
  debug: false,
};

function runnerContext() {
  const r = {
    name: 'GitHub Actions 1',
    os: 'Linux',
    arch: 'X64',
    environment: 'github-hosted',
    temp: S.temp,
    tool_cache: S.toolCache,
    workspace: path.dirname(S.workspace),
  };
  if (S.debug) r.debug = '1';
  return X.strict(r, 'runner', { known: Object.keys(r), absent: ['debug'] });
}

function jobContext() {
  return X.strict({ status: S.jobStatus }, 'job', { known: ['status'], absent: ['container', 'services', 'check_run_id'] });
}

const GITHUB_KNOWN = [
  'action', 'action_path', 'action_ref', 'action_repository', 'action_status', 'actor', 'actor_id', 'api_url',
  'repository_id', 'repository_owner_id', 'workflow_ref', 'workflow_sha',
  'base_ref', 'env', 'event', 'event_name', 'event_path', 'graphql_url', 'head_ref', 'job', 'output',
  'path', 'ref', 'ref_name', 'ref_type', 'repository', 'repository_owner', 'retention_days',
  'run_attempt', 'run_id', 'run_number', 'server_url', 'sha', 'state', 'step_summary', 'token',
  'triggering_actor', 'workflow', 'workspace',
];

function githubContext(values) {
  return X.strict(values, 'github', { known: Object.keys(values), absent: GITHUB_KNOWN });
}

// A scope of steps: the job, or one run of a composite action.
function newScope({ kind, stepDefs, inputs = null, actionPath = null, overrideKeys = new Set(), overrideEnv = {} }) {
  const names = new Map();
  const used = new Set(stepDefs.filter(d => d.id !== undefined).map(d => String(d.id).toLowerCase()));
  for (const d of stepDefs) {
    if (d.id !== undefined) {
      names.set(d, String(d.id));
      continue;
    }
    let base;
    if (d.run !== undefined) base = '__run';
    else {
      const u = String(d.uses);
      base = u.startsWith('./') ? '__self' : '__' + u.split('@')[0].replace(/[^A-Za-z0-9]+/g, '_');
    }
    let name = base;
    for (let n = 2; used.has(name.toLowerCase()); n++) name = `${base}_${n}`;
    used.add(name.toLowerCase());
    names.set(d, name);
  }
  return {
    kind,
    names,
    knownIds: [...names.values()],
    steps: {},
    inputs,
    actionPath,
    status: 'success',
    overrideKeys,
    overrideEnv,
  };
}

function stepsContext(sc) {
  const o = {};
  for (const [id, st] of Object.entries(sc.steps)) {
    o[id] = X.strict(
      { outputs: X.strict({ ...st.outputs }, `steps.${id}.outputs`), outcome: st.outcome, conclusion: st.conclusion },
      `steps.${id}`,
      { known: ['outputs', 'outcome', 'conclusion'] }
    );
  }
  return X.strict(o, 'steps', { known: [], absent: sc.knownIds });
}

// ---------------------------------------------------------------------------
// Expressions
// ---------------------------------------------------------------------------

function hashFiles(patterns, follow) {
  const env = { ...process.env, patterns: patterns.join('\n') };
  delete env.followSymbolicLinks;
  if (follow) env.followSymbolicLinks = 'true';
  const r = spawnSync(process.execPath, [path.join(HERE, 'hashfiles.mjs')], {
    cwd: S.workspace,
    env,
    encoding: 'utf8',
    timeout: 120000,
  });
  const shown = patterns.join(', ').replace(/'/g, "''");
  if (r.error && r.error.code === 'ETIMEDOUT') throw new X.ExprError(`hashFiles('${shown}') couldn't finish within 120 seconds.`);
  const m = /^__OUTPUT__([0-9a-f]*)__OUTPUT__$/m.exec(r.stderr || '');
  if (r.status !== 0 || !m) {
    throw new X.ExprError(`hashFiles('${shown}') failed. Fail to hash files under directory '${S.workspace}'\n${r.stderr || r.error || ''}`);
  }
  return m[1];
}

// The evaluation environment of one step.
function evalEnv(sc, github, envCtx, status) {
  const contexts = { github, runner: runnerContext(), job: jobContext() };
  if (envCtx) contexts.env = X.strict({ ...envCtx }, 'env', { caseSensitive: true });
  if (sc) contexts.steps = stepsContext(sc);
  if (sc && sc.inputs) contexts.inputs = sc.inputs;
  return { contexts, status, hashFiles };
}

function evalExpr(src, allowed, ev) {
  return X.evaluate(X.parse(src, allowed), ev);
}

function describe(v) {
  return Array.isArray(v) ? 'A sequence' : 'A mapping';
}

// A value of a string-typed field ('run', 'with.x', 'env.X', ...).
function evalString(raw, allowed, ev, what) {
  if (raw === null || raw === undefined) return '';
  if (typeof raw === 'boolean') return raw ? 'true' : 'false';
  if (typeof raw === 'number') return X.numberToString(raw);
  if (typeof raw !== 'string') throw new X.ExprError(`${what}: ${describe(raw)} was not expected`);
  try {
    const parts = X.splitTemplate(raw);
    if (parts.length === 1 && parts[0].expr !== undefined) {
      const v = evalExpr(parts[0].expr, allowed, ev);
      if (v !== null && typeof v === 'object') throw new X.ExprError(`${describe(v)} was not expected`);
      return X.toStr(v);
    }
    return parts.map(p => (p.lit !== undefined ? p.lit : X.toStr(evalExpr(p.expr, allowed, ev)))).join('');
  } catch (e) {
    if (e instanceof X.ExprError) throw new X.ExprError(`${what}: ${e.message}`);
    throw e;
  }
}

// A value of a typed field (continue-on-error, timeout-minutes).
function evalTyped(raw, allowed, ev, what) {
  if (typeof raw !== 'string') return raw;
  try {
    const parts = X.splitTemplate(raw);
    if (parts.length === 1 && parts[0].expr !== undefined) return evalExpr(parts[0].expr, allowed, ev);
    return parts.map(p => (p.lit !== undefined ? p.lit : X.toStr(evalExpr(p.expr, allowed, ev)))).join('');
  } catch (e) {
    if (e instanceof X.ExprError) throw new X.ExprError(`${what}: ${e.message}`);
    throw e;
  }
}

function evalBool(raw, allowed, ev, what) {
  const v = evalTyped(raw, allowed, ev, what);
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' && /^(true|false)$/i.test(v.trim())) return v.trim().toLowerCase() === 'true';
  throw new X.ExprError(`${what}: Unexpected value '${X.toStr(v)}' (a boolean is expected)`);
}

function evalNumber(raw, allowed, ev, what) {
  const v = evalTyped(raw, allowed, ev, what);
  const n = typeof v === 'number' ? v : X.parseNumber(X.toStr(v));
  if (Number.isNaN(n)) throw new X.ExprError(`${what}: Unexpected value '${X.toStr(v)}' (a number is expected)`);
  return n;
}

// `if:`: an expression with or without ${{ }}, success() && (...) unless it
// calls a status function itself.
function conditionTree(raw, allowed) {
  let s;
  if (raw === undefined || raw === null) s = '';
  else if (typeof raw === 'boolean' || typeof raw === 'number') s = X.toStr(raw);
  else if (typeof raw === 'string') s = raw.trim();
  else throw new X.ExprError(`if: ${describe(raw)} was not expected`);
  if (s.startsWith('${{') && s.endsWith('}}')) {
    const parts = X.splitTemplate(s);
    if (parts.length === 1 && parts[0].expr !== undefined) s = parts[0].expr;
  }
  if (s.includes('${{')) {
    throw new X.ExprError(`if: '${s}' mixes text and \${{ }}; not emulated (write the whole condition as one expression)`);
  }
  if (s === '') s = 'success()';
  let tree;
  try {
    tree = X.parse(s, allowed);
  } catch (e) {
    throw new X.ExprError(`if: ${e.message}`);
  }
  if (!X.usesStatusFunction(tree)) tree = { t: 'bin', op: '&&', l: { t: 'fn', name: 'success', raw: 'success', args: [] }, r: tree };
  return tree;
}

function evalCondition(raw, allowed, ev) {
  return X.isTruthy(X.evaluate(conditionTree(raw, allowed), ev));
}

// Upfront checks, as GitHub does when it loads a workflow or an action.yml:
// syntax, named-values and functions of every expression, run or not.
function checkTemplate(raw, allowed, where) {
  if (typeof raw !== 'string' || !raw.includes('${{')) return;
  try {
    for (const p of X.splitTemplate(raw)) if (p.expr !== undefined) X.parse(p.expr, allowed);
  } catch (e) {
    if (!(e instanceof X.ExprError)) throw e;
    throw new StepError(`${where}: ${e.message}`);
  }
}

function checkSteps(steps, composite, where) {
  const A = composite ? ALLOW.compStep : ALLOW.jobStep;
  const AI = composite ? ALLOW.compIf : ALLOW.jobIf;
  steps.forEach((s, i) => {
    const at = `${where}: step ${i + 1}${s.id !== undefined ? ` (id ${s.id})` : ''}`;
    if (s.if !== undefined) {
      try {
        conditionTree(s.if, AI);
      } catch (e) {
        if (!(e instanceof X.ExprError)) throw e;
        throw new StepError(`${at}: ${e.message}`);
      }
    }
    for (const k of ['run', 'name', 'working-directory', 'continue-on-error', 'timeout-minutes', 'shell']) {
      if (s[k] !== undefined) checkTemplate(s[k], A, `${at}: ${k}`);
    }
    for (const m of ['env', 'with']) for (const [k, v] of Object.entries(s[m] || {})) checkTemplate(v, A, `${at}: ${m}.${k}`);
  });
}

// ---------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------

function isMapping(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function validateSteps(steps, where, composite) {
  if (!Array.isArray(steps) || steps.length === 0) throw new StepError(`${where}: 'steps' must be a non-empty sequence`);
  const ids = new Set();
  steps.forEach((s, i) => {
    const at = `${where}: step ${i + 1}`;
    if (!isMapping(s)) throw new StepError(`${at}: a mapping is expected`);
    const hasRun = Object.prototype.hasOwnProperty.call(s, 'run');
    const hasUses = Object.prototype.hasOwnProperty.call(s, 'uses');
    if (hasRun === hasUses) throw new StepError(`${at}: exactly one of 'run' and 'uses' is required`);
    const keys = composite ? (hasRun ? COMP_RUN_KEYS : COMP_USES_KEYS) : hasRun ? JOB_RUN_KEYS : JOB_USES_KEYS;
    for (const k of Object.keys(s)) if (!keys.includes(k)) throw new StepError(`${at}: Unexpected value '${k}'`);
    if (hasUses && (typeof s.uses !== 'string' || s.uses.trim() === '')) throw new StepError(`${at}: 'uses' must be a non-empty string`);
    if (hasRun && typeof s.run !== 'string') throw new StepError(`${at}: 'run' must be a string`);
    if (composite && hasRun && (s.shell === undefined || s.shell === null || s.shell === '')) {
      throw new StepError(`${at}: Required property is missing: shell`);
    }
    if (!composite && s.shell !== undefined && (typeof s.shell !== 'string' || X.hasExpression(s.shell))) {
      throw new StepError(`${at}: 'shell' must be a plain string here (no expressions in a workflow step's shell)`);
    }
    if (s.id !== undefined) {
      if (typeof s.id !== 'string' || !/^[A-Za-z_][A-Za-z0-9_-]*$/.test(s.id)) {
        throw new StepError(`${at}: The identifier '${s.id}' is invalid. IDs may only contain alphanumeric characters, '_', and '-'. IDs must start with a letter or '_'.`);
      }
      const k = s.id.toLowerCase();
      if (ids.has(k)) throw new StepError(`${at}: The identifier '${s.id}' may not be used more than once within the same scope.`);
      ids.add(k);
    }
    for (const m of ['env', 'with']) {
      if (s[m] === undefined) continue;
      if (!isMapping(s[m])) throw new StepError(`${at}: '${m}' must be a mapping`);
      for (const [k, v] of Object.entries(s[m])) {
        if (v !== null && typeof v === 'object') throw new StepError(`${at}: ${m}.${k}: ${describe(v)} was not expected`);
      }
    }
  });
}

function loadAction(dir, uses) {
  let file = null;
  for (const f of ['action.yml', 'action.yaml']) {
    if (fs.existsSync(path.join(dir, f))) {
      file = path.join(dir, f);
      break;
    }
  }
  if (!file) {
    if (fs.existsSync(path.join(dir, 'Dockerfile'))) throw new StepError(`'${uses}': Dockerfile actions are not emulated`);
    throw new StepError(`Can't find 'action.yml', 'action.yaml' or 'Dockerfile' under '${dir}'.`);
  }
  let m;
  try {
    m = YAML.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new StepError(`Failed to load ${file}: ${e.message}`);
  }
  const rel = path.relative(process.cwd(), file);
  const where = rel && !rel.startsWith('..') ? rel : file;
  if (!isMapping(m)) throw new StepError(`${where}: a mapping is expected`);
  if (m.inputs !== undefined && m.inputs !== null) {
    if (!isMapping(m.inputs)) throw new StepError(`${where}: 'inputs' must be a mapping`);
    for (const [k, v] of Object.entries(m.inputs)) {
      if (v !== null && !isMapping(v)) throw new StepError(`${where}: inputs.${k} must be a mapping`);
    }
  }
  if (m.outputs !== undefined && m.outputs !== null && !isMapping(m.outputs)) throw new StepError(`${where}: 'outputs' must be a mapping`);
  for (const [k, v] of Object.entries(m.inputs || {})) {
    if (v && v.default !== undefined) checkTemplate(v.default, ALLOW.inputDefault, `${where}: inputs.${k}.default`);
  }
  if (!isMapping(m.runs)) throw new StepError(`${where}: Required property is missing: runs`);
  const using = String(m.runs.using ?? '');
  if (using === 'composite') {
    for (const k of Object.keys(m.runs)) if (!['using', 'steps'].includes(k)) throw new StepError(`${where}: runs: Unexpected value '${k}'`);
    validateSteps(m.runs.steps, `${where}: runs`, true);
    checkSteps(m.runs.steps, true, `${where}: runs`);
    for (const [k, v] of Object.entries(m.outputs || {})) {
      if (!isMapping(v)) throw new StepError(`${where}: outputs.${k} must be a mapping`);
      for (const kk of Object.keys(v)) if (!['description', 'value'].includes(kk)) throw new StepError(`${where}: outputs.${k}: Unexpected value '${kk}'`);
      checkTemplate(v.value, ALLOW.outputValue, `${where}: outputs.${k}.value`);
    }
  } else if (/^node\d+$/.test(using)) {
    for (const k of Object.keys(m.runs)) {
      if (!['using', 'main', 'pre', 'pre-if', 'post', 'post-if'].includes(k)) throw new StepError(`${where}: runs: Unexpected value '${k}'`);
    }
    if (!m.runs.main) throw new StepError(`${where}: Required property is missing: main`);
  } else if (using === 'docker') {
    throw new StepError(`${where}: docker actions are not emulated`);
  } else {
    throw new StepError(`${where}: 'using: ${using}' is not supported, use 'docker', 'node12', 'node16', 'node20', 'node24' or 'composite' instead.`);
  }
  return { dir, file, manifest: m };
}

function resolveRemote(uses) {
  const m = /^([^/@\s]+)\/([^/@\s]+)((?:\/[^@\s]+)?)@(\S+)$/.exec(uses);
  if (!m) throw new StepError(`Expected format {org}/{repo}[/path]@ref. Actual '${uses}'`);
  const key = `${m[1]}/${m[2]}${m[3]}`.toLowerCase();
  const em = EMULATED[key];
  if (!em) {
    throw new StepError(`'${uses}' is not emulated by tests/action/runner.mjs (emulated: ${Object.keys(EMULATED).join(', ')}, and ./local actions)`);
  }
  return { ...em, key, owner: m[1], repo: m[2], subpath: m[3], ref: m[4] };
}

// ---------------------------------------------------------------------------
// File commands
// ---------------------------------------------------------------------------

function initFileCommands() {
  const suffix = crypto.randomUUID();
  const files = {
    path: path.join(S.fileCmdDir, `add_path_${suffix}`),
    env: path.join(S.fileCmdDir, `set_env_${suffix}`),
    step_summary: path.join(S.fileCmdDir, `step_summary_${suffix}`),
    state: path.join(S.fileCmdDir, `save_state_${suffix}`),
    output: path.join(S.fileCmdDir, `set_output_${suffix}`),
  };
  for (const f of Object.values(files)) fs.writeFileSync(f, '');
  return files;
}

// EnvFileKeyValuePairs: NAME=value lines and NAME<<DELIMITER heredocs.
function parseKeyValueFile(file) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const pairs = [];
  let index = 0;
  const readLine = () => {
    if (index >= text.length) return null;
    const lf = text.indexOf('\n', index);
    if (lf < 0) {
      const line = text.slice(index);
      index = text.length;
      return { line, nl: false };
    }
    const line = text.slice(index, lf);
    index = lf + 1;
    return { line, nl: true };
  };
  for (let r = readLine(); r !== null; r = readLine()) {
    const line = r.line;
    if (line === '') continue;
    const eq = line.indexOf('=');
    const hd = line.indexOf('<<');
    if (eq >= 0 && (hd < 0 || eq < hd)) {
      pairs.push([line.slice(0, eq), line.slice(eq + 1)]);
    } else if (hd >= 0 && (eq < 0 || hd < eq)) {
      const name = line.slice(0, hd);
      const delim = line.slice(hd + 2);
      if (!name || !delim) throw new Error(`Invalid format '${line}'. Name must not be empty and delimiter must not be empty`);
      const start = index;
      let end = index;
      for (;;) {
        const t = readLine();
        if (t === null) throw new Error(`Invalid value. Matching delimiter not found '${delim}'`);
        if (t.line === delim) break;
        if (!t.nl) throw new Error('Invalid value. EOF marker missing new line.');
        end = index - 1;
      }
      pairs.push([name, end > start ? text.slice(start, end) : '']);
    } else {
      throw new Error(`Invalid format '${line}'`);
    }
  }
  return pairs;
}

function processFileCommands(files, ctx) {
  const run = (name, fn) => {
    try {
      fn();
    } catch (e) {
      ctx.error(`Unable to process file command '${name}' successfully.`);
      ctx.error(e.message);
      ctx.commandFailed = true;
    }
  };
  run('path', () => {
    const text = fs.existsSync(files.path) ? fs.readFileSync(files.path, 'utf8') : '';
    for (const line of text.split('\n')) {
      if (line === '') continue;
      S.prependPath = S.prependPath.filter(p => p !== line);
      S.prependPath.push(line);
    }
  });
  run('env', () => {
    for (const [k, v] of parseKeyValueFile(files.env)) {
      if (k.toUpperCase() === 'NODE_OPTIONS') {
        ctx.error(`Can't store NODE_OPTIONS output parameter using '$GITHUB_ENV' command.`);
        continue;
      }
      S.globalEnv[k] = v;
    }
  });
  run('step_summary', () => {
    if (fs.existsSync(files.step_summary)) ctx.rec.summary += fs.readFileSync(files.step_summary, 'utf8');
  });
  run('state', () => {
    for (const [k, v] of parseKeyValueFile(files.state)) ctx.state[k] = v;
  });
  run('output', () => {
    for (const [k, v] of parseKeyValueFile(files.output)) ctx.rec.outputs[k] = v;
  });
  for (const f of Object.values(files)) fs.rmSync(f, { force: true });
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

const COMMANDS = new Set([
  'set-env', 'set-output', 'save-state', 'add-path', 'add-mask', 'add-matcher', 'remove-matcher',
  'warning', 'error', 'notice', 'debug', 'group', 'endgroup', 'echo', 'stop-commands',
]);

function unescapeData(s) {
  return s.replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%25/g, '%');
}

function unescapeProperty(s) {
  return s.replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%3A/g, ':').replace(/%2C/g, ',').replace(/%25/g, '%');
}

function parseCommand(line) {
  const msg = line.trimStart();
  if (!msg.startsWith('::')) return null;
  const end = msg.indexOf('::', 2);
  if (end < 0) return null;
  const info = msg.slice(2, end);
  const sp = info.indexOf(' ');
  const name = sp < 0 ? info : info.slice(0, sp);
  const props = {};
  if (sp > 0) {
    for (const p of info.slice(sp + 1).trim().split(',')) {
      if (!p) continue;
      const eq = p.indexOf('=');
      if (eq > 0 && eq < p.length - 1) props[p.slice(0, eq)] = unescapeProperty(p.slice(eq + 1));
    }
  }
  return { name, props, data: unescapeData(msg.slice(end + 2)) };
}

function unsecureAllowed(ctx) {
  const v = ctx.envCtx.ACTIONS_ALLOW_UNSECURE_COMMANDS ?? S.baseEnv.ACTIONS_ALLOW_UNSECURE_COMMANDS;
  return typeof v === 'string' && v.toLowerCase() === 'true';
}

// One line of a step's output: a workflow command, or text to print.
function handleLine(ctx, line) {
  const print = s => emit(ctx.label, s);
  const cmd = parseCommand(line);
  if (ctx.stopToken) {
    if (cmd && cmd.name === ctx.stopToken) ctx.stopToken = null;
    print(line);
    return;
  }
  if (!cmd || !COMMANDS.has(cmd.name)) {
    print(line);
    return;
  }
  switch (cmd.name) {
    case 'add-mask':
      if (cmd.data.trim()) masks.push(cmd.data.trim());
      return;
    case 'debug':
      if (S.debug) print(`##[debug]${cmd.data}`);
      return;
    case 'error':
    case 'warning':
    case 'notice':
      print(`##[${cmd.name}]${cmd.data}`);
      annotate(cmd.name, cmd.data, ctx.label);
      return;
    case 'group':
      print(`##[group]${cmd.data}`);
      return;
    case 'endgroup':
      print('##[endgroup]');
      return;
    case 'echo':
    case 'add-matcher':
    case 'remove-matcher':
      return;
    case 'stop-commands':
      ctx.stopToken = cmd.data;
      print(line);
      return;
    case 'set-output':
      if (!cmd.props.name) {
        ctx.error('Required field \'name\' is missing in ##[set-output] command.');
        ctx.commandFailed = true;
        return;
      }
      ctx.rec.outputs[cmd.props.name] = cmd.data;
      return;
    case 'save-state':
      if (cmd.props.name) ctx.state[cmd.props.name] = cmd.data;
      return;
    case 'set-env':
    case 'add-path':
      if (!unsecureAllowed(ctx)) {
        ctx.error(
          `Unable to process command '${line}' successfully.\nThe \`${cmd.name}\` command is disabled. Please upgrade to using Environment Files or opt into unsecure command execution by setting the \`ACTIONS_ALLOW_UNSECURE_COMMANDS\` environment variable to \`true\`.`
        );
        ctx.commandFailed = true;
        return;
      }
      if (cmd.name === 'set-env') S.globalEnv[cmd.props.name] = cmd.data;
      else {
        S.prependPath = S.prependPath.filter(p => p !== cmd.data);
        S.prependPath.push(cmd.data);
      }
      return;
  }
}

const delay = ms => new Promise(r => setTimeout(r, ms));

function runProcess(file, args, { cwd, env, ctx, timeoutMs = 0 }) {
  return new Promise(resolve => {
    let finished = false;
    let stepOver = false;
    let timedOut = false;
    const timers = [];
    let child;
    const finish = code => {
      if (finished) return;
      finished = true;
      for (const t of timers) clearTimeout(t);
      S.children.delete(child);
      resolve({ code, timedOut });
    };
    try {
      child = spawn(file, args, { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (e) {
      ctx.error(`An error occurred trying to start process '${file}' with working directory '${cwd}'. ${e.message}`);
      finish(-1);
      return;
    }
    S.children.add(child);
    child.stdin.on('error', () => {});
    child.stdin.end();
    const reader = stream => {
      let buf = '';
      stream.setEncoding('utf8');
      const drain = final => {
        let start = 0;
        for (let i = 0; i < buf.length; i++) {
          const c = buf[i];
          if (c !== '\n' && c !== '\r') continue;
          if (c === '\r' && i + 1 >= buf.length && !final) break;
          if (!stepOver) handleLine(ctx, buf.slice(start, i));
          if (c === '\r' && buf[i + 1] === '\n') i++;
          start = i + 1;
        }
        buf = buf.slice(start);
        if (final && buf !== '') {
          if (!stepOver) handleLine(ctx, buf);
          buf = '';
        }
      };
      stream.on('data', d => {
        buf += d;
        drain(false);
      });
      return new Promise(r => {
        stream.on('end', () => {
          drain(true);
          r();
        });
        stream.on('error', () => r());
      });
    };
    const eof = Promise.all([reader(child.stdout), reader(child.stderr)]);
    child.on('error', e => {
      ctx.error(`An error occurred trying to start process '${file}' with working directory '${cwd}'. ${e.message}`);
      finish(-1);
    });
    let exited = false;
    child.on('exit', async (code, signal) => {
      exited = true;
      // Like the runner: once the process is gone, wait at most 5 s for the
      // output pipes to close (a background child may hold them open).
      let t;
      await Promise.race([eof, new Promise(r => (t = setTimeout(r, 5000)))]);
      clearTimeout(t);
      stepOver = true;
      finish(code ?? 128 + (os.constants.signals[signal] || 0));
    });
    if (timeoutMs > 0) {
      timers.push(
        setTimeout(async () => {
          timedOut = true;
          const sig = async (s, wait) => {
            if (exited) return;
            try {
              process.kill(child.pid, s);
            } catch {
              return;
            }
            for (let w = 0; w < wait && !exited; w += 100) await delay(100);
          };
          await sig('SIGINT', 7500);
          await sig('SIGTERM', 2500);
          await sig('SIGKILL', 0);
        }, timeoutMs)
      );
    }
  });
}

function which(cmd) {
  if (cmd.includes('/')) return fs.existsSync(cmd) ? path.resolve(cmd) : null;
  const dirs = [...S.prependPath].reverse().concat((S.baseEnv.PATH || '').split(path.delimiter));
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, cmd);
    try {
      const st = fs.statSync(p);
      if (st.isFile()) {
        fs.accessSync(p, fs.constants.X_OK);
        return p;
      }
    } catch {
      // next
    }
  }
  return null;
}

// Splits an argument string the way .NET's Process does (double quotes group).
function splitArgs(s) {
  const args = [];
  let cur = '';
  let inQ = false;
  let has = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '"') {
      inQ = !inQ;
      has = true;
    } else if (!inQ && /\s/.test(c)) {
      if (has) args.push(cur);
      cur = '';
      has = false;
    } else {
      cur += c;
      has = true;
    }
  }
  if (has) args.push(cur);
  return args;
}

const SHELL_ARGS = {
  bash: '--noprofile --norc -e -o pipefail {0}',
  sh: '-e {0}',
  python: '{0}',
  pwsh: "-command \". '{0}'\"",
  powershell: "-command \". '{0}'\"",
};
const SHELL_EXT = { bash: '.sh', sh: '.sh', python: '.py', pwsh: '.ps1', powershell: '.ps1', cmd: '.cmd' };

function resolveShell(shell) {
  let command;
  let cmdPath;
  let argFormat;
  if (!shell) {
    command = 'sh';
    cmdPath = which('bash') || which('sh');
    if (!cmdPath) throw new StepError("File not found: 'sh'");
    argFormat = SHELL_ARGS.sh;
  } else {
    const sp = shell.indexOf(' ');
    command = sp < 0 ? shell : shell.slice(0, sp);
    argFormat = sp < 0 ? '' : shell.slice(sp + 1).trimStart();
    if (command === 'cmd') throw new StepError("shell 'cmd' is Windows-only");
    if (!argFormat) argFormat = SHELL_ARGS[command] || '';
    if (!argFormat.includes('{0}')) {
      throw new StepError("Invalid shell option. Shell must be a valid built-in (bash, sh, cmd, powershell, pwsh) or a format string containing '{0}'");
    }
    cmdPath = which(command);
    if (!cmdPath) throw new StepError(`File not found: '${command}'`);
  }
  return { command, cmdPath, argFormat, ext: SHELL_EXT[command] || '' };
}

// The environment of a step's process.
function processEnv(ctx, kind, { inputs = null, state = null } = {}) {
  const env = { ...S.baseEnv };
  for (const [k, v] of Object.entries(ctx.envCtx)) env[k] = v;
  if (state) for (const [k, v] of Object.entries(state)) env[`STATE_${k}`] = v;
  if (inputs) for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.replace(/ /g, '_').toUpperCase()}`] = v;
  if (S.prependPath.length) {
    const original = ctx.envCtx.PATH ?? S.baseEnv.PATH ?? '';
    const prepend = [...S.prependPath].reverse().join(path.delimiter);
    env.PATH = original ? `${prepend}${path.delimiter}${original}` : prepend;
  }
  for (const [k, v] of Object.entries(ctx.github)) {
    if (!GITHUB_ENV_ALLOW.has(k)) continue;
    if (typeof v === 'string') env[`GITHUB_${k.toUpperCase()}`] = v;
    else if (typeof v === 'boolean') env[`GITHUB_${k.toUpperCase()}`] = v ? 'True' : 'False';
  }
  const rc = runnerContext();
  for (const [k, v] of Object.entries(rc)) env[`RUNNER_${k.toUpperCase()}`] = v;
  for (const [k, v] of Object.entries(S.idTokenEnv)) env[k] = v;
  if (kind === 'node') {
    for (const [k, v] of Object.entries(S.runtimeEnv)) env[k] = v;
    delete env.NODE_ICU_DATA;
  }
  return env;
}

// ---------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------

function firstLine(s) {
  const line = String(s)
    .split('\n')
    .map(l => l.trim())
    .find(l => l !== '');
  return line ?? '';
}

function defaultName(def) {
  return def.run !== undefined ? `Run ${firstLine(def.run)}` : `Run ${def.uses}`;
}

// Runs one step (or, with stage 'post', the post part of an action step) in
// scope `sc`; returns its record.
async function runStep(def, sc, label, stage = 'main', post = null) {
  const isPost = stage === 'post';
  const inComposite = sc.kind === 'composite';
  const contextName = sc.names.get(def);
  const rec = { id: def.id ?? null, name: null, outcome: 'success', conclusion: 'success', outputs: {}, summary: '' };
  const statusOf = () => (inComposite && !isPost ? sc.status : S.jobStatus);
  const status = {
    success: () => statusOf() === 'success',
    failure: () => statusOf() === 'failure',
    cancelled: () => false,
  };
  const github = { ...S.github, action: contextName };
  if (inComposite) {
    github.action_path = sc.actionPath;
    github.action_status = sc.status;
  }
  const envCtx = { ...S.globalEnv };
  if (inComposite) for (const k of sc.overrideKeys) if (k in sc.overrideEnv) envCtx[k] = sc.overrideEnv[k];
  const allowedStep = inComposite ? ALLOW.compStep : ALLOW.jobStep;
  const allowedIf = isPost ? ALLOW.jobIf : inComposite ? ALLOW.compIf : ALLOW.jobIf;
  const ctx = {
    def,
    sc,
    label,
    rec,
    github: githubContext(github),
    envCtx,
    stepEnv: {},
    state: {},
    isPost,
    post,
    allowedStep,
    commandFailed: false,
    stopToken: null,
    ev: () => evalEnv(sc, ctx.github, ctx.envCtx, status),
    error: msg => {
      emit(label, `##[error]${msg}`);
      annotate('error', msg, label);
    },
    warning: msg => {
      emit(label, `##[warning]${msg}`);
      annotate('warning', msg, label);
    },
  };

  const finish = () => {
    if (!isPost) sc.steps[contextName] = { outputs: rec.outputs, outcome: rec.outcome, conclusion: rec.conclusion };
    if (rec.conclusion === 'failure') {
      if (inComposite && !isPost) sc.status = 'failure';
      else S.jobStatus = 'failure';
    }
    const extra = rec.outcome !== rec.conclusion ? ` (outcome ${rec.outcome}, continue-on-error)` : '';
    out(`<== [${label}] ${rec.conclusion}${extra}: ${rec.name}`);
    return rec;
  };

  // env: the step's own variables, evaluated against the env context without them
  let envError = null;
  try {
    const ev = ctx.ev();
    for (const [k, v] of Object.entries(def.env || {})) ctx.stepEnv[k] = evalString(v, allowedStep, ev, `env.${k}`);
  } catch (e) {
    if (!(e instanceof X.ExprError)) throw e;
    envError = e;
  }
  Object.assign(envCtx, ctx.stepEnv);

  // display name
  let name = isPost ? post.displayName : defaultName(def);
  if (!isPost && def.name !== undefined) {
    try {
      name = evalString(def.name, allowedStep, ctx.ev(), 'name');
    } catch {
      name = String(def.name);
    }
  }
  rec.name = name;
  ctx.displayName = name;

  if (envError) {
    out(`==> [${label}] ${name}`);
    ctx.error(envError.message);
    rec.outcome = rec.conclusion = 'failure';
    return finish();
  }

  // if
  let go;
  try {
    go = evalCondition(isPost ? post.condition : def.if, allowedIf, ctx.ev());
  } catch (e) {
    if (!(e instanceof X.ExprError)) throw e;
    out(`==> [${label}] ${name}`);
    ctx.error(e.message);
    rec.outcome = rec.conclusion = 'failure';
    rec.conditionError = true;
    return finish();
  }
  if (!go) {
    rec.outcome = rec.conclusion = 'skipped';
    out(`--- [${label}] skipped: ${name}`);
    if (!isPost) sc.steps[contextName] = { outputs: {}, outcome: 'skipped', conclusion: 'skipped' };
    return rec;
  }

  out(`==> [${label}] ${name}`);
  const files = initFileCommands();
  for (const k of Object.keys(files)) github[k] = files[k];
  ctx.github = githubContext(github);
  let result = 'failure';
  try {
    result = await execute(ctx);
  } catch (e) {
    if (e instanceof X.ExprError || e instanceof StepError) ctx.error(e.message);
    else ctx.error(e && e.stack ? e.stack : String(e));
    result = 'failure';
  } finally {
    processFileCommands(files, ctx);
  }
  if (ctx.commandFailed) result = 'failure';
  rec.outcome = rec.conclusion = result;
  if (result === 'failure' && def['continue-on-error'] !== undefined) {
    try {
      if (evalBool(def['continue-on-error'], allowedStep, ctx.ev(), 'continue-on-error')) rec.conclusion = 'success';
    } catch (e) {
      if (!(e instanceof X.ExprError)) throw e;
      ctx.error(e.message);
    }
  }
  return finish();
}

function timeoutOf(ctx) {
  if (ctx.sc.kind !== 'job' || ctx.def['timeout-minutes'] === undefined) return 0;
  const n = evalNumber(ctx.def['timeout-minutes'], ctx.allowedStep, ctx.ev(), 'timeout-minutes');
  return n > 0 ? n * 60000 : 0;
}

async function execute(ctx) {
  const { def } = ctx;
  if (ctx.isPost) return runJsAction(ctx, ctx.post.spec);
  if (def.run !== undefined) return runScript(ctx);
  const uses = def.uses.trim();
  if (uses.startsWith('docker://')) throw new StepError(`'${uses}': docker actions are not emulated`);
  if (uses.startsWith('./') || uses.startsWith('../') || uses === '.') {
    const dir = path.resolve(S.repo, uses);
    const action = loadAction(dir, uses);
    const m = action.manifest;
    const inputs = evaluateInputs(ctx, m.inputs || {}, true);
    if (m.runs.using === 'composite') return runComposite(ctx, action, inputs);
    return runJsAction(ctx, {
      repository: null,
      actionPath: dir,
      inputs,
      declaredInputs: m.inputs || {},
      mainArgs: [path.join(dir, m.runs.main)],
      postArgs: m.runs.post ? [path.join(dir, m.runs.post)] : null,
      postIf: m.runs['post-if'] ?? 'always()',
    });
  }
  const em = resolveRemote(uses);
  if (em.versionNote && !em.ref.startsWith(em.versionNote) && !/^[0-9a-f]{40}$/.test(em.ref)) {
    out(`[${ctx.label}] (note: ${em.key}@${em.ref} is emulated with ${em.key}@${em.versionNote} behaviour)`);
  }
  const actionPath = path.join(S.root, 'work', '_actions', em.owner, em.repo, em.ref, em.subpath || '');
  fs.mkdirSync(actionPath, { recursive: true });
  const inputs = evaluateInputs(ctx, em.inputs, true);
  return runJsAction(ctx, {
    repository: `${em.owner}/${em.repo}`,
    ref: em.ref,
    actionPath,
    inputs,
    declaredInputs: em.inputs,
    mainArgs: [path.join(HERE, 'node-actions.mjs'), em.main],
    postArgs: em.post ? [path.join(HERE, 'node-actions.mjs'), em.post] : null,
    postIf: em.postIf ?? 'always()',
  });
}

// with: values, then the action's defaults for the inputs not given.
function evaluateInputs(ctx, declared, warn) {
  const ev = ctx.ev();
  const given = {};
  for (const [k, v] of Object.entries(ctx.def.with || {})) given[k] = evalString(v, ctx.allowedStep, ev, `with.${k}`);
  const result = { ...given };
  const givenLower = new Set(Object.keys(given).map(k => k.toLowerCase()));
  const declaredLower = new Set(Object.keys(declared).map(k => k.toLowerCase()));
  const defaultsEv = evalEnv(null, ctx.github, null, null);
  for (const [name, spec] of Object.entries(declared)) {
    if (givenLower.has(name.toLowerCase())) {
      if (warn && spec && spec.deprecationMessage) ctx.warning(`Input '${name}' has been deprecated with message: ${spec.deprecationMessage}`);
      continue;
    }
    result[name] = spec && spec.default !== undefined && spec.default !== null
      ? evalString(spec.default, ALLOW.inputDefault, defaultsEv, `inputs.${name}.default`)
      : '';
  }
  if (warn && Object.keys(given).length) {
    out(`[${ctx.label}] with:`);
    for (const [k, v] of Object.entries(given)) {
      const [first, ...more] = v.split('\n');
      out(`[${ctx.label}]   ${k}: ${first}`);
      for (const m of more) out(`[${ctx.label}]     ${m}`);
    }
  }
  const unexpected = Object.keys(given).filter(k => !declaredLower.has(k.toLowerCase()));
  if (warn && unexpected.length) {
    ctx.warning(`Unexpected input(s) '${unexpected.join("', '")}', valid inputs are ['${Object.keys(declared).join("', '")}']`);
  }
  return result;
}

async function runScript(ctx) {
  const { def, sc } = ctx;
  const ev = ctx.ev();
  const script = evalString(def.run, ctx.allowedStep, ev, 'run');
  let shell;
  if (sc.kind === 'composite') shell = evalString(def.shell, ctx.allowedStep, ev, 'shell');
  else shell = def.shell ?? S.defaults.shell;
  let wd;
  if (def['working-directory'] !== undefined) wd = evalString(def['working-directory'], ctx.allowedStep, ev, 'working-directory');
  else if (sc.kind === 'job') wd = S.defaults['working-directory'];
  const cwd = path.resolve(S.workspace, wd || '');
  const timeoutMs = timeoutOf(ctx);
  const sh = resolveShell(shell ? String(shell) : '');
  let contents = script;
  if (sh.command === 'pwsh' || sh.command === 'powershell') {
    contents = `$ErrorActionPreference = 'stop'\n${script}\nif ((Test-Path -LiteralPath variable:\\LASTEXITCODE)) { exit $LASTEXITCODE }`;
  }
  const file = path.join(S.temp, `${crypto.randomUUID()}${sh.ext}`);
  fs.writeFileSync(file, contents);
  for (const line of script.replace(/\n$/, '').split('\n')) out(`[${ctx.label}] ${line}`);
  out(`[${ctx.label}] shell: ${sh.cmdPath} ${sh.argFormat}`);
  const envKeys = Object.keys(ctx.envCtx);
  if (envKeys.length) {
    out(`[${ctx.label}] env:`);
    for (const k of envKeys) {
      const [first, ...more] = String(ctx.envCtx[k]).split('\n');
      out(`[${ctx.label}]   ${k}: ${first}`);
      for (const m of more) out(`[${ctx.label}]     ${m}`);
    }
  }
  let st;
  try {
    st = fs.statSync(cwd);
  } catch {
    st = null;
  }
  if (!st || !st.isDirectory()) {
    ctx.error(`An error occurred trying to start process '${sh.cmdPath}' with working directory '${cwd}'. No such file or directory`);
    return 'failure';
  }
  const args = splitArgs(sh.argFormat.replace('{0}', file.replace(/"/g, '\\"')));
  const env = processEnv(ctx, 'script');
  const r = await runProcess(sh.cmdPath, args, { cwd, env, ctx, timeoutMs });
  if (r.timedOut) {
    ctx.error(`The action '${ctx.displayName}' has timed out after ${timeoutMs / 60000} minutes.`);
    return 'failure';
  }
  if (r.code !== 0) {
    ctx.error(`Process completed with exit code ${r.code}.`);
    return 'failure';
  }
  return 'success';
}

async function runComposite(ctx, action, inputs) {
  const steps = action.manifest.runs.steps;
  const inputsObj = X.strict({ ...inputs }, 'inputs', { known: Object.keys(inputs) });
  const parentKeys = ctx.sc.kind === 'composite' ? ctx.sc.overrideKeys : new Set();
  const csc = newScope({
    kind: 'composite',
    stepDefs: steps,
    inputs: inputsObj,
    actionPath: action.dir,
    overrideKeys: new Set([...parentKeys, ...Object.keys(ctx.stepEnv)]),
    overrideEnv: { ...ctx.envCtx },
  });
  ctx.rec.steps = [];
  for (let i = 0; i < steps.length; i++) {
    const r = await runStep(steps[i], csc, `${ctx.label}.${i + 1}`);
    ctx.rec.steps.push(r);
    if (r.summary) ctx.rec.summary += r.summary;
    if (r.conditionError) break;
  }
  // outputs, evaluated against the composite's steps and inputs
  const ev = {
    contexts: {
      github: ctx.github,
      runner: runnerContext(),
      job: jobContext(),
      env: X.strict({ ...ctx.envCtx }, 'env', { caseSensitive: true }),
      steps: stepsContext(csc),
      inputs: inputsObj,
    },
    status: null,
    hashFiles: null,
  };
  let status = csc.status;
  for (const [name, spec] of Object.entries(action.manifest.outputs || {})) {
    if (!spec || spec.value === undefined) continue;
    try {
      ctx.rec.outputs[name] = evalString(spec.value, ALLOW.outputValue, ev, `outputs.${name}.value`);
    } catch (e) {
      if (!(e instanceof X.ExprError)) throw e;
      ctx.error(e.message);
      status = 'failure';
    }
  }
  return status;
}

async function runJsAction(ctx, spec) {
  const github = { ...ctx.github, action_path: spec.actionPath };
  if (spec.repository) {
    github.action_repository = spec.repository;
    github.action_ref = spec.ref;
  }
  ctx.github = githubContext(github);
  let inputs = spec.inputs;
  let args = spec.mainArgs;
  let state = null;
  if (ctx.isPost) {
    inputs = evaluateInputs(ctx, spec.declaredInputs, false);
    args = spec.postArgs;
    state = ctx.post.state;
  } else if (spec.postArgs) {
    // registered before the main part runs, as the runner does
    const post = {
      def: ctx.def,
      sc: ctx.sc,
      label: `post ${ctx.label}`,
      displayName: `Post ${ctx.displayName}`,
      condition: spec.postIf,
      spec,
      state: ctx.state,
    };
    S.post.push(post);
  }
  const env = processEnv(ctx, 'node', { inputs, state });
  const r = await runProcess(process.execPath, args, { cwd: S.workspace, env, ctx, timeoutMs: timeoutOf(ctx) });
  if (r.timedOut) {
    ctx.error(`The action '${ctx.displayName}' has timed out.`);
    return 'failure';
  }
  return r.code === 0 ? 'success' : 'failure';
}

// ---------------------------------------------------------------------------
// Job
// ---------------------------------------------------------------------------

function emptyDir(dir) {
  fs.mkdirSync(dir, { recursive: true });
  for (const e of fs.readdirSync(dir)) fs.rmSync(path.join(dir, e), { recursive: true, force: true });
}

function loadJob(opts) {
  let doc;
  try {
    doc = YAML.parse(fs.readFileSync(opts.workflow, 'utf8'));
  } catch (e) {
    throw new StepError(`${opts.workflow}: ${e.message}`);
  }
  if (!isMapping(doc)) throw new StepError(`${opts.workflow}: a mapping is expected`);
  let job = doc;
  let jobId = opts.job ?? null;
  let wfEnv = {};
  let wfDefaults = {};
  if (doc.jobs !== undefined) {
    if (!isMapping(doc.jobs)) throw new StepError(`${opts.workflow}: 'jobs' must be a mapping`);
    const ids = Object.keys(doc.jobs);
    if (!jobId) {
      if (ids.length !== 1) throw new StepError(`${opts.workflow}: ${ids.length} jobs; pick one with --job`);
      jobId = ids[0];
    }
    job = doc.jobs[jobId];
    if (!isMapping(job)) throw new StepError(`${opts.workflow}: no job '${jobId}'`);
    wfEnv = doc.env || {};
    wfDefaults = doc.defaults || {};
  }
  const okKeys = ['steps', 'env', 'defaults', 'name', 'runs-on', 'timeout-minutes', 'permissions'];
  for (const k of Object.keys(job)) {
    if (!okKeys.includes(k)) throw new StepError(`${opts.workflow}: job key '${k}' is not emulated (supported: ${okKeys.join(', ')})`);
  }
  validateSteps(job.steps, opts.workflow, false);
  for (const [what, m] of [['env', wfEnv], ['env', job.env || {}], ['defaults', wfDefaults], ['defaults', job.defaults || {}]]) {
    if (!isMapping(m)) throw new StepError(`${opts.workflow}: '${what}' must be a mapping`);
    if (what === 'env') for (const [k, v] of Object.entries(m)) checkTemplate(v, ALLOW.jobEnv, `${opts.workflow}: env.${k}`);
    else if (m.run !== undefined) {
      if (!isMapping(m.run)) throw new StepError(`${opts.workflow}: defaults.run must be a mapping`);
      for (const [k, v] of Object.entries(m.run)) {
        if (!['shell', 'working-directory'].includes(k)) throw new StepError(`${opts.workflow}: defaults.run: Unexpected value '${k}'`);
        checkTemplate(v, ALLOW.defaultsRun, `${opts.workflow}: defaults.run.${k}`);
      }
    }
  }
  checkSteps(job.steps, false, opts.workflow);
  return { job, jobId, wfEnv, wfDefaults };
}

function configure(opts, jobId) {
  const root = path.resolve(opts.root);
  S.root = root;
  S.repo = path.resolve(opts.repo);
  S.home = path.join(root, 'home');
  S.workspace = path.join(root, 'work', 'repo', 'repo');
  S.temp = path.join(root, 'temp');
  S.toolCache = path.join(root, 'tool-cache');
  S.fileCmdDir = path.join(S.temp, '_runner_file_commands');
  S.trackingId = `github_${crypto.randomUUID()}`;
  S.debug = opts.debug;

  const gh = {
    sha: '0'.repeat(40),
    ref: 'refs/heads/main',
    run_id: '1',
    run_attempt: '1',
    run_number: '1',
    repository: 'zccache/zccache',
    job: jobId || 'test',
    event_name: 'push',
    workflow: 'test',
    actor: 'zccache-test',
    head_ref: '',
    base_ref: '',
    token: 'emulated-github-token',
  };
  S.runtimeEnv = {};
  S.idTokenEnv = {};
  const extra = {};
  for (const [k, v] of opts.env) {
    if (RUNTIME_VARS.has(k)) S.runtimeEnv[k] = v;
    else if (ID_TOKEN_VARS.has(k)) S.idTokenEnv[k] = v;
    else if (GITHUB_CONFIG[k]) gh[GITHUB_CONFIG[k]] = v;
    else if (k === 'RUNNER_DEBUG') S.debug = v === '1';
    else if (/^(GITHUB_|RUNNER_)/.test(k) || ['HOME', 'CI'].includes(k)) usage(`--env ${k}: set by the emulator`);
    else extra[k] = v;
  }
  const ref = gh.ref;
  const refName = ref.replace(/^refs\/(heads|tags)\//, '').replace(/^refs\/pull\/(\d+)\/merge$/, '$1/merge');
  const eventPath = path.join(S.temp, '_github_workflow', 'event.json');
  S.eventPayload = { ref, after: gh.sha, repository: { full_name: gh.repository, name: gh.repository.split('/')[1] || gh.repository } };
  S.github = {
    ...gh,
    ref_name: refName,
    ref_type: ref.startsWith('refs/tags/') ? 'tag' : 'branch',
    repository_owner: gh.repository.split('/')[0],
    repository_id: '1',
    repository_owner_id: '1',
    actor_id: '1',
    workflow_ref: `${gh.repository}/.github/workflows/${gh.workflow}.yml@${ref}`,
    workflow_sha: gh.sha,
    triggering_actor: gh.actor,
    server_url: 'https://github.com',
    api_url: 'https://api.github.com',
    graphql_url: 'https://api.github.com/graphql',
    retention_days: '90',
    workspace: S.workspace,
    event_path: eventPath,
    event: JSON.parse(JSON.stringify(S.eventPayload)),
  };

  const base = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(GITHUB_|RUNNER_|ACTIONS_|INPUT_|STATE_)/.test(k) || ['HOME', 'CI'].includes(k)) continue;
    base[k] = v;
  }
  base.HOME = S.home;
  base.CI = 'true';
  base.GITHUB_ACTIONS = 'true';
  base.RUNNER_TRACKING_ID = S.trackingId;
  if (S.debug) base.RUNNER_DEBUG = '1';
  Object.assign(base, extra);
  S.baseEnv = base;
}

function procComm(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

// JobExtension's orphan cleanup: kill what still carries our RUNNER_TRACKING_ID.
function cleanupOrphans(quiet = false) {
  if (!quiet) out('Cleaning up orphan processes');
  let entries = [];
  try {
    entries = fs.readdirSync('/proc').filter(e => /^\d+$/.test(e));
  } catch {
    return;
  }
  const needle = Buffer.from(`RUNNER_TRACKING_ID=${S.trackingId}\0`);
  for (const e of entries) {
    const pid = Number(e);
    if (pid === process.pid) continue;
    let environ;
    try {
      environ = fs.readFileSync(`/proc/${pid}/environ`);
    } catch {
      continue;
    }
    if (environ.indexOf(needle) < 0) continue;
    if (!quiet) out(`Terminate orphan process: pid (${pid}) (${procComm(pid)})`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

function finalLine(result, steps, post, error) {
  const clean = r => {
    const o = { id: r.id, name: r.name, outcome: r.outcome, conclusion: r.conclusion, outputs: r.outputs };
    if (r.summary) o.summary = r.summary;
    if (r.steps) o.steps = r.steps.map(clean);
    return o;
  };
  const doc = { result, steps: steps.map(clean), post: post.map(clean), annotations: S.annotations };
  if (error) doc.error = error;
  return JSON.stringify(doc);
}

// --check: what GitHub validates when it loads the workflow and the actions.
function checkOnly(opts) {
  const errors = [];
  const seen = new Set();
  const repo = path.resolve(opts.repo);
  const visit = (steps, where) => {
    for (const s of steps) {
      if (typeof s.uses !== 'string') continue;
      const uses = s.uses.trim();
      if (uses.startsWith('./') || uses.startsWith('../')) {
        const dir = path.resolve(repo, uses);
        if (seen.has(dir)) continue;
        seen.add(dir);
        try {
          const a = loadAction(dir, uses);
          if (a.manifest.runs.using === 'composite') visit(a.manifest.runs.steps, a.file);
        } catch (e) {
          if (!(e instanceof StepError)) throw e;
          errors.push(`${where}: ${uses}: ${e.message}`);
        }
      } else if (!uses.startsWith('docker://')) {
        try {
          resolveRemote(uses);
        } catch (e) {
          if (!(e instanceof StepError)) throw e;
          errors.push(`${where}: ${e.message}`);
        }
      }
    }
  };
  try {
    const { job } = loadJob(opts);
    visit(job.steps, opts.workflow);
  } catch (e) {
    if (!(e instanceof StepError)) throw e;
    errors.push(e.message);
  }
  for (const e of errors) process.stdout.write(`error: ${e}\n`);
  process.stdout.write(errors.length ? `${errors.length} error(s)\n` : `ok (${seen.size} local action(s))\n`);
  process.exit(errors.length ? 1 : 0);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.check) {
    checkOnly(opts);
    return;
  }
  if (opts.log) {
    fs.mkdirSync(path.dirname(path.resolve(opts.log)), { recursive: true });
    logFd = fs.openSync(opts.log, 'w');
  }
  const onSignal = sig => {
    out(`runner.mjs: ${sig}, stopping the job`);
    for (const c of S.children) {
      try {
        c.kill('SIGKILL');
      } catch {
        // ignore
      }
    }
    if (S.trackingId) cleanupOrphans(true);
    process.exit(130);
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  let loaded;
  let setupError = null;
  try {
    loaded = loadJob(opts);
  } catch (e) {
    if (!(e instanceof StepError)) throw e;
    setupError = e.message;
  }
  configure(opts, loaded ? loaded.jobId : opts.job);
  for (const d of [S.home, S.workspace, S.toolCache]) fs.mkdirSync(d, { recursive: true });
  emptyDir(S.temp);
  fs.mkdirSync(S.fileCmdDir, { recursive: true });
  fs.mkdirSync(path.dirname(S.github.event_path), { recursive: true });
  fs.writeFileSync(S.github.event_path, JSON.stringify(S.eventPayload, null, 2));

  const finishJob = (steps, post, error) => {
    if (!opts.keepTemp) emptyDir(S.temp);
    const result = error ? 'failure' : S.jobStatus;
    out(`Job ${result}`);
    const line = finalLine(result, steps, post, error) + '\n';
    if (logFd !== null) fs.writeSync(logFd, line);
    process.stdout.write(line, () => process.exit(result === 'success' ? 0 : 1));
  };

  if (setupError) {
    out(`##[error]${setupError}`);
    annotate('error', setupError, 'job');
    finishJob([], [], setupError);
    return;
  }

  // job env: workflow env, then job env (contexts: github)
  try {
    const ev = evalEnv(null, githubContext({ ...S.github }), null, null);
    for (const m of [loaded.wfEnv, loaded.job.env || {}]) {
      for (const [k, v] of Object.entries(m)) S.globalEnv[k] = evalString(v, ALLOW.jobEnv, ev, `env.${k}`);
    }
    for (const m of [loaded.wfDefaults, loaded.job.defaults || {}]) {
      const run = m.run || {};
      const ev2 = evalEnv(null, githubContext({ ...S.github }), S.globalEnv, null);
      for (const k of ['shell', 'working-directory']) {
        if (run[k] !== undefined) S.defaults[k] = evalString(run[k], ALLOW.defaultsRun, ev2, `defaults.run.${k}`);
      }
    }
  } catch (e) {
    if (!(e instanceof X.ExprError)) throw e;
    out(`##[error]${e.message}`);
    annotate('error', e.message, 'job');
    finishJob([], [], e.message);
    return;
  }

  const sc = newScope({ kind: 'job', stepDefs: loaded.job.steps });
  const steps = [];
  for (let i = 0; i < loaded.job.steps.length; i++) steps.push(await runStep(loaded.job.steps[i], sc, String(i + 1)));
  const post = [];
  while (S.post.length) {
    const p = S.post.pop();
    post.push(await runStep(p.def, p.sc, p.label, 'post', p));
  }
  cleanupOrphans();
  finishJob(steps, post, null);
}

main().catch(e => {
  process.stderr.write(`runner.mjs: internal error: ${e && e.stack ? e.stack : e}\n`);
  process.exit(2);
});
