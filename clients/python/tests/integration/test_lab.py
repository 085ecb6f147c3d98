"""The Python client against a running lab (master, worker, a basalt-board board and a QEMU
board): reserve by spec, boot, wait ready, run commands over the console and the REST exec
call, copy a file, release; the device goes back to Idle. The same over SSH when the booted
image has dropbear; the example script end to end."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Lab, wait_idle

from basalt_client import (
    LeaseExpired,
    PermissionDenied,
    ReservationState,
    SSHUnavailable,
    Unmet,
)

EXAMPLE = Path(__file__).parents[2] / "examples" / "ci_runtime.py"


def test_unmet_requirements_are_refused_at_once(lab: Lab) -> None:
    with pytest.raises(Unmet) as e:
        lab.client().reserve(ram="64G")
    assert "ram" in e.value.unmet
    assert "ram" in str(e.value)


def test_a_wrong_token_is_refused(lab: Lab) -> None:
    from basalt_client import Client

    with pytest.raises(PermissionDenied):
        Client(lab.url, "not-a-token").reserve("qemu")


def test_reserve_by_spec_boot_console_run_copy_release(lab: Lab, tmp_path: Path) -> None:
    client = lab.client()
    with client.reserve(arch="x86_64", ram="512M", lease=600, description="python client: qemu") as r:
        r.wait("ready", timeout=120)
        assert r.device is not None and r.connection.console is not None
        device = r.device
        r.boot(kernel=lab.qemu_kernel, ramdisk=lab.qemu_ramdisk, prompts=[lab.prompt], timeout=240)
        assert r.state in (ReservationState.BOOTING, ReservationState.READY)
        r.wait("ready", timeout=300)
        assert r.info.booted
        with r.console() as console:
            assert console.device == device and console.role == "writer"
            result = console.run("echo hello-$((6 * 7)); uname -s", timeout=60)
            assert result.exit_status == 0, result.output
            assert result.output.splitlines()[:2] == ["hello-42", "Linux"]
            assert console.run("false", timeout=30).exit_status == 1
        result = r.run("cat /proc/version", timeout=60)
        assert result.exit_status == 0 and "Linux version" in result.output
        assert r.run("sh -c 'exit 3'", timeout=60).exit_status == 3
        data = os.urandom(3000)
        local = tmp_path / "payload.bin"
        local.write_bytes(data)
        r.copy_to(local, "/tmp/payload.bin")
        check = r.run("sha256sum /tmp/payload.bin", timeout=60)
        assert check.output.split()[0] == hashlib.sha256(data).hexdigest()
        r.renew(600)
        assert r.release(wait=True).state is ReservationState.RELEASED
    wait_idle(client, device)


def test_a_board_by_device_type_with_a_watcher(lab: Lab) -> None:
    if lab.board_kernel is None or lab.board_ramdisk is None or lab.board_dtb is None:
        pytest.skip("no basalt-board images in the environment")
    client = lab.client()
    with client.reserve("basalt-board", lease=600, description="python client: board") as r:
        r.wait("ready", timeout=120)
        device = r.device
        assert device is not None
        with r.console(watch=True) as watcher:
            assert watcher.role == "watcher"
            r.boot(kernel=lab.board_kernel, ramdisk=lab.board_ramdisk, dtb=lab.board_dtb,
                   prompts=[lab.prompt], timeout=240)  # fmt: skip
            watcher.read_until("Starting kernel", timeout=240)
            r.wait("ready", timeout=300)
        result = r.run("echo board-$((2 + 3))", timeout=60)
        assert result.output.strip().splitlines()[-1] == "board-5"
    r.release(wait=True)  # released on leaving the block: wait for the worker's word
    assert r.state is ReservationState.RELEASED
    wait_idle(client, device)


def test_a_lease_that_is_not_renewed_expires(lab: Lab) -> None:
    """No renewal: the lease runs out, the holder's console is closed by the worker, the
    reservation ends ``expired`` and the device is Idle again (the worker powered it off)."""
    client = lab.client()
    r = client.reserve("basalt-board", lease=3, description="python client: expiry")
    try:
        r.wait("ready", timeout=120)
        device = r.device
        assert device is not None
        with r.console() as console:
            assert console.writer
            # nothing renews the lease: the console must be closed by the other end
            deadline = time.monotonic() + 60
            while not console.closed:
                assert time.monotonic() < deadline, "the console is still open 60 s after the lease's end"
                console.read(timeout=1.0)
        with pytest.raises(LeaseExpired):
            r.wait("released", timeout=60)
        assert r.state is ReservationState.EXPIRED
        wait_idle(client, device)
    finally:
        if not r.state.final:
            r.release()


def test_ssh_on_a_qemu_board_with_dropbear(lab: Lab, tmp_path: Path) -> None:
    client = lab.client()
    with client.reserve(arch="x86_64", lease=600, description="python client: ssh") as r:
        r.wait("ready", timeout=120)
        device = r.device
        assert device is not None
        r.boot(kernel=lab.qemu_kernel, ramdisk=lab.ssh_ramdisk, prompts=[lab.prompt], timeout=240)
        r.wait("ready", timeout=300)
        try:
            ssh = r.ssh()
        except SSHUnavailable as e:
            if lab.require_ssh:
                raise
            pytest.skip(f"the lab reports no SSH for this image (BASALT_REQUIRE_SSH unset): {e}")
        with ssh:
            result = ssh.ssh_run("echo over-ssh; uname -s", timeout=60)
            assert result.exit_status == 0, result.output
            assert result.output.split()[:2] == ["over-ssh", "Linux"]
            data = os.urandom(20000)
            local = tmp_path / "blob"
            local.write_bytes(data)
            ssh.scp_to(local, "/tmp/blob")
            got = ssh.ssh_run("sha256sum /tmp/blob").output.split()[0]
            assert got == hashlib.sha256(data).hexdigest()
        r.copy_to(local, "/tmp/blob2")  # scp, since the board has SSH
        assert r.run("cmp /tmp/blob /tmp/blob2 && echo same").output.strip().endswith("same")
        r.release(wait=True)
    wait_idle(client, device)


def test_the_example_script(lab: Lab) -> None:
    env = {**os.environ, "BASALT_URL": lab.url, "BASALT_TOKEN": lab.token}
    p = subprocess.run(
        [sys.executable, str(EXAMPLE), "--arch", "x86_64", "--ram", "512M",
         "--kernel", str(lab.qemu_kernel), "--ramdisk", str(lab.qemu_ramdisk),
         "--local-files", os.environ.get("BASALT_EXAMPLE_LOCAL_FILES", "upload"),
         "--prompt", lab.prompt, "--command", "uname -a", "--command", "echo two",
         "--wait-idle", "--lease", "600"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert p.returncode == 0, f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    assert "sha256 matches" in p.stdout
    assert "is Idle" in p.stdout and "ci_runtime: done" in p.stdout
