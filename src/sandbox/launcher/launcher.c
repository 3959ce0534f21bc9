/*
 * tsbuild-launcher: enters namespaces and execs one process. Nothing else.
 *
 * TypeScript (src/sandbox/sandbox.ts) owns the policy; this program only applies it.
 * fds: 0-2 stdio of the container; 3 = spec in (NUL-separated tokens, see launcher-spec.ts);
 *      4 = status out (lines: "pid N", "error STEP ERRNO DETAIL", "exit N", "signal N");
 *      5 = go in (one byte after TypeScript wrote the id maps and joined the cgroup).
 * Every failing syscall is reported on fd 4 with its step name and errno, then exit 125
 * (127 when the command is not found, 126 when it cannot be executed).
 *
 * Join mode (spec tag "join PID", see join.ts): instead of new namespaces, setns() into the
 * namespaces ("ns NAME") of the running process PID, like nsenter, chroot to its root when the
 * mount namespace is joined, then fork (the child enters the pid namespace) and exec as in run
 * mode. With "detach 1" the launcher reports "detached" once the command was exec'd and exits.
 *
 * Zygote mode ("--zygote", zygote.c): a long-lived process that forks a launcher per request.
 *
 * Started ahead with "--netns --slirp4netns FILE ARGV0 ARG...": it also starts slirp4netns for the network
 * namespace it made (see prepare_early), reports "slirp PID", waits for slirp4netns's ready signal before it
 * clones the child, and closes slirp4netns's exit fd as soon as the child has ended.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <grp.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>
#include "seccomp.h"

#define SPEC_FD 3
#define STATUS_FD 4
#define GO_FD 5
#define MAX_CGROUPS 8   /* "cgroup" records (launcher-spec.ts MAX_JOIN_CGROUPS) */
#define MAX_SPEC (4 << 20)
#define MAX_ITEMS 512

struct mnt { const char *dest, *type, *source, *options; };
struct file { const char *name, *content; };
struct rlim { int resource; unsigned long long soft, hard; };
struct device { const char *path; mode_t type, mode; unsigned maj, min, uid, gid; };
#define MAX_DEVICES 4096

struct spec {
  unsigned long clone_flags;
  const char *rootfs;           /* directory that becomes / */
  const char *overlay_opts;     /* overlay mount data, or NULL for a directory root */
  const char *overlay_dir;      /* directory the overlay is mounted from (relative lowerdirs), or NULL */
  int root_readonly, userns, lo_up, nnp, terminal, keepraw, caps_held;
  int all_devices;              /* privileged: device nodes usable everywhere; else every mount but devpts is nodev */
  int seccomp;                  /* install the default seccomp filter (seccomp.c) before the credentials drop */
  const char *hostname, *cwd;
  const char *cgroups[MAX_CGROUPS]; int ncgroups;   /* v1 "tasks" files the child writes "0" into first (joins its cgroup) */
  const char *files_dir;        /* directory a private tmpfs with the generated files goes on, or NULL */
  struct file files[16]; int nfiles;
  struct mnt mounts[MAX_ITEMS]; int nmounts;
  const char *masked[MAX_ITEMS]; int nmasked;
  const char *ropaths[MAX_ITEMS]; int nropaths;
  struct rlim rlimits[64]; int nrlimits;
  struct device *devices; int ndevices;   /* host devices of a privileged sandbox */
  uint64_t caps;
  unsigned uid, gid; gid_t groups[256]; int ngroups;
  char *env[MAX_ITEMS + 1]; int nenv;
  char *args[MAX_ITEMS + 1]; int nargs;
  /* join mode */
  pid_t join_pid; int detach, has_user;
  const char *join_ns[16]; int njoin;
};

static struct spec S;
/* Set by "--netns": this launcher made the sandbox's network namespace before its spec came (the clone then
 * leaves CLONE_NEWNET out: the child is born in it). */
static int early_netns;
/* Set by "--slirp4netns": slirp4netns, started by this launcher for its early network namespace. */
static pid_t slirp_pid;
static int slirp_ready = -1;   /* read end of slirp4netns's ready fd (it writes "1" once tap0 is configured) */
static int slirp_exit = -1;    /* write end of its exit fd: it ends when this closes (with this process at the latest) */
static int slirp_log = -1;     /* a memfd that holds its stderr, read when it fails */
static void wait_slirp_ready(void);

static pid_t child_pid;
static int write_all(int fd, const char *buf, ssize_t n);
static int term_sock[2] = { -1, -1 };      /* child -> launcher: the pty master (SCM_RIGHTS) */
static volatile sig_atomic_t winch;

/* One status line, written with a single write() so lines from launcher and child never mix. */
static void report(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof buf - 2) n = sizeof buf - 2;
  buf[n++] = '\n';
  ssize_t w = write(STATUS_FD, buf, (size_t)n);
  (void)w;
}

/* Reports a failed step (with errno) and exits; never returns. */
static void __attribute__((noreturn)) fail_code(int code, const char *step, int err, const char *detail) {
  char clean[600];
  size_t i = 0;
  for (; detail != NULL && detail[i] != '\0' && i < sizeof clean - 1; i++) {
    char c = detail[i];
    clean[i] = (c == '\n' || c == '\t') ? ' ' : c;
  }
  clean[i] = '\0';
  report("error\t%s\t%d\t%s", step, err, clean);
  _exit(code);
}

static void __attribute__((noreturn)) fail(const char *step, const char *detail) {
  fail_code(125, step, errno, detail);
}

/* ---------- spec parsing: tag + fixed number of NUL-terminated fields ---------- */

static unsigned long long parse_num(const char *s, const char *what) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0') fail_code(125, "parse-spec", EINVAL, what);
  return v;
}

