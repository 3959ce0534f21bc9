import test from 'ava';
import { Readable } from 'node:stream';
import { BLOCK, encodeHeader } from '../../src/layer/tar-header.js';
import { TarReader } from '../../src/layer/tar-reader.js';
import { buildTar, streamOf } from './helpers.js';

const FILES = [
  { name: 'a/', type: 'directory' as const },
  { name: 'a/one', content: 'first file' },
  { name: 'a/two', content: Buffer.alloc(1500, 7) },
  { name: 'a/link', type: 'symlink' as const, linkname: 'one' },
  { name: 'a/empty', content: '' },
];

async function bodyOf(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(c);
  return Buffer.concat(parts);
}

test('TarReader: nextBuffered returns every entry of a tar held in one chunk, with its whole body, without waiting', async (t) => {
  const reader = new TarReader(Readable.from([buildTar(FILES)]));
  // Nothing is buffered before the first read from the input.
  t.is(reader.nextBuffered(1 << 20), undefined);
  const first = await reader.next();
  t.is(first?.header.name, 'a/');
  const seen: [string, string][] = [];
  for (let e = reader.nextBuffered(1 << 20); e !== undefined; e = reader.nextBuffered(1 << 20)) seen.push([e.header.name, e.data.toString('latin1')]);
  t.deepEqual(seen, [['a/one', 'first file'], ['a/two', Buffer.alloc(1500, 7).toString('latin1')], ['a/link', ''], ['a/empty', '']]);
  t.is(await reader.next(), undefined);
  await reader.close();
});

test('TarReader: nextBuffered consumes nothing when an entry is not all in memory yet, and next then returns that entry', async (t) => {
  // 700-byte chunks: no body of 1500 bytes is ever whole in memory at once.
  const reader = new TarReader(streamOf(buildTar(FILES), 700));
  const names: string[] = [];
  const bodies = new Map<string, string>();
  for (;;) {
    const b = reader.nextBuffered(1 << 20);
    if (b !== undefined) {
      names.push(b.header.name);
      bodies.set(b.header.name, b.data.toString('latin1'));
      continue;
    }
    const e = await reader.next();
    if (e === undefined) break;
    names.push(e.header.name);
    bodies.set(e.header.name, (await bodyOf(e.body)).toString('latin1'));
  }
  t.deepEqual(names, FILES.map((f) => f.name));
  t.is(bodies.get('a/two'), Buffer.alloc(1500, 7).toString('latin1'));
  t.is(bodies.get('a/one'), 'first file');
  await reader.close();
});

test('TarReader: nextBuffered leaves an entry larger than its limit, or one with a PAX header, to next', async (t) => {
  const long = `dir/${'n'.repeat(150)}`; // a last component over 100 bytes: the encoder writes a PAX path record
  const reader = new TarReader(Readable.from([buildTar([{ name: 'big', content: Buffer.alloc(3000, 1) }, { name: 'small', content: 'x' }])]));
  const first = await reader.next();
  t.is(first?.header.name, 'big');
  // 'big' was returned by next: its body is unread, so nothing may be taken past it.
  t.is(reader.nextBuffered(1 << 20), undefined);
  t.is((await bodyOf(first!.body)).length, 3000);
  t.is(reader.nextBuffered(0), undefined, 'a 1-byte body is over a limit of 0');
  const small = await reader.next();
  t.is(small?.header.name, 'small');
  await reader.close();

  const h = encodeHeader({ name: long, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 2, mtime: 1, linkname: '', devmajor: 0, devminor: 0, xattrs: [] });
  t.true(h.length > BLOCK, 'the encoder wrote a PAX header for the long name');
  const tar = Buffer.concat([buildTar([{ name: 'before', content: 'b' }], { end: false }), h, Buffer.from('hi'), Buffer.alloc(BLOCK - 2), Buffer.alloc(2 * BLOCK)]);
  const pax = new TarReader(Readable.from([tar]));
  t.is((await pax.next())?.header.name, 'before');
  t.is(pax.nextBuffered(1 << 20), undefined, 'a PAX header is read by next');
  const e = await pax.next();
  t.is(e?.header.name, long);
  t.is((await bodyOf(e!.body)).toString(), 'hi');
  t.is(await pax.next(), undefined);
  await pax.close();
});

test('TarReader: a body iterator kept past its entry reads nothing of the next entry', async (t) => {
  const reader = new TarReader(streamOf(buildTar([{ name: 'one', content: 'A'.repeat(2000) }, { name: 'two', content: 'B'.repeat(2000) }]), 512));
  const one = await reader.next();
  const two = await reader.next(); // skips one's body
  t.is(two?.header.name, 'two');
  t.is((await bodyOf(one!.body)).length, 0, 'the skipped body yields nothing');
  t.is((await bodyOf(two!.body)).toString(), 'B'.repeat(2000));
  t.is(await reader.next(), undefined);
  await reader.close();
});

test('TarReader: nextBuffered fails with LAYER_BAD_HEADER on a corrupt header, as next does', async (t) => {
  const tar = buildTar([{ name: 'ok', content: 'x' }, { name: 'bad', content: 'y' }]);
  tar[1024 + 148] = 0x37; // damage the second header's checksum field
  const reader = new TarReader(Readable.from([tar]));
  const ok = await reader.next();
  t.is(ok?.header.name, 'ok');
  await bodyOf(ok!.body);
  t.throws(() => reader.nextBuffered(1 << 20), { code: 'LAYER_BAD_HEADER' } as never);
  await reader.close();
});
