"""LAVA's events from the master's publisher (ZeroMQ SUB): each message is five frames —
topic, uuid, datetime, username, JSON data (lava-formats §5). Needs the ``events`` extra
(``pip install basalt-client[events]``, i.e. pyzmq)."""

from __future__ import annotations

import json
import logging
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


def events(url: str, *, topic: str = "", timeout: float | None = None) -> Iterator[Event]:
    """The events published at ``url`` (``tcp://master:5500``) from now on, those whose topic
    starts with ``topic`` (all by default). ``timeout``: the longest wait for one event, in
    seconds (:class:`WaitTimeout` then; ``None`` waits for ever). Malformed messages are
    logged and skipped. The socket closes when the iterator is closed or collected."""
    try:
        import zmq
    except ImportError as e:
        raise BasaltError(
            "events need pyzmq: pip install 'basalt-client[events]'"
        ) from e
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.SUB)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt_string(zmq.SUBSCRIBE, topic)
        try:
            sock.connect(url)
        except zmq.ZMQError as e:
            raise BasaltError(f"events: cannot connect to {url}: {e}") from e
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        while True:
            ready = dict(poller.poll(None if timeout is None else int(timeout * 1000)))
            if sock not in ready:
                raise WaitTimeout(f"events: nothing from {url} within {timeout:g} s")
            frames = sock.recv_multipart()
            try:
                event = parse(frames)
            except BasaltError as e:
                log.warning("events from %s: skipped: %s", url, e)
                continue
            yield event
    finally:
        sock.close()
