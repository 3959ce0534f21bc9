// tsbuild-spawn.node: starts a child with posix_spawn (clone with CLONE_VM|CLONE_VFORK in glibc), not
// fork: Node's child_process forks the whole process (its page tables copied, then every page it
// writes takes a fault until the child has exec'd), which costs the `run` path milliseconds per start.
// Node-API only (node_api.h), no libuv: the caller wraps the pipe ends and reaps the child itself.
// It also ends the process without Node's teardown (exitNow, used by src/sys/fast-exit.ts).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <node_api.h>

extern char **environ;

#define MAX_FDS 16
#define HIGH_FD 900

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[160];
  const char *codes[] = { [ENOENT] = "ENOENT", [EACCES] = "EACCES", [EMFILE] = "EMFILE", [ENOMEM] = "ENOMEM", [EAGAIN] = "EAGAIN", [ENOEXEC] = "ENOEXEC", [ECHILD] = "ECHILD", [EINVAL] = "EINVAL" };
  const char *code = err >= 0 && err < (int)(sizeof(codes) / sizeof(codes[0])) && codes[err] != NULL ? codes[err] : "EIO";
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, code, msg);
  return NULL;
}

// A JS string as a malloc'd C string (NULL on failure, with an exception pending).
static char *string_of(napi_env env, napi_value v) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected a string");
    return NULL;
  }
  char *s = malloc(len + 1);
  if (s == NULL) return NULL;
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

// A JS array of strings as a NULL-terminated malloc'd vector.
static char **strings_of(napi_env env, napi_value arr) {
  uint32_t n = 0;
  if (napi_get_array_length(env, arr, &n) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected an array of strings");
    return NULL;
  }
  char **out = calloc(n + 1, sizeof(char *));
  if (out == NULL) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    napi_get_element(env, arr, i, &e);
    out[i] = string_of(env, e);
    if (out[i] == NULL) {
      for (uint32_t j = 0; j < i; j++) free(out[j]);
      free(out);
      return NULL;
    }
  }
  return out;
}

static void free_strings(char **v) {
  if (v == NULL) return;
  for (char **p = v; *p != NULL; p++) free(*p);
  free(v);
}

// spawn(file, argv, env | null, fds, setsid) -> pid. fds[i] is the parent's fd that becomes the
// child's fd i (-1: closed). Every signal starts with its default action and unblocked, as with
// Node's spawn; the child gets no other fd of ours (Node opens everything close-on-exec).
static napi_value js_spawn(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value args[5];
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 5) {
    napi_throw_type_error(env, NULL, "spawn(file, argv, env, fds, setsid)");
    return NULL;
  }
  char *file = string_of(env, args[0]);
  char **argv = file == NULL ? NULL : strings_of(env, args[1]);
  napi_valuetype envType;
  napi_typeof(env, args[2], &envType);
  char **envp = argv == NULL || envType == napi_null || envType == napi_undefined ? NULL : strings_of(env, args[2]);
  uint32_t nfds = 0;
  napi_get_array_length(env, args[3], &nfds);
  bool setsid = false;
  napi_get_value_bool(env, args[4], &setsid);
  napi_value result = NULL;
  if (file == NULL || argv == NULL || (envType != napi_null && envType != napi_undefined && envp == NULL)) goto out;
  if (nfds > MAX_FDS) {
    napi_throw_range_error(env, NULL, "too many fds");
    goto out;
  }
  int fds[MAX_FDS];
  for (uint32_t i = 0; i < nfds; i++) {
    napi_value e;
    int32_t fd = -1;
    napi_get_element(env, args[3], i, &e);
    napi_get_value_int32(env, e, &fd);
    fds[i] = fd;
  }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  // Two steps so that no source fd is overwritten before it is used: each to a high fd, then to its place.
  for (uint32_t i = 0; i < nfds; i++) {
    if (fds[i] >= 0) posix_spawn_file_actions_adddup2(&fa, fds[i], HIGH_FD + (int)i);
  }
  for (uint32_t i = 0; i < nfds; i++) {
    if (fds[i] >= 0) {
      posix_spawn_file_actions_adddup2(&fa, HIGH_FD + (int)i, (int)i);
      posix_spawn_file_actions_addclose(&fa, HIGH_FD + (int)i);
    } else {
      posix_spawn_file_actions_addclose(&fa, (int)i);
    }
  }
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | (setsid ? POSIX_SPAWN_SETSID : 0);
  posix_spawnattr_setflags(&attr, flags);
  pid_t pid = -1;
  int err = posix_spawn(&pid, file, &fa, &attr, argv, envp == NULL ? environ : envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (err != 0) {
    throw_errno(env, file, err);
    goto out;
  }
  napi_create_int32(env, pid, &result);
out:
  free(file);
  free_strings(argv);
  free_strings(envp);
  return result;
}

