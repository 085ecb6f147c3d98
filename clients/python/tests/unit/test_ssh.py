"""SSH through the system's client: the temporary key and known_hosts, the command lines,
scp with a fallback to cat — with stand-in ``ssh``/``scp`` programs on PATH that run the
command here and record their arguments."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from fakes import FakeMaster

from basalt_client import SSH, BasaltError, Client, SSHEndpoint, SSHUnavailable

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret-key-material\n-----END OPENSSH PRIVATE KEY-----"

# ssh: records argv, runs the last argument (the remote command) with sh here
FAKE_SSH = f"""#!{sys.executable}
import json, os, subprocess, sys
with open(os.environ["FAKE_SSH_LOG"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
if os.environ.get("FAKE_SSH_DOWN"):
    print("ssh: connect to host 127.0.0.1 port 2222: Connection refused", file=sys.stderr)
    sys.exit(255)
sys.exit(subprocess.run(["sh", "-c", sys.argv[-1]]).returncode)
"""

# scp: records argv, copies SRC to DEST with "user@host:" removed; fails when asked to
FAKE_SCP = f"""#!{sys.executable}
import json, os, shutil, sys
with open(os.environ["FAKE_SSH_LOG"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
if os.environ.get("FAKE_SCP_FAIL"):
    print("sh: scp: not found", file=sys.stderr)
    sys.exit(1)
src, dst = (a.split(":", 1)[1] if "@" in a else a for a in sys.argv[-2:])
shutil.copyfile(src, dst)
"""


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    b = tmp_path / "bin"
    b.mkdir()
    for name, text in (("ssh", FAKE_SSH), ("scp", FAKE_SCP)):
        (b / name).write_text(text)
        (b / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{b}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SSH_LOG", str(tmp_path / "log"))
    return tmp_path / "log"


def argvs(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_the_key_is_private_and_removed(fake_bin: Path) -> None:
    s = SSH(SSHEndpoint("127.0.0.1", 2222, "root", KEY))
    assert s.key_file is not None
    assert stat.S_IMODE(s.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(s.key_file.parent.stat().st_mode) == 0o700
    assert s.key_file.read_text() == KEY + "\n"
    assert "secret" not in repr(SSHEndpoint("h", 1, "root", KEY))
    args = s.ssh_args("uname -a")
    assert args[0] == "ssh" and args[-2:] == ["root@127.0.0.1", "uname -a"]
    joined = " ".join(args)
    assert "-o StrictHostKeyChecking=no" in joined
    assert f"-o UserKnownHostsFile={s.known_hosts}" in joined
    assert f"-i {s.key_file}" in joined and "-p 2222" in joined
    d = s.key_file.parent
    s.close()
    assert not d.exists()
    s.close()


def test_ssh_run_and_its_failures(fake_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with SSH(SSHEndpoint("127.0.0.1", 2222, "root", KEY)) as s:
        r = s.ssh_run("echo out; echo err >&2; exit 3")
        assert (r.output, r.exit_status) == ("out\nerr\n", 3)
        assert s.ssh_run("cat", input=b"piped").output == "piped"
        monkeypatch.setenv("FAKE_SSH_DOWN", "1")
        with pytest.raises(BasaltError, match="Connection refused"):
            s.ssh_run("true")


def test_scp_to_and_the_cat_fallback(fake_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"\x00\x01payload")
    with SSH(SSHEndpoint("127.0.0.1", 2222, "root", None), identity_file=tmp_path / "my_key") as s:
        s.scp_to(src, str(tmp_path / "a.bin"))
        assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01payload"
        scp = argvs(fake_bin)[-1]
        assert scp[:3] == ["scp", "-O", "-q"] and "-P" in scp and f"-i" in scp
        assert scp[-1] == f"root@127.0.0.1:{tmp_path / 'a.bin'}"
        monkeypatch.setenv("FAKE_SCP_FAIL", "1")
        s.scp_to(src, str(tmp_path / "b c.bin"))
        assert (tmp_path / "b c.bin").read_bytes() == b"\x00\x01payload"
        assert argvs(fake_bin)[-1][-1] == f"cat > '{tmp_path / 'b c.bin'}'"
        s.scp_from(str(tmp_path / "b c.bin"), tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == b"\x00\x01payload"
        with pytest.raises(BasaltError, match="not a file"):
            s.scp_to(tmp_path / "missing", "x")


def test_no_ssh_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SSHUnavailable, match="no ssh client"):
        SSH(SSHEndpoint("h", 22))


def test_the_reservation_uses_ssh_when_it_has_it(
    fake_bin: Path, master: FakeMaster, client: Client, tmp_path: Path
) -> None:
    r = master.add("ready", booted=True)
    res = client.reservation(r.id)
    with pytest.raises(SSHUnavailable, match="no SSH"):
        res.ssh()
    r.connection = {"ssh": {"host": "127.0.0.1", "port": 2222, "user": "root", "private_key": KEY}}
    with res.ssh() as s:
        assert s.ssh_run("echo $((1 + 1))").output == "2\n"
        assert s.key_file is not None and s.key_file.read_text().startswith("-----BEGIN")
    src = tmp_path / "f"
    src.write_text("via scp")
    res.copy_to(src, str(tmp_path / "g"))
    assert (tmp_path / "g").read_text() == "via scp"
    assert argvs(fake_bin)[-1][0] == "scp"
