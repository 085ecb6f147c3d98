#!/usr/bin/env bash
# Install the system packages that basalt's build, tests and hw-tests need, on
# Debian 12 (bookworm), as root, non-interactively.
#
#   scripts/install-deps.sh            install what is missing (quick no-op when all is there)
#   scripts/install-deps.sh --check    only report what is missing (exit 1 if anything is)
#   scripts/install-deps.sh --update   refresh the package lists even if they are fresh
#   scripts/install-deps.sh --no-arm64 leave out the arm64 cross build's packages
#
# * Idempotent: it first asks dpkg-query; apt-get runs only for missing packages.
# * qemu-system-x86 / qemu-system-arm come from bookworm-backports (qemu 10.x):
#   the machine ships qemu-utils 10.x from backports, which bookworm's
#   qemu-system 7.2 would remove. Backports and the package lists live in a
#   private APT configuration (scripts/lib/apt.sh); /etc/apt is not changed.
# * The services of tftpd-hpa, ser2net, pdudaemon, postgresql and lava-coordinator are not started: during the
#   install /usr/sbin/policy-rc.d must answer 101 ("action forbidden"). An existing
#   policy that already does so is kept; otherwise a temporary one is put in place
#   and the previous state restored afterwards (also after an interrupted run).
#   On a host running systemd the five services are also left disabled. (The tests start
#   a PostgreSQL cluster of their own, scripts/lib/postgres.sh.)
# * The arm64 cross build (scripts/build-arm64.sh): the cross compiler,
#   qemu-user-static, and the arm64 libraries in a sysroot of their own
#   (/var/cache/basalt/arm64-sysroot, not multiarch: nothing on the host is upgraded;
#   scripts/lib/cross-arm64.sh says why).
# * Output: one line per step; apt's output goes to target/logs/install-deps.log.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$REPO/scripts/lib/common.sh"
# shellcheck source=scripts/lib/apt.sh
. "$REPO/scripts/lib/apt.sh"
# shellcheck source=scripts/lib/cross-arm64.sh
. "$REPO/scripts/lib/cross-arm64.sh"
BASALT_TAG=install-deps

MODE=install
FORCE_UPDATE=0
ARM64=1
for arg in "$@"; do
  case $arg in
    --check) MODE=check ;;
    --update) FORCE_UPDATE=1 ;;
    --no-arm64) ARM64=0 ;;
    -h | --help)
      sed -n '2,/^set /{/^#/p}' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) basalt_die "unknown argument: $arg (see --help)" ;;
  esac
done

# Packages from bookworm (and its -updates / -security).
PKGS=(
  pkg-config libudev-dev libzmq3-dev # -sys crates: libudev, zmq
  libsqlite3-dev                     # the master's store (rusqlite, the system's SQLite)
  postgresql                         # the store's PostgreSQL tests (a throwaway cluster, scripts/lib/postgres.sh)
  socat ser2net pdudaemon telnet     # consoles and power
  tftpd-hpa tftp-hpa                 # TFTP, for comparison with basalt's own server
  u-boot-qemu                        # U-Boot for qemu boards
  passt                              # a real U-Boot's network, in a private namespace (tests/real_uboot.rs)
  nfs-ganesha nfs-ganesha-vfs        # a userspace NFSv4 server in that namespace (tests/real_uboot_nfs.rs)
  u-boot-tools                       # mkimage: the uImage headers basalt writes are compared with its (unit tests)
  busybox-static cpio                # initramfs fixtures
  xz-utils zstd bzip2                # (de)compression of images and rootfs tarballs
  git curl ca-certificates           # test definitions from git / url
  python3 python3-pexpect python3-yaml python3-venv # python3-venv: the LAVA generators, the Python client (scripts/python-venv.sh)
  python3-zmq                        # pyzmq: its certificates and clients, in the lab tests
  openssh-client                     # ssh / scp / ssh-keygen: SSH into held QEMU boards (tests/ssh_qemu.rs, tests/python_client.rs)
  lava-coordinator                   # Debian's MultiNode coordinator: interop tests and benchmark
  systemd                            # systemd-analyze verify of the lab's units (tests/lab_install.rs)
  chromium chromium-driver           # the web pages in a headless browser, over WebDriver (tests/web_pages.rs)
)
# Installed when the archive has them; their absence is not an error.
OPTIONAL_PKGS=()
# From bookworm-backports, at least this version.
BPO_PKGS=(qemu-system-x86 qemu-system-arm)
BPO_MIN_VERSION=1:8.0
# Packages whose daemons must not be started by the install.
SERVICES=(tftpd-hpa ser2net pdudaemon postgresql nfs-ganesha lava-coordinator)

