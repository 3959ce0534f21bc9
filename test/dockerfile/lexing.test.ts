import test from 'ava';
import { parseGoDuration, parseRamBytes } from '../../src/dockerfile/duration.js';
import { detectJsonForm, extractFlags, splitWordsKeepQuotes } from '../../src/dockerfile/lex.js';
import { parseHeredocWord } from '../../src/dockerfile/segment.js';

test('parseGoDuration: reads Go duration syntax into nanoseconds when given valid text', (t) => {
  const cases: [string, number][] = [
    ['0', 0], ['30s', 30e9], ['1m30s', 90e9], ['1.5h', 5400e9], ['300ms', 300e6], ['2us', 2000], ['2µs', 2000],
    ['10ns', 10], ['-2s', -2e9], ['.5s', 0.5e9], ['1h2m3s4ms', 3723004e6],
  ];
  for (const [text, ns] of cases) t.is(parseGoDuration(text), ns, text);
});

test('parseGoDuration: rejects text that Go would reject', (t) => {
  for (const text of ['', '30', 's', '1x', '1 s', '--1s', '1s ', 'ms1']) t.is(parseGoDuration(text), undefined, text);
});

test('parseRamBytes: reads binary size units when given tmpfs sizes', (t) => {
  t.is(parseRamBytes('1024'), 1024);
  t.is(parseRamBytes('64m'), 64 * 1024 ** 2);
  t.is(parseRamBytes('1GiB'), 1024 ** 3);
  t.is(parseRamBytes('2kb'), 2048);
  t.is(parseRamBytes('lots'), undefined);
});

test('detectJsonForm: separates exec form, malformed JSON and shell text', (t) => {
  t.deepEqual(detectJsonForm('["a", "b c"]'), { kind: 'json', values: ['a', 'b c'] });
  t.deepEqual(detectJsonForm('  []  '), { kind: 'json', values: [] });
  t.is(detectJsonForm("['a']").kind, 'bad');
  t.is(detectJsonForm('["a" "b"]').kind, 'bad');
  t.is(detectJsonForm('["a",]').kind, 'bad');
  t.is(detectJsonForm('["a\\q"]').kind, 'bad');
  t.is(detectJsonForm('[ -f x ]').kind, 'none');
  t.is(detectJsonForm('[1, 2]').kind, 'none');
  t.is(detectJsonForm('echo [x]').kind, 'none');
});

test('extractFlags: takes leading --flags, removes quotes in them and leaves the rest alone', (t) => {
  const r = extractFlags('--from=build --chown="a b" --link  src "dst dir" --not-a-flag');
  t.deepEqual(r.flags.map((f) => [f.name, f.value]), [['from', 'build'], ['chown', 'a b'], ['link', undefined]]);
  t.is(r.rest, 'src "dst dir" --not-a-flag');
});

test('splitWordsKeepQuotes: splits on unquoted whitespace and keeps quotes and escapes', (t) => {
  t.deepEqual(splitWordsKeepQuotes('a="x y" b=\'1 2\' c=d\\ e', '\\'), ['a="x y"', "b='1 2'", 'c=d\\ e']);
  t.deepEqual(splitWordsKeepQuotes('a=`  b', '`'), ['a=` ', 'b']);
});

test('parseHeredocWord: recognises heredoc openers and their options', (t) => {
  t.deepEqual(parseHeredocWord('<<EOF'), { name: 'EOF', expand: true, stripTabs: false });
  t.deepEqual(parseHeredocWord('<<-"EOF"'), { name: 'EOF', expand: false, stripTabs: true });
  t.deepEqual(parseHeredocWord("10<<'x y'"), { name: 'x y', expand: false, stripTabs: false, fd: 10 });
  t.is(parseHeredocWord('<<'), undefined);
  t.is(parseHeredocWord('a<<EOF'), undefined);
  t.is(parseHeredocWord('<<<EOF'), undefined);
});