static void parse_spec(char *buf, size_t len) {
  char *tok[8];
  size_t pos = 0;
  if (len == 0 || buf[len - 1] != '\0') fail_code(125, "parse-spec", EINVAL, "spec not NUL-terminated");
  while (pos < len) {
    const char *tag = buf + pos;
    pos += strlen(tag) + 1;
    int want;
    if (!strcmp(tag, "mount")) want = 4;
    else if (!strcmp(tag, "device")) want = 7;
    else if (!strcmp(tag, "rlimit") || !strcmp(tag, "user")) want = 3;
    else if (!strcmp(tag, "file")) want = 2;
    else want = 1;
    for (int i = 0; i < want; i++) {
      if (pos >= len) fail_code(125, "parse-spec", EINVAL, tag);
      tok[i] = buf + pos;
      pos += strlen(tok[i]) + 1;
    }
    if (!strcmp(tag, "flags")) S.clone_flags = (unsigned long)parse_num(tok[0], "flags");
    else if (!strcmp(tag, "rootfs")) S.rootfs = tok[0];
    else if (!strcmp(tag, "overlay")) S.overlay_opts = tok[0];
    else if (!strcmp(tag, "overlaydir")) S.overlay_dir = tok[0];
    else if (!strcmp(tag, "filesdir")) S.files_dir = tok[0];
    else if (!strcmp(tag, "file")) {
      if (S.nfiles >= 16) fail_code(125, "parse-spec", E2BIG, "files");
      if (tok[0][0] == '\0' || strchr(tok[0], '/') != NULL || !strcmp(tok[0], ".") || !strcmp(tok[0], "..")) fail_code(125, "parse-spec", EINVAL, "file name");
      S.files[S.nfiles++] = (struct file){ tok[0], tok[1] };
    }
    else if (!strcmp(tag, "rootro")) S.root_readonly = tok[0][0] == '1';
    else if (!strcmp(tag, "userns")) S.userns = tok[0][0] == '1';
    else if (!strcmp(tag, "lo")) S.lo_up = tok[0][0] == '1';
    else if (!strcmp(tag, "nnp")) S.nnp = tok[0][0] == '1';
    else if (!strcmp(tag, "terminal")) S.terminal = tok[0][0] == '1';
    else if (!strcmp(tag, "keepraw")) S.keepraw = tok[0][0] == '1';
    else if (!strcmp(tag, "capsheld")) S.caps_held = tok[0][0] == '1';
    else if (!strcmp(tag, "alldev")) S.all_devices = tok[0][0] == '1';
    else if (!strcmp(tag, "seccomp")) {
      if (strcmp(tok[0], "default") != 0) fail_code(125, "parse-spec", EINVAL, "seccomp");
      S.seccomp = 1;
    }
    else if (!strcmp(tag, "hostname")) S.hostname = tok[0];
    else if (!strcmp(tag, "cwd")) S.cwd = tok[0];
    else if (!strcmp(tag, "caps")) S.caps = parse_num(tok[0], "caps");
    else if (!strcmp(tag, "join")) S.join_pid = (pid_t)parse_num(tok[0], "join pid");
    else if (!strcmp(tag, "cgroup")) {
      if (S.ncgroups >= MAX_CGROUPS) fail_code(125, "parse-spec", E2BIG, "cgroups");
      S.cgroups[S.ncgroups++] = tok[0];
    }
    else if (!strcmp(tag, "detach")) S.detach = tok[0][0] == '1';
    else if (!strcmp(tag, "ns")) {
      if (S.njoin >= 16) fail_code(125, "parse-spec", E2BIG, "namespaces");
      S.join_ns[S.njoin++] = tok[0];
    }
    else if (!strcmp(tag, "mount")) {
      if (S.nmounts >= MAX_ITEMS) fail_code(125, "parse-spec", E2BIG, "mounts");
      S.mounts[S.nmounts++] = (struct mnt){ tok[0], tok[1], tok[2], tok[3] };
    } else if (!strcmp(tag, "device")) {
      if (S.devices == NULL && (S.devices = calloc(MAX_DEVICES, sizeof *S.devices)) == NULL) fail("parse-spec", "malloc");
      if (S.ndevices >= MAX_DEVICES) fail_code(125, "parse-spec", E2BIG, "devices");
      /* SECURITY: below /dev only, never through "..". */
      if (strncmp(tok[0], "/dev/", 5) != 0 || strstr(tok[0], "/..") != NULL || strstr(tok[0], "/./") != NULL) fail_code(125, "parse-spec", EINVAL, tok[0]);
      if (strcmp(tok[1], "c") != 0 && strcmp(tok[1], "b") != 0) fail_code(125, "parse-spec", EINVAL, "device type");
      S.devices[S.ndevices++] = (struct device){ tok[0], tok[1][0] == 'c' ? S_IFCHR : S_IFBLK, (mode_t)(parse_num(tok[4], "device mode") & 07777),
        (unsigned)parse_num(tok[2], "device major"), (unsigned)parse_num(tok[3], "device minor"), (unsigned)parse_num(tok[5], "device uid"), (unsigned)parse_num(tok[6], "device gid") };
    } else if (!strcmp(tag, "mask")) {
      if (S.nmasked >= MAX_ITEMS) fail_code(125, "parse-spec", E2BIG, "masked");
      S.masked[S.nmasked++] = tok[0];
    } else if (!strcmp(tag, "ropath")) {
      if (S.nropaths >= MAX_ITEMS) fail_code(125, "parse-spec", E2BIG, "readonly paths");
      S.ropaths[S.nropaths++] = tok[0];
    } else if (!strcmp(tag, "rlimit")) {
      if (S.nrlimits >= 64) fail_code(125, "parse-spec", E2BIG, "rlimits");
      S.rlimits[S.nrlimits++] = (struct rlim){ (int)parse_num(tok[0], "rlimit"), parse_num(tok[1], "rlimit"), parse_num(tok[2], "rlimit") };
    } else if (!strcmp(tag, "user")) {
      S.has_user = 1;
      S.uid = (unsigned)parse_num(tok[0], "uid");
      S.gid = (unsigned)parse_num(tok[1], "gid");
      char *p = tok[2];
      while (*p != '\0') {
        char *comma = strchr(p, ',');
        if (comma != NULL) *comma = '\0';
        if (S.ngroups >= 256) fail_code(125, "parse-spec", E2BIG, "groups");
        S.groups[S.ngroups++] = (gid_t)parse_num(p, "group");
        if (comma == NULL) break;
        p = comma + 1;
      }
    } else if (!strcmp(tag, "env")) {
      if (S.nenv >= MAX_ITEMS) fail_code(125, "parse-spec", E2BIG, "env");
      S.env[S.nenv++] = tok[0];
    } else if (!strcmp(tag, "arg")) {
      if (S.nargs >= MAX_ITEMS) fail_code(125, "parse-spec", E2BIG, "args");
      S.args[S.nargs++] = tok[0];
    } else fail_code(125, "parse-spec", EINVAL, tag);
  }
  if ((S.rootfs == NULL && S.join_pid <= 0) || S.nargs == 0 || S.cwd == NULL) fail_code(125, "parse-spec", EINVAL, "rootfs, cwd and args are required");
  S.env[S.nenv] = NULL;
  S.args[S.nargs] = NULL;
}

