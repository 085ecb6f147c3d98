#!/usr/bin/env bash
# Build the boot fixtures of basalt's QEMU tests into a cache directory:
#
#   amd64/vmlinux            Debian bookworm kernel as an ELF (PVH) vmlinux, for qemu -kernel
#   amd64/bzImage            the same kernel as Debian ships it (XZ bzImage; U-Boot zboot)
#   amd64/initramfs.cpio.gz  busybox initramfs: root shell on the console, prompt '/ # '
#   amd64/modules/           the kernel's virtio PCI network modules (load: their order)
#   amd64/dropbear/          Debian's dropbear-bin, openssh-sftp-server and the libraries they load
#   amd64/initramfs-ssh.cpio.gz  the amd64 initramfs with those modules and dropbear (host keys
#                            made at build time, /root/.ssh empty); its init brings eth0 up
#                            (DHCP, else 10.0.2.15/24) and leaves dropbear to basalt  [optional]
#   arm64/Image              Debian bookworm arm64 kernel (uncompressed Image)  [optional]
#   arm64/modules/           the kernel's virtio PCI/net/blk and EHCI/USB-storage modules (load: their order)
#   arm64/initramfs.cpio.gz  the same initramfs with busybox-static:arm64 and those modules  [optional]
#                            (its init loads them, makes /dev/disk/by-id links from sysfs and,
#                            with ip=dhcp on the command line, asks DHCP for eth0; with
#                            root=/dev/nfs nfsroot=SERVER:PATH[,opts] it mounts that over
#                            NFSv4 and switch_roots into it)
#   arm64/nfsrootfs.tar.gz   an NFS root: the same busybox tree without the modules, with the
#                            marker file /etc/basalt-nfsroot  [optional]
#   armhf/zImage             Debian bookworm armhf (armmp) kernel, a zImage (U-Boot bootz)  [optional]
#   armhf/modules/           its virtio MMIO/PCI, net and blk modules (load: their order)
#   armhf/initramfs.cpio.gz  the same initramfs with busybox-static:armhf and those modules  [optional]
#   env                      KEY=VALUE lines (shell-sourceable) naming the files above
#
# Usage: hw-tests/build-fixtures.sh [--force] [--check]
#   --force   rebuild everything (otherwise finished parts are kept and skipped)
#   --check   afterwards boot each kernel + initramfs in QEMU (hw-tests/boot-check.py)
# Environment:
#   BASALT_FIXTURES        output directory (default: <repo>/target/fixtures)
#   BASALT_FIXTURES_ARM64  auto (default: build, a failure only warns) | 1 (required) | 0 (skip)
#   BASALT_FIXTURES_ARMHF  the same for the armhf set
#   BASALT_FIXTURES_SSH    the same for the amd64 SSH initramfs
#   BASALT_KERNEL_PKG_AMD64 / _ARM64 / _ARMHF   a given linux-image-* package instead of the
#                          one bookworm's linux-image-amd64 / -arm64 / -armmp depends on
# Needs scripts/install-deps.sh's packages, and root when something is to be built
# (apt, device node in the initramfs); with everything cached it runs as any user.
# Kernels are never installed: `apt-get download` + dpkg-deb, into the cache only.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$REPO/scripts/lib/common.sh"
# shellcheck source=scripts/lib/apt.sh
. "$REPO/scripts/lib/apt.sh"
BASALT_TAG=build-fixtures
PY=/usr/bin/python3 # Debian's python (python3-pexpect), not a pyenv one on PATH

FORCE=0 CHECK=0
for arg in "$@"; do
  case $arg in
    --force) FORCE=1 ;;
    --check) CHECK=1 ;;
    -h | --help)
      sed -n '2,38p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) basalt_die "unknown argument: $arg (see --help)" ;;
  esac
done
ARM64=${BASALT_FIXTURES_ARM64:-auto}
case $ARM64 in auto | 0 | 1) ;; *) basalt_die "BASALT_FIXTURES_ARM64 must be auto, 0 or 1" ;; esac
ARMHF=${BASALT_FIXTURES_ARMHF:-auto}
case $ARMHF in auto | 0 | 1) ;; *) basalt_die "BASALT_FIXTURES_ARMHF must be auto, 0 or 1" ;; esac
SSH=${BASALT_FIXTURES_SSH:-auto}
case $SSH in auto | 0 | 1) ;; *) basalt_die "BASALT_FIXTURES_SSH must be auto, 0 or 1" ;; esac

OUT=${BASALT_FIXTURES:-$REPO/target/fixtures}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
case $OUT in *[!A-Za-z0-9_./+-]*) basalt_die "unsupported characters in the fixtures path: $OUT" ;; esac

for c in apt-get dpkg-deb cpio gzip flock "$PY"; do
  command -v "$c" >/dev/null || basalt_die "$c not found: run scripts/install-deps.sh first"
done
if ! { [ -x /bin/busybox ] && /bin/busybox --list | grep -x cttyhack >/dev/null; }; then
  basalt_die "/bin/busybox (package busybox-static) missing: run scripts/install-deps.sh first"
fi

# one run at a time per directory (the lock file may be root's: read-only is enough)
{ exec 9>>"$OUT/.lock"; } 2>/dev/null || exec 9<"$OUT/.lock"
flock -w 1800 9 || basalt_die "another build-fixtures run holds $OUT/.lock"

