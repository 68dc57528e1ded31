#!/bin/sh
# Installs what `npm run bench` needs to build mandos-load (the GnuTLS load
# generator and native reference server it compares us with) when missing and
# we run as root: a C compiler, make, pkg-config, GnuTLS's headers, openssl
# (make-clients.sh) and taskset. Without root the bench says what is missing
# and skips the native comparison.
set -eu
PKGS="gcc make pkg-config libgnutls28-dev openssl util-linux"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-bench-tools: not root; missing:$missing (the native comparison will be skipped)" >&2
  exit 0
fi
echo "install-bench-tools: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >/dev/null