// pipe(nonblockingWrite) -> [readFd, writeFd], both close-on-exec; the write end O_NONBLOCK when asked.
static napi_value js_pipe(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1];
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  bool nonblocking_write = false;
  if (argc > 0) napi_get_value_bool(env, args[0], &nonblocking_write);
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return throw_errno(env, "pipe", errno);
  if (nonblocking_write && fcntl(p[1], F_SETFL, fcntl(p[1], F_GETFL) | O_NONBLOCK) != 0) {
    int err = errno;
    close(p[0]);
    close(p[1]);
    return throw_errno(env, "pipe", err);
  }
  napi_value arr, a, b;
  napi_create_array_with_length(env, 2, &arr);
  napi_create_int32(env, p[0], &a);
  napi_create_int32(env, p[1], &b);
  napi_set_element(env, arr, 0, a);
  napi_set_element(env, arr, 1, b);
  return arr;
}

// The call's arguments (at most *argc of them into `args`; *argc becomes how many were given) and the first one
// as an int32 (`dflt` when there is none or it is not a number).
static int32_t int_args(napi_env env, napi_callback_info info, napi_value *args, size_t *argc, int32_t dflt) {
  size_t max = *argc;
  napi_get_cb_info(env, info, argc, args, NULL, NULL);
  int32_t v = dflt;
  if (*argc > 0 && max > 0 && napi_get_value_int32(env, args[0], &v) != napi_ok) v = dflt;
  return v;
}

// fd's status flags (F_GETFL), -1 when it is not open.
static int fd_flags(int fd) {
  int flags;
  do flags = fcntl(fd, F_GETFL); while (flags < 0 && errno == EINTR);
  return flags;
}

// wait(pid) -> undefined while it runs, else (reaped) [exitCode | null, signal | null].
static napi_value js_wait(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1];
  int32_t pid = int_args(env, info, args, &argc, 0);
  int status = 0;
  pid_t r;
  do r = waitpid(pid, &status, WNOHANG); while (r < 0 && errno == EINTR);
  if (r < 0) return throw_errno(env, "waitpid", errno);
  napi_value undef;
  napi_get_undefined(env, &undef);
  if (r == 0) return undef;
  napi_value arr, code, sig, nul;
  napi_get_null(env, &nul);
  napi_create_array_with_length(env, 2, &arr);
  if (WIFEXITED(status)) napi_create_int32(env, WEXITSTATUS(status), &code); else code = nul;
  if (WIFSIGNALED(status)) napi_create_int32(env, WTERMSIG(status), &sig); else sig = nul;
  napi_set_element(env, arr, 0, code);
  napi_set_element(env, arr, 1, sig);
  return arr;
}

// stdioTerminal() -> whether fd 0, 1 or 2 is a terminal (exitNow does not restore a terminal's mode, Node does).
static napi_value js_stdio_terminal(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  napi_get_boolean(env, isatty(0) || isatty(1) || isatty(2), &r);
  return r;
}

// nonblocking(fd) -> 1 when fd is O_NONBLOCK, 0 when it is not, -1 when it is not open.
static napi_value js_nonblocking(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1], r;
  int flags = fd_flags(int_args(env, info, args, &argc, -1));
  napi_create_int32(env, flags < 0 ? -1 : (flags & O_NONBLOCK) != 0, &r);
  return r;
}

// exitNow(code, nonblocking): ends this process at once (_exit), without Node's teardown (its platform's
// threads joined, the libuv pool shut down, libc's exit handlers). First, as Node's ResetStdio does, each
// of fds 0-2 gets back its O_NONBLOCK flag: nonblocking[i] is 1 (set it), 0 (clear it) or -1 (leave it).
// Node's pipe and socket streams on fds 0-2 set it, and the file description is shared with whoever gave
// us the fd (a shell's pipe left non-blocking breaks its next reader).
static napi_value js_exit_now(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  int32_t code = int_args(env, info, args, &argc, 0);
  for (uint32_t fd = 0; fd < 3; fd++) {
    napi_value e;
    int32_t want = -1;
    if (argc > 1 && napi_get_element(env, args[1], fd, &e) == napi_ok) napi_get_value_int32(env, e, &want);
    if (want < 0) continue;
    int flags = fd_flags((int)fd);
    if (flags < 0 || ((flags & O_NONBLOCK) != 0) == (want != 0)) continue;
    flags = want ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    while (fcntl(fd, F_SETFL, flags) < 0 && errno == EINTR) {}
  }
  _exit(code & 0xff);
}

NAPI_MODULE_INIT() {
  static const struct { const char *name; napi_callback fn; } FUNCTIONS[] = {
    { "spawn", js_spawn }, { "pipe", js_pipe }, { "wait", js_wait },
    { "stdioTerminal", js_stdio_terminal }, { "nonblocking", js_nonblocking }, { "exitNow", js_exit_now },
  };
  for (size_t i = 0; i < sizeof FUNCTIONS / sizeof FUNCTIONS[0]; i++) {
    napi_value fn;
    napi_create_function(env, FUNCTIONS[i].name, NAPI_AUTO_LENGTH, FUNCTIONS[i].fn, NULL, &fn);
    napi_set_named_property(env, exports, FUNCTIONS[i].name, fn);
  }
  return exports;
}
