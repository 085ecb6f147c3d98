#!/usr/bin/env bash
# Render a broad corpus of LAVA job definitions with the LAVA ecosystem's own generators,
# offline, for checking `basalt validate` against LAVA's verdict (issue 13).
#
#   ./scripts/gen-lava-jobs.sh [OUT_DIR]      (default target/generated-jobs)
#
# Generators, pinned and installed into a cached venv (target/venv-gen, made if missing or
# if the pins change; needs PyPI only for that first install):
#   tuxlava          0.28.0  through its CLI entry point (tuxlava.__main__.main, what the
#                            `tuxlava --device D --kernel URL --rootfs URL --tests T` command
#                            runs: it prints the job definition), in one Python process
#   lava-test-plans  3.2.0   `lava-test-plans --dry-run --device-type DT --variables FILE
#                            --testplan-device-path projects/P/devices --test-case|--test-plan`
#                            (dry run: renders into its site-packages/../tmp, copied from there)
# Every URL is fake (http://example.invalid/...): nothing is fetched while rendering (tuxlava
# fetches only with --tuxbuild/--tuxmake, which are not used; --test-lava-validity, which
# starts a container, is not used either).
#
# OUT_DIR layout (its tuxlava/ and lava-test-plans/ are replaced on each run):
#   tuxlava/{plain,lkft}/DEVICE/TEST.yaml           plain: no --parameters; lkft: LKFT-like
#                                                   --parameters/--timeouts/--modules
#   tuxlava/options/DEVICE/OPTION.yaml              one other option each (--deploy-os, ...)
#   lava-test-plans/VARSET/DEVICE_TYPE/TEST.yaml    lkft: tests/data/generated/lkft-variables.yaml
#                                                   lkft-alt: that + lkft-alt-variables.yaml
#                                                   lkft-sample, lt-qcom, tf-a, ti, armnn: the
#                                                   package's own sample variables (placeholders
#                                                   such as 'variable-value')
#   tuxlava-skipped.txt, lava-test-plans.log        combinations the generators refused
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$REPO/target/generated-jobs}
VENV=$REPO/target/venv-gen
PINS="tuxlava==0.28.0 lava-test-plans==3.2.0"
LKFT_VARS=$REPO/tests/data/generated/lkft-variables.yaml
LKFT_ALT_VARS=$REPO/tests/data/generated/lkft-alt-variables.yaml

start=$(date +%s%N)

# --- the pinned generators -------------------------------------------------------------
if [ "$(cat "$VENV/.pins" 2>/dev/null)" != "$PINS" ]; then
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    apt-get install -y -q python3-venv >/dev/null
  fi
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q --disable-pip-version-check $PINS
  echo "$PINS" >"$VENV/.pins"
fi
PY=$VENV/bin/python
SITE=$("$PY" -c 'import os, lava_test_plans; print(os.path.dirname(os.path.dirname(lava_test_plans.__file__)))')

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -rf "$OUT/tuxlava" "$OUT/lava-test-plans"
mkdir -p "$OUT/tuxlava" "$OUT/lava-test-plans"

# --- tuxlava ---------------------------------------------------------------------------
# tuxlava makes a temporary directory per job (FVP jobs name it): keep them out of /tmp.
TUX_TMP=$(mktemp -d "$REPO/target/gen-lava-jobs.XXXXXX")
trap 'rm -rf "$TUX_TMP"' EXIT
TMPDIR=$TUX_TMP "$PY" - "$OUT" <<'PY'
import contextlib, io, os, sys

out_dir = sys.argv[1]
sys.argv = ["tuxlava"]
import tuxlava.__main__ as tux_main  # noqa: E402
from tuxlava.devices import Device  # noqa: E402

U = "http://example.invalid/lkft/builds/2026.07.1"
R = "http://example.invalid/lkft/rootfs"


def run(argv):
    """The `tuxlava ARGV...` command: returns (job text, None) or (None, its error)."""
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["tuxlava"] + argv
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            tux_main.main()
        return out.getvalue(), None
    except SystemExit:
        lines = err.getvalue().strip().splitlines()
        return None, lines[-1] if lines else "exit"
    except Exception as exc:
        return None, "%s: %s" % (type(exc).__name__, exc)


ARCHES = ("arm64be", "arm64", "armv7be", "armv7", "armv5", "x86_64", "x86-64", "i386",
          "riscv64", "riscv32", "ppc64le", "ppc64", "ppc32", "mips64el", "mips64",
          "mips32el", "mips32", "s390", "sh4", "m68k", "sparc64")


def arch_of(dev):
    return next((a for a in ARCHES if a in dev), "arm64")