static void read_spec(void) {
  char *buf = malloc(MAX_SPEC);
  size_t len = 0;
  if (buf == NULL) fail("read-spec", "malloc");
  for (;;) {
    ssize_t n = read(SPEC_FD, buf + len, MAX_SPEC - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("read-spec", "fd 3");
    if (n == 0) break;
    len += (size_t)n;
    if (len == MAX_SPEC) fail_code(125, "read-spec", E2BIG, "spec larger than 4 MiB");
  }
  close(SPEC_FD);
  parse_spec(buf, len);
}

/* ---------- paths inside the new root (openat2 RESOLVE_IN_ROOT: symlinks cannot escape) ---------- */

static int open_in_root(int rootfd, const char *path, int flags) {
  struct open_how how = { .flags = (uint64_t)(flags | O_CLOEXEC), .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
  while (*path == '/') path++;
  if (*path == '\0') path = ".";
  return (int)syscall(SYS_openat2, rootfd, path, &how, sizeof how);
}

/* SECURITY: creates `dest` (a dir, or a file when !dir) below rootfd without following symlinks
 * out of the root, and returns an O_PATH fd of it. */
static int ensure_in_root(int rootfd, const char *dest, int dir) {
  char path[PATH_MAX];
  if (strlen(dest) >= sizeof path) fail_code(125, "mountpoint", ENAMETOOLONG, dest);
  strcpy(path, dest);
  int fd = open_in_root(rootfd, path, O_PATH);
  if (fd >= 0) return fd;
  if (errno != ENOENT) fail("mountpoint", dest);
  for (char *p = path + 1;; p++) {
    if (*p != '/' && *p != '\0') continue;
    char saved = *p;
    *p = '\0';
    int cfd = open_in_root(rootfd, path, O_PATH);
    if (cfd < 0 && errno == ENOENT) {
      char *slash = strrchr(path, '/');
      *slash = '\0';
      int parent = open_in_root(rootfd, path, O_PATH | O_DIRECTORY);
      *slash = '/';
      if (parent < 0) fail("mountpoint", path);
      const char *name = slash + 1;
      if (saved == '\0' && !dir) {
        int f = openat(parent, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (f < 0 && errno != EEXIST) fail("mountpoint", path);
        if (f >= 0) close(f);
      } else if (mkdirat(parent, name, 0755) < 0 && errno != EEXIST) {
        fail("mountpoint", path);
      }
      close(parent);
    } else if (cfd < 0) {
      fail("mountpoint", path);
    } else {
      close(cfd);
    }
    *p = saved;
    if (saved == '\0') break;
  }
  fd = open_in_root(rootfd, path, O_PATH);
  if (fd < 0) fail("mountpoint", dest);
  return fd;
}

static void fd_path(char *out, size_t size, int fd) {
  snprintf(out, size, "/proc/self/fd/%d", fd);
}

/* ---------- mounts ---------- */

struct flagname { const char *name; unsigned long set, clear; };
static const struct flagname FLAGS[] = {
  {"ro", MS_RDONLY, 0}, {"rw", 0, MS_RDONLY}, {"nosuid", MS_NOSUID, 0}, {"suid", 0, MS_NOSUID},
  {"nodev", MS_NODEV, 0}, {"dev", 0, MS_NODEV}, {"noexec", MS_NOEXEC, 0}, {"exec", 0, MS_NOEXEC},
  {"sync", MS_SYNCHRONOUS, 0}, {"async", 0, MS_SYNCHRONOUS}, {"dirsync", MS_DIRSYNC, 0},
  {"noatime", MS_NOATIME, 0}, {"atime", 0, MS_NOATIME}, {"nodiratime", MS_NODIRATIME, 0},
  {"diratime", 0, MS_NODIRATIME}, {"relatime", MS_RELATIME, 0}, {"norelatime", 0, MS_RELATIME},
  {"strictatime", MS_STRICTATIME, 0}, {"nostrictatime", 0, MS_STRICTATIME},
  {"bind", MS_BIND, 0}, {"rbind", MS_BIND | MS_REC, 0},
};
static const struct flagname PROPAGATION[] = {
  {"private", MS_PRIVATE, 0}, {"rprivate", MS_PRIVATE | MS_REC, 0}, {"slave", MS_SLAVE, 0},
  {"rslave", MS_SLAVE | MS_REC, 0}, {"shared", MS_SHARED, 0}, {"rshared", MS_SHARED | MS_REC, 0},
  {"unbindable", MS_UNBINDABLE, 0}, {"runbindable", MS_UNBINDABLE | MS_REC, 0},
};

/* Splits "a,b,c" into mount flags, propagation flags and the remaining fs data. */
static void split_options(const char *opts, unsigned long *flags, unsigned long *prop, char *data, size_t size) {
  char copy[4096];
  *flags = 0; *prop = 0; data[0] = '\0';
  if (strlen(opts) >= sizeof copy) fail_code(125, "mount-options", E2BIG, opts);
  strcpy(copy, opts);
  for (char *save = NULL, *o = strtok_r(copy, ",", &save); o != NULL; o = strtok_r(NULL, ",", &save)) {
    int known = 0;
    for (size_t i = 0; i < sizeof FLAGS / sizeof FLAGS[0]; i++) {
      if (!strcmp(o, FLAGS[i].name)) { *flags = (*flags | FLAGS[i].set) & ~FLAGS[i].clear; known = 1; }
    }
    for (size_t i = 0; i < sizeof PROPAGATION / sizeof PROPAGATION[0]; i++) {
      if (!strcmp(o, PROPAGATION[i].name)) { *prop |= PROPAGATION[i].set; known = 1; }
    }
    if (known) continue;
    if (strlen(data) + strlen(o) + 2 > size) fail_code(125, "mount-options", E2BIG, opts);
    if (data[0] != '\0') strcat(data, ",");
    strcat(data, o);
  }
}

/* Flags a remount must keep (the kernel locks them in a user namespace). */
static unsigned long locked_flags(const char *path) {
  struct statvfs st;
  if (statvfs(path, &st) < 0) fail("statvfs", path);
  unsigned long f = 0;
  if (st.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (st.f_flag & ST_NODEV) f |= MS_NODEV;
  if (st.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (st.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (st.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (st.f_flag & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

static void remount_bind(const char *target, unsigned long flags, const char *what) {
  if (mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | flags | locked_flags(target), NULL) < 0) fail("remount-bind", what);
}

/* SECURITY: nodev on the submounts an rbind brought along too (a remount changes only the top mount,
 * so `-v /:/host` would keep /host/dev's nodes usable). mount_setattr (Linux 5.12+) does the whole
 * tree; older kernels: each submount listed below target in mountinfo is remounted. */
static void nodev_submounts(const char *target, const char *what) {
  struct mount_attr attr = { .attr_set = MOUNT_ATTR_NODEV };
  if (mount_setattr(AT_FDCWD, target, AT_RECURSIVE, &attr, sizeof attr) == 0) return;
  if (errno != ENOSYS) fail("nodev-submounts", what);
  /* target may be a /proc/self/fd/N path: mountinfo names the real one. */
  char real[PATH_MAX];
  ssize_t rl = readlink(target, real, sizeof real - 1);
  if (rl > 0) real[rl] = '\0';
  else snprintf(real, sizeof real, "%s", target);
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (f == NULL) fail("read-mountinfo", what);
  size_t tlen = strlen(real);
  char line[8192];
  while (fgets(line, sizeof line, f) != NULL) {
    char mp[PATH_MAX];
    /* Fields: id parent major:minor root mountpoint ... (octal escapes such as \040 for spaces). */
    if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1) continue;
    char *w = mp;
    for (char *r = mp; *r; ) {
      if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] && r[3]) { *w++ = (char)strtol((char[]){ r[1], r[2], r[3], 0 }, NULL, 8); r += 4; }
      else *w++ = *r++;
    }
    *w = '\0';
    if (strncmp(mp, real, tlen) == 0 && mp[tlen] == '/') remount_bind(mp, MS_NODEV, what);
  }
  fclose(f);
}

/* The host devices of a privileged sandbox (the standard nodes already there are kept): mknod as
 * real root; in a user namespace (or without CAP_MKNOD) bind mounts of the host's nodes, and a node
 * that cannot be bound is left out, as podman does. Runs before pivot_root: the host's /dev is /dev. */
static void add_devices(int rootfd) {
  for (int i = 0; i < S.ndevices; i++) {
    const struct device *d = &S.devices[i];
    char parent[PATH_MAX], tgt[64];
    if (strlen(d->path) >= sizeof parent) continue;
    strcpy(parent, d->path);
    char *slash = strrchr(parent, '/');
    *slash = '\0';
    const char *name = d->path + (slash - parent) + 1;
    int pfd = ensure_in_root(rootfd, parent, 1);
    if (!S.userns && mknodat(pfd, name, d->type | d->mode, makedev(d->maj, d->min)) == 0) {
      if (fchownat(pfd, name, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0 || fchmodat(pfd, name, d->mode, 0) < 0) fail("chmod-device", d->path);
    } else if (S.userns || errno == EPERM) {
      int f = openat(pfd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (f >= 0) {
        fd_path(tgt, sizeof tgt, f);
        int rc = mount(d->path, tgt, NULL, MS_BIND, NULL);
        close(f);
        if (rc < 0) unlinkat(pfd, name, 0);
      }
    } else if (errno != EEXIST) {
      fail("mknod", d->path);
    }
    close(pfd);
  }
}

/* Device nodes of a fresh /dev: mknod as real root when privileged, else bind mounts of the host's
 * nodes (in a user namespace mknod is refused; otherwise /dev is nodev, and only these binds, which
 * keep the host /dev's flags, open as devices). */
static void populate_dev(int rootfd) {
  static const struct { const char *name; unsigned maj, min; } devs[] = {
    {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
  };
  static const struct { const char *name, *target; } links[] = {
    {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
    {"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"},
  };
  int devfd = open_in_root(rootfd, "/dev", O_PATH | O_DIRECTORY);
  if (devfd < 0) fail("open-dev", "/dev");
  for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) {
    char host[64], tgt[64];
    if (!S.userns && S.all_devices) {
      if (mknodat(devfd, devs[i].name, S_IFCHR | 0666, makedev(devs[i].maj, devs[i].min)) == 0) {
        if (fchmodat(devfd, devs[i].name, 0666, 0) < 0) fail("chmod-device", devs[i].name);
        continue;
      }
      if (errno != EPERM) fail("mknod", devs[i].name);
    }
    int f = openat(devfd, devs[i].name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
    if (f < 0) fail("create-device", devs[i].name);
    snprintf(host, sizeof host, "/dev/%s", devs[i].name);
    fd_path(tgt, sizeof tgt, f);
    if (mount(host, tgt, NULL, MS_BIND, NULL) < 0) fail("bind-device", host);
    close(f);
  }
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
    if (symlinkat(links[i].target, devfd, links[i].name) < 0) fail("symlink-dev", links[i].name);
  }
  close(devfd);
  add_devices(rootfd);
}

/* The O_PATH fd of a mountpoint names what was below the new mount: reopen to reach the mount. */
static void reopen_mounted(int rootfd, const char *dest, int *fd, char *target, size_t size) {
  close(*fd);
  *fd = open_in_root(rootfd, dest, O_PATH);
  if (*fd < 0) fail("reopen-mount", dest);
  fd_path(target, size, *fd);
}

static void do_mount(int rootfd, const struct mnt *m) {
  unsigned long flags, prop;
  char data[4096], target[64];
  split_options(m->options, &flags, &prop, data, sizeof data);
  /* SECURITY: without a device cgroup, nodev is what keeps a container's root (CAP_MKNOD, as docker)
   * from opening a host disk through a node it made, or one an image layer carried. */
  if (!S.all_devices && strcmp(m->type, "devpts") != 0) flags |= MS_NODEV;
  int is_bind = !strcmp(m->type, "bind") || (flags & MS_BIND);
  int dir = 1;
  if (is_bind) {
    struct stat st;
    if (stat(m->source, &st) < 0) fail("bind-source", m->source);
    dir = S_ISDIR(st.st_mode);
  }
  int fd = ensure_in_root(rootfd, m->dest, dir);
  fd_path(target, sizeof target, fd);
  if (is_bind) {
    if (mount(m->source, target, NULL, MS_BIND | (flags & MS_REC), NULL) < 0) fail("bind-mount", m->dest);
    reopen_mounted(rootfd, m->dest, &fd, target, sizeof target);
    unsigned long extra = flags & ~(MS_BIND | MS_REC);
    if (extra != 0) remount_bind(target, extra, m->dest);
    if ((flags & MS_REC) && (flags & MS_NODEV)) nodev_submounts(target, m->dest);
  } else {
    int rc = mount(m->source, target, m->type, flags, data[0] ? data : NULL);
    if (rc < 0 && !strcmp(m->type, "devpts") && (errno == EINVAL || errno == EPERM) && strstr(data, "gid=") != NULL) {
      /* gid 5 (tty) is not mapped in a single-id user namespace: mount without it. */
      char *g = strstr(data, "gid=");
      char *end = strchr(g, ',');
      if (end != NULL) memmove(g, end + 1, strlen(end + 1) + 1);
      else { *g = '\0'; if (g > data && g[-1] == ',') g[-1] = '\0'; }
      rc = mount(m->source, target, m->type, flags, data[0] ? data : NULL);
    }
    if (rc < 0 && !strcmp(m->type, "sysfs") && (errno == EPERM || errno == EACCES)) {
      /* A user namespace that does not own the network namespace cannot mount sysfs: bind the host's. */
      rc = mount("/sys", target, NULL, MS_BIND | MS_REC, NULL);
      if (rc == 0 && (flags & MS_RDONLY)) {
        reopen_mounted(rootfd, m->dest, &fd, target, sizeof target);
        remount_bind(target, MS_RDONLY, m->dest);
      }
    }
    if (rc < 0) fail("mount", m->dest);
    reopen_mounted(rootfd, m->dest, &fd, target, sizeof target);
    if (!strcmp(m->dest, "/dev") && !strcmp(m->type, "tmpfs")) populate_dev(rootfd);
  }
  if (prop != 0 && mount(NULL, target, NULL, prop, NULL) < 0) fail("mount-propagation", m->dest);
  close(fd);
}

static void mask_paths(void) {
  for (int i = 0; i < S.nmasked; i++) {
    struct stat st;
    const char *p = S.masked[i];
    if (lstat(p, &st) < 0) {
      if (errno == ENOENT) continue;
      fail("mask-path", p);
    }
    int rc = S_ISDIR(st.st_mode) ? mount("tmpfs", p, "tmpfs", MS_RDONLY, NULL) : mount("/dev/null", p, NULL, MS_BIND, NULL);
    if (rc < 0) fail("mask-path", p);
  }
  for (int i = 0; i < S.nropaths; i++) {
    const char *p = S.ropaths[i];
    if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) {
      if (errno == ENOENT) continue;
      fail("readonly-path", p);
    }
    remount_bind(p, MS_RDONLY | MS_REC, p);
  }
}

/* A copy of the comma-separated mount data without the option `opt`, or NULL when it is absent. */
static char *without_option(const char *data, const char *opt) {
  size_t n = strlen(data), len = strlen(opt);
  char *out = malloc(n + 1);
  if (out == NULL) return NULL;
  size_t o = 0;
  int found = 0;
  for (const char *p = data; *p != '\0';) {
    const char *end = strchr(p, ',');
    size_t l = end == NULL ? strlen(p) : (size_t)(end - p);
    if (l == len && strncmp(p, opt, len) == 0) {
      found = 1;
    } else {
      if (o > 0) out[o++] = ',';
      memcpy(out + o, p, l);
      o += l;
    }
    p += l;
    if (*p == ',') p++;
  }
  out[o] = '\0';
  if (!found) {
    free(out);
    return NULL;
  }
  return out;
}

/* Mounts the overlay root; with an overlay dir its relative lowerdirs resolve from there (a long
 * layer chain fits mount(2)'s one page of data only as short relative paths). */
static void mount_overlay(void) {
  long page = sysconf(_SC_PAGESIZE);
  if (page > 0 && strlen(S.overlay_opts) >= (size_t)page) fail_code(125, "mount-overlay", E2BIG, "overlay mount data longer than one page");
  int oldcwd = -1;
  if (S.overlay_dir != NULL) {
    if (S.rootfs[0] != '/') fail_code(125, "mount-overlay", EINVAL, "the overlay mountpoint must be absolute with an overlay dir");
    oldcwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (oldcwd < 0) fail("save-cwd", "overlay");
    if (chdir(S.overlay_dir) < 0) fail("chdir-overlay-dir", S.overlay_dir);
  }
  unsigned long flags = S.all_devices ? 0 : MS_NODEV;
  if (mount("overlay", S.rootfs, "overlay", flags, S.overlay_opts) < 0) {
    /* `volatile` (Linux 5.10+: no sync of the upper file system at unmount, for an upper used once)
     * is an optimisation only: a kernel that refuses it gets the same mount without. */
    char *plain = errno == EINVAL ? without_option(S.overlay_opts, "volatile") : NULL;
    if (plain == NULL || mount("overlay", S.rootfs, "overlay", flags, plain) < 0) fail("mount-overlay", S.rootfs);
    free(plain);
  }
  if (oldcwd >= 0) {
    if (fchdir(oldcwd) < 0) fail("restore-cwd", "overlay");
    close(oldcwd);
  }
}

/* The generated files (/etc/hosts, /etc/hostname, /etc/resolv.conf) live on a tmpfs mounted over
 * files_dir in this mount namespace only: nothing per sandbox is written to (or left on) the host,
 * and the mounts that bind them into the root name files_dir/<name> as their source. */
static void write_files(void) {
  if (mount("tmpfs", S.files_dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=1m") < 0) fail("mount-files", S.files_dir);
  int dir = open(S.files_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) fail("open-files", S.files_dir);
  for (int i = 0; i < S.nfiles; i++) {
    int fd = openat(dir, S.files[i].name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) fail("write-file", S.files[i].name);
    if (write_all(fd, S.files[i].content, strlen(S.files[i].content)) < 0 || fchmod(fd, 0644) < 0) fail("write-file", S.files[i].name);
    close(fd);
  }
  close(dir);
}

static void setup_rootfs(void) {
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail("make-root-private", "/");
  if (S.files_dir != NULL) write_files();
  if (S.overlay_opts != NULL) {
    mount_overlay();
  } else {
    if (mount(S.rootfs, S.rootfs, NULL, MS_BIND | MS_REC, NULL) < 0) fail("bind-rootfs", S.rootfs);
    if (!S.all_devices) {
      remount_bind(S.rootfs, MS_NODEV, S.rootfs);
      nodev_submounts(S.rootfs, S.rootfs);
    }
  }
  int rootfd = open(S.rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) fail("open-rootfs", S.rootfs);
  for (int i = 0; i < S.nmounts; i++) do_mount(rootfd, &S.mounts[i]);
  if (fchdir(rootfd) < 0) fail("chdir-rootfs", S.rootfs);
  close(rootfd);
  if (syscall(SYS_pivot_root, ".", ".") < 0) fail("pivot-root", S.rootfs);
  if (umount2(".", MNT_DETACH) < 0) fail("unmount-old-root", "/");
  if (chdir("/") < 0) fail("chdir", "/");
  mask_paths();
  if (S.root_readonly) remount_bind("/", MS_RDONLY, "/");
}

/* Creates the working directory (and parents) inside the new root, as Docker and runc do. */
static void make_cwd(void) {
  char path[PATH_MAX];
  if (strlen(S.cwd) >= sizeof path) fail_code(125, "chdir", ENAMETOOLONG, S.cwd);
  strcpy(path, S.cwd);
  for (char *p = path + 1;; p++) {
    if (*p != '/' && *p != '\0') continue;
    char saved = *p;
    *p = '\0';
    if (mkdir(path, 0755) < 0 && errno != EEXIST) fail("mkdir-cwd", path);
    *p = saved;
    if (saved == '\0') break;
  }
}

static void bring_lo_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) fail("socket", "lo");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) fail("get-if-flags", "lo");
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) fail("set-if-flags", "lo");
  close(s);
}

/* ---------- credentials ---------- */

static int setgroups_denied(void) {
  char buf[16] = {0};
  int fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  return n > 0 && strncmp(buf, "deny", 4) == 0;
}

static void apply_credentials(void) {
  for (int i = 0; i < S.nrlimits; i++) {
    struct rlimit rl = { S.rlimits[i].soft, S.rlimits[i].hard };
    if (setrlimit(S.rlimits[i].resource, &rl) < 0) {
      /* Rootless cannot raise a hard limit: clamp to the current hard limit. */
      struct rlimit cur;
      if (errno != EPERM || getrlimit(S.rlimits[i].resource, &cur) < 0) fail("setrlimit", "rlimit");
      if (rl.rlim_max > cur.rlim_max) rl.rlim_max = cur.rlim_max;
      if (rl.rlim_cur > rl.rlim_max) rl.rlim_cur = rl.rlim_max;
      if (setrlimit(S.rlimits[i].resource, &rl) < 0) fail("setrlimit", "rlimit");
    }
  }
  if (S.caps_held) {
    /* Privileged: only the capabilities this process holds (a root that lacks some cannot give them). */
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct held[2];
    if (syscall(SYS_capget, &h, held) < 0) fail("capget", "capabilities");
    S.caps &= (uint64_t)held[0].permitted | ((uint64_t)held[1].permitted << 32);
  }
  for (int cap = 0; cap <= 63; cap++) {
    if (S.caps & (1ULL << cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
      if (errno == EINVAL) break; /* past the kernel's last capability */
      fail("drop-bounding-cap", "capability");
    }
  }
  /* While still root of the namespace (CAP_SYS_ADMIN: the filter needs no no_new_privs then); the
   * filter allows what follows (setgroups, setresuid, capset, prctl, execve). */
  if (S.seccomp && seccomp_install_default(S.caps) < 0) fail("seccomp", "filter");
  if (setgroups((size_t)S.ngroups, S.groups) < 0) {
    if (!(errno == EPERM && S.ngroups == 0 && setgroups_denied())) fail("setgroups", "additional groups");
  }
  if (setresgid(S.gid, S.gid, S.gid) < 0) fail("setgid", "gid");
  if (setresuid(S.uid, S.uid, S.uid) < 0) fail("setuid", "uid");
  struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (S.uid == 0) {
    data[0].effective = data[0].permitted = (uint32_t)S.caps;
    data[1].effective = data[1].permitted = (uint32_t)(S.caps >> 32);
  }
  if (syscall(SYS_capset, &hdr, data) < 0) fail("capset", "capabilities");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) fail("clear-ambient-caps", "capabilities");
  if (S.nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail("no-new-privs", "prctl");
}

/* Runs args[0], searched in the container's PATH when it has no slash. Never returns. */
static void __attribute__((noreturn)) exec_command(void) {
  const char *cmd = S.args[0];
  if (strchr(cmd, '/') != NULL) {
    execve(cmd, S.args, S.env);
    fail_code(errno == ENOENT ? 127 : 126, "exec", errno, cmd);
  }
  const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (int i = 0; i < S.nenv; i++) if (!strncmp(S.env[i], "PATH=", 5)) path = S.env[i] + 5;
  int last = ENOENT;
  const char *p = path;
  for (;;) {
    const char *colon = strchr(p, ':');
    size_t dlen = colon == NULL ? strlen(p) : (size_t)(colon - p);
    char full[PATH_MAX];
    if (dlen + strlen(cmd) + 2 < sizeof full) {
      snprintf(full, sizeof full, "%.*s/%s", (int)dlen, dlen == 0 ? "." : p, cmd);
      execve(full, S.args, S.env);
      if (errno != ENOENT && errno != ENOTDIR) last = errno;
    }
    if (colon == NULL) break;
    p = colon + 1;
  }
  char detail[PATH_MAX + 64];
  snprintf(detail, sizeof detail, "%s (searched PATH=%s)", cmd, path);
  fail_code(last == ENOENT ? 127 : 126, "exec", last, detail);
}

/* ---------- terminal: a pty from the container's own devpts, relayed by the launcher ---------- */

static void send_fd(int sock, int fd) {
  char byte = 't';
  struct iovec iov = { &byte, 1 };
  union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  if (sendmsg(sock, &msg, 0) < 0) fail("send-pty", "pty master");
}

/* Returns the received fd, or -1 when the child ended without sending one. */
static int recv_fd(int sock) {
  char byte;
  struct iovec iov = { &byte, 1 };
  union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } ctl;
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
  ssize_t n;
  do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); while (n < 0 && errno == EINTR);
  struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
  if (c == NULL || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

/* In the child: a new session whose controlling terminal is a pty of the container's devpts. */
static void setup_terminal(void) {
  int master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) fail("open-ptmx", "/dev/pts/ptmx");
  int unlock = 0;
  if (ioctl(master, TIOCSPTLCK, &unlock) < 0) fail("unlock-pty", "/dev/pts/ptmx");
  int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
  if (slave < 0) fail("open-pty-peer", "/dev/pts");
  if (setsid() < 0) fail("setsid", "terminal");
  if (ioctl(slave, TIOCSCTTY, 0) < 0) fail("set-controlling-tty", "terminal");
  for (int fd = 0; fd <= 2; fd++) if (dup2(slave, fd) < 0) fail("dup-pty", "terminal");
  if (slave > 2) close(slave);
  send_fd(term_sock[1], master);
  close(master);
  /* Wait for EOF: the launcher closes its end once it gave the pty the caller's window size, so
   * the command never sees the pty's initial 0x0 size (a `stty size` racing the relay). */
  close(term_sock[0]);
  char byte;
  ssize_t n;
  do n = read(term_sock[1], &byte, 1); while (n < 0 && errno == EINTR);
  close(term_sock[1]);
}

static void on_winch(int sig) { (void)sig; winch = 1; }

/* The size comes from our stdin's terminal, else (-t without -i) from our stderr's: the
 * container's stderr is the pty, so a terminal there is only the caller's, for its size. */
static void copy_size(int master) {
  struct winsize ws;
  int from = isatty(0) ? 0 : isatty(2) ? 2 : -1;
  if (from >= 0 && ioctl(from, TIOCGWINSZ, &ws) == 0) ioctl(master, TIOCSWINSZ, &ws);
}

static int write_all(int fd, const char *buf, ssize_t n) {
  while (n > 0) {
    ssize_t w = write(fd, buf, (size_t)n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    buf += w;
    n -= w;
  }
  return 0;
}

/* In the launcher: relays stdin -> pty and pty -> stdout until the container's side closes. */
static void relay_terminal(int master) {
  struct termios saved;
  int raw = isatty(0) && tcgetattr(0, &saved) == 0;
  if (raw) {
    struct termios t = saved;
    cfmakeraw(&t);
    if (tcsetattr(0, TCSANOW, &t) < 0) raw = 0;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_winch;
  sigaction(SIGWINCH, &sa, NULL);
  copy_size(master);
  char buf[16384];
  int in_open = 1;
  for (;;) {
    if (winch) { winch = 0; copy_size(master); }
    struct pollfd p[2] = { { master, POLLIN, 0 }, { 0, POLLIN, 0 } };
    if (poll(p, in_open ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = read(master, buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;                   /* EIO: every slave is closed */
      if (write_all(1, buf, r) < 0) break;
    }
    if (in_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t r = read(0, buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        in_open = 0;
        write_all(master, "\x04", 1);      /* EOF on stdin: ^D for the terminal's reader */
      } else if (write_all(master, buf, r) < 0) {
        in_open = 0;
      }
    }
  }
  /* keepraw: our caller forwards our output and restores its terminal after writing all of it. */
  if (raw && !S.keepraw) tcsetattr(0, TCSANOW, &saved);
  close(master);
}

/* Moves the calling process into a cgroup by writing "0" into `file` (its cgroup.procs, or a v1 "tasks"
 * file for this single-threaded process, which takes no grace period); fails at step join-cgroup. */
static void join_cgroup(const char *file) {
  int fd = open(file, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, "0", 1) != 1) fail("join-cgroup", file);
  close(fd);
}

/* Waits for the parent's next byte on the go pipe ('m' or 'g'; EOF: the parent is gone or gave up). */
static char wait_for_parent(void) {
  char go;
  ssize_t n;
  do n = read(GO_FD, &go, 1); while (n < 0 && errno == EINTR);
  if (n != 1 || (go != 'm' && go != 'g')) fail_code(125, "wait-for-parent", n < 0 ? errno : ECANCELED, "the parent did not release the sandbox");
  return go;
}

static void __attribute__((noreturn)) run_child(void) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) fail("pdeathsig", "child");
  /* Two releases: 'm' once the id maps are written (files can then be made with mapped ids; sent
   * only with a user namespace), 'g' once the cgroup is joined and the parent's hooks ran. The
   * file system is set up in between, while the parent attaches the cgroup when the child does not
   * join it itself (cgroup v2: the attach waits for an RCU grace period): nothing of the command runs before 'g'. */
  char released = S.userns ? wait_for_parent() : 'm';   /* a parent may also send 'g' at once */
  /* Into the sandbox's cgroup before anything else: a process moving only itself through a v1 "tasks" file
   * skips the lock every other attach takes (cgroup_threadgroup_rwsem, which waits for an RCU grace period,
   * 7-35 ms), and the command's processes are then born in it. */
  for (int i = 0; i < S.ncgroups; i++) join_cgroup(S.cgroups[i]);
  if (S.hostname != NULL && sethostname(S.hostname, strlen(S.hostname)) < 0) fail("sethostname", S.hostname);
  setup_rootfs();
  if (S.terminal) setup_terminal();
  if (S.lo_up) bring_lo_up();
  if (released != 'g' && wait_for_parent() != 'g') fail_code(125, "wait-for-parent", EPROTO, "the parent released the sandbox twice");
  close(GO_FD);
  /* The cgroup namespace is entered only now, after the parent moved us into our cgroup, so
   * that cgroup becomes the namespace's root (as /proc/self/cgroup shows "/"). */
  if ((S.clone_flags & CLONE_NEWCGROUP) && unshare(CLONE_NEWCGROUP) < 0) fail("unshare-cgroup", "cgroup namespace");
  if (S.cwd[0] != '/') fail_code(125, "chdir", EINVAL, S.cwd);
  if (strcmp(S.cwd, "/") != 0) make_cwd();
  apply_credentials();
  /* Credential changes clear the parent-death signal: set it again right before exec. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) fail("pdeathsig", "child");
  if (chdir(S.cwd) < 0) fail("chdir", S.cwd);
  exec_command();
}

static void forward_signal(int sig) {
  if (child_pid > 0) kill(child_pid, sig);
}

/* In the launcher after the fork: forwards signals, relays the terminal, reports how the child ended. */
static int supervise(pid_t pid, int exec_pipe) {
  child_pid = pid;
  close(GO_FD);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward_signal;
  int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    if (sigaction(sigs[i], &sa, NULL) < 0) fail("sigaction", "forward signals");
  }
  report("pid %d", pid);
  int status;
  if (exec_pipe >= 0) {
    /* Detached: EOF on the close-on-exec pipe means the command was exec'd (or the child died). */
    if (S.terminal) { close(term_sock[0]); close(term_sock[1]); }  /* no relay: the child waits on no size */
    char byte;
    ssize_t n;
    do n = read(exec_pipe, &byte, 1); while (n < 0 && errno == EINTR);
    close(exec_pipe);
    if (waitpid(pid, &status, WNOHANG) != pid) {
      report("detached");
      return 0;
    }
  } else {
    if (S.terminal) {
      close(term_sock[1]);
      int master = recv_fd(term_sock[0]);
      if (master >= 0) copy_size(master);
      close(term_sock[0]);                   /* EOF: the child goes on, the size set */
      if (master >= 0) relay_terminal(master);
    }
    while (waitpid(pid, &status, 0) < 0) {
      if (errno != EINTR) fail("waitpid", "child");
    }
  }
  /* slirp4netns served only the child: it starts to end now, while tsbuild reads the status. */
  if (slirp_exit >= 0) { close(slirp_exit); slirp_exit = -1; }
  if (WIFSIGNALED(status)) {
    report("signal %d", WTERMSIG(status));
    return 128 + WTERMSIG(status);
  }
  report("exit %d", WEXITSTATUS(status));
  return WEXITSTATUS(status);
}

/* ---------- join mode: enter the namespaces of a running process (like nsenter) ---------- */

static const struct { const char *name; int flag; } JOIN_NS[] = {
  /* The user namespace first: joining it gives the capabilities the others need. */
  {"user", CLONE_NEWUSER}, {"cgroup", CLONE_NEWCGROUP}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS},
  {"net", CLONE_NEWNET}, {"pid", CLONE_NEWPID}, {"mnt", CLONE_NEWNS},
};

static int wants_ns(const char *name) {
  for (int i = 0; i < S.njoin; i++) if (!strcmp(S.join_ns[i], name)) return 1;
  return 0;
}

/* The container's v1 cgroup "tasks" files (spec "cgroup"), opened before the namespaces are entered: the joining
 * process writes "0" into them itself (a task moving only itself takes no grace period; see run_child). */
static int cgroup_fds[MAX_CGROUPS];

static void __attribute__((noreturn)) join_child(int exec_pipe) {
  char go;
  if (exec_pipe >= 0) close(exec_pipe);
  else if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) fail("pdeathsig", "child");
  for (int i = 0; i < S.ncgroups; i++) {
    if (write(cgroup_fds[i], "0", 1) != 1) fail("join-cgroup", S.cgroups[i]);
    close(cgroup_fds[i]);
  }
  ssize_t n;
  do n = read(GO_FD, &go, 1); while (n < 0 && errno == EINTR);
  if (n != 1) fail_code(125, "wait-for-parent", n < 0 ? errno : ECANCELED, "the parent did not release the process");
  close(GO_FD);
  if (S.detach && setsid() < 0) fail("setsid", "detach");
  if (S.terminal) setup_terminal();
  if (S.cwd[0] != '/') fail_code(125, "chdir", EINVAL, S.cwd);
  if (S.has_user) {
    apply_credentials();
  } else {
    /* no_new_privs first: with it the filter needs no CAP_SYS_ADMIN. */
    if (S.nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail("no-new-privs", "prctl");
    if (S.seccomp && seccomp_install_default(S.caps) < 0) fail("seccomp", "filter");
  }
  if (!S.detach && prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) fail("pdeathsig", "child");
  if (chdir(S.cwd) < 0) fail("chdir", S.cwd);
  exec_command();
}

static int join_main(void) {
  /* SECURITY: once in the container's user namespace, its processes must not ptrace or open our memory. */
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) fail("set-dumpable", "launcher");
  for (int i = 0; i < S.njoin; i++) {
    int known = 0;
    for (size_t k = 0; k < sizeof JOIN_NS / sizeof JOIN_NS[0]; k++) known |= !strcmp(S.join_ns[i], JOIN_NS[k].name);
    if (!known) fail_code(125, "parse-spec", EINVAL, S.join_ns[i]);
  }
  /* Every fd is opened before the first setns: afterwards /proc (and /sys) may be the container's. */
  for (int i = 0; i < S.ncgroups; i++) {
    if ((cgroup_fds[i] = open(S.cgroups[i], O_WRONLY | O_CLOEXEC)) < 0) fail("join-cgroup", S.cgroups[i]);
  }
  int fds[sizeof JOIN_NS / sizeof JOIN_NS[0]];
  char path[64], self[64];
  for (size_t k = 0; k < sizeof JOIN_NS / sizeof JOIN_NS[0]; k++) {
    fds[k] = -1;
    if (!wants_ns(JOIN_NS[k].name)) continue;
    snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)S.join_pid, JOIN_NS[k].name);
    snprintf(self, sizeof self, "/proc/self/ns/%s", JOIN_NS[k].name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail_code(125, "open-namespace", errno, path);
    struct stat a, b;
    /* Already a member (no user namespace, host network): setns would fail or change nothing. */
    if (fstat(fd, &a) == 0 && stat(self, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
      close(fd);
      continue;
    }
    fds[k] = fd;
  }
  int rootfd = -1;
  if (wants_ns("mnt")) {
    snprintf(path, sizeof path, "/proc/%d/root", (int)S.join_pid);
    rootfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) fail("open-root", path);
  }
  for (size_t k = 0; k < sizeof JOIN_NS / sizeof JOIN_NS[0]; k++) {
    if (fds[k] < 0) continue;
    if (setns(fds[k], JOIN_NS[k].flag) < 0) fail("setns", JOIN_NS[k].name);
    close(fds[k]);
  }
  if (rootfd >= 0) {
    if (fchdir(rootfd) < 0) fail("chdir-root", "container root");
    if (chroot(".") < 0) fail("chroot", "container root");
    close(rootfd);
  }
  if (S.terminal && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, term_sock) < 0) fail("socketpair", "terminal");
  int exec_pipe[2] = { -1, -1 };
  if (S.detach && pipe2(exec_pipe, O_CLOEXEC) < 0) fail("pipe", "detach");
  pid_t pid = fork();
  if (pid < 0) fail("fork", "join");
  if (pid == 0) join_child(exec_pipe[0] >= 0 ? exec_pipe[0] : -1);
  for (int i = 0; i < S.ncgroups; i++) close(cgroup_fds[i]);
  if (exec_pipe[1] >= 0) close(exec_pipe[1]);
  return supervise(pid, exec_pipe[0]);
}

/* Run or join mode on fds 0-5: from main, or in a launcher forked by the zygote (zygote.c). */
static int run_main(void) {
  if (fcntl(STATUS_FD, F_SETFD, FD_CLOEXEC) < 0) _exit(125);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) fail("pdeathsig", "launcher");
  /* No getppid() check: tsbuild may itself be PID 1 (in a CI container). If the parent is already
   * gone, the go pipe reads EOF and the child stops before exec. */
  read_spec();
  if (S.join_pid > 0) return join_main();
  if (S.terminal && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, term_sock) < 0) fail("socketpair", "terminal");
  unsigned long flags = S.clone_flags & ~(unsigned long)CLONE_NEWCGROUP;
  /* SECURITY: an early network namespace only stands in for a new one (never for the host's). */
  if (early_netns) {
    if (!(flags & CLONE_NEWNET) || (flags & CLONE_NEWUSER)) fail_code(125, "parse-spec", EINVAL, "an early network namespace needs a spec with a new one and no user namespace");
    flags &= ~(unsigned long)CLONE_NEWNET;
  }
  /* Before the clone: a child released with its spec (no 'g' to wait for) would otherwise start without its network. */
  if (slirp_pid > 0) wait_slirp_ready();
  pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
  if (pid < 0) fail("clone", "namespaces");
  if (pid == 0) run_child();
  return supervise(pid, -1);
}

