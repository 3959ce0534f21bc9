/*
 * tsbuild-port-proxy: forwards a container's published ports (`run -p`) in the kernel.
 *
 * Started by the container's owner (src/runner/port-forwarder.ts) on the host's network:
 *
 *   tsbuild-port-proxy TAG SPEC...      SPEC = tcp|udp,HOSTADDR,FIRSTPORT,LASTPORT,CONTAINERPORT
 *
 * 1. Binds every SPEC on the host (the first free port of FIRST..LAST; 0 = any) and writes
 *    `bound PORT` per SPEC to stdout, then `ready`; on a failure `fail INDEX PORT ERRNAME text`
 *    and exits 1 (nothing stays bound).
 * 2. Reads `attach PID USERNS` on stdin: joins the network namespace of PID (and first its user
 *    namespace when USERNS is 1, rootless), answers `attached` (or `fail ...` and exits 1), and
 *    from then on accepts on the host listeners. Connections that arrive earlier wait in the
 *    kernel's backlog.
 * 3. Each TCP client is connected to 127.0.0.1:CONTAINERPORT inside; bytes move with splice(2)
 *    through one pipe per direction (pipes are reused) in one edge-triggered epoll loop, each
 *    socket registered once (half-close: SHUT_WR on EOF; an error or a reset closes both,
 *    resetting the other side). UDP: one connected socket inside per client address, dropped
 *    after 60 s idle.
 *
 * It exits when stdin reaches EOF (its owner stopped it or died, also by SIGKILL), on SIGTERM, or
 * by PR_SET_PDEATHSIG. At most MAX_CONNS TCP connections and MAX_UDP UDP sessions: more are
 * refused (reset) or dropped. TAG is only put on the command line so the owner's tests can find it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_LISTENERS 1024
#define MAX_CONNS 1024
#define MAX_UDP 1024
#define PIPE_POOL 64
#define UDP_IDLE_SEC 60
#define FDS_PER_CONN 6

enum kind { K_CTRL = 1, K_TCP_LISTEN, K_UDP_LISTEN, K_CLIENT, K_UPSTREAM, K_UDP_SESSION };

struct listener {
  int fd;
  bool udp;
  int container_port;
};

/* One direction of a TCP connection: bytes read from `from` wait in `pipe` until written to `to`. */
struct dir {
  int from, to;
  int pipe[2];
  size_t pending;
  bool eof, shut;
};

struct conn {
  bool used;
  uint32_t gen; /* bumped on reuse: an event queued for the previous connection is ignored */
  bool connecting;
  int client, up;
  struct dir d[2]; /* 0: client -> container, 1: container -> client */
  int next_free;
};

struct usess {
  bool used;
  int fd;
  int listener;
  struct sockaddr_storage peer;
  socklen_t peer_len;
  time_t last;
};

static struct listener listeners[MAX_LISTENERS];
static int n_listeners;
static struct conn *conns;
static int free_conn = -1;
static int n_conns, max_conns = MAX_CONNS;
static struct usess *sessions;
static int n_sessions;
static int pipe_pool[PIPE_POOL][2];
static int n_pool;
static int epfd;
static bool attached, accept_paused;
static char udp_buf[65536];

