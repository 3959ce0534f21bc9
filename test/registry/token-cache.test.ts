import test from 'ava';
import { scopesCover, TokenCache } from '../../src/registry/index.js';

const ch = { scheme: 'bearer' as const, realm: 'https://auth.example/token', service: 'reg' };

test('scopesCover: a pull,push scope serves pull and push requests of the same repository only', (t) => {
  t.true(scopesCover(['repository:a/b:pull,push'], ['repository:a/b:pull']));
  t.true(scopesCover(['repository:a/b:pull,push'], ['repository:a/b:pull,push']));
  t.true(scopesCover(['repository:a/b:*'], ['repository:a/b:push']));
  t.false(scopesCover(['repository:a/b:pull'], ['repository:a/b:pull,push']));
  t.false(scopesCover(['repository:a/b:pull,push'], ['repository:a/c:pull']));
  t.false(scopesCover(['repository:a/b:pull,push'], ['repository:a/b:pull', 'repository:x/y:pull']));
  t.true(scopesCover(['repository:a/b:pull,push', 'repository:x/y:pull'], ['repository:x/y:pull']));
  t.true(scopesCover([], []));
});

test('TokenCache: finds a token by covering scope until it expires or is dropped when asked again', (t) => {
  const cache = new TokenCache();
  cache.add(ch, ['repository:a/b:pull,push'], { token: 'T1', expiresAt: 2000 });
  t.is(cache.find(ch, ['repository:a/b:pull'], 1000)?.token, 'T1');
  t.is(cache.find({ ...ch, service: 'other' }, ['repository:a/b:pull'], 1000), undefined);
  t.is(cache.find(ch, ['repository:a/b:pull'], 2000), undefined);
  cache.add(ch, ['repository:a/b:pull'], { token: 'T2', expiresAt: 5000 });
  t.is(cache.find(ch, ['repository:a/b:pull'], 1000)?.token, 'T2');
  t.is(cache.find(ch, ['repository:a/b:pull,push'], 1000)?.token, 'T1');
  cache.drop('T2');
  t.is(cache.find(ch, ['repository:a/b:pull'], 1000)?.token, 'T1');
});