mkdir -p "$OUT/logs" 2>/dev/null || true
BASALT_LOG=$OUT/logs/build-fixtures.log
{ : >"$BASALT_LOG"; } 2>/dev/null || BASALT_LOG=$(mktemp /tmp/basalt-build-fixtures.XXXXXX.log)
WORK=$(mktemp -d "$OUT/.work.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$WORK"' EXIT
T0=$(basalt_now)
echo "$BASALT_TAG: fixtures in $OUT (log: $BASALT_LOG)"

# --- package downloads (private APT config; nothing is installed) ----------------

LISTS_READY=0
apt_ready() {
  [ "$LISTS_READY" = 1 ] && return 0
  basalt_require_root
  basalt_apt_init
  if basalt_apt_stale; then basalt_step apt-update basalt_apt_update; fi
  LISTS_READY=1
}

# kernel_pkg ARCH [FLAVOUR] -> the linux-image-<abi>-FLAVOUR package that
# linux-image-FLAVOUR (FLAVOUR: ARCH unless given, e.g. armmp for armhf) depends on
kernel_pkg() {
  local arch=$1 flavour=${2:-$1} override
  override=BASALT_KERNEL_PKG_${arch^^}
  if [ -n "${!override:-}" ]; then
    echo "${!override}"
    return
  fi
  local pkg
  pkg=$(apt-cache show --no-all-versions "linux-image-$flavour:$arch" |
    sed -n 's/^Depends: //p' | tr ',' '\n' | sed 's/^ *//; s/[ :].*//' |
    awk -v re="^linux-image-[0-9].*-$flavour\$" '$0 ~ re && !found { print; found = 1 }')
  [ -n "$pkg" ] && echo "$pkg"
}

# fetch_deb DIR PKG:ARCH MEMBER... : download one .deb into DIR and extract members from it
fetch_deb() {
  local dir=$1 pkg=$2
  shift 2
  mkdir -p "$dir"
  # apt downloads as user _apt where it can write (else it warns and downloads as root)
  { chmod 755 "$WORK"; chown _apt "$dir"; } 2>/dev/null || true
  (cd "$dir" && apt-get download -q "$pkg")
  local debs=("$dir"/*.deb) deb
  deb=${debs[0]}
  [ -f "$deb" ] || {
    echo "no .deb downloaded for $pkg"
    return 1
  }
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" --wildcards "$@"
  rm -f "$deb"
}

# --- kernels ---------------------------------------------------------------------

# Debian's amd64 bzImage carries an XZ-compressed ELF vmlinux. QEMU boots that ELF
# directly through its PVH entry note (CONFIG_PVH=y), which skips the XZ
# decompression that takes ~4-10 s under TCG.
extract_vmlinux() {
  "$PY" - "$1" "$2" <<'PYEOF'
import lzma, struct, sys
src, dst = sys.argv[1], sys.argv[2]
data = open(src, 'rb').read()
elf, pos = None, data.find(b'\xfd7zXZ\x00')
while pos >= 0 and elf is None:
    try:
        out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[pos:])
        if out[:4] == b'\x7fELF':
            elf = out
    except lzma.LZMAError:
        pass
    pos = data.find(b'\xfd7zXZ\x00', pos + 1)
if elf is None:
    sys.exit('no XZ-compressed ELF found in %s (kernel not built with CONFIG_KERNEL_XZ?)' % src)
# look for the PVH entry note (Xen ELF note 18, XEN_ELFNOTE_PHYS32_ENTRY)
assert elf[4] == 2, 'not a 64-bit ELF'
phoff, = struct.unpack_from('<Q', elf, 0x20)
phentsize, phnum = struct.unpack_from('<HH', elf, 0x36)
pvh = False
for i in range(phnum):
    p_type, _, p_offset, _, _, p_filesz = struct.unpack_from('<IIQQQQ', elf, phoff + i * phentsize)
    if p_type != 4:  # PT_NOTE
        continue
    off, end = p_offset, p_offset + p_filesz
    while off + 12 <= end:
        namesz, descsz, ntype = struct.unpack_from('<III', elf, off)
        name = elf[off + 12:off + 12 + namesz].rstrip(b'\0')
        pvh |= (name == b'Xen' and ntype == 18)
        off += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
if not pvh:
    sys.exit('vmlinux has no PVH entry note (CONFIG_PVH): qemu -kernel cannot boot it')
open(dst, 'wb').write(elf)
print('vmlinux: %d bytes, PVH entry note present' % len(elf))
PYEOF
}

build_kernel_amd64() {
  local d=$OUT/amd64 pkg w=$WORK/k-amd64
  pkg=$(kernel_pkg amd64) || {
    echo "cannot find bookworm's amd64 kernel package"
    return 1
  }
  echo "kernel package: $pkg"
  fetch_deb "$w" "$pkg:amd64" './boot/vmlinuz-*' './boot/config-*'
  mkdir -p "$d"
  extract_vmlinux "$w"/boot/vmlinuz-* "$w/vmlinux"
  mv "$w"/boot/vmlinuz-* "$d/bzImage"
  mv "$w"/boot/config-* "$d/config"
  echo "${pkg#linux-image-}" >"$d/kernel-release"
  mv "$w/vmlinux" "$d/vmlinux" # last: its presence marks the step as done
}

build_kernel_arm64() {
  local d=$OUT/arm64 pkg w=$WORK/k-arm64
  pkg=$(kernel_pkg arm64) || {
    echo "cannot find bookworm's arm64 kernel package"
    return 1
  }
  echo "kernel package: $pkg"
  fetch_deb "$w" "$pkg:arm64" './boot/vmlinuz-*' './boot/config-*'
  # Debian's arm64 vmlinuz is an uncompressed Image: magic "ARM\x64" at 0x38
  [ "$(dd if="$(echo "$w"/boot/vmlinuz-*)" bs=1 skip=56 count=4 2>/dev/null | od -An -tx1 | tr -d ' ')" = 41524d64 ] || {
    echo "arm64 vmlinuz is not an uncompressed arm64 Image"
    return 1
  }
  mkdir -p "$d"
  mv "$w"/boot/config-* "$d/config"
  echo "${pkg#linux-image-}" >"$d/kernel-release"
  mv "$w"/boot/vmlinuz-* "$d/Image"
}

fetch_busybox_arm64() {
  local w=$WORK/bb-arm64
  fetch_deb "$w" busybox-static:arm64 ./bin/busybox
  # ELF, e_machine 183 (EM_AARCH64) at offset 18
  [ "$(od -An -tx1 -j18 -N2 "$w/bin/busybox" | tr -d ' ')" = b700 ] || {
    echo "busybox-static:arm64 is not an arm64 binary"
    return 1
  }
  mkdir -p "$OUT/arm64"
  mv "$w/bin/busybox" "$OUT/arm64/busybox"
}

# The arm64 kernel's drivers for QEMU virt's virtio PCI network and disk and for USB storage
# behind EHCI are modules: the initramfs loads them (in this order: each after what it needs,
# busybox's insmod resolves nothing), so that the booted system reaches the worker (wget) and
# its second disk (deploy usb/sata), and the NFSv4 client for an NFS root (sunrpc .. nfsv4:
# the order of `modinfo -F depends`).
ARM64_MODULES="drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci_modern_dev
  drivers/virtio/virtio_pci net/core/failover drivers/net/net_failover drivers/net/virtio_net
  drivers/block/virtio_blk
  drivers/usb/common/usb-common drivers/usb/core/usbcore drivers/usb/host/ehci-hcd
  drivers/usb/host/ehci-pci drivers/scsi/scsi_common drivers/scsi/scsi_mod
  crypto/crct10dif_common crypto/crct10dif_generic lib/crc-t10dif lib/crc64
  crypto/crc64_rocksoft_generic lib/crc64-rocksoft block/t10-pi drivers/scsi/sd_mod
  drivers/usb/storage/usb-storage
  net/sunrpc/sunrpc fs/netfs/netfs fs/fscache/fscache fs/nfs_common/grace fs/lockd/lockd
  fs/nfs/nfs net/dns_resolver/dns_resolver fs/nfs/nfsv4"

# fetch_modules ARCH MODULES: the modules (paths under kernel/, no .ko) of the kernel the
# fixtures hold (ARCH/kernel-release, not a newer one) into ARCH/modules, `load` their order
fetch_modules() {
  local arch=$1 list=$2 d=$OUT/$1/modules pkg w=$WORK/m-$1 m members=()
  pkg=linux-image-$(cat "$OUT/$arch/kernel-release")
  for m in $list; do members+=("./lib/modules/*/kernel/$m.ko"); done
  fetch_deb "$w" "$pkg:$arch" "${members[@]}"
  rm -rf "$d" && mkdir -p "$d"
  for m in $list; do
    mv "$w"/lib/modules/*/kernel/"$m.ko" "$d/"
    basename "$m" >>"$d/load.tmp"
  done
  mv "$d/load.tmp" "$d/load" # last: its presence marks the step as done
}

fetch_modules_arm64() { fetch_modules arm64 "$ARM64_MODULES"; }

# The armhf (armmp) kernel: the same zImage Debian installs (XZ-compressed, booted by
# U-Boot's bootz), for QEMU's 32-bit arm `virt` board.
build_kernel_armhf() {
  local d=$OUT/armhf pkg w=$WORK/k-armhf
  pkg=$(kernel_pkg armhf armmp) || {
    echo "cannot find bookworm's armhf (armmp) kernel package"
    return 1
  }
  echo "kernel package: $pkg"
  fetch_deb "$w" "$pkg:armhf" './boot/vmlinuz-*' './boot/config-*'
  # a zImage: magic 0x016f2818 (little-endian) at 0x24
  [ "$(od -An -tx1 -j36 -N4 "$(echo "$w"/boot/vmlinuz-*)" | tr -d ' ')" = 18286f01 ] || {
    echo "armhf vmlinuz is not a zImage"
    return 1
  }
  mkdir -p "$d"
  mv "$w"/boot/config-* "$d/config"
  echo "${pkg#linux-image-}" >"$d/kernel-release"
  mv "$w"/boot/vmlinuz-* "$d/zImage"
}

fetch_busybox_armhf() {
  local w=$WORK/bb-armhf
  fetch_deb "$w" busybox-static:armhf ./bin/busybox
  # ELF, e_machine 40 (EM_ARM) at offset 18
  [ "$(od -An -tx1 -j18 -N2 "$w/bin/busybox" | tr -d ' ')" = 2800 ] || {
    echo "busybox-static:armhf is not an arm binary"
    return 1
  }
  mkdir -p "$OUT/armhf"
  mv "$w/bin/busybox" "$OUT/armhf/busybox"
}

# The armmp kernel has virtio itself built in but its transports (MMIO, PCI: QEMU virt's
# virtio-net-pci sits behind the built-in generic PCI host), virtio_net and virtio_blk as
# modules: loaded in this order (each after what it needs, `modinfo -F depends`).
ARMHF_MODULES="drivers/virtio/virtio_mmio drivers/virtio/virtio_pci_legacy_dev
  drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci net/core/failover
  drivers/net/net_failover drivers/net/virtio_net drivers/block/virtio_blk"

fetch_modules_armhf() { fetch_modules armhf "$ARMHF_MODULES"; }

# --- initramfs -------------------------------------------------------------------

# init_script [EXTRA] : the initramfs's /init; EXTRA (shell text) runs before the shell starts
init_script() {
  cat <<'INIT'
#!/bin/sh
# /init of basalt's test initramfs (hw-tests/build-fixtures.sh): PID 1.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root
/bin/busybox --install -s
# mounted already when this is the NFS root's /init after switch_root (moved there)
mounted() { grep -q " $1 " /proc/mounts 2>/dev/null; }
mounted /proc || mount -t proc proc /proc
mounted /sys || mount -t sysfs sysfs /sys
if ! mounted /dev && ! mount -t devtmpfs devtmpfs /dev 2>/dev/null; then
  mount -t tmpfs -o mode=0755 tmpfs /dev
  mknod -m 600 /dev/console c 5 1
  mknod -m 666 /dev/null c 1 3
  echo /sbin/mdev >/proc/sys/kernel/hotplug
  mdev -s
fi
mkdir -p /dev/pts /dev/shm
mounted /dev/pts || mount -t devpts -o gid=5,mode=0620 devpts /dev/pts
mounted /dev/shm || mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mounted /tmp || mount -t tmpfs -o mode=1777 tmpfs /tmp
mounted /run || mount -t tmpfs -o mode=0755 tmpfs /run
# the root's filesystem type: rootfs (this initramfs) or nfs4 (its NFS root, below)
ROOTFS_TYPE=$(awk '$2 == "/" { t = $3 } END { print t }' /proc/mounts)
exec </dev/console >/dev/console 2>&1
hostname basalt-dut
echo "basalt-initramfs: $(uname -srm) up $(cut -d' ' -f1 /proc/uptime) s, cmdline: $(cat /proc/cmdline)"
# a serial line has no size: a wide one keeps the shell from re-drawing long command lines
stty cols 1024 rows 50 2>/dev/null
# kernel modules the fixture carries (arm64: virtio PCI, network, disk), in order
case $ROOTFS_TYPE in
  nfs*) ;; # loaded by the initramfs before
  *) for m in $(cat /lib/modules/load 2>/dev/null); do insmod "/lib/modules/$m.ko"; done ;;
esac
# udev's stable names of the disks, from sysfs (no udev here): virtio disks by serial,
# USB disks as usb-<vendor>_<model>_<serial>-<target>:<lun>
mkdir -p /dev/disk/by-id
# usb-storage finds its disks asynchronously (after its 1 s delay_use): with an EHCI
# controller, wait for a disk, at most 5 s
if ls /sys/bus/pci/drivers/ehci-pci/ 2>/dev/null | grep -q :; then
  i=0
  while [ $i -lt 50 ] && ! ls /sys/block | grep -q '^sd'; do i=$((i + 1)); sleep 0.1; done
fi
for d in /sys/block/sd*; do
  [ -e "$d/device/vendor" ] || continue
  dev=$(readlink -f "$d/device"); u=$dev
  while [ "$u" != /sys ] && [ -n "$u" ] && [ ! -e "$u/serial" ]; do u=${u%/*}; done
  [ -e "$u/serial" ] || continue
  v=$(echo $(cat "$d/device/vendor") | tr ' ' _); m=$(echo $(cat "$d/device/model") | tr ' ' _)
  lun=${dev##*/}; id="usb-${v}_${m}_$(cat "$u/serial")-${lun#*:*:}"
  ln -sf "../../${d##*/}" "/dev/disk/by-id/$id"
  for p in "$d/${d##*/}"*; do
    [ -e "$p/partition" ] && ln -sf "../../${p##*/}" "/dev/disk/by-id/$id-part$(cat "$p/partition")"
  done
done
for s in /sys/block/*/serial; do
  [ -s "$s" ] || continue
  d=${s%/serial}; d=${d##*/}
  ln -sf "../../$d" "/dev/disk/by-id/virtio-$(cat "$s")"
  for p in /sys/block/$d/$d*; do
    [ -e "$p/partition" ] && ln -sf "../../${p##*/}" "/dev/disk/by-id/virtio-$(cat "$s")-part$(cat "$p/partition")"
  done
done
# an NFS root: what LAVA's u-boot `nfs` commands pass (root=/dev/nfs nfsroot=SERVER:PATH[,opts])
NFSROOT=
if grep -qw 'root=/dev/nfs' /proc/cmdline; then
  NFSROOT=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^nfsroot=//p' | tail -n 1)
fi
case $ROOTFS_TYPE in nfs*) NFSROOT= ;; esac
# a kernel command line with ip=dhcp (or an NFS root) and a network card: ask for an address
if { grep -q 'ip=dhcp' /proc/cmdline || [ -n "$NFSROOT" ]; } && [ -e /sys/class/net/eth0 ] &&
  ! ip -4 -o addr show eth0 | grep -q inet; then
  ip link set eth0 up
  udhcpc -i eth0 -n -q -t 5 -s /etc/udhcpc.script >/dev/null 2>&1 &&
    echo "basalt-initramfs: eth0 $(ip -4 -o addr show eth0 | awk '{print $4}')"
