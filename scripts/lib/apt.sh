# shellcheck shell=bash
# Shared by scripts/install-deps.sh and hw-tests/build-fixtures.sh (sourced, not run).
#
# A private APT configuration: its own sources list, package lists and download
# cache under $BASALT_APT_DIR (default /var/cache/basalt/apt). /etc/apt is never
# changed. It adds:
#   * bookworm-backports (default pin 100: used only where asked for with
#     -t bookworm-backports), for qemu-system 10.x: bookworm's qemu-system 7.2
#     would remove the qemu-utils 10.x from backports that the machine ships
#     (qemu-utils 10 Breaks: qemu-system-common << 8.0);
#   * the arm64 and armhf architectures, so that `apt-get download pkg:arm64` (or
#     `pkg:armhf`) works for the arm64 / armhf fixtures, without `dpkg --add-architecture`.

BASALT_APT_DIR=${BASALT_APT_DIR:-/var/cache/basalt/apt}
# Re-run `apt-get update` when the private lists are older than this (seconds).
BASALT_APT_MAX_AGE=${BASALT_APT_MAX_AGE:-21600}

basalt_apt_init() {
  local a=$BASALT_APT_DIR host archs mirror=${BASALT_DEBIAN_MIRROR:-http://deb.debian.org}
  mkdir -p "$a/lists/partial" "$a/cache/archives/partial" "$a/sources.list.d"
  host=$(dpkg --print-architecture)
  archs="\"$host\";"
  local extra=arm64,armhf a2
  for a2 in arm64 armhf; do [ "$host" = "$a2" ] || archs="$archs \"$a2\";"; done
  [ "$host" != arm64 ] || extra=armhf
  [ "$host" != armhf ] || extra=arm64
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  local opts="arch=${host},$extra signed-by=$keyring"
  cat >"$a/sources.list.new" <<SRC
deb [$opts] $mirror/debian bookworm main
deb [$opts] $mirror/debian bookworm-updates main
deb [$opts] $mirror/debian-security bookworm-security main
deb [$opts] $mirror/debian bookworm-backports main
SRC
  cat >"$a/apt.conf.new" <<CONF
Dir::Etc::SourceList "$a/sources.list";
Dir::Etc::SourceParts "$a/sources.list.d";
Dir::State::Lists "$a/lists";
Dir::Cache "$a/cache";
APT::Architectures { $archs };
Acquire::Languages "none";
Acquire::Retries "3";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Dpkg::Use-Pty "0";
DPkg::Lock::Timeout "600";
Dpkg::Options { "--force-confdef"; "--force-confold"; };
CONF
  local f
  for f in sources.list apt.conf; do
    if cmp -s "$a/$f.new" "$a/$f"; then
      rm -f "$a/$f.new"
    else
      # a changed source or architecture: the lists no longer match it (update them)
      mv "$a/$f.new" "$a/$f"
      rm -f "$a/lists/.basalt-updated"
    fi
  done
  export APT_CONFIG=$a/apt.conf DEBIAN_FRONTEND=noninteractive
}

# True when the private lists are missing or older than BASALT_APT_MAX_AGE.
basalt_apt_stale() {
  local stamp=$BASALT_APT_DIR/lists/.basalt-updated
  [ -f "$stamp" ] || return 0
  [ "$(($(date +%s) - $(stat -c %Y "$stamp")))" -gt "$BASALT_APT_MAX_AGE" ]
}

# True when the lists were updated after time $1 (epoch seconds), e.g. in this run.
basalt_apt_updated_since() {
  local stamp=$BASALT_APT_DIR/lists/.basalt-updated
  [ -f "$stamp" ] && [ "$(stat -c %Y "$stamp")" -ge "$1" ]
}

# apt-get update of the private lists; any failed download is an error.
basalt_apt_update() {
  apt-get update -q --error-on=any || return
  touch "$BASALT_APT_DIR/lists/.basalt-updated"
}