/* ---------- slirp4netns for an early network namespace ("--slirp4netns") ---------- */

/* Starts slirp4netns (args: FILE ARGV0 ARG..., its command line as tsbuild's network-slirp.ts makes it for
 * "--netns-type=path /proc/self/fd/5") for this launcher's new network namespace: fd 3 its ready pipe, fd 4
 * its exit pipe, fd 5 the namespace, stderr a memfd; it runs in the host's namespace `host_ns` (closed here),
 * with no environment, and is killed if this launcher dies first. Reports "slirp PID". */
static void start_slirp(int host_ns, char **args) {
  if (args[0] == NULL || args[1] == NULL) fail_code(125, "arguments", EINVAL, "--slirp4netns FILE ARGV0 ARG...");
  int ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (ns < 0) fail("slirp4netns", "open the network namespace");
  int ready[2], ex[2];
  if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(ex, O_CLOEXEC) < 0) fail("slirp4netns", "pipe");
  slirp_log = memfd_create("slirp4netns-stderr", MFD_CLOEXEC);
  if (slirp_log < 0) fail("slirp4netns", "memfd_create");
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) fail("slirp4netns", "/dev/null");
  pid_t launcher = getpid();
  pid_t pid = fork();
  if (pid < 0) fail("slirp4netns", "fork");
  if (pid == 0) {
    /* Every source fd is above 5 (opened after the launcher's 0-5): the dup2s below never clobber one another. */
    if (setns(host_ns, CLONE_NEWNET) < 0 ||
        dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(slirp_log, 2) < 0 ||
        dup2(ready[1], 3) < 0 || dup2(ex[0], 4) < 0 || dup2(ns, 5) < 0) {
      dprintf(slirp_log, "tsbuild-launcher: cannot set up slirp4netns: %s\n", strerror(errno));
      _exit(127);
    }
    /* Killed with this launcher (also on SIGKILL, when its exit fd closes only with it). */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != launcher) _exit(127);
    char *envp[] = { NULL };
    execve(args[0], args + 1, envp);
    dprintf(2, "tsbuild-launcher: cannot execute %s: %s\n", args[0], strerror(errno));
    _exit(127);
  }
  close(host_ns); close(ns); close(devnull); close(ready[1]); close(ex[0]);
  slirp_pid = pid;
  slirp_ready = ready[0];
  slirp_exit = ex[1];
  report("slirp %d", pid);
}