static void die(const char *what) {
  fprintf(stderr, "tsbuild-port-proxy: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* epoll data: kind (8 bits), generation (24 bits), index (32 bits). */
static uint64_t key(enum kind k, uint32_t gen, int idx) {
  return ((uint64_t)k << 56) | ((uint64_t)(gen & 0xffffff) << 32) | (uint32_t)idx;
}

static void ep_add(int fd, uint32_t events, enum kind k, int idx) {
  struct epoll_event ev = { .events = events, .data.u64 = key(k, k == K_CLIENT || k == K_UPSTREAM ? conns[idx].gen : 0, idx) };
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl add");
}

static void ep_mod(int fd, uint32_t events, enum kind k, int idx) {
  struct epoll_event ev = { .events = events, .data.u64 = key(k, k == K_CLIENT || k == K_UPSTREAM ? conns[idx].gen : 0, idx) };
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0) die("epoll_ctl mod");
}

static const char *errno_name(int e) {
  switch (e) {
  case EADDRINUSE: return "EADDRINUSE";
  case EACCES: return "EACCES";
  case EPERM: return "EPERM";
  case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
  case EAFNOSUPPORT: return "EAFNOSUPPORT";
  case EINVAL: return "EINVAL";
  case ESRCH: return "ESRCH";
  case ENOENT: return "ENOENT";
  default: return "EOTHER";
  }
}

/* Parses "tcp,ADDR,FIRST,LAST,CPORT" and binds it; prints `bound PORT` or `fail ...` and exits. */
static void bind_spec(int index, char *spec) {
  char *save = NULL;
  char *proto = strtok_r(spec, ",", &save);
  char *addr = strtok_r(NULL, ",", &save);
  char *first_s = strtok_r(NULL, ",", &save);
  char *last_s = strtok_r(NULL, ",", &save);
  char *cport_s = strtok_r(NULL, ",", &save);
  if (proto == NULL || addr == NULL || first_s == NULL || last_s == NULL || cport_s == NULL) {
    printf("fail %d 0 EINVAL bad spec\n", index);
    exit(1);
  }
  bool udp = strcmp(proto, "udp") == 0;
  int first = atoi(first_s), last = atoi(last_s), cport = atoi(cport_s);
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len;
  int family;
  if (strchr(addr, ':') != NULL) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    family = s6->sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, addr, &s6->sin6_addr) != 1) { printf("fail %d %d EINVAL bad address\n", index, first); exit(1); }
    len = sizeof *s6;
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    family = s4->sin_family = AF_INET;
    if (inet_pton(AF_INET, addr, &s4->sin_addr) != 1) { printf("fail %d %d EINVAL bad address\n", index, first); exit(1); }
    len = sizeof *s4;
  }
  for (int port = first;; port++) {
    int fd = socket(family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    /* As libuv does for TCP listeners: a port in TIME_WAIT can be bound again. */
    if (!udp) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6) ((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
    else ((struct sockaddr_in *)&ss)->sin_port = htons(port);
    int rc = bind(fd, (struct sockaddr *)&ss, len);
    if (rc == 0 && !udp) rc = listen(fd, 511);
    if (rc < 0) {
      int e = errno;
      close(fd);
      if (e == EADDRINUSE && port < last) continue;
      printf("fail %d %d %s %s\n", index, port, errno_name(e), strerror(e));
      exit(1);
    }
    struct sockaddr_storage got;
    socklen_t got_len = sizeof got;
    if (getsockname(fd, (struct sockaddr *)&got, &got_len) < 0) die("getsockname");
    int bound = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port : ((struct sockaddr_in *)&got)->sin_port);
    listeners[n_listeners++] = (struct listener){ .fd = fd, .udp = udp, .container_port = cport };
    printf("bound %d\n", bound);
    return;
  }
}

