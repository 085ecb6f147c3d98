"""The console of a held board: telnet (raw TCP with IAC sequences) to the worker, the
lease's token line, then the board's output — the ring buffer first, then the live stream.

Written here rather than with ``telnetlib`` (removed in Python 3.13) or a dependency: the
protocol is one token line and a little IAC handling (every option is refused), and the
expect loop is what a CI script needs (``read_until``, ``expect``) without a pty.
"""

from __future__ import annotations

import codecs
import re
import select
import socket
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Sequence

from .errors import ConsoleError, PermissionDenied, WaitTimeout

if TYPE_CHECKING:
    from .models import ExecResult

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240

Pattern = str | re.Pattern[str]

#: How much of the received text :attr:`Console.transcript` keeps (the latest part).
TRANSCRIPT_LIMIT = 1 << 20


@dataclass(frozen=True)
class ExpectMatch:
    """What :meth:`Console.expect` found: which pattern (its index), the match, and the
    text received before it."""

    index: int
    match: re.Match[str]
    before: str


class _Telnet:
    """Strips telnet commands from the byte stream and refuses every option."""

    def __init__(self) -> None:
        self.state = 0  # 0 data, 1 after IAC, 2 after IAC+verb, 3 in SB, 4 in SB after IAC
        self.verb = 0

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """Returns (the data bytes, the replies to send)."""
        out = bytearray()
        reply = bytearray()
        for b in data:
            if self.state == 0:
                if b == IAC:
                    self.state = 1
                else:
                    out.append(b)
            elif self.state == 1:
                if b == IAC:
                    out.append(IAC)
                    self.state = 0
                elif b in (DO, DONT, WILL, WONT):
                    self.verb = b
                    self.state = 2
                elif b == SB:
                    self.state = 3
                else:
                    self.state = 0  # NOP, GA, ... : nothing to do
            elif self.state == 2:
                if self.verb == DO:
                    reply += bytes([IAC, WONT, b])
                elif self.verb == WILL:
                    reply += bytes([IAC, DONT, b])
                self.state = 0
            elif self.state == 3:
                if b == IAC:
                    self.state = 4
            else:  # 4
                self.state = 0 if b == SE else 3
        return bytes(out), bytes(reply)


def _compile(p: Pattern) -> re.Pattern[str]:
    return p if isinstance(p, re.Pattern) else re.compile(re.escape(p))


