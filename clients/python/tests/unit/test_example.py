"""examples/ci_runtime.py against the fake master and console: the whole user story."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from fakes import FakeConsole, FakeMaster

EXAMPLE = Path(__file__).parents[2] / "examples" / "ci_runtime.py"


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_runtime", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_user_story(master: FakeMaster, console_server: FakeConsole, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    ep = {"host": "127.0.0.1", "port": console_server.port}
    master.connection = {"console": {**ep, "token": "ctok"}, "watch": {**ep, "token": "wtok"}}
    master.boot_script = ["allocated", "booting", "ready"]
    ramdisk = tmp_path / "rootfs.cpio.gz"
    ramdisk.write_bytes(b"\x1f\x8b fake")
    rc = example().main([
        "--url", master.url, "--token", "secret", "--arch", "x86_64", "--ram", "512M",
        "--kernel", "https://images.invalid/bzImage", "--ramdisk", str(ramdisk),
        "--via", "console", "--command", "echo hello from the board", "--copy",
        f"{ramdisk}:copied.bin", "--wait-idle",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "hello from the board" in out
    assert "sha256 matches" in out and (tmp_path / "copied.bin").read_bytes() == ramdisk.read_bytes()
    body = master.calls("POST", "/api/v0.2/reservations/")[0].json()
    assert body["requirements"] == {"arch": "x86_64", "ram": "512M"}
    assert body["boot"]["ramdisk"] == "artifact:rootfs.cpio.gz"
    assert master.artifacts["rootfs.cpio.gz"]["size"] == ramdisk.stat().st_size
    assert all(r.state == "released" for r in master.reservations.values())


def test_a_failing_command_fails_the_script(master: FakeMaster, console_server: FakeConsole,
                                            tmp_path: Path) -> None:  # fmt: skip
    ep = {"host": "127.0.0.1", "port": console_server.port}
    master.connection = {"console": {**ep, "token": "ctok"}}
    rc = example().main(["--url", master.url, "--token", "secret", "--device-type", "qemu",
                         "--kernel", "https://images.invalid/bzImage", "--via", "console",
                         "--command", "false"])  # fmt: skip
    assert rc == 1
    assert all(r.state == "released" for r in master.reservations.values())


def test_arguments_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        example().main(["--url", "http://x", "--token", "t"])
    assert e.value.code == 2
    assert "give something to boot" in capsys.readouterr().err
