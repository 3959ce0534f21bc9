import test from 'ava';
import { formatReference, isTsbuildError } from '../../src/core/index.js';
import { parseBuildCacheFlags } from '../../src/cli/build-cache-io.js';
import { parseCacheFrom, parseCacheTo } from '../../src/cli/build-cache-spec.js';

test('parseCacheFrom: a bare reference is type=registry', (t) => {
  const s = parseCacheFrom('localhost:5000/app:cache', '/w');
  t.is(s.type, 'registry');
  if (s.type === 'registry') t.is(formatReference(s.ref), 'localhost:5000/app:cache');
});

test('parseCacheFrom: type=registry,ref= and a default tag when the ref has none', (t) => {
  const s = parseCacheFrom('type=registry,ref=localhost:5000/app', '/w');
  t.true(s.type === 'registry' && formatReference(s.ref) === 'localhost:5000/app:latest');
});

test('parseCacheFrom: type=local,src= resolves against the working directory, tag defaults to latest', (t) => {
  t.deepEqual(parseCacheFrom('type=local,src=cache', '/w'), { type: 'local', src: '/w/cache', tag: 'latest' });
  t.deepEqual(parseCacheFrom('type=local,src=/abs/dir,tag=v1', '/w'), { type: 'local', src: '/abs/dir', tag: 'v1' });
});

test('parseCacheTo: mode defaults to min; mode=max and ignore-error=true are read', (t) => {
  const a = parseCacheTo('type=registry,ref=localhost:5000/app:c', '/w');
  t.true(a.type === 'registry' && a.mode === 'min' && !a.ignoreError);
  const b = parseCacheTo('type=registry,ref=localhost:5000/app:c,mode=max,ignore-error=true', '/w');
  t.true(b.type === 'registry' && b.mode === 'max' && b.ignoreError);
  t.deepEqual(parseCacheTo('type=local,dest=out,mode=max', '/w'), { type: 'local', dest: '/w/out', tag: 'latest', mode: 'max', ignoreError: false, mounts: true });
  t.deepEqual(parseCacheTo('type=local,dest=out,cache-mounts=false', '/w'), { type: 'local', dest: '/w/out', tag: 'latest', mode: 'min', ignoreError: false, mounts: false });
});

test('parseCacheTo: BuildKit-only attributes (oci-mediatypes, image-manifest) are accepted and ignored', (t) => {
  const s = parseCacheTo('type=registry,ref=localhost:5000/a:c,oci-mediatypes=true,image-manifest=true', '/w');
  t.is(s.type, 'registry');
});

const badCases: readonly [string, 'from' | 'to', RegExp][] = [
  ['type=gha', 'from', /cache type "gha" is not supported/],
  ['type=s3,ref=x', 'to', /cache type "s3" is not supported/],
  ['type=registry', 'from', /type=registry needs ref=REF/],
  ['type=registry,mode=max', 'to', /type=registry needs ref=REF/],
  ['type=local', 'from', /type=local needs src=DIR/],
  ['type=local,src=x', 'to', /unknown option "src"/],
  ['type=local,dest=x', 'from', /unknown option "dest"/],
  ['type=registry,ref=localhost:5000/a:c,mode=all', 'to', /mode= takes min or max/],
  ['type=registry,ref=localhost:5000/a:c,mode=max', 'from', /unknown option "mode"/],
  ['type=registry,ref=localhost:5000/a:c,colour=red', 'to', /unknown option "colour"/],
  ['type=registry,ref=a,ref=b', 'from', /ref= is given twice/],
  ['type=registry,ref=', 'to', /ref= needs a value/],
  ['type=registry,ref=localhost:5000/a:c,junk', 'to', /"junk" is not KEY=VALUE/],
  ['type=registry,ref=localhost:5000/App', 'from', /repository name must be lowercase/],
  [`localhost:5000/a@sha256:${'a'.repeat(64)}`, 'to', /cannot export to a digest/],
  ['type=local,dest=x,tag=bad/tag', 'to', /is not a valid tag/],
  ['type=local,dest=x,ignore-error=yes', 'to', /ignore-error= takes true or false/],
  ['type=local,dest=x,cache-mounts=1', 'to', /cache-mounts= takes true or false/],
  ['type=local,src=x,cache-mounts=true', 'from', /unknown option "cache-mounts"/],
  ['', 'from', /type=registry needs ref=REF/],
];

for (const [text, which, message] of badCases) {
  test(`parseCache${which === 'from' ? 'From' : 'To'}: "${text}" is a CLI_BAD_VALUE naming the flag`, (t) => {
    const err = t.throws(() => (which === 'from' ? parseCacheFrom(text, '/w') : parseCacheTo(text, '/w')));
    t.true(isTsbuildError(err, 'CLI_BAD_VALUE'));
    t.regex(err?.message ?? '', message);
    t.true((err?.message ?? '').startsWith(`invalid --cache-${which} "${text}"`));
    t.is((err as { exitCode?: number }).exitCode, 125);
  });
}

test('parseBuildCacheFlags: parses every flag of both lists in order', (t) => {
  const f = parseBuildCacheFlags(['localhost:5000/a:1', 'type=local,src=d'], ['type=local,dest=e,mode=max'], '/w');
  t.is(f.from.length, 2);
  t.is(f.from[1]?.type, 'local');
  t.is(f.to[0]?.mode, 'max');
});
