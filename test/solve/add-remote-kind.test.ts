import test from 'ava';
import { parseGitSource, remoteKindOf, urlFileName } from '../../src/solve/ops/add-remote-kind.js';

test('remoteKindOf: tells git repositories, http files and local paths apart when classifying ADD sources', (t) => {
  t.is(remoteKindOf('https://example.com/a.tar.gz'), 'http');
  t.is(remoteKindOf('http://example.com/'), 'http');
  t.is(remoteKindOf('https://github.com/moby/buildkit.git'), 'git');
  t.is(remoteKindOf('https://github.com/moby/buildkit.git#v0.12:docs'), 'git');
  t.is(remoteKindOf('git@github.com:moby/buildkit.git'), 'git');
  t.is(remoteKindOf('git://127.0.0.1:9418/repo'), 'git');
  t.is(remoteKindOf('ssh://git@host/repo'), 'git');
  t.is(remoteKindOf('src/file.git'), undefined);
  t.is(remoteKindOf('./https:/x'), undefined);
  t.is(remoteKindOf('ftp://example.com/x'), undefined);
});

test('parseGitSource: splits remote, ref and subdirectory when a fragment is given', (t) => {
  t.deepEqual(parseGitSource('https://h/r.git'), { remote: 'https://h/r.git', subdir: '' });
  t.deepEqual(parseGitSource('https://h/r.git#main'), { remote: 'https://h/r.git', ref: 'main', subdir: '' });
  t.deepEqual(parseGitSource('https://h/r.git#v1.2:docs/api/'), { remote: 'https://h/r.git', ref: 'v1.2', subdir: 'docs/api' });
  t.deepEqual(parseGitSource('https://h/r.git#:sub'), { remote: 'https://h/r.git', subdir: 'sub' });
  t.deepEqual(parseGitSource('https://h/r.git#:../../etc'), { remote: 'https://h/r.git', subdir: 'etc' });
  t.throws(() => parseGitSource('https://h/r.git#--upload-pack=x'), { code: 'SOLVE_BAD_GIT_REF' } as never);
  t.throws(() => parseGitSource('https://h/r.git#a..b'), { code: 'SOLVE_BAD_GIT_REF' } as never);
});

test('urlFileName: names the file after the URL path, or __unnamed__ when it has none', (t) => {
  t.is(urlFileName('https://example.com/dir/tool-1.0.tar.gz?x=1#f'), 'tool-1.0.tar.gz');
  t.is(urlFileName('https://example.com/a%20b.txt'), 'a b.txt');
  t.is(urlFileName('https://example.com/'), '__unnamed__');
  t.is(urlFileName('https://example.com'), '__unnamed__');
  t.is(urlFileName('https://example.com/x/..'), '__unnamed__');
});
