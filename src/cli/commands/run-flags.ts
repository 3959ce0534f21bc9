/**
 * `docker run`'s container options besides the process, resources and storage: labels
 * (`-l`, `--label-file`), `--expose`, `--add-host`, `--dns*`, `--ulimit`, `--group-add`,
 * `--shm-size`, `--security-opt`, `--cidfile` and `--privileged`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { notSupportedYet, TsbuildError } from '../../core/index.js';
import {
  parseAddHost, parseDnsOption, parseDnsSearch, parseDnsServer, parseExposedPorts, parseGroupAdd, parseSecurityOpts, parseUlimit,
  type ContainerRunOptions, type DnsConfig,
} from '../../runner/index.js';
import { parseMemory } from '../../sandbox/index.js';
import type { ParsedArgs } from '../args.js';
import { optBool, optList, optString } from '../args.js';

/** notSupportedYet with docker run's exit code 125. */
function notYet(what: string, hint?: string): TsbuildError {
  const e = notSupportedYet(what, hint);
  return new TsbuildError(e.code, e.message, { exitCode: 125, ...(hint === undefined ? {} : { hint }) });
}

function badValue(message: string): TsbuildError {
  return new TsbuildError('CLI_BAD_VALUE', message, { exitCode: 125 });
}

/** Parses `-l K=V` / `-l K` (value "") into `[K, V]`, as docker. Throws CLI_BAD_VALUE. */
export function parseLabel(text: string): [string, string] {
  const eq = text.indexOf('=');
  const key = eq === -1 ? text : text.slice(0, eq);
  if (key.trim() === '') throw badValue(`invalid label '${text}': empty name`);
  return [key, eq === -1 ? '' : text.slice(eq + 1)];
}

/** Reads `--label-file` files: one label per line, blank lines and `#` comments skipped. Throws CLI_BAD_LABEL_FILE. */
export function readLabelFiles(files: readonly string[], cwd: string): [string, string][] {
  const out: [string, string][] = [];
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(resolve(cwd, f), 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new TsbuildError('CLI_BAD_LABEL_FILE', `cannot read label file ${f}: ${code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`, { cause: err, exitCode: 125 });
    }
    for (const [i, raw] of text.split(/\r?\n/).entries()) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      try {
        out.push(parseLabel(line));
      } catch (err) {
        throw new TsbuildError('CLI_BAD_LABEL_FILE', `${f}:${i + 1}: ${(err as Error).message}`, { exitCode: 125 });
      }
    }
  }
  return out;
}

/** The labels of `--label-file` files then `-l` flags (later wins, as docker). */
export function parseLabels(args: ParsedArgs, cwd: string): Record<string, string> {
  return Object.fromEntries([...readLabelFiles(optList(args, 'label-file'), cwd), ...optList(args, 'label').map(parseLabel)]);
}

/** Parses `--expose PORT[/PROTO]` or `START-END[/PROTO]` into port keys (`80/tcp`). Throws CLI_BAD_VALUE; sctp is CLI_NOT_SUPPORTED. */
export function parseExposeFlag(text: string): string[] {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?(?:\/([a-z]+))?$/i.exec(text.trim());
  if (m === null) throw badValue(`invalid argument "${text}" for "--expose" flag: expected PORT[/PROTO] or START-END[/PROTO]`);
  const proto = (m[3] ?? 'tcp').toLowerCase();
  if (proto === 'sctp') throw notYet(`exposing sctp ports ("${text}")`);
  if (proto !== 'tcp' && proto !== 'udp') throw badValue(`invalid argument "${text}" for "--expose" flag: unknown protocol "${proto}" (tcp or udp)`);
  const first = Number(m[1]);
  const last = m[2] === undefined ? first : Number(m[2]);
  if (first < 1 || first > 65535 || last > 65535) throw badValue(`invalid argument "${text}" for "--expose" flag: ports are 1 to 65535`);
  if (last < first) throw badValue(`invalid argument "${text}" for "--expose" flag: invalid range ${first}-${last}`);
  return parseExposedPorts([`${first}-${last}/${proto}`]);
}

/** Parses `--shm-size` (a size such as 64m; must be more than 0). Throws SANDBOX_BAD_LIMIT / CLI_BAD_VALUE. */
export function parseShmSize(text: string): number {
  const bytes = parseMemory(text, '--shm-size');
  if (bytes <= 0) throw badValue(`invalid --shm-size "${text}": must be more than 0`);
  return bytes;
}

/** Reads `--add-host`, `--dns*`, `--ulimit`, `--group-add`, `--shm-size`, `--security-opt` and `--privileged`. */
export function parseContainerRunOptions(args: ParsedArgs): ContainerRunOptions {
  const list = (n: string): readonly string[] | undefined => (args.options[n] === undefined ? undefined : optList(args, n));
  const servers = list('dns')?.map(parseDnsServer);
  const search = list('dns-search')?.map(parseDnsSearch);
  const options = list('dns-option')?.map(parseDnsOption);
  const dns: DnsConfig = {
    ...(servers === undefined ? {} : { servers }),
    ...(search === undefined ? {} : { search }),
    ...(options === undefined ? {} : { options }),
  };
  const shm = optString(args, 'shm-size');
  const securityOpt = optList(args, 'security-opt');
  return {
    extraHosts: optList(args, 'add-host').map(parseAddHost),
    ...(Object.keys(dns).length === 0 ? {} : { dns }),
    ulimits: optList(args, 'ulimit').map(parseUlimit),
    groupAdd: optList(args, 'group-add').map(parseGroupAdd),
    ...(shm === undefined ? {} : { shmSize: parseShmSize(shm) }),
    securityOpt,
    ...parseSecurityOpts(securityOpt),
    ...(optBool(args, 'privileged') ? { privileged: true } : {}),
  };
}

/** Checks `--cidfile` before anything is created: docker refuses a file that exists. Returns its absolute path. Throws CLI_CIDFILE_EXISTS. */
export function checkCidFile(args: ParsedArgs, cwd: string): string | undefined {
  const f = optString(args, 'cidfile');
  if (f === undefined) return undefined;
  if (f === '') throw badValue('invalid --cidfile "": expected a file path');
  const path = resolve(cwd, f);
  if (existsSync(path)) {
    throw new TsbuildError('CLI_CIDFILE_EXISTS', `container ID file found, make sure the other container isn't running or delete ${f}`, { exitCode: 125 });
  }
  return path;
}
