import { runCli } from './app.js';
import { deferNodeExtraCaCerts, exitProcess, watchStdioFlags } from '../sys/index.js';

// The process entry point: the only place that reads process state.
// Started as `node bin/tsbuild.js` with NODE_EXTRA_CA_CERTS, Node has paid for it already; moving it
// aside still spares every Node child process tsbuild starts (monitors, rootless re-exec) the same ~90 ms.
deferNodeExtraCaCerts(process.env);
// Before anything makes Node's streams on fds 0-2, which set O_NONBLOCK: what a fast exit gives back (sys/fast-exit.ts).
const stdioFlags = watchStdioFlags(process);
// Node options may be a profiler or coverage, which write their output at Node's exit: then no fast exit.
const fastExit = process.execArgv.length === 0 && !process.env.NODE_OPTIONS && process.env.NODE_V8_COVERAGE === undefined;
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
  // tears the V8 heap down page by page (3-4 ms of munmap at the end of every command), which exit() skips,
  // and exitProcess also skips the rest of Node's teardown where it can (~1 ms).
  process.once('beforeExit', () => exitProcess(stdioFlags, fastExit));
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
});
