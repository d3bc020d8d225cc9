// The JavaScript actions tests/action/runner.mjs emulates, run as the runner
// runs a node action: a child process in GITHUB_WORKSPACE with INPUT_<NAME>,
// STATE_<NAME>, the GITHUB_* file-command paths and the runtime variables
// (ACTIONS_RUNTIME_TOKEN, ACTIONS_RESULTS_URL, ...) in its environment.
//
//   node node-actions.mjs github-script        actions/github-script (main)
//   node node-actions.mjs cache-restore        actions/cache (main: restore, state for post)
//   node node-actions.mjs cache-save           actions/cache (post: save unless exact hit)
//   node node-actions.mjs cache-restore-only   actions/cache/restore
//   node node-actions.mjs cache-save-only      actions/cache/save
//
// The cache modes reproduce the behaviour of actions/cache v4 (src/restoreImpl.ts,
// src/saveImpl.ts) on top of the official @actions/cache client. `core` below is
// a small stand-in for @actions/core that writes the documented file-command
// formats; it is what github-script's scripts get as `core`.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const nodeRequire = createRequire(import.meta.url);

// ---------------------------------------------------------------------------
// core
// ---------------------------------------------------------------------------

function toCommandValue(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string' || v instanceof String) return String(v);
  return JSON.stringify(v);
}

function escapeData(s) {
  return toCommandValue(s).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

function escapeProperty(s) {
  return escapeData(s).replace(/:/g, '%3A').replace(/,/g, '%2C');
}

function issue(command, props, message) {
  const p = Object.entries(props || {})
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${k}=${escapeProperty(v)}`)
    .join(',');
  process.stdout.write(`::${command}${p ? ' ' + p : ''}::${escapeData(message)}${os.EOL}`);
}

function fileCommand(envName, name, value) {
  const file = process.env[envName];
  if (!file) return false;
  if (!fs.existsSync(file)) throw new Error(`Missing file at path: ${file}`);
  const delimiter = `ghadelimiter_${crypto.randomUUID()}`;
  const v = toCommandValue(value);
  if (name.includes(delimiter) || v.includes(delimiter)) throw new Error('Unexpected input: delimiter found in value');
  fs.appendFileSync(file, `${name}<<${delimiter}${os.EOL}${v}${os.EOL}${delimiter}${os.EOL}`, 'utf8');
  return true;
}

function annotationProps(p) {
  if (!p) return {};
  return { title: p.title, file: p.file, line: p.startLine, endLine: p.endLine, col: p.startColumn, endColumn: p.endColumn };
}

export const core = {
  getInput(name, options = {}) {
    const val = process.env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] || '';
    if (options.required && !val) throw new Error(`Input required and not supplied: ${name}`);
    return options.trimWhitespace === false ? val : val.trim();
  },
  getMultilineInput(name, options = {}) {
    const lines = core.getInput(name, options).split('\n').filter(x => x !== '');
    return options.trimWhitespace === false ? lines : lines.map(x => x.trim());
  },
  getBooleanInput(name, options = {}) {
    const val = core.getInput(name, options);
    if (['true', 'True', 'TRUE'].includes(val)) return true;
    if (['false', 'False', 'FALSE'].includes(val)) return false;
    throw new TypeError(
      `Input does not meet YAML 1.2 "Core Schema" specification: ${name}\nSupport boolean input list: \`true | True | TRUE | false | False | FALSE\``
    );
  },
  exportVariable(name, value) {
    const v = toCommandValue(value);
    process.env[name] = v;
    if (!fileCommand('GITHUB_ENV', name, v)) issue('set-env', { name }, v);
  },
  setSecret(secret) {
    issue('add-mask', {}, secret);
  },
  addPath(p) {
    if (process.env.GITHUB_PATH) fs.appendFileSync(process.env.GITHUB_PATH, `${p}${os.EOL}`, 'utf8');
    else issue('add-path', {}, p);
    process.env.PATH = `${p}${path.delimiter}${process.env.PATH}`;
  },
  setOutput(name, value) {
    if (!fileCommand('GITHUB_OUTPUT', name, value)) {
      process.stdout.write(os.EOL);
      issue('set-output', { name }, toCommandValue(value));
    }
  },
  saveState(name, value) {
    if (!fileCommand('GITHUB_STATE', name, value)) issue('save-state', { name }, toCommandValue(value));
  },
  getState(name) {
    return process.env[`STATE_${name}`] || '';
  },
  setFailed(message) {
    process.exitCode = 1;
    core.error(message);
  },
  isDebug() {
    return process.env.RUNNER_DEBUG === '1';
  },
  debug(message) {
    issue('debug', {}, message);
  },
  error(message, props) {
    issue('error', annotationProps(props), message instanceof Error ? message.toString() : message);
  },
  warning(message, props) {
    issue('warning', annotationProps(props), message instanceof Error ? message.toString() : message);
  },
  notice(message, props) {
    issue('notice', annotationProps(props), message instanceof Error ? message.toString() : message);
  },
  info(message) {
    process.stdout.write(message + os.EOL);
  },
  startGroup(name) {
    issue('group', {}, name);
  },
  endGroup() {
    issue('endgroup', {}, '');
  },
  async group(name, fn) {
    core.startGroup(name);
    try {
      return await fn();
    } finally {
      core.endGroup();
    }
  },
};

