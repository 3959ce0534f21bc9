import { runCli } from './app.js';
import { deferNodeExtraCaCerts } from '../sys/index.js';

// The process entry point: the only place that reads process state.
// Started as `node bin/tsbuild.js` with NODE_EXTRA_CA_CERTS, Node has paid for it already; moving it
// aside still spares every Node child process tsbuild starts (monitors, rootless re-exec) the same ~90 ms.
deferNodeExtraCaCerts(process.env);
const controller = new AbortController();
let interrupts = 0;
const onSignal = (): void => {
  interrupts++;
  if (interrupts > 1) process.exit(130);
  controller.abort(new Error('interrupted'));
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

void runCli(process.argv.slice(2), {
  // A getter: process.stdin costs ~15 ms to create (fs streams) and most commands never read it.
  get stdin() {
    return process.stdin;
  },
  // Getters too: each costs 1.5-4 ms to create (a pipe's a net.Socket), and `run` of a silent container needs neither.
  get stdout() {
    return process.stdout;
  },
  get stderr() {
    return process.stderr;
  },
  env: process.env,
  cwd: process.cwd(),
  signal: controller.signal,
}).then((code) => {
  process.exitCode = code;
  // Once nothing is left to do (the loop is empty: 'beforeExit'), exit at once: a natural exit first
  // tears the V8 heap down page by page (3-4 ms of munmap at the end of every command), which exit() skips.
  process.once('beforeExit', () => process.exit());
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
});
