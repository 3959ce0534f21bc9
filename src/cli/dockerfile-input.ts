import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { TsbuildError } from '../core/index.js';

/** Dockerfiles larger than this are refused (a real one is a few KiB). */
export const MAX_DOCKERFILE_BYTES = 4 * 1024 * 1024;

/** A Dockerfile's display name and text. */
export interface DockerfileInput {
  readonly name: string;
  readonly path: string | undefined;
  readonly text: string;
}

/**
 * Reads the Dockerfile named by `-f` (default `<context>/Dockerfile`; `-` = stdin).
 * Fails with DF_NOT_FOUND, DF_UNREADABLE, DF_TOO_LARGE or DF_BINARY.
 */
export async function readDockerfile(file: string | undefined, contextDir: string, cwd: string, stdin: Readable): Promise<DockerfileInput> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of stdin) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
      size += buf.length;
      if (size > MAX_DOCKERFILE_BYTES) throw tooLarge('Dockerfile (stdin)', size);
      chunks.push(buf);
    }
    return { name: 'Dockerfile', path: undefined, text: decode(Buffer.concat(chunks), 'Dockerfile (stdin)') };
  }
  const path = file === undefined ? resolve(cwd, contextDir, 'Dockerfile') : resolve(cwd, file);
  const name = file ?? 'Dockerfile';
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new TsbuildError('DF_NOT_FOUND', `cannot find Dockerfile ${path}`, {
        hint: file === undefined ? 'pass its path with -f, or run in the directory that holds it' : undefined,
        cause: err,
      });
    }
    throw new TsbuildError('DF_UNREADABLE', `cannot read Dockerfile ${path}: ${code ?? String(err)}`, { cause: err });
  }
  if (info.isDirectory()) throw new TsbuildError('DF_UNREADABLE', `${path} is a directory, not a Dockerfile`);
  if (info.size > MAX_DOCKERFILE_BYTES) throw tooLarge(path, info.size);
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new TsbuildError('DF_UNREADABLE', `cannot read Dockerfile ${path}: ${code ?? String(err)}`, { cause: err });
  }
  return { name, path, text: decode(bytes, path) };
}

function tooLarge(path: string, size: number): TsbuildError {
  return new TsbuildError('DF_TOO_LARGE', `${path} is ${(size / 1048576).toFixed(1)} MiB; a Dockerfile may be at most ${MAX_DOCKERFILE_BYTES / 1048576} MiB`);
}

function decode(bytes: Buffer, path: string): string {
  if (bytes.includes(0)) {
    throw new TsbuildError('DF_BINARY', `${path} is a binary file, not a Dockerfile`, { hint: 'check the -f argument' });
  }
  const text = bytes.toString('utf8');
  if (text.includes('\uFFFD') && !bytes.includes(Buffer.from('\uFFFD'))) {
    throw new TsbuildError('DF_BINARY', `${path} is not valid UTF-8 text`);
  }
  return text.startsWith('\uFEFF') ? text.slice(1) : text;
}