QEMU_MAIN = ["qemu-arm64", "qemu-armv7", "qemu-i386", "qemu-x86_64", "qemu-riscv64"]
T_FULL = ["", "ltp-smoke", "ltp-syscalls", "ltp-fs", "ltp-mm", "kselftest-timers",
          "kselftest-net", "kselftest-arm64", "kselftest-x86", "kunit", "perf", "vdso", "smoke",
          "modules", "rcutorture", "rt-tests-pi-stress", "libhugetlbfs", "xfstests-ext4",
          "kvm-unit-tests", "network-basic", "mmtests-workload-coremark", "systemd-analyze",
          "libgpiod", "v4l2", "@commands"]
T_LKFT = ["", "ltp-smoke", "ltp-syscalls", "kselftest-timers", "kselftest-net", "kunit", "perf",
          "vdso", "modules", "libhugetlbfs", "@commands"]
T_SHORT = ["", "ltp-smoke", "kselftest-timers", "@commands"]
T_MORELLO = ["", "boot-busybox-dt", "boot-debian-dt", "debian-purecap", "smc91x", "virtio_net"]
NFS_DTB = {"nfs-am57xx-beagle-x15", "nfs-bcm2711-rpi-4-b", "nfs-juno-r2",
           "nfs-rk3399-rock-pi-4b", "nfs-s32g399a-rdb3"}
# one flasher board per image flavour; the *-lava devices wrap an existing job definition
SKIP = {"flasher-debian-qcs9075-iq-9075-evk", "flasher-debian-qcs9100-ride-sx",
        "flasher-debian-qrb2210-rb1-core-kit", "flasher-poky-altcfg-qcs9075-iq-9075-evk",
        "flasher-poky-altcfg-qcs9100-ride-sx", "flasher-poky-altcfg-qrb2210-rb1-core-kit",
        "flasher-qcom-distro-qcs9075-iq-9075-evk", "flasher-qcom-distro-qcs9100-ride-sx",
        "flasher-qcom-distro-qrb2210-rb1-core-kit", "flasher-qcs9075-iq-9075-evk",
        "flasher-qcs9100-ride-sx", "fvp-lava", "qemu-lava"}
AOSP = ["TUXSUITE_BAKE_VENDOR_DOWNLOAD_URL=%s/aosp/vendor.tar.xz" % U,
        "BUILD_REFERENCE_IMAGE_GZ_URL=%s/aosp/Image.gz" % U,
        "LKFT_BUILD_CONFIG=lkft-db845c-aosp-mainline-gki"]
LKFT = ["SKIPFILE=skipfile-lkft.yaml", "SHARD_NUMBER=4", "SHARD_INDEX=2",
        "KSELFTEST=%s/kselftest.tar.xz" % U, "PERF=%s/perf.tar.xz" % U,
        "LAVA_JOB_PRIORITY=50", "TIMEOUT_MULTIPLIER=3"]
LKFT_OPTS = ["--timeouts", "deploy=20", "boot=15", "ltp-syscalls=180", "--visibility", "personal"]
LKFT_BOOT = ["--boot-args", "quiet", "--prompt", "lkft-prompt"]


def artefacts(dev):
    """The artefact options each device family takes (tuxlava refuses the others)."""
    a = arch_of(dev)
    image = {"x86_64": "bzImage", "x86-64": "bzImage", "i386": "bzImage", "armv7": "zImage",
             "armv7be": "zImage", "armv5": "zImage"}.get(a, "Image.gz")
    kernel = ["--kernel", "%s/%s/%s" % (U, a, image)]
    rootfs = ["--rootfs", "%s/%s/rootfs.ext4.xz" % (R, a)]
    dtb = ["--dtb", "%s/%s/dtbs/board.dtb" % (U, a)]
    fam = dev.split("-")[0]
    if dev.startswith("fastboot-aosp"):
        return []
    if fam == "qemu":
        return kernel + rootfs
    if fam == "fastboot":
        return kernel + rootfs + dtb
    if fam == "nfs":
        return kernel + ["--rootfs", "%s/%s/rootfs.tar.xz" % (R, a)] + (dtb if dev in NFS_DTB else [])
    if dev == "fvp-aemva":
        return kernel + rootfs + ["--fip", U + "/fip.bin", "--bl1", U + "/bl1.bin"]
    if fam == "fvp":
        fw = []
        for opt in ("--ap-romfw", "--mcp-fw", "--mcp-romfw", "--scp-fw", "--scp-romfw", "--fip"):
            fw += [opt, "%s/morello/%s.bin" % (U, opt[2:])]
        return fw if dev == "fvp-morello-ubuntu" else fw + ["--rootfs", R + "/morello/rootfs.img.xz"]
    if fam == "flasher":
        return ["--rootfs", R + "/qcom/rootfs.tar.gz"]
    if fam == "avh":
        return kernel + rootfs + ["--dtb", U + "/dtbs/board.dtb", "--secrets", "avh_api_token=fake"]
    if fam == "ssh":
        return ["--ssh-host", "192.0.2.10", "--ssh-user", "root", "--ssh-prompt", "root@board",
                "--ssh-identity-file", "http://example.invalid/keys/id_ed25519"]
    if fam == "usbg":
        return ["--firmware", U + "/rpi-firmware.tar.xz", "--os", R + "/arm64/os.img.xz"]
    return None


