/**
 * Benchmark runner: `npm run bench -- <name> [args...]` imports bench/<name>.ts and calls its
 * `run(args)`. Several names may be given; each runs in turn. Not a test: it prints figures.
 */
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Contract of a benchmark module. */
export interface BenchModule {
  run(args: string[]): Promise<void>;
}

/** Short names: `npm run bench -- run` is bench/run-container.ts (run.ts is this runner). */
const ALIASES: Readonly<Record<string, string>> = { run: 'run-container' };

function available(): string[] {
  const dir = fileURLToPath(new URL('.', import.meta.url));
  return readdirSync(dir).filter((f) => f.endsWith('.ts') && f !== 'run.ts').map((f) => f.slice(0, -3)).sort();
}

async function main(argv: string[]): Promise<number> {
  const names = argv.filter((a) => !a.startsWith('-'));
  const flags = argv.filter((a) => a.startsWith('-'));
  if (names.length === 0 || flags.includes('--help')) {
    process.stdout.write(`usage: npm run bench -- <name> [<name>...] [--flags]\navailable: ${available().join(', ')}\n`);
    return names.length === 0 && !flags.includes('--help') ? 1 : 0;
  }
  for (const given of names) {
    const name = ALIASES[given] ?? given;
    if (!/^[a-z0-9-]+$/.test(name) || !available().includes(name)) {
      process.stderr.write(`unknown benchmark "${name}"; available: ${available().join(', ')}\n`);
      return 1;
    }
    const mod = (await import(`./${name}.ts`)) as Partial<BenchModule>;
    if (typeof mod.run !== 'function') {
      process.stderr.write(`bench/${name}.ts does not export run(args)\n`);
      return 1;
    }
    process.stdout.write(`== ${name}\n`);
    await mod.run(flags);
  }
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
