/**
 * runner: containers from images. A container is `<store>/containers/<id>/` (config.json,
 * state.json written atomically, `<id>-json.log`) plus an active snapshot `ctr-<id>` (its
 * writable layer over the image's committed snapshots). A per-container monitor process (the
 * CLI re-executed, detached) owns a detached container; in the foreground the CLI owns it.
 * Errors are TsbuildErrors `RUN_*` (plus the STORE_/IMAGE_/SNAPSHOT_/SANDBOX_ codes below).
 */
export { newContainerId, shortContainerId, generateContainerName, isValidContainerName } from './ids.js';
export {
  ContainerStore, ZERO_TIME, createdState,
  type ContainerEntry, type ContainerRecord, type ContainerState, type ContainerStatus,
} from './container-store.js';
export { resolveProcess, mergeEnv, parseSignal, DEFAULT_PATH, type ProcessFlags, type ResolvedProcess } from './container-config.js';
export { prepareImage, type RunnableImage } from './image-root.js';
export { createContainer, type CreateContainerOptions, type CreateDeps } from './create.js';
export {
  runContainer, removeContainer, isContainerRunning, snapshotKeyOf, resolveSnapshotUser,
  type RunnerDeps, type RunContainerOptions,
} from './runner.js';
export { killContainer, stopContainer, waitForStop, SIGNALS } from './control.js';
export { startMonitor, monitorLogPathOf, type MonitorCommand } from './monitor.js';
export { createLogWriter, readLogs, type LogRecord, type LogWriter, type ReadLogsOptions } from './logs.js';
export { isProcessAlive, processStartTime, childPids } from './process-info.js';
