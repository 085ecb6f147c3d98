"""Reservations against the fake master: every call, its body, its errors, waits."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from conftest import Clock
from fakes import FakeMaster

from basalt_client import (
    Artifact,
    BadRequest,
    BootRequest,
    Client,
    Conflict,
    LeaseExpired,
    NotFound,
    PermissionDenied,
    Released,
    ReservationFailed,
    ReservationState,
    Unavailable,
    Unmet,
    WaitTimeout,
)


def test_reserve_by_spec_sends_requirements_and_the_token(client: Client, master: FakeMaster) -> None:
    r = client.reserve(arch="arm64", ram=1024, cpus=2, features=["neon"], tags=["usb"],
                       lease=timedelta(minutes=30), description="ci 1234")  # fmt: skip
    assert r.state is ReservationState.QUEUED
    assert r.id == 41 and r.info.job_id == 41
    (call,) = master.calls("POST", "/api/v0.2/reservations/")
    assert call.headers["Authorization"] == "Token secret"
    assert call.json() == {
        "lease_secs": 1800,
        "requirements": {"arch": "arm64", "ram": "1024", "cpus": 2, "features": ["neon"],
                         "tags": ["usb"]},
        "description": "ci 1234",
    }  # fmt: skip


def test_reserve_by_device_type_with_a_boot(client: Client, master: FakeMaster) -> None:
    art = Artifact("rootfs.cpio.gz", 10, "ab" * 32, "http://m/artifacts/rootfs.cpio.gz")
    client.reserve("qemu", ssh_public_key="ssh-ed25519 AAAA me", lease=60,
                   boot=BootRequest(kernel="https://x/bzImage", ramdisk=art, prompts=["/ # "]))  # fmt: skip
    body = master.calls("POST", "/api/v0.2/reservations/")[0].json()
    assert body["device_type"] == "qemu"
    assert body["ssh_public_key"] == "ssh-ed25519 AAAA me"
    assert body["boot"] == {"kernel": "https://x/bzImage", "ramdisk": "artifact:rootfs.cpio.gz",
                            "prompts": ["/ # "]}  # fmt: skip


def test_unmet_requirements_name_them_and_keep_the_message(client: Client) -> None:
    with pytest.raises(Unmet) as e:
        client.reserve(ram="64G")
    assert e.value.unmet == ["ram"]
    assert e.value.status == 400
    assert "no device meets ram >= 64G: the largest is 2G (qemu-02)" in str(e.value)
    assert isinstance(e.value, BadRequest)


def test_an_unknown_requirement_is_a_bad_request(client: Client) -> None:
    with pytest.raises(BadRequest, match="unknown key ssh_keys"):
        client._http.json("POST", "reservations/", json={"ssh_keys": "x"})


def test_no_token_wrong_holder_and_unknown_ids(master: FakeMaster, client: Client) -> None:
    r = master.add("ready")
    with pytest.raises(PermissionDenied, match="401 a token is needed"):
        Client(master.url).reservation(r.id)
    bob = Client(master.url, "other")
    assert bob.reservation(r.id).connection.console is None  # shown, without the tokens
    with pytest.raises(PermissionDenied, match="alice's"):
        bob.reservation(r.id).release()
    with pytest.raises(NotFound, match="no reservation 999"):
        client.reservation(999)


def test_unreachable_master_and_503(master: FakeMaster, client: Client) -> None:
    master.fail.append((503, {"error": "the worker rack-1 is not connected"}))
    with pytest.raises(Unavailable, match="503 the worker rack-1 is not connected"):
        client.reservations()
    dead = Client("http://127.0.0.1:1", "secret", timeout=2)
    with pytest.raises(Unavailable, match="cannot reach the master"):
        dead.reservations()


def test_a_malformed_answer_is_a_basalt_error(master: FakeMaster, client: Client) -> None:
    from basalt_client import BasaltError

    master.fail.append((200, {"id": "x", "state": "ready"}))
    with pytest.raises(BasaltError, match="field 'id' is not an integer"):
        client.reservation(1)
    master.fail.append((200, {"id": 1, "state": "sleeping"}))
    with pytest.raises(BasaltError, match="unknown ReservationState 'sleeping'"):
        client.reservation(1)
    master.fail.append((200, [1, 2]))
    with pytest.raises(BasaltError, match="not a JSON object"):
        client.reservation(1)


def test_list_and_show(master: FakeMaster, client: Client) -> None:
    a, b = master.add("ready"), master.add("queued")
    assert [r.id for r in client.reservations()] == [b.id, a.id]
    shown = client.reservation(a.id)
    assert shown.state is ReservationState.READY and shown.device == "qemu-01"
    assert shown.info.created is not None and shown.info.created.year == 2026
    client.reservations("ready", everyone=True)
    assert master.requests[-1].path == "/api/v0.2/reservations/?state=ready&all=1"


def test_wait_follows_the_states_with_backoff(master: FakeMaster, client: Client, clock: Clock) -> None:
    r = master.add("queued", script=["queued", "queued", "allocated", "booting", "booting", "ready"])
    res = client.reservation(r.id).wait("ready", timeout=60, poll=0.2, max_poll=0.5)
    assert res.state is ReservationState.READY
    assert clock.sleeps == pytest.approx([0.2, 0.3, 0.45, 0.5])


def test_wait_raises_the_reason_of_a_failure(master: FakeMaster, client: Client) -> None:
    r = master.add("booting", script=["booting", "failed"], reason="kernel panic: VFS")
    with pytest.raises(ReservationFailed, match="kernel panic: VFS") as e:
        client.reservation(r.id).wait()
    assert e.value.reason == "kernel panic: VFS"


def test_wait_raises_on_expiry_and_release(master: FakeMaster, client: Client) -> None:
    r = master.add("queued", script=["expired"])
    with pytest.raises(LeaseExpired):
        client.reservation(r.id).wait()
    r = master.add("queued", script=["released"])
    with pytest.raises(Released):
        client.reservation(r.id).wait()


def test_wait_times_out_by_the_clock(master: FakeMaster, client: Client, clock: Clock) -> None:
    r = master.add("queued")
    with pytest.raises(WaitTimeout, match="still queued after 10 s"):
        client.reservation(r.id).wait(timeout=10, max_poll=2)
    assert sum(clock.sleeps) == pytest.approx(10)


def test_wait_rides_out_a_503(master: FakeMaster, client: Client) -> None:
    r = master.add("queued", script=["ready"])
    res = client.reservation(r.id)
    master.fail.append((503, {"error": "worker offline"}))
    assert res.wait().state is ReservationState.READY


def test_boot_then_wait_ready(master: FakeMaster, client: Client) -> None:
    r = master.add("ready")
    res = client.reservation(r.id)
    res.boot(kernel="https://x/Image", ramdisk="artifact:r.cpio.gz", dtb="https://x/b.dtb",
             kernel_type="image", timeout=300)  # fmt: skip
    assert res.state is ReservationState.BOOTING
    body = master.calls("POST", rf"/api/v0.2/reservations/{r.id}/boot/")[0].json()
    assert body == {"kernel": "https://x/Image", "ramdisk": "artifact:r.cpio.gz",
                    "dtb": "https://x/b.dtb", "kernel_type": "image", "timeout_secs": 300}  # fmt: skip
    assert res.wait().info.booted


def test_boot_with_lava_actions(master: FakeMaster, client: Client) -> None:
    res = client.reservation(master.add("ready").id)
    actions = [{"deploy": {"to": "tmpfs"}}, {"boot": {"method": "qemu"}}]
    res.boot(actions=actions)
    assert master.requests[-1].json() == {"actions": actions}
    from basalt_client import BasaltError

    with pytest.raises(BasaltError, match="needs images"):
        res.boot()


def test_renew_and_an_expired_lease(master: FakeMaster, client: Client) -> None:
    r = master.add("ready")
    res = client.reservation(r.id)
    res.renew(600)
    assert master.requests[-1].json() == {"lease_secs": 600} and r.renewals == 1
    res.renew()
    assert master.requests[-1].json() == {}
    r.state = "expired"
    with pytest.raises(LeaseExpired, match="409 reservation .* is expired"):
        res.renew()
    assert res.state is ReservationState.EXPIRED


def test_keep_alive_renews_until_the_block_ends(master: FakeMaster, client: Client) -> None:
    r = master.add("ready")
    res = client.reservation(r.id)
    with res.keep_alive(interval=0.02) as ka:
        deadline = time.monotonic() + 5
        while r.renewals < 3:
            assert time.monotonic() < deadline, "no renewals"
            threading.Event().wait(0.01)
    n = r.renewals
    assert ka.renewals >= 3 and ka.error is None
    assert not ka._thread.is_alive() and r.renewals == n


def test_keep_alive_reports_an_expired_lease(master: FakeMaster, client: Client) -> None:
    r = master.add("ready")
    res = client.reservation(r.id)
    r.state = "expired"
    with pytest.raises(LeaseExpired):
        with res.keep_alive(interval=0.01) as ka:
            ka._thread.join(5)
            assert not ka._thread.is_alive()


def test_run_through_the_rest_exec(master: FakeMaster, client: Client) -> None:
    r = master.add("ready", booted=True)
    master.exec_handler = lambda c: {"output": "Linux\n", "exit_status": 3, "truncated": True}
    out = client.reservation(r.id).run("uname", timeout=20)
    assert (out.output, out.exit_status, out.truncated, out.ok) == ("Linux\n", 3, True, False)
    assert master.requests[-1].json() == {"command": "uname", "timeout_secs": 20}
    from basalt_client import CommandFailed

    with pytest.raises(CommandFailed, match="exited 3"):
        out.check()


def test_run_before_a_boot_is_a_conflict(master: FakeMaster, client: Client) -> None:
    r = master.add("ready")
    with pytest.raises(Conflict, match="nothing booted") as e:
        client.reservation(r.id).run("true")
    assert not isinstance(e.value, LeaseExpired)


def test_power_off_and_release_are_idempotent(master: FakeMaster, client: Client) -> None:
    r = master.add("ready", booted=True)
    res = client.reservation(r.id)
    assert not res.power_off().info.booted
    assert res.release().state is ReservationState.RELEASED
    n = len(master.requests)
    res.release()
    assert len(master.requests) == n  # nothing to do
    r2 = master.add("ready", script=["expired"])
    res2 = client.reservation(r2.id)
    r2.state = "expired"
    assert res2.release().state is ReservationState.EXPIRED


def test_release_waits_for_the_worker(master: FakeMaster, client: Client) -> None:
    r = master.add("ready")
    res = client.reservation(r.id)
    master.fail.append((200, {**r.json("alice"), "state": "ready"}))  # release accepted, not done
    master.fail.append((200, {**r.json("alice"), "state": "ready"}))  # first poll
    r.state = "released"
    assert res.release(wait=True).state is ReservationState.RELEASED


def test_the_context_manager_releases_on_exception(master: FakeMaster, client: Client) -> None:
    with pytest.raises(ZeroDivisionError):
        with client.reserve("qemu") as res:
            1 / 0
    assert master.reservations[res.id].state == "released"
    with client.reserve("qemu") as res2:
        pass
    assert master.reservations[res2.id].state == "released"


def test_a_failing_release_does_not_hide_the_error(master: FakeMaster, client: Client) -> None:
    with pytest.raises(KeyError):
        with client.reserve("qemu"):
            master.fail.append((500, {"error": "database is locked"}))
            raise KeyError("mine")
