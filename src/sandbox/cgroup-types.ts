/** Accounting of a sandbox cgroup, read when its process has ended. */
export interface CgroupUsage {
  /** CPU time consumed by all processes of the cgroup, in nanoseconds. */
  cpuUsageNs: number;
  /** Highest memory use seen, in bytes (0 when the kernel does not record a peak). */
  memoryPeakBytes: number;
  /** True when the kernel OOM killer killed a process of the cgroup. */
  oomKilled: boolean;
}

/** One sandbox cgroup (v1 or v2). Every method throws SANDBOX_CGROUP naming the file on failure. */
export interface Cgroup {
  /** Moves process `pid` (and its threads) into the cgroup; its future children stay in it. */
  addProcess(pid: number): Promise<void>;
  /** The `cgroup.procs` files a process writes "0" into to join the cgroup itself (one per distinct directory). */
  readonly procsFiles: readonly string[];
  /**
   * Files a single-threaded process writes "0" into to move itself in without the kernel's grace period: v1's
   * `tasks` (one per distinct directory; a task moving only itself skips cgroup_threadgroup_rwsem, which every
   * other attach takes and which waits for an RCU grace period, 7-35 ms). Undefined on v2, where joining is a
   * write to cgroup.procs (that wait) and cgroup.threads is for threaded subtrees only.
   */
  readonly selfJoinFiles: readonly string[] | undefined;
  /**
   * Moves process `pid` out again, into the cgroups this process is in (a launcher that joined early so that the
   * sandbox's process is born in the cgroup; see Sandbox.prestart). A process that is gone is no error.
   */
  releaseProcess(pid: number): Promise<void>;
  /** Reads the accounting so far. */
  usage(): Promise<CgroupUsage>;
  /** Freezes every process of the cgroup; resolves once the kernel reports it frozen. */
  freeze(): Promise<void>;
  /** Thaws a frozen cgroup. */
  thaw(): Promise<void>;
  /** Kills every remaining process and removes the cgroup directories; idempotent. */
  destroy(): Promise<void>;
}
