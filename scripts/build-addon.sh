#!/bin/sh
# The package's install script (npm ci, npm rebuild, npm install -g of a
# tarball): builds our one native addon, src/native/datagram.c (syslog,
# systemd's notifications, malloc_trim), with node-gyp from binding.gyp.
#
# An addon already there is kept when it was built from these very sources
# (their SHA-256, written beside it after each build) and this node loads
# it: so the one `npm pack` put in the tarball (Node-API, so any Node.js
# from 18.20 on loads it) lets a server without a compiler, or without the
# Node.js headers node-gyp would download, install the tarball. An addon of
# another architecture or C library does not load, and is built; so is one
# whose sources changed. (Not file times: a tarball's are those of its
# extraction.)
#
# Without make, a C compiler or python3 (which node-gyp runs), node-gyp
# fails in a page of traces; this says first, in one line, what is missing
# and what installs it.
set -eu
cd "$(dirname "$0")/.."
addon=build/Release/mandos_datagram.node
stamp=build/Release/mandos_datagram.sources-sha256
sources=$(cat src/native/datagram.c binding.gyp | sha256sum)
if [ -f "$addon" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sources" ] &&
  node -e 'require(process.argv[1])' "$PWD/$addon" 2>/dev/null; then
  exit 0
fi
missing=""
command -v "${MAKE:-make}" >/dev/null 2>&1 || missing="make"
command -v "${CC:-cc}" >/dev/null 2>&1 || missing="${missing:+$missing, }a C compiler (${CC:-cc})"
command -v "${PYTHON:-python3}" >/dev/null 2>&1 || missing="${missing:+$missing, }python3"
if [ -n "$missing" ]; then
  echo "mandos-ts: building its addon (syslog, systemd notifications) needs $missing: on Debian, apt install build-essential python3" >&2
  exit 1
fi
node-gyp rebuild
echo "$sources" > "$stamp"