/* Fails the run (before its child is cloned) with slirp4netns's last stderr lines: it ended or was not ready. */
static void __attribute__((noreturn)) slirp_failed(const char *why) {
  if (slirp_pid > 0) kill(slirp_pid, SIGKILL);   /* not once reaped: its pid could be another process's */
  char text[4096];
  off_t size = lseek(slirp_log, 0, SEEK_END);
  off_t from = size > (off_t)sizeof text - 1 ? size - (off_t)sizeof text + 1 : 0;
  ssize_t n = pread(slirp_log, text, sizeof text - 1, from);
  text[n > 0 ? n : 0] = '\0';
  /* The last three lines that are not slirp4netns's seccomp notice, as tsbuild reported them before. */
  char detail[600] = "";
  char *lines[3] = { NULL, NULL, NULL };
  for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
    while (*line == ' ') line++;
    if (*line == '\0' || !strncmp(line, "WARNING: Support for seccomp", 28)) continue;
    lines[0] = lines[1]; lines[1] = lines[2]; lines[2] = line;
  }
  snprintf(detail, sizeof detail, "%s", why);
  for (int i = 0; i < 3; i++) {
    if (lines[i] == NULL) continue;
    size_t len = strlen(detail);
    snprintf(detail + len, sizeof detail - len, "%s%s", i > 0 && lines[i - 1] != NULL ? "; " : ": ", lines[i]);
  }
  fail_code(125, "slirp4netns", 0, detail);
}

