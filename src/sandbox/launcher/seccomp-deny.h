/*
 * The significant system calls docker's default seccomp profile refuses, with the capabilities that
 * allow them (-1: none). Not all of them: docker also narrows personality's arguments, AF_VSOCK
 * sockets and a few CAP_SYS_PTRACE/CAP_SYS_NICE calls, which stay allowed here. clock_adjtime is
 * allowed, as docker (glibc's adjtimex reads the clock through it; the kernel checks writes). Included once per architecture (seccomp.c: x86_64, seccomp-i386.c: i386) with
 * DENY(name, cap_a, cap_b) defined; calls the architecture lacks are left out by the #ifdefs.
 * Capability numbers: linux/capability.h.
 */
/* Never allowed: the kernel keyring is not namespaced; io_uring bypasses seccomp; obsolete calls. */
#ifdef __NR_keyctl
DENY(keyctl, -1, -1)
#endif
#ifdef __NR_add_key
DENY(add_key, -1, -1)
#endif
#ifdef __NR_request_key
DENY(request_key, -1, -1)
#endif
#ifdef __NR_io_uring_setup
DENY(io_uring_setup, -1, -1)
#endif
#ifdef __NR_io_uring_enter
DENY(io_uring_enter, -1, -1)
#endif
#ifdef __NR_io_uring_register
DENY(io_uring_register, -1, -1)
#endif
#ifdef __NR_uselib
DENY(uselib, -1, -1)
#endif
#ifdef __NR_ustat
DENY(ustat, -1, -1)
#endif
#ifdef __NR_sysfs
DENY(sysfs, -1, -1)
#endif
#ifdef __NR__sysctl
DENY(_sysctl, -1, -1)
#endif
#ifdef __NR_create_module
DENY(create_module, -1, -1)
#endif
#ifdef __NR_get_kernel_syms
DENY(get_kernel_syms, -1, -1)
#endif
#ifdef __NR_query_module
DENY(query_module, -1, -1)
#endif
#ifdef __NR_nfsservctl
DENY(nfsservctl, -1, -1)
#endif
#ifdef __NR_vm86
DENY(vm86, -1, -1)
#endif
#ifdef __NR_vm86old
DENY(vm86old, -1, -1)
#endif
/* CAP_SYS_ADMIN (21): mounts, namespaces (clone's namespace flags are checked in seccomp.c), swap, quotas. */
#ifdef __NR_mount
DENY(mount, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_umount
DENY(umount, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_umount2
DENY(umount2, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_pivot_root
DENY(pivot_root, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_unshare
DENY(unshare, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_setns
DENY(setns, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_fsopen
DENY(fsopen, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_fsconfig
DENY(fsconfig, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_fsmount
DENY(fsmount, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_fspick
DENY(fspick, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_open_tree
DENY(open_tree, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_move_mount
DENY(move_mount, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_mount_setattr
DENY(mount_setattr, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_swapon
DENY(swapon, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_swapoff
DENY(swapoff, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_quotactl
DENY(quotactl, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_quotactl_fd
DENY(quotactl_fd, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_lookup_dcookie
DENY(lookup_dcookie, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_fanotify_init
DENY(fanotify_init, CAP_SYS_ADMIN, -1)
#endif
#ifdef __NR_bpf
DENY(bpf, CAP_SYS_ADMIN, CAP_BPF)
#endif
#ifdef __NR_perf_event_open
DENY(perf_event_open, CAP_SYS_ADMIN, CAP_PERFMON)
#endif
/* CAP_SYS_BOOT, CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_TIME, CAP_SYS_PACCT. */
#ifdef __NR_reboot
DENY(reboot, CAP_SYS_BOOT, -1)
#endif
#ifdef __NR_kexec_load
DENY(kexec_load, CAP_SYS_BOOT, -1)
#endif
#ifdef __NR_kexec_file_load
DENY(kexec_file_load, CAP_SYS_BOOT, -1)
#endif
#ifdef __NR_init_module
DENY(init_module, CAP_SYS_MODULE, -1)
#endif
#ifdef __NR_finit_module
DENY(finit_module, CAP_SYS_MODULE, -1)
#endif
#ifdef __NR_delete_module
DENY(delete_module, CAP_SYS_MODULE, -1)
#endif
#ifdef __NR_iopl
DENY(iopl, CAP_SYS_RAWIO, -1)
#endif
#ifdef __NR_ioperm
DENY(ioperm, CAP_SYS_RAWIO, -1)
#endif
#ifdef __NR_settimeofday
DENY(settimeofday, CAP_SYS_TIME, -1)
#endif
#ifdef __NR_stime
DENY(stime, CAP_SYS_TIME, -1)
#endif
#ifdef __NR_clock_settime
DENY(clock_settime, CAP_SYS_TIME, -1)
#endif
#ifdef __NR_clock_settime64
DENY(clock_settime64, CAP_SYS_TIME, -1)
#endif
#ifdef __NR_acct
DENY(acct, CAP_SYS_PACCT, -1)
#endif
/* CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH, CAP_SYSLOG, CAP_SYS_TTY_CONFIG. */
#ifdef __NR_kcmp
DENY(kcmp, CAP_SYS_PTRACE, -1)
#endif
#ifdef __NR_userfaultfd
DENY(userfaultfd, CAP_SYS_PTRACE, -1)
#endif
#ifdef __NR_open_by_handle_at
DENY(open_by_handle_at, CAP_DAC_READ_SEARCH, -1)
#endif
#ifdef __NR_name_to_handle_at
DENY(name_to_handle_at, CAP_DAC_READ_SEARCH, CAP_SYS_ADMIN)
#endif
#ifdef __NR_syslog
DENY(syslog, CAP_SYSLOG, -1)
#endif
#ifdef __NR_vhangup
DENY(vhangup, CAP_SYS_TTY_CONFIG, -1)
#endif
