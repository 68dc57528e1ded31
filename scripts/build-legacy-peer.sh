#!/bin/sh
# Builds a real legacy Mandos client (mandos-client 1.8.16 on GnuTLS 3.5.19,
# which still speaks TLS 1.2 with OpenPGP certificates) from its sources, for
# test/server-legacy-clients.test.ts: MANDOS_LEGACY_PEER_DIR=OUT npm test.
# Nothing it builds is part of this repository or shipped with it.
#
#   sh scripts/build-legacy-peer.sh GNUTLS_SRC NETTLE_SRC MANDOS_SRC OUT
#
# Each *_SRC is a source tree at the release the legacy peers were built
# from (docs/TESTING.md, "A real legacy client"): GnuTLS's git tag
# gnutls_3_5_19, nettle's nettle_3.4.1_release_20181204, Mandos's
# version-1.8.16-1. They are copied, never written to. OUT gets
# bin/mandos-client and lib/libgnutls.so.30 (found through $ORIGIN/../lib);
# nettle is linked in statically, since GnuTLS 3.5 does not build against
# the nettle 3.8 of Debian bookworm. As root, the build tools and headers
# are installed first.
set -eu

if [ $# -ne 4 ]; then
  echo "usage: $0 GNUTLS_SRC NETTLE_SRC MANDOS_SRC OUT" >&2
  exit 2
fi
for d in "$1" "$2" "$3"; do
  [ -d "$d" ] || { echo "$0: $d: not a directory" >&2; exit 2; }
done
GNUTLS_SRC=$(cd "$1" && pwd)
NETTLE_SRC=$(cd "$2" && pwd)
MANDOS_SRC=$(cd "$3" && pwd)
mkdir -p "$4"
OUT=$(cd "$4" && pwd)

grep -q '3\.5\.19' "$GNUTLS_SRC/NEWS" || { echo "$0: $GNUTLS_SRC is not GnuTLS 3.5.19" >&2; exit 2; }
grep -q 'AC_INIT(\[nettle\], \[3\.4\.1\]' "$NETTLE_SRC/configure.ac" || { echo "$0: $NETTLE_SRC is not nettle 3.4.1" >&2; exit 2; }
grep -q '^version:=1\.8\.16$' "$MANDOS_SRC/Makefile" || { echo "$0: $MANDOS_SRC is not Mandos 1.8.16" >&2; exit 2; }

if [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    gcc make pkg-config autoconf automake libtool autopoint gettext bison gperf m4 \
    libgmp-dev libgpgme-dev libavahi-core-dev gpg gtk-doc-tools >/dev/null
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mandos-legacy-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cp -R "$NETTLE_SRC" "$WORK/nettle"
cp -R "$GNUTLS_SRC" "$WORK/gnutls"
cp -R "$MANDOS_SRC" "$WORK/mandos"
chmod -R u+w "$WORK"
JOBS=$(nproc 2>/dev/null || echo 2)

echo "nettle 3.4.1 (static, position-independent)"
(
  cd "$WORK/nettle"
  [ -x configure ] || sh ./.bootstrap
  CFLAGS="-O2 -fPIC" ./configure --prefix="$WORK/nettle-inst" --libdir="$WORK/nettle-inst/lib" \
    --disable-shared --enable-static --disable-documentation --disable-openssl
  make -j"$JOBS"
  make install
) >"$WORK/nettle.log" 2>&1 || { tail -30 "$WORK/nettle.log" >&2; exit 1; }

echo "GnuTLS 3.5.19 (the library only, OpenPGP on)"
(
  cd "$WORK/gnutls"
  # A git tree has no configure; a release tarball has.
  [ -x configure ] || make -f cfg.mk autoreconf
  PKG_CONFIG_PATH="$WORK/nettle-inst/lib/pkgconfig" LIBS="-lgmp" ./configure --prefix="$WORK/gnutls-inst" \
    --enable-openpgp-authentication --disable-doc --disable-tests --disable-guile --disable-cxx \
    --disable-libdane --disable-nls --without-p11-kit --without-tpm --without-idn \
    --with-included-libtasn1 --with-included-unistring --disable-dependency-tracking
  make -j"$JOBS" -C gl
  make -j"$JOBS" -C lib
  make -C lib install
) >"$WORK/gnutls.log" 2>&1 || { tail -30 "$WORK/gnutls.log" >&2; exit 1; }

echo "mandos-client 1.8.16"
(
  cd "$WORK/mandos"
  # Appended to the Makefile's own LDFLAGS; "\$$" reaches the linker as
  # "$": $ORIGIN is for the dynamic linker, not for make or the shell.
  PKG_CONFIG_PATH="$WORK/gnutls-inst/lib/pkgconfig" LDFLAGS='-Wl,-rpath,\$$ORIGIN/../lib' make plugins.d/mandos-client
) >"$WORK/mandos.log" 2>&1 || { tail -30 "$WORK/mandos.log" >&2; exit 1; }

mkdir -p "$OUT/bin" "$OUT/lib"
cp "$WORK/mandos/plugins.d/mandos-client" "$OUT/bin/"
cp -P "$WORK/gnutls-inst/lib"/libgnutls.so.30* "$OUT/lib/"
# Its --version exits 64 (EX_USAGE) after printing.
"$OUT/bin/mandos-client" --version 2>&1 | grep -q 'mandos-client 1\.8\.16' || { echo "$0: $OUT/bin/mandos-client does not run" >&2; exit 1; }
echo "built: MANDOS_LEGACY_PEER_DIR=$OUT npm test"
