"""Fixtures of the unit tests: a fake master, a client of it whose waits record their sleeps
instead of sleeping (the fake master's scripts drive the states), a fake console."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fakes import FakeConsole, FakeMaster  # noqa: E402

from basalt_client import Client  # noqa: E402


class Clock:
    """A fake monotonic clock that sleeping advances; ``sleeps`` records each sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, secs: float) -> None:
        self.sleeps.append(secs)
        self.now += secs


@pytest.fixture
def master() -> Iterator[FakeMaster]:
    m = FakeMaster()
    try:
        yield m
    finally:
        m.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(master: FakeMaster, clock: Clock) -> Client:
    c = Client(master.url, "secret", timeout=5)
    c._clock = clock.time
    c._sleep = clock.sleep
    return c


@pytest.fixture
def console_server(tmp_path: Path) -> Iterator[FakeConsole]:
    s = FakeConsole(str(tmp_path))
    try:
        yield s
    finally:
        s.close()
