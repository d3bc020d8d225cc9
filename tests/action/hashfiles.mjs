// hashFiles() for tests/action/runner.mjs, computed the way the GitHub runner
// does it: the runner starts a node script in GITHUB_WORKSPACE that globs the
// patterns with @actions/glob (same package and version as the runner's
// src/Misc/expressionFunc/hashFiles), skips directories and anything outside
// the workspace, hashes each file with SHA-256 and feeds the raw digests, in
// glob order, into one outer SHA-256. No match gives ''.
//
// Input (environment): patterns = newline-separated patterns,
//                      followSymbolicLinks = 'true' or unset.
// Output: a line __OUTPUT__<hex or empty>__OUTPUT__ on stderr; exit 0, or 1 on error.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as glob from '@actions/glob';

async function main() {
  const followSymbolicLinks = process.env.followSymbolicLinks === 'true';
  const workspace = process.cwd();
  const outer = crypto.createHash('sha256');
  let matched = false;
  const globber = await glob.create(process.env.patterns || '', { followSymbolicLinks });
  for await (const file of globber.globGenerator()) {
    if (!file.startsWith(workspace + path.sep)) continue;
    if (fs.statSync(file).isDirectory()) continue;
    const inner = crypto.createHash('sha256');
    await pipeline(fs.createReadStream(file), inner);
    outer.update(inner.digest());
    matched = true;
  }
  process.stderr.write(`__OUTPUT__${matched ? outer.digest('hex') : ''}__OUTPUT__\n`);
}

main().then(
  () => process.exit(0),
  err => {
    process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  }
);
