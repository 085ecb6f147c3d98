"""The integration tests' view of a running lab, from the environment that
tests/python_client.rs (or a person) sets:

- ``BASALT_URL``, ``BASALT_TOKEN``: the master and a (non-admin) user's token;
- ``BASALT_QEMU_KERNEL``, ``BASALT_QEMU_RAMDISK``: what boots the lab's QEMU device
  (x86_64, 512 MiB); ``BASALT_PROMPT``: its shell's prompt;
- ``BASALT_BOARD_KERNEL``, ``BASALT_BOARD_RAMDISK``, ``BASALT_BOARD_DTB``: what boots its
  ``basalt-board`` device;
- ``BASALT_SSH_RAMDISK``: an initramfs with dropbear for the SSH test (default the QEMU one);
- ``BASALT_REQUIRE_SSH=1``: the SSH test fails instead of skipping when the lab reports no SSH.

Without ``BASALT_URL`` every test here is skipped (there is no lab to talk to).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from basalt_client import Client, DeviceState


@dataclass(frozen=True)
class Lab:
    url: str
    token: str
    qemu_kernel: Path
    qemu_ramdisk: Path
    prompt: str
    board_kernel: Path | None
    board_ramdisk: Path | None
    board_dtb: Path | None
    ssh_ramdisk: Path
    require_ssh: bool

    def client(self) -> Client:
        return Client(self.url, self.token, timeout=60)


def _path(name: str) -> Path | None:
    v = os.environ.get(name)
    return Path(v) if v else None


@pytest.fixture(scope="session")
def lab() -> Lab:
    url = os.environ.get("BASALT_URL")
    token = os.environ.get("BASALT_TOKEN")
    if not url or not token:
        pytest.skip("no lab: BASALT_URL and BASALT_TOKEN are not set (tests/python_client.rs sets them)")
    kernel, ramdisk = _path("BASALT_QEMU_KERNEL"), _path("BASALT_QEMU_RAMDISK")
    if kernel is None or ramdisk is None:
        pytest.fail("BASALT_QEMU_KERNEL and BASALT_QEMU_RAMDISK must name the QEMU device's images")
    return Lab(
        url=url,
        token=token,
        qemu_kernel=kernel,
        qemu_ramdisk=ramdisk,
        prompt=os.environ.get("BASALT_PROMPT", "/ # "),
        board_kernel=_path("BASALT_BOARD_KERNEL"),
        board_ramdisk=_path("BASALT_BOARD_RAMDISK"),
        board_dtb=_path("BASALT_BOARD_DTB"),
        ssh_ramdisk=_path("BASALT_SSH_RAMDISK") or ramdisk,
        require_ssh=os.environ.get("BASALT_REQUIRE_SSH") == "1",
    )


def wait_idle(client: Client, hostname: str, timeout: float = 120.0) -> None:
    """Waits (polling the devices API) until ``hostname`` is Idle again."""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = client.device(hostname).state
        if state is DeviceState.IDLE:
            return
        time.sleep(0.25)
    raise AssertionError(f"{hostname} is still {state} {timeout:g} s after the release")
