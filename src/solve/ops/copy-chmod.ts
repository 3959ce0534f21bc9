import { TsbuildError } from '../../core/index.js';

/** Computes the mode of a copied entry from its source mode (`isDir` matters for `X`). */
export type ChmodFn = (mode: number, isDir: boolean) => number;

const CLAUSE = /^([ugoa]*)([-+=])([rwxXst]*)$/;

/** The permission bits of each class in `who` (empty = all, as chmod(1) with a zero umask). */
function whoMask(who: string): { rwx: number; special: number } {
  const all = who === '' || who.includes('a');
  let rwx = 0;
  let special = 0;
  if (all || who.includes('u')) {
    rwx |= 0o700;
    special |= 0o4000;
  }
  if (all || who.includes('g')) {
    rwx |= 0o070;
    special |= 0o2000;
  }
  if (all || who.includes('o')) {
    rwx |= 0o007;
    special |= 0o1000;
  }
  return { rwx, special };
}

/** The bits `perms` (`rwxXst`) stand for in the classes of `who`, given the current mode. */
function bitsOf(perms: string, who: string, mode: number, isDir: boolean): number {
  const mask = whoMask(who);
  let bits = 0;
  for (const p of perms) {
    switch (p) {
      case 'r':
        bits |= 0o444 & mask.rwx;
        break;
      case 'w':
        bits |= 0o222 & mask.rwx;
        break;
      case 'x':
        bits |= 0o111 & mask.rwx;
        break;
      case 'X':
        if (isDir || (mode & 0o111) !== 0) bits |= 0o111 & mask.rwx;
        break;
      case 's':
        bits |= mask.special & 0o6000;
        break;
      case 't':
        bits |= mask.special & 0o1000;
        break;
    }
  }
  return bits;
}

/**
 * Parses a `--chmod` value: octal (`755`, `0644`) sets that mode on every entry; symbolic
 * (`u+x,g-w,o=r`, `+X`, BuildKit's Dockerfile 1.14 syntax) edits each entry's own mode as
 * chmod(1) does with a zero umask (no class letter means all classes). One operator per clause.
 * Throws SOLVE_BAD_CHMOD for anything else.
 */
export function parseChmod(spec: string): ChmodFn {
  if (/^[0-7]{3,4}$/.test(spec)) {
    const fixed = parseInt(spec, 8);
    return () => fixed;
  }
  const clauses = spec.split(',').map((c) => CLAUSE.exec(c));
  if (spec === '' || clauses.some((m) => m === null)) {
    throw new TsbuildError('SOLVE_BAD_CHMOD', `invalid --chmod "${spec}": expected an octal mode like 0755 or a symbolic one like u+x,g-w`);
  }
  return (start, isDir) => {
    let mode = start & 0o7777;
    for (const m of clauses as RegExpExecArray[]) {
      const who = m[1] ?? '';
      const op = m[2];
      const bits = bitsOf(m[3] ?? '', who, mode, isDir);
      if (op === '+') mode |= bits;
      else if (op === '-') mode &= ~bits;
      else {
        const mask = whoMask(who);
        mode = (mode & ~(mask.rwx | mask.special)) | bits;
      }
    }
    return mode;
  };
}
