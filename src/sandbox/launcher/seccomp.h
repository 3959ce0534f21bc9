/*
 * The default seccomp filter of tsbuild sandboxes (docker's default profile, as a deny list).
 * seccomp.c builds a classic BPF program for x86_64 and i386 system calls (x32 calls are refused)
 * and installs it; seccomp-i386.c holds the i386 numbers (a separate file: the numbers of both
 * architectures come from the kernel headers, asm/unistd_64.h and asm/unistd_32.h, whose
 * macros have the same names).
 */
#ifndef TSBUILD_SECCOMP_H
#define TSBUILD_SECCOMP_H
#include <stddef.h>
#include <stdint.h>

/* A refused system call: allowed only when the sandbox's capability set holds cap_a or cap_b (-1: never). */
struct seccomp_entry { int nr; int cap_a; int cap_b; };

extern const struct seccomp_entry seccomp_deny_i386[];
extern const size_t seccomp_deny_i386_count;
extern const int seccomp_i386_clone, seccomp_i386_clone3;

/*
 * Installs the default filter for a sandbox whose (bounding) capability set is `caps`: the calls
 * docker's default profile refuses fail with EPERM (clone3 with ENOSYS, so libc falls back to
 * clone, whose namespace flags can be checked), unless a capability that docker's profile names
 * for them is in `caps`. Needs no_new_privs or CAP_SYS_ADMIN. Returns 0, or -1 with errno.
 */
int seccomp_install_default(uint64_t caps);

#endif
