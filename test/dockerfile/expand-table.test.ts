import test from 'ava';
import { readFileSync } from 'node:fs';
import { isTsbuildError } from '../../src/core/index.js';
import { expandWord, expandWords } from '../../src/dockerfile/expand.js';

/** One row of fixtures/expand/words.txt (format documented at the top of that file). */
interface Row {
  readonly line: number;
  readonly input: string;
  readonly env: ReadonlyMap<string, string>;
  readonly escape: '\\' | '`';
  readonly expected: { kind: 'value'; value: string } | { kind: 'words'; words: string[] } | { kind: 'error'; code: string };
}

const tablePath = new URL('../../fixtures/expand/words.txt', import.meta.url);

function decodeField(field: string): unknown {
  return field.startsWith('json:') ? JSON.parse(field.slice('json:'.length)) : field;
}

function parseEnv(field: string): Map<string, string> {
  if (field.startsWith('json:')) return new Map(Object.entries(JSON.parse(field.slice(5)) as Record<string, string>));
  if (field === '-') return new Map();
  return new Map(
    field.split(',').map((kv) => {
      const eq = kv.indexOf('=');
      if (eq <= 0) throw new Error(`bad environment entry "${kv}"`);
      return [kv.slice(0, eq), kv.slice(eq + 1)] as const;
    }),
  );
}

function readTable(): Row[] {
  const rows: Row[] = [];
  let escape: '\\' | '`' = '\\';
  readFileSync(tablePath, 'utf8')
    .split('\n')
    .forEach((text, i) => {
      if (text.trim() === '' || text.startsWith('#')) return;
      if (text.startsWith('@escape=')) {
        const e = text.slice('@escape='.length).trim();
        if (e !== '\\' && e !== '`') throw new Error(`line ${i + 1}: bad escape "${e}"`);
        escape = e;
        return;
      }
      const fields = text.split(' | ').map((f) => f.trim());
      if (fields.length !== 3) throw new Error(`line ${i + 1}: expected 3 fields, got ${fields.length}`);
      const [inputField, envField, expectedField] = fields as [string, string, string];
      const input = decodeField(inputField);
      if (typeof input !== 'string') throw new Error(`line ${i + 1}: input must be a string`);
      let expected: Row['expected'];
      if (expectedField.startsWith('error:')) expected = { kind: 'error', code: expectedField.slice('error:'.length) };
      else if (expectedField.startsWith('words:')) expected = { kind: 'words', words: JSON.parse(expectedField.slice('words:'.length)) as string[] };
      else expected = { kind: 'value', value: decodeField(expectedField) as string };
      rows.push({ line: i + 1, input, env: parseEnv(envField), escape, expected });
    });
  return rows;
}

const rows = readTable();

test('expand table: has at least 150 rows when read', (t) => {
  t.true(rows.length >= 150, `only ${rows.length} rows`);
  t.true(rows.some((r) => r.escape === '`'), 'no backtick-escape rows');
  t.true(rows.some((r) => r.expected.kind === 'words'), 'no field-splitting rows');
  t.true(rows.some((r) => r.expected.kind === 'error'), 'no error rows');
});

test('expand table: every row expands as expected when checked', (t) => {
  const failures: string[] = [];
  for (const row of rows) {
    const lookup = (name: string): string | undefined => row.env.get(name);
    const where = `words.txt:${row.line} ${JSON.stringify(row.input)}`;
    try {
      if (row.expected.kind === 'words') {
        const got = expandWords(row.input, lookup, { escape: row.escape }).values;
        if (JSON.stringify(got) !== JSON.stringify(row.expected.words)) {
          failures.push(`${where}: expected ${JSON.stringify(row.expected.words)}, got ${JSON.stringify(got)}`);
        }
      } else {
        const got = expandWord(row.input, lookup, { escape: row.escape }).value;
        if (row.expected.kind === 'error') failures.push(`${where}: expected ${row.expected.code}, got value ${JSON.stringify(got)}`);
        else if (got !== row.expected.value) failures.push(`${where}: expected ${JSON.stringify(row.expected.value)}, got ${JSON.stringify(got)}`);
      }
    } catch (err) {
      if (row.expected.kind !== 'error') failures.push(`${where}: unexpected error ${String(err)}`);
      else if (!isTsbuildError(err, row.expected.code as 'DF_BAD_SUBSTITUTION')) failures.push(`${where}: expected ${row.expected.code}, got ${String(err)}`);
    }
  }
  t.deepEqual(failures, []);
});

test('expand table: expandWord and expandWords agree on errors when a row expects one', (t) => {
  for (const row of rows.filter((r) => r.expected.kind === 'error')) {
    const lookup = (name: string): string | undefined => row.env.get(name);
    t.throws(() => expandWords(row.input, lookup, { escape: row.escape }), { instanceOf: Error }, `words.txt:${row.line}`);
  }
});
