"""events(): LAVA's five frames from a ZeroMQ publisher on 127.0.0.1."""

from __future__ import annotations

import json
import time
from typing import Iterator

import pytest

zmq = pytest.importorskip("zmq")

from basalt_client import BasaltError, WaitTimeout, events  # noqa: E402
from basalt_client.events import parse  # noqa: E402


@pytest.fixture
def pub() -> Iterator[tuple[object, str]]:
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.PUB)
    s.setsockopt(zmq.LINGER, 0)
    port = s.bind_to_random_port("tcp://127.0.0.1")
    try:
        yield s, f"tcp://127.0.0.1:{port}"
    finally:
        s.close()


def frames(topic: str, data: object) -> list[bytes]:
    return [topic.encode(), b"2d8c3a2e-1", b"2026-12-02T10:00:00.000000+00:00", b"lavaserver",
            json.dumps(data).encode()]  # fmt: skip


def test_events_are_read_and_bad_ones_skipped(pub: tuple[object, str]) -> None:
    sock, url = pub
    with events(url, topic="org.lavasoftware", timeout=5) as stream:
        # the subscription takes a moment to reach the publisher: publish until one arrives
        got = None
        deadline = time.monotonic() + 5
        while got is None:
            assert time.monotonic() < deadline, "no event"
            sock.send_multipart([b"org.lavasoftware.worker", b"bad"])  # type: ignore[attr-defined]
            sock.send_multipart(frames("other.topic", {}))  # type: ignore[attr-defined]
            sock.send_multipart(frames("org.lavasoftware.device", {"device": "qemu-01"}))  # type: ignore[attr-defined]
            got = stream.poll(0.05)
        assert (got.kind, got.username, got.data["device"]) == ("device", "lavaserver", "qemu-01")
        sock.send_multipart(frames("org.lavasoftware.testjob", {"job": 4}))  # type: ignore[attr-defined]
        kinds = {got.kind}
        while "testjob" not in kinds:
            kinds.add(next(stream).kind)
        assert kinds <= {"device", "testjob"}


def test_no_event_in_time() -> None:
    with events("tcp://127.0.0.1:1", timeout=0.1) as stream:
        with pytest.raises(WaitTimeout, match="nothing from"):
            next(stream)
        with pytest.raises(WaitTimeout):
            next(stream)  # still usable after a timeout
        assert stream.poll(0) is None


def test_parse_refuses_what_is_not_lava() -> None:
    with pytest.raises(BasaltError, match="2 frames"):
        parse([b"a", b"b"])
    with pytest.raises(BasaltError, match="not UTF-8 JSON"):
        parse([b"t", b"u", b"d", b"n", b"{"])
    with pytest.raises(BasaltError, match="not a JSON object"):
        parse([b"t", b"u", b"d", b"n", b"[1]"])
