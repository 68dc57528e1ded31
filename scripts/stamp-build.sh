#!/bin/sh
# Stamps the built server with which build it is: dist/src/build.json, the
# package's version and the first 12 hex digits of the SHA-256 of every
# file tsc wrote under dist/src (source maps aside), package.json and
# package-lock.json (the dependencies' exact versions). Run after each tsc
# of the package's scripts, so a tarball carries its build's stamp.
#
# A running server reads it once, as it starts; a piece it loads later (a
# handshake worker or the checker host started again) compares the stamp
# of its own files with the server's and does not run mixed with another
# build (src/build.ts). The same sources always give the same stamp, so
# installing the same build again changes nothing.
set -eu
cd "$(dirname "$0")/.."
version=$(node -p 'require("./package.json").version')
build=$(
  {
    (cd dist/src && find . -type f ! -name '*.map' ! -name 'build.json*' | LC_ALL=C sort | xargs sha256sum)
    sha256sum package.json
    if [ -f package-lock.json ]; then sha256sum package-lock.json; fi
  } | sha256sum | cut -c1-12
)
printf '{"version":"%s","build":"%s"}\n' "$version" "$build" > dist/src/build.json.tmp
mv dist/src/build.json.tmp dist/src/build.json
