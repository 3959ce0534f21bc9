import test from 'ava';
import { isRetryableNetError, networkError, parseErrorBody, redact, responseError, retryDelay } from '../../src/registry/index.js';

test('responseError: quotes the registry code and message when the body follows the spec', (t) => {
  const e = responseError('fetching manifest v1 of r/x', 404, '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"v1"}}]}');
  t.is(e.code, 'REG_MANIFEST_UNKNOWN');
  t.is(e.message, 'fetching manifest v1 of r/x: registry answered 404 (MANIFEST_UNKNOWN: manifest unknown)');
  const d = responseError('push', 403, '{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}');
  t.is(d.code, 'REG_DENIED');
  t.regex(d.hint ?? '', /lack access/);
  t.is(responseError('x', 401, '').code, 'REG_UNAUTHORIZED');
  t.is(responseError('x', 502, '<html>bad gateway</html>').code, 'REG_SERVER_ERROR');
  t.is(responseError('x', 418, 'teapot').code, 'REG_BAD_RESPONSE');
  t.is(responseError('x', 400, '{"errors":[{"code":"weird-code!"}]}').code, 'REG_WEIRD_CODE_');
});

test('parseErrorBody: gives an empty list when the body is not the spec shape', (t) => {
  t.deepEqual(parseErrorBody('nope'), []);
  t.deepEqual(parseErrorBody('{"errors":"x"}'), []);
  t.deepEqual(parseErrorBody('{"errors":[{"message":"m"}]}'), [{ code: 'UNKNOWN', message: 'm' }]);
});

test('redact: hides Authorization values, tokens and passwords when they appear in text', (t) => {
  const cases: [string, string][] = [
    ['authorization: Basic dXNlcjpwYXNz', 'authorization: Basic <redacted>'],
    ['Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.x.y', 'Authorization: Bearer <redacted>'],
    ['{"token":"abc","expires_in":60}', '{"token":<redacted>,"expires_in":60}'],
    ['{"password": "hunter2"}', '{"password": <redacted>}'],
    ['https://r/t?service=s&access_token=zzz&x=1', 'https://r/t?service=s&access_token=<redacted>&x=1'],
    ['GET https://r/v2/a/manifests/v1', 'GET https://r/v2/a/manifests/v1'],
  ];
  for (const [input, out] of cases) t.is(redact(input), out, input);
});

test('networkError: names unreachable hosts and TLS failures when connections fail', (t) => {
  const refused = networkError('127.0.0.1:1', 'fetching', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }));
  t.is(refused.code, 'REG_UNREACHABLE');
  t.regex(refused.message, /cannot reach registry 127\.0\.0\.1:1/);
  const tls = networkError('h', 'x', Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }));
  t.is(tls.code, 'REG_TLS');
  t.regex(tls.hint ?? '', /certs\.d\/h\/ca\.crt/);
  t.true(isRetryableNetError(Object.assign(new Error('x'), { cause: { code: 'ECONNRESET' } })));
  t.false(isRetryableNetError(new Error('plain')));
});

test('retryDelay: honours Retry-After up to the cap and backs off with jitter otherwise', (t) => {
  t.is(retryDelay(0, 100, '2', 30_000), 2000);
  t.is(retryDelay(0, 100, '120', 30_000), 30_000);
  for (let attempt = 0; attempt < 5; attempt++) {
    const d = retryDelay(attempt, 100, undefined, 30_000);
    t.true(d >= 50 * 2 ** attempt && d <= 100 * 2 ** attempt, `${attempt}: ${d}`);
  }
  const later = retryDelay(0, 100, new Date(Date.now() + 60_000).toUTCString(), 5000);
  t.is(later, 5000);
});
