"""A reservation: a held board and what one does with it — wait for a state, boot, run
commands, open its console or SSH, copy files, renew the lease, release.

Used as a context manager it is released on exit, also when the block raises.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence
from contextlib import contextmanager

from .console import Console
from .errors import (
    BasaltError,
    Conflict,
    LeaseExpired,
    NotFound,
    PermissionDenied,
    Released,
    ReservationFailed,
    SSHUnavailable,
    Unavailable,
    WaitTimeout,
)
from .models import (
    Artifact,
    Connection,
    ConsoleEndpoint,
    ExecResult,
    ReservationInfo,
    ReservationState,
)
from .http import Http
from .ssh import SSH
from . import shell

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("basalt_client")

#: A file for a boot request: a URL (``http(s)://``, ``file://``, ``artifact:NAME``), an
#: :class:`Artifact`, or a local path (sent as a ``file://`` URL: the worker must allow it
#: with ``--allow-file-root``).
Image = str | Artifact | Path


def image_ref(value: Image) -> str:
    """The URL a boot request carries for ``value``."""
    if isinstance(value, Artifact):
        return value.ref
    if isinstance(value, Path):
        return value.resolve().as_uri()
    return value


@dataclass(frozen=True)
class BootRequest:
    """What to boot (docs/reservations.md, "Boot requests"): images, from which the master
    builds the deploy and boot actions for the device, or LAVA ``actions`` used as written."""

    kernel: Image | None = None
    ramdisk: Image | None = None
    dtb: Image | None = None
    rootfs: Image | None = None
    image: Image | None = None
    kernel_type: str | None = None
    prompts: Sequence[str] | None = None
    timeout_secs: int | None = None
    actions: Sequence[Mapping[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        """The request body."""
        body: dict[str, Any] = {}
        for key in ("kernel", "ramdisk", "dtb", "rootfs", "image"):
            v = getattr(self, key)
            if v is not None:
                body[key] = image_ref(v)
        if self.kernel_type is not None:
            body["kernel_type"] = self.kernel_type
        if self.prompts is not None:
            body["prompts"] = list(self.prompts)
        if self.timeout_secs is not None:
            body["timeout_secs"] = self.timeout_secs
        if self.actions is not None:
            body["actions"] = [dict(a) for a in self.actions]
        if not body:
            raise BasaltError("a boot request needs images (kernel, image, ...) or actions")
        return body


def lease_seconds(lease: int | float | timedelta) -> int:
    """A lease length in whole seconds (at least 1)."""
    secs = lease.total_seconds() if isinstance(lease, timedelta) else float(lease)
    if secs < 1:
        raise BasaltError(f"a lease must be at least 1 s, not {secs:g}")
    return int(secs)


@dataclass(eq=False)
class Reservation:
    """A reservation of the master, and the calls on it. ``info`` is its last known state
    (refreshed by every call); the properties read from it."""

    client: Client = field(repr=False)
    info: ReservationInfo

    # ---- what it is ---------------------------------------------------------------------

    @property
    def id(self) -> int:
        """The reservation's id (also its job's)."""
        return self.info.id

    @property
    def state(self) -> ReservationState:
        """Its state when last seen."""
        return self.info.state

    @property
    def device(self) -> str | None:
        """The held device's hostname (``None`` while queued)."""
        return self.info.device

    @property
    def connection(self) -> Connection:
        """How to reach the board (empty until the worker holds it)."""
        return self.info.connection

    @property
    def reason(self) -> str | None:
        """Why it failed or ended, when the server said."""
        return self.info.reason

    @property
    def expires(self) -> datetime | None:
        """When the lease runs out unless renewed."""
        return self.info.expires

    def _path(self, action: str = "") -> str:
        return f"reservations/{self.id}/{action}"

    def _set(self, value: Any) -> Reservation:
        self.info = ReservationInfo.from_json(value)
        return self

    def _act(
        self,
        action: str,
        body: Any = None,
        *,
        timeout: float | None = None,
        http: Http | None = None,
    ) -> Any:
        """POSTs an action (through ``http``, default the client's); a 409 on an expired
        lease becomes :class:`LeaseExpired`."""
        via = http or self.client._http
        try:
            return via.json("POST", self._path(action), json=body, timeout=timeout)
        except Conflict as e:
            try:
                self._set(via.json("GET", self._path()))
            except BasaltError:
                raise e from None
            if self.state is ReservationState.EXPIRED:
                raise LeaseExpired(
                    str(e), status=e.status, server_message=e.server_message, body=e.body
                ) from None
            raise

    # ---- state --------------------------------------------------------------------------

    def refresh(self) -> Reservation:
        """Reads the reservation again."""
        return self._set(self.client._http.json("GET", self._path()))

    def wait(
        self,
        state: ReservationState | str = ReservationState.READY,
        timeout: float = 600.0,
        *,
        poll: float = 0.2,
        max_poll: float = 5.0,
    ) -> Reservation:
        """Polls until the reservation is in ``state``, first every ``poll`` seconds, then
        less often (×1.5 each time, up to ``max_poll``).

        Raises :class:`ReservationFailed` (with the server's ``reason``) when it fails,
        :class:`LeaseExpired` when the lease runs out, :class:`Released` when it was
        released, and :class:`WaitTimeout` after ``timeout`` seconds. A master or worker
        briefly unreachable (503) is waited out.
        """
        target = ReservationState(state)
        clock, sleep = self.client._clock, self.client._sleep
        deadline = clock() + timeout
        delay = poll
        while True:
            try:
                self.refresh()
            except Unavailable as e:
                log.debug("reservation %s: %s; retrying", self.id, e)
            else:
                s = self.state
                if s is target:
                    return self
                if s is ReservationState.FAILED:
                    raise ReservationFailed(
                        f"reservation {self.id} on {self.device}: failed: {self.reason or 'no reason given'}",
                        reason=self.reason,
                    )
                if s is ReservationState.EXPIRED:
                    raise LeaseExpired(
                        f"reservation {self.id}: the lease expired"
                        + (f": {self.reason}" if self.reason else "")
                    )
                if s is ReservationState.RELEASED:
                    raise Released(f"reservation {self.id} was released while waiting for {target}")
            left = deadline - clock()
            if left <= 0:
                raise WaitTimeout(
                    f"reservation {self.id}: still {self.state} after {timeout:g} s (waiting for {target})"
                )
            sleep(min(delay, left))
            delay = min(delay * 1.5, max_poll)

    # ---- actions ------------------------------------------------------------------------

    def boot(
        self,
        request: BootRequest | None = None,
        *,
        kernel: Image | None = None,
        ramdisk: Image | None = None,
        dtb: Image | None = None,
        rootfs: Image | None = None,
        image: Image | None = None,
        kernel_type: str | None = None,
        prompts: Sequence[str] | None = None,
        timeout: int | None = None,
        actions: Sequence[Mapping[str, Any]] | None = None,
    ) -> Reservation:
        """Asks for a boot (a :class:`BootRequest`, or its fields as keywords; ``timeout``
        in seconds); the reservation is then ``booting``: :meth:`wait` for ``ready``."""
        req = request or BootRequest(
            kernel=kernel,
            ramdisk=ramdisk,
            dtb=dtb,
            rootfs=rootfs,
            image=image,
            kernel_type=kernel_type,
            prompts=prompts,
            timeout_secs=timeout,
            actions=actions,
        )
        return self._set(self._act("boot/", req.to_json()))

    def renew(
        self, lease: int | float | timedelta | None = None, *, http: Http | None = None
    ) -> Reservation:
        """Moves the lease's end to now + ``lease`` (default: the lease's own length).
        ``http``: another connection to the master (the keep-alive thread has its own)."""
        body = {} if lease is None else {"lease_secs": lease_seconds(lease)}
        return self._set(self._act("renew/", body, http=http))

    @contextmanager
    def keep_alive(self, interval: float | None = None) -> Iterator[KeepAlive]:
        """Renews the lease in a background thread while the block runs, every ``interval``
        seconds (default: a third of the lease). A renewal that fails for good (expired,
        released, not the holder) stops it; the error is then raised when the block ends
        (unless the block raised)."""
        every = interval if interval is not None else max(1.0, (self.info.lease_secs or 900) / 3)
        ka = KeepAlive(self, every)
        ka.start()
        try:
            yield ka
        except BaseException:
            ka.stop()
            raise
        ka.stop()
        if ka.error is not None:
            raise ka.error

    def run(self, command: str, timeout: float = 60.0) -> ExecResult:
        """Runs ``command`` on the board through the REST exec call (the worker types it at
        the board's shell); output, exit status, and whether the output was truncated. The
        reservation must be ``ready`` after a boot."""
        body = {"command": command, "timeout_secs": max(1, int(timeout))}
        return ExecResult.from_json(self._act("exec/", body, timeout=timeout + 30))

    def power_off(self) -> Reservation:
        """Powers the board off; it stays held (``ready``, nothing booted)."""
        return self._set(self._act("power-off/"))

    def release(self, *, wait: bool = False, timeout: float = 120.0) -> Reservation:
        """Gives the board back (idempotent: releasing a released or expired reservation is
        no error). With ``wait``, waits until the worker confirmed (state ``released``)."""
        if not self.state.final:
            try:
                self._set(self.client._http.json("POST", self._path("release/")))
            except (Conflict, NotFound):
                self.refresh()
                if not self.state.final:
                    raise
        if wait and not self.state.final:
            try:
                self.wait(ReservationState.RELEASED, timeout)
            except LeaseExpired:
                pass
        return self

    def logs(self) -> str:
        """The reservation's job log (LAVA's YAML log lines: the boots, the commands)."""
        return self.client.job_logs(self.info.job_id)

    # ---- connections --------------------------------------------------------------------

    def _endpoint(self, watch: bool) -> ConsoleEndpoint:
        conn = self.connection
        ep = conn.watch if watch else conn.console
        if ep is None:
            conn = self.refresh().connection
            ep = conn.watch if watch else conn.console
        if ep is None or ep.token is None:
            raise BasaltError(
                f"reservation {self.id} ({self.state}): no console"
                f"{' token (only the holder sees it)' if ep is not None else ' yet: wait for ready'}"
            )
        return ep

    def console(self, *, watch: bool = False, timeout: float = 10.0) -> Console:
        """Connects to the board's console: the writer's (one at a time) or, with ``watch``,
        a read-only watcher's."""
        ep = self._endpoint(watch)
        assert ep.token is not None
        return Console(ep.host, ep.port, ep.token, timeout=timeout)

    def ssh(
        self,
        *,
        identity_file: str | os.PathLike[str] | None = None,
        program: str | None = None,
    ) -> SSH:
        """SSH access to the booted board (:class:`SSH`); :class:`SSHUnavailable` when the
        image has no SSH server. ``identity_file``: one's own private key, when the
        reservation was made with one's ``ssh_public_key``."""
        ssh = self.connection.ssh or self.refresh().connection.ssh
        if ssh is None:
            raise SSHUnavailable(
                f"reservation {self.id} on {self.device}: no SSH (the image runs no sshd or dropbear)"
            )
        return SSH(ssh, identity_file=identity_file or self.client.identity_file, program=program)

    def copy_to(
        self, local: str | os.PathLike[str], remote: str, *, timeout: float = 300.0
    ) -> None:
        """Copies a local file to ``remote`` on the board: with scp when the board has SSH,
        else through the console (base64 chunks, checked with sha256)."""
        if self.refresh().connection.ssh is not None:
            with self.ssh() as s:
                s.scp_to(local, remote, timeout=timeout)
            return
        with self.console() as c:
            shell.copy_to(c, local, remote, timeout=min(timeout, 120.0))

    def copy_from(
        self, remote: str, local: str | os.PathLike[str], *, timeout: float = 300.0
    ) -> None:
        """Copies ``remote`` on the board to a local file (scp, else the console)."""
        if self.refresh().connection.ssh is not None:
            with self.ssh() as s:
                s.scp_from(remote, local, timeout=timeout)
            return
        with self.console() as c:
            shell.copy_from(c, remote, local, timeout=timeout)

    # ---- context manager ----------------------------------------------------------------

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.release()
        except BasaltError as e:
            if exc is None:
                raise
            log.warning("reservation %s: release after %s failed: %s", self.id, exc_type, e)


class KeepAlive:
    """The thread of :meth:`Reservation.keep_alive`: ``renewals`` counts its renewals,
    ``error`` holds the failure that stopped it."""

    def __init__(self, reservation: Reservation, interval: float) -> None:
        self.reservation = reservation
        self.interval = interval
        self.renewals = 0
        self.error: BasaltError | None = None
        # its own session: requests.Session is not made for two threads at once
        self._http = reservation.client._http.clone()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"basalt-keep-alive-{reservation.id}", daemon=True
        )

    def start(self) -> None:
        """Starts renewing."""
        self._thread.start()

    def stop(self) -> None:
        """Stops renewing and waits for the thread."""
        self._stop.set()
        self._thread.join()
        self._http.session.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.reservation.renew(http=self._http)
                self.renewals += 1
            except (Unavailable, WaitTimeout) as e:
                log.warning("reservation %s: renewal failed, retrying: %s", self.reservation.id, e)
            except (LeaseExpired, NotFound, PermissionDenied, Conflict) as e:
                self.error = e
                return
            except BasaltError as e:
                log.warning("reservation %s: renewal failed: %s", self.reservation.id, e)
