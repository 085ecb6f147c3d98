"""The HTTP transport: ``requests`` under ``URL/api/v0.2/``, the token header, and the
mapping of error answers to :mod:`basalt_client.errors` with the server's message kept."""

from __future__ import annotations

from typing import IO, Any, Mapping

import requests

from .errors import (
    BadRequest,
    BasaltError,
    Conflict,
    NotFound,
    PermissionDenied,
    Unavailable,
    Unmet,
)

API = "/api/v0.2/"


def api_root(url: str) -> str:
    """The API's root for a master URL given with or without ``/api/v0.2``:
    ``http://host:8080`` → ``http://host:8080/api/v0.2/``."""
    base = url.rstrip("/")
    if base.endswith(API.rstrip("/")):
        base = base[: -len(API.rstrip("/"))]
    if not base.startswith(("http://", "https://")):
        raise BasaltError(f"the master's URL must be http:// or https://: {url!r}")
    return base + API


def server_message(body: Any, text: str) -> str:
    """The server's explanation in an error answer: basalt's ``error``, LAVA's ``message``
    or Django's ``detail``, else the start of the body."""
    if isinstance(body, Mapping):
        for key in ("error", "message", "detail"):
            v = body.get(key)
            if isinstance(v, str) and v:
                return v
    return text.strip()[:500] or "(no message)"


def error_for(method: str, path: str, status: int, body: Any, text: str) -> BasaltError:
    """The exception for an error answer, its message ``METHOD PATH: STATUS MESSAGE``."""
    msg = server_message(body, text)
    full = f"{method} {path}: {status} {msg}"
    kw: dict[str, Any] = {"status": status, "server_message": msg, "body": body}
    if status == 400:
        unmet = body.get("unmet") if isinstance(body, Mapping) else None
        if isinstance(unmet, list) and unmet:
            return Unmet(full, unmet=[str(u) for u in unmet], **kw)
        return BadRequest(full, **kw)
    if status in (401, 403):
        return PermissionDenied(full, **kw)
    if status == 404:
        return NotFound(full, **kw)
    if status == 409:
        return Conflict(full, **kw)
    if status in (502, 503, 504):
        return Unavailable(full, **kw)
    return BasaltError(full, **kw)


class Http:
    """One master's API: a ``requests.Session`` with ``Authorization: Token TOKEN``.

    ``timeout`` is the default per-request timeout in seconds.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        self.root = api_root(url)
        self.timeout = timeout
        self.session = session or requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Token {token}"

    def url(self, path: str) -> str:
        """The absolute URL of an API path (``reservations/4/``)."""
        return self.root + path.lstrip("/")

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | IO[bytes] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> requests.Response:
        """Makes the call; returns the answer when its status is 2xx, raises the matching
        :class:`BasaltError` otherwise (:class:`Unavailable` when the master is unreachable)."""
        try:
            r = self.session.request(
                method,
                self.url(path),
                json=json,
                data=data,
                params=params,
                headers=dict(headers or {}),
                timeout=timeout if timeout is not None else self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as e:
            raise Unavailable(f"{method} {path}: cannot reach the master at {self.root}: {e}") from e
        if 200 <= r.status_code < 300:
            return r
        try:
            body: Any = r.json()
        except ValueError:
            body = None
        raise error_for(method, path, r.status_code, body, r.text)

    def json(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | IO[bytes] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Like :meth:`request`, the answer decoded from JSON (a :class:`BasaltError` when it
        is not JSON)."""
        r = self.request(
            method, path, json=json, data=data, params=params, headers=headers, timeout=timeout
        )
        try:
            return r.json()
        except ValueError:
            raise BasaltError(
                f"{method} {path}: the answer is not JSON: {r.text[:200]!r}", status=r.status_code
            ) from None

    def clone(self) -> Http:
        """Another connection to the same master with the same token (its own session)."""
        other = Http(self.root, None, timeout=self.timeout)
        auth = self.session.headers.get("Authorization")
        if auth:
            other.session.headers["Authorization"] = auth
        return other