fi
# mount the NFS root over NFSv4 (no rpcbind, no mountd: the kernel is given the server's
# address itself) and run its /init; the options of NFS v2/v3 are left out
if [ -n "$NFSROOT" ]; then
  srv=${NFSROOT%%:*} rest=${NFSROOT#*:}
  path=${rest%%,*} opts=vers=4.1
  case $rest in *,*) for o in $(echo "${rest#*,}" | tr ',' ' '); do
    case $o in vers=* | nfsvers=* | v2 | v3 | v4* | udp | mountport=* | mountproto=*) ;; *) opts=$opts,$o ;; esac
  done ;; esac
  mkdir -p /newroot
  if mount -t nfs4 -o "$opts,addr=$srv" "$srv:$path" /newroot; then
    echo "basalt-initramfs: root $srv:$path over NFS ($opts)"
    for d in dev proc sys run tmp; do mkdir -p "/newroot/$d" && mount --move "/$d" "/newroot/$d"; done
    exec switch_root /newroot /init
  fi
  echo "basalt-initramfs: cannot mount the NFS root $srv:$path ($opts); staying in the initramfs"
fi
INIT
  [ -z "${1:-}" ] || printf '%s\n' "$1"
  cat <<'INIT'
cd /
# the shell is respawned: `exit` must not panic the kernel
while true; do
  setsid cttyhack sh -l
  echo "basalt-initramfs: shell exited, starting a new one"
