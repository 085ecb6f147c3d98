# shellcheck shell=bash
# The arm64 cross build's system side (sourced by scripts/install-deps.sh, which calls
# these functions, and by scripts/build-arm64.sh, which reads BASALT_ARM64_SYSROOT).
#
# * Host packages: the cross compiler (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross)
#   and qemu-user-static, which runs the arm64 binaries in tests and benchmarks.
# * The arm64 libraries basalt links (libzmq3-dev, libudev-dev, libusb-1.0-0-dev and
#   everything they depend on, libc6 included) go into a sysroot of their own,
#   $BASALT_ARM64_SYSROOT (default /var/cache/basalt/arm64-sysroot), not into the host
#   through multiarch: Multi-Arch: same libraries must have one version for both
#   architectures (libzmq5:amd64 and :arm64, libssl3, zlib1g, liblzma5 ...), and where
#   the host's copies are older than the mirror's (superseded security updates, no
#   longer downloadable), installing the arm64 ones upgrades the host's. The sysroot
#   changes nothing on the host: dpkg does not learn arm64, no package is upgraded.
#   apt resolves the packages as on an empty arm64 system (its own status file, the
#   private lists of scripts/lib/apt.sh, which list arm64), downloads them, and each is
#   unpacked there (without documentation); absolute symlinks are made relative, so
#   that they resolve inside it. The linker gets `--sysroot`, pkg-config
#   PKG_CONFIG_SYSROOT_DIR (scripts/build-arm64.sh); qemu-user gets `-L` it, which also
#   gives the binaries the arm64 loader.
# * qemu-user-static is bookworm's (7.2), not backports' 10.x: that one depends on
#   qemu-user-binfmt, whose only purpose is registering binfmt_misc handlers (global
#   state); basalt runs arm64 binaries through qemu-aarch64-static explicitly and needs
#   no handler. (bookworm's package registers handlers only where binfmt-support is
#   installed and the host is not a container.)
# * On an arm64 host there is nothing to cross: the section is empty.

# Host-architecture packages.
ARM64_HOST_PKGS=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static)
# The arm64 packages of the sysroot (with their dependencies). libudev-dev and
# libusb-1.0-0-dev: the USB inventory's -sys crates.
ARM64_SYSROOT_PKGS=(libzmq3-dev libudev-dev libusb-1.0-0-dev)
BASALT_ARM64_SYSROOT=${BASALT_ARM64_SYSROOT:-/var/cache/basalt/arm64-sysroot}
# In the sysroot: what it was made of (the request, then "package version" lines).
ARM64_SYSROOT_STAMP=.basalt-sysroot

# Whether this host cross-builds for arm64 (any host that is not arm64 itself).
cross_arm64_wanted() { [ "$(dpkg --print-architecture)" != arm64 ]; }

# The stamp's first line for the current request.
_cross_arm64_request() { echo "request: ${ARM64_SYSROOT_PKGS[*]}"; }

# Sets MISSING_ARM64 (the host packages of this section that are not installed) and
# MISSING_ARM64_SYSROOT ("arm64-sysroot" when the sysroot is missing or was made for
# another list of packages, else empty).
cross_arm64_missing() {
  MISSING_ARM64=() MISSING_ARM64_SYSROOT=()
  cross_arm64_wanted || return 0
  local -A have=()
  local p s stamp
  while read -r p s; do
    [ "$s" != ii ] || have[$p]=1
  done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${ARM64_HOST_PKGS[@]}" 2>/dev/null || true)
  for p in "${ARM64_HOST_PKGS[@]}"; do
    [ -n "${have[$p]:-}" ] || MISSING_ARM64+=("$p")
  done
  stamp=$(head -n 1 "$BASALT_ARM64_SYSROOT/$ARM64_SYSROOT_STAMP" 2>/dev/null || true)
  # shellcheck disable=SC2034 # read by install-deps.sh
  [ "$stamp" = "$(_cross_arm64_request)" ] || MISSING_ARM64_SYSROOT=(arm64-sysroot)
}

# Makes the sysroot afresh (beside it, then in its place). Needs the private APT
# configuration (basalt_apt_init: APT_CONFIG).
cross_arm64_sysroot() {
  local root=${BASALT_ARM64_SYSROOT%/} work=${BASALT_ARM64_SYSROOT%/}.work
  # it is replaced as a whole: only a directory of its own
  case $root in
    /?*) ;;
    *) basalt_die "BASALT_ARM64_SYSROOT must be an absolute path other than /: '$BASALT_ARM64_SYSROOT'" ;;
  esac
  if [ -e "$root" ] && [ ! -f "$root/$ARM64_SYSROOT_STAMP" ] && [ -n "$(ls -A "$root" 2>/dev/null)" ]; then
    basalt_die "$root exists and is not an arm64 sysroot made here (no $ARM64_SYSROOT_STAMP): choose another BASALT_ARM64_SYSROOT"
  fi
  rm -rf "$work" "$root.new"
  mkdir -p "$work/archives/partial" "$work/state" "$root.new"
  : >"$work/state/status"
  # an empty arm64 system: its own status file, the private lists and their arm64 part
  cat >"$work/apt.conf" <<CONF
#include "$APT_CONFIG";
#clear APT::Architectures;
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
Dir::State::status "$work/state/status";
Dir::State::extended_states "$work/state/extended_states";
Dir::Cache::archives "$work/archives";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Debug::NoLocking "true";
APT::Sandbox::User "root";
CONF
  APT_CONFIG=$work/apt.conf apt-get install --download-only -y -q "${ARM64_SYSROOT_PKGS[@]}"
  local deb
  for deb in "$work"/archives/*.deb; do
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$root.new" \
      --exclude=./usr/share/doc --exclude=./usr/share/man --exclude=./usr/share/info \
      --exclude=./usr/share/locale --exclude=./usr/share/lintian
  done
  # /usr/lib/aarch64-linux-gnu/libm.so -> /lib/aarch64-linux-gnu/libm.so.6: relative
  local link target
  while IFS= read -r -d '' link; do
    target=$(readlink "$link")
    ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$root.new$target")" "$link"
  done < <(find "$root.new" -type l -lname '/*' -print0)
  {
    _cross_arm64_request
    # shellcheck disable=SC2016 # dpkg-deb's format, not the shell's
    for deb in "$work"/archives/*.deb; do dpkg-deb -W --showformat='${Package} ${Version}\n' "$deb"; done
  } >"$root.new/$ARM64_SYSROOT_STAMP"
  rm -rf "$root" "$work"
  mv "$root.new" "$root"
  echo "arm64 sysroot: $root, $(($(wc -l <"$root/$ARM64_SYSROOT_STAMP") - 1)) packages, $(du -sh "$root" | cut -f1)"
}
