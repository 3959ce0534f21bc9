import test from 'ava';
import { isTsbuildError, TsbuildError, type SourceLocation } from '../../src/core/index.js';
import { expandsVariables, expandWord, expandWords, type VarLookup } from '../../src/dockerfile/expand.js';
import type { InstructionKind } from '../../src/dockerfile/instructions.js';

const env = (vars: Record<string, string>): VarLookup => (name) => (Object.hasOwn(vars, name) ? vars[name] : undefined);
const loc: SourceLocation = { file: 'Dockerfile', line: 7 };

test('expandWord: reports used names in textual order, unique, when variables repeat', (t) => {
  const r = expandWord('$B ${A} ${B:-$C} ${A#$D}', env({ A: 'a', B: 'b' }));
  t.deepEqual(r.used, ['B', 'A', 'C', 'D']);
  t.deepEqual(r.unset, ['C', 'D']);
});

test('expandWord: lists a set-but-empty variable as used but not unset when its value is empty', (t) => {
  const r = expandWord('${E:-x}${F}', env({ E: '' }));
  t.is(r.value, 'x');
  t.deepEqual(r.used, ['E', 'F']);
  t.deepEqual(r.unset, ['F']);
});

test('expandWord: reports no names when only quoted or escaped dollars appear', (t) => {
  const r = expandWord("'$A' \\$B", env({}));
  t.is(r.value, '$A $B');
  t.deepEqual(r.used, []);
  t.deepEqual(r.unset, []);
});

test('expandWord: calls lookup with exact, case-sensitive names when expanding', (t) => {
  const seen: string[] = [];
  expandWord('$path ${PATH}', (n) => {
    seen.push(n);
    return undefined;
  });
  t.deepEqual(seen, ['path', 'PATH']);
});

test('expandWord: throws DF_EXPAND_REQUIRED with the message and loc when a ${VAR:?msg} is empty', (t) => {
  const err = t.throws(() => expandWord('${TOKEN:?set TOKEN first}', env({ TOKEN: '' }), { loc }), { instanceOf: TsbuildError });
  t.is(err?.code, 'DF_EXPAND_REQUIRED');
  t.deepEqual(err?.loc, loc);
  t.regex(err?.message ?? '', /TOKEN: set TOKEN first/);
});

test('expandWord: uses BuildKit default messages when ${VAR?} has no message', (t) => {
  const unset = t.throws(() => expandWord('${V?}', env({})));
  t.regex(unset?.message ?? '', /V: is not allowed to be unset/);
  const empty = t.throws(() => expandWord('${V:?}', env({ V: '' })));
  t.regex(empty?.message ?? '', /V: is not allowed to be empty/);
});

test('expandWord: throws DF_BAD_SUBSTITUTION with loc and the input when the syntax is malformed', (t) => {
  for (const word of ['${', '${}', '${A', '${A:x}', '${A=1}', '${A/x', "'open", '"open', '${A#\\q}']) {
    const err = t.throws(() => expandWord(word, env({ A: 'ab' }), { loc }), { instanceOf: TsbuildError }, word);
    t.true(isTsbuildError(err, 'DF_BAD_SUBSTITUTION'), `${word}: ${String(err)}`);
    t.deepEqual(err?.loc, loc, word);
    t.true(err?.message.includes(JSON.stringify(word)), `${word}: ${err?.message}`);
  }
});

test('expandWord: leaves loc undefined when no loc is given and the syntax is malformed', (t) => {
  const err = t.throws(() => expandWord('${', env({})), { instanceOf: TsbuildError });
  t.is(err?.loc, undefined);
});

test('expandWord: uses the backtick as escape when the escape option is a backtick', (t) => {
  t.is(expandWord('C:\\dir`$A', env({ A: 'x' }), { escape: '`' }).value, 'C:\\dir$A');
  t.is(expandWord('C:\\dir`$A', env({ A: 'x' })).value, 'C:dir`x');
});

test('expandWord: does not re-expand variable values when a value contains a dollar', (t) => {
  t.is(expandWord('$A', env({ A: '${B:?boom}', B: '' })).value, '${B:?boom}');
});

test('expandWord: handles astral characters as one character when patterns use ?', (t) => {
  t.is(expandWord('${A#?}|${A%?}', env({ A: '😀mid😀' })).value, 'mid😀|😀mid');
});

test('expandWords: splits on whitespace from variable values but not on quoted whitespace', (t) => {
  const r = expandWords('run $ARGS "$ARGS" \'a b\'', env({ ARGS: '-x  -y' }));
  t.deepEqual(r.values, ['run', '-x', '-y', '-x  -y', 'a b']);
  t.deepEqual(r.used, ['ARGS']);
  t.deepEqual(r.unset, []);
});

test('expandWords: drops empty fields when a variable is unset or quotes are empty', (t) => {
  const r = expandWords('a $NOPE "" b', env({}));
  t.deepEqual(r.values, ['a', 'b']);
  t.deepEqual(r.unset, ['NOPE']);
});

test('expandWords: keeps an escaped space inside one field when splitting', (t) => {
  t.deepEqual(expandWords('my\\ file.txt /dst/', env({})).values, ['my file.txt', '/dst/']);
});

test('expandWords: throws the same coded errors as expandWord when the syntax is malformed', (t) => {
  const err = t.throws(() => expandWords('ok ${A:?}', env({}), { loc }), { instanceOf: TsbuildError });
  t.is(err?.code, 'DF_EXPAND_REQUIRED');
  t.deepEqual(err?.loc, loc);
});

test('expandsVariables: is true exactly for the instructions the reference lists when asked for every kind', (t) => {
  const all: InstructionKind[] = [
    'FROM', 'RUN', 'CMD', 'LABEL', 'MAINTAINER', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT',
    'VOLUME', 'USER', 'WORKDIR', 'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL',
  ];
  const expanding = all.filter((k) => expandsVariables(k)).sort();
  t.deepEqual(expanding, ['ADD', 'ARG', 'COPY', 'ENV', 'EXPOSE', 'FROM', 'LABEL', 'ONBUILD', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR']);
});

test('expandWord: returns a value or throws a coded TsbuildError when given random input', (t) => {
  const alphabet = ['$', '{', '}', ':', '-', '+', '?', '#', '%', '/', '\\', '`', "'", '"', ' ', 'A', 'x', '*', '[', '\n', '😀'];
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const lookup = env({ A: 'x*y', x: '' });
  for (let i = 0; i < 3000; i++) {
    let word = '';
    for (let j = rnd(16); j >= 0; j--) word += alphabet[rnd(alphabet.length)];
    try {
      const r = expandWord(word, lookup, { escape: rnd(2) === 0 ? '\\' : '`' });
      t.is(typeof r.value, 'string');
      t.true(r.unset.every((n) => r.used.includes(n)), word);
    } catch (err) {
      t.true(isTsbuildError(err, 'DF_BAD_SUBSTITUTION') || isTsbuildError(err, 'DF_EXPAND_REQUIRED'), `${JSON.stringify(word)}: ${String(err)}`);
    }
  }
});