POLICY=/usr/sbin/policy-rc.d
POLICY_SAVED=$POLICY.basalt-saved
POLICY_MARK='# basalt scripts/install-deps.sh: temporary, removed after the install'

# --- what is installed -------------------------------------------------------

declare -A STATUS VERSION
query_dpkg() {
  STATUS=() VERSION=()
  local p s v
  while read -r p s v; do
    STATUS[$p]=$s
    VERSION[$p]=$v
  done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev} ${Version}\n' \
    "${PKGS[@]}" "${OPTIONAL_PKGS[@]}" "${BPO_PKGS[@]}" 2>/dev/null || true)
}
installed() { [ "${STATUS[$1]:-}" = ii ]; }
bpo_ok() { installed "$1" && dpkg --compare-versions "${VERSION[$1]}" ge "$BPO_MIN_VERSION"; }

# An optional package counts as missing only while the package lists (if any) offer it.
optional_available() {
  [ -f "$BASALT_APT_DIR/apt.conf" ] || return 0
  local cand
  cand=$(APT_CONFIG=$BASALT_APT_DIR/apt.conf apt-cache policy "$1" 2>/dev/null |
    awk '/Candidate:/ { print $2 }')
  [ -n "$cand" ] && [ "$cand" != "(none)" ]
}

MISSING=() MISSING_BPO=() MISSING_OPT=() MISSING_ARM64=() MISSING_ARM64_SYSROOT=()
compute_missing() {
  query_dpkg
  MISSING=() MISSING_BPO=() MISSING_OPT=() MISSING_ARM64=() MISSING_ARM64_SYSROOT=()
  [ "$ARM64" = 0 ] || cross_arm64_missing
  local p
  for p in "${PKGS[@]}"; do installed "$p" || MISSING+=("$p"); done
  for p in "${BPO_PKGS[@]}"; do bpo_ok "$p" || MISSING_BPO+=("$p"); done
  for p in "${OPTIONAL_PKGS[@]}"; do
    installed "$p" || ! optional_available "$p" || MISSING_OPT+=("$p")
  done
}
all_missing() {
  local all=("${MISSING[@]}" "${MISSING_BPO[@]}" "${MISSING_OPT[@]}" "${MISSING_ARM64[@]}" "${MISSING_ARM64_SYSROOT[@]}")
  echo "${all[*]}"
}
n_missing() {
  local all
  read -r -a all <<<"$(all_missing)"
  echo "${#all[@]}"
}

# --- policy-rc.d: no service starts during the install -----------------------

policy_restore() {
  if [ -f "$POLICY" ] && grep -qF "$POLICY_MARK" "$POLICY"; then
    if [ -e "$POLICY_SAVED" ] || [ -L "$POLICY_SAVED" ]; then
      mv -f "$POLICY_SAVED" "$POLICY"
    else
      rm -f "$POLICY"
    fi
  fi
}

policy_forbids_starts() {
  [ -x "$POLICY" ] || return 1
  local s rc
  for s in "${SERVICES[@]}"; do
    rc=0
    "$POLICY" "$s" start >/dev/null 2>&1 || rc=$?
    [ "$rc" -eq 101 ] || return 1
  done
}

policy_guard() {
  if policy_forbids_starts; then
    echo "$BASALT_TAG: $POLICY already forbids service starts (kept)"
    return 0
  fi
  if [ -e "$POLICY" ] || [ -L "$POLICY" ]; then
    if [ -e "$POLICY_SAVED" ] || [ -L "$POLICY_SAVED" ]; then
      basalt_die "$POLICY_SAVED exists: restore or remove it by hand, then re-run"
    fi
    mv "$POLICY" "$POLICY_SAVED"
  fi
  trap policy_restore EXIT
  trap 'exit 130' INT TERM # so that the EXIT trap runs
  printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_MARK" >"$POLICY.tmp"
  chmod 755 "$POLICY.tmp"
  mv -f "$POLICY.tmp" "$POLICY"
  echo "$BASALT_TAG: temporary $POLICY (exit 101) in place for the install"
}

# --- install steps -----------------------------------------------------------

apt_install() { apt-get install -y -q "$@"; }