/* Closes a socket with a reset (SO_LINGER 0) instead of a FIN. */
static void close_reset(int fd) {
  struct linger l = { .l_onoff = 1, .l_linger = 0 };
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

static bool take_pipe(int p[2]) {
  if (n_pool > 0) {
    n_pool--;
    p[0] = pipe_pool[n_pool][0];
    p[1] = pipe_pool[n_pool][1];
    return true;
  }
  return pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0;
}

/* Keeps an empty pipe for the next connection; one with bytes left in it is closed. */
static void give_pipe(int p[2], bool empty) {
  if (p[0] < 0) return;
  if (empty && n_pool < PIPE_POOL) {
    pipe_pool[n_pool][0] = p[0];
    pipe_pool[n_pool][1] = p[1];
    n_pool++;
  } else {
    close(p[0]);
    close(p[1]);
  }
  p[0] = p[1] = -1;
}

static void resume_accept(void) {
  if (!accept_paused) return;
  accept_paused = false;
  for (int i = 0; i < n_listeners; i++)
    if (!listeners[i].udp) ep_mod(listeners[i].fd, EPOLLIN, K_TCP_LISTEN, i);
}

static void conn_close(int idx, bool reset) {
  struct conn *c = &conns[idx];
  if (reset) {
    close_reset(c->client);
    close_reset(c->up);
  } else {
    close(c->client);
    close(c->up);
  }
  give_pipe(c->d[0].pipe, c->d[0].pending == 0);
  give_pipe(c->d[1].pipe, c->d[1].pending == 0);
  c->used = false;
  c->next_free = free_conn;
  free_conn = idx;
  n_conns--;
  resume_accept();
}

/* Moves what it can in one direction; -1 on an error of either socket. */
static int pump(struct dir *d) {
  for (;;) {
    if (d->pending > 0) {
      ssize_t n = splice(d->pipe[0], NULL, d->to, NULL, d->pending, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        d->pending -= (size_t)n;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return 0;
      return -1;
    }
    if (d->eof) {
      if (!d->shut) {
        d->shut = true;
        shutdown(d->to, SHUT_WR);
      }
      return 0;
    }
    ssize_t n = splice(d->from, NULL, d->pipe[1], NULL, 1 << 20, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      d->pending = (size_t)n;
      continue;
    }
    if (n == 0) {
      d->eof = true;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return 0;
    return -1;
  }
}

/* Pumps the directions `which` (bit 0: client -> container, bit 1: back); closes the connection on an error or when both are done. */
static void conn_run(int idx, int which) {
  struct conn *c = &conns[idx];
  if (((which & 1) && pump(&c->d[0]) < 0) || ((which & 2) && pump(&c->d[1]) < 0)) {
    conn_close(idx, true);
    return;
  }
  if (c->d[0].shut && c->d[1].shut) conn_close(idx, false);
}

static void conn_event(int idx, uint32_t gen, bool upstream, uint32_t events) {
  struct conn *c = &conns[idx];
  if (!c->used || (c->gen & 0xffffff) != gen) return;
  if (events & EPOLLERR) {
    /* A reset or an unreachable container port: reset the other side too. */
    conn_close(idx, true);
    return;
  }
  if (c->connecting) {
    if (!upstream || !(events & (EPOLLOUT | EPOLLHUP))) return; /* client data waits until the container side is connected */
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->up, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      conn_close(idx, true);
      return;
    }
    c->connecting = false;
    conn_run(idx, 3);
    return;
  }
  /*
   * Edge-triggered: each direction runs until its source is drained (EAGAIN) or its target is
   * full (EAGAIN, pipe keeps the rest), so an edge on that socket resumes it. A readable socket
   * feeds its direction; a writable one drains the other direction's pipe.
   */
  int mine = upstream ? 2 : 1, other = upstream ? 1 : 2;
  int which = 0;
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) && !c->d[mine - 1].eof) which |= mine;
  if ((events & (EPOLLOUT | EPOLLHUP)) && c->d[other - 1].pending > 0) which |= other;
  if (which != 0) conn_run(idx, which);
}

static void accept_tcp(int li) {
  struct listener *l = &listeners[li];
  for (int i = 0; i < 64; i++) {
    int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN) return;
      /* Out of descriptors or memory: stop accepting until a connection closes (no busy loop). */
      fprintf(stderr, "tsbuild-port-proxy: accept: %s\n", strerror(errno));
      accept_paused = true;
      for (int j = 0; j < n_listeners; j++)
        if (!listeners[j].udp) ep_mod(listeners[j].fd, 0, K_TCP_LISTEN, j);
      return;
    }
    if (n_conns >= max_conns || free_conn < 0) {
      close_reset(fd); /* refused: too many connections */
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* SECURITY: created after setns, so this socket lives in the container's network namespace. */
    int up = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (up < 0) {
      close_reset(fd);
      continue;
    }
    setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(l->container_port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int rc = connect(up, (struct sockaddr *)&to, sizeof to);
    if (rc < 0 && errno != EINPROGRESS) {
      close(up);
      close_reset(fd);
      continue;
    }
    int idx = free_conn;
    struct conn *c = &conns[idx];
    int p0[2], p1[2];
    if (!take_pipe(p0)) {
      close(up);
      close_reset(fd);
      continue;
    }
    if (!take_pipe(p1)) {
      give_pipe(p0, true);
      close(up);
      close_reset(fd);
      continue;
    }
    free_conn = c->next_free;
    n_conns++;
    *c = (struct conn){ .used = true, .gen = c->gen + 1, .connecting = rc < 0, .client = fd, .up = up,
      .d = { { .from = fd, .to = up, .pipe = { p0[0], p0[1] } }, { .from = up, .to = fd, .pipe = { p1[0], p1[1] } } }, .next_free = -1 };
    /* Registered once, edge-triggered, for everything: no epoll_ctl per state change. */
    ep_add(fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, K_CLIENT, idx);
    ep_add(up, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, K_UPSTREAM, idx);
    if (!c->connecting) conn_run(idx, 3);
  }
}

