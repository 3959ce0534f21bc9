/* The i386 numbers of the refused calls (see seccomp.h): asm/unistd_32.h, never with sys/syscall.h. */
#include <asm/unistd_32.h>
#include <linux/capability.h>
#include "seccomp.h"

const struct seccomp_entry seccomp_deny_i386[] = {
#define DENY(name, a, b) { __NR_##name, a, b },
#include "seccomp-deny.h"
#undef DENY
};
const size_t seccomp_deny_i386_count = sizeof seccomp_deny_i386 / sizeof seccomp_deny_i386[0];
const int seccomp_i386_clone = __NR_clone;
const int seccomp_i386_clone3 = __NR_clone3;
