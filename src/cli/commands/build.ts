import { TsbuildError } from '../../core/index.js';
import type { Entitlement } from '../../solve/index.js';
import type { OptionSpec } from '../args.js';
import { optBool, optList, optString } from '../args.js';
import type { Command } from '../command.js';
import { runBuildFrontEnd } from '../build-front-end.js';
import { registryOptions } from './registry-options.js';

/** `docker build`'s flag set. */
export const buildOptions: readonly OptionSpec[] = [
  { name: 'file', short: 'f', type: 'string', value: 'PATH', help: 'Name of the Dockerfile (default PATH/Dockerfile; "-" reads stdin)' },
  { name: 'tag', short: 't', type: 'list', value: 'NAME:TAG', help: 'Name and optionally a tag for the image' },
  { name: 'build-arg', type: 'list', value: 'KEY[=VALUE]', help: 'Set a build-time variable (without a value: taken from the environment)' },
  { name: 'target', type: 'string', value: 'STAGE', help: 'Set the target build stage to build' },
  { name: 'platform', type: 'string', value: 'OS/ARCH', help: 'Set the target platform for the build' },
  { name: 'label', type: 'list', value: 'KEY=VALUE', help: 'Set metadata for the image' },
  { name: 'check', type: 'bool', help: 'Run the Dockerfile checks only and print the findings' },
  { name: 'print', type: 'string', value: 'graph|dot', help: 'Print the build graph (JSON or Graphviz DOT) without building' },
  { name: 'no-cache', type: 'bool', help: 'Do not use the cache when building the image' },
  { name: 'no-cache-filter', type: 'list', value: 'STAGE', help: 'Do not use the cache for the named stages' },
  { name: 'pull', type: 'bool', help: 'Always attempt to pull newer versions of base images' },
  { name: 'progress', type: 'string', value: 'auto|tty|plain|rawjson', help: 'Type of progress output' },
  { name: 'quiet', short: 'q', type: 'bool', help: 'Print only the image ID on success' },
  { name: 'output', short: 'o', type: 'list', value: 'type=...,dest=...', help: 'Output destination: type=image[,name=N][,push=true], type=oci|docker|tar,dest=FILE|-, type=local,dest=DIR (-o DIR: local)' },
  { name: 'iidfile', type: 'string', value: 'FILE', help: 'Write the image ID to the file' },
  { name: 'metadata-file', type: 'string', value: 'FILE', help: 'Write build result metadata to the file' },
  { name: 'secret', type: 'list', value: 'id=ID,src=FILE|env=VAR', help: 'Secret to expose to the build' },
  { name: 'ssh', type: 'list', value: 'default|ID=SOCKET', help: 'SSH agent socket to expose to the build' },
  { name: 'network', type: 'string', value: 'default|host|none', help: 'Networking mode for the RUN instructions' },
  { name: 'allow', type: 'list', value: 'ENTITLEMENT', help: 'Allow extra privileged entitlement: security.insecure (RUN --security=insecure), network.host (always granted)' },
  { name: 'cache-from', type: 'list', value: 'type=registry,ref=REF', help: 'External cache sources' },
  { name: 'cache-to', type: 'list', value: 'type=registry,ref=REF', help: 'Cache export destinations' },
  { name: 'push', type: 'bool', help: 'Push the image to its registry under every -t name after the build (same as --output type=image,push=true)' },
  { name: 'snapshotter', type: 'string', value: 'overlay|naive', help: 'Snapshotter for build steps' },
  ...registryOptions,
];

/** Parses `--build-arg K=V` / `--build-arg K` (value from the environment; skipped when unset). */
export function parseBuildArgs(values: readonly string[], env: Readonly<Record<string, string | undefined>>): Map<string, string> {
  const out = new Map<string, string>();
  for (const v of values) {
    const eq = v.indexOf('=');
    const key = eq === -1 ? v : v.slice(0, eq);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
      throw new TsbuildError('CLI_BAD_VALUE', `invalid --build-arg "${v}": expected KEY=VALUE`, { exitCode: 125 });
    }
    if (eq !== -1) out.set(key, v.slice(eq + 1));
    else if (env[key] !== undefined) out.set(key, env[key] as string);
  }
  return out;
}