def plan():
    for cls in Device.list():
        dev = cls.name
        base = artefacts(dev)
        if base is None or dev in SKIP:
            continue
        fam = dev.split("-")[0]
        aosp = dev.startswith("fastboot-aosp")
        for variant in ("plain", "lkft"):
            if dev in QEMU_MAIN:
                tests = T_FULL if variant == "plain" else T_LKFT
            elif fam == "fvp" and dev != "fvp-aemva":
                tests = T_MORELLO
            elif fam == "flasher":
                tests = ["", "smoke"]
            else:
                tests = T_SHORT if variant == "plain" else ["", "ltp-smoke"]
            for t in tests:
                argv = ["--device", dev] + base
                params = AOSP[:] if aosp else []
                if variant == "lkft":
                    params += LKFT
                    argv += LKFT_OPTS
                    if fam in ("qemu", "nfs", "avh") or (fam == "fastboot" and not aosp):
                        argv += LKFT_BOOT + ["--modules", "%s/%s/modules.tar.xz" % (U, arch_of(dev))]
                if params:
                    argv += ["--parameters"] + params
                if t == "@commands":
                    argv += ["--", "uname", "-a"]
                elif t:
                    argv += ["--tests", t]
                yield variant, dev, t.lstrip("@") or "boot", argv


# tuxlava/options/DEVICE/NAME.yaml: one job per other job-shaping option
OPTIONS = {
    "deploy-os-debian": ["--deploy-os", "debian", "--tests", "ltp-smoke"],
    "deploy-os-ubuntu": ["--deploy-os", "ubuntu"],
    "deploy-os-fedora": ["--deploy-os", "fedora"],
    "deploy-os-centos": ["--deploy-os", "centos"],
    "deploy-os-openwrt": ["--deploy-os", "openwrt"],
    "enable-kvm": ["--enable-kvm", "--tests", "kselftest-kvm"],
    "enable-network": ["--enable-network", "--tests", "network-basic"],
    "overlays": ["--overlay", U + "/o1.tar.xz", "--overlay", U + "/o2.tar.xz", "/opt"],
    "secrets": ["--secrets", "TOKEN=fake", "--tests", "ltp-smoke"],
    "visibility-group": ["--visibility", "group"],
    "qemu-image": ["--qemu-image", "docker.io/qemux/qemu:latest"],
    "qemu-binary": ["--qemu-binary", "/usr/bin/qemu-system"],
    "short-timeouts": ["--timeouts", "deploy=1", "boot=1", "ltp-smoke=1", "--tests", "ltp-smoke"],
    "priority-high": ["--parameters", "LAVA_JOB_PRIORITY=high", "--tests", "ltp-smoke"],
    "priority-100": ["--parameters", "LAVA_JOB_PRIORITY=100"],
    "test-definitions": ["--test-definitions", U + "/td.tar.zst", "--tests", "ltp-smoke"],
    "hacking-session": ["--tests", "hacking-session", "--parameters", "PUB_KEY=ssh-ed25519 AAAA"],
    "modules-path": ["--modules", U + "/modules.tar.xz", "/usr", "--tests", "modules"],
    "pflash": ["--pflash", U + "/flash0.img"],
    "partition": ["--partition", "1"],
    "three-tests": ["--tests", "ltp-smoke", "ltp-syscalls", "kselftest-timers"],
    "prompt-boot-args": ["--prompt", "root@debian", "--boot-args", "rw quiet"],
    "trustzone": ["--enable-trustzone", "--bios", U + "/bios.bin"],
}


def options_plan():
    for dev in ("qemu-arm64", "qemu-x86_64"):
        for name, opts in OPTIONS.items():
            yield "options", dev, name, ["--device", dev] + artefacts(dev) + opts


ok = 0
with open(os.path.join(out_dir, "tuxlava-skipped.txt"), "w") as log:
    for variant, dev, name, argv in list(plan()) + list(options_plan()):
        text, err = run(argv)
        if text is None:
            log.write("%s/%s/%s: %s\n    tuxlava %s\n" % (variant, dev, name, err, " ".join(argv)))
            continue
        d = os.path.join(out_dir, "tuxlava", variant, dev)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, name + ".yaml"), "w") as f:
            f.write(text)
        ok += 1
print("tuxlava: %d jobs" % ok)
PY

# --- lava-test-plans -------------------------------------------------------------------
LOG=$OUT/lava-test-plans.log
: >"$LOG"

