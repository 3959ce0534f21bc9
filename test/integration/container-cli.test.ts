import type { ExecutionContext } from 'ava';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { busyboxMissing, makeBusyboxImage } from '../helpers/base-image.js';
import { testIf } from '../helpers/capability.js';
import { watchContainerStore } from '../helpers/containers.js';
import { tempDir } from '../helpers/tmp.js';

const noBusybox = await busyboxMissing();

type Cli = (...a: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;

/** A store with the busybox image whose containers are force-removed (and checked gone) when the test ends. */
async function setup(t: ExecutionContext): Promise<{ dir: string; r: Cli; finish: () => Promise<void> }> {
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  await makeBusyboxImage(dir, root);
  const { r, finish } = watchContainerStore(t, root);
  return { dir, r, finish };
}

async function until(what: string, cond: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await cond()) return;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const lines = (text: string): string[] => text.split('\n').filter((l) => l !== '');

testIf(noBusybox, 'kill -s: a trapped SIGUSR1 reaches the first process which keeps running, and SIGKILL by number ends it without a restart when signals are named or numbered', async (t) => {
  const { r, finish } = await setup(t);
  let res = await r('run', '-d', '--name', 'trapper', '--restart', 'always', 'busybox', 'sh', '-c', 'trap "echo got-usr1" USR1; trap "echo got-hup" HUP; echo ready; while true; do sleep 0.05; done');
  t.is(res.code, 0, res.stderr);
  await until('the trap to be set', async () => (await r('logs', 'trapper')).stdout.includes('ready'));
  res = await r('kill', '-s', 'SIGUSR1', 'trapper');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'trapper\n');
  await until('the trap to run', async () => (await r('logs', 'trapper')).stdout.includes('got-usr1'));
  // Without the SIG prefix, lower case, and by number (1 = SIGHUP).
  t.is((await r('kill', '-s', 'usr1', 'trapper')).code, 0);
  t.is((await r('kill', '--signal', '1', 'trapper')).code, 0);
  await until('both traps to run', async () => {
    const out = (await r('logs', 'trapper')).stdout;
    return out.split('got-usr1').length === 3 && out.includes('got-hup');
  });
  t.is((await r('ps', '--format', '{{.State}}', '-f', 'name=^trapper$')).stdout, 'running\n');
  // A bad signal is a CLI error naming the value; nothing is sent.
  res = await r('kill', '-s', 'SIGNOPE', 'trapper');
  t.is(res.code, 125);
  t.regex(res.stderr, /invalid signal "SIGNOPE"/);
  t.is((await r('kill', '-s', '0', 'trapper')).code, 125);
  // SIGKILL by number: a manual stop, so --restart always does not bring it back.
  t.is((await r('kill', '-s', '9', 'trapper')).code, 0);
  await until('the container to exit', async () => (await r('ps', '-a', '--format', '{{.State}}')).stdout === 'exited\n');
  await new Promise((res2) => setTimeout(res2, 600)); // longer than the first restart delay (100 ms)
  t.regex((await r('ps', '-a', '--format', '{{.Status}}')).stdout, /^Exited \(137\) /);
  const inspect = await r('container', 'inspect', '-f', '{{.RestartCount}} {{.State.Status}}', 'trapper');
  t.is(inspect.stdout, '0 exited\n');
  await finish();
});