/* Waits (at most 10 s) until slirp4netns says tap0 is configured: the child's command needs the network from its start. */
static void wait_slirp_ready(void) {
  struct pollfd p = { .fd = slirp_ready, .events = POLLIN };
  int r;
  do r = poll(&p, 1, 10000); while (r < 0 && errno == EINTR);
  if (r == 0) slirp_failed("not ready after 10000 ms");
  char buf[16];
  ssize_t n;
  do n = read(slirp_ready, buf, sizeof buf); while (n < 0 && errno == EINTR);
  if (n <= 0 || memchr(buf, '1', (size_t)n) == NULL) {
    int status;
    char why[64] = "it exited";
    /* Its ready pipe closes in its exit, a moment before it can be reaped: wait for that (at most 1 s). */
    pid_t w = 0;
    for (int i = 0; i < 1000 && (w = waitpid(slirp_pid, &status, WNOHANG)) == 0; i++) usleep(1000);
    if (w == slirp_pid) {
      slirp_pid = 0;
      if (WIFEXITED(status)) snprintf(why, sizeof why, "it exited (code %d)", WEXITSTATUS(status));
      else if (WIFSIGNALED(status)) snprintf(why, sizeof why, "it exited (signal %d)", WTERMSIG(status));
    }
    slirp_failed(why);
  }
  close(slirp_ready);
  slirp_ready = -1;
}

