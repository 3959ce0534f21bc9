import { randomBuffer, randomHex } from '../sys/index.js';

const ADJECTIVES = [
  'admiring', 'bold', 'brave', 'clever', 'dazzling', 'eager', 'elegant', 'focused', 'gallant', 'happy',
  'jolly', 'keen', 'lucid', 'modest', 'nifty', 'optimistic', 'pensive', 'quirky', 'serene', 'vigilant',
];
const NOUNS = [
  'babbage', 'curie', 'darwin', 'euclid', 'fermi', 'galileo', 'hopper', 'kepler', 'lovelace', 'turing',
  'noether', 'pascal', 'ritchie', 'shannon', 'thompson', 'wozniak', 'yalow', 'zuse', 'hamilton', 'lamport',
];

/** A new docker-style container ID: 64 lowercase hex digits. */
export function newContainerId(): string {
  return randomHex(32);
}

/** The 12-digit short form of a container ID. */
export function shortContainerId(id: string): string {
  return id.slice(0, 12);
}

/** A random docker-style name (`adjective_scientist`); the caller retries on a clash. */
export function generateContainerName(): string {
  const [a, b] = randomBuffer(2);
  return `${ADJECTIVES[(a ?? 0) % ADJECTIVES.length] as string}_${NOUNS[(b ?? 0) % NOUNS.length] as string}`;
}

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

/** True for a valid container name (docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, one leading `/` allowed). */
export function isValidContainerName(name: string): boolean {
  return NAME_RE.test(name.startsWith('/') ? name.slice(1) : name);
}
