import { execFile } from 'node:child_process';
import { copyFile, chmod, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createReadStream } from 'node:fs';
import { formatReference, MediaType, parseReference, type Descriptor, type Digest } from '../../src/core/index.js';
import { addLayer, createEmptyConfig, createManifest, serializeDocument } from '../../src/image/index.js';
import { openStore } from '../../src/store/index.js';

const run = promisify(execFile);

/** Where the `busybox-static` package installs its binary. */
export const BUSYBOX = '/bin/busybox';

/** Why busybox-based tests cannot run here, or undefined when they can. */
export async function busyboxMissing(): Promise<string | undefined> {
  try {
    await run(BUSYBOX, ['true']);
    return undefined;
  } catch {
    return 'busybox-static is not installed (apt-get install busybox-static)';
  }
}

/** The fixed creation time of the test image (so its digests are stable on one machine). */
export const BASE_CREATED = '2024-01-01T00:00:00Z';

/**
 * Makes a busybox root filesystem in `dir` the documented way: `/bin/busybox` copied from the
 * `busybox-static` package and `busybox --install -s /bin` style symlinks (`/bin/sh` -> busybox),
 * plus /etc/passwd, /etc/group, /tmp (1777), /root, /dev, /proc, /sys.
 */
export async function makeBusyboxRootfs(dir: string): Promise<void> {
  for (const d of ['bin', 'etc', 'root', 'dev', 'proc', 'sys', 'tmp', 'usr/bin', 'var']) await mkdir(join(dir, d), { recursive: true });
  await chmod(join(dir, 'tmp'), 0o1777);
  await copyFile(BUSYBOX, join(dir, 'bin', 'busybox'));
  await chmod(join(dir, 'bin', 'busybox'), 0o755);
  const { stdout } = await run(BUSYBOX, ['--list']);
  for (const applet of stdout.split('\n').map((s) => s.trim()).filter((s) => s !== '' && s !== 'busybox')) {
    await symlink('/bin/busybox', join(dir, 'bin', applet));
  }
  await writeFile(join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  await writeFile(join(dir, 'etc', 'group'), 'root:x:0:\nnobody:x:65534:\n');
}

/** Writes a deterministic uncompressed tar of `dir` to `tarPath` (GNU tar: sorted, numeric owners, mtime 0). */
export async function tarDirectory(dir: string, tarPath: string): Promise<void> {
  await run('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '--format=posix',
    '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime', '-C', dir, '-cf', tarPath, '.']);
}

/** The busybox image written into a store. */
export interface BaseImage {
  /** Full reference, e.g. `docker.io/library/busybox:latest`. */
  readonly name: string;
  readonly manifest: Descriptor;
  readonly configDigest: Digest;
  readonly diffId: Digest;
  /** The uncompressed layer tar (also the layer blob). */
  readonly layerTar: string;
  readonly rootfs: string;
}

/**
 * Builds the busybox base image (FROM scratch + static busybox + symlinks, one uncompressed
 * layer, `CMD ["sh"]`) in `workDir` and stores it under `name` in the store at `storeRoot`.
 * Everything is created inside `workDir` and `storeRoot` (no cache elsewhere).
 */
export async function makeBusyboxImage(workDir: string, storeRoot: string, name = 'busybox:latest'): Promise<BaseImage> {
  const rootfs = join(workDir, 'busybox-rootfs');
  await makeBusyboxRootfs(rootfs);
  const layerTar = join(workDir, 'busybox-layer.tar');
  await tarDirectory(rootfs, layerTar);
  const store = await openStore(storeRoot);
  const layer = await store.blobs.put(createReadStream(layerTar));
  let config = createEmptyConfig({ os: 'linux', architecture: 'amd64' }, BASE_CREATED);
  config = addLayer(config, layer.digest, { created: BASE_CREATED, created_by: 'COPY busybox / && busybox --install -s /bin' });
  config = {
    ...config,
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] },
    history: [...(config.history ?? []), { created: BASE_CREATED, created_by: 'CMD ["sh"]', empty_layer: true }],
  };
  const c = await store.blobs.putBytes(serializeDocument(config));
  const manifest = createManifest({ mediaType: MediaType.ociConfig, digest: c.digest, size: c.size }, [{ mediaType: MediaType.ociLayer, digest: layer.digest, size: layer.size }]);
  const m = await store.blobs.putBytes(serializeDocument(manifest));
  const descriptor: Descriptor = { mediaType: MediaType.ociManifest, digest: m.digest, size: m.size };
  const full = formatReference(parseReference(name));
  await store.refs.set(full, descriptor);
  return { name: full, manifest: descriptor, configDigest: c.digest, diffId: layer.digest, layerTar, rootfs };
}
