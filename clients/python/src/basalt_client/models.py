"""Typed views of the master's JSON answers: states as enums, times as ``datetime``.

Each ``from_json`` checks the shape it is given and raises :class:`BasaltError` naming the
field when the server sent something else, so a bad answer never surfaces as a ``KeyError``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, TypeVar

from .errors import BasaltError, CommandFailed

E = TypeVar("E", bound=enum.Enum)


class ReservationState(enum.StrEnum):
    """A reservation's state (docs/reservations.md, "States")."""

    QUEUED = "queued"
    ALLOCATED = "allocated"
    BOOTING = "booting"
    READY = "ready"
    FAILED = "failed"
    RELEASED = "released"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        """Whether nothing follows this state (``released`` or ``expired``)."""
        return self in (ReservationState.RELEASED, ReservationState.EXPIRED)


class JobState(enum.StrEnum):
    """A job's state, as LAVA names it."""

    SUBMITTED = "Submitted"
    SCHEDULING = "Scheduling"
    SCHEDULED = "Scheduled"
    RUNNING = "Running"
    CANCELING = "Canceling"
    FINISHED = "Finished"


class JobHealth(enum.StrEnum):
    """A job's health (its outcome once Finished), as LAVA names it."""

    UNKNOWN = "Unknown"
    COMPLETE = "Complete"
    INCOMPLETE = "Incomplete"
    CANCELED = "Canceled"


class DeviceState(enum.StrEnum):
    """A device's state, as LAVA names it."""

    IDLE = "Idle"
    RESERVED = "Reserved"
    RUNNING = "Running"


class DeviceHealth(enum.StrEnum):
    """A device's health, as LAVA names it."""

    GOOD = "Good"
    UNKNOWN = "Unknown"
    LOOPING = "Looping"
    BAD = "Bad"
    MAINTENANCE = "Maintenance"
    RETIRED = "Retired"


# ---- field readers ---------------------------------------------------------------------------


def _where(what: str, key: str) -> str:
    return f"the server's {what}: field {key!r}"


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BasaltError(f"the server's {what} is not a JSON object: {value!r:.200}")
    return value


def _str(d: Mapping[str, Any], key: str, what: str) -> str:
    v = d.get(key)
    if not isinstance(v, str):
        raise BasaltError(f"{_where(what, key)} is not a string: {v!r:.200}")
    return v


def _opt_str(d: Mapping[str, Any], key: str, what: str) -> str | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise BasaltError(f"{_where(what, key)} is not a string: {v!r:.200}")
    return v


def _int(d: Mapping[str, Any], key: str, what: str) -> int:
    v = d.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise BasaltError(f"{_where(what, key)} is not an integer: {v!r:.200}")
    return v


def _opt_int(d: Mapping[str, Any], key: str, what: str) -> int | None:
    if d.get(key) is None:
        return None
    return _int(d, key, what)


