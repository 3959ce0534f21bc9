import { TsbuildError, type Platform } from '../core/index.js';

const ARCH_ALIASES: Readonly<Record<string, { architecture: string; variant?: string }>> = {
  x86_64: { architecture: 'amd64' },
  x86: { architecture: '386' },
  i386: { architecture: '386' },
  aarch64: { architecture: 'arm64' },
  armhf: { architecture: 'arm', variant: 'v7' },
  armel: { architecture: 'arm', variant: 'v6' },
};

/**
 * Parses `os[/arch[/variant]]` (e.g. `linux/amd64`, `linux/arm/v7`) and normalises it the way
 * containerd does (`x86_64` -> `amd64`, `aarch64` -> `arm64`, `arm64/v8` -> `arm64`, `arm` -> `arm/v7`).
 * Throws `IMAGE_BAD_PLATFORM` when malformed.
 */
export function parsePlatform(text: string): Platform {
  const parts = text.trim().toLowerCase().split('/');
  const [os, arch, variant, ...rest] = parts;
  if (os === undefined || os === '' || rest.length > 0 || parts.some((p) => p === '' || !/^[a-z0-9._-]+$/.test(p))) {
    throw new TsbuildError('IMAGE_BAD_PLATFORM', `invalid platform "${text}": expected os/arch[/variant], e.g. linux/amd64`);
  }
  if (arch === undefined) return { os, architecture: 'amd64' };
  return normalizePlatform({ os, architecture: arch, ...(variant === undefined ? {} : { variant }) });
}

/** Normalises architecture aliases and default variants. */
export function normalizePlatform(p: Platform): Platform {
  const alias = ARCH_ALIASES[p.architecture];
  const architecture = alias?.architecture ?? p.architecture;
  let variant = p.variant ?? alias?.variant;
  if (architecture === 'arm64' && variant === 'v8') variant = undefined;
  if (architecture === 'arm' && variant === undefined) variant = 'v7';
  const { variant: _old, ...rest } = p;
  return variant === undefined ? { ...rest, architecture } : { ...rest, architecture, variant };
}

/** Formats a platform as `os/arch[/variant]`. */
export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant === undefined ? '' : `/${p.variant}`}`;
}

/** Maps Node's `process.arch` / `process.platform` values to an OCI platform. */
export function platformFromNode(platform: string, arch: string): Platform {
  const table: Readonly<Record<string, string>> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return normalizePlatform({ os: platform === 'win32' ? 'windows' : platform, architecture: table[arch] ?? arch });
}

/**
 * True when an image made for `have` (an image config's os/architecture/variant) serves `want`:
 * same os and architecture after normalising, and the same variant when both name one. A config
 * that names no architecture (invalid, but seen in hand-made images) matches anything.
 */
export function platformMatches(have: { readonly os?: string; readonly architecture?: string; readonly variant?: string }, want: Platform): boolean {
  if (have.architecture === undefined || have.architecture === '' || have.os === undefined || have.os === '') return true;
  const h = normalizePlatform({ os: have.os, architecture: have.architecture, ...(have.variant === undefined ? {} : { variant: have.variant }) });
  const w = normalizePlatform(want);
  if (h.os !== w.os || h.architecture !== w.architecture) return false;
  return h.variant === undefined || w.variant === undefined || h.variant === w.variant;
}
