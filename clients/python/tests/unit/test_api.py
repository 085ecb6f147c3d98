"""Devices, artifacts, jobs and the version against the fake master."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from conftest import Clock
from fakes import FakeMaster

from basalt_client import (
    BadRequest,
    BasaltError,
    Client,
    DeviceHealth,
    DeviceState,
    JobHealth,
    JobState,
    NotFound,
    WaitTimeout,
)


def test_the_url_may_name_the_api(master: FakeMaster) -> None:
    assert Client(master.url + "/api/v0.2/").version() == "2026.01"
    assert Client(master.url).url == master.url + "/api/v0.2/"
    with pytest.raises(BasaltError, match="http:// or https://"):
        Client("master:8080")


def test_devices(client: Client) -> None:
    (d,) = client.devices()
    assert (d.hostname, d.state, d.health, d.tags) == ("qemu-01", DeviceState.IDLE, DeviceHealth.GOOD, [7])
    assert client.device("qemu-01") == d
    with pytest.raises(NotFound, match="no device nope"):
        client.device("nope")


def test_upload_streams_the_file(client: Client, master: FakeMaster, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    f = tmp_path / "rootfs.cpio.gz"
    f.write_bytes(data)
    a = client.upload(f)
    assert (a.name, a.size, a.sha256) == ("rootfs.cpio.gz", len(data), hashlib.sha256(data).hexdigest())
    assert a.ref == "artifact:rootfs.cpio.gz"
    (put,) = master.calls("PUT", "/api/v0.2/artifacts/rootfs.cpio.gz")
    assert put.body == data and put.headers["Content-Type"] == "application/octet-stream"
    assert client.upload(f, name="other name").name == "other name"
    assert master.calls("PUT", "/api/v0.2/artifacts/other%20name")
    assert sorted(x.name for x in client.artifacts()) == ["other name", "rootfs.cpio.gz"]
    client.delete_artifact("other name")
    assert [x.name for x in client.artifacts()] == ["rootfs.cpio.gz"]
    with pytest.raises(NotFound):
        client.delete_artifact("other name")


def test_upload_refuses_bad_names_and_missing_files(client: Client, tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_text("x")
    for bad in ("../etc/passwd", "a/b", "..", ""):
        with pytest.raises(BasaltError, match="not an artifact name"):
            client.upload(f, name=bad)
    with pytest.raises(BasaltError, match="cannot read"):
        client.upload(tmp_path / "missing")


def test_submit_show_wait_logs_cancel(client: Client, master: FakeMaster, clock: Clock) -> None:
    (jid,) = client.submit("job_name: hello\n")
    job = client.job(jid)
    assert (job.id, job.state, job.finished) == (jid, JobState.SUBMITTED, False)
    done = client.wait_job(jid, poll=1, max_poll=1)
    assert (done.state, done.health, done.actual_device) == (JobState.FINISHED, JobHealth.COMPLETE, "qemu-01")
    assert clock.sleeps == [1]
    assert '"msg": "hello"' in client.job_logs(jid)
    client.cancel_job(jid)
    with pytest.raises(BadRequest, match="job_name is required"):
        client.submit("actions: []\n")
    with pytest.raises(NotFound):
        client.job(12345)


def test_wait_job_times_out(client: Client, master: FakeMaster) -> None:
    (jid,) = client.submit("job_name: stuck\n")
    master.jobs[jid] = ["Running"]
    with pytest.raises(WaitTimeout, match="still Running after 30 s"):
        client.wait_job(jid, timeout=30)
