#!/usr/bin/env bash
# basalt's test command: system packages, boot fixtures, then the Rust checks.
#
#   ./scripts/test.sh               all steps, in this order:
#       deps      scripts/install-deps.sh        (root; a quick no-op when all is installed)
#       fixtures  hw-tests/build-fixtures.sh     (kernels + initramfs, cached in target/fixtures;
#                                                 amd64, and the optional arm64 and armhf sets:
#                                                 BASALT_FIXTURES_ARM64 / _ARMHF=1 make one required)
#       fmt       cargo fmt --all -- --check
#       clippy    cargo clippy --all-targets --workspace -- -D warnings
#       build     cargo build --workspace --all-targets
#       cross     scripts/build-arm64.sh         (basalt-worker and basalt for arm64, debug: from
#                                                 scratch ~6 min of CPU, 14 min on 2 busy cores;
#                                                 ~40 s after a change in basalt's crates; then the
#                                                 test step requires tests/lab_arm64.rs to run:
#                                                 BASALT_REQUIRE_ARM64=1)
#       test      cargo test --workspace         (with BASALT_FIXTURES and the fixtures' env exported,
#                                                 and BASALT_TEST_POSTGRES: a throwaway PostgreSQL
#                                                 cluster, scripts/lib/postgres.sh, stopped at the end)
#   ./scripts/test.sh STEP...       only these steps (e.g. `./scripts/test.sh fmt clippy`)
#
# Environment: BASALT_FIXTURES (fixtures directory, default target/fixtures);
# BASALT_TEST_POSTGRES (a PostgreSQL URL: the tests use that server instead of their own).
# Cargo uses its default target directory, target/.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
# shellcheck source=scripts/lib/postgres.sh
. "$REPO/scripts/lib/postgres.sh"
ALL_STEPS=(deps fixtures fmt clippy build cross test)

if [ $# -eq 0 ]; then
  STEPS=("${ALL_STEPS[@]}")
else
  STEPS=("$@")
  for s in "${STEPS[@]}"; do
    case " ${ALL_STEPS[*]} " in
      *" $s "*) ;;
      *)
        echo "test.sh: unknown step '$s' (steps: ${ALL_STEPS[*]})" >&2
        exit 2
        ;;
    esac
  done
fi

# cargo from rustup when the environment lacks ~/.cargo/bin
if ! command -v cargo >/dev/null && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
  PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
fi

BASALT_FIXTURES=${BASALT_FIXTURES:-$REPO/target/fixtures}
case $BASALT_FIXTURES in /*) ;; *) BASALT_FIXTURES=$REPO/$BASALT_FIXTURES ;; esac
export BASALT_FIXTURES

now() { date +%s.%N; }
elapsed() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1f", e - s }'; }
T0=$(now)
TIMES=()
CURRENT=
on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ -n "$CURRENT" ]; then
    echo "test.sh: step '$CURRENT' FAILED (exit $rc) after $(elapsed "$STEP_T0") s; total $(elapsed "$T0") s" >&2
  fi
  basalt_pg_stop || true
}
trap on_exit EXIT
trap 'exit 130' INT TERM # so that the EXIT trap runs

# run STEP CMD... : run a step, print its duration
run() {
  CURRENT=$1
  shift
  echo "test.sh: --- $CURRENT: $*"
  STEP_T0=$(now)
  "$@"
  local t
  t=$(elapsed "$STEP_T0")
  TIMES+=("$(printf '%-9s %7s s' "$CURRENT" "$t")")
  echo "test.sh: --- $CURRENT ok in $t s"
  CURRENT=
}

# The tests, with a PostgreSQL server for the store's PostgreSQL variants: the caller's
# (BASALT_TEST_POSTGRES) or a throwaway cluster, stopped when they end (or by on_exit).
test_step() {
  if [ -z "${BASALT_TEST_POSTGRES:-}" ]; then
    basalt_pg_start
  fi
  cargo test --workspace
  basalt_pg_stop
}

load_fixture_env() {
  if [ -f "$BASALT_FIXTURES/env" ]; then
    set -a
    # shellcheck source=/dev/null
    . "$BASALT_FIXTURES/env"
    set +a
  fi
}

for step in "${STEPS[@]}"; do
  case $step in
    deps) run deps "$REPO/scripts/install-deps.sh" ;;
    fixtures) run fixtures "$REPO/hw-tests/build-fixtures.sh" ;;
    fmt) run fmt cargo fmt --all -- --check ;;
    clippy) run clippy cargo clippy --all-targets --workspace -- -D warnings ;;
    build) run build cargo build --workspace --all-targets ;;
    cross)
      run cross "$REPO/scripts/build-arm64.sh"
      export BASALT_REQUIRE_ARM64=1
      ;;
    test)
      load_fixture_env
      run test test_step
      ;;
  esac
done

echo "test.sh: all steps passed in $(elapsed "$T0") s:"
printf 'test.sh:   %s\n' "${TIMES[@]}"
