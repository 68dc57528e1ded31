# The one native addon (src/native/datagram.c): unix datagrams for syslog
# and systemd, and malloc_trim for memory. Node-API only, so a build outlives upgrades of Node.js.
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