done
INIT
}

profile_script() {
  cat <<'PROFILE'
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root
export PS1='/ # '
PROFILE
}

# busybox udhcpc's script: configure the address and the default route it was given
udhcpc_script() {
  cat <<'UDHCPC'
#!/bin/sh
case $1 in
  bound | renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    ;;
esac
UDHCPC
}

# rootfs_tree DIR BUSYBOX [MODULES-DIR [INIT-EXTRA]] : the initramfs's tree in DIR (new)
rootfs_tree() {
  local r=$1 bb=$2 mods=${3:-} extra=${4:-}
  rm -rf "$r"
  mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,etc,root,mnt,var/log}
  install -m 0755 "$bb" "$r/bin/busybox"
  ln -s busybox "$r/bin/sh"
  init_script "$extra" >"$r/init"
  chmod 0755 "$r/init"
  profile_script >"$r/etc/profile"
  udhcpc_script >"$r/etc/udhcpc.script"
  chmod 0755 "$r/etc/udhcpc.script"
  if [ -n "$mods" ]; then
    mkdir -p "$r/lib/modules"
    cp "$mods"/*.ko "$mods/load" "$r/lib/modules/"
  fi
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
  printf 'root:x:0:\ntty:x:5:\n' >"$r/etc/group"
  echo basalt-dut >"$r/etc/hostname"
  : >"$r/etc/mdev.conf"
  # so that the kernel can give /init a console before devtmpfs is mounted
  mknod -m 600 "$r/dev/console" c 5 1
  chmod 1777 "$r/tmp"
  chmod 0700 "$r/root"
}

# pack_cpio DIR OUTPUT : DIR as a reproducible gzip'd newc cpio (owner root, times 0)
pack_cpio() {
  local r=$1 out=$2
  find "$r" -exec touch -h -d @0 {} +
  (cd "$r" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    cpio --null -o -H newc -R 0:0 --reproducible --quiet) | gzip -9 -n >"$out.tmp"
  mv "$out.tmp" "$out"
}

# build_initramfs BUSYBOX OUTPUT [MODULES-DIR [NFSROOT-TAR]]
build_initramfs() {
  local bb=$1 out=$2 mods=${3:-} nfsroot=${4:-} r=$WORK/rootfs.$$
  rootfs_tree "$r" "$bb" "$mods"
  if [ -n "$nfsroot" ]; then
    # the same tree as an NFS root, without the modules (the initramfs loaded them) and with
    # a marker that tells a test it runs there
    echo "basalt NFS root (hw-tests/build-fixtures.sh)" >"$r/etc/basalt-nfsroot"
    find "$r" -exec touch -h -d @0 {} +
    tar -C "$r" --exclude=./lib/modules --exclude=./dev/console --sort=name --owner=0 \
      --group=0 --numeric-owner --mtime=@0 -cf - . | gzip -9 -n >"$nfsroot.tmp"
    mv "$nfsroot.tmp" "$nfsroot"
    rm "$r/etc/basalt-nfsroot"
  fi
  pack_cpio "$r" "$out"
  rm -rf "$r"
}

# --- the amd64 SSH initramfs ------------------------------------------------------
#
# amd64/initramfs-ssh.cpio.gz: the amd64 initramfs plus Debian's dropbear (the image of
# basalt's SSH tests: reservations, src/hold/ssh.rs). Its init loads the virtio network
# modules, brings eth0 up (DHCP from QEMU's user networking, else its static 10.0.2.15/24)
# and does NOT start dropbear: basalt authorises the lease's key first, then starts it
# (`dropbear -R -p 22`), as it would on any image that ships sshd or dropbear.

# The amd64 kernel's virtio PCI network driver is a module: these, in this order (each after
# what it needs: `modinfo -F depends`).
AMD64_MODULES="drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_legacy_dev
  drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci net/core/failover
  drivers/net/net_failover drivers/net/virtio_net"

fetch_modules_amd64() { fetch_modules amd64 "$AMD64_MODULES"; }

# bookworm's dropbear-bin is linked dynamically: its binaries and every library they load,
# from the same archive (one glibc: loader and libc), and openssh-sftp-server (dropbear runs
# /usr/lib/sftp-server for the sftp subsystem, which OpenSSH's scp uses by default).
# Each entry: PACKAGE MEMBER... (tar wildcards).
DROPBEAR_DEBS=(
  "dropbear-bin ./usr/sbin/dropbear ./usr/bin/dbclient ./usr/bin/dropbearkey"
  "openssh-sftp-server ./usr/lib/openssh/sftp-server ./usr/lib/sftp-server"
  "libtomcrypt1 ./usr/lib/x86_64-linux-gnu/libtomcrypt.so.1*"
  "libtommath1 ./usr/lib/x86_64-linux-gnu/libtommath.so.1*"
  "libgmp10 ./usr/lib/x86_64-linux-gnu/libgmp.so.10*"
  "zlib1g ./lib/x86_64-linux-gnu/libz.so.1*"
  "libcrypt1 ./lib/x86_64-linux-gnu/libcrypt.so.1*"
  "libc6 ./lib/x86_64-linux-gnu/libc.so.6 ./lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 ./lib64/ld-linux-x86-64.so.2"
)
DROPBEAR_BINS="usr/sbin/dropbear usr/bin/dbclient usr/bin/dropbearkey usr/lib/openssh/sftp-server"

# run_staged TREE BINARY ARGS... : run TREE/BINARY on the host with TREE's own loader and
# libraries (the downloaded ones, not the host's)
run_staged() {
  local t=$1 bin=$2
  shift 2
  "$t/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
    --library-path "$t/lib/x86_64-linux-gnu:$t/usr/lib/x86_64-linux-gnu" "$t/$bin" "$@"
}

# amd64/dropbear/: the tree above, checked: every library each binary loads is in it
fetch_dropbear_amd64() {
  local d=$OUT/amd64/dropbear w=$WORK/dropbear entry parts b
  rm -rf "$w" && mkdir -p "$w"
  for entry in "${DROPBEAR_DEBS[@]}"; do
    read -ra parts <<<"$entry"
    fetch_deb "$w" "${parts[0]}:amd64" "${parts[@]:1}"
    echo "${parts[0]} $(apt-cache show --no-all-versions "${parts[0]}:amd64" | sed -n 's/^Version: //p')" >>"$w/versions.tmp"
  done
  for b in $DROPBEAR_BINS; do
    [ -x "$w/$b" ] || {
      echo "$b missing from the downloaded packages"
      return 1
    }
    # ld.so --list: each library and where it resolved; all must be the tree's
    "$w/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
      --library-path "$w/lib/x86_64-linux-gnu:$w/usr/lib/x86_64-linux-gnu" --list "$w/$b" |
      awk -v t="$w/" '/=>/ && index($3, t) != 1 { print "not in the fixture: " $0; bad = 1 } END { exit bad }' || {
      echo "$b needs a library that DROPBEAR_DEBS lacks"
      return 1
    }
  done
  run_staged "$w" usr/sbin/dropbear -V 2>&1 | head -n 1
  rm -rf "$d"
  mv "$w" "$d"
  mv "$d/versions.tmp" "$d/versions" # last: its presence marks the step as done
}

# the SSH image's additions to /init (before its shell starts)
ssh_init_extra() {
  cat <<'EXTRA'
# basalt's SSH initramfs: eth0 by DHCP (QEMU user networking answers at once), else the
# address QEMU's user networking gives its guest; dropbear is started by basalt (src/hold/ssh.rs)
ip link set lo up 2>/dev/null
if [ -e /sys/class/net/eth0 ] && ! ip -4 -o addr show eth0 | grep -q inet; then
  ip link set eth0 up
  udhcpc -i eth0 -n -q -t 3 -T 1 -s /etc/udhcpc.script >/dev/null 2>&1 ||
    { ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2 dev eth0; }
  echo "basalt-initramfs: eth0 $(ip -4 -o addr show eth0 | awk '{print $4}')"
fi
EXTRA
}

# build_initramfs_ssh OUTPUT : the amd64 initramfs with the virtio network modules, dropbear
# (host keys made here, by the downloaded dropbearkey), /root/.ssh, no authorized key
build_initramfs_ssh() {
  local out=$1 r=$WORK/rootfs-ssh.$$ db=$OUT/amd64/dropbear b
  rootfs_tree "$r" /bin/busybox "$OUT/amd64/modules" "$(ssh_init_extra)"
  (cd "$db" && find lib lib64 usr -mindepth 1 \( -type f -o -type l \) -print0 |
    cpio --null -pdm --quiet "$r")
  mkdir -p "$r/etc/dropbear" "$r/root/.ssh" "$r/var/log"
  chmod 0700 "$r/root/.ssh"
  ln -s ../run "$r/var/run"
  printf '/bin/sh\n' >"$r/etc/shells"
  printf 'root:*:19000:0:99999:7:::\n' >"$r/etc/shadow"
  chmod 0600 "$r/etc/shadow"
  for b in ed25519 ecdsa; do
    run_staged "$db" usr/bin/dropbearkey -t "$b" -f "$r/etc/dropbear/dropbear_${b}_host_key" >/dev/null
  done
  pack_cpio "$r" "$out"
  rm -rf "$r"
}

initramfs_ssh_key() {
  {
    initramfs_key /bin/busybox "$OUT/amd64/modules"
    cat "$OUT/amd64/dropbear/versions"
    ssh_init_extra
    declare -f build_initramfs_ssh run_staged
  } | sha256sum | cut -c1-64
}

initramfs_ssh_step() {
  local out=$OUT/amd64/initramfs-ssh.cpio.gz key
  key=$(initramfs_ssh_key)
  if [ "$FORCE" = 1 ] || [ ! -s "$out" ] || [ "$(cat "$out.key" 2>/dev/null)" != "$key" ]; then
    basalt_require_root
    rm -f "$out.key"
    basalt_step "initramfs-ssh amd64" build_initramfs_ssh "$out"
    echo "$key" >"$out.key"
  else
    printf '%s: %-28s cached\n' "$BASALT_TAG" "initramfs-ssh amd64"
  fi
}

build_ssh_amd64() {
  local m want=
  for m in $AMD64_MODULES; do want="$want${m##*/}"$'\n'; done
  [ "$(cat "$OUT/amd64/modules/load" 2>/dev/null)"$'\n' = "$want" ] || rm -f "$OUT/amd64/modules/load"
  if [ "$FORCE" = 1 ] || [ ! -s "$OUT/amd64/modules/load" ] || [ ! -s "$OUT/amd64/dropbear/versions" ]; then
    apt_ready
  fi
  if ! step_cached "modules amd64" "$OUT/amd64/modules/load" fetch_modules_amd64; then
    # the cached kernel's package left the archive: take the current kernel and its modules
    echo "$BASALT_TAG: the modules of $(cat "$OUT/amd64/kernel-release") are gone; fetching the current kernel" >&2
    rm -f "$OUT/amd64/vmlinux"
    step_cached "kernel amd64" "$OUT/amd64/vmlinux" build_kernel_amd64
    step_cached "modules amd64" "$OUT/amd64/modules/load" fetch_modules_amd64
  fi
  step_cached "dropbear amd64" "$OUT/amd64/dropbear/versions" fetch_dropbear_amd64
  initramfs_ssh_step
}

