#!/bin/sh
# Installs what `npm run bench` needs to build mandos-load (the GnuTLS load
# generator and native reference server it compares us with) when missing and
# we run as root: a C compiler, make, pkg-config, GnuTLS's headers, openssl
# (make-clients.sh) and taskset. Without root the bench says what is missing
# and skips the native comparison.
PKGS="gcc make pkg-config libgnutls28-dev openssl util-linux" exec sh "$(dirname "$0")/install-test-peers.sh"
