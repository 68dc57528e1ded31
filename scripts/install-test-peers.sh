#!/bin/sh
# Installs the Debian packages the integration tests talk to (the real peers),
# when they are missing and we run as root. Without root, tests that need a
# missing peer skip themselves and say why. $PKGS replaces the list
# (scripts/install-bench-tools.sh).
set -eu
PKGS="${PKGS:-mandos-client mandos gnutls-bin dbus avahi-daemon avahi-utils iproute2 tmux prometheus etcd-server etcd-client systemd}"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-test-peers: not root; missing:$missing (what needs them will skip)" >&2
  exit 0
fi
# Never let a package's maintainer script start a daemon on this machine's
# real interfaces (the reference mandos server and avahi announce by
# multicast); policy-rc.d exit 101 forbids service starts during install.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
echo "install-test-peers: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >/dev/null
