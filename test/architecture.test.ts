import test from 'ava';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

/** Rank of each module (docs/architecture.md §2). A module imports only lower ranks. */
const RANK: Readonly<Record<string, number>> = {
  core: 0,
  dockerfile: 1, image: 1, store: 1, sys: 1,
  plan: 2, context: 2, layer: 2, registry: 2, snapshot: 2, sandbox: 2,
  solve: 3, runner: 3,
  cli: 4,
  '(api)': 5,
};
/** Same-rank imports that the design allows. */
const SIBLING_EXCEPTIONS: ReadonlySet<string> = new Set(['snapshot->layer', 'store->sys']);
/** Lower-rank imports that the design forbids (pure planning must not reach the store). */
const FORBIDDEN: ReadonlySet<string> = new Set(['plan->store', 'plan->sys', 'context->store', 'context->image', 'dockerfile->image']);
/** Each third-party package lives in one module (besides fs-extra, usable anywhere with I/O). */
const PACKAGE_OWNER: Readonly<Record<string, readonly string[]>> = {
  'dockerfile-ast': ['dockerfile'],
  'tar-stream': ['layer', 'store'],
  'p-queue': ['solve'],
  koffi: ['sys'],
};
/** Pure modules: no I/O, no processes. */
const PURE = new Set(['core', 'dockerfile', 'image', 'plan']);
const IO_BUILTINS = ['fs', 'fs/promises', 'child_process', 'net', 'http', 'https', 'http2', 'dgram', 'os', 'worker_threads', 'cluster', 'tls'];

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function moduleOf(file: string): string {
  const rel = relative(SRC, file).split(sep);
  return rel.length === 1 ? '(api)' : (rel[0] as string);
}

/** Every `from '...'`, `import '...'` and `import('...')` specifier of a file. */
export function importsOf(text: string): string[] {
  const out: string[] = [];
  const re = /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|(?:^|[\s;])import\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm;
  for (const m of text.matchAll(re)) out.push((m[1] ?? m[2] ?? m[3]) as string);
  return out;
}

function violations(): string[] {
  const problems: string[] = [];
  for (const file of walk(SRC)) {
    const from = moduleOf(file);
    const rel = relative(SRC, file);
    if (RANK[from] === undefined) {
      problems.push(`${rel}: module "${from}" is not in the rank table`);
      continue;
    }
    for (const spec of importsOf(readFileSync(file, 'utf8'))) {
      if (spec.startsWith('.')) {
        const target = join(file, '..', spec);
        const to = moduleOf(target);
        if (to === from) continue;
        const edge = `${from}->${to}`;
        const targetRel = relative(SRC, target).split(sep);
        if (targetRel.length !== 2 || targetRel[1] !== 'index.js') {
          problems.push(`${rel}: imports ${spec}; cross-module imports go through src/${to}/index.ts`);
        }
        const rf = RANK[from] as number;
        const rt = RANK[to];
        if (rt === undefined) problems.push(`${rel}: imports unknown module ${to}`);
        else if (FORBIDDEN.has(edge)) problems.push(`${rel}: ${edge} is forbidden by the design`);
        else if (rt > rf || (rt === rf && !SIBLING_EXCEPTIONS.has(edge))) {
          problems.push(`${rel}: ${edge} imports a module of rank ${rt} from rank ${rf}`);
        }
        continue;
      }
      const bare = spec.startsWith('node:') ? spec.slice(5) : spec;
      if (PURE.has(from) && IO_BUILTINS.includes(bare)) {
        problems.push(`${rel}: pure module "${from}" imports ${spec}`);
      }
      const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : (spec.split('/')[0] as string);
      const owners = PACKAGE_OWNER[pkg];
      if (owners !== undefined && !owners.includes(from)) {
        problems.push(`${rel}: imports ${pkg}, which only ${owners.join(', ')} may import`);
      }
    }
  }
  return problems;
}

test('architecture: every import follows the rank table and package ownership', (t) => {
  t.deepEqual(violations(), []);
});

test('architecture: the import scanner sees static, side-effect and dynamic imports', (t) => {
  const text = "import type { A } from '../plan/index.js';\nimport '../x/y.js';\nconst m = await import('undici');\nexport * from './z.js';";
  t.deepEqual(importsOf(text), ['../plan/index.js', '../x/y.js', 'undici', './z.js']);
});
