/*
 * Unix datagrams out, for syslog (/dev/log) and systemd ($NOTIFY_SOCKET):
 * Node's core has no AF_UNIX SOCK_DGRAM sockets. Three calls, no state of
 * its own: open a non-blocking socket, sendto(2) one datagram, close.
 *
 * Built on Node-API (NAPI_VERSION 8) alone, whose binary interface stays
 * the same across Node.js releases: built once by `npm ci`, it still loads
 * after an upgrade of Node.js (docs/OPERATION.md, "Which Node.js"). The
 * socket never blocks: a full receiver drops the datagram (EAGAIN), and
 * the caller decides what to say; errors come back as errno numbers, never
 * as exceptions, except from open().
 *
 * And one call for memory that Node's core does not have either:
 * malloc_trim(3), which gives the kernel back the pages left free inside
 * malloc's arenas (each thread's arena keeps what it once grew to; see
 * docs/BENCHMARK.md, "Free pages in malloc's arenas").
 *
 * And the process's name (prctl(2) PR_SET_NAME, /proc/PID/comm): "node"
 * otherwise, and Debian's init script stops and reloads the server with
 * `start-stop-daemon --name mandos`, as `pidof mandos` finds it. Only the
 * name; the command line (/proc/PID/cmdline) stays as it was.
 *
 * And fcntl(2)'s FD_CLOEXEC on a descriptor the server inherited, so that
 * it keeps it but the checkers it starts do not get it (src/main/clients/
 * inherited-descriptors.ts): Node's core cannot set the flag either.
 *
 * And a TCP socket bound to an interface (SO_BINDTODEVICE, as the
 * reference's --interface), which must be set before bind(2) and which
 * Node's core cannot set: made and bound here, then listened on by Node
 * as a --socket is (src/main/serve/device-socket.ts).
 */

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

#if defined(__linux__)
#include <sys/prctl.h>
#endif

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <node_api.h>

/* Ends the call that failed a Node-API call itself (a bug of ours, not the peer's). */
#define CHECK(env, call)                                                  \
  do {                                                                    \
    if ((call) != napi_ok) {                                              \
      napi_throw_error((env), NULL, "mandos_datagram: " #call " failed"); \
      return NULL;                                                        \
    }                                                                     \
  } while (0)

static napi_value number(napi_env env, int value) {
  napi_value result;
  if (napi_create_int32(env, value, &result) != napi_ok) return NULL;
  return result;
}

/* The bytes of a Uint8Array argument (a Buffer): 1, or 0 after throwing. */
static int bytes_of(napi_env env, napi_value value, const char *what, const unsigned char **data, size_t *length) {
  napi_typedarray_type type;
  void *base;
  napi_value arraybuffer;
  size_t offset;
  bool is_typedarray = false;
  if (napi_is_typedarray(env, value, &is_typedarray) != napi_ok || !is_typedarray ||
      napi_get_typedarray_info(env, value, &type, length, &base, &arraybuffer, &offset) != napi_ok ||
      type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  *data = base;
  return 1;
}

/* open(): a socket(AF_UNIX, SOCK_DGRAM) that neither blocks nor outlives an exec. */
static napi_value open_socket(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    char code[16];
    int saved = errno;
    snprintf(code, sizeof code, "%d", saved);
    napi_throw_error(env, code, strerror(saved));
    return NULL;
  }
  return number(env, fd);
}

/*
 * sendTo(fd, path, data): 0 once the datagram is queued, else errno. A
 * path whose first byte is NUL names an abstract socket (its length is
 * the address's, with no terminator); any other is a file name.
 */
static napi_value send_to(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  const unsigned char *path, *data;
  size_t path_length, data_length;
  struct sockaddr_un address;
  socklen_t address_length;
  ssize_t sent;

  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "sendTo(fd, path, data): fd must be a number");
    return NULL;
  }
  if (!bytes_of(env, argv[1], "sendTo(fd, path, data): path must be a Buffer", &path, &path_length)) return NULL;
  if (!bytes_of(env, argv[2], "sendTo(fd, path, data): data must be a Buffer", &data, &data_length)) return NULL;

  memset(&address, 0, sizeof address);
  address.sun_family = AF_UNIX;
  if (path_length == 0) return number(env, EINVAL);
  if (path[0] == '\0') {
    if (path_length > sizeof address.sun_path) return number(env, ENAMETOOLONG);
    memcpy(address.sun_path, path, path_length);
    address_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_length);
  } else {
    /* Room for the terminating NUL; a NUL inside would cut the name short. */
    if (path_length >= sizeof address.sun_path) return number(env, ENAMETOOLONG);
    if (memchr(path, '\0', path_length) != NULL) return number(env, EINVAL);
    memcpy(address.sun_path, path, path_length);
    address_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_length + 1);
  }

  do {
    sent = sendto(fd, data, data_length, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)&address, address_length);
  } while (sent < 0 && errno == EINTR);
  return number(env, sent < 0 ? errno : 0);
}

