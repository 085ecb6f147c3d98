#!/usr/bin/env bash
# Cross-compile the worker host's two binaries, basalt-worker and basalt (the dispatcher
# each job runs in), for arm64 (aarch64-unknown-linux-gnu), on an x86 Debian host.
#
#   scripts/build-arm64.sh             debug build
#   scripts/build-arm64.sh --release   release build (what goes on a worker host)
#   scripts/build-arm64.sh --check     only check that the tools are there
#
# Needs what scripts/install-deps.sh installs (the cross compiler, and the arm64
# libraries in the sysroot $BASALT_ARM64_SYSROOT, default /var/cache/basalt/arm64-sysroot)
# and the Rust target: added with rustup when missing (rustup target add
# aarch64-unknown-linux-gnu). The linker is named in .cargo/config.toml (with the default
# sysroot's settings, for cargo called by hand); the sysroot's are given to cargo here.
# Prints where the binaries are, and how to run them here with qemu-user.
# docs/arm64.md has the rest: what the arm64 host needs at run time.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$REPO/scripts/lib/common.sh"
# shellcheck source=scripts/lib/cross-arm64.sh
. "$REPO/scripts/lib/cross-arm64.sh"
BASALT_TAG=build-arm64
TARGET=aarch64-unknown-linux-gnu

PROFILE=debug
CHECK=0
for arg in "$@"; do
  case $arg in
    --release) PROFILE=release ;;
    --check) CHECK=1 ;;
    -h | --help)
      sed -n '2,/^set /{/^#/p}' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) basalt_die "unknown argument: $arg (see --help)" ;;
  esac
done

# cargo from rustup when the environment lacks ~/.cargo/bin
if ! command -v cargo >/dev/null && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
  PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
fi

command -v aarch64-linux-gnu-gcc >/dev/null ||
  basalt_die "aarch64-linux-gnu-gcc not found: run scripts/install-deps.sh (as root)"
[ "$(head -n 1 "$BASALT_ARM64_SYSROOT/$ARM64_SYSROOT_STAMP" 2>/dev/null)" = "$(_cross_arm64_request)" ] ||
  basalt_die "the arm64 sysroot $BASALT_ARM64_SYSROOT is missing or out of date: run scripts/install-deps.sh (as root)"
if ! rustc --print target-libdir --target "$TARGET" 2>/dev/null | xargs test -d; then
  command -v rustup >/dev/null ||
    basalt_die "the Rust standard library for $TARGET is missing and rustup is not here to add it"
  [ "$CHECK" = 0 ] || basalt_die "the Rust target $TARGET is missing (rustup target add $TARGET)"
  echo "$BASALT_TAG: rustup target add $TARGET"
  rustup target add "$TARGET"
fi
if [ "$CHECK" = 1 ]; then
  echo "$BASALT_TAG: ready: aarch64-linux-gnu-gcc, the Rust target $TARGET, sysroot $BASALT_ARM64_SYSROOT"
  exit 0
fi

ARGS=(build --target "$TARGET" -p basalt-worker -p basalt --bin basalt-worker --bin basalt)
[ "$PROFILE" = debug ] || ARGS+=(--release)
# The sysroot, as .cargo/config.toml has it for the default one: RUSTFLAGS (with --target,
# for the arm64 crates only) replaces the config's target rustflags, and the environment's
# pkg-config variables win over its [env].
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C link-arg=--sysroot=$BASALT_ARM64_SYSROOT"
export PKG_CONFIG_SYSROOT_DIR_aarch64_unknown_linux_gnu=$BASALT_ARM64_SYSROOT
export PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu=$BASALT_ARM64_SYSROOT/usr/lib/aarch64-linux-gnu/pkgconfig:$BASALT_ARM64_SYSROOT/usr/share/pkgconfig
cd "$REPO"
START=$(basalt_now)
echo "$BASALT_TAG: cargo ${ARGS[*]}"
nice cargo "${ARGS[@]}"

OUT=${CARGO_TARGET_DIR:-$REPO/target}/$TARGET/$PROFILE
for b in basalt-worker basalt; do
  [ -x "$OUT/$b" ] || basalt_die "$OUT/$b was not built"
done
echo "$BASALT_TAG: built in $(basalt_elapsed "$START") s:"
echo "  $OUT/basalt-worker"
echo "  $OUT/basalt"
echo "$BASALT_TAG: run here with: qemu-aarch64-static -L $BASALT_ARM64_SYSROOT $OUT/basalt-worker --version"