def _bool(d: Mapping[str, Any], key: str, what: str, default: bool = False) -> bool:
    v = d.get(key, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise BasaltError(f"{_where(what, key)} is not a boolean: {v!r:.200}")
    return v


def _time(d: Mapping[str, Any], key: str, what: str) -> datetime | None:
    v = _opt_str(d, key, what)
    if v is None or v == "":
        return None
    try:
        return datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise BasaltError(f"{_where(what, key)} is not an ISO time: {v!r:.200}") from None


def _enum(cls: type[E], d: Mapping[str, Any], key: str, what: str) -> E:
    v = _str(d, key, what)
    try:
        return cls(v)
    except ValueError:
        raise BasaltError(f"{_where(what, key)}: unknown {cls.__name__} {v!r:.200}") from None


def _str_list(d: Mapping[str, Any], key: str, what: str) -> list[str]:
    v = d.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise BasaltError(f"{_where(what, key)} is not a list of strings: {v!r:.200}")
    return list(v)


# ---- the types ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsoleEndpoint:
    """Where a held board's console is served (telnet), and the token line that opens it."""

    host: str
    port: int
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_json(cls, value: Any) -> ConsoleEndpoint:
        """Reads ``connection.console`` or ``connection.watch``."""
        d = _mapping(value, "console endpoint")
        return cls(
            host=_str(d, "host", "console endpoint"),
            port=_int(d, "port", "console endpoint"),
            token=_opt_str(d, "token", "console endpoint"),
        )


@dataclass(frozen=True)
class SSHEndpoint:
    """Where the booted image's sshd or dropbear is reachable, and as whom.

    ``private_key`` is present only when the master generated the lease's key (and only for
    the holder); it is never shown by ``repr``.
    """

    host: str
    port: int
    user: str = "root"
    private_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_json(cls, value: Any) -> SSHEndpoint:
        """Reads ``connection.ssh``."""
        d = _mapping(value, "ssh endpoint")
        return cls(
            host=_str(d, "host", "ssh endpoint"),
            port=_int(d, "port", "ssh endpoint"),
            user=_opt_str(d, "user", "ssh endpoint") or "root",
            private_key=_opt_str(d, "private_key", "ssh endpoint"),
        )


@dataclass(frozen=True)
class Connection:
    """How to reach a held board: its console (writer), a watcher's console, SSH once the
    booted image runs an SSH server. Each is ``None`` until the worker reports it."""

    console: ConsoleEndpoint | None = None
    watch: ConsoleEndpoint | None = None
    ssh: SSHEndpoint | None = None

    @classmethod
    def from_json(cls, value: Any) -> Connection:
        """Reads a reservation's ``connection`` (``{}`` or ``null`` until the board is held)."""
        if value is None:
            return cls()
        d = _mapping(value, "connection")

        def opt(key: str) -> Any:
            return d.get(key)

        return cls(
            console=ConsoleEndpoint.from_json(opt("console")) if opt("console") else None,
            watch=ConsoleEndpoint.from_json(opt("watch")) if opt("watch") else None,
            ssh=SSHEndpoint.from_json(opt("ssh")) if opt("ssh") else None,
        )


@dataclass(frozen=True)
class ReservationInfo:
    """The reservation object of the REST API, as data (see :class:`Reservation` for the
    handle with methods)."""

    id: int
    job_id: int
    state: ReservationState
    holder: str | None
    device: str | None
    device_type: str | None
    worker: str | None
    requirements: dict[str, Any]
    description: str | None
    created: datetime | None
    expires: datetime | None
    lease_secs: int | None
    booted: bool
    reason: str | None
    connection: Connection

    @classmethod
    def from_json(cls, value: Any) -> ReservationInfo:
        """Reads a reservation object."""
        w = "reservation"
        d = _mapping(value, w)
        req = d.get("requirements") or {}
        if not isinstance(req, dict):
            raise BasaltError(f"{_where(w, 'requirements')} is not an object: {req!r:.200}")
        rid = _int(d, "id", w)
        return cls(
            id=rid,
            job_id=_opt_int(d, "job_id", w) or rid,
            state=_enum(ReservationState, d, "state", w),
            holder=_opt_str(d, "holder", w),
            device=_opt_str(d, "device", w),
            device_type=_opt_str(d, "device_type", w),
            worker=_opt_str(d, "worker", w),
            requirements=dict(req),
            description=_opt_str(d, "description", w),
            created=_time(d, "created", w),
            expires=_time(d, "expires", w),
            lease_secs=_opt_int(d, "lease_secs", w),
            booted=_bool(d, "booted", w),
            reason=_opt_str(d, "reason", w),
            connection=Connection.from_json(d.get("connection")),
        )


@dataclass(frozen=True)
class ExecResult:
    """What a command run on the board gave: its output (stdout and stderr as the console or
    the worker saw them), its exit status, and whether the output was cut short."""

    output: str
    exit_status: int
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """Whether the command exited 0."""
        return self.exit_status == 0

    def check(self) -> ExecResult:
        """Returns ``self`` when the command succeeded; raises :class:`CommandFailed` else."""
        if self.exit_status != 0:
            tail = self.output[-500:]
            raise CommandFailed(f"the command exited {self.exit_status}: {tail}", result=self)
        return self

    @classmethod
    def from_json(cls, value: Any) -> ExecResult:
        """Reads the answer of ``POST reservations/ID/exec/``."""
        d = _mapping(value, "exec result")
        return cls(
            output=_opt_str(d, "output", "exec result") or "",
            exit_status=_int(d, "exit_status", "exec result"),
            truncated=_bool(d, "truncated", "exec result"),
        )


@dataclass(frozen=True)
class Artifact:
    """A file in the master's artifact store: boot it with ``artifact:NAME`` or its ``url``."""

    name: str
    size: int
    sha256: str
    url: str
    expires: datetime | None = None

    @property
    def ref(self) -> str:
        """``artifact:NAME``: how a boot request or a job names it."""
        return f"artifact:{self.name}"

    @classmethod
    def from_json(cls, value: Any) -> Artifact:
        """Reads an artifact object."""
        w = "artifact"
        d = _mapping(value, w)
        return cls(
            name=_str(d, "name", w),
            size=_int(d, "size", w),
            sha256=_str(d, "sha256", w),
            url=_str(d, "url", w),
            expires=_time(d, "expires", w),
        )


@dataclass(frozen=True)
class Device:
    """A device as LAVA's ``devices/`` shows it (``tags`` are LAVA's tag ids)."""

    hostname: str
    device_type: str
    worker_host: str | None
    state: DeviceState
    health: DeviceHealth
    description: str | None = None
    tags: list[int] = field(default_factory=list)
    current_job: int | None = None

    @classmethod
    def from_json(cls, value: Any) -> Device:
        """Reads a device object."""
        w = "device"
        d = _mapping(value, w)
        tags = d.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, int) for t in tags):
            raise BasaltError(f"{_where(w, 'tags')} is not a list of ids: {tags!r:.200}")
        return cls(
            hostname=_str(d, "hostname", w),
            device_type=_str(d, "device_type", w),
            worker_host=_opt_str(d, "worker_host", w),
            state=_enum(DeviceState, d, "state", w),
            health=_enum(DeviceHealth, d, "health", w),
            description=_opt_str(d, "description", w),
            tags=list(tags),
            current_job=_opt_int(d, "current_job", w),
        )


