import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLONE_NAMESPACE_FLAGS, ociSeccomp, SECCOMP_DENY } from '../../src/sandbox/seccomp-profile.js';
import { createRunSpec, toOciConfig } from '../../src/sandbox/spec.js';

const HEADER = join(fileURLToPath(new URL('../../', import.meta.url)), 'src', 'sandbox', 'launcher', 'seccomp-deny.h');

test('seccomp profile: the TypeScript deny list (OCI runtimes) and the launcher\'s header are the same list', (t) => {
  const fromHeader = [...readFileSync(HEADER, 'utf8').matchAll(/^DENY\((\w+), (-1|CAP_\w+), (-1|CAP_\w+)\)$/gm)]
    .map((m) => ({ name: m[1] as string, allowedBy: [m[2], m[3]].filter((c) => c !== '-1') }));
  t.true(fromHeader.length > 40);
  t.deepEqual(fromHeader, SECCOMP_DENY.map((d) => ({ name: d.name, allowedBy: [...d.allowedBy] })));
  t.is(CLONE_NAMESPACE_FLAGS.reduce((a, b) => a | b, 0), 0x7e020000, 'the mask seccomp.c checks');
});

test('seccomp profile: OCI section refuses the calls the capabilities do not allow; privileged and unconfined specs have none', (t) => {
  const names = (caps: string[]): string[] => ((ociSeccomp(caps).syscalls as { names: string[] }[])[0] as { names: string[] }).names;
  t.true(names([]).includes('mount'));
  t.true(names([]).includes('keyctl'));
  t.false(names(['CAP_SYS_ADMIN']).includes('mount'));
  t.false(names(['CAP_BPF']).includes('bpf'));
  t.true(names(['CAP_SYS_ADMIN']).includes('keyctl'));
  const rules = ociSeccomp([]).syscalls as { names: string[]; errnoRet: number }[];
  t.deepEqual(rules.filter((r) => r.names[0] === 'clone3').map((r) => r.errnoRet), [38]);
  t.is(rules.filter((r) => r.names[0] === 'clone').length, 7);
  t.is((ociSeccomp(['CAP_SYS_ADMIN']).syscalls as unknown[]).length, 1);
  const linuxOf = (o: Parameters<typeof createRunSpec>[0]): Record<string, unknown> => toOciConfig(createRunSpec(o)).linux as Record<string, unknown>;
  t.is((linuxOf({ args: ['true'], root: { path: '/r' } }).seccomp as { defaultAction: string }).defaultAction, 'SCMP_ACT_ALLOW');
  t.is(linuxOf({ args: ['true'], root: { path: '/r' }, seccomp: 'unconfined' }).seccomp, undefined);
  t.is(linuxOf({ args: ['true'], root: { path: '/r' }, privileged: true }).seccomp, undefined);
});
