#!/usr/bin/env bash
# basalt's demo: installs what it needs (Debian 12, as root), builds the boot fixtures and
# basalt, then runs one LAVA job end to end on a QEMU board and shows the results.
#
#   ./scripts/demo.sh            # output in target/demo (job.yaml, output.yaml, results.yaml)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
if ! command -v cargo >/dev/null && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
  PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
fi
scripts/install-deps.sh
hw-tests/build-fixtures.sh
echo "demo: building basalt (release)"
cargo build --release --quiet -p basalt --bin basalt -p basalt-board --bin basalt-board
exec target/release/basalt demo --output-dir target/demo "$@"
