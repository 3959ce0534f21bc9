import test from 'ava';
import { parseGoDuration, parseLogTime } from '../../src/cli/log-time.js';
import { logRecordNs } from '../../src/runner/logs.js';

const NOW = Date.UTC(2024, 0, 2, 12, 0, 0); // 2024-01-02T12:00:00Z
const ns = (ms: number): bigint => BigInt(ms) * 1_000_000n;

test('log time: RFC 3339 timestamps with zones and fractions when given as docker accepts them', (t) => {
  t.is(parseLogTime('2024-01-02T10:00:00Z', NOW, 'since'), ns(Date.UTC(2024, 0, 2, 10)));
  t.is(parseLogTime('2024-01-02T10:00:00.123456789Z', NOW, 'since'), ns(Date.UTC(2024, 0, 2, 10)) + 123_456_789n);
  t.is(parseLogTime('2024-01-02T12:00:00+02:00', NOW, 'since'), ns(Date.UTC(2024, 0, 2, 10)));
  t.is(parseLogTime('2024-01-02T05:30:00-04:30', NOW, 'since'), ns(Date.UTC(2024, 0, 2, 10)));
  t.is(parseLogTime('2024-01-02Z', NOW, 'since'), ns(Date.UTC(2024, 0, 2)));
  t.is(parseLogTime('2024-01-02T10:15Z', NOW, 'since'), ns(Date.UTC(2024, 0, 2, 10, 15)));
});

test('log time: timestamps without a zone are local time when no offset is given', (t) => {
  t.is(parseLogTime('2024-01-02T10:00:00', NOW, 'since'), ns(new Date(2024, 0, 2, 10).getTime()));
  t.is(parseLogTime('2024-01-02', NOW, 'since'), ns(new Date(2024, 0, 2).getTime()));
});

test('log time: Unix seconds with an optional fraction when given as a number', (t) => {
  t.is(parseLogTime('1700000000', NOW, 'since'), 1_700_000_000_000_000_000n);
  t.is(parseLogTime('1700000000.5', NOW, 'until'), 1_700_000_000_500_000_000n);
  t.is(parseLogTime('1136073600.000000001', NOW, 'since'), 1_136_073_600_000_000_001n);
});

test('log time: Go durations count back from now when relative', (t) => {
  t.is(parseLogTime('10m', NOW, 'since'), ns(NOW - 600_000));
  t.is(parseLogTime('1h30m', NOW, 'since'), ns(NOW - 5_400_000));
  t.is(parseLogTime('1.5s', NOW, 'until'), ns(NOW - 1500));
  t.is(parseGoDuration('300ms'), 300_000_000n);
  t.is(parseGoDuration('2h45m10s'), ((2n * 60n + 45n) * 60n + 10n) * 1_000_000_000n);
  t.is(parseGoDuration('10'), undefined);
});

test('log time: CLI_BAD_VALUE naming the option and the value when it is not a time', (t) => {
  for (const bad of ['yesterday', '10x', '2024-13-01', '2024-02-30T00:00:00Z', '2024-01-02T25:00:00Z', '']) {
    t.throws(() => parseLogTime(bad, NOW, 'since'), { code: 'CLI_BAD_VALUE', message: `invalid value "${bad}" for --since` });
  }
  t.throws(() => parseLogTime('soon', NOW, 'until'), { message: /--until/ });
});

test('log time: a log record time reads with nanoseconds when written by the log writer', (t) => {
  t.is(logRecordNs('2024-01-02T10:00:00.000000042Z'), ns(Date.UTC(2024, 0, 2, 10)) + 42n);
  t.is(logRecordNs('garbage'), undefined);
});