static void udp_drop(int si) {
  close(sessions[si].fd);
  sessions[si].used = false;
  n_sessions--;
}

static void udp_from_client(int li) {
  struct listener *l = &listeners[li];
  for (int i = 0; i < 64; i++) {
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    ssize_t n = recvfrom(l->fd, udp_buf, sizeof udp_buf, MSG_DONTWAIT, (struct sockaddr *)&peer, &plen);
    if (n < 0) {
      if (errno == EINTR) continue;
      return; /* EAGAIN, or an ICMP error reported on the host socket */
    }
    int si = -1, free_si = -1;
    for (int s = 0; s < MAX_UDP; s++) {
      if (!sessions[s].used) {
        if (free_si < 0) free_si = s;
        continue;
      }
      if (sessions[s].listener == li && sessions[s].peer_len == plen && memcmp(&sessions[s].peer, &peer, plen) == 0) {
        si = s;
        break;
      }
    }
    if (si < 0) {
      if (free_si < 0) continue; /* too many sessions: dropped */
      int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) continue;
      struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(l->container_port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
      if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0) {
        close(fd);
        continue;
      }
      si = free_si;
      sessions[si] = (struct usess){ .used = true, .fd = fd, .listener = li, .peer_len = plen };
      memcpy(&sessions[si].peer, &peer, plen);
      n_sessions++;
      ep_add(fd, EPOLLIN, K_UDP_SESSION, si);
    }
    sessions[si].last = time(NULL);
    send(sessions[si].fd, udp_buf, (size_t)n, MSG_DONTWAIT);
  }
}

static void udp_from_container(int si) {
  struct usess *s = &sessions[si];
  if (!s->used) return;
  for (int i = 0; i < 64; i++) {
    ssize_t n = recv(s->fd, udp_buf, sizeof udp_buf, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) udp_drop(si); /* e.g. ECONNREFUSED: nothing listens inside */
      return;
    }
    s->last = time(NULL);
    sendto(listeners[s->listener].fd, udp_buf, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&s->peer, s->peer_len);
  }
}

static void udp_sweep(void) {
  time_t now = time(NULL);
  for (int s = 0; s < MAX_UDP; s++)
    if (sessions[s].used && now - sessions[s].last >= UDP_IDLE_SEC) udp_drop(s);
}

/* Exits with the owner: SIGKILL when the parent dies; set again after setns (a credential change clears it). */
static void guard_process(void) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  /* SECURITY: not dumpable, so processes of the container (same uid when rootless) cannot ptrace
   * it or open its /proc fds (the host listening sockets). */
  prctl(PR_SET_DUMPABLE, 0);
}

static void attach(int pid, bool userns) {
  char path[64];
  int e;
  if (userns) {
    snprintf(path, sizeof path, "/proc/%d/ns/user", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWUSER) < 0) goto fail;
    close(fd);
  }
  snprintf(path, sizeof path, "/proc/%d/ns/net", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  /* SECURITY: only the network (and user) namespace is joined, never mount or pid. */
  if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) goto fail;
  close(fd);
  guard_process();
  attached = true;
  for (int i = 0; i < n_listeners; i++)
    ep_add(listeners[i].fd, EPOLLIN, listeners[i].udp ? K_UDP_LISTEN : K_TCP_LISTEN, i);
  printf("attached\n");
  fflush(stdout);
  return;
