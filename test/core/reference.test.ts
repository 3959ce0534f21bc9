import test from 'ava';
import { familiarReference, formatReference, parseReference, withTag } from '../../src/core/index.js';

const D = `sha256:${'a'.repeat(64)}`;

const normalised: [string, string][] = [
  ['busybox', 'docker.io/library/busybox:latest'],
  ['busybox:1.36', 'docker.io/library/busybox:1.36'],
  ['library/busybox', 'docker.io/library/busybox:latest'],
  ['docker.io/busybox', 'docker.io/library/busybox:latest'],
  ['index.docker.io/library/busybox:x', 'docker.io/library/busybox:x'],
  ['user/app', 'docker.io/user/app:latest'],
  ['host:5000/a/b:tag', 'host:5000/a/b:tag'],
  ['localhost/app', 'localhost/app:latest'],
  ['localhost:5000/app', 'localhost:5000/app:latest'],
  ['quay.io/a/b/c', 'quay.io/a/b/c:latest'],
  ['[::1]:5000/app:v1', '[::1]:5000/app:v1'],
  [`name@${D}`, `docker.io/library/name@${D}`],
  [`name:tag@${D}`, `docker.io/library/name:tag@${D}`],
  ['a-b_c__d/e---f.g:V_1.0-x', 'docker.io/a-b_c__d/e---f.g:V_1.0-x'],
];

for (const [input, want] of normalised) {
  test(`reference: "${input}" normalises to "${want}" when parsed`, (t) => {
    t.is(formatReference(parseReference(input)), want);
  });
}

const invalid = ['', 'UPPER', 'a//b', 'a/', ':tag', 'a:', 'a:-x', 'a@sha256:abc', 'a b', 'a/b:tag:x', '-a', `a:${'t'.repeat(129)}`, 'a@md5:00'];
for (const input of invalid) {
  test(`reference: "${input}" is rejected with CORE_BAD_REFERENCE when malformed`, (t) => {
    t.throws(() => parseReference(input), { message: /invalid reference/ });
  });
}

test('reference: familiar form drops docker.io and library when printing', (t) => {
  t.is(familiarReference(parseReference('busybox')), 'busybox:latest');
  t.is(familiarReference(parseReference('user/app:1')), 'user/app:1');
  t.is(familiarReference(parseReference('localhost:5000/a/b:v1')), 'localhost:5000/a/b:v1');
});

test('reference: parts are exposed when parsing a registry reference', (t) => {
  t.deepEqual(parseReference('host:5000/a/b:tag'), { domain: 'host:5000', path: 'a/b', tag: 'tag' });
  t.deepEqual(parseReference(`x@${D}`), { domain: 'docker.io', path: 'library/x', digest: D });
});

test('reference: withTag replaces tag and digest when retagging', (t) => {
  t.is(formatReference(withTag(parseReference(`x:1@${D}`), '2')), 'docker.io/library/x:2');
  t.throws(() => withTag(parseReference('x'), 'bad tag'));
});