/** The entitlements `--allow` takes (BuildKit's names). */
const ENTITLEMENTS: readonly Entitlement[] = ['network.host', 'security.insecure'];

/** Parses `--allow` values (repeatable, comma-separated as buildx). Throws CLI_BAD_VALUE for an unknown entitlement. */
export function parseAllow(values: readonly string[]): Entitlement[] {
  const out: Entitlement[] = [];
  for (const v of values.flatMap((x) => x.split(',')).map((x) => x.trim()).filter((x) => x !== '')) {
    const e = ENTITLEMENTS.find((n) => n === v);
    if (e === undefined) throw new TsbuildError('CLI_BAD_VALUE', `invalid --allow "${v}": the entitlements are ${ENTITLEMENTS.join(' and ')}`, { exitCode: 125 });
    if (!out.includes(e)) out.push(e);
  }
  return out;
}

/** `tsbuild build`. */
export const buildCommand: Command = {
  name: 'build',
  summary: 'Build an image from a Dockerfile',
  usage: 'build [OPTIONS] PATH',
  options: buildOptions,
  async run(args, ctx) {
    const [contextDir, ...extra] = args.positionals;
    if (contextDir === undefined) {
      throw new TsbuildError('CLI_MISSING_ARGUMENT', '"tsbuild build" requires exactly 1 argument: the build context PATH', {
        hint: 'usage: tsbuild build [OPTIONS] PATH, e.g. tsbuild build -t app:1 .',
        exitCode: 125,
      });
    }
    if (extra.length > 0) {
      throw new TsbuildError('CLI_BAD_ARGUMENT', `"tsbuild build" takes one context PATH, got also: ${extra.join(' ')}`, { exitCode: 125 });
    }
    const print = optString(args, 'print');
    if (print !== undefined && print !== 'graph' && print !== 'dot') {
      throw new TsbuildError('CLI_BAD_VALUE', `--print takes "graph" or "dot", not "${print}"`, { exitCode: 125 });
    }
    const progress = optString(args, 'progress') ?? 'auto';
    if (!['auto', 'tty', 'plain', 'rawjson', 'quiet'].includes(progress)) {
      throw new TsbuildError('CLI_BAD_VALUE', `--progress takes auto, tty, plain or rawjson, not "${progress}"`, { exitCode: 125 });
    }
    const network = optString(args, 'network');
    if (network !== undefined && !['default', 'host', 'none'].includes(network)) {
      throw new TsbuildError('CLI_BAD_VALUE', `--network takes default, host or none, not "${network}"`, { exitCode: 125 });
    }
    return runBuildFrontEnd(
      {
        contextDir,
        file: optString(args, 'file'),
        buildArgs: parseBuildArgs(optList(args, 'build-arg'), ctx.env),
        target: optString(args, 'target'),
        platform: optString(args, 'platform'),
        check: optBool(args, 'check'),
        print,
        build: {
          tags: optList(args, 'tag'),
          labels: optList(args, 'label'),
          noCache: optBool(args, 'no-cache'),
          noCacheFilter: optList(args, 'no-cache-filter'),
          pull: optBool(args, 'pull'),
          progress,
          quiet: optBool(args, 'quiet'),
          outputs: optList(args, 'output'),
          iidfile: optString(args, 'iidfile'),
          metadataFile: optString(args, 'metadata-file'),
          secrets: optList(args, 'secret'),
          ssh: optList(args, 'ssh'),
          network,
          allow: parseAllow(optList(args, 'allow')),
          cacheFrom: optList(args, 'cache-from'),
          cacheTo: optList(args, 'cache-to'),
          snapshotter: optString(args, 'snapshotter'),
          push: optBool(args, 'push'),
          // Opened on first use: the registry client's modules load only when a build talks to a registry.
          openRegistry: async () => (await import('./registry-common.js')).createClient(args, ctx),
        },
      },
      ctx,
    );
  },
};
