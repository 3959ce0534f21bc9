import test from 'ava';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyLayer } from '../../src/layer/index.js';
import { BLOCK } from '../../src/layer/tar-header.js';
import { tempDir } from '../helpers/tmp.js';
import { buildTar, describeTree, streamOf, type RawEntry } from './helpers.js';

/** Layout of one case: `<tmp>/root` is the destination; `<tmp>/sentinel` must never change. */
interface Paths {
  readonly tmp: string;
  readonly root: string;
  readonly sentinel: string;
}

interface HostileCase {
  readonly title: string;
  /** Layers applied in order; every layer but the last must succeed. Functions may use the paths. */
  readonly layers: ReadonlyArray<(p: Paths) => Buffer>;
  /** Expected LAYER_* code of the last layer; undefined when it must succeed (safely). */
  readonly code?: string;
  readonly check?: (p: Paths, t: import('ava').ExecutionContext) => void;
  readonly limits?: { maxEntries?: number; maxPathLength?: number };
}

const tar = (entries: RawEntry[]) => (): Buffer => buildTar(entries);

/** More small files than the applier writes inline before its helper thread takes over. */
const MANY = 300;
const manyFiles = (dir: string): RawEntry[] => Array.from({ length: MANY }, (_, i) => ({ name: `${dir}/f${i}`, content: `file ${i}` }));

function outsideSnapshot(p: Paths): string {
  const passwd = lstatSync('/etc/passwd');
  const tree = describeTree(p.tmp);
  const outside = Object.entries(tree).filter(([k]) => k !== 'root' && !k.startsWith('root/'));
  return JSON.stringify({ outside, passwd: [passwd.nlink, passwd.size, passwd.mtimeMs, passwd.ino] });
}

