#!/bin/sh
# Removes from dist/ what tsc built from sources that are gone: tsc writes
# dist/X.js (.cjs, and their source maps) for each X.ts (.cts) but never
# deletes one whose source was deleted or renamed. Left there, such a file
# would be packed into the tarball, hashed into the build stamp (two
# checkouts of the same sources would then differ), and, under dist/test,
# still run by `npm test`. Run after each tsc of the package's scripts,
# before scripts/stamp-build.sh; dist/src/build.json is the stamp's own.
set -eu
cd "$(dirname "$0")/.."
[ -d dist ] || exit 0
find dist -type f \( -name '*.js' -o -name '*.cjs' -o -name '*.js.map' -o -name '*.cjs.map' \) | while IFS= read -r built; do
  base=${built#dist/}
  base=${base%.map}
  case $base in
    *.cjs) source=${base%.cjs}.cts ;;
    *) source=${base%.js}.ts ;;
  esac
  if [ ! -f "$source" ]; then
    rm -f -- "$built"
  fi
done
find dist -mindepth 1 -type d -empty -delete
