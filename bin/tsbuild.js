#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS TSBUILD_NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS} node
// The shebang starts Node without NODE_EXTRA_CA_CERTS (Node 20 parses that whole file before any
// code runs: ~90 ms per command with the system bundle) and passes the file on; tsbuild trusts it
// when it opens a TLS connection (src/sys/node-ca.ts).
// CommonJS (bin/package.json): a start never loads Node's ESM loader (~12 ms of CPU, even for one
// import). dist/cli/main.cjs is the bundle's entry (npm run build); without it (tsc alone) the ES
// module entry dist/cli/main.js runs.
'use strict';
const { existsSync } = require('node:fs');
const { join } = require('node:path');
const entry = join(__dirname, '..', 'dist', 'cli', 'main.cjs');
if (existsSync(entry)) require(entry);
else import('../dist/cli/main.js');
