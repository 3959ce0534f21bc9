import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isTsbuildError, TsbuildError, type ErrorCode } from '../../src/core/index.js';
import { lintDockerfile, parseDockerfile } from '../../src/dockerfile/index.js';

const DIR = fileURLToPath(new URL('../../fixtures/dockerfiles-bad/', import.meta.url));

interface Expected {
  readonly code: ErrorCode;
  readonly line: number;
  /** For LINT_FAILED cases: the rule of the first finding. */
  readonly rule?: string;
  /** The error's hint (e.g. a did-you-mean), when the case checks it. */
  readonly hint?: string;
}

/**
 * What `tsbuild build` does with a Dockerfile before planning: parse, then lint; findings fail
 * the build (LINT_FAILED, at the first finding) when `# check=error=true` is set.
 */
function frontEnd(text: string): { error: TsbuildError; rule?: string } | undefined {
  try {
    const df = parseDockerfile(text, 'Dockerfile');
    const findings = lintDockerfile(df);
    const first = findings[0];
    if (df.directives.check?.error === true && first !== undefined) {
      return { error: new TsbuildError('LINT_FAILED', first.message, { loc: first.loc }), rule: first.rule };
    }
    return undefined;
  } catch (err) {
    if (isTsbuildError(err)) return { error: err };
    throw err;
  }
}

const cases = readdirSync(DIR).sort();

test('bad fixtures: there are at least 25 cases when the directory is read', (t) => {
  t.true(cases.length >= 25, `${cases.length} cases`);
});

for (const name of cases) {
  test(`bad fixtures: ${name} fails with the expected code and line when parsed and checked`, (t) => {
    const text = readFileSync(join(DIR, name, 'Dockerfile'), 'utf8');
    const expected = JSON.parse(readFileSync(join(DIR, name, 'expected.json'), 'utf8')) as Expected;
    const result = frontEnd(text);
    if (result === undefined) {
      t.fail('the Dockerfile was accepted');
      return;
    }
    t.is(result.error.code, expected.code, result.error.message);
    t.is(result.error.loc?.line, expected.line, result.error.message);
    t.is(result.error.loc?.file, 'Dockerfile');
    t.true(result.error.message.length > 10, 'the message explains the problem');
    if (expected.rule !== undefined) t.is(result.rule, expected.rule);
    if (expected.hint !== undefined) t.is(result.error.hint, expected.hint);
  });
}
