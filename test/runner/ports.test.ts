import test from 'ava';
import { TsbuildError } from '../../src/core/index.js';
import {
  bindingsOfContainer, containerPortFields, describeBinding, formatPortsColumn, parseExposedPorts, parsePublishSpec,
} from '../../src/runner/index.js';

test('parsePublishSpec: CTR, HOST:CTR, IP:HOST:CTR, IP::CTR and /udp as docker reads them', (t) => {
  t.deepEqual(parsePublishSpec('80'), [{ containerPort: 80, protocol: 'tcp', hostIp: '', hostPort: 0 }]);
  t.deepEqual(parsePublishSpec('8081:80'), [{ containerPort: 80, protocol: 'tcp', hostIp: '', hostPort: 8081 }]);
  t.deepEqual(parsePublishSpec('127.0.0.1:8081:80/tcp'), [{ containerPort: 80, protocol: 'tcp', hostIp: '127.0.0.1', hostPort: 8081 }]);
  t.deepEqual(parsePublishSpec('127.0.0.1::80'), [{ containerPort: 80, protocol: 'tcp', hostIp: '127.0.0.1', hostPort: 0 }]);
  t.deepEqual(parsePublishSpec('5353:53/UDP'), [{ containerPort: 53, protocol: 'udp', hostIp: '', hostPort: 5353 }]);
  t.deepEqual(parsePublishSpec('[::1]:8081:80'), [{ containerPort: 80, protocol: 'tcp', hostIp: '::1', hostPort: 8081 }]);
  t.deepEqual(parsePublishSpec('0:80'), [{ containerPort: 80, protocol: 'tcp', hostIp: '', hostPort: 0 }]);
});

test('parsePublishSpec: ranges map one to one, a host range for one port is a choice, a container range alone gets free ports', (t) => {
  t.deepEqual(parsePublishSpec('8000-8001:80-81'), [
    { containerPort: 80, protocol: 'tcp', hostIp: '', hostPort: 8000 },
    { containerPort: 81, protocol: 'tcp', hostIp: '', hostPort: 8001 },
  ]);
  t.deepEqual(parsePublishSpec('8000-8010:80'), [{ containerPort: 80, protocol: 'tcp', hostIp: '', hostPort: 8000, hostPortEnd: 8010 }]);
  t.deepEqual(parsePublishSpec('80-81/udp').map((b) => [b.containerPort, b.hostPort, b.protocol]), [[80, 0, 'udp'], [81, 0, 'udp']]);
});

test('parsePublishSpec: invalid specs throw CLI_BAD_VALUE quoting the spec when malformed', (t) => {
  for (const spec of ['', 'abc', '80:abc', '70000:80', '0', '8081:0', '1.2.3:80:80', 'host.example:80:80', '8000-8002:80-81', '81-80',
    '80/sctpx', 'a:b:c:d', '::1:80:80', '[::1]80', '80:']) {
    const err = t.throws(() => parsePublishSpec(spec), { instanceOf: TsbuildError }, spec);
    t.is(err?.code, 'CLI_BAD_VALUE', spec);
    t.true(err?.message.includes(`"${spec}"`), err?.message);
  }
  t.is(t.throws(() => parsePublishSpec('80/sctp'), { instanceOf: TsbuildError })?.code, 'CLI_NOT_SUPPORTED');
});

test('parseExposedPorts: image keys become sorted PORT/PROTO keys, a missing protocol is tcp, garbage is skipped', (t) => {
  t.deepEqual(parseExposedPorts(['8080', '53/udp', '80/tcp', '443/TCP', 'bogus', '1-2/sctp', '7000-7001/tcp']), [
    '53/udp', '80/tcp', '443/tcp', '7000/tcp', '7001/tcp', '8080/tcp',
  ]);
});

test('containerPortFields and bindingsOfContainer: -p ports join the exposed set, -P adds every other exposed port on a free port', (t) => {
  const fields = containerPortFields({ '80/tcp': {}, '53/udp': {} }, parsePublishSpec('8081:80').concat(parsePublishSpec('9000:9000')), true);
  t.deepEqual(fields.exposedPorts, ['53/udp', '80/tcp', '9000/tcp']);
  t.true(fields.publishAllPorts);
  const b = bindingsOfContainer({ network: 'none', ...fields });
  t.deepEqual(b.map(describeBinding), ['0.0.0.0:8081->80/tcp', '0.0.0.0:9000->9000/tcp', '0.0.0.0:0->53/udp']);
  t.deepEqual(bindingsOfContainer({ network: 'host', ...fields }), [], 'the host network publishes nothing');
  t.deepEqual(bindingsOfContainer({ network: 'none' }), [], 'a record written before published ports has none');
  t.deepEqual(bindingsOfContainer({ network: 'none', ...containerPortFields({ '80/tcp': {} }, [], false) }), []);
});

test('formatPortsColumn: docker\'s PORTS text with consecutive ports collapsed and unpublished exposed ports last', (t) => {
  const p = (containerPort: number, hostPort: number, protocol: 'tcp' | 'udp' = 'tcp', hostIp = '0.0.0.0') => ({ containerPort, hostPort, protocol, hostIp });
  t.is(formatPortsColumn([p(80, 8081)], ['80/tcp']), '0.0.0.0:8081->80/tcp');
  t.is(formatPortsColumn([p(81, 8001), p(80, 8000)], ['80/tcp', '81/tcp', '443/tcp']), '0.0.0.0:8000-8001->80-81/tcp, 443/tcp');
  t.is(formatPortsColumn([p(53, 5353, 'udp', '127.0.0.1'), p(80, 9000)], []), '127.0.0.1:5353->53/udp, 0.0.0.0:9000->80/tcp');
  t.is(formatPortsColumn([p(80, 8081, 'tcp', '::1')], []), '[::1]:8081->80/tcp');
  t.is(formatPortsColumn([], ['80/tcp']), '80/tcp');
  t.is(formatPortsColumn([], []), '');
});
