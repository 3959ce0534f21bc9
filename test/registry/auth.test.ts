import test from 'ava';
import { basicAuthorization, parseChallenge, repositoryScope, tokenFromResponse } from '../../src/registry/index.js';

test('parseChallenge: reads realm, service and scope when the registry sends a Bearer challenge', (t) => {
  t.deepEqual(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'), {
    scheme: 'bearer', realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull',
  });
  t.deepEqual(parseChallenge('bearer realm=http://x/t, service=svc, error="insufficient_scope"'), { scheme: 'bearer', realm: 'http://x/t', service: 'svc' });
  t.deepEqual(parseChallenge('Basic realm="Registry Realm"'), { scheme: 'basic', realm: 'Registry Realm' });
  t.deepEqual(parseChallenge(['Negotiate', 'Basic realm="r"']), { scheme: 'basic', realm: 'r' });
  t.deepEqual(parseChallenge('Bearer realm="a\\"b"'), { scheme: 'bearer', realm: 'a"b' });
});

test('parseChallenge: gives undefined when no Bearer or Basic challenge is present', (t) => {
  t.is(parseChallenge(undefined), undefined);
  t.is(parseChallenge('Negotiate abc'), undefined);
  t.is(parseChallenge('Bearerish realm=x'), undefined);
});

test('tokenFromResponse: takes token or access_token and expires early when given a lifetime', (t) => {
  const now = Date.parse('2024-01-01T00:00:00Z');
  t.deepEqual(tokenFromResponse({ token: 'a', expires_in: 300 }, now), { token: 'a', expiresAt: now + 290_000 });
  t.deepEqual(tokenFromResponse({ access_token: 'b' }, now), { token: 'b', expiresAt: now + 50_000 });
  t.deepEqual(tokenFromResponse({ token: 'c', expires_in: 100, issued_at: '2023-12-31T23:59:00Z' }, now), { token: 'c', expiresAt: now - 60_000 + 90_000 });
  t.is(tokenFromResponse({ token: 'd', expires_in: 1 }, now).expiresAt, now + 1000);
  t.throws(() => tokenFromResponse({}, now), { message: /without a token/ });
});

test('basicAuthorization and repositoryScope: format what docker sends when building auth', (t) => {
  t.is(basicAuthorization({ username: 'u', password: 'p:w' }), `Basic ${Buffer.from('u:p:w').toString('base64')}`);
  t.is(repositoryScope('library/busybox', 'pull,push'), 'repository:library/busybox:pull,push');
});
