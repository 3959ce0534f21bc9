import test from 'ava';
import { parseChmod } from '../../src/solve/ops/copy-chmod.js';

test('parseChmod: sets the same mode on files and directories when octal', (t) => {
  const f = parseChmod('0751');
  t.is(f(0o644, false), 0o751);
  t.is(f(0o700, true), 0o751);
  t.is(parseChmod('4755')(0o644, false), 0o4755);
});

test('parseChmod: edits each mode as chmod(1) does when symbolic', (t) => {
  t.is(parseChmod('u+x')(0o644, false), 0o744);
  t.is(parseChmod('g-w')(0o664, false), 0o644);
  t.is(parseChmod('u+x,g-w')(0o664, false), 0o744);
  t.is(parseChmod('+x')(0o644, false), 0o755);
  t.is(parseChmod('a-w')(0o666, false), 0o444);
  t.is(parseChmod('o=r')(0o777, false), 0o774);
  t.is(parseChmod('go=')(0o755, false), 0o700);
  t.is(parseChmod('=rw')(0o777, false), 0o666);
  t.is(parseChmod('ug=rwx,o=rx')(0o600, true), 0o775);
});

test('parseChmod: gives X only to directories and executables when +X', (t) => {
  const f = parseChmod('a+X');
  t.is(f(0o644, false), 0o644);
  t.is(f(0o744, false), 0o755);
  t.is(f(0o700, true), 0o711);
});

test('parseChmod: sets setuid, setgid and sticky bits when s and t are given', (t) => {
  t.is(parseChmod('u+s')(0o755, false), 0o4755);
  t.is(parseChmod('g+s')(0o755, true), 0o2755);
  t.is(parseChmod('+t')(0o777, true), 0o1777);
  t.is(parseChmod('u-s')(0o4755, false), 0o755);
});

test('parseChmod: rejects a malformed mode with SOLVE_BAD_CHMOD when given one', (t) => {
  for (const bad of ['', '8', '0778', 'u+y', 'u+x,', 'x+u', 'u+x-w', '99999']) {
    t.throws(() => parseChmod(bad), { code: 'SOLVE_BAD_CHMOD' } as never, bad);
  }
});