testIf(noBusybox, 'logs --since/--until: RFC 3339, Unix seconds and relative times select records, after --tail, when shown with -t', async (t) => {
  const { r, finish } = await setup(t);
  let res = await r('run', '-d', '--name', 'talker', 'busybox', 'sh', '-c', 'echo one; sleep 0.05; echo two >&2; sleep 0.05; echo three; exec sleep 1000');
  t.is(res.code, 0, res.stderr);
  await until('three log lines', async () => (await r('logs', 'talker')).stdout.includes('three'));
  res = await r('logs', '-t', 'talker');
  const out = lines(res.stdout);
  t.is(out.length, 2);
  const [ts1, ts3] = out.map((l) => l.split(' ')[0] as string);
  const ts2 = (res.stderr.split(' ')[0] as string);
  t.regex(ts2, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
  // --since TIME keeps records at or after it, --until records at or before it (stdout and stderr alike).
  res = await r('logs', '-t', '--since', ts2, 'talker');
  t.is(res.stdout, `${ts3} three\n`);
  t.is(res.stderr, `${ts2} two\n`);
  res = await r('logs', '--until', ts2, 'talker');
  t.is(res.stdout, 'one\n');
  t.is(res.stderr, 'two\n');
  res = await r('logs', '--since', ts2, '--until', ts2, 'talker');
  t.is(res.stdout, '');
  t.is(res.stderr, 'two\n');
  // Unix seconds with a fraction (just after the first record).
  const ms1 = Date.parse(ts1 as string);
  res = await r('logs', '--since', ((ms1 + 1) / 1000).toFixed(3), 'talker');
  t.is(res.stdout, 'three\n');
  // Relative: all of it was written within the last hour, none of it in the future.
  t.is((await r('logs', '--since', '1h', 'talker')).stdout, 'one\nthree\n');
  t.is((await r('logs', '--since', '1h30m', '--until', '0s', 'talker')).stdout, 'one\nthree\n');
  t.is((await r('logs', '--until', '1h', 'talker')).stdout, '');
  // --tail picks the last records first, then --since filters them (docker's json-file reader).
  t.is((await r('logs', '--tail', '2', '--since', ts1 as string, 'talker')).stdout, 'three\n');
  t.is((await r('logs', '--tail', '1', '--until', ts2, 'talker')).stdout, '');
  // -f ends once --until has passed although the container keeps running.
  const soon = ((Date.now() + 300) / 1000).toFixed(3);
  res = await r('logs', '-f', '--until', soon, 'talker');
  t.is(res.code, 0);
  t.is(res.stdout, 'one\nthree\n');
  // A value that is no time: a CLI error naming it.
  res = await r('logs', '--since', 'yesterday', 'talker');
  t.is(res.code, 125);
  t.regex(res.stderr, /invalid value "yesterday" for --since/);
  await finish();
});

testIf(noBusybox, 'ps --filter/--format and inspect -f: docker\'s filter keys combine and templates render when containers differ in state, image and ports', async (t) => {
  const { dir, r, finish } = await setup(t);
  const ctx = join(dir, 'ctx');
  await mkdir(ctx);
  await writeFile(join(ctx, 'Dockerfile'), 'FROM busybox\nLABEL app=web tier=front\nEXPOSE 80/tcp 53/udp\n');
  let res = await r('build', '--progress=plain', '-t', 'labeled:1', ctx);
  t.is(res.code, 0, res.stderr);
  const run = async (...a: string[]): Promise<string> => {
    const out = await r('run', ...a);
    t.is(out.code, a[0] === '-d' ? 0 : Number(/exit (\d+)/.exec(a.join(' '))?.[1] ?? 0), out.stderr);
    return (await r('container', 'inspect', '-f', '{{.Id}}', a[a.indexOf('--name') + 1] as string)).stdout.trim();
  };
  const web1 = await run('-d', '--name', 'web1', '-p', '127.0.0.1::80', 'labeled:1', 'sleep', '1000');
  const web2 = await run('-d', '--name', 'web2', 'busybox', 'sleep', '1000');
  await run('--name', 'done0', 'labeled:1', 'true');
  await run('--name', 'done3', 'busybox', 'sh', '-c', 'exit 3');
  const names = async (...a: string[]): Promise<string> => {
    const out = await r('ps', '--format', '{{.Names}}', ...a);
    t.is(out.code, 0, out.stderr);
    return lines(out.stdout).sort().join(',');
  };
  // One key: id prefix, name (regular expression, with or without the slash), status without -a.
  t.is(await names('-f', `id=${web1.slice(0, 8)}`), 'web1');
  t.is(await names('-f', 'name=web'), 'web1,web2');
  t.is(await names('-f', 'name=^/web2$'), 'web2');
  t.is(await names('-f', 'status=exited'), 'done0,done3');
  t.is(await names('-f', 'status=running'), 'web1,web2');
  t.is(await names('-f', 'exited=3'), '');
  t.is(await names('-a', '-f', 'exited=3'), 'done3');
  // Labels, ancestors (name or image ID), before/since, publish/expose.
  t.is(await names('-a', '-f', 'label=app=web'), 'done0,web1');
  t.is(await names('-a', '-f', 'label=tier'), 'done0,web1');
  t.is(await names('-a', '-f', 'label=app=db'), '');
  t.is(await names('-a', '-f', 'ancestor=labeled:1'), 'done0,web1');
  const busyboxId = (await r('inspect', '-f', '{{.Id}}', 'busybox')).stdout.trim().replace(/^sha256:/, '');
  t.is(await names('-a', '-f', `ancestor=${busyboxId.slice(0, 12)}`), 'done3,web2');
  t.is(await names('-a', '-f', 'ancestor=busybox'), 'done3,web2');
  t.is(await names('-a', '-f', 'before=done0'), 'web1,web2');
  t.is(await names('-a', '-f', 'since=web2'), 'done0,done3');
  t.is(await names('-a', '-f', 'since=web1', '-f', 'before=done3'), 'done0,web2');
  t.is(await names('-f', 'publish=80'), 'web1');
  t.is(await names('-f', 'publish=81'), '');
  t.is(await names('-a', '-f', 'expose=53/udp'), 'done0,web1');
  t.is(await names('-a', '-f', 'expose=50-60/udp'), 'done0,web1');
  // The same key ORs, different keys AND.
  t.is(await names('-a', '-f', 'name=web1', '-f', 'name=done3'), 'done3,web1');
  t.is(await names('-a', '-f', 'status=exited', '-f', 'status=running', '-f', 'label=app=web'), 'done0,web1');
  t.is(await names('-a', '-f', 'ancestor=busybox', '-f', 'status=exited'), 'done3');
  t.is((await r('ps', '-q', '-f', 'name=web2')).stdout, `${web2.slice(0, 12)}\n`);
  // Bad filters: clear errors.
  res = await r('ps', '-f', 'color=red');
  t.is(res.code, 125);
  t.regex(res.stderr, /invalid filter 'color'/);
  res = await r('ps', '-f', 'status=sleeping');
  t.is(res.code, 125);
  t.regex(res.stderr, /status=sleeping/);
  t.is((await r('ps', '-f', 'exited=x')).code, 125);
  t.is((await r('ps', '-f', 'noequals')).code, 125);
  t.regex((await r('ps', '-f', 'before=nosuch')).stderr, /nosuch/);

  // ps --format: a template per container, or a table with docker's headers.
  res = await r('ps', '-a', '-f', 'name=done', '--format', '{{.Names}}\\t{{.State}}\\t{{.Image}}\\t{{.Command}}');
  t.deepEqual(lines(res.stdout).sort(), ['done0\texited\tlabeled:1\t"true"', 'done3\texited\tbusybox\t"sh -c exit 3"']);
  res = await r('ps', '-f', 'name=web1', '--format', 'table {{.ID}}\\t{{.Names}}\\t{{.Ports}}');
  t.is(res.code, 0, res.stderr);
  const [head, row] = res.stdout.split('\n');
  t.regex(head ?? '', /^CONTAINER ID\s{3}NAMES\s+PORTS$/);
  t.regex(row ?? '', new RegExp(`^${web1.slice(0, 12)}\\s{3}web1\\s+127\\.0\\.0\\.1:\\d+->80/tcp, 53/udp$`));
  res = await r('ps', '-a', '-f', 'name=done3', '--format', '{{.Status}}|{{if eq .State "exited"}}stopped{{else}}up{{end}}|{{upper .Names}}|{{.Labels}}');
  t.regex(res.stdout, /^Exited \(3\) .* ago\|stopped\|DONE3\|\n$/);
  t.is((await r('ps', '-a', '-f', 'name=done0', '--format', '{{.Labels}}')).stdout, 'app=web,tier=front\n');
  res = await r('ps', '--format', '{{.Names | truncate 3}}');
  t.is(res.code, 125);
  t.regex(res.stderr, /"truncate" is not supported/);

  // inspect -f on containers, through "container inspect" and plain "inspect".
  res = await r('container', 'inspect', '-f', '{{.Name}} {{.State.Status}} {{.State.ExitCode}} {{index .Config.Labels "app"}}', 'done3', 'web1');
  t.is(res.stdout, '/done3 exited 3 <no value>\n/web1 running 0 web\n');
  res = await r('inspect', '-f', '{{range .Config.Cmd}}[{{.}}]{{end}} {{json .Config.Labels}} {{if .State.Running}}up{{else}}down{{end}}', 'done3');
  t.is(res.stdout, '[sh][-c][exit 3] {} down\n');
  res = await r('inspect', '--format', '{{join .Config.Cmd ","}}{{println}}{{lower .State.Status}}', 'web1');
  t.is(res.stdout, 'sleep,1000\nrunning\n');
  res = await r('container', 'inspect', '-f', '{{with .State}}{{.Status}}{{end}}', 'web1');
  t.is(res.code, 125);
  t.regex(res.stderr, /\{\{with\}\} is not supported/);
  t.is((await r('container', 'inspect', '-f', 'json', 'web2')).stdout.trim().startsWith(`{"Id":"${web2}"`), true);
  await finish();
});

testIf(noBusybox, 'start -a: streams only the new run\'s stdout and stderr and returns the container\'s exit code when it exits', async (t) => {
  const { r, finish } = await setup(t);
  let res = await r('run', '--name', 'once', 'busybox', 'sh', '-c', 'echo out; echo err >&2; sleep 0.1; echo late; exit 3');
  t.is(res.code, 3);
  res = await r('start', '-a', 'once');
  t.is(res.code, 3, res.stderr);
  t.is(res.stdout, 'out\nlate\n');
  t.is(res.stderr, 'err\n');
  t.regex((await r('ps', '-a', '--format', '{{.Status}}')).stdout, /^Exited \(3\) /);
  // Both runs are in the log.
  t.is((await r('logs', 'once')).stdout, 'out\nlate\nout\nlate\n');
  res = await r('run', '--name', 'other', 'busybox', 'true');
  t.is(res.code, 0);
  res = await r('start', '-a', 'once', 'other');
  t.is(res.code, 1);
  t.regex(res.stderr, /cannot start and attach multiple containers/);
  await finish();
});

const notRoot = process.getuid?.() === 0 ? undefined : 'cgroup v1 accounting needs root here';

testIf(noBusybox ?? notRoot, 'images and stats --format: Go templates and "table TEMPLATE" render docker\'s fields when given instead of table or json', async (t) => {
  const { r, finish } = await setup(t);
  let res = await r('images', '--format', '{{.Repository}}:{{.Tag}} {{len .ID}}');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'busybox:latest 12\n');
  res = await r('images', '--format', 'table {{.Repository}}\\t{{.Tag}}');
  t.is(res.stdout, 'REPOSITORY   TAG\nbusybox      latest\n');
  res = await r('images', '--format', '{{range .}}x{{end}');
  t.is(res.code, 125);
  t.regex(res.stderr, /unclosed action/);
  res = await r('run', '-d', '--name', 'stat', 'busybox', 'sleep', '1000');
  t.is(res.code, 0, res.stderr);
  res = await r('stats', '--no-stream', '--format', '{{.Name}} {{.PIDs}} {{if .MemUsage}}mem{{end}}', 'stat');
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout, 'stat 1 mem\n');
  res = await r('stats', '--no-stream', '--format', 'table {{.Name}}\\t{{.PIDs}}', 'stat');
  t.is(res.stdout, 'NAME      PIDS\nstat      1\n');
  t.is((await r('stats', '--no-stream', '--format', '{{template "x"}}', 'stat')).code, 125);
  await finish();
});