# Run a step that downloads, and when it fails on lists that were not refreshed in this
# run (e.g. a package version vanished from the mirror), refresh them and retry once.
retry_step() {
  local label=$1
  shift
  if ! basalt_step "$label" "$@"; then
    basalt_apt_updated_since "$RUN_START" && return 1
    echo "$BASALT_TAG: refreshing the package lists and retrying" >&2
    basalt_step apt-update basalt_apt_update || return 1
    basalt_step "$label (retry)" "$@" || return 1
  fi
}
install_step() {
  local label=$1
  shift
  retry_step "$label" apt_install "$@"
}

summary() {
  local q
  q=$(qemu-system-x86_64 --version 2>/dev/null | awk 'NR == 1 { print $4 }')
  local sysroot=
  [ "$ARM64" = 0 ] || ! cross_arm64_wanted || sysroot=", arm64 sysroot $BASALT_ARM64_SYSROOT"
  printf '%s: all %d packages present (qemu %s%s)\n' "$BASALT_TAG" \
    "$((${#PKGS[@]} + ${#BPO_PKGS[@]} + ${#OPTIONAL_PKGS[@]} + ARM64 * ${#ARM64_HOST_PKGS[@]}))" "${q:-?}" "$sysroot"
}

# --- main ----------------------------------------------------------------------

command -v dpkg-query >/dev/null || basalt_die "needs a Debian system (dpkg-query not found)"
compute_missing
if [ "$MODE" = check ]; then
  if [ "$(n_missing)" -eq 0 ]; then
    summary
    exit 0
  fi
  echo "$BASALT_TAG: missing: $(all_missing)"
  exit 1
fi

# An earlier run that was killed may have left its temporary policy behind.
[ "$(id -u)" -ne 0 ] || policy_restore

if [ "$(n_missing)" -eq 0 ] && [ "$FORCE_UPDATE" = 0 ]; then
  summary
  exit 0
fi
basalt_require_root

RUN_START=$(date +%s)
mkdir -p "$REPO/target/logs"
BASALT_LOG=$REPO/target/logs/install-deps.log
: >"$BASALT_LOG"
if [ "$(n_missing)" -eq 0 ]; then
  echo "$BASALT_TAG: nothing to install; refreshing the package lists (log: $BASALT_LOG)"
else
  echo "$BASALT_TAG: to install: $(all_missing) (log: $BASALT_LOG)"
fi

basalt_apt_init
if [ "$FORCE_UPDATE" = 1 ] || basalt_apt_stale; then
  basalt_step apt-update basalt_apt_update
fi
# The candidate of an optional package is known only now that there are lists.
compute_missing

NEWLY_INSTALLED=("${MISSING[@]}")
policy_guard
# (an optional package is in MISSING_OPT only when the lists offer it)
[ $((${#MISSING[@]} + ${#MISSING_OPT[@]})) -eq 0 ] ||
  install_step "install bookworm packages" "${MISSING[@]}" "${MISSING_OPT[@]}"
[ ${#MISSING_BPO[@]} -eq 0 ] ||
  install_step "install qemu (backports)" -t bookworm-backports "${MISSING_BPO[@]}"
[ ${#MISSING_ARM64[@]} -eq 0 ] ||
  install_step "install arm64 cross tools" "${MISSING_ARM64[@]}"
[ ${#MISSING_ARM64_SYSROOT[@]} -eq 0 ] ||
  retry_step "arm64 sysroot" cross_arm64_sysroot
policy_restore
trap - EXIT

# On a systemd host the packages just installed enabled their services for the
# next boot: disable those (only those: an admin's own choice is left alone).
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  for s in "${SERVICES[@]}"; do
    case " ${NEWLY_INSTALLED[*]} " in
      *" $s "*)
        systemctl disable "$s" >>"$BASALT_LOG" 2>&1 || true
        echo "$BASALT_TAG: service $s left disabled"
        ;;
    esac
  done
fi
rm -f "$BASALT_APT_DIR"/cache/archives/*.deb

compute_missing
for p in "${OPTIONAL_PKGS[@]}"; do
  installed "$p" || echo "$BASALT_TAG: optional $p is not in the archive: skipped"
done
[ "$(n_missing)" -eq 0 ] ||
  basalt_die "still missing after the install: $(all_missing) (see $BASALT_LOG)"
for s in in.tftpd ser2net pdudaemon; do
  if pgrep -x "$s" >/dev/null 2>&1; then echo "$BASALT_TAG: WARNING: $s is running" >&2; fi
done
summary
