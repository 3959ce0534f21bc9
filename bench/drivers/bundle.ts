import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Bundles bench/drivers/NAME.ts with esbuild into `dir`, as scripts/bundle.mjs bundles the CLI, so
 * the driver's child runs in plain Node, not under tsx (which cost a pull 1.3-1.4x the CPU); returns the file.
 */
export async function bundleDriver(name: string, dir: string): Promise<string> {
  const { build } = await import('esbuild');
  const outfile = join(dir, `${name}-driver.mjs`);
  await build({
    entryPoints: [join(REPO, 'bench', 'drivers', `${name}.ts`)], outfile, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'error',
    // CommonJS dependencies call require(): give the ES module one.
    banner: { js: "import { createRequire as __tsbuildRequire } from 'node:module'; const require = __tsbuildRequire(import.meta.url);" },
  });
  return outfile;
}
