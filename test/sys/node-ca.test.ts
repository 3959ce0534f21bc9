import test from 'ava';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { DEFERRED_CA_VAR, deferNodeExtraCaCerts, extraCaFile, externalProgramEnv, readExtraCaFile, withNodeRoots } from '../../src/sys/index.js';
import { tempDir } from '../helpers/tmp.js';

test('deferNodeExtraCaCerts: moves NODE_EXTRA_CA_CERTS to the deferred name, keeping a deferred name the shebang already set', (t) => {
  const env: NodeJS.ProcessEnv = { NODE_EXTRA_CA_CERTS: '/a.pem', PATH: '/bin' };
  deferNodeExtraCaCerts(env);
  t.deepEqual(env, { [DEFERRED_CA_VAR]: '/a.pem', PATH: '/bin' });
  const both: NodeJS.ProcessEnv = { NODE_EXTRA_CA_CERTS: '/b.pem', [DEFERRED_CA_VAR]: '/a.pem' };
  deferNodeExtraCaCerts(both);
  t.deepEqual(both, { [DEFERRED_CA_VAR]: '/a.pem' });
  const empty: NodeJS.ProcessEnv = { NODE_EXTRA_CA_CERTS: '', [DEFERRED_CA_VAR]: '' };
  deferNodeExtraCaCerts(empty);
  t.deepEqual(empty, { [DEFERRED_CA_VAR]: '' });
  const none: NodeJS.ProcessEnv = { PATH: '/bin' };
  deferNodeExtraCaCerts(none);
  t.deepEqual(none, { PATH: '/bin' });
});

test('extraCaFile: the deferred name first, then NODE_EXTRA_CA_CERTS; empty values count as unset', (t) => {
  t.is(extraCaFile({ [DEFERRED_CA_VAR]: '/a.pem', NODE_EXTRA_CA_CERTS: '/b.pem' }), '/a.pem');
  t.is(extraCaFile({ [DEFERRED_CA_VAR]: '', NODE_EXTRA_CA_CERTS: '/b.pem' }), '/b.pem');
  t.is(extraCaFile({ [DEFERRED_CA_VAR]: '' }), undefined);
  t.is(extraCaFile({}), undefined);
});

test('externalProgramEnv: external programs see NODE_EXTRA_CA_CERTS as the user set it, never the deferred name', (t) => {
  const env = { [DEFERRED_CA_VAR]: '/a.pem', PATH: '/bin' };
  t.deepEqual(externalProgramEnv(env), { NODE_EXTRA_CA_CERTS: '/a.pem', PATH: '/bin' });
  t.deepEqual(env, { [DEFERRED_CA_VAR]: '/a.pem', PATH: '/bin' }, 'the input is not changed');
  t.deepEqual(externalProgramEnv({ [DEFERRED_CA_VAR]: '', PATH: '/bin' }), { PATH: '/bin' });
});

test('readExtraCaFile: the file\'s text; undefined without a file or when it cannot be read (as Node ignores it)', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'ca.pem');
  await writeFile(file, '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n');
  t.is(await readExtraCaFile(file), '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n');
  t.is(await readExtraCaFile(join(dir, 'missing.pem')), undefined);
  t.is(await readExtraCaFile(undefined), undefined);
});

test('withNodeRoots: Node\'s roots then the extra PEMs (a ca option replaces the roots); undefined without extras', async (t) => {
  t.is(await withNodeRoots([]), undefined);
  const ca = await withNodeRoots(['PEM-A', 'PEM-B']);
  t.deepEqual(ca, [...rootCertificates, 'PEM-A', 'PEM-B']);
});
