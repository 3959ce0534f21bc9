import test from 'ava';
import { nextRestartDelay, parseDuration, parseRestartPolicy, resolveHealthcheck, healthConfigOf, shouldRestart, imageVolumeRequests, isValidVolumeName } from '../../src/runner/index.js';
import { TsbuildError } from '../../src/core/index.js';

test('parseRestartPolicy: docker policies with an optional retry count, errors naming the policy when invalid', (t) => {
  t.deepEqual(parseRestartPolicy('no'), { Name: 'no', MaximumRetryCount: 0 });
  t.deepEqual(parseRestartPolicy('always'), { Name: 'always', MaximumRetryCount: 0 });
  t.deepEqual(parseRestartPolicy('unless-stopped'), { Name: 'unless-stopped', MaximumRetryCount: 0 });
  t.deepEqual(parseRestartPolicy('on-failure'), { Name: 'on-failure', MaximumRetryCount: 0 });
  t.deepEqual(parseRestartPolicy('on-failure:5'), { Name: 'on-failure', MaximumRetryCount: 5 });
  for (const bad of ['sometimes', 'always:3', 'on-failure:x', 'on-failure:1:2', '']) {
    const err = t.throws(() => parseRestartPolicy(bad), { instanceOf: TsbuildError });
    t.is(err?.code, 'RUN_BAD_RESTART', bad);
  }
});

test('shouldRestart and nextRestartDelay: on-failure counts retries, always ignores the code, back-off doubles to a minute and resets after 10 s', (t) => {
  t.false(shouldRestart({ Name: 'no', MaximumRetryCount: 0 }, 1, 0));
  t.true(shouldRestart({ Name: 'always', MaximumRetryCount: 0 }, 0, 99));
  t.true(shouldRestart({ Name: 'unless-stopped', MaximumRetryCount: 0 }, 0, 0));
  t.false(shouldRestart({ Name: 'on-failure', MaximumRetryCount: 0 }, 0, 0));
  t.true(shouldRestart({ Name: 'on-failure', MaximumRetryCount: 0 }, 2, 1000), 'no limit');
  t.true(shouldRestart({ Name: 'on-failure', MaximumRetryCount: 2 }, 1, 1));
  t.false(shouldRestart({ Name: 'on-failure', MaximumRetryCount: 2 }, 1, 2));
  const delays: number[] = [];
  let d = 0;
  for (let i = 0; i < 12; i++) delays.push((d = nextRestartDelay(d, 50)));
  t.deepEqual(delays, [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000]);
  t.is(nextRestartDelay(60000, 10_000), 100);
});

test('parseDuration: Go durations in milliseconds, an error naming the flag when malformed', (t) => {
  t.is(parseDuration('30s', '--x'), 30_000);
  t.is(parseDuration('1m30s', '--x'), 90_000);
  t.is(parseDuration('500ms', '--x'), 500);
  t.is(parseDuration('1.5h', '--x'), 5_400_000);
  t.is(parseDuration('0', '--x'), 0);
  for (const bad of ['', '10', 's', '1x', '5s ', '-1s']) {
    const err = t.throws(() => parseDuration(bad, '--health-interval'), { instanceOf: TsbuildError });
    t.regex(err?.message ?? '', /--health-interval/);
  }
});

test('resolveHealthcheck: the image HEALTHCHECK with flags over it, docker defaults, NONE and --no-healthcheck disabling it', (t) => {
  const image = { Test: ['CMD', 'check'], Interval: 2_000_000_000, Retries: 5 };
  t.deepEqual(resolveHealthcheck(image, {}), { test: ['CMD', 'check'], intervalMs: 2000, timeoutMs: 30_000, startPeriodMs: 0, startIntervalMs: 5000, retries: 5 });
  t.deepEqual(resolveHealthcheck(image, { cmd: 'curl -f localhost', intervalMs: 100, retries: 1 }), {
    test: ['CMD-SHELL', 'curl -f localhost'], intervalMs: 100, timeoutMs: 30_000, startPeriodMs: 0, startIntervalMs: 5000, retries: 1,
  });
  t.is(resolveHealthcheck(image, { disabled: true }), undefined);
  t.is(resolveHealthcheck({ Test: ['NONE'] }, {}), undefined);
  t.is(resolveHealthcheck(undefined, {}), undefined);
  t.is(resolveHealthcheck(undefined, { intervalMs: 5 }), undefined, 'timing flags alone make no check');
  const spec = resolveHealthcheck(undefined, { cmd: 'true', timeoutMs: 1500 });
  t.like(spec === undefined ? {} : healthConfigOf(spec), { Test: ['CMD-SHELL', 'true'], Timeout: 1_500_000_000, Interval: 30_000_000_000, Retries: 3 });
});

test('imageVolumeRequests and isValidVolumeName: VOLUME paths not mounted otherwise become anonymous volumes; docker\'s name rule', (t) => {
  t.deepEqual(imageVolumeRequests({ '/data/': {}, '/logs': {}, 'relative': {} }, ['/logs']), [{ name: undefined, destination: '/data', readonly: false }]);
  t.deepEqual(imageVolumeRequests(undefined, []), []);
  t.true(isValidVolumeName('my_vol.1-x'));
  for (const bad of ['a', '-x', 'a/b', '../x', 'a b', '.hidden']) t.false(isValidVolumeName(bad), bad);
});
