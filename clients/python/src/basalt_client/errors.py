"""The exceptions of basalt_client: one hierarchy under :class:`BasaltError`.

Every error raised by the client is a :class:`BasaltError`; the server's own message is kept
in ``str(err)`` (prefixed with the call that failed) and in :attr:`BasaltError.server_message`.
"""

from __future__ import annotations

from typing import Any


class BasaltError(Exception):
    """Any failure of a basalt call: the server refused it, or it could not be made.

    ``status`` is the HTTP status when the server answered, ``server_message`` its ``error``
    text (or LAVA's ``message``), ``body`` the decoded JSON answer when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        server_message: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.server_message = server_message
        self.body = body


class BadRequest(BasaltError):
    """The server refused the request as malformed (HTTP 400): an unknown key, a bad value."""


class Unmet(BadRequest):
    """No device of the lab can meet the requirements (HTTP 400 with ``unmet``).

    ``unmet`` names the requirements that failed (``["ram"]``, ``["arch", "cpus"]``).
    """

    def __init__(self, message: str, *, unmet: list[str], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.unmet = unmet


class PermissionDenied(BasaltError):
    """No token, a wrong token, or not the holder of the reservation (HTTP 401/403), or a
    console that refused the token."""


class NotFound(BasaltError):
    """No such reservation, job, device or artifact (HTTP 404)."""


class Conflict(BasaltError):
    """The reservation (or job) is not in a state that allows the call (HTTP 409)."""


class Unavailable(BasaltError):
    """The worker holding the board is not connected, or the master is unreachable: retry
    (HTTP 503, or no answer)."""


class LeaseExpired(Conflict):
    """The reservation's lease ran out: the board was powered off and went back to the pool."""


class ReservationFailed(BasaltError):
    """The reservation reached ``failed`` (a boot failed, or its worker was lost).

    ``reason`` is the server's explanation; a failed boot leaves the board held: boot again
    or release it.
    """

    def __init__(self, message: str, *, reason: str | None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reason = reason


class Released(BasaltError):
    """The reservation was released while something waited for another state."""


class WaitTimeout(BasaltError, TimeoutError):
    """A wait (for a reservation state, a job, console output) did not end in time."""


class ConsoleError(BasaltError):
    """The console connection failed: refused (another writer), closed, or not telnet."""


class CommandFailed(BasaltError):
    """A command exited non-zero where success was required (:meth:`ExecResult.check`).

    ``result`` is the :class:`~basalt_client.models.ExecResult`.
    """

    def __init__(self, message: str, *, result: Any, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.result = result


class SSHUnavailable(BasaltError):
    """The reservation has no SSH endpoint (its image runs no sshd/dropbear, or it is not
    booted), or no ssh client is installed here."""
