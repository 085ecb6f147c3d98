"""The client of one master: reservations, devices, artifacts, jobs."""

from __future__ import annotations

import os
import time
import urllib.parse
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import requests

from .errors import BasaltError, Unavailable, WaitTimeout
from .http import Http
from .models import Artifact, Device, Job, ReservationInfo, ReservationState
from .reservation import BootRequest, Reservation, lease_seconds

#: Requirement sizes: an ``int`` is MiB, a string a size as the server reads it (``"1G"``).
Size = int | str


def _page(value: Any, what: str) -> list[Any]:
    """The ``results`` of a LAVA-style page (or a bare list)."""
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("results"), list):
        return list(value["results"])
    raise BasaltError(f"the server's {what} list is not a page of results: {value!r:.200}")


class Client:
    """A master's API: ``Client("http://master:8080", "TOKEN")``.

    ``timeout`` is the per-request HTTP timeout (seconds). ``identity_file`` is the private
    key :meth:`Reservation.ssh` uses when reservations are made with one's own
    ``ssh_public_key``. ``session`` lets a caller bring a configured ``requests.Session``
    (proxies, CA bundle).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        identity_file: str | os.PathLike[str] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self._http = Http(url, token, timeout=timeout, session=session)
        self.identity_file = identity_file
        # the clock and sleep of waits (tests drive them)
        self._clock: Callable[[], float] = time.monotonic
        self._sleep: Callable[[float], None] = time.sleep

    @property
    def url(self) -> str:
        """The API's root (``http://master:8080/api/v0.2/``)."""
        return self._http.root

    def version(self) -> str:
        """The master's version (``system/version/``)."""
        body = self._http.json("GET", "system/version/")
        v = body.get("version") if isinstance(body, Mapping) else body
        if not isinstance(v, str):
            raise BasaltError(f"the server's version is not a string: {body!r:.200}")
        return v

    # ---- reservations -------------------------------------------------------------------

    def reserve(
        self,
        device_type: str | None = None,
        *,
        device: str | None = None,
        arch: str | None = None,
        ram: Size | None = None,
        cpus: int | None = None,
        features: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        lease: int | float | timedelta = 900,
        ssh_public_key: str | None = None,
        ssh_user: str | None = None,
        boot: BootRequest | Mapping[str, Any] | None = None,
        description: str | None = None,
        priority: int | str | None = None,
    ) -> Reservation:
        """Asks for a machine: by ``device_type``, by a minimum specification (``arch``,
        ``ram`` (MiB, or a size such as ``"1G"``), ``cpus``, ``features``, ``tags``), or one
        ``device`` by hostname. ``lease``: seconds (or a ``timedelta``) until it expires
        unless renewed. ``boot``: boot at once when given. Returns at once (``queued``):
        :meth:`Reservation.wait` for ``ready``.

        Raises :class:`~basalt_client.errors.Unmet` when no device of the lab can meet the
        specification, naming the requirements in ``.unmet``.
        """
        body: dict[str, Any] = {"lease_secs": lease_seconds(lease)}
        requirements: dict[str, Any] = {}
        if arch is not None:
            requirements["arch"] = arch
        if ram is not None:
            requirements["ram"] = str(ram) if isinstance(ram, int) else ram
        if cpus is not None:
            requirements["cpus"] = cpus
        if features is not None:
            requirements["features"] = list(features)
        if tags is not None:
            requirements["tags"] = list(tags)
        if device_type is not None:
            body["device_type"] = device_type
        if device is not None:
            body["device"] = device
        if requirements:
            body["requirements"] = requirements
        if boot is not None:
            body["boot"] = boot.to_json() if isinstance(boot, BootRequest) else dict(boot)
        for key, value in (
            ("ssh_public_key", ssh_public_key),
            ("ssh_user", ssh_user),
            ("description", description),
            ("priority", priority),
        ):
            if value is not None:
                body[key] = value
        info = ReservationInfo.from_json(self._http.json("POST", "reservations/", json=body))
        return Reservation(self, info)

    def reservation(self, reservation_id: int) -> Reservation:
        """A reservation by id."""
        info = ReservationInfo.from_json(self._http.json("GET", f"reservations/{int(reservation_id)}/"))
        return Reservation(self, info)

    def reservations(
        self, state: ReservationState | str | None = None, *, everyone: bool = False
    ) -> list[Reservation]:
        """The caller's reservations, newest first (``everyone``: all users', for admins);
        only those in ``state`` when given."""
        params: dict[str, str] = {}
        if state is not None:
            params["state"] = str(ReservationState(state))
        if everyone:
            params["all"] = "1"
        body = self._http.json("GET", "reservations/", params=params)
        return [Reservation(self, ReservationInfo.from_json(r)) for r in _page(body, "reservation")]

    # ---- devices ------------------------------------------------------------------------

    def devices(self) -> list[Device]:
        """Every device of the lab."""
        body = self._http.json("GET", "devices/", params={"limit": "1000"})
        return [Device.from_json(d) for d in _page(body, "device")]

    def device(self, hostname: str) -> Device:
        """One device."""
        path = f"devices/{urllib.parse.quote(hostname, safe='')}/"
        return Device.from_json(self._http.json("GET", path))

    # ---- artifacts ----------------------------------------------------------------------

    def upload(self, path: str | os.PathLike[str], name: str | None = None) -> Artifact:
        """Uploads a local file to the master's artifact store, streamed from disk; boot it
        with the returned :class:`Artifact` (or ``artifact:NAME``). ``name`` defaults to the
        file's name."""
        p = Path(path)
        artifact = name if name is not None else p.name
        if not artifact or artifact in (".", "..") or "/" in artifact:
            raise BasaltError(f"upload: {artifact!r} is not an artifact name (no '/')")
        try:
            f = p.open("rb")
        except OSError as e:
            raise BasaltError(f"upload: cannot read {p}: {e}") from e
        with f:
            size = os.fstat(f.fileno()).st_size
            body = self._http.json(
                "PUT",
                f"artifacts/{urllib.parse.quote(artifact, safe='')}",
                data=f,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(size),
                },
                timeout=max(self._http.timeout, 600.0),
            )
        return Artifact.from_json(body)

    def artifacts(self) -> list[Artifact]:
        """The artifacts in the store."""
        body = self._http.json("GET", "artifacts/")
        return [Artifact.from_json(a) for a in _page(body, "artifact")]

    def delete_artifact(self, name: str) -> None:
        """Removes an artifact from the store."""
        self._http.request("DELETE", f"artifacts/{urllib.parse.quote(name, safe='')}")

    # ---- jobs ---------------------------------------------------------------------------

    def submit(self, definition: str) -> list[int]:
        """Submits a LAVA job definition (YAML); the new job ids (several for MultiNode)."""
        body = self._http.json("POST", "jobs/", json={"definition": definition})
        ids = body.get("job_ids") if isinstance(body, Mapping) else None
        if not isinstance(ids, list) or not ids:
            raise BasaltError(f"submit: the server gave no job ids: {body!r:.200}")
        try:
            return [int(i) for i in ids]
        except (TypeError, ValueError):
            raise BasaltError(f"submit: job ids that are not numbers: {ids!r:.200}") from None

    def job(self, job_id: int) -> Job:
        """A job by id."""
        return Job.from_json(self._http.json("GET", f"jobs/{int(job_id)}/"))

    def job_logs(self, job_id: int) -> str:
        """A job's log so far (LAVA's YAML log lines); empty when it has none yet."""
        from .errors import NotFound

        try:
            return self._http.request("GET", f"jobs/{int(job_id)}/logs/").text
        except NotFound:
            self.job(job_id)  # a NotFound of the job itself goes up
            return ""

    def cancel_job(self, job_id: int) -> None:
        """Cancels a job."""
        self._http.request("POST", f"jobs/{int(job_id)}/cancel/")

    def wait_job(
        self,
        job_id: int,
        timeout: float = 3600.0,
        *,
        poll: float = 0.5,
        max_poll: float = 10.0,
    ) -> Job:
        """Polls until the job is Finished (backing off from ``poll`` to ``max_poll``
        seconds); returns it (its ``health`` is the outcome). :class:`WaitTimeout` after
        ``timeout`` seconds."""
        deadline = self._clock() + timeout
        delay = poll
        while True:
            try:
                job = self.job(job_id)
                if job.finished:
                    return job
                state = str(job.state)
            except Unavailable:
                state = "unreachable"
            left = deadline - self._clock()
            if left <= 0:
                raise WaitTimeout(f"job {job_id}: still {state} after {timeout:g} s")
            self._sleep(min(delay, left))
            delay = min(delay * 1.5, max_poll)
