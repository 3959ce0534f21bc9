import type { ConfigEdit } from '../../plan/index.js';
import type { RootfsView } from '../rootfs-view.js';

/** True when a metadata step changes the file system (WORKDIR creating its directory). */
export function metaMakesLayer(edit: ConfigEdit): boolean {
  return edit.kind === 'workdir' && edit.mkdir;
}

/**
 * Applies the file system part of a metadata step: WORKDIR creates its directory (0755, root)
 * when missing, following symlinks as Docker does. Every other edit only changes the image
 * config, which the planner already computed.
 */
export function applyMetaToView(edit: ConfigEdit, view: RootfsView): void {
  if (edit.kind !== 'workdir' || !edit.mkdir) return;
  const parts = view.resolve(edit.path, true);
  view.ensureDirParts(parts, { uid: 0, gid: 0, mode: 0o755 });
}
