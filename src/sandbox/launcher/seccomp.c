/*
 * The default seccomp filter (see seccomp.h). The program, per architecture:
 *   x86_64: x32 calls (nr >= 0x40000000) -> ENOSYS; each refused call -> EPERM; without
 *           CAP_SYS_ADMIN, clone3 -> ENOSYS and clone with a namespace flag -> EPERM; else allow.
 *   i386:   the same with the i386 numbers (seccomp-i386.c).
 *   other:  EPERM (no other architecture reaches an x86_64 kernel).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include "seccomp.h"

#if !defined(__x86_64__)
#error "the default seccomp filter knows x86_64 (and its i386 calls) only"
#endif

/* CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET, as docker's profile. */
#define NAMESPACE_FLAGS 0x7E020000u
#define MAX_INSNS 512

static const struct seccomp_entry deny_x86_64[] = {
#define DENY(name, a, b) { __NR_##name, a, b },
#include "seccomp-deny.h"
#undef DENY
};

struct program { struct sock_filter insn[MAX_INSNS]; unsigned n; int overflow; };

static void emit(struct program *p, uint16_t code, uint8_t jt, uint8_t jf, uint32_t k) {
  if (p->n >= MAX_INSNS) { p->overflow = 1; return; }
  p->insn[p->n++] = (struct sock_filter)BPF_JUMP(code, k, jt, jf);
}

static int has_cap(uint64_t caps, int cap) { return cap >= 0 && cap < 64 && (caps & (1ULL << cap)) != 0; }

/* The checks of one architecture, from "load nr" to "allow". */
static void emit_arch(struct program *p, const struct seccomp_entry *deny, size_t count, int clone_nr, int clone3_nr, int x32, uint64_t caps) {
  emit(p, BPF_LD | BPF_W | BPF_ABS, 0, 0, offsetof(struct seccomp_data, nr));
  if (x32) {
    emit(p, BPF_JMP | BPF_JGE | BPF_K, 0, 1, 0x40000000u);
    emit(p, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS);
  }
  for (size_t i = 0; i < count; i++) {
    if (has_cap(caps, deny[i].cap_a) || has_cap(caps, deny[i].cap_b)) continue;
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, (uint32_t)deny[i].nr);
    emit(p, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ERRNO | EPERM);
  }
  if (!has_cap(caps, CAP_SYS_ADMIN)) {
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, (uint32_t)clone3_nr);
    emit(p, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS);
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 3, (uint32_t)clone_nr);
    /* The flags are clone's first argument on both architectures; the low 32 bits (little-endian). */
    emit(p, BPF_LD | BPF_W | BPF_ABS, 0, 0, offsetof(struct seccomp_data, args[0]));
    emit(p, BPF_JMP | BPF_JSET | BPF_K, 0, 1, NAMESPACE_FLAGS);
    emit(p, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ERRNO | EPERM);
  }
  emit(p, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW);
}

/* "if arch != AUDIT_ARCH: skip the block"; the jump is patched once the block's length is known. */
static int emit_arch_block(struct program *p, uint32_t audit_arch, const struct seccomp_entry *deny, size_t count, int clone_nr, int clone3_nr, int x32, uint64_t caps) {
  emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 0, audit_arch);
  unsigned at = p->n - 1;
  emit_arch(p, deny, count, clone_nr, clone3_nr, x32, caps);
  unsigned skip = p->n - at - 1;
  if (p->overflow || skip > 255) return -1;
  p->insn[at].jf = (uint8_t)skip;
  return 0;
}

int seccomp_install_default(uint64_t caps) {
  static struct program p;
  p.n = 0;
  p.overflow = 0;
  emit(&p, BPF_LD | BPF_W | BPF_ABS, 0, 0, offsetof(struct seccomp_data, arch));
  if (emit_arch_block(&p, AUDIT_ARCH_X86_64, deny_x86_64, sizeof deny_x86_64 / sizeof deny_x86_64[0], __NR_clone, __NR_clone3, 1, caps) < 0 ||
      emit_arch_block(&p, AUDIT_ARCH_I386, seccomp_deny_i386, seccomp_deny_i386_count, seccomp_i386_clone, seccomp_i386_clone3, 0, caps) < 0) {
    errno = E2BIG;
    return -1;
  }
  emit(&p, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ERRNO | EPERM);
  if (p.overflow) {
    errno = E2BIG;
    return -1;
  }
  struct sock_fprog prog = { (unsigned short)p.n, p.insn };
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}
