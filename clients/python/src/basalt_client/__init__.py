"""basalt_client: the Python client of basalt's board farm.

Reserve a machine by device type or by a minimum specification, boot it with an image, wait
until it is ready, run commands over its console or SSH, copy files, release it::

    from basalt_client import Client

    client = Client("http://master:8080", "TOKEN")
    with client.reserve(arch="arm64", ram="1G", lease=1800) as r:
        r.wait("ready")
        r.boot(kernel="https://.../Image", ramdisk=client.upload("rootfs.cpio.gz"))
        r.wait("ready", timeout=600)
        print(r.run("uname -a").check().output)
    # released here, also when the block raised

See README.md for every call.
"""

from .client import Client
from .console import Console, ExpectMatch
from .errors import (
    BadRequest,
    BasaltError,
    CommandFailed,
    Conflict,
    ConsoleError,
    LeaseExpired,
    NotFound,
    PermissionDenied,
    Released,
    ReservationFailed,
    SSHUnavailable,
    Unavailable,
    Unmet,
    WaitTimeout,
)
from .events import EventStream, events
from .models import (
    Artifact,
    Connection,
    ConsoleEndpoint,
    Device,
    DeviceHealth,
    DeviceState,
    Event,
    ExecResult,
    Job,
    JobHealth,
    JobState,
    ReservationInfo,
    ReservationState,
    SSHEndpoint,
)
from .reservation import BootRequest, KeepAlive, Reservation
from .ssh import SSH

__version__ = "0.1.0"

__all__ = [
    "Artifact",
    "BadRequest",
    "BasaltError",
    "BootRequest",
    "Client",
    "CommandFailed",
    "Conflict",
    "Connection",
    "Console",
    "ConsoleEndpoint",
    "ConsoleError",
    "Device",
    "DeviceHealth",
    "DeviceState",
    "Event",
    "EventStream",
    "ExecResult",
    "ExpectMatch",
    "Job",
    "JobHealth",
    "JobState",
    "KeepAlive",
    "LeaseExpired",
    "NotFound",
    "PermissionDenied",
    "Released",
    "Reservation",
    "ReservationFailed",
    "ReservationInfo",
    "ReservationState",
    "SSH",
    "SSHEndpoint",
    "SSHUnavailable",
    "Unavailable",
    "Unmet",
    "WaitTimeout",
    "events",
]
