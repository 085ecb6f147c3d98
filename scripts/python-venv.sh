#!/usr/bin/env bash
# The Python client's virtual environment: target/venv with pinned requests, pytest, pyzmq,
# mypy (and types-requests, setuptools), and clients/python installed editable with its
# [events] extra. Idempotent: reused as long as the pins, clients/python/pyproject.toml and
# the interpreter are those of its stamp (target/venv/.basalt-stamp); PyPI is needed only to
# make it. Concurrent runs wait for each other (flock on target/venv.lock).
#
#   scripts/python-venv.sh            make or reuse target/venv; prints its path
#
# Environment: BASALT_VENV (default target/venv); BASALT_PYTHON (default Debian's
# /usr/bin/python3, else python3 from PATH; Python >= 3.11, with the venv module:
# Debian's python3-venv, installed by scripts/install-deps.sh).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${BASALT_VENV:-$REPO/target/venv}
if [ -z "${BASALT_PYTHON:-}" ]; then
  if [ -x /usr/bin/python3 ]; then BASALT_PYTHON=/usr/bin/python3; else BASALT_PYTHON=python3; fi
fi
PINS="requests==2.34.2 pytest==9.2.0 pyzmq==27.3.0 mypy==2.4.1 types-requests==2.33.0.20261030 setuptools==84.2.1"

if ! "$BASALT_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "python-venv.sh: $BASALT_PYTHON is missing or older than Python 3.11" >&2
  exit 1
fi
if ! "$BASALT_PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  echo "python-venv.sh: $BASALT_PYTHON has no venv/ensurepip: apt-get install python3-venv (scripts/install-deps.sh)" >&2
  exit 1
fi

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9

STAMP="pins: $PINS
pyproject: $(sha256sum "$REPO/clients/python/pyproject.toml" | cut -d' ' -f1)
python: $("$BASALT_PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')
venv: $VENV"

if [ "$(cat "$VENV/.basalt-stamp" 2>/dev/null)" = "$STAMP" ] && "$VENV/bin/python" -c 'import basalt_client, zmq, pytest' 2>/dev/null; then
  echo "$VENV"
  exit 0
fi

echo "python-venv.sh: making $VENV" >&2
rm -f "$VENV/.basalt-stamp"
"$BASALT_PYTHON" -m venv --clear "$VENV"
# shellcheck disable=SC2086
"$VENV/bin/pip" install -q --disable-pip-version-check $PINS
# the pinned setuptools builds it (no build isolation: nothing else is fetched)
"$VENV/bin/pip" install -q --disable-pip-version-check --no-build-isolation -e "$REPO/clients/python[events]"
echo "$STAMP" >"$VENV/.basalt-stamp"
echo "$VENV"
