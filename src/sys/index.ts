/**
 * sys: the only importer of koffi. Thin synchronous wrappers over the libc calls Node lacks
 * (extended attributes, mknod). Failures throw {@link SysCallError} (`CORE_SYSCALL`, with `errnoName`).
 */
export { SysCallError, ERRNO } from './libc.js';
export { listXattrNames, getXattr, readXattrs, setXattr, removeXattr, compareBytewise, type Xattr } from './xattr.js';
export { makeNode, makeDev, splitDev, type NodeKind } from './device.js';
export { readProcStat, isPidRunning, type ProcStat } from './proc.js';
export { DEFERRED_CA_VAR, deferNodeExtraCaCerts, extraCaFile, externalProgramEnv, readExtraCaFile, withNodeRoots } from './node-ca.js';
export { randomBuffer, randomHex } from './random.js';
export { accessInPool, renameInPool } from './fs-pool.js';
export { NativeChild, SPAWN_ADDON, loadedSpawnAddon, spawnAddonBeside, spawnChild, spawnNative, type NativeStdio, type SpawnAddon, type SpawnedChild, type SpawnOptions } from './spawn-native.js';
export { exitProcess, watchStdioFlags, type StdioFlags } from './fast-exit.js';
export { PipeWriter } from './pipe-writer.js';
