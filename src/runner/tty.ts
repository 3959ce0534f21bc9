import { PassThrough } from 'node:stream';
import type { SandboxStdio } from '../sandbox/index.js';

/**
 * The stdio of a container with a terminal (`-t`): without `-i` (stdin 'ignore') the launcher's
 * relay gets a stdin that stays open and silent until the container ends, so the pty's reader
 * waits for input as with docker, instead of reading ^D (the relay's answer to EOF) and exiting.
 * Other stdio (and every stdio without a terminal) is returned unchanged.
 */
export function stdioForTerminal(terminal: boolean, stdio: SandboxStdio): SandboxStdio {
  if (!terminal || (stdio.stdin !== undefined && stdio.stdin !== 'ignore')) return stdio;
  return { ...stdio, stdin: new PassThrough() };
}
