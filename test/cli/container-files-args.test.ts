import test from 'ava';
import { TsbuildError } from '../../src/core/index.js';
import { formatSize } from '../../src/cli/commands/container-ops.js';
import { splitContainerPath } from '../../src/cli/commands/container-files.js';
import { parseEnvFile } from '../../src/cli/commands/exec.js';

test('splitContainerPath: tells CONTAINER:PATH from host paths when parsing cp arguments', (t) => {
  t.deepEqual(splitContainerPath('web:/etc/passwd'), { container: 'web', path: '/etc/passwd' });
  t.deepEqual(splitContainerPath('web:'), { container: 'web', path: '' });
  t.is(splitContainerPath('/tmp/a:b'), undefined, 'a slash before the colon: a host path');
  t.is(splitContainerPath('./x:y'), undefined);
  t.is(splitContainerPath('plain'), undefined);
  t.is(splitContainerPath(':x'), undefined);
});

test('formatSize: docker\'s units when formatting stats columns', (t) => {
  t.is(formatSize(0, true), '0B');
  t.is(formatSize(64 * 1024 * 1024, true), '64MiB');
  t.is(formatSize(1589248, true), '1.516MiB');
  t.is(formatSize(1050, false), '1.05kB');
  t.is(formatSize(999, false), '999B');
});

test('parseEnvFile: KEY=VALUE lines, comments and inherited keys when reading --env-file', (t) => {
  t.deepEqual(parseEnvFile('# c\n\nA=1\n  B=two words\nFROM_HOST\nUNSET\nC=\n', { FROM_HOST: 'h' }, 'f'), ['A=1', 'B=two words', 'FROM_HOST=h', 'C=']);
  const err = t.throws(() => parseEnvFile('=bad\n', {}, 'env.list'));
  t.true(err instanceof TsbuildError && /env.list line 1/.test(err.message));
});