# Rebuild an initramfs when its busybox or the files written above change.
initramfs_key() {
  {
    sha256sum <"$1"
    [ -z "${2:-}" ] || cat "$2/load" "$2"/*.ko | sha256sum
    init_script
    profile_script
    udhcpc_script
    declare -f build_initramfs rootfs_tree pack_cpio
  } | sha256sum | cut -c1-64
}

# step_cached LABEL DONE-FILE CMD... : run CMD unless DONE-FILE exists (or --force)
step_cached() {
  local label=$1 done_file=$2
  shift 2
  if [ "$FORCE" = 0 ] && [ -s "$done_file" ]; then
    printf '%s: %-28s cached\n' "$BASALT_TAG" "$label"
    return 0
  fi
  basalt_require_root
  basalt_step "$label" "$@"
}

# initramfs_step ARCH BUSYBOX [MODULES-DIR [NFSROOT-TAR]]
initramfs_step() {
  local arch=$1 bb=$2 mods=${3:-} nfsroot=${4:-} out=$OUT/$1/initramfs.cpio.gz key
  key=$(initramfs_key "$bb" "$mods")
  if [ "$FORCE" = 1 ] || [ ! -s "$out" ] || [ "$(cat "$out.key" 2>/dev/null)" != "$key" ] ||
    { [ -n "$nfsroot" ] && [ ! -s "$nfsroot" ]; }; then
    basalt_require_root # the initramfs has a device node (/dev/console)
    rm -f "$out.key"
    basalt_step "initramfs $arch" build_initramfs "$bb" "$out" "$mods" "$nfsroot"
    echo "$key" >"$out.key"
  else
    printf '%s: %-28s cached\n' "$BASALT_TAG" "initramfs $arch"
  fi
}

# --- main ------------------------------------------------------------------------

mkdir -p "$OUT/amd64"
if [ "$FORCE" = 1 ] || [ ! -s "$OUT/amd64/vmlinux" ]; then apt_ready; fi
step_cached "kernel amd64" "$OUT/amd64/vmlinux" build_kernel_amd64
initramfs_step amd64 /bin/busybox

build_arm64() {
  mkdir -p "$OUT/arm64"
  # a changed module list is fetched again
  local m want=
  for m in $ARM64_MODULES; do want="$want${m##*/}"$'\n'; done
  [ "$(cat "$OUT/arm64/modules/load" 2>/dev/null)"$'\n' = "$want" ] || rm -f "$OUT/arm64/modules/load"
  if [ "$FORCE" = 1 ] || [ ! -s "$OUT/arm64/Image" ] || [ ! -s "$OUT/arm64/busybox" ] ||
    [ ! -s "$OUT/arm64/modules/load" ]; then
    apt_ready
  fi
  step_cached "kernel arm64" "$OUT/arm64/Image" build_kernel_arm64
  step_cached "busybox arm64" "$OUT/arm64/busybox" fetch_busybox_arm64
  if ! step_cached "modules arm64" "$OUT/arm64/modules/load" fetch_modules_arm64; then
    # the cached kernel's package left the archive: take the current kernel and its modules
    echo "$BASALT_TAG: the modules of $(cat "$OUT/arm64/kernel-release") are gone; fetching the current kernel" >&2
    rm -f "$OUT/arm64/Image"
    step_cached "kernel arm64" "$OUT/arm64/Image" build_kernel_arm64
    step_cached "modules arm64" "$OUT/arm64/modules/load" fetch_modules_arm64
  fi
  initramfs_step arm64 "$OUT/arm64/busybox" "$OUT/arm64/modules" "$OUT/arm64/nfsrootfs.tar.gz"
}
# optional_set ARCH MODE : run build_ARCH unless MODE is 0; SET_OK=1 when it built (0 when
# it failed or was skipped). MODE 1: a failure is fatal, auto: it only warns. Not to be called
# as a condition (`if`, `&&`): that would turn `set -e` off inside build_ARCH.
optional_set() {
  local arch=$1 mode=$2 rc
  SET_OK=0
  [ "$mode" != 0 ] || return 0
  # in a subshell with `set -e` (a failure there stops only this part); not
  # as `if build_ARCH`, which would turn `set -e` off inside it
  set +e
  (
    set -e
    "build_$arch"
  )
  rc=$?
  set -e
  if [ "$rc" = 0 ]; then
    SET_OK=1
  elif [ "$mode" = 1 ]; then
    basalt_die "$arch fixtures failed (BASALT_FIXTURES_${arch^^}=1)"
  else
    echo "$BASALT_TAG: WARNING: $arch fixtures failed; going on without them" >&2
  fi
}
optional_set ssh_amd64 "$SSH"
SSH_OK=$SET_OK
optional_set arm64 "$ARM64"
ARM64_OK=$SET_OK