fail:
  e = errno;
  printf("fail -1 0 %s cannot join the namespaces of pid %d: %s\n", errno_name(e), pid, strerror(e));
  fflush(stdout);
  exit(1);
}

/* Reads owner commands from stdin; EOF (the owner is gone) ends the proxy. */
static void ctrl_read(void) {
  static char buf[256];
  static size_t used;
  ssize_t n = read(0, buf + used, sizeof buf - 1 - used);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) exit(0);
  used += (size_t)n;
  buf[used] = '\0';
  char *nl;
  while ((nl = strchr(buf, '\n')) != NULL) {
    *nl = '\0';
    int pid, userns;
    if (!attached && sscanf(buf, "attach %d %d", &pid, &userns) == 2 && pid > 0) attach(pid, userns == 1);
    size_t rest = used - (size_t)(nl + 1 - buf);
    memmove(buf, nl + 1, rest);
    used = rest;
    buf[used] = '\0';
  }
  if (used == sizeof buf - 1) used = 0; /* a line too long: dropped */
}

int main(int argc, char **argv) {
  guard_process();
  signal(SIGPIPE, SIG_IGN);
  /* The owner decides when to stop (stdin EOF, SIGTERM): a terminal's ^C or hang-up does not. */
  signal(SIGINT, SIG_IGN);
  signal(SIGQUIT, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  if (argc < 3 || argc - 2 > MAX_LISTENERS) {
    fprintf(stderr, "usage: tsbuild-port-proxy TAG tcp|udp,ADDR,FIRST,LAST,CPORT...\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (int i = 2; i < argc; i++) bind_spec(i - 2, argv[i]);
  /* Room for every connection's descriptors (two sockets, two pipes). */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rlim_t need = (rlim_t)(MAX_CONNS + PIPE_POOL) * FDS_PER_CONN + MAX_UDP + n_listeners + 64;
    if (rl.rlim_cur < need) {
      rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    rlim_t fit = (rl.rlim_cur - (rlim_t)n_listeners - 64) / FDS_PER_CONN;
    if (rl.rlim_cur > (rlim_t)n_listeners + 64 + FDS_PER_CONN && fit < (rlim_t)max_conns) max_conns = (int)fit;
  }
  conns = calloc(MAX_CONNS, sizeof *conns);
  sessions = calloc(MAX_UDP, sizeof *sessions);
  if (conns == NULL || sessions == NULL) die("calloc");
  for (int i = MAX_CONNS - 1; i >= 0; i--) {
    conns[i].next_free = free_conn;
    free_conn = i;
  }
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) die("epoll_create1");
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  ep_add(0, EPOLLIN, K_CTRL, 0);
  printf("ready\n");
  fflush(stdout);
  struct epoll_event events[128];
  time_t last_sweep = time(NULL);
  for (;;) {
    int n = epoll_wait(epfd, events, 128, n_sessions > 0 ? 5000 : -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      enum kind k = (enum kind)(events[i].data.u64 >> 56);
      uint32_t gen = (uint32_t)(events[i].data.u64 >> 32) & 0xffffff;
      int idx = (int)(uint32_t)events[i].data.u64;
      switch (k) {
      case K_CTRL: ctrl_read(); break;
      case K_TCP_LISTEN: accept_tcp(idx); break;
      case K_UDP_LISTEN: udp_from_client(idx); break;
      case K_CLIENT: conn_event(idx, gen, false, events[i].events); break;
      case K_UPSTREAM: conn_event(idx, gen, true, events[i].events); break;
      case K_UDP_SESSION: udp_from_container(idx); break;
      }
    }
    if (n_sessions > 0 && time(NULL) - last_sweep >= 5) {
      udp_sweep();
      last_sweep = time(NULL);
    }
  }
}