@dataclass(frozen=True)
class Job:
    """A job as LAVA's ``jobs/`` shows it (the fields a CI script reads)."""

    id: int
    state: JobState
    health: JobHealth
    submitter: str | None = None
    description: str | None = None
    requested_device_type: str | None = None
    actual_device: str | None = None
    submit_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    failure_comment: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the job ended (its health is then its outcome)."""
        return self.state is JobState.FINISHED

    @classmethod
    def from_json(cls, value: Any) -> Job:
        """Reads a job object."""
        w = "job"
        d = _mapping(value, w)
        return cls(
            id=_int(d, "id", w),
            state=_enum(JobState, d, "state", w),
            health=_enum(JobHealth, d, "health", w),
            submitter=_opt_str(d, "submitter", w),
            description=_opt_str(d, "description", w),
            requested_device_type=_opt_str(d, "requested_device_type", w),
            actual_device=_opt_str(d, "actual_device", w),
            submit_time=_time(d, "submit_time", w),
            start_time=_time(d, "start_time", w),
            end_time=_time(d, "end_time", w),
            failure_comment=_opt_str(d, "failure_comment", w),
        )


@dataclass(frozen=True)
class Event:
    """One of LAVA's events: the five frames of the publisher, the last decoded from JSON.

    ``topic`` ends in ``.testjob``, ``.device``, ``.worker`` or ``.event``.
    """

    topic: str
    uuid: str
    datetime: str
    username: str
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        """The topic's last part: ``testjob``, ``device``, ``worker`` or ``event``."""
        return self.topic.rsplit(".", 1)[-1]


def str_list(d: Mapping[str, Any], key: str, what: str) -> list[str]:
    """A list of strings at ``key`` (empty when absent); a :class:`BasaltError` otherwise."""
    return _str_list(d, key, what)