/* close(fd): 0, or errno. */
static napi_value close_socket(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "close(fd): fd must be a number");
    return NULL;
  }
  /* Linux frees the descriptor even when close(2) fails with EINTR: never retried. */
  return number(env, close(fd) < 0 ? errno : 0);
}

/* malloc_trim(0): true if it gave pages back; false, and nothing done, without glibc. */
static napi_value trim_heap(napi_env env, napi_callback_info info) {
  napi_value result;
  bool released = false;
  (void)info;
#if defined(__GLIBC__)
  released = malloc_trim(0) != 0;
#endif
  CHECK(env, napi_get_boolean(env, released, &result));
  return result;
}

/* prctl(PR_SET_NAME, name) for the calling thread (the main thread's is the process's): 0 or an errno. */
static napi_value set_process_name(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char name[16]; /* TASK_COMM_LEN: the kernel keeps 15 bytes and a NUL */
  size_t length;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "setProcessName(name): name must be a string");
    return NULL;
  }
#if defined(__linux__)
  return number(env, prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0) < 0 ? errno : 0);
#else
  return number(env, ENOSYS);
#endif
}

/* closeOnExec(fd): sets FD_CLOEXEC on fd, keeping its other descriptor flags; 0 or an errno. */
static napi_value close_on_exec(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  int flags;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "closeOnExec(fd): fd must be a number");
    return NULL;
  }
  flags = fcntl(fd, F_GETFD);
  if (flags < 0) return number(env, errno);
  if (flags & FD_CLOEXEC) return number(env, 0);
  return number(env, fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0 ? errno : 0);
}

/*
 * bindOnDevice(address, port, device): a TCP socket (close-on-exec) with
 * SO_REUSEADDR, IPV6_V6ONLY off for IPv6, SO_BINDTODEVICE `device`, bound
 * to the numeric `address` (IPv4 or IPv6, no zone: an IPv6 link-local one
 * takes the device's index) and `port`, not yet listening. The descriptor,
 * or minus an errno (EPERM, ENODEV from SO_BINDTODEVICE, EADDRINUSE...).
 */
static napi_value bind_on_device(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char address[INET6_ADDRSTRLEN + 1];
  char device[IFNAMSIZ];
  size_t length;
  int32_t port;
  struct sockaddr_storage sa;
  socklen_t sa_length;
  int fd, one = 1, zero = 0, saved;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 3 || napi_get_value_string_utf8(env, argv[0], address, sizeof address, &length) != napi_ok ||
      napi_get_value_int32(env, argv[1], &port) != napi_ok || port < 0 || port > 65535 ||
      napi_get_value_string_utf8(env, argv[2], device, sizeof device, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "bindOnDevice(address, port, device): a numeric address, a port, an interface name");
    return NULL;
  }
  memset(&sa, 0, sizeof sa);
  if (inet_pton(AF_INET, address, &((struct sockaddr_in *)&sa)->sin_addr) == 1) {
    struct sockaddr_in *in = (struct sockaddr_in *)&sa;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    sa_length = sizeof *in;
  } else if (inet_pton(AF_INET6, address, &((struct sockaddr_in6 *)&sa)->sin6_addr) == 1) {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    if (IN6_IS_ADDR_LINKLOCAL(&in6->sin6_addr)) in6->sin6_scope_id = if_nametoindex(device);
    sa_length = sizeof *in6;
  } else {
    return number(env, -EINVAL);
  }
  fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return number(env, -errno);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      (sa.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) < 0) ||
#if defined(SO_BINDTODEVICE)
      setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, device, (socklen_t)strlen(device) + 1) < 0 ||
#else
      (errno = ENOPROTOOPT, true) ||
#endif
      bind(fd, (struct sockaddr *)&sa, sa_length) < 0) {
    saved = errno;
    close(fd);
    return number(env, -saved);
  }
  return number(env, fd);
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_property_descriptor methods[] = {
    {"open", NULL, open_socket, NULL, NULL, NULL, napi_enumerable, NULL},
    {"sendTo", NULL, send_to, NULL, NULL, NULL, napi_enumerable, NULL},
    {"close", NULL, close_socket, NULL, NULL, NULL, napi_enumerable, NULL},
    {"trimHeap", NULL, trim_heap, NULL, NULL, NULL, napi_enumerable, NULL},
    {"setProcessName", NULL, set_process_name, NULL, NULL, NULL, napi_enumerable, NULL},
    {"closeOnExec", NULL, close_on_exec, NULL, NULL, NULL, napi_enumerable, NULL},
    {"bindOnDevice", NULL, bind_on_device, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof methods / sizeof methods[0], methods) != napi_ok) return NULL;
  return exports;
}