int zygote_main(int (*run)(void));

/* Options of a launcher started ahead of its spec (tsbuild's Sandbox.prestart), done before the spec is read:
 * "--cgroup FILE" (repeated) moves this launcher into that cgroup.procs, so the child it clones is born there
 * (an attach waits for a kernel grace period: done here, it overlaps tsbuild's own work); "--netns", done
 * first, unshares a new network namespace and reports "netns" on fd 4, so that slirp4netns can be started
 * for it while the attach waits and tsbuild still prepares the spec. */
static void prepare_early(int argc, char **argv) {
  int slirp_at = 0;   /* argv index of "--slirp4netns": FILE ARGV0 ARG... follow, to the end */
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--slirp4netns")) { slirp_at = i; argc = i; break; }
  }
  /* The namespace first: slirp4netns can then start while the cgroup attach below waits. */
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--netns")) {
      /* slirp4netns runs in this (the host's) namespace: its sockets reach the outside for the container. */
      int host_ns = slirp_at > 0 ? open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC) : -1;
      if (slirp_at > 0 && host_ns < 0) fail("slirp4netns", "open the host network namespace");
      if (unshare(CLONE_NEWNET) < 0) fail("unshare-net", "network namespace");
      early_netns = 1;
      report("netns");
      if (slirp_at > 0) start_slirp(host_ns, argv + slirp_at + 1);
    }
  }
  if (slirp_at > 0 && !early_netns) fail_code(125, "arguments", EINVAL, "--slirp4netns needs --netns");
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--cgroup") && i + 1 < argc) {
      join_cgroup(argv[++i]);
    } else if (strcmp(argv[i], "--netns") != 0) {
      fail_code(125, "arguments", EINVAL, argv[i]);
    }
  }
}

/* No signal stays ignored, whoever started the launcher: the container's process inherits its dispositions.
 * Node's spawn resets signals 1-31; glibc's posix_spawn (tsbuild's spawn addon, src/sys/native/spawn.c)
 * resets what it is asked to but leaves its two internal signals (32, 33) ignored, and a caller may ignore
 * others (nohup). The raw system call: glibc's sigaction refuses those two. Handlers glibc installed stay. */
static void unignore_signals(void) {
  struct { void (*handler)(int); unsigned long flags; void (*restorer)(void); unsigned long mask; } cur, dfl = { SIG_DFL, 0, NULL, 0 };
  for (int sig = 1; sig <= 64; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    if (syscall(SYS_rt_sigaction, sig, NULL, &cur, 8) == 0 && cur.handler == SIG_IGN) syscall(SYS_rt_sigaction, sig, &dfl, NULL, 8);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
}

int main(int argc, char **argv) {
  unignore_signals();
  if (argc == 2 && !strcmp(argv[1], "--zygote")) return zygote_main(run_main);
  prepare_early(argc, argv);
  return run_main();
}
