import test from 'ava';
import { join } from 'node:path';
import { fastJoin } from '../../src/core/fast-join.js';

// fastJoin stands in for node:path's join in the CLI bundle (scripts/bundle.mjs): it must give the same result
// for every input, taking its shortcut only when joining with "/" already is the normalized path.

const ATOMS = ['', '/', '.', '..', 'a', 'b', '/a', 'a/', 'a//b', 'a/./b', 'a/../b', '.hidden', 'x.y', '/x/y', 'x/.', 'x/..', '...', 'c d', '/./a', '//', 'a/b/c', '/tmp/s/containers'];

test('fastJoin: the same as path.join for every combination of up to three awkward segments', (t) => {
  let checked = 0;
  t.is(fastJoin(), join());
  for (const a of ATOMS) {
    t.is(fastJoin(a), join(a), JSON.stringify([a]));
    for (const b of ATOMS) {
      t.is(fastJoin(a, b), join(a, b), JSON.stringify([a, b]));
      for (const c of ATOMS) {
        if (fastJoin(a, b, c) !== join(a, b, c)) t.fail(JSON.stringify([a, b, c]));
        checked++;
      }
    }
  }
  t.is(checked, ATOMS.length ** 3);
});

test('fastJoin: the shortcut is taken for plain names below a clean directory, and non-strings are refused as by path.join', (t) => {
  t.is(fastJoin('/sys/fs/cgroup/memory', 'tsbuild', 'sandbox-1', 'tasks'), '/sys/fs/cgroup/memory/tsbuild/sandbox-1/tasks');
  t.is(fastJoin('store', 'containers'), 'store/containers');
  t.throws(() => fastJoin('/a', 1 as unknown as string), { code: 'ERR_INVALID_ARG_TYPE' });
});
