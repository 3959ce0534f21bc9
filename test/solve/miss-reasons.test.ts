import test from 'ava';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256Of } from '../../src/core/index.js';
import { describeMissChanges } from '../../src/solve/miss-reasons.js';
import { StepInputsStore, stepIdentityOf, type StepInputs } from '../../src/solve/step-inputs.js';
import { openStore } from '../../src/store/index.js';
import { tempDir } from '../helpers/tmp.js';

test('describeMissChanges: names one file, or counts files and lists the first three with (+N more) when several changed', (t) => {
  t.is(describeMissChanges([{ kind: 'file', what: 'src/app.js', change: 'changed' }]), 'file src/app.js changed');
  t.is(describeMissChanges([{ kind: 'file', what: 'x', change: 'added' }]), 'file x added');
  t.is(describeMissChanges([
    { kind: 'file', what: 'a', change: 'changed' }, { kind: 'file', what: 'b', change: 'removed' },
    { kind: 'file', what: 'c', change: 'added' }, { kind: 'file', what: 'd', change: 'changed' }, { kind: 'file', more: 10 },
  ]), '14 files changed: a, b (removed), c (added) (+11 more)');
});

test('describeMissChanges: shows ARG and ENV values, hides them for credential-like names and joins several reasons when the inputs differ', (t) => {
  t.is(describeMissChanges([{ kind: 'arg', what: 'VERSION', change: 'changed', from: '1', to: '2' }, { kind: 'command' }]), 'ARG VERSION changed: 1 -> 2; command changed');
  t.is(describeMissChanges([{ kind: 'arg', what: 'NPM_TOKEN', change: 'changed' }]), 'ARG NPM_TOKEN changed (value hidden)');
  t.is(describeMissChanges([{ kind: 'env', what: 'MODE', change: 'added', to: 'b' }]), 'ENV MODE changed: (unset) -> b');
  t.is(describeMissChanges([{ kind: 'base-image', what: 'base image digest', from: 'sha256:aaaaaaaaaaaa', to: 'sha256:bbbbbbbbbbbb' }]), 'base image digest changed: sha256:aaaaaaaaaaaa -> sha256:bbbbbbbbbbbb');
  t.is(describeMissChanges([{ kind: 'parent', what: '[2/3] COPY . /app', change: 're-ran' }]), 'parent step re-ran: [2/3] COPY . /app');
  t.is(describeMissChanges([{ kind: 'instruction', what: 'WORKDIR', from: '/a', to: '/b' }]), 'WORKDIR changed: /a -> /b');
  t.is(describeMissChanges([{ kind: 'cache-disabled', what: '(--no-cache)' }]), 'cache disabled (--no-cache)');
  t.is(describeMissChanges([{ kind: 'no-record' }]), 'no cache record');
});

const DOC = (key: ReturnType<typeof sha256Of>): StepInputs => ({
  key, op: { type: 'exec', args: ['sh', '-c', 'true'] }, env: ['A=1'], envNames: [], inputs: [], content: [], files: { 'a.txt': '00ff' }, filesTruncated: false, network: 'host',
});

test('StepInputsStore: points a step at the key it last ran or hit with a recorded document, when building again', async (t) => {
  const store = await openStore(join(await tempDir(t), 'root'));
  const docs = new StepInputsStore(store);
  const id = stepIdentityOf({ contextDir: '/ctx', dockerfile: '/ctx/Dockerfile', target: 0, stage: 0, stageName: undefined, vertex: 's0.1', kind: 'exec' });
  t.is(await docs.lastKey(id), undefined);
  const k1 = sha256Of('one');
  const k2 = sha256Of('two');
  await docs.save(id, DOC(k1));
  await docs.save(id, DOC(k2));
  t.is(await docs.lastKey(id), k2);
  t.deepEqual(await docs.load(k1), DOC(k1));
  await docs.noteKey(id, k1); // a hit on an older version
  t.is(await docs.lastKey(id), k1);
  await docs.noteKey(id, sha256Of('imported')); // no document for that key: the pointer stays
  t.is(await docs.lastKey(id), k1);
  t.deepEqual(await readdir(store.paths.tmp), []);
});

test('StepInputsStore: reads nothing when a document is corrupt or belongs to another key', async (t) => {
  const store = await openStore(join(await tempDir(t), 'root'));
  const docs = new StepInputsStore(store);
  const k = sha256Of('k');
  await docs.save('ab', DOC(k));
  await writeFile(join(store.paths.cache, 'steps', 'inputs', `${k.slice(7)}.json`), '{"format":"tsbuild-step-inputs/1","key":');
  t.is(await docs.load(k), undefined);
  await writeFile(join(store.paths.cache, 'steps', 'inputs', `${k.slice(7)}.json`), JSON.stringify({ format: 'tsbuild-step-inputs/1', ...DOC(sha256Of('other')) }));
  t.is(await docs.load(k), undefined);
  t.not(stepIdentityOf({ contextDir: '/a', dockerfile: '-', target: 0, stage: 0, stageName: 'x', vertex: 's0.1', kind: 'exec' }),
    stepIdentityOf({ contextDir: '/b', dockerfile: '-', target: 0, stage: 0, stageName: 'x', vertex: 's0.1', kind: 'exec' }));
});
