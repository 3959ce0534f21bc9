import test from 'ava';
import { detachFilter } from '../../src/runner/attach-client.js';
import { encodeFrame, FrameDecoder, parseDetachKeys } from '../../src/runner/attach-protocol.js';

test('parseDetachKeys: docker\'s format, ctrl keys and plain characters, bad keys rejected with a code', (t) => {
  t.deepEqual([...parseDetachKeys('ctrl-p,ctrl-q')], [16, 17]);
  t.deepEqual([...parseDetachKeys('a,ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_,ctrl-Z')], [97, 0, 27, 28, 29, 30, 31, 26]);
  for (const bad of ['ctrl-1', 'ctrl-pq', '', 'a,,b', 'alt-x']) {
    const err = t.throws(() => parseDetachKeys(bad));
    t.is((err as { code?: string }).code, 'CLI_BAD_VALUE', bad);
  }
});

test('detachFilter: holds bytes that may start the sequence, sends them when it breaks, detaches across chunks', (t) => {
  const keys = parseDetachKeys('ctrl-p,ctrl-q');
  const f = detachFilter(keys);
  t.deepEqual(f(Buffer.from('ab')), { send: Buffer.from('ab'), detach: false });
  t.deepEqual(f(Buffer.from('x\x10')), { send: Buffer.from('x'), detach: false }, 'ctrl-p is held');
  t.deepEqual(f(Buffer.from('y')), { send: Buffer.from('\x10y'), detach: false }, 'the held ctrl-p goes out when the sequence breaks');
  t.deepEqual(f(Buffer.from('\x10\x10')), { send: Buffer.from('\x10'), detach: false }, 'a repeated first key restarts the match');
  t.deepEqual(f(Buffer.from('\x11rest')), { send: Buffer.alloc(0), detach: true });
  t.deepEqual(detachFilter(undefined)(Buffer.from('\x10\x11')), { send: Buffer.from('\x10\x11'), detach: false });
});

test('FrameDecoder: frames cut anywhere come out whole and in order', (t) => {
  const bytes = Buffer.concat([encodeFrame(1, 'hello'), encodeFrame(2, Buffer.alloc(0)), encodeFrame(3, '42')]);
  const d = new FrameDecoder();
  const out: string[] = [];
  for (const b of bytes) for (const f of d.push(Buffer.from([b]))) out.push(`${f.type}:${f.payload.toString()}`);
  t.deepEqual(out, ['1:hello', '2:', '3:42']);
});
