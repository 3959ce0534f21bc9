import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ContainerStore } from './container-store.js';
import type { ActivePort } from './ports.js';

/** The file where a running container's owner records its live port bindings (`ports.json`). */
export function portsFileOf(containers: ContainerStore, id: string): string {
  return join(containers.dirOf(id), 'ports.json');
}

/** Reads the live bindings of container `id` as its owner recorded them (`[]` when there are none). */
export async function readActivePorts(containers: ContainerStore, id: string): Promise<ActivePort[]> {
  try {
    const v = JSON.parse(await readFile(portsFileOf(containers, id), 'utf8')) as unknown;
    return Array.isArray(v) ? (v as ActivePort[]) : [];
  } catch {
    return [];
  }
}
