import test from 'ava';
import { renderError } from '../../src/cli/render-error.js';
import { TsbuildError } from '../../src/core/index.js';
import { hasStackTrace } from './run-cli.js';

const source = 'FROM alpine\nRUN a \\\n  b \\\n  c\nCMD x\n';

test('renderError: prints FILE:LINE: CODE: message, the source lines and the hint when located', (t) => {
  const err = new TsbuildError('DF_X', 'bad thing', { loc: { file: 'Dockerfile', line: 2, endLine: 4 }, hint: 'fix it' });
  const text = renderError(err, { debug: false, sources: new Map([['Dockerfile', source]]) });
  t.is(text, ['Dockerfile:2: DF_X: bad thing', '    2 | RUN a \\', '    3 |   b \\', '    4 |   c', 'hint: fix it'].join('\n'));
});

test('renderError: prints at most five source lines when a location spans more', (t) => {
  const long = Array.from({ length: 20 }, (_, i) => `line${i + 1}`).join('\n');
  const err = new TsbuildError('DF_X', 'm', { loc: { file: 'F', line: 3, endLine: 15 } });
  const text = renderError(err, { debug: false, sources: new Map([['F', long]]) });
  t.deepEqual(text.split('\n').slice(1), ['    3 | line3', '    4 | line4', '    5 | line5', '    6 | line6', '    7 | line7']);
});

test('renderError: omits source lines when the file text is unknown or the error has no location', (t) => {
  const located = new TsbuildError('DF_X', 'm', { loc: { file: 'Other', line: 1 } });
  t.is(renderError(located, { debug: false, sources: new Map([['Dockerfile', source]]) }), 'Other:1: DF_X: m');
  t.is(renderError(new TsbuildError('CLI_X', 'plain'), { debug: false }), 'CLI_X: plain');
});

test('renderError: handles CRLF sources when printing the offending line', (t) => {
  const err = new TsbuildError('DF_X', 'm', { loc: { file: 'D', line: 2 } });
  t.is(renderError(err, { debug: false, sources: new Map([['D', 'FROM a\r\nRUNN b\r\n']]) }), 'D:2: DF_X: m\n    2 | RUNN b');
});

test('renderError: renders foreign errors as INTERNAL with a bug hint and no stack when not debugging', (t) => {
  const text = renderError(new RangeError('oops'), { debug: false });
  t.is(text, 'INTERNAL: oops\nhint: this is a bug in tsbuild; run again with --debug for details');
  t.is(renderError('a string', { debug: false }).split('\n')[0], 'INTERNAL: a string');
});

test('renderError: appends the stack and the cause when debugging', (t) => {
  const cause = new Error('EACCES: permission denied');
  const text = renderError(new TsbuildError('DF_UNREADABLE', 'cannot read', { cause }), { debug: true });
  t.true(hasStackTrace(text));
  t.regex(text, /caused by: Error: EACCES: permission denied/);
  t.true(hasStackTrace(renderError(new TypeError('x'), { debug: true })));
});
