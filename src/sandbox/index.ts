export * from './spec.js';
export type { Cgroup, CgroupUsage } from './cgroup-types.js';
export type { CgroupLimits } from './cgroup-limits.js';
export { parseCpus, parseCpuset, parseIntegerLimit, parseMemory, parseMemorySwap, validateLimits } from './cgroup-limits.js';
export type { CgroupMode } from './cgroup-detect.js';
export { detectCgroupMode } from './cgroup-detect.js';
export type { CgroupOptions } from './cgroup.js';
export { cleanupStaleCgroups, createCgroup } from './cgroup.js';