build_armhf() {
  mkdir -p "$OUT/armhf"
  local m want=
  for m in $ARMHF_MODULES; do want="$want${m##*/}"$'\n'; done
  [ "$(cat "$OUT/armhf/modules/load" 2>/dev/null)"$'\n' = "$want" ] || rm -f "$OUT/armhf/modules/load"
  if [ "$FORCE" = 1 ] || [ ! -s "$OUT/armhf/zImage" ] || [ ! -s "$OUT/armhf/busybox" ] ||
    [ ! -s "$OUT/armhf/modules/load" ]; then
    apt_ready
  fi
  step_cached "kernel armhf" "$OUT/armhf/zImage" build_kernel_armhf
  step_cached "busybox armhf" "$OUT/armhf/busybox" fetch_busybox_armhf
  if ! step_cached "modules armhf" "$OUT/armhf/modules/load" fetch_modules_armhf; then
    echo "$BASALT_TAG: the modules of $(cat "$OUT/armhf/kernel-release") are gone; fetching the current kernel" >&2
    rm -f "$OUT/armhf/zImage"
    step_cached "kernel armhf" "$OUT/armhf/zImage" build_kernel_armhf
    step_cached "modules armhf" "$OUT/armhf/modules/load" fetch_modules_armhf
  fi
  initramfs_step armhf "$OUT/armhf/busybox" "$OUT/armhf/modules"
}
optional_set armhf "$ARMHF"
ARMHF_OK=$SET_OK