const CASES: HostileCase[] = [
  { title: '"../" entry', layers: [tar([{ name: '../sentinel/evil', content: 'x' }])], code: 'LAYER_UNSAFE_PATH' },
  { title: 'a nested ".." that climbs above the root', layers: [tar([{ name: 'a/b/../../../sentinel/evil', content: 'x' }])], code: 'LAYER_UNSAFE_PATH' },
  { title: 'an absolute path', layers: [(p) => buildTar([{ name: `${p.sentinel}/evil`, content: 'x' }])], code: 'LAYER_UNSAFE_PATH' },
  {
    title: 'a symlink to / followed by a file written through it',
    layers: [(p) => buildTar([{ name: 'l', type: 'symlink', linkname: '/' }, { name: `l${p.sentinel}/evil`, content: 'x' }])],
    check: (p, t) => {
      t.is(readFileSync(join(p.root, p.sentinel, 'evil'), 'utf8'), 'x');
      t.is(readlinkSync(join(p.root, 'l')), '/');
    },
  },
  {
    title: 'a chain of symlinks to ".."',
    layers: [tar([{ name: 'a', type: 'symlink', linkname: '..' }, { name: 'b', type: 'symlink', linkname: 'a/../a/..' }, { name: 'a/a/b/a/sentinel/evil', content: 'x' }])],
    check: (p, t) => t.is(readFileSync(join(p.root, 'sentinel/evil'), 'utf8'), 'x'),
  },
  {
    title: 'a relative symlink out of the root used as a parent directory',
    layers: [tar([{ name: 'd/', type: 'directory' }, { name: 'd/up', type: 'symlink', linkname: '../../sentinel' }, { name: 'd/up/evil', content: 'x' }])],
    check: (p, t) => t.is(readFileSync(join(p.root, 'sentinel/evil'), 'utf8'), 'x'),
  },
  {
    title: 'a symlink already in the tree pointing at a host path',
    layers: [(p) => buildTar([{ name: 'host', type: 'symlink', linkname: p.sentinel }]), tar([{ name: 'host/evil', content: 'x' }, { name: 'host/keep', content: 'overwritten' }])],
    check: (p, t) => t.is(readFileSync(join(p.root, p.sentinel, 'keep'), 'utf8'), 'overwritten'),
  },
  {
    title: 'a file entry whose name is an existing symlink to a host file',
    layers: [(p) => buildTar([{ name: 'f', type: 'symlink', linkname: join(p.sentinel, 'keep') }]), tar([{ name: 'f', content: 'replaced' }])],
    check: (p, t) => {
      t.true(lstatSync(join(p.root, 'f')).isFile());
      t.is(readFileSync(join(p.root, 'f'), 'utf8'), 'replaced');
    },
  },
  { title: 'a hardlink to /etc/passwd', layers: [tar([{ name: 'pw', type: 'link', linkname: '/etc/passwd' }])], code: 'LAYER_BAD_LINK' },
  { title: 'a hardlink climbing out with ".."', layers: [tar([{ name: 'pw', type: 'link', linkname: '../sentinel/keep' }])], code: 'LAYER_BAD_LINK' },
  {
    title: 'a hardlink through a symlink to a host directory',
    layers: [(p) => buildTar([{ name: 'l', type: 'symlink', linkname: p.sentinel }, { name: 'h', type: 'link', linkname: 'l/keep' }])],
    code: 'LAYER_BAD_LINK',
  },
  {
    title: 'a hardlink through a relative symlink to /etc',
    layers: [tar([{ name: 'l', type: 'symlink', linkname: '../../../../../etc' }, { name: 'h', type: 'link', linkname: 'l/passwd' }])],
    code: 'LAYER_BAD_LINK',
  },
  { title: 'a hardlink to a directory', layers: [tar([{ name: 'd/', type: 'directory' }, { name: 'h', type: 'link', linkname: 'd' }])], code: 'LAYER_BAD_LINK' },
  {
    title: 'a symlink chain loop',
    layers: [tar([{ name: 'a', type: 'symlink', linkname: 'b' }, { name: 'b', type: 'symlink', linkname: 'a' }, { name: 'a/x', content: 'x' }])],
    code: 'LAYER_SYMLINK_LOOP',
  },
  { title: 'a whiteout of ".."', layers: [tar([{ name: '.wh...' }])], code: 'LAYER_UNSAFE_PATH' },
  { title: 'a whiteout of "." in a subdirectory', layers: [tar([{ name: 'd/', type: 'directory' }, { name: 'd/.wh..' }])], code: 'LAYER_UNSAFE_PATH' },
  { title: 'a whiteout of a path outside', layers: [tar([{ name: '../.wh.sentinel' }])], code: 'LAYER_UNSAFE_PATH' },
  {
    title: 'a whiteout through a symlink to a host directory',
    layers: [(p) => buildTar([{ name: 'l', type: 'symlink', linkname: p.sentinel }, { name: 'l/.wh.keep' }, { name: 'up', type: 'symlink', linkname: '..' }, { name: 'up/.wh.sentinel' }])],
    check: (p, t) => t.true(existsSync(join(p.sentinel, 'keep'))),
  },
  {
    title: 'an opaque marker through a symlink to a host directory',
    layers: [(p) => buildTar([{ name: 'l', type: 'symlink', linkname: p.sentinel }, { name: 'l/.wh..wh..opq' }])],
    check: (p, t) => t.true(existsSync(join(p.sentinel, 'keep'))),
  },
  {
    title: 'a file replacing a directory',
    layers: [tar([{ name: 'd/', type: 'directory' }, { name: 'd/f', content: 'lower' }, { name: 'd/sub/', type: 'directory' }]), tar([{ name: 'd', content: 'now a file' }])],
    check: (p, t) => t.is(readFileSync(join(p.root, 'd'), 'utf8'), 'now a file'),
  },
  {
    title: 'a directory replacing a file and a symlink',
    layers: [(p) => buildTar([{ name: 'f', content: 'lower' }, { name: 's', type: 'symlink', linkname: p.sentinel }]), tar([{ name: 'f/', type: 'directory' }, { name: 'f/x', content: 'x' }, { name: 's/', type: 'directory' }, { name: 's/y', content: 'y' }])],
    check: (p, t) => {
      t.true(lstatSync(join(p.root, 'f')).isDirectory());
      t.true(lstatSync(join(p.root, 's')).isDirectory());
      t.is(readFileSync(join(p.root, 's/y'), 'utf8'), 'y');
    },
  },
  {
    title: 'a huge size in a header',
    layers: [() => Buffer.concat([buildTar([{ name: 'big', content: 'only a little', size: 0o77777777777 }], { end: false }), Buffer.alloc(BLOCK * 2)])],
    code: 'LAYER_TRUNCATED',
  },
  {
    title: 'an archive truncated inside file content',
    layers: [() => buildTar([{ name: 'a', content: 'a' }, { name: 'b', content: Buffer.alloc(5000, 1) }]).subarray(0, 3 * BLOCK + 100)],
    code: 'LAYER_TRUNCATED',
  },
  { title: 'an archive truncated inside a header', layers: [() => buildTar([{ name: 'a', content: 'a' }, { name: 'b', content: 'b' }]).subarray(0, 2 * BLOCK + 300)], code: 'LAYER_TRUNCATED' },
  {
    title: 'too many entries',
    layers: [tar(Array.from({ length: 11 }, (_, i) => ({ name: `f${i}`, content: '' })))],
    limits: { maxEntries: 10 },
    code: 'LAYER_TOO_MANY_ENTRIES',
  },
  { title: 'a path longer than the limit', layers: [tar([{ name: `${'d/'.repeat(100)}f`, content: '' }])], limits: { maxPathLength: 150 }, code: 'LAYER_PATH_TOO_LONG' },
  { title: 'a path component longer than NAME_MAX', layers: [tar([{ name: `d/${'x'.repeat(300)}`, content: '' }])], code: 'LAYER_PATH_TOO_LONG' },
  {
    title: 'a corrupted header checksum',
    layers: [() => {
      const b = buildTar([{ name: 'a', content: 'a' }]);
      b[10] = 0x41;
      return b;
    }],
    code: 'LAYER_BAD_HEADER',
  },
  {
    title: 'a GNU long name that climbs out',
    layers: [() => {
      const longName = Buffer.from('../sentinel/evil\0');
      const meta = buildTar([{ name: '././@LongLink', content: longName }], { end: false });
      meta[156] = 0x4c; // 'L'
      fixChecksum(meta);
      return Buffer.concat([meta, buildTar([{ name: 'short', content: 'x' }])]);
    }],
    code: 'LAYER_UNSAFE_PATH',
  },
  {
    title: 'an unsupported entry type',
    layers: [() => {
      const b = buildTar([{ name: 'sparse', content: 'x' }]);
      b[156] = 0x53; // 'S' (GNU sparse)
      fixChecksum(b);
      return b;
    }],
    code: 'LAYER_UNSUPPORTED_ENTRY',
  },
  // The cases below first write MANY small files, so that later entries meet files still in flight on
  // the applier's helper thread (it starts after a few hundred small files).
  {
    title: 'many small files, then their directory replaced by a symlink to a host directory and a file written through it',
    layers: [(p) => buildTar([...manyFiles('a'), { name: 'a', type: 'symlink', linkname: p.sentinel }, { name: 'a/evil', content: 'x' }])],
    check: (p, t) => {
      t.true(lstatSync(join(p.root, 'a')).isSymbolicLink());
      t.is(readFileSync(join(p.root, p.sentinel, 'evil'), 'utf8'), 'x');
    },
  },
  {
    title: 'many small files, then a file of the same name, a hardlink to one and a whiteout of another',
    layers: [tar([...manyFiles('a'), { name: 'a/f299', content: 'second' }, { name: 'h', type: 'link', linkname: 'a/f298' }, { name: 'a/.wh.f297' }])],
    check: (p, t) => {
      t.is(readFileSync(join(p.root, 'a/f299'), 'utf8'), 'second');
      t.is(lstatSync(join(p.root, 'h')).nlink, 2);
      t.is(readFileSync(join(p.root, 'h'), 'utf8'), 'file 298');
      t.false(existsSync(join(p.root, 'a/f297')));
      t.is(readdirSync(join(p.root, 'a')).length, MANY - 1);
    },
  },
  { title: 'many small files, then a file below one of them', layers: [tar([...manyFiles('a'), { name: 'a/f299/x', content: 'x' }])], code: 'LAYER_NOT_A_DIRECTORY' },
  { title: 'many small files, one with a name longer than NAME_MAX', layers: [tar([...manyFiles('a'), { name: `a/${'x'.repeat(300)}`, content: 'x' }, ...manyFiles('b')])], code: 'LAYER_PATH_TOO_LONG' },
  { title: 'many small files, then a "../" entry', layers: [tar([...manyFiles('a'), { name: '../sentinel/evil', content: 'x' }])], code: 'LAYER_UNSAFE_PATH' },
  {
    title: 'binary garbage instead of a tar',
    layers: [() => Buffer.from('this is not a tar archive at all'.repeat(40))],
    code: 'LAYER_BAD_HEADER',
  },
];

