"""SSH to a booted board with the system's client (OpenSSH ``ssh``/``scp``, or Dropbear's
``dbclient``), through :mod:`subprocess` with argument lists (no local shell).

The lease's private key (when the master generated it) is written to a 0600 file in a
private temporary directory, with a throwaway ``known_hosts`` beside it: a board's host key
changes with every boot, so host keys are not checked (``StrictHostKeyChecking=no``) and
never land in the user's own ``~/.ssh/known_hosts``. The directory is removed by
:meth:`SSH.close` (or when the object is collected).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import weakref
from pathlib import Path
from types import TracebackType
from typing import Sequence

from .errors import BasaltError, SSHUnavailable
from .models import ExecResult, SSHEndpoint


def _which(name: str) -> str | None:
    return shutil.which(name)


class SSH:
    """SSH access to a reservation's board: ``ssh_run(cmd)``, ``scp_to``, ``scp_from``, and
    the parameters (``host``, ``port``, ``user``, ``key_file``, :meth:`ssh_args`) for tools of
    one's own.

    ``identity_file`` is the private key to use when the reservation was made with one's own
    ``ssh_public_key`` (the master then has no private key to give). ``program`` forces
    ``"ssh"`` or ``"dbclient"``; by default ``ssh`` when installed, else ``dbclient``.
    """

    def __init__(
        self,
        endpoint: SSHEndpoint,
        *,
        identity_file: str | os.PathLike[str] | None = None,
        program: str | None = None,
        connect_timeout: int = 10,
    ) -> None:
        self.host = endpoint.host
        self.port = endpoint.port
        self.user = endpoint.user
        self.connect_timeout = connect_timeout
        chosen = program or ("ssh" if _which("ssh") else "dbclient" if _which("dbclient") else None)
        if chosen not in ("ssh", "dbclient") or _which(chosen) is None:
            raise SSHUnavailable(
                f"no ssh client: install openssh-client (ssh, scp) or dropbear-bin (dbclient)"
                f"{'' if program is None else f'; {program!r} was asked for'}"
            )
        self.program = chosen
        self._dir = tempfile.mkdtemp(prefix="basalt-ssh-")
        os.chmod(self._dir, 0o700)
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, True)
        self.known_hosts = Path(self._dir) / "known_hosts"
        self.known_hosts.touch(mode=0o600)
        self.key_file: Path | None = None
        if endpoint.private_key:
            key = Path(self._dir) / "id_lease"
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(endpoint.private_key.rstrip("\n") + "\n")
            self.key_file = key
        elif identity_file is not None:
            self.key_file = Path(identity_file)

    # ---- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Removes the temporary key and known_hosts (idempotent)."""
        self._finalizer()

    def __enter__(self) -> SSH:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- command lines ------------------------------------------------------------------

    @property
    def destination(self) -> str:
        """``user@host``."""
        return f"{self.user}@{self.host}"

    def options(self) -> list[str]:
        """OpenSSH ``-o`` options shared by ``ssh`` and ``scp`` (no port)."""
        opts = [
            "-o", "StrictHostKeyChecking=no",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR",
            "-o", f"ConnectTimeout={self.connect_timeout}",
        ]  # fmt: skip
        if self.key_file is not None:
            opts += ["-o", "IdentitiesOnly=yes", "-i", str(self.key_file)]
        return opts

    def ssh_args(self, command: str | None = None) -> list[str]:
        """The argument list that runs ``command`` on the board (an interactive login when
        ``None``); ``command`` is interpreted by the board's shell."""
        if self.program == "dbclient":
            args = ["dbclient", "-y", "-y", "-p", str(self.port)]
            if self.key_file is not None:
                args += ["-i", str(self.key_file)]
            args.append(self.destination)
        else:
            args = ["ssh", *self.options(), "-p", str(self.port), self.destination]
        if command is not None:
            args.append(command)
        return args

    # ---- running ------------------------------------------------------------------------

    def _run(self, args: Sequence[str], timeout: float, stdin: bytes | None) -> ExecResult:
        try:
            p = subprocess.run(
                list(args),
                input=stdin if stdin is not None else b"",
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            from .errors import WaitTimeout

            raise WaitTimeout(f"{args[0]} to {self.destination}:{self.port}: no end within {timeout:g} s") from e
        except OSError as e:
            raise SSHUnavailable(f"{args[0]}: {e}") from e
        return ExecResult(output=p.stdout.decode("utf-8", "replace"), exit_status=p.returncode)

    def ssh_run(
        self, command: str, *, timeout: float = 60.0, input: bytes | None = None
    ) -> ExecResult:
        """Runs ``command`` on the board (through its shell); its output (stdout and stderr)
        and exit status. Exit status 255 is ssh's own failure and raises
        :class:`BasaltError` with ssh's message."""
        r = self._run(self.ssh_args(command), timeout, input)
        if r.exit_status == 255:
            raise BasaltError(
                f"ssh {self.destination} -p {self.port}: {r.output.strip()[-500:] or 'failed (255)'}"
            )
        return r

    def scp_to(
        self, local: str | os.PathLike[str], remote: str, *, timeout: float = 300.0
    ) -> None:
        """Copies the local file ``local`` to ``remote`` on the board: ``scp -O`` (the
        classic protocol: Dropbear has no SFTP server), and when the board has no ``scp``,
        ``cat > remote`` over ssh."""
        path = Path(local)
        if not path.is_file():
            raise BasaltError(f"scp_to: {local} is not a file")
        if self.program == "ssh" and _which("scp"):
            args = ["scp", "-O", "-q", *self.options(), "-P", str(self.port), str(path),
                    f"{self.destination}:{remote}"]  # fmt: skip
            if self._run(args, timeout, None).exit_status == 0:
                return
        r = self.ssh_run(f"cat > {shlex.quote(remote)}", timeout=timeout, input=path.read_bytes())
        if r.exit_status != 0:
            raise BasaltError(f"copying {local} to {self.destination}:{remote}: {r.output.strip()[-500:]}")

    def scp_from(
        self, remote: str, local: str | os.PathLike[str], *, timeout: float = 300.0
    ) -> None:
        """Copies ``remote`` on the board to the local file ``local`` (``scp -O``, else
        ``cat`` over ssh)."""
        if self.program == "ssh" and _which("scp"):
            args = ["scp", "-O", "-q", *self.options(), "-P", str(self.port),
                    f"{self.destination}:{remote}", str(local)]  # fmt: skip
            if self._run(args, timeout, None).exit_status == 0:
                return
        try:
            p = subprocess.run(
                self.ssh_args(f"cat {shlex.quote(remote)}"),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BasaltError(f"copying {self.destination}:{remote}: {e}") from e
        if p.returncode != 0:
            msg = p.stderr.decode("utf-8", "replace").strip()[-500:]
            raise BasaltError(f"copying {self.destination}:{remote}: {msg}")
        Path(local).write_bytes(p.stdout)