UBOOT_ARM64=/usr/lib/u-boot/qemu_arm64/u-boot.bin
UBOOT_ARM=/usr/lib/u-boot/qemu_arm/u-boot.bin
UBOOT_X86=/usr/lib/u-boot/qemu-x86/u-boot.rom # 32-bit: qemu-x86_64's resets on zboot
{
  echo "# written by hw-tests/build-fixtures.sh; KEY=VALUE lines, shell-sourceable"
  echo "BASALT_FIXTURES=$OUT"
  echo "BASALT_KERNEL_AMD64=$OUT/amd64/vmlinux"
  echo "BASALT_BZIMAGE_AMD64=$OUT/amd64/bzImage"
  echo "BASALT_INITRD_AMD64=$OUT/amd64/initramfs.cpio.gz"
  echo "BASALT_KERNEL_RELEASE_AMD64=$(cat "$OUT/amd64/kernel-release")"
  [ "$SSH_OK" = 0 ] || echo "BASALT_INITRD_SSH_AMD64=$OUT/amd64/initramfs-ssh.cpio.gz"
  if [ "$ARM64_OK" = 1 ]; then
    echo "BASALT_KERNEL_ARM64=$OUT/arm64/Image"
    echo "BASALT_INITRD_ARM64=$OUT/arm64/initramfs.cpio.gz"
    echo "BASALT_NFSROOTFS_ARM64=$OUT/arm64/nfsrootfs.tar.gz"
    echo "BASALT_KERNEL_RELEASE_ARM64=$(cat "$OUT/arm64/kernel-release")"
  fi
  if [ "$ARMHF_OK" = 1 ]; then
    echo "BASALT_KERNEL_ARMHF=$OUT/armhf/zImage"
    echo "BASALT_INITRD_ARMHF=$OUT/armhf/initramfs.cpio.gz"
    echo "BASALT_KERNEL_RELEASE_ARMHF=$(cat "$OUT/armhf/kernel-release")"
  fi
  [ ! -f "$UBOOT_ARM64" ] || echo "BASALT_UBOOT_ARM64=$UBOOT_ARM64"
  [ ! -f "$UBOOT_ARM" ] || echo "BASALT_UBOOT_ARM=$UBOOT_ARM"
  [ ! -f "$UBOOT_X86" ] || echo "BASALT_UBOOT_X86=$UBOOT_X86"
  echo "# the initramfs shell's prompt (PS1) and its first console line"
  echo "BASALT_INITRD_PROMPT='/ # '"
  echo "BASALT_INITRD_BANNER=basalt-initramfs:"
} >"$WORK/env"
cmp -s "$WORK/env" "$OUT/env" || mv "$WORK/env" "$OUT/env"

if [ "$CHECK" = 1 ]; then
  basalt_step "boot check amd64" "$PY" "$REPO/hw-tests/boot-check.py" --fixtures "$OUT" amd64
  [ "$ARM64_OK" = 0 ] ||
    basalt_step "boot check arm64" "$PY" "$REPO/hw-tests/boot-check.py" --fixtures "$OUT" arm64
fi

echo "$BASALT_TAG: done in $(basalt_elapsed "$T0") s; $OUT/env:"
grep -v '^#' "$OUT/env" | sed 's/^/  /'
