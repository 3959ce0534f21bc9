/*
 * Zygote mode of tsbuild-launcher ("tsbuild-launcher --zygote", see launcher-zygote.ts): one small,
 * long-lived process per tsbuild process that forks a fresh launcher per request, so tsbuild (a large
 * Node process) does not fork and exec one per RUN step. Each forked launcher starts from this
 * process's pristine state (no spec read yet, default signal dispositions, fds 0-5 only) and runs
 * exactly as a spawned one: its own spec, namespaces, cgroup and handshake.
 *
 * fd 3 is the control socket. Requests, one line each, handled in order:
 *   "s O E"   fork a launcher; O and E are its stdout and stderr: 'p' a new pipe, 'n' /dev/null.
 *             Reply "ok PID SPEC STATUS GO OUT ERR": fds of this process holding tsbuild's ends of
 *             the launcher's fd 3 (spec, write), 4 (status, read), 5 (go, write), 1 and 2 (read; -1
 *             when not a pipe), which tsbuild opens through /proc/<zygote>/fd/N. Or "err ERRNO STEP".
 *   "c"       tsbuild opened them: they are closed here.
 *   "k PID"   SIGKILL the launcher PID if it was not waited for yet (never a reused pid).
 *   "w PID"   wait for the launcher PID (it ended: its status pipe closed), freeing its pid.
 *             A launcher still running then is killed first: tsbuild no longer watches it.
 * The zygote dies with tsbuild (PR_SET_PDEATHSIG, and EOF on fd 3), and its launchers die with it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CTL_FD 3
#define MAX_LIVE 4096

static pid_t live[MAX_LIVE];
static int nlive;
static int pending[5] = { -1, -1, -1, -1, -1 };   /* tsbuild's ends, until "c" */

static void reply(const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0 || n > (int)sizeof buf - 2) _exit(125);
  buf[n++] = '\n';
  for (char *p = buf; n > 0;) {
    ssize_t w = write(CTL_FD, p, (size_t)n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) _exit(0);                    /* tsbuild is gone */
    p += w;
    n -= (int)w;
  }
}

static int find_live(pid_t pid) {
  for (int i = 0; i < nlive; i++) if (live[i] == pid) return i;
  return -1;
}

static void close_pending(void) {
  for (int i = 0; i < 5; i++) {
    if (pending[i] >= 0) close(pending[i]);
    pending[i] = -1;
  }
}

/* In the forked launcher: fds 0-5 as a spawn by tsbuild would give them, everything else closed. */
static void become_launcher(pid_t zygote, int devnull, const int spec[2], const int status[2], const int go[2], const int out[2], const int err[2]) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != zygote) _exit(125);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);   /* EINVAL for SIGKILL, SIGSTOP, RT internals */
  /* Move the sources above the targets first, so no dup2 overwrites a source still needed. */
  int src[6] = { devnull, out[1] >= 0 ? out[1] : devnull, err[1] >= 0 ? err[1] : devnull, spec[0], status[1], go[0] };
  int high[6];
  for (int i = 0; i < 6; i++) if ((high[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 64)) < 0) _exit(125);
  for (int i = 0; i < 6; i++) if (dup2(high[i], i) < 0) _exit(125);   /* dup2 clears close-on-exec */
  if (syscall(SYS_close_range, 6U, ~0U, 0U) < 0) {
    for (int fd = 6; fd < 1024; fd++) close(fd);
  }
}

static void spawn_launcher(const char *req, int (*run)(void), int devnull) {
  int spec[2] = { -1, -1 }, status[2] = { -1, -1 }, go[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
  close_pending();
  if (strlen(req) != 5 || req[0] != 's' || req[1] != ' ' || req[3] != ' ' || !strchr("pn", req[2]) || !strchr("pn", req[4])) {
    reply("err %d request", EINVAL);
    return;
  }
  if (nlive >= MAX_LIVE) {
    reply("err %d launchers", EAGAIN);
    return;
  }
  if (pipe2(spec, O_CLOEXEC) < 0 || pipe2(status, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0 ||
      (req[2] == 'p' && pipe2(out, O_CLOEXEC) < 0) || (req[4] == 'p' && pipe2(err, O_CLOEXEC) < 0)) {
    int e = errno;
    for (int *p[] = { spec, status, go, out, err }, i = 0; i < 5; i++) for (int k = 0; k < 2; k++) if (p[i][k] >= 0) close(p[i][k]);
    reply("err %d pipe", e);
    return;
  }
  pid_t zygote = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    become_launcher(zygote, devnull, spec, status, go, out, err);
    _exit(run());
  }
  int e = errno;
  close(spec[0]); close(status[1]); close(go[0]);
  if (out[1] >= 0) close(out[1]);
  if (err[1] >= 0) close(err[1]);
  int mine[5] = { spec[1], status[0], go[1], out[0], err[0] };
  if (pid < 0) {
    for (int i = 0; i < 5; i++) if (mine[i] >= 0) close(mine[i]);
    reply("err %d fork", e);
    return;
  }
  live[nlive++] = pid;
  memcpy(pending, mine, sizeof pending);
  reply("ok %d %d %d %d %d %d", (int)pid, mine[0], mine[1], mine[2], mine[3], mine[4]);
}

static void handle(const char *line, int (*run)(void), int devnull) {
  if (line[0] == 's') {
    spawn_launcher(line, run, devnull);
    return;
  }
  if (!strcmp(line, "c")) {
    close_pending();
    return;
  }
  if ((line[0] == 'k' || line[0] == 'w') && line[1] == ' ') {
    pid_t pid = (pid_t)atoi(line + 2);
    int i = pid > 0 ? find_live(pid) : -1;
    if (i < 0) return;
    /* "w" comes once the status pipe closed, so the launcher has exited; should tsbuild have lost
     * the pipe early, the launcher it no longer watches is killed (a zombie ignores the signal). */
    kill(pid, SIGKILL);
    if (line[0] == 'k') return;
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    live[i] = live[--nlive];
  }
}

int zygote_main(int (*run)(void)) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) return 125;
  /* The terminal's signals reach the whole process group: the launchers forward them to their
   * commands; the zygote outlives them only through tsbuild's end (parent death, EOF). */
  int ignored[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2, SIGTSTP, SIGTTIN, SIGTTOU };
  for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++) signal(ignored[i], SIG_IGN);
  if (fcntl(CTL_FD, F_SETFD, FD_CLOEXEC) < 0) return 125;
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) return 125;
  char buf[4096];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(CTL_FD, buf + len, sizeof buf - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;                    /* tsbuild closed the socket or is gone */
    len += (size_t)n;
    buf[len] = '\0';
    char *start = buf, *nl;
    while ((nl = strchr(start, '\n')) != NULL) {
      *nl = '\0';
      handle(start, run, devnull);
      start = nl + 1;
    }
    len = strlen(start);
    memmove(buf, start, len);
    if (len == sizeof buf - 1) return 125;   /* no line is this long */
  }
}
