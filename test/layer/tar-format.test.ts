import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readTar, type TarHeader } from '../../src/layer/index.js';
import { BLOCK, encodeHeader } from '../../src/layer/tar-header.js';
import { tempDir } from '../helpers/tmp.js';
import { buildTar, collect, streamOf } from './helpers.js';

async function readAll(buf: Buffer, chunk = 333): Promise<Array<{ header: TarHeader; body: Buffer }>> {
  const out: Array<{ header: TarHeader; body: Buffer }> = [];
  for await (const e of readTar(streamOf(buf, chunk))) out.push({ header: e.header, body: await collect(e.body) });
  return out;
}

const BASE: TarHeader = { name: 'x', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1, linkname: '', devmajor: 0, devminor: 0, xattrs: [] };

test('tar header: names of exactly 100 bytes stay in ustar and longer ones use PAX when encoded', async (t) => {
  const exact = 'a'.repeat(100);
  t.is(encodeHeader({ ...BASE, name: exact }).length, BLOCK);
  const long = `${'é'.repeat(60)}/${'b'.repeat(50)}`;
  const link = `/${'l'.repeat(150)}`;
  const tar = buildTar([{ name: exact, content: '1' }, { name: long, content: '2' }, { name: 'sym', type: 'symlink', linkname: link }]);
  const entries = await readAll(tar);
  t.deepEqual(entries.map((e) => e.header.name), [exact, long, 'sym']);
  t.is(entries[2]?.header.linkname, link);
  t.deepEqual(entries.map((e) => e.body.toString()), ['1', '2', '']);
});

test('tar header: big ids and binary xattrs survive a round trip through PAX records', async (t) => {
  const value = Buffer.from([0, 10, 13, 61, 255, 0xc3]);
  const tar = buildTar([{ name: 'f', uid: 3_000_000, gid: 4_000_000, xattrs: [{ name: 'security.capability', value }, { name: 'user.é', value: Buffer.from('v=\n') }] }]);
  const [e] = await readAll(tar);
  t.is(e?.header.uid, 3_000_000);
  t.is(e?.header.gid, 4_000_000);
  t.deepEqual(e?.header.xattrs, [{ name: 'security.capability', value }, { name: 'user.é', value: Buffer.from('v=\n') }]);
});

test('tar header: GNU tar reads our PAX records when names, ids and xattrs need them', async (t) => {
  const dir = await tempDir(t);
  const tar = buildTar([{ name: `${'d'.repeat(120)}/f`, content: 'hello', uid: 3_000_000, xattrs: [{ name: 'user.k', value: Buffer.from('v') }] }]);
  writeFileSync(join(dir, 'a.tar'), tar);
  const listing = execFileSync('tar', ['--numeric-owner', '-tvf', join(dir, 'a.tar')]).toString();
  t.regex(listing, new RegExp(`^-rw-r--r-- 3000000/0 +5 .* ${'d'.repeat(120)}/f\\n$`));
  mkdirSync(join(dir, 'x'));
  execFileSync('tar', ['-xf', join(dir, 'a.tar'), '-C', join(dir, 'x')]);
  t.is(readFileSync(join(dir, 'x', 'd'.repeat(120), 'f'), 'utf8'), 'hello');
});

test('readTar: base-256 sizes and GNU long links are decoded when GNU tar writes them', async (t) => {
  const block = Buffer.from(encodeHeader({ ...BASE, name: 'b256', size: 3 }));
  block.fill(0, 124, 136);
  block[124] = 0x80;
  block[135] = 3;
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i] as number;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  const body = Buffer.alloc(BLOCK);
  body.write('abc');
  const entries = await readAll(Buffer.concat([block, body, Buffer.alloc(2 * BLOCK)]));
  t.is(entries[0]?.header.size, 3);
  t.is(entries[0]?.body.toString(), 'abc');
});

test('readTar: an archive without end blocks ends cleanly when it stops at an entry boundary', async (t) => {
  const tar = buildTar([{ name: 'a', content: 'abc' }], { end: false });
  t.deepEqual((await readAll(tar)).map((e) => e.header.name), ['a']);
});

test('readTar: an empty input fails with LAYER_TRUNCATED when there is not even one header', async (t) => {
  await t.throwsAsync(readAll(Buffer.alloc(0)), { code: 'LAYER_TRUNCATED' } as never);
});

test('readTar: unread bodies are skipped when the consumer moves on', async (t) => {
  const tar = buildTar([{ name: 'a', content: Buffer.alloc(5000, 1) }, { name: 'b', content: 'b' }]);
  const names: string[] = [];
  for await (const e of readTar(streamOf(tar, 1000))) names.push(e.header.name);
  t.deepEqual(names, ['a', 'b']);
});

test('readTar: trailing bytes after the end marker are drained when the input has them', async (t) => {
  let read = 0;
  const tar = Buffer.concat([buildTar([{ name: 'a', content: 'a' }]), Buffer.alloc(10240)]);
  const source = (async function* () {
    for (let i = 0; i < tar.length; i += 512) {
      read += 512;
      yield tar.subarray(i, i + 512);
    }
  })();
  for await (const _ of readTar(source)) { /* entries */ }
  t.is(read, tar.length);
});

test('readTar: a PAX size that is not a number fails with LAYER_BAD_HEADER', async (t) => {
  const rec = '17 size=12x3456\n';
  const meta = buildTar([{ name: 'PaxHeaders/x', content: rec }], { end: false });
  meta[156] = 0x78;
  meta.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += meta[i] as number;
  meta.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  await t.throwsAsync(readAll(Buffer.concat([meta, buildTar([{ name: 'x', content: 'x' }])])), { code: 'LAYER_BAD_HEADER' } as never);
});

test('tar header: sizes of 8 GiB and more are written as PAX size records when a file is that large', async (t) => {
  const size = 9 * 1024 * 1024 * 1024 + 5;
  const header = encodeHeader({ ...BASE, name: 'huge', size });
  t.regex(header.toString('latin1'), /\d+ size=9663676421\n/);
  for await (const e of readTar(streamOf(header))) {
    t.is(e.header.size, size);
    break;
  }
});
