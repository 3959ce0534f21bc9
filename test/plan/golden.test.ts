import test from 'ava';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ImageConfig } from '../../src/core/index.js';
import { parseDockerfile } from '../../src/dockerfile/index.js';
import { parsePlatform } from '../../src/image/index.js';
import { graphToDot, planBuild, type PlanOptions } from '../../src/plan/index.js';
import { keyedBaseImages } from './plan-helper.js';

const ROOT = fileURLToPath(new URL('../../fixtures/dockerfiles/', import.meta.url));
const UPDATE = process.env.UPDATE_GOLDEN === '1';

/** Shape of fixtures/dockerfiles/<case>/options.json (all optional). */
interface FixtureOptions {
  readonly buildArgs?: Record<string, string>;
  readonly target?: string;
  readonly buildPlatform?: string;
  readonly targetPlatform?: string;
  /** Base image configs by reference (the local resolver of the first planning pass). */
  readonly baseImages?: Record<string, ImageConfig>;
}

function optionsOf(dir: string): PlanOptions {
  const file = join(dir, 'options.json');
  const o: FixtureOptions = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as FixtureOptions) : {};
  const buildPlatform = parsePlatform(o.buildPlatform ?? 'linux/amd64');
  const targetPlatform = o.targetPlatform === undefined ? buildPlatform : parsePlatform(o.targetPlatform);
  return {
    buildArgs: new Map(Object.entries(o.buildArgs ?? {})),
    ...(o.target === undefined ? {} : { target: o.target }),
    buildPlatform,
    targetPlatform,
    baseImages: keyedBaseImages(o.baseImages, targetPlatform),
  };
}

const cases = readdirSync(ROOT, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();

test('golden: there are at least 40 good fixtures including multi-stage', (t) => {
  t.true(cases.length >= 40, `${cases.length} fixtures`);
  t.true(cases.includes('multi-stage'));
});

for (const name of cases) {
  test(`golden: ${name} plans to its graph.json`, (t) => {
    const dir = join(ROOT, name);
    const df = parseDockerfile(readFileSync(join(dir, 'Dockerfile'), 'utf8'), 'Dockerfile');
    const options = optionsOf(dir);
    const { graph } = planBuild(df, options);
    const text = `${JSON.stringify(graph, null, 2)}\n`;
    t.is(JSON.stringify(planBuild(df, options).graph, null, 2) + '\n', text, 'planning is deterministic');
    t.true(graphToDot(graph).startsWith('digraph build {'));
    const goldenFile = join(dir, 'graph.json');
    if (UPDATE || !existsSync(goldenFile)) {
      writeFileSync(goldenFile, text);
      t.log(`wrote ${goldenFile}`);
      if (!UPDATE) t.fail(`missing ${goldenFile}; generated it, review and commit it`);
      else t.pass();
      return;
    }
    t.is(text, readFileSync(goldenFile, 'utf8'));
  });
}
