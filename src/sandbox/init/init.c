/*
 * tsbuild-init: a tiny init for `tsbuild run --init` (as docker-init/tini). It runs as the
 * container's PID 1, starts the command as its child, forwards every signal it receives to that
 * child, reaps every zombie re-parented to it, and exits with the child's status (128+N when
 * the child was killed by signal N). Built static: it is bind-mounted into any image.
 *
 * usage: tsbuild-init [--] COMMAND [ARG...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  int first = 1;
  if (argc > 1 && strcmp(argv[1], "--") == 0) first = 2;
  if (first >= argc) {
    fprintf(stderr, "tsbuild-init: usage: tsbuild-init [--] COMMAND [ARG...]\n");
    return 125;
  }
  /* Every signal is blocked and taken synchronously with sigtimedwait; the child gets the old mask. */
  sigset_t all, old;
  sigfillset(&all);
  /* Synchronous faults stay deliverable. */
  sigdelset(&all, SIGSEGV);
  sigdelset(&all, SIGBUS);
  sigdelset(&all, SIGFPE);
  sigdelset(&all, SIGILL);
  sigdelset(&all, SIGTRAP);
  sigdelset(&all, SIGABRT);
  if (sigprocmask(SIG_SETMASK, &all, &old) != 0) {
    perror("tsbuild-init: sigprocmask");
    return 125;
  }
  /* When not PID 1 (no pid namespace), orphans of the command are still reaped here. */
  if (getpid() != 1) prctl(PR_SET_CHILD_SUBREAPER, 1);
  pid_t child = fork();
  if (child < 0) {
    perror("tsbuild-init: fork");
    return 125;
  }
  if (child == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    execvp(argv[first], argv + first);
    int err = errno;
    fprintf(stderr, "tsbuild-init: exec %s: %s\n", argv[first], strerror(err));
    _exit(err == ENOENT ? 127 : 126);
  }
  int code = -1;
  for (;;) {
    struct timespec tick = {1, 0};
    siginfo_t info;
    int sig = sigtimedwait(&all, &info, &tick);
    if (sig > 0 && sig != SIGCHLD) {
      /* Forward (the child may handle it or die of it); errors mean it is gone already. */
      kill(child, sig);
    }
    /* Reap everything that ended (the child and any orphan). */
    for (;;) {
      int status;
      pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      if (pid == child) code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (code >= 0) {
      /* The command ended: reap what is left without waiting for more, then leave. */
      while (waitpid(-1, NULL, WNOHANG) > 0) {
      }
      return code;
    }
  }
}
