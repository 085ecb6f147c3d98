"""LAVA's events from the master's publisher (ZeroMQ SUB): each message is five frames —
topic, uuid, datetime, username, JSON data (lava-formats §5). Needs the ``events`` extra
(``pip install basalt-client[events]``, i.e. pyzmq)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Iterator

from .errors import BasaltError, WaitTimeout
from .models import Event

log = logging.getLogger("basalt_client")

#: The topic prefix LAVA and basalt publish under.
TOPIC = "org.lavasoftware"


def parse(frames: list[bytes]) -> Event:
    """One event from its frames; :class:`BasaltError` when they are not LAVA's five."""
    if len(frames) != 5:
        raise BasaltError(f"an event of {len(frames)} frames, not 5")
    try:
        topic, uuid, dt, user, raw = (f.decode("utf-8") for f in frames)
        data: Any = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise BasaltError(f"an event that is not UTF-8 JSON: {e}") from e
    if not isinstance(data, dict):
        raise BasaltError(f"an event whose data is not a JSON object: {raw[:200]!r}")
    return Event(topic=topic, uuid=uuid, datetime=dt, username=user, data=data)


class EventStream:
    """The events published at one URL from the moment it connected: iterate over it (each
    ``next`` waits at most the stream's ``timeout``, then raises :class:`WaitTimeout`; the
    stream stays usable), or :meth:`poll` with a timeout of one's own. Malformed messages are
    logged and skipped. Close it (or use it as a context manager) to close the socket."""

    def __init__(self, url: str, *, topic: str = "", timeout: float | None = None) -> None:
        try:
            import zmq
        except ImportError as e:
            raise BasaltError("events need pyzmq: pip install 'basalt-client[events]'") from e
        self.url = url
        self.timeout = timeout
        self._zmq = zmq
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._sock = ctx.socket(zmq.SUB)
        try:
            self._sock.setsockopt(zmq.LINGER, 0)
            self._sock.setsockopt_string(zmq.SUBSCRIBE, topic)
            self._sock.connect(url)
        except zmq.ZMQError as e:
            self._sock.close()
            raise BasaltError(f"events: cannot connect to {url}: {e}") from e

    def poll(self, timeout: float | None = None) -> Event | None:
        """The next event, or ``None`` when none came within ``timeout`` seconds (``None``:
        wait for ever)."""
        zmq = self._zmq
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not self._sock.poll(wait, zmq.POLLIN):
                return None
            frames = self._sock.recv_multipart()
            try:
                return parse(frames)
            except BasaltError as e:
                log.warning("events from %s: skipped: %s", self.url, e)

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        event = self.poll(self.timeout)
        if event is None:
            raise WaitTimeout(f"events: nothing from {self.url} within {self.timeout:g} s")
        return event

    def close(self) -> None:
        """Closes the socket (idempotent)."""
        self._sock.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def events(url: str, *, topic: str = "", timeout: float | None = None) -> EventStream:
    """The events published at ``url`` (``tcp://master:5500``) from now on, those whose topic
    starts with ``topic`` (all by default); ``timeout``: the longest wait for one event when
    iterating (:class:`WaitTimeout` then; ``None`` waits for ever)."""
    return EventStream(url, topic=topic, timeout=timeout)
