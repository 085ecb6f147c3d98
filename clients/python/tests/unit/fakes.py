"""Fakes for the unit tests: a master's REST API (http.server in a thread on 127.0.0.1) whose
reservation and job states follow scripts the tests set, and a worker's telnet console whose
board is a real ``sh`` (input echoed as a terminal does, output with CRLF).

Every fake binds 127.0.0.1 on a port of the system's choosing and stops (thread joined,
shell killed by its PID) when closed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

TOKENS = {"secret": "alice", "other": "bob"}


@dataclass
class FakeReservation:
    """One reservation of the fake master: ``script`` is the states the next GETs show (the
    last one stays)."""

    id: int
    holder: str
    body: dict[str, Any]
    state: str = "queued"
    script: list[str] = field(default_factory=list)
    reason: str | None = None
    lease_secs: int = 900
    renewals: int = 0
    connection: dict[str, Any] = field(default_factory=dict)
    booted: bool = False

    def json(self, viewer: str) -> dict[str, Any]:
        conn = json.loads(json.dumps(self.connection))
        if viewer != self.holder:
            for ep in conn.values():
                ep.pop("token", None)
                ep.pop("private_key", None)
        return {
            "id": self.id,
            "job_id": self.id,
            "state": self.state,
            "holder": self.holder,
            "device": None if self.state == "queued" else "qemu-01",
            "device_type": self.body.get("device_type", "qemu"),
            "worker": None if self.state == "queued" else "rack-1",
            "requirements": self.body.get("requirements", {}),
            "description": self.body.get("description"),
            "created": "2026-12-02T10:00:00.000000Z",
            "expires": "2026-12-02T10:15:00.000000Z",
            "lease_secs": self.lease_secs,
            "booted": self.booted,
            "reason": self.reason,
            "connection": conn,
        }


@dataclass
class Recorded:
    """A request the fake master received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class FakeMaster:
    """The master's API as docs/reservations.md draws it, with states the test drives."""

    KEYS = {
        "device_type", "requirements", "device", "lease_secs", "boot", "ssh_public_key",
        "ssh_user", "description", "priority",
    }  # fmt: skip

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[Recorded] = []
        self.reservations: dict[int, FakeReservation] = {}
        self.artifacts: dict[str, dict[str, Any]] = {}
        self.jobs: dict[int, list[str]] = {}
        self.next_id = 41
        self.fail: list[tuple[int, Any]] = []  # answers given instead of the next requests
        self.boot_script = ["booting", "ready"]
        self.exec_handler: Callable[[str], dict[str, Any]] = lambda c: {
            "output": f"ran {c}\n",
            "exit_status": 0,
            "truncated": False,
        }
        self.connection: dict[str, Any] = {}
        self.devices = [
            {"hostname": "qemu-01", "device_type": "qemu", "worker_host": "rack-1",
             "description": None, "tags": [7], "state": "Idle", "health": "Good",
             "current_job": None},
        ]  # fmt: skip
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _do(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                rec = Recorded(self.command, self.path, dict(self.headers.items()), body)
                with fake.lock:
                    fake.requests.append(rec)
                    status, answer = fake.handle(rec)
                raw = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                ctype = "application/yaml" if isinstance(answer, bytes) else "application/json"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_DELETE = _do

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    # ---- helpers for tests ------------------------------------------------------------

    def add(self, state: str = "ready", script: list[str] | None = None, **kw: Any) -> FakeReservation:
        """A reservation of alice's, in ``state``."""
        with self.lock:
            r = FakeReservation(self.next_id, "alice", {}, state=state, script=script or [], **kw)
            self.reservations[r.id] = r
            self.next_id += 1
            return r

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path)]

    # ---- the API ----------------------------------------------------------------------

    def handle(self, rec: Recorded) -> tuple[int, Any]:
        if self.fail:
            return self.fail.pop(0)
        path = rec.path.split("?", 1)[0]
        if not path.startswith("/api/v0.2/"):
            return 404, {"error": f"no such path {path}"}
        path = path[len("/api/v0.2/") :]
        if path == "system/version/":
            return 200, {"version": "2026.01"}
        auth = rec.headers.get("Authorization", "")
        user = TOKENS.get(auth.removeprefix("Token ")) if auth.startswith("Token ") else None
        if user is None:
            return 401, {"error": "a token is needed (Authorization: Token ...)"}
        body = rec.json() if rec.body and rec.method != "PUT" else {}
        m = re.fullmatch(r"reservations/(?:(\d+)/(?:([a-z-]+)/)?)?", path)
        if m:
            return self.reservation_call(rec.method, m.group(1), m.group(2), body, user)
        m = re.fullmatch(r"artifacts/([^/]*)", path)
        if m:
            return self.artifact_call(rec, urllib.parse.unquote(m.group(1)))
        if path == "devices/":
            return 200, {"count": len(self.devices), "next": None, "results": self.devices}
        m = re.fullmatch(r"devices/([^/]+)/", path)
        if m:
            for d in self.devices:
                if d["hostname"] == m.group(1):
                    return 200, d
            return 404, {"error": f"no device {m.group(1)}"}
        return self.job_call(rec.method, path, body)

    def reservation_call(
        self, method: str, rid: str | None, action: str | None, body: Any, user: str
    ) -> tuple[int, Any]:
        if rid is None:
            if method == "GET":
                mine = [r.json(user) for r in self.reservations.values() if r.holder == user]
                return 200, {"count": len(mine), "results": mine[::-1]}
            unknown = set(body) - self.KEYS
            if unknown:
                return 400, {"error": f"unknown key {sorted(unknown)[0]}"}
            req = body.get("requirements", {})
            unknown = set(req) - {"arch", "ram", "cpus", "features", "tags"}
            if unknown:
                return 400, {"error": f"unknown requirement {sorted(unknown)[0]}"}
            if req.get("ram") == "64G":
                return 400, {"error": "no device meets ram >= 64G: the largest is 2G (qemu-02)",
                             "unmet": ["ram"]}  # fmt: skip
            r = FakeReservation(self.next_id, user, body, lease_secs=body.get("lease_secs", 900))
            r.connection = self.connection
            if "boot" in body:
                r.script, r.booted = list(self.boot_script), True
            self.next_id += 1
            self.reservations[r.id] = r
            return 201, r.json(user)
        r = self.reservations.get(int(rid))
        if r is None:
            return 404, {"error": f"no reservation {rid}"}
        if method == "GET" and action is None:
            if r.script:
                r.state = r.script.pop(0)
            return 200, r.json(user)
        if r.holder != user:
            return 403, {"error": f"reservation {rid} is {r.holder}'s"}
        final = r.state in ("released", "expired")
        if action == "release" or (method == "DELETE" and action is None):
            if not final:
                r.state = "released"
                r.script = []
            return 200, r.json(user)
        if final:
            return 409, {"error": f"reservation {rid} is {r.state}"}
        if action == "renew":
            r.renewals += 1
            if "lease_secs" in body:
                r.lease_secs = body["lease_secs"]
            return 200, r.json(user)
        if action == "boot":
            r.state = self.boot_script[0]
            r.script = list(self.boot_script[1:])
            r.booted = True
            return 202, r.json(user)
        if action == "exec":
            if r.state != "ready" or not r.booted:
                return 409, {"error": f"reservation {rid} is {r.state}, nothing booted"}
            return 200, self.exec_handler(body["command"])
        if action == "power-off":
            r.booted = False
            return 200, r.json(user)
        return 404, {"error": f"no action {action}"}

    def artifact_call(self, rec: Recorded, name: str) -> tuple[int, Any]:
        if rec.method == "PUT":
            a = {"name": name, "size": len(rec.body), "sha256": hashlib.sha256(rec.body).hexdigest(),
                 "url": f"{self.url}/artifacts/{name}", "expires": "2026-12-03T10:00:00Z"}  # fmt: skip
            self.artifacts[name] = a
            return 201, a
        if rec.method == "DELETE":
            if self.artifacts.pop(name, None) is None:
                return 404, {"error": f"no artifact {name}"}
            return 200, {}
        return 200, {"count": len(self.artifacts), "results": list(self.artifacts.values())}

    def job_call(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path == "jobs/" and method == "POST":
            if "job_name" not in body.get("definition", ""):
                return 400, {"message": "job_name is required"}
            jid = self.next_id
            self.next_id += 1
            self.jobs[jid] = ["Submitted", "Running", "Finished"]
            return 201, {"message": "job submitted", "job_ids": [jid]}
        m = re.fullmatch(r"jobs/(\d+)/(logs/|cancel/)?", path)
        if not m or int(m.group(1)) not in self.jobs:
            return 404, {"error": f"no such job: {path}"}
        jid, sub = int(m.group(1)), m.group(2)
        script = self.jobs[jid]
        if sub == "logs/":
            return 200, b'- {"dt": "2026-12-02T10:00:00", "lvl": "info", "msg": "hello"}\n'
        if sub == "cancel/":
            self.jobs[jid] = ["Finished"]
            return 200, {}
        state = script.pop(0) if len(script) > 1 else script[0]
        return 200, {
            "id": jid, "state": state, "health": "Complete" if state == "Finished" else "Unknown",
            "submitter": "alice", "description": "a job", "requested_device_type": "qemu",
            "actual_device": "qemu-01", "submit_time": "2026-12-02T10:00:00+00:00",
            "start_time": None, "end_time": None, "failure_comment": None,
        }  # fmt: skip


class FakeConsole:
    """A worker's console server for one held board whose shell is a real ``sh`` in
    ``workdir``: the token line, the greeting, a ring buffer, one writer, watchers."""

    IAC, DO, WILL, SB, SE = 255, 253, 251, 250, 240

    def __init__(self, workdir: str, *, token: str = "ctok", watch_token: str = "wtok") -> None:
        self.token, self.watch_token = token, watch_token
        self.workdir = workdir
        self.ring = b"U-Boot 2023.01\r\nStarting kernel ...\r\n\xff\xffLinux version 6.1\r\n/ # "
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.replies = bytearray()  # what clients sent back after the greeting's negotiation
        self.writer: socket.socket | None = None
        self.clients: list[socket.socket] = []
        self.shell = subprocess.Popen(
            ["sh"], cwd=workdir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )  # fmt: skip
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._accept, daemon=True),
            threading.Thread(target=self._pump, daemon=True),
        ]
        for t in self.threads:
            t.start()

    def close(self) -> None:
        self.sock.close()
        for c in list(self.clients):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self.shell.kill()
        self.shell.wait()
        if self.shell.stdin:
            self.shell.stdin.close()
        if self.shell.stdout:
            self.shell.stdout.close()

    def hang_up(self) -> None:
        """Closes every connection, as the worker does at lease end."""
        for c in list(self.clients):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _send_all(self, data: bytes) -> None:
        with self.lock:
            self.ring += data
            for c in list(self.clients):
                try:
                    c.sendall(data)
                except OSError:
                    pass

    def _pump(self) -> None:
        assert self.shell.stdout is not None
        while True:
            data = os.read(self.shell.stdout.fileno(), 4096)
            if not data:
                return
            self._send_all(data.replace(b"\n", b"\r\n"))

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _strip(self, data: bytes, pending: bytearray) -> bytes:
        """Data bytes of ``data`` (``pending``: an unfinished IAC sequence); the client's
        negotiation replies go to :attr:`replies`."""
        out = bytearray()
        buf = pending + data
        pending.clear()
        i = 0
        while i < len(buf):
            b = buf[i]
            if b != self.IAC:
                out.append(b)
                i += 1
                continue
            if i + 1 >= len(buf):
                pending += buf[i:]
                break
            if buf[i + 1] == self.IAC:
                out.append(self.IAC)
                i += 2
            elif buf[i + 1] in (251, 252, 253, 254):
                if i + 2 >= len(buf):
                    pending += buf[i:]
                    break
                self.replies += buf[i : i + 3]
                i += 3
            else:
                i += 2
        return bytes(out)

    def _serve(self, c: socket.socket) -> None:
        # a telnet server's opening negotiation, which the client must refuse
        c.sendall(bytes([self.IAC, self.DO, 1, self.IAC, self.WILL, 3, self.IAC, self.SB, 24, 1,
                         self.IAC, self.SE]))  # fmt: skip
        pending = bytearray()
        got = b""
        try:
            while b"\n" not in got:
                data = c.recv(4096)
                if not data:
                    c.close()
                    return
                got += self._strip(data, pending)
        except OSError:
            c.close()
            return
        line, rest = got.split(b"\n", 1)
        tok = line.strip().decode(errors="replace")
        if tok not in (self.token, self.watch_token):
            c.sendall(b"basalt: wrong token\r\n")
            c.close()
            return
        role = "writer" if tok == self.token else "watcher"
        with self.lock:
            if role == "writer" and self.writer is not None:
                c.sendall(b"basalt: refused: the console already has a writer\r\n")
                c.close()
                return
            if role == "writer":
                self.writer = c
            # listed before the greeting goes out: a client that has read it can be hung up
            self.clients.append(c)
            c.sendall(f"basalt: console of qemu-01 ({role})\r\n".encode() + self.ring)
        try:
            data = rest
            while True:
                if data and role == "writer":
                    self._send_all(data.replace(b"\n", b"\r\n"))  # the terminal's echo
                    assert self.shell.stdin is not None
                    self.shell.stdin.write(data)
                    self.shell.stdin.flush()
                raw = c.recv(4096)
                if not raw:
                    break
                data = self._strip(raw, pending)
        except OSError:
            pass
        finally:
            with self.lock:
                if c in self.clients:
                    self.clients.remove(c)
                if self.writer is c:
                    self.writer = None
            c.close()
