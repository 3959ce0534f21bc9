import { ContainerStore } from '../runner/index.js';
import type { Store } from '../store/index.js';
import type { CommandContext } from './command.js';
import { openCliStore } from './store-root.js';

/** What a command that only reads container records needs: the store (image names) and its containers. */
export interface ContainerListDeps {
  readonly store: Store;
  readonly containers: ContainerStore;
}

/**
 * Opens the store and its containers only (`ps`): unlike openContainerDeps (container-deps.ts) no
 * snapshotter probe, sandbox, or compression tool and slirp4netns lookups, and none of their modules.
 */
export async function openContainerList(ctx: Pick<CommandContext, 'global' | 'env' | 'cwd'>): Promise<ContainerListDeps> {
  const store = await openCliStore(ctx);
  return { store, containers: new ContainerStore(store.paths.containers) };
}
