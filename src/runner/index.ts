/**
 * runner: containers from images. A container is `<store>/containers/<id>/` (config.json,
 * state.json written atomically, `<id>-json.log`) plus an active snapshot `ctr-<id>` (its
 * writable layer over the image's committed snapshots). A per-container monitor process (the
 * CLI re-executed, detached) owns a detached container; in the foreground the CLI owns it.
 * Errors are TsbuildErrors `RUN_*` (plus the STORE_/IMAGE_/SNAPSHOT_/SANDBOX_ codes below).
 */
export { newContainerId, shortContainerId, generateContainerName, isValidContainerName } from './ids.js';
export {
  ContainerStore, ZERO_TIME, createdState, idOfNameLink, nameLinkTarget,
  type ContainerEntry, type ContainerRecord, type ContainerState, type ContainerStatus,
} from './container-store.js';
export { resolveProcess, mergeEnv, parseSignal, DEFAULT_PATH, type ProcessFlags, type ResolvedProcess } from './container-config.js';
export { prepareImage, type RunnableImage } from './image-root.js';
export { resolveSnapshotUser } from './snapshot-user.js';
export { createContainer, type CreateContainerOptions, type CreateDeps } from './create.js';
export {
  runContainer, removeContainer, isContainerRunning, snapshotKeyOf, INIT_PATH,
  type RunnerDeps, type RunContainerOptions,
} from './runner.js';
export { killContainer, parseKillSignal, stopContainer, waitForStop, SIGNALS } from './control.js';
export { startMonitor, monitorLogPathOf, type MonitorCommand } from './monitor.js';
export { attachSocketPathOf, markOpenStdin, hasOpenStdin, parseDetachKeys, DEFAULT_DETACH_KEYS, FOREGROUND_ATTACH_DELAY_MS } from './attach-protocol.js';
export { endAttachedRun, startAttachServer, type AttachServer, type AttachServerOptions } from './attach-server.js';
export { attachContainer, requireAttachable, type AttachIo, type AttachOptions, type AttachResult } from './attach-client.js';
export { createLogWriter, readLogs, type LogRecord, type LogWriter, type ReadLogsOptions } from './logs.js';
export { isProcessAlive, processStartTime, childPids } from './process-info.js';
export {
  parsePublishSpec, parseExposedPorts, portKey, parsePortKey, sortPortKeys, bindingsToPublish, bindingsOfContainer, containerPortFields,
  hostAddressOf, formatHostAddress, describeBinding, formatPortsColumn,
  type PortBinding, type ActivePort, type PortProtocol,
} from './ports.js';
export { publishPorts, checkPortsAvailable, type PublishedPorts, type PublishOptions } from './port-forwarder.js';
export {
  parseContainerNetwork, formatContainerNetwork, resolveContainerNetwork, findSlirp4netns, prepareContainerNetwork, startSlirp, launcherSlirp, slirpArgv0,
  slirpArgs, slirpAddress, slirpResolvConf, sandboxNetworkOf, SLIRP_DEFAULT_MTU,
  type ContainerNetwork, type ContainerNetworkMode, type ContainerNetworkRun, type SlirpLookup, type SlirpOptions, type SlirpProcess, type SlirpStartOptions,
} from './network-slirp.js';
export { portsFileOf, readActivePorts } from './ports-state.js';
export { execInContainer, type ExecDeps, type ExecOptions } from './exec.js';
export {
  pauseContainer, unpauseContainer, isContainerPaused, openContainerCgroup, requireRunning, type CgroupOpsDeps,
} from './pause.js';
export { sampleContainerStats, cpuPercent, parseNetDev, type ContainerStatsSample } from './stats.js';
export { listContainerProcesses, formatCpuTime, formatTty, type ProcessTable } from './top.js';
export { commitContainer, type CommitDeps, type CommitOptions, type CommitResult } from './commit.js';
export { exportContainer, copyFromContainer, copyToContainer, type FilesDeps, type CopyInSource, type CopyOptions, type CopyOutTarget } from './container-files.js';
export {
  VolumeStore, ANONYMOUS_LABEL, isValidVolumeName, volumeUsers, seedVolume, removeAnonymousVolumes, imageVolumeRequests,
  type VolumeInfo, type VolumeRequest, type AttachedVolume,
} from './volumes.js';
export {
  parseRestartPolicy, shouldRestart, nextRestartDelay, requestStop, clearStopRequest, isStopRequested, settleRestarting, runWithRestartPolicy, NO_RESTART,
  type RestartPolicy, type RunOnce,
} from './restart.js';
export {
  parseDuration, resolveHealthcheck, healthConfigOf, readHealth, runWithHealthcheck,
  type HealthcheckSpec, type HealthFlags, type HealthLogEntry, type HealthState,
} from './health.js';
export {
  parseUlimit, ulimitsToRlimits, parseAddHost, appendExtraHosts, parseDnsServer, parseDnsSearch, parseDnsOption, applyDnsConfig,
  parseGroupAdd, resolveGroupAdd, parseSecurityOpts, runOptionFields, ULIMIT_NAMES,
  type ContainerRunOptions, type DnsConfig, type Ulimit,
} from './run-options.js';