// ---------------------------------------------------------------------------
// actions/github-script
// ---------------------------------------------------------------------------

function notEmulated(name) {
  return new Proxy(function () {}, {
    get(_t, prop) {
      if (prop === Symbol.toPrimitive) return () => `[${name}: not emulated]`;
      throw new Error(`'${name}' is not emulated by tests/action/runner.mjs (only core, require and process are)`);
    },
    apply() {
      throw new Error(`'${name}' is not emulated by tests/action/runner.mjs (only core, require and process are)`);
    },
  });
}

async function githubScript() {
  const script = core.getInput('script', { required: true });
  const cwdRequire = createRequire(path.join(process.cwd(), '__github_script__.js'));
  // Like github-script's wrapped require: built-ins and modules next to the
  // action first, then relative to the working directory.
  const wrappedRequire = id => {
    try {
      return nodeRequire(id);
    } catch {
      return cwdRequire(id);
    }
  };
  const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
  const names = ['require', '__original_require__', 'core', 'process', 'github', 'octokit', 'context', 'exec', 'glob', 'io'];
  const values = [
    wrappedRequire,
    nodeRequire,
    core,
    process,
    notEmulated('github'),
    notEmulated('octokit'),
    notEmulated('context'),
    notEmulated('exec'),
    notEmulated('glob'),
    notEmulated('io'),
  ];
  const fn = new AsyncFunction(...names, script);
  const result = await fn(...values);
  const encoding = core.getInput('result-encoding') || 'json';
  let output;
  if (encoding === 'json') output = JSON.stringify(result);
  else if (encoding === 'string') output = String(result);
  else throw new Error('"result-encoding" must be either "string" or "json"');
  core.setOutput('result', output);
}

// ---------------------------------------------------------------------------
// actions/cache v4
// ---------------------------------------------------------------------------

const STATE_PRIMARY_KEY = 'CACHE_KEY';
const STATE_MATCHED_KEY = 'CACHE_RESULT';

function inputList(name, options) {
  return core
    .getInput(name, options)
    .split('\n')
    .map(s => s.replace(/^!\s+/, '!').trim())
    .filter(s => s !== '');
}

function inputBool(name) {
  return core.getInput(name).toLowerCase() === 'true';
}

function inputInt(name) {
  const v = parseInt(core.getInput(name));
  return Number.isNaN(v) || v < 0 ? undefined : v;
}

function sameKey(key, other) {
  return !!other && other.localeCompare(key, undefined, { sensitivity: 'accent' }) === 0;
}

function logWarning(message) {
  core.info(`[warning]${message}`);
}

// State for the combined action (kept for its post step), outputs for the
// restore-only and save-only actions.
function stateProvider(asOutputs) {
  if (!asOutputs) return { set: core.saveState, get: core.getState };
  const outputs = { [STATE_PRIMARY_KEY]: 'cache-primary-key', [STATE_MATCHED_KEY]: 'cache-matched-key' };
  return { set: (k, v) => core.setOutput(outputs[k], v), get: () => '' };
}

