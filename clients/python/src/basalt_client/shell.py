"""A POSIX shell driven through a :class:`~basalt_client.console.Console`: run a command
and read its output and exit status, copy files in base64 chunks with a sha256 check.

How ``run`` finds the output: it sends::

    echo BASALT''-N-START; {
    COMMAND
    }; echo BASALT''-N-END $?

(N a fresh nonce). The terminal's echo of that input shows ``BASALT''-N``, the shell's output
``BASALT-N``, so only the real output matches ``BASALT-N-START`` ... ``BASALT-N-END STATUS``
and neither the echo, the prompt nor earlier output is taken for it. The board needs
``sh``, and for copies ``base64`` and ``sha256sum`` (busybox has them).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import BasaltError, CommandFailed
from .models import ExecResult

if TYPE_CHECKING:
    from .console import Console

#: base64 characters sent per command by :func:`copy_to` (kept well under a terminal's
#: 4096-byte input line discipline buffer, which a real serial line may not throttle).
CHUNK = 1024


def run(console: Console, command: str, timeout: float = 60.0) -> ExecResult:
    """Runs ``command`` in the shell at the other end of ``console``; its output (CRLF made
    LF) and exit status. Raises :class:`~basalt_client.errors.WaitTimeout` when it does not
    finish within ``timeout`` seconds."""
    nonce = secrets.token_hex(6)
    start = f"BASALT-{nonce}-START"
    end = f"BASALT-{nonce}-END"
    console.write(f"echo BASALT''-{nonce}-START; {{\n{command}\n}}; echo BASALT''-{nonce}-END $?\n")
    console.expect([re.compile(re.escape(start) + r"\r*\n")], timeout)
    m = console.expect([re.compile(re.escape(end) + r" (\d+)\r*\n")], timeout)
    output = m.before.replace("\r\n", "\n").replace("\r", "")
    return ExecResult(output=output, exit_status=int(m.match.group(1)))


def _check(result: ExecResult, what: str) -> ExecResult:
    if result.exit_status != 0:
        raise CommandFailed(
            f"{what}: exited {result.exit_status}: {result.output[-300:].strip()}", result=result
        )
    return result


def _sha256_of_output(output: str, what: str) -> str:
    m = re.search(r"\b([0-9a-f]{64})\b", output)
    if m is None:
        raise BasaltError(f"{what}: no sha256 in the board's answer: {output[-300:]!r}")
    return m.group(1)


def copy_to(
    console: Console,
    local: str | os.PathLike[str],
    remote: str,
    *,
    timeout: float = 60.0,
    chunk: int = CHUNK,
) -> str:
    """Copies the local file ``local`` to ``remote`` on the board through the console:
    base64 in chunks appended to ``REMOTE.basalt-b64``, decoded, then checked with
    ``sha256sum``. Returns the sha256. Raises :class:`BasaltError` on a mismatch."""
    data = Path(local).read_bytes()
    want = hashlib.sha256(data).hexdigest()
    encoded = base64.b64encode(data).decode("ascii")
    q_tmp = shlex.quote(remote + ".basalt-b64")
    q_remote = shlex.quote(remote)
    what = f"copying {local} to {remote} over the console"
    _check(run(console, f": > {q_tmp}", timeout), what)
    step = max(76, chunk - chunk % 76)
    for at in range(0, len(encoded), step):
        piece = encoded[at : at + step]
        lines = "\n".join(piece[i : i + 76] for i in range(0, len(piece), 76))
        _check(run(console, f"cat >> {q_tmp} <<'BASALT_EOF'\n{lines}\nBASALT_EOF", timeout), what)
    result = run(
        console,
        f"base64 -d {q_tmp} > {q_remote} && rm -f {q_tmp} && sha256sum {q_remote}",
        timeout,
    )
    got = _sha256_of_output(_check(result, what).output, what)
    if got != want:
        raise BasaltError(f"{what}: sha256 {got} on the board, {want} here")
    return want


def copy_from(
    console: Console,
    remote: str,
    local: str | os.PathLike[str],
    *,
    timeout: float = 60.0,
) -> str:
    """Copies ``remote`` on the board to the local file ``local`` through the console
    (``base64`` of it, checked with ``sha256sum``). Returns the sha256."""
    q_remote = shlex.quote(remote)
    what = f"copying {remote} from the board over the console"
    want = _sha256_of_output(_check(run(console, f"sha256sum {q_remote}", timeout), what).output, what)
    encoded = _check(run(console, f"base64 {q_remote}", timeout), what).output
    try:
        data = base64.b64decode("".join(encoded.split()), validate=True)
    except ValueError as e:
        raise BasaltError(f"{what}: the board's base64 does not decode: {e}") from e
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise BasaltError(f"{what}: sha256 {got} received, {want} on the board")
    Path(local).write_bytes(data)
    return want
