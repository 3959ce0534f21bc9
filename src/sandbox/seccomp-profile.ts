/**
 * Docker's default seccomp policy as tsbuild applies it, as a deny list: the same entries as the
 * launcher's src/sandbox/launcher/seccomp-deny.h (test/sandbox/seccomp-profile.test.ts checks
 * that they agree). The launcher builds its BPF program from the header; this module writes the
 * OCI `linux.seccomp` section for `--runtime` (runc applies it with libseccomp).
 */

/** A refused call and the capabilities that allow it (docker's profile); none: always refused. */
export interface SeccompDeny {
  readonly name: string;
  readonly allowedBy: readonly string[];
}

const never = (...names: string[]): SeccompDeny[] => names.map((name) => ({ name, allowedBy: [] }));
const unless = (caps: string[], ...names: string[]): SeccompDeny[] => names.map((name) => ({ name, allowedBy: caps }));

/** In the header's order. */
export const SECCOMP_DENY: readonly SeccompDeny[] = [
  ...never('keyctl', 'add_key', 'request_key', 'io_uring_setup', 'io_uring_enter', 'io_uring_register', 'uselib', 'ustat',
    'sysfs', '_sysctl', 'create_module', 'get_kernel_syms', 'query_module', 'nfsservctl', 'vm86', 'vm86old'),
  ...unless(['CAP_SYS_ADMIN'], 'mount', 'umount', 'umount2', 'pivot_root', 'unshare', 'setns', 'fsopen', 'fsconfig', 'fsmount',
    'fspick', 'open_tree', 'move_mount', 'mount_setattr', 'swapon', 'swapoff', 'quotactl', 'quotactl_fd', 'lookup_dcookie', 'fanotify_init'),
  ...unless(['CAP_SYS_ADMIN', 'CAP_BPF'], 'bpf'),
  ...unless(['CAP_SYS_ADMIN', 'CAP_PERFMON'], 'perf_event_open'),
  ...unless(['CAP_SYS_BOOT'], 'reboot', 'kexec_load', 'kexec_file_load'),
  ...unless(['CAP_SYS_MODULE'], 'init_module', 'finit_module', 'delete_module'),
  ...unless(['CAP_SYS_RAWIO'], 'iopl', 'ioperm'),
  ...unless(['CAP_SYS_TIME'], 'settimeofday', 'stime', 'clock_settime', 'clock_settime64'),
  ...unless(['CAP_SYS_PACCT'], 'acct'),
  ...unless(['CAP_SYS_PTRACE'], 'kcmp', 'userfaultfd'),
  ...unless(['CAP_DAC_READ_SEARCH'], 'open_by_handle_at'),
  ...unless(['CAP_DAC_READ_SEARCH', 'CAP_SYS_ADMIN'], 'name_to_handle_at'),
  ...unless(['CAP_SYSLOG'], 'syslog'),
  ...unless(['CAP_SYS_TTY_CONFIG'], 'vhangup'),
];

/** clone's namespace flags (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET): refused without CAP_SYS_ADMIN. */
export const CLONE_NAMESPACE_FLAGS: readonly number[] = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000];

const EPERM = 1;
const ENOSYS = 38;

/**
 * The OCI `linux.seccomp` section of the default policy for a sandbox with `capabilities`: every
 * call allowed but the refused ones (EPERM); without CAP_SYS_ADMIN clone3 fails with ENOSYS (libc
 * then uses clone) and clone with a namespace flag with EPERM. Pure.
 */
export function ociSeccomp(capabilities: readonly string[]): Record<string, unknown> {
  const held = new Set(capabilities);
  const denied = SECCOMP_DENY.filter((d) => !d.allowedBy.some((c) => held.has(c))).map((d) => d.name);
  const syscalls: Record<string, unknown>[] = [{ names: denied, action: 'SCMP_ACT_ERRNO', errnoRet: EPERM }];
  if (!held.has('CAP_SYS_ADMIN')) {
    syscalls.push({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS });
    for (const flag of CLONE_NAMESPACE_FLAGS) {
      syscalls.push({ names: ['clone'], action: 'SCMP_ACT_ERRNO', errnoRet: EPERM, args: [{ index: 0, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }] });
    }
  }
  return { defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'], syscalls };
}
