"""The console protocol against a fake worker console whose board is a real ``sh``: the
token line, the greeting, telnet negotiation refused, expect, one writer, watchers, a shell
run with markers, copies in base64 chunks."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from fakes import FakeConsole, FakeMaster

from basalt_client import (
    Client,
    Console,
    ConsoleError,
    PermissionDenied,
    WaitTimeout,
)
from basalt_client import shell


def connect(s: FakeConsole, token: str = "ctok") -> Console:
    return Console("127.0.0.1", s.port, token, timeout=5)


def test_greeting_ring_buffer_and_telnet_refusals(console_server: FakeConsole) -> None:
    with connect(console_server) as c:
        assert (c.device, c.role, c.writer) == ("qemu-01", "writer", True)
        text = c.read_until("/ # ")
        assert text.startswith("U-Boot 2023.01\r\nStarting kernel ...\r\n")
        assert "\ufffdLinux version 6.1" in text  # IAC IAC is one 0xff byte (not UTF-8)
        # DO ECHO refused with WONT ECHO, WILL SGA with DONT SGA
        c.run("true")
        assert bytes([255, 252, 1]) in console_server.replies
        assert bytes([255, 254, 3]) in console_server.replies
        assert "U-Boot" in c.transcript


def test_a_wrong_token_and_a_second_writer_are_refused(console_server: FakeConsole) -> None:
    with pytest.raises(PermissionDenied, match="basalt: wrong token"):
        connect(console_server, "nope")
    with connect(console_server):
        with pytest.raises(ConsoleError, match="refused: the console already has a writer"):
            connect(console_server)
        with connect(console_server, "wtok") as w:
            assert w.role == "watcher"
            with pytest.raises(ConsoleError, match="read-only"):
                w.sendline("reboot")


def test_a_watcher_sees_the_writers_commands(console_server: FakeConsole) -> None:
    with connect(console_server) as c, connect(console_server, "wtok") as w:
        w.clear()
        c.sendline("echo from-the-writer")
        assert "from-the-writer" in w.read_until(re.compile(r"from-the-writer\r\n.*from-the-writer", re.S))


def test_expect_returns_the_earliest_match(console_server: FakeConsole) -> None:
    with connect(console_server) as c:
        m = c.expect(["Linux version", re.compile(r"Starting (\w+)"), "U-Boot"])
        assert m.index == 2 and m.before == ""
        m = c.expect(["Linux version", re.compile(r"Starting (\w+)")])
        assert m.index == 1 and m.match.group(1) == "kernel"
        with pytest.raises(WaitTimeout, match="within 0.2 s"):
            c.expect(["never printed"], timeout=0.2)


def test_run_reads_output_and_exit_status(console_server: FakeConsole) -> None:
    with connect(console_server) as c:
        r = c.run("echo one; echo two >&2; printf 'no newline'")
        assert (r.output, r.exit_status) == ("one\ntwo\nno newline", 0)
        assert c.run("exit_code() { return $1; }; exit_code 7").exit_status == 7
        assert c.run("cat <<'EOF'\nline 1\n  line 2\nEOF").output == "line 1\n  line 2\n"
        r = c.run("echo 'BASALT-START'; false")
        assert (r.output, r.exit_status) == ("BASALT-START\n", 1)


def test_copy_to_and_from_over_the_console(console_server: FakeConsole, tmp_path: Path) -> None:
    data = os.urandom(5000) + b"\xff" * 100
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    with connect(console_server) as c:
        sha = shell.copy_to(c, src, "blob copy.bin", chunk=1000)
        assert sha == hashlib.sha256(data).hexdigest()
        assert (tmp_path / "blob copy.bin").read_bytes() == data
        assert not (tmp_path / "blob copy.bin.basalt-b64").exists()
        back = tmp_path / "back.bin"
        shell.copy_from(c, "blob copy.bin", back)
        assert back.read_bytes() == data


def test_a_console_closed_by_the_worker(console_server: FakeConsole) -> None:
    with connect(console_server) as c:
        c.read_until("/ # ")
        console_server.hang_up()
        with pytest.raises(ConsoleError, match="closed while waiting"):
            c.read_until("anything", timeout=5)
        assert c.closed


def test_no_console_server(tmp_path: Path) -> None:
    import socket

    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ConsoleError, match="cannot connect"):
        Console("127.0.0.1", port, "t", timeout=2)


def test_the_reservation_opens_its_console_and_copies_through_it(
    master: FakeMaster, client: Client, console_server: FakeConsole, tmp_path: Path
) -> None:
    ep = {"host": "127.0.0.1", "port": console_server.port}
    r = master.add("ready", booted=True)
    r.connection = {"console": {**ep, "token": "ctok"}, "watch": {**ep, "token": "wtok"}}
    res = client.reservation(r.id)
    with res.console() as c:
        assert c.run("echo $((6 * 7))").output == "42\n"
    with res.console(watch=True) as w:
        assert w.role == "watcher"
    src = tmp_path / "local.txt"
    src.write_text("hello board\n")
    res.copy_to(src, "remote.txt")
    assert (tmp_path / "remote.txt").read_text() == "hello board\n"
    res.copy_from("remote.txt", tmp_path / "again.txt")
    assert (tmp_path / "again.txt").read_text() == "hello board\n"
    bob = Client(master.url, "other").reservation(r.id)
    from basalt_client import BasaltError

    with pytest.raises(BasaltError, match="only the holder"):
        bob.console()
