#!/usr/bin/env bash
# Install basalt's lab daemons on this host, as root: the binaries, the systemd units, the
# example environment files and the basalt user (docs/config.md).
#
#   scripts/install-lab.sh [--prefix DIR] [--from DIR] [--enable master,worker]
#   DESTDIR=/tmp/stage scripts/install-lab.sh     stage everything below /tmp/stage instead
#
#   --prefix DIR   where the binaries go, DIR/bin (default /usr/local); the units name them there
#   --from DIR     the built binaries (default target/release: cargo build --release)
#   --enable LIST  then `systemctl enable --now` those units (master, worker or both; only when
#                  systemd runs this host and DESTDIR is empty)
#
# Installs:
#   PREFIX/bin/basalt, basalt-master, basalt-worker (and basalt-board when built)
#   PREFIX/share/doc/basalt/config.md
#   /etc/systemd/system/basalt-master.service, basalt-worker.service (replaced: change them
#     with drop-ins, `systemctl edit UNIT`)
#   /etc/default/basalt-master, basalt-worker (mode 0600; an existing file is never replaced:
#     the new example goes next to it as FILE.example)
#   /etc/basalt/worker/ (0700, the worker's keys), /etc/basalt/device-types/
#   the system user and group basalt, /var/lib/basalt-master owned by it (not with DESTDIR)
# Idempotent: run it again after a new build.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$REPO/scripts/lib/common.sh"
BASALT_TAG=install-lab

PREFIX=/usr/local
FROM=$REPO/target/release
ENABLE=
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) PREFIX=${2:?--prefix DIR}; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --from) FROM=${2:?--from DIR}; shift 2 ;;
    --from=*) FROM=${1#*=}; shift ;;
    --enable) ENABLE=${2:?--enable master,worker}; shift 2 ;;
    --enable=*) ENABLE=${1#*=}; shift ;;
    -h | --help)
      sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) basalt_die "unknown argument: $1 (see --help)" ;;
  esac
done
DESTDIR=${DESTDIR:-}
case $PREFIX in /*) ;; *) basalt_die "--prefix $PREFIX: must be an absolute path" ;; esac
PREFIX=${PREFIX%/}
case ${DESTDIR:-/} in /*) ;; *) basalt_die "DESTDIR=$DESTDIR: must be an absolute path" ;; esac
# a prefix the units can name as written: no spaces, quotes or systemd specifiers
case $PREFIX in *[!A-Za-z0-9/._+-]*) basalt_die "--prefix $PREFIX: only letters, digits and / . _ + - please" ;; esac
if [ -z "$DESTDIR" ]; then
  basalt_require_root
fi
for u in ${ENABLE//,/ }; do
  case $u in master | worker) ;; *) basalt_die "--enable $ENABLE: master, worker or master,worker" ;; esac
done

BINARIES=(basalt basalt-master basalt-worker)
for b in "${BINARIES[@]}"; do
  [ -x "$FROM/$b" ] || basalt_die "$FROM/$b: not built (cargo build --release --workspace --bins, or --from DIR)"
done
[ -x "$FROM/basalt-board" ] && BINARIES+=(basalt-board)

say() { echo "$BASALT_TAG: $*"; }

# binaries and documentation
install -d -m 0755 "$DESTDIR$PREFIX/bin" "$DESTDIR$PREFIX/share/doc/basalt"
for b in "${BINARIES[@]}"; do
  install -m 0755 "$FROM/$b" "$DESTDIR$PREFIX/bin/$b"
done
install -m 0644 "$REPO/docs/config.md" "$DESTDIR$PREFIX/share/doc/basalt/config.md"
say "binaries: ${BINARIES[*]} in $DESTDIR$PREFIX/bin"

# units, naming the binaries and the documentation below PREFIX
install -d -m 0755 "$DESTDIR/etc/systemd/system"
for unit in basalt-master.service basalt-worker.service; do
  sed "s|/usr/local/|$PREFIX/|g" "$REPO/config/systemd/$unit" >"$DESTDIR/etc/systemd/system/$unit.new"
  chmod 0644 "$DESTDIR/etc/systemd/system/$unit.new"
  mv -f "$DESTDIR/etc/systemd/system/$unit.new" "$DESTDIR/etc/systemd/system/$unit"
done
say "units: basalt-master.service basalt-worker.service in $DESTDIR/etc/systemd/system"

# environment files: an admin's file is never replaced
install -d -m 0755 "$DESTDIR/etc/default"
for f in basalt-master basalt-worker; do
  target=$DESTDIR/etc/default/$f
  if [ -e "$target" ] || [ -L "$target" ]; then
    install -m 0600 "$REPO/config/default/$f" "$target.example"
    say "kept $target (this version's example: $target.example)"
  else
    install -m 0600 "$REPO/config/default/$f" "$target"
    say "settings: $target"
  fi
done

# the worker's keys and the lab's device-type templates
install -d -m 0755 "$DESTDIR/etc/basalt" "$DESTDIR/etc/basalt/device-types"
install -d -m 0700 "$DESTDIR/etc/basalt/worker"

# the master's user and state directory (systemd's StateDirectory= keeps it owned by basalt)
if [ -n "$DESTDIR" ]; then
  say "DESTDIR set: the user basalt and /var/lib/basalt-master are not created"
else
  if ! getent passwd basalt >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/basalt-master --no-create-home \
      --shell /usr/sbin/nologin --comment "basalt master" basalt
    say "user: basalt (system)"
  fi
  install -d -m 0750 -o basalt -g basalt /var/lib/basalt-master
fi

# systemd: only when it runs this host
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  for u in ${ENABLE//,/ }; do
    systemctl enable --now "basalt-$u.service"
    say "enabled and started basalt-$u.service"
  done
  [ -n "$ENABLE" ] || say "next: edit /etc/default/basalt-master or basalt-worker, then" \
    "systemctl enable --now basalt-master (or basalt-worker)"
else
  [ -z "$ENABLE" ] || say "--enable $ENABLE: systemd does not run this host (or DESTDIR is set): nothing enabled"
  say "next, on the lab's host: systemctl daemon-reload && systemctl enable --now basalt-master (or basalt-worker)"
fi
