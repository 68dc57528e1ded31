#!/bin/sh
# Installs mandos-ts as the system's Mandos service, after `npm install -g`
# (of the tarball `npm pack` makes, or of a checkout): the systemd unit
# (contrib/systemd/mandos.service) as /etc/systemd/system/mandos.service,
# which takes the place of the Debian mandos package's own unit, with
# ExecStart naming our `mandos` where npm put it; /etc/default/mandos,
# unless there is one (the Debian package's has the same settings), with a
# DAEMON= line naming ours for the package's sysvinit script
# (/etc/init.d/mandos runs $DAEMON, by default /usr/sbin/mandos); and our
# D-Bus policy, unless the package's is there. It never runs systemctl or
# the init script; it says what to run next.
#
#   npm pack && sudo npm install -g ./mandos-ts-*.tgz && sudo sh scripts/install-service.sh
#
# Our `mandos` is looked for in npm's global bin directory (`npm prefix
# -g`: /usr/local with Debian's npm, /usr with NodeSource's), or given as
# MANDOS_BIN. Not /usr/sbin/mandos: that is the Python server of Debian's
# mandos package, whose log lines ours share character for character.
# DESTDIR puts the files under another root (tests).
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
destdir=${DESTDIR:-}

if [ -z "${MANDOS_BIN:-}" ]; then
  # Without DESTDIR: npm 11 puts its default global prefix under it
  # (`DESTDIR=/x npm prefix -g` says /x/usr), where npm installed nothing.
  prefix=$(env -u DESTDIR npm prefix -g) || { echo "install-service: npm prefix -g failed; give our mandos as MANDOS_BIN" >&2; exit 1; }
  MANDOS_BIN="$prefix/bin/mandos"
fi
case "$MANDOS_BIN" in
  /*) ;;
  *) echo "install-service: MANDOS_BIN must be an absolute path, not $MANDOS_BIN" >&2; exit 1 ;;
esac
case "$MANDOS_BIN" in
  *[!A-Za-z0-9/._+-]*) echo "install-service: $MANDOS_BIN has characters a unit's ExecStart would need quoted" >&2; exit 1 ;;
esac
# Ours says so in its version; the Python server's does not.
version=$("$MANDOS_BIN" --version 2>&1) || { echo "install-service: $MANDOS_BIN does not run (install it first: npm pack && npm install -g ./mandos-ts-*.tgz)" >&2; exit 1; }
case "$version" in
  *mandos-ts*) ;;
  *) echo "install-service: $MANDOS_BIN is not mandos-ts (it says: $version)" >&2; exit 1 ;;
esac

# What the unit's sandbox hides from the service, and the PATH systemd
# gives it (bin/mandos runs `node` from it): said now, not at the next boot.
hidden_by() {
  case "$1" in
    /home/*|/root/*|/run/user/*) echo "ProtectHome=yes" ;;
    /tmp/*|/var/tmp/*) echo "PrivateTmp=yes" ;;
  esac
}
# $1: what, as the warning names it; $2: its path.
warn_if_hidden() {
  real=$(readlink -f "$2")
  setting=$(hidden_by "$real")
  [ -z "$setting" ] || echo "install-service: warning: $1 is $real, which the unit's $setting hides: the service would not start. Keep it elsewhere (the checkout in /opt/mandos-ts, say) and install again." >&2
}
warn_if_hidden "$MANDOS_BIN" "$MANDOS_BIN"
if node=$(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin command -v node); then
  warn_if_hidden "the service's node" "$node"
else
  echo "install-service: warning: no node on the service's PATH (/usr/local/bin, /usr/bin, ...): the service would not start. Install Node.js there (Debian's nodejs, or NodeSource's)." >&2
fi

unit="$destdir/etc/systemd/system/mandos.service"
mkdir -p "$(dirname "$unit")"
sed "s|^ExecStart=[^ ]*|ExecStart=$MANDOS_BIN|" "$repo/contrib/systemd/mandos.service" > "$unit.tmp"
chmod 644 "$unit.tmp"
mv "$unit.tmp" "$unit"
echo "installed $unit (ExecStart=$MANDOS_BIN)"

defaults="$destdir/etc/default/mandos"
if [ -e "$defaults" ]; then
  echo "kept $defaults"
else
  mkdir -p "$(dirname "$defaults")"
  install -m 644 "$repo/contrib/default/mandos" "$defaults"
  echo "installed $defaults"
fi
# Debian's init script sets DAEMON=/usr/sbin/mandos, then reads this file;
# the unit names ours itself and reads only DAEMON_ARGS. One DAEMON= line,
# ours, in place of any other (written beside, then renamed over).
daemon_line="DAEMON=$MANDOS_BIN"
note="# Our mandos, for /etc/init.d/mandos (set by mandos-ts's install-service.sh)."
if grep -qxF "$daemon_line" "$defaults" && [ "$(grep -c '^[[:space:]]*DAEMON=' "$defaults")" = 1 ]; then
  echo "kept $daemon_line in $defaults"
else
  others=$(grep '^[[:space:]]*DAEMON=' "$defaults" | grep -vxF "$daemon_line" | tr '\n' ' ') || true
  cp -p "$defaults" "$defaults.tmp"
  { grep -v -e '^[[:space:]]*DAEMON=' -e "^$note\$" "$defaults" || true
    echo "$note"
    echo "$daemon_line"
  } > "$defaults.tmp"
  mv "$defaults.tmp" "$defaults"
  echo "set $daemon_line in $defaults${others:+ (was: ${others% })}"
  echo "note: $defaults is a conffile of Debian's mandos package: when an upgrade of it asks, keep your version (or run this script again), else /etc/init.d/mandos runs /usr/sbin/mandos again"
fi

policy_dir="$destdir/etc/dbus-1/system.d"
if [ -e "$policy_dir/mandos.conf" ]; then
  echo "kept $policy_dir/mandos.conf (the Debian package's D-Bus policy, the same rules as ours)"
else
  mkdir -p "$policy_dir"
  install -m 644 "$repo/contrib/dbus/mandos-ts.conf" "$policy_dir/mandos-ts.conf"
  echo "installed $policy_dir/mandos-ts.conf"
fi

if [ -z "$destdir" ]; then
  if [ -d /run/systemd/system ]; then
    # restart, not enable --now: that starts only a unit not active, and
    # the package's, running the Python server, is; it would go on serving.
    echo "next: systemctl daemon-reload && systemctl enable mandos && systemctl restart mandos"
  else
    echo "next (no systemd runs here): /etc/init.d/mandos restart"
  fi
fi
