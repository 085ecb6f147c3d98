#!/usr/bin/env bash
# basalt's demo: installs what it needs (Debian 12, as root), builds the boot fixtures and
# basalt, then sets up a lab on this machine (basalt-master, a worker, a QEMU board and a
# basalt-board), submits LAVA's demo jobs through the master, follows one live and prints the
# results. The lab stops at the end.
#
#   ./scripts/demo.sh            # the lab in target/demo/lab (state, logs, token)
#   ./scripts/demo.sh --board    # follow the basalt-board job instead of the QEMU one
#   ./scripts/demo.sh --local    # one job run directly (basalt run), output in target/demo
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
if ! command -v cargo >/dev/null && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
  PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
fi
scripts/install-deps.sh
hw-tests/build-fixtures.sh
echo "demo: building basalt (release)"
cargo build --release --quiet -p basalt --bin basalt -p basalt-board --bin basalt-board \
  -p basalt-master --bin basalt-master -p basalt-worker --bin basalt-worker
exec target/release/basalt demo --output-dir target/demo "$@"