function fixChecksum(block: Buffer): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i] as number;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
}

for (const c of CASES) {
  const title = c.code === undefined ? `applyLayer: stays inside the root when the tar has ${c.title}` : `applyLayer: fails with ${c.code} when the tar has ${c.title}`;
  test(title, async (t) => {
    const tmp = await tempDir(t);
    const p: Paths = { tmp, root: join(tmp, 'root'), sentinel: join(tmp, 'sentinel') };
    mkdirSync(p.root);
    mkdirSync(join(p.sentinel, 'dir'), { recursive: true });
    writeFileSync(join(p.sentinel, 'keep'), 'keep');
    symlinkSync('/etc', join(p.sentinel, 'etc-link'));
    const before = outsideSnapshot(p);
    const layers = c.layers.map((make) => make(p));
    for (const [i, layer] of layers.entries()) {
      const run = applyLayer(streamOf(layer), p.root, { limits: c.limits ?? {} });
      if (i < layers.length - 1 || c.code === undefined) await run;
      else await t.throwsAsync(run, { code: c.code } as never);
    }
    c.check?.(p, t);
    t.is(outsideSnapshot(p), before, 'nothing outside the destination changed');
    t.is(readFileSync(join(p.sentinel, 'keep'), 'utf8'), 'keep');
  });
}

test('hostile fixtures: at least 12 cases are covered', (t) => {
  t.true(CASES.length >= 12);
  t.true(CASES.filter((c) => c.code !== undefined).length >= 12);
});