# ltp VARSET DEVICE_TYPE PROJECT_DEVICES ARGS... (--variables FILE..., --test-case/--test-plan ...)
ltp() {
  local varset=$1 dt=$2 devpath=$3
  shift 3
  rm -rf "$SITE/tmp"
  echo "== $varset/$dt" >>"$LOG"
  (cd "$SITE/lava_test_plans" && "$VENV/bin/lava-test-plans" --dry-run --verbose 40 \
    --device-type "$dt" --testplan-device-path "$devpath" "$@") >>"$LOG" 2>&1 || true
  if [ -n "$(ls -A "$SITE/tmp/$dt" 2>/dev/null)" ]; then
    mkdir -p "$OUT/lava-test-plans/$varset/$dt"
    mv "$SITE/tmp/$dt"/* "$OUT/lava-test-plans/$varset/$dt/"
  fi
  rm -rf "$SITE/tmp"
}

LKFT_DEVICES="bcm2711-rpi-4-b dragonboard-410c dragonboard-845c e850-96 hi6220-hikey i386 juno-r2
  nxp-ls2088 qemu_arm qemu_arm64 qemu_i386 qemu_x86_64 thunderx x15 x86"
LKFT_CASES="boot.yaml ltp-smoke.yaml ltp-syscalls.yaml ltp-fs.yaml ltp-cve.yaml ltp-open-posix.yaml
  ltp-net-features.yaml kselftest.yaml kselftest-net.yaml kselftest-short-run-1.yaml kunit.yaml
  kvm-unit-tests.yaml perf.yaml vdso.yaml rcutorture.yaml libhugetlbfs.yaml network-basic-tests.yaml
  packetdrill.yaml pi-stress.yaml rt-migrate-test.yaml v4l2-compliance.yaml fwts.yaml"
SAMPLE_CASES="boot.yaml ltp-smoke.yaml ltp-syscalls.yaml kselftest.yaml perf.yaml"

for dt in $LKFT_DEVICES; do
  case $dt in
    x86 | i386 | qemu_x86_64 | qemu_i386) arch=x86_64 image=bzImage ;;
    x15 | qemu_arm) arch=armv7 image=zImage ;;
    *) arch=arm64 image=Image.gz ;;
  esac
  b=http://example.invalid/lkft/builds/2026.07.1/$arch
  # shellcheck disable=SC2086
  ltp lkft "$dt" projects/lkft/devices --variables "$LKFT_VARS" --overwrite-variables "DEVICE_TYPE=$dt" \
    "KERNEL_URL=$b/$image" "DTB_URL=$b/dtbs/$dt.dtb" "MODULES_URL=$b/modules.tar.xz" \
    "ROOTFS_URL=http://example.invalid/lkft/rootfs/oe/lkft-tux-image-$arch.ext4.gz" \
    --test-case $LKFT_CASES --test-plan lkft-sanity
  # shellcheck disable=SC2086
  ltp lkft-alt "$dt" projects/lkft/devices --variables "$LKFT_VARS" "$LKFT_ALT_VARS" \
    --overwrite-variables "DEVICE_TYPE=$dt" --test-case $SAMPLE_CASES
  # shellcheck disable=SC2086
  ltp lkft-sample "$dt" projects/lkft/devices --variables projects/lkft/variables.yaml --test-case $SAMPLE_CASES
done
for dt in dragonboard-410c dragonboard-820c dragonboard-845c qcs404-evb-4k sdm845-mtp sm8250-mtp; do
  ltp lt-qcom "$dt" projects/lt-qcom/devices --variables projects/lt-qcom/variables.yaml \
    --overwrite-variables ARTIFACTORIAL_TOKEN=fake --test-plan lt-qcom/kernel lt-qcom/distro
done
ltp tf-a juno projects/tf-a/devices --variables projects/tf-a/variables.yaml --test-plan tf-a
ltp ti x15-bl devices --variables projects/ti/variables.yaml --test-plan ti-uboot
for dt in rzn1d soca9; do
  ltp schneider "$dt" devices --variables projects/lkft/variables.yaml --test-plan schneider
done
for dt in synquacer juno hi960-hikey stm32mp157c-dk2; do
  ltp armnn "$dt" devices --variables projects/armnn/variables.yaml --test-plan armnn ml-bench
done
echo "lava-test-plans: $(find "$OUT/lava-test-plans" -name '*.yaml' | wc -l) jobs"

total=$(find "$OUT/tuxlava" "$OUT/lava-test-plans" -name '*.yaml' | wc -l)
ms=$((($(date +%s%N) - start) / 1000000))
printf 'gen-lava-jobs: %d jobs in %s (%d.%03d s)\n' "$total" "$OUT" $((ms / 1000)) $((ms % 1000))
