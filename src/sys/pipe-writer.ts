import { closeSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { Writable } from 'node:stream';

/**
 * Our end of a pipe a child reads (non-blocking), e.g. a launcher's spec or go pipe. Writes go straight to the fd
 * while the pipe takes them (the spec and the release bytes fit its 64 KiB): no libuv pipe handle, whose first
 * write, shutdown and close cost ~0.5 ms of CPU in a short-lived CLI (CPU profiles) and are event-loop round trips
 * (~135 us of CPU per pipe, two per RUN step). What the pipe does not take at once (a huge spec) goes through a
 * Socket made then, in order.
 */
export class PipeWriter extends Writable {
  readonly #fd: number;
  #socket: Socket | undefined;
  #closed = false;

  constructor(fd: number) {
    super();
    this.#fd = fd;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    let rest = chunk;
    if (this.#socket === undefined) {
      try {
        rest = chunk.subarray(writeSync(this.#fd, chunk));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') {
          done(err as Error);
          return;
        }
      }
      if (rest.length === 0) {
        done();
        return;
      }
      this.#socket = new Socket({ fd: this.#fd, readable: false, writable: true });
      this.#socket.on('error', (err) => this.destroy(err));
    }
    this.#socket.write(rest, (err) => done(err ?? null));
  }

  override _final(done: (err?: Error | null) => void): void {
    if (this.#socket !== undefined) {
      this.#socket.end(() => done());
      return;
    }
    this.#close();
    done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    if (this.#socket !== undefined) this.#socket.destroy();
    else this.#close();
    done(err);
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      closeSync(this.#fd);
    } catch {
      // already closed
    }
  }
}
