import {
  familiarReference, familiarRepository, parseReference, TsbuildError, type Descriptor, type Digest, type ImageConfig, type ImageIndex, type ImageManifest,
} from '../../core/index.js';
import { parseImageConfig, parseImageDocument, platformFromNode, selectPlatform } from '../../image/index.js';
import type { ResolvedImage, Store } from '../../store/index.js';

/** An image with its documents read, for the listing and inspection commands. */
export interface ImageDetails {
  readonly image: ResolvedImage;
  /** The manifest (for an index: the host platform's when the store holds it, as docker shows it; else undefined). */
  readonly manifest: ImageManifest | undefined;
  readonly config: ImageConfig | undefined;
  /** Sum of the config and layer blob sizes as stored. */
  readonly size: number;
}

/** Reads the manifest and config of a resolved image. Throws `STORE_*` / `IMAGE_*` codes. */
export async function readImageDetails(store: Store, image: ResolvedImage): Promise<ImageDetails> {
  let doc = parseImageDocument((await store.blobs.readJson(image.descriptor.digest)).value, image.descriptor.mediaType, `manifest ${image.descriptor.digest}`);
  if (doc.kind === 'index') {
    const host = hostManifestOf(doc.index);
    const child = host === undefined || (await store.blobs.stat(host.digest)) === undefined ? undefined
      : parseImageDocument((await store.blobs.readJson(host.digest)).value, host.mediaType, `manifest ${host.digest}`);
    if (child?.kind !== 'manifest' || (await store.blobs.stat(child.manifest.config.digest)) === undefined) {
      return { image, manifest: undefined, config: undefined, size: doc.index.manifests.reduce((n, m) => n + m.size, 0) };
    }
    doc = child;
  }
  const config = parseImageConfig((await store.blobs.readJson(doc.manifest.config.digest)).value, `config ${doc.manifest.config.digest}`);
  const size = doc.manifest.config.size + doc.manifest.layers.reduce((n, l: Descriptor) => n + l.size, 0);
  return { image, manifest: doc.manifest, config, size };
}

/** The index entry for the host's platform, if it has one. */
function hostManifestOf(index: ImageIndex): Descriptor | undefined {
  try {
    return selectPlatform(index, platformFromNode(process.platform, process.arch));
  } catch {
    return undefined;
  }
}

/** The ID docker shows: the config digest of a manifest, the digest of an index. */
export function imageId(image: ResolvedImage): Digest {
  return image.configDigest ?? image.descriptor.digest;
}

/** `sha256:` stripped and cut to 12 hex digits unless `noTrunc`. */
export function shortId(d: Digest, noTrunc = false): string {
  return noTrunc ? d : d.slice(7, 19);
}

/** Docker's human size (SI units, 3 significant digits): `4.26MB`, `512B`. */
export function humanSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number(v.toPrecision(3))}${units[i]}`;
}

/** Docker's relative time: `About a minute ago`, `3 hours ago`, `2 weeks ago`. */
export function timeAgo(iso: string | undefined, now: number): string {
  if (iso === undefined) return 'N/A';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return 'N/A';
  const s = Math.max(0, (now - t) / 1000);
  const fmt = (n: number, unit: string): string => `${Math.floor(n)} ${unit}${Math.floor(n) === 1 ? '' : 's'} ago`;
  if (s < 1) return 'Less than a second ago';
  if (s < 60) return fmt(s, 'second');
  if (s < 120) return 'About a minute ago';
  if (s < 3600) return fmt(s / 60, 'minute');
  if (s < 7200) return 'About an hour ago';
  if (s < 86400 * 2) return fmt(s / 3600, 'hour');
  if (s < 86400 * 14) return fmt(s / 86400, 'day');
  if (s < 86400 * 60) return fmt(s / 86400 / 7, 'week');
  if (s < 86400 * 365 * 2) return fmt(s / 86400 / 30, 'month');
  return fmt(s / 86400 / 365, 'year');
}

/** Repository and tag columns of a full name (`<none>` for untagged). */
export function splitName(name: string | undefined): { repository: string; tag: string } {
  if (name === undefined) return { repository: '<none>', tag: '<none>' };
  const ref = parseReference(name);
  return { repository: familiarRepository(ref), tag: ref.tag ?? '<none>' };
}

/** The familiar names (`busybox:latest`) of an image. */
export function familiarNames(image: ResolvedImage): string[] {
  return image.names.map((n) => familiarReference(parseReference(n)));
}

/** Pads columns like docker's tabwriter (3 spaces between columns). */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3))).join('').trimEnd()).join('\n');
}

/** Throws `CLI_MISSING_ARGUMENT` unless at least `n` positionals were given. */
export function requireArgs(positionals: readonly string[], n: number, command: string, what: string): void {
  if (positionals.length < n) {
    throw new TsbuildError('CLI_MISSING_ARGUMENT', `"tsbuild ${command}" requires ${what}`, { hint: `see "tsbuild ${command} --help"`, exitCode: 125 });
  }
}
