#!/usr/bin/env node
// Drives the official @actions/cache client so tests can cross-check our
// Rust client against it (see tests/gha/server.py for the fake service).
//
//   node tests/gha/actions-cache.mjs save <key> <path> [<path>...]
//       -> stdout {"cacheId": N}   (-1 when the client gave up without throwing)
//   node tests/gha/actions-cache.mjs restore <key> <path> [<path>...] [--restore-key K]...
//       -> stdout {"matchedKey": "..." | null}
//   node tests/gha/actions-cache.mjs version [--compression M] [--cross-os] <path>...
//       -> stdout the version string @actions/cache sends for those paths
//   node tests/gha/actions-cache.mjs compression
//       -> stdout the compression method @actions/cache picks on this machine
//
// Reads ACTIONS_RESULTS_URL, ACTIONS_RUNTIME_TOKEN, GITHUB_WORKSPACE, ... from
// the environment; ACTIONS_CACHE_SERVICE_V2 defaults to "true". Everything
// @actions/core or tar print goes to stderr; stdout carries only the result.
// Exit status: 0 on success, 1 if the client threw, 2 on bad usage.

import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(import.meta.url);

function usage(msg) {
  if (msg) process.stderr.write(`actions-cache.mjs: ${msg}\n`);
  process.stderr.write(
    'usage: actions-cache.mjs save <key> <path>...\n' +
      '       actions-cache.mjs restore <key> <path>... [--restore-key K]...\n' +
      '       actions-cache.mjs version [--compression M] [--cross-os] <path>...\n' +
      '       actions-cache.mjs compression\n'
  );
  process.exit(2);
}

if (!process.env.ACTIONS_CACHE_SERVICE_V2) process.env.ACTIONS_CACHE_SERVICE_V2 = 'true';

// @actions/cache leaves its temp dirs (manifest.txt etc.) under RUNNER_TEMP;
// if the caller did not choose one, use a private one and remove it at exit.
let ownRunnerTemp = null;
if (!process.env.RUNNER_TEMP) {
  ownRunnerTemp = fs.mkdtempSync(path.join(os.tmpdir(), 'zccache-gha-runner-'));
  process.env.RUNNER_TEMP = ownRunnerTemp;
}

// Route everything written to stdout (core.info/debug, ::add-mask::, tar
// output) to stderr, keeping the real stdout for the JSON result.
const realStdoutWrite = process.stdout.write.bind(process.stdout);
process.stdout.write = (chunk, encoding, cb) => process.stderr.write(chunk, encoding, cb);

function result(text) {
  return new Promise(resolve => realStdoutWrite(text + '\n', resolve));
}

function cleanup() {
  if (ownRunnerTemp) {
    try {
      fs.rmSync(ownRunnerTemp, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
}

const cache = require('@actions/cache');
const cacheUtils = require('@actions/cache/lib/internal/cacheUtils.js');

async function main(argv) {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'save': {
      const [key, ...paths] = rest;
      if (!key || paths.length === 0) usage('save needs <key> and at least one <path>');
      const cacheId = await cache.saveCache(paths, key);
      await result(JSON.stringify({ cacheId }));
      return 0;
    }
    case 'restore': {
      const positional = [];
      const restoreKeys = [];
      for (let i = 0; i < rest.length; i++) {
        if (rest[i] === '--restore-key') {
          if (i + 1 >= rest.length) usage('--restore-key needs a value');
          restoreKeys.push(rest[++i]);
        } else {
          positional.push(rest[i]);
        }
      }
      const [key, ...paths] = positional;
      if (!key || paths.length === 0) usage('restore needs <key> and at least one <path>');
      const matched = await cache.restoreCache(paths, key, restoreKeys);
      await result(JSON.stringify({ matchedKey: matched ?? null }));
      return 0;
    }
    case 'version': {
      let compression = null;
      let crossOs = false;
      const paths = [];
      for (let i = 0; i < rest.length; i++) {
        if (rest[i] === '--compression') {
          if (i + 1 >= rest.length) usage('--compression needs a value');
          compression = rest[++i];
        } else if (rest[i] === '--cross-os') {
          crossOs = true;
        } else {
          paths.push(rest[i]);
        }
      }
      if (paths.length === 0) usage('version needs at least one <path>');
      if (compression === null) compression = await cacheUtils.getCompressionMethod();
      await result(cacheUtils.getCacheVersion(paths, compression, crossOs));
      return 0;
    }
    case 'compression': {
      await result(await cacheUtils.getCompressionMethod());
      return 0;
    }
    default:
      usage(cmd ? `unknown command ${cmd}` : 'missing command');
  }
  return 2;
}

let code;
try {
  code = await main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`actions-cache.mjs: ${err && err.stack ? err.stack : err}\n`);
  code = 1;
}
cleanup();
process.exitCode = code;
