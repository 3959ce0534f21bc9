import test from 'ava';
import { statusText } from '../../src/cli/commands/containers.js';
import { createdState, type ContainerEntry, type ContainerRecord } from '../../src/runner/index.js';
import { processStartTime } from '../../src/runner/index.js';

const NOW = Date.parse('2026-01-01T00:10:00Z');
const config = { id: 'a'.repeat(64), name: 'x', args: ['sh'] } as unknown as ContainerRecord;

function entry(state: Partial<ContainerEntry['state']>): ContainerEntry {
  return { config, state: { ...createdState(), ...state } };
}

test('statusText: docker\'s Restarting (CODE) and health suffixes when a container restarts or has a healthcheck', (t) => {
  // This process stands in for a live monitor.
  const live = { monitorPid: process.pid, monitorStartTime: processStartTime(process.pid) ?? '' };
  t.is(statusText(entry({ status: 'restarting', exitCode: 3, finishedAt: '2026-01-01T00:09:55Z', ...live }), NOW), 'Restarting (3) 5 seconds ago');
  const up = entry({ status: 'running', startedAt: '2026-01-01T00:08:00Z', ...live });
  t.is(statusText(up, NOW), 'Up 2 minutes');
  t.is(statusText(up, NOW, { Status: 'healthy', FailingStreak: 0, Log: [] }), 'Up 2 minutes (healthy)');
  t.is(statusText(up, NOW, { Status: 'unhealthy', FailingStreak: 3, Log: [] }), 'Up 2 minutes (unhealthy)');
  t.is(statusText(up, NOW, { Status: 'starting', FailingStreak: 0, Log: [] }), 'Up 2 minutes (health: starting)');
  t.is(statusText(entry({ status: 'exited', exitCode: 1, finishedAt: '2026-01-01T00:09:00Z' }), NOW, { Status: 'healthy', FailingStreak: 0, Log: [] }), 'Exited (1) About a minute ago');
});
