#!/bin/sh
# The package's install script (npm ci, npm rebuild): builds our one native
# addon, src/native/datagram.c (syslog, systemd's notifications, malloc_trim), with
# node-gyp from binding.gyp. Without make, a C compiler or python3 (which
# node-gyp runs), node-gyp fails in a page of traces; this says first, in
# one line, what is missing and what installs it.
set -eu
cd "$(dirname "$0")/.."
missing=""
command -v "${MAKE:-make}" >/dev/null 2>&1 || missing="make"
command -v "${CC:-cc}" >/dev/null 2>&1 || missing="${missing:+$missing, }a C compiler (${CC:-cc})"
command -v "${PYTHON:-python3}" >/dev/null 2>&1 || missing="${missing:+$missing, }python3"
if [ -n "$missing" ]; then
  echo "mandos-ts: building its addon (syslog, systemd notifications) needs $missing: on Debian, apt install build-essential python3" >&2
  exit 1
fi
exec node-gyp rebuild
