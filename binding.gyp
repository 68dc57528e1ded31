# The one native addon (src/native/datagram.c): unix datagrams for syslog
# and systemd, malloc_trim for memory, and a socket bound to an interface (--interface). Node-API only, so a build outlives upgrades of Node.js.
{
  "targets": [
    {
      "target_name": "mandos_datagram",
      "sources": ["src/native/datagram.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra", "-Werror"]
    }
  ]
}