class Console:
    """A connection to a held board's console.

    ``Console(host, port, token)`` connects, sends the token line and reads the server's
    answer: ``device`` and ``role`` (``writer`` or ``watcher``) come from it. A wrong token
    raises :class:`PermissionDenied`; a second writer :class:`ConsoleError`. Use it as a
    context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        token: str,
        *,
        timeout: float = 10.0,
        encoding: str = "utf-8",
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._telnet = _Telnet()
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._encoding = encoding
        self._buffer = ""
        self._transcript: list[str] = []
        self._transcript_len = 0
        self._eof = False
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise ConsoleError(f"console {host}:{port}: cannot connect: {e}") from e
        try:
            self._sock.sendall(token.encode() + b"\n")
            line = self.read_until("\n", timeout=timeout)
        except (ConsoleError, WaitTimeout) as e:
            self.close()
            raise ConsoleError(f"console {host}:{port}: no answer to the token: {e}") from e
        greeting = line.strip()
        m = re.fullmatch(r"basalt: console of (\S+) \((writer|watcher)\)", greeting)
        if m is None:
            self.close()
            if greeting == "basalt: wrong token":
                raise PermissionDenied(f"console {host}:{port}: {greeting}")
            raise ConsoleError(f"console {host}:{port}: {greeting or 'closed'}")
        self.device: str = m.group(1)
        self.role: str = m.group(2)

    # ---- lifetime -----------------------------------------------------------------------

    def close(self, linger: float = 2.0) -> None:
        """Closes the connection (idempotent). It first says it is done sending and waits (at
        most ``linger`` seconds) for the server to close its end, so that the server has let
        the writer's place go when this returns and a new connection of the lease holder is
        not refused as a second writer."""
        sock = getattr(self, "_sock", None)
        if sock is None:
            return
        try:
            if not self._eof:
                sock.shutdown(socket.SHUT_WR)
                deadline = time.monotonic() + linger
                while (left := deadline - time.monotonic()) > 0:
                    sock.settimeout(left)
                    if not sock.recv(65536):
                        break
        except OSError:
            pass
        finally:
            self._eof = True
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> Console:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def writer(self) -> bool:
        """Whether this connection may write (a watcher's may not)."""
        return self.role == "writer"

    @property
    def closed(self) -> bool:
        """Whether the server closed the console (the lease ended) and nothing is buffered."""
        return self._eof and not self._buffer

    # ---- reading ------------------------------------------------------------------------

    def _take(self, text: str) -> None:
        self._buffer += text
        self._transcript.append(text)
        self._transcript_len += len(text)
        while self._transcript_len > TRANSCRIPT_LIMIT and len(self._transcript) > 1:
            self._transcript_len -= len(self._transcript.pop(0))

    def _fill(self, deadline: float) -> bool:
        """Receives once (until ``deadline``); False when nothing came before it."""
        if self._eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self._sock.settimeout(left)
        try:
            data = self._sock.recv(65536)
        except socket.timeout:
            return False
        except OSError as e:
            self._eof = True
            raise ConsoleError(f"console {self.host}:{self.port}: {e}") from e
        if not data:
            self._eof = True
            self._take(self._decoder.decode(b"", final=True))
            return False
        out, reply = self._telnet.feed(data)
        if reply:
            try:
                self._sock.sendall(reply)
            except OSError:
                pass
        self._take(self._decoder.decode(out))
        return True

    def read(self, timeout: float = 0.0) -> str:
        """What is buffered plus what arrives within ``timeout`` seconds (at least one read
        when nothing is buffered and ``timeout`` > 0); consumed."""
        if not self._buffer and timeout > 0:
            self._fill(time.monotonic() + timeout)
        text, self._buffer = self._buffer, ""
        return text

    def expect(self, patterns: Sequence[Pattern], timeout: float | None = None) -> ExpectMatch:
        """Waits until one of ``patterns`` (strings, matched literally, or compiled regular
        expressions) appears; consumes the text through the earliest match.

        Raises :class:`WaitTimeout` (with the text seen) when none appears within
        ``timeout`` seconds (default: the console's), :class:`ConsoleError` when the console
        closes first.
        """
        regexes = [_compile(p) for p in patterns]
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            best: tuple[int, re.Match[str]] | None = None
            for i, rx in enumerate(regexes):
                m = rx.search(self._buffer)
                if m is not None and (best is None or m.start() < best[1].start()):
                    best = (i, m)
            if best is not None:
                i, m = best
                before = self._buffer[: m.start()]
                self._buffer = self._buffer[m.end() :]
                return ExpectMatch(i, m, before)
            if self._eof:
                raise ConsoleError(
                    f"console {self.host}:{self.port} closed while waiting for "
                    f"{[r.pattern for r in regexes]}; last output: {self._buffer[-300:]!r}"
                )
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"console {self.host}:{self.port}: none of {[r.pattern for r in regexes]} "
                    f"within {wait:g} s; last output: {self._buffer[-300:]!r}"
                )
            self._fill(deadline)

    def read_until(self, pattern: Pattern, timeout: float | None = None) -> str:
        """Waits for ``pattern``; returns (and consumes) the text up to and including it."""
        m = self.expect([pattern], timeout)
        return m.before + m.match.group(0)

    def clear(self) -> str:
        """Discards (and returns) what is buffered and not yet consumed, e.g. the ring
        buffer's boot log, so the next read starts from now."""
        while not self._eof and select.select([self._sock], [], [], 0)[0]:
            self._fill(time.monotonic() + self.timeout)
        text, self._buffer = self._buffer, ""
        return text

    @property
    def transcript(self) -> str:
        """Everything received (its last MiB), consumed or not: the boot log, commands,
        their output."""
        return "".join(self._transcript)

    # ---- writing ------------------------------------------------------------------------

    def write(self, data: str | bytes) -> None:
        """Sends bytes (``str`` is encoded) to the board; IAC bytes are escaped."""
        if not self.writer:
            raise ConsoleError(f"console of {self.device}: a watcher's console is read-only")
        raw = data.encode(self._encoding) if isinstance(data, str) else data
        raw = raw.replace(bytes([IAC]), bytes([IAC, IAC]))
        try:
            self._sock.sendall(raw)
        except OSError as e:
            raise ConsoleError(f"console {self.host}:{self.port}: {e}") from e

    def sendline(self, line: str = "") -> None:
        """Sends ``line`` and a newline."""
        self.write(line + "\n")

    # ---- a shell on the console ---------------------------------------------------------

    def run(self, command: str, timeout: float = 60.0) -> ExecResult:
        """Runs a shell command at the board's shell prompt and returns its output and exit
        status (:func:`basalt_client.shell.run`)."""
        from .shell import run

        return run(self, command, timeout)
