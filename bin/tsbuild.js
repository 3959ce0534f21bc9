#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS TSBUILD_NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS} node
// The shebang starts Node without NODE_EXTRA_CA_CERTS (Node 20 parses that whole file before any
// code runs: ~90 ms per command with the system bundle) and passes the file on; tsbuild trusts it
// when it opens a TLS connection (src/sys/node-ca.ts).
import '../dist/cli/main.js';
