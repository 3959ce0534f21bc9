import test from 'ava';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseMountFlag, parseTmpfsFlag, parseVolumeFlag, readEnvFiles } from '../../src/cli/commands/run-mounts.js';
import { TsbuildError } from '../../src/core/index.js';
import { tempDir } from '../helpers/tmp.js';

test('parseVolumeFlag: host paths bind, names are volumes, a lone path is anonymous when parsing -v', (t) => {
  t.deepEqual(parseVolumeFlag('/h:/c:ro', '/cwd'), { destination: '/c', type: 'bind', source: '/h', options: ['rbind', 'rprivate', 'ro'] });
  t.deepEqual(parseVolumeFlag('./rel:/c', '/cwd'), { destination: '/c', type: 'bind', source: '/cwd/rel', options: ['rbind', 'rprivate'] });
  t.deepEqual(parseVolumeFlag('data:/c:ro', '/cwd'), { name: 'data', destination: '/c', readonly: true });
  t.deepEqual(parseVolumeFlag('/c', '/cwd'), { name: undefined, destination: '/c', readonly: false });
  for (const bad of ['rel', 'a:b', 'x:/c:rx', 'b@d:/c', '/h:/c:ro:extra', ':/c']) {
    const err = t.throws(() => parseVolumeFlag(bad, '/cwd'), { instanceOf: TsbuildError });
    t.is(err?.code, 'SANDBOX_BAD_MOUNT', bad);
  }
});

test('parseMountFlag: docker\'s key=value syntax for bind, volume and tmpfs mounts, errors quoting the field', async (t) => {
  const dir = await tempDir(t);
  t.deepEqual(parseMountFlag(`type=bind,source=${dir},target=/x,ro`, '/'), { destination: '/x', type: 'bind', source: dir, options: ['rbind', 'rprivate', 'ro'] });
  t.deepEqual(parseMountFlag('type=volume,src=v1,dst=/v,volume-nocopy', '/'), { name: 'v1', destination: '/v', readonly: false, noCopy: true });
  t.deepEqual(parseMountFlag('dst=/anon', '/'), { name: undefined, destination: '/anon', readonly: false, noCopy: false }, 'type defaults to volume');
  t.deepEqual(parseMountFlag('type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=0700,readonly=true', '/'), {
    destination: '/t', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', 'mode=0700', 'size=64m', 'ro'],
  });
  const cases: [string, RegExp][] = [
    ['type=bind,dst=/x', /needs a source/],
    [`type=bind,src=${join(dir, 'nope')},dst=/x`, /bind source path does not exist/],
    ['type=volume,src=v', /destination .* is required/],
    ['type=nfs,dst=/x', /unknown type "nfs"/],
    ['type=volume,dst=/x,color=red', /invalid field "color"/],
    ['type=tmpfs,src=x,dst=/x', /takes no source/],
    ['type=volume,dst=rel', /absolute path/],
    ['type=volume,dst=/x,readonly=maybe', /invalid value for readonly/],
  ];
  for (const [spec, re] of cases) t.regex(t.throws(() => parseMountFlag(spec, '/'))?.message ?? '', re, spec);
});

test('parseTmpfsFlag: docker\'s options over safe defaults when parsing --tmpfs PATH[:OPTS]', (t) => {
  t.deepEqual(parseTmpfsFlag('/t').options, ['nosuid', 'nodev', 'noexec', 'mode=1777']);
  t.deepEqual(parseTmpfsFlag('/t:size=10m,mode=755,exec,ro').options, ['nosuid', 'nodev', 'mode=755', 'size=10m', 'ro']);
  t.throws(() => parseTmpfsFlag('rel'), { message: /absolute path/ });
  t.throws(() => parseTmpfsFlag('/t:uid=5'), { message: /invalid tmpfs option "uid=5"/ });
});

test('readEnvFiles: docker env files with comments, host lookups, values verbatim; errors name the file and line', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'e'), '# c\n\nA=1\n  B= x \nFROM_HOST\nNOT_SET\nC=\r\n');
  t.deepEqual(readEnvFiles(['e'], dir, { FROM_HOST: 'h' }), ['A=1', 'B= x ', 'FROM_HOST=h', 'C=']);
  await writeFile(join(dir, 'spaced'), 'B = x\n');
  t.throws(() => readEnvFiles(['spaced'], dir, {}), { message: /^spaced:1: invalid variable "B "/ }, 'as docker: a key with whitespace is refused');
  await writeFile(join(dir, 'bad'), 'A=1\n=nokey\n');
  t.throws(() => readEnvFiles(['bad'], dir, {}), { message: /^bad:2: invalid variable ""/ });
  t.throws(() => readEnvFiles(['none'], dir, {}), { message: /cannot read env file none: no such file or directory/ });
});
