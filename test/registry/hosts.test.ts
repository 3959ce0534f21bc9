import test from 'ava';
import { apiHostOf, authKeyOf, hostNameOf, isPlainHttpAllowed, normalizeRegistryArg } from '../../src/registry/index.js';

test('apiHostOf: maps docker.io to registry-1.docker.io when resolving the API host', (t) => {
  t.is(apiHostOf('docker.io'), 'registry-1.docker.io');
  t.is(apiHostOf('index.docker.io'), 'registry-1.docker.io');
  t.is(apiHostOf('ghcr.io'), 'ghcr.io');
  t.is(apiHostOf('localhost:5000'), 'localhost:5000');
  t.is(authKeyOf('docker.io'), 'https://index.docker.io/v1/');
  t.is(authKeyOf('r:5000'), 'r:5000');
});

test('isPlainHttpAllowed: allows HTTP only for loopback and listed hosts', (t) => {
  const table: [string, readonly string[], boolean][] = [
    ['localhost:5000', [], true], ['127.0.0.1:5000', [], true], ['127.8.9.10', [], true], ['[::1]:5000', [], true],
    ['registry.example', [], false], ['10.0.0.1:5000', [], false], ['127.0.0.1.evil.com', [], false], ['localhost.evil.com', [], false],
    ['10.0.0.1:5000', ['10.0.0.1:5000'], true], ['reg.lan:5000', ['reg.lan'], true], ['reg.lan:5000', ['other.lan'], false],
  ];
  for (const [host, insecure, want] of table) t.is(isPlainHttpAllowed(host, insecure), want, host);
  t.is(hostNameOf('[::1]:5000'), '::1');
});

test('normalizeRegistryArg: reduces URLs and Docker Hub aliases to a domain when given to login', (t) => {
  t.is(normalizeRegistryArg('https://index.docker.io/v1/'), 'docker.io');
  t.is(normalizeRegistryArg('registry-1.docker.io'), 'docker.io');
  t.is(normalizeRegistryArg('http://localhost:5000/v2/'), 'localhost:5000');
  t.is(normalizeRegistryArg('ghcr.io'), 'ghcr.io');
});