function cacheAvailable(cache) {
  if (cache.isFeatureAvailable()) return true;
  logWarning('An internal error has occurred in cache backend. Please check https://www.githubstatus.com/ for any ongoing issue in actions.');
  return false;
}

function refOk() {
  if (process.env.GITHUB_REF) return true;
  logWarning(
    `Event Validation Error: The event type ${process.env.GITHUB_EVENT_NAME} is not supported because it's not tied to a branch or tag ref.`
  );
  return false;
}

async function cacheRestore(asOutputs) {
  const cache = nodeRequire('@actions/cache');
  const state = stateProvider(asOutputs);
  try {
    if (!cacheAvailable(cache)) {
      core.setOutput('cache-hit', 'false');
      return;
    }
    if (!refOk()) return;
    const primaryKey = core.getInput('key', { required: true });
    state.set(STATE_PRIMARY_KEY, primaryKey);
    const restoreKeys = inputList('restore-keys');
    const paths = inputList('path', { required: true });
    const crossOs = inputBool('enableCrossOsArchive');
    const failOnMiss = inputBool('fail-on-cache-miss');
    const lookupOnly = inputBool('lookup-only');
    const matched = await cache.restoreCache(paths, primaryKey, restoreKeys, { lookupOnly }, crossOs);
    if (!matched) {
      // actions/cache v4 leaves cache-hit unset on a miss.
      if (failOnMiss) {
        throw new Error(`Failed to restore cache entry. Exiting as fail-on-cache-miss is set. Input key: ${primaryKey}`);
      }
      core.info(`Cache not found for input keys: ${[primaryKey, ...restoreKeys].join(', ')}`);
      return;
    }
    state.set(STATE_MATCHED_KEY, matched);
    core.setOutput('cache-hit', String(sameKey(core.getInput('key', { required: true }), matched)));
    core.info(lookupOnly ? `Cache found and can be restored from key: ${matched}` : `Cache restored from key: ${matched}`);
  } catch (e) {
    core.setFailed(e.message);
  }
}

async function cacheSave(asOutputs) {
  const cache = nodeRequire('@actions/cache');
  const state = stateProvider(asOutputs);
  process.on('uncaughtException', e => logWarning(e.message));
  let cacheId = -1;
  try {
    if (!cacheAvailable(cache)) return undefined;
    if (!refOk()) return undefined;
    const primaryKey = state.get(STATE_PRIMARY_KEY) || core.getInput('key');
    if (!primaryKey) {
      logWarning('Key is not specified.');
      return undefined;
    }
    const restored = state.get(STATE_MATCHED_KEY) || undefined;
    if (sameKey(primaryKey, restored)) {
      core.info(`Cache hit occurred on the primary key ${primaryKey}, not saving cache.`);
      return undefined;
    }
    const paths = inputList('path', { required: true });
    const crossOs = inputBool('enableCrossOsArchive');
    cacheId = await cache.saveCache(paths, primaryKey, { uploadChunkSize: inputInt('upload-chunk-size') }, crossOs);
    if (cacheId !== -1) core.info(`Cache saved with key: ${primaryKey}`);
  } catch (e) {
    logWarning(e.message);
  }
  return cacheId;
}

// ---------------------------------------------------------------------------

async function main(mode) {
  switch (mode) {
    case 'github-script':
      try {
        await githubScript();
      } catch (err) {
        console.error(err);
        core.setFailed(`Unhandled error: ${err}`);
      }
      return;
    case 'cache-restore':
      return cacheRestore(false);
    case 'cache-restore-only':
      return cacheRestore(true);
    case 'cache-save':
      await cacheSave(false);
      return;
    case 'cache-save-only': {
      const id = await cacheSave(true);
      if (id === -1) core.warning('Cache save failed.');
      return;
    }
    default:
      process.stderr.write(`node-actions.mjs: unknown mode ${mode}\n`);
      process.exitCode = 2;
  }
}

const mode = process.argv[2];
await main(mode);
if (mode !== 'github-script') {
  // Like actions/cache: do not wait for dangling sockets or timers.
  const code = process.exitCode ?? 0;
  process.stdout.write('', () => process.exit(code));
}
