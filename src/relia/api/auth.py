"""API tokens with roles, and request size limits.

A token is a random string (``relia_`` + 256 random bits, URL-safe base64) shown once when it is
created; the configuration keeps only its SHA-256 (``api.tokens: [{name, role, sha256}]``).
A request presents it as ``Authorization: Bearer <token>``: the token is hashed and compared with
every configured hash in constant time. Roles:

- ``read``: GET of the API (series, samples, findings, incidents, SLOs), ``/metrics`` and the
  OpenAPI schema;
- ``ingest``: remote-write (``POST /api/v1/write``) only;
- ``admin``: everything.

Nothing here logs or returns a token or its hash: messages name the token's ``name``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import anyio
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from relia.config import ApiConfig

__all__ = [
    "TOKEN_PREFIX",
    "AuthConfig",
    "BrowserGuard",
    "RequestLimits",
    "Role",
    "TokenEntry",
    "hash_token",
    "new_token",
]

log = logging.getLogger("relia.api.auth")

TOKEN_PREFIX = "relia_"

# Only to parse the header and document bearer auth in the OpenAPI schema; errors are ours.
_bearer = HTTPBearer(auto_error=False, description="an API token: `relia token create`")


class Role(StrEnum):
    """What a token may do."""

    READ = "read"
    INGEST = "ingest"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """Whether a token of this role may use a route that needs ``needed``.

        Not a ladder: an ingest token cannot read (a remote-write agent needs nothing else).
        """
        return self is Role.ADMIN or self is needed


def new_token() -> str:
    """A fresh token: the prefix (so leaked tokens are recognisable by secret scanners) and
    32 random bytes from :mod:`secrets`."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The hex SHA-256 of ``token``: what the configuration stores.

    A plain fast hash is right here, not a slow password KDF (bcrypt, scrypt, Argon2): those exist
    to make guessing a *low-entropy* password from its hash expensive. A token has 256 random
    bits, so nobody can enumerate candidates whatever the hash costs, and hashing on every
    request must stay cheap (a KDF would cost ~100 ms of CPU per request and invite DoS).
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenEntry:
    """One configured token: its name (the only thing ever logged), role and SHA-256."""

    name: str
    role: Role
    digest: bytes  # 32 bytes

    def __repr__(self) -> str:  # keep the hash out of reprs (tracebacks, logs)
        return f"TokenEntry(name={self.name!r}, role={self.role.value!r})"


class AuthConfig:
    """The tokens the API accepts; ``None`` in place of one means auth is off."""

    def __init__(self, tokens: Sequence[TokenEntry]) -> None:
        if not tokens:
            raise ValueError("AuthConfig needs at least one token (use None for auth off)")
        self.tokens = tuple(tokens)

    @classmethod
    def from_api_config(cls, api: ApiConfig) -> AuthConfig | None:
        """The auth ``api`` asks for: None when it is off (checked at config load to be allowed
        only on a loopback address)."""
        if not api.auth_enabled:
            return None
        entries = [
            TokenEntry(t.name, Role(t.role), bytes.fromhex(t.sha256.get_secret_value()))
            for t in api.tokens
        ]
        if api.token is not None:
            # The old single plain token (api.token / RELIA_API__TOKEN) is an admin token.
            log.warning(
                "api.token is deprecated: create a hashed token with `relia token create` and "
                "list it under api.tokens"
            )
            entries.append(
                TokenEntry("api.token", Role.ADMIN, _digest(api.token.get_secret_value()))
            )
        return cls(entries)

    @classmethod
    def plain(cls, token: str, *, name: str = "token", role: Role = Role.ADMIN) -> AuthConfig:
        """One token given in clear (tests, the deprecated ``create_app(token=...)``)."""
        return cls([TokenEntry(name, role, _digest(token))])

    def identify(self, presented: str) -> TokenEntry | None:
        """The entry whose hash matches ``presented``, or None.

        Every configured hash is compared (no early exit) with :func:`hmac.compare_digest`, so
        the time taken tells nothing about which entry, or how much of one, matched.
        """
        digest = _digest(presented)
        found: TokenEntry | None = None
        for entry in self.tokens:
            if hmac.compare_digest(digest, entry.digest):
                found = entry
        return found

    def may_read(self, request: Request) -> bool:
        """Whether ``request`` carries a bearer token whose role may read (for the open routes
        that show more to a reader); never raises."""
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return False
        entry = self.identify(given.strip())
        return entry is not None and entry.role.allows(Role.READ)

    def dependency(self, needed: Role) -> Callable[..., None]:
        """A FastAPI dependency admitting tokens whose role allows ``needed``:
        401 (``WWW-Authenticate: Bearer``) without a known token, 403 when its role is too low."""

        def check(
            request: Request,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        ) -> None:
            given = credentials.credentials.strip() if credentials is not None else ""
            where = f"{request.method} {request.url.path}"
            if not given:
                log.info("401 on %s: no bearer token", where)
                raise _unauthorized("missing bearer token (Authorization: Bearer <token>)")
            entry = self.identify(given)
            if entry is None:
                log.info("401 on %s: unknown token", where)
                raise _unauthorized("unknown bearer token")
            if not entry.role.allows(needed):
                log.warning(
                    "403 on %s: token %r has role %s, needs %s",
                    where,
                    entry.name,
                    entry.role.value,
                    needed.value,
                )
                raise HTTPException(
                    status_code=403,
                    detail=f"token {entry.name!r} has role {entry.role.value}; "
                    f"this needs {needed.value}",
                )

        return check


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


# What is drained of a refused body before the 413 goes out. Closing a socket that still holds
# unread request bytes makes the kernel send a reset instead of a FIN, and the client then loses
# the 413 already sent (httpx: "Connection reset by peer"), so the rest of a body that is only
# modestly over the limit is read and thrown away first, as nginx's lingering close does. A body
# larger still, or a client too slow, is cut off after these bounds.
_DRAIN_BYTES = 1 << 20
_DRAIN_SECONDS = 1.0


async def _drain(receive: Receive, more_body: bool) -> None:
    """Read and discard the rest of a request body, within the drain bounds."""
    drained = 0
    with anyio.move_on_after(_DRAIN_SECONDS):
        while more_body and drained <= _DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            more_body = bool(message.get("more_body", False))


class RequestLimits:
    """Pure ASGI middleware: 413 for a request body over ``max_body_bytes``, 431 for headers
    over ``max_header_bytes``, 408 when the next part of a body takes longer than
    ``body_timeout_s`` to arrive (a client holding a connection open by sending its body a byte
    at a time; the headers have their deadline in :mod:`relia.api.timeouts`), 400 with
    ``Connection: close`` for a request with both ``Content-Length`` and ``Transfer-Encoding``
    (request smuggling) or an invalid ``Content-Length``.

    A declared ``Content-Length`` over the limit is refused before the app sees any of the body;
    a body without one (chunked) is counted as the app receives it, and the request is cut off at
    the first chunk that passes the limit, so at most the limit plus one chunk is ever in memory.
    Before the 413 goes out, what is still in flight is read and discarded (up to 1 MiB or one
    second), so the client reads the answer instead of a connection reset.
    It must sit outside Starlette's error middleware (see ``create_app``): the app may turn the
    interrupted read into a 400 or 500, which this replaces by the 413.

    The header check backs up uvicorn's (``h11_max_incomplete_event_size``), which only sees a
    header block that does not arrive in one read of up to 64 KiB.

    ``path_limits`` gives some paths their own body limit instead of ``max_body_bytes`` (the
    remote-write receiver has ``ingest.max_body_bytes``, and enforces it itself as well).
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        max_header_bytes: int | None = None,
        body_timeout_s: float | None = None,
        path_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.body_timeout_s = body_timeout_s
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.max_header_bytes is not None:
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(k) + len(v) + 4 for k, v in scope["headers"])  # ": " and CRLF
            if size > self.max_header_bytes:
                await _plain(send, 431, f"request headers over {self.max_header_bytes} bytes")
                return
        limit = self.path_limits.get(scope["path"], self.max_body_bytes)
        declared = _content_length(scope)
        if declared == -1:
            await _plain(send, 400, "invalid Content-Length header")
            return
        if declared is not None and any(k == b"transfer-encoding" for k, _ in scope["headers"]):
            # Request smuggling: a proxy in front that goes by Content-Length sees another end
            # of this body than uvicorn, which goes by Transfer-Encoding, and would pass what
            # follows as a request of its own. RFC 9112 6.1: refuse it and close the connection.
            await _plain(
                send, 400, "both Content-Length and Transfer-Encoding: a request may have only one"
            )
            return
        if declared is not None and declared > limit:
            # A client that waits for "100 Continue" has sent no body: there is nothing to
            # drain, and reading would invite it to send what is about to be refused. A body
            # declared past the drain bound would be cut off anyway: it is not read at all.
            waiting = any(k == b"expect" for k, _ in scope["headers"])
            await _drain(receive, more_body=declared <= _DRAIN_BYTES and not waiting)
            await _plain(send, 413, f"request body over {limit} bytes")
            return
        received = 0
        over = False
        slow = False
        more_body = True
        started = False
        timeout = self.body_timeout_s

        async def limited_receive() -> Message:
            nonlocal received, over, more_body, slow
            if timeout is None or not more_body:
                message = await receive()
            else:
                with anyio.move_on_after(timeout) as waited:
                    message = await receive()
                if waited.cancelled_caught:
                    slow = True
                    raise _TooSlow
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                more_body = bool(message.get("more_body", False))
                if received > limit:
                    over = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over or slow:  # the app answering the broken read: the 413/408 below replaces it
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except (_TooLarge, _TooSlow):
            pass
        except Exception:
            if not (over or slow):
                raise
        if slow and not started:
            log.info(
                "408 on %s %s: no part of the request body in %gs (api.body_timeout)",
                scope.get("method"),
                scope.get("path"),
                timeout,
            )
            await _plain(send, 408, f"request body not received within {timeout:g}s")
            return
        if over and not started:
            await _drain(receive, more_body)
            await _plain(send, 413, f"request body over {limit} bytes")


class BrowserGuard:
    """Pure ASGI middleware that keeps other web sites out, through the operator's browser.

    - 403 for a request to ``/api/`` that the browser marks ``Sec-Fetch-Site: cross-site``: a
      page of another site, which relia never serves (the dashboard's calls are same-origin).
    - With ``loopback_hosts_only`` (auth off), 421 for a ``Host`` that is not a loopback name or
      address (``localhost``, ``127.0.0.0/8``, ``[::1]``, any port): a page whose name was
      rebound to 127.0.0.1 (DNS rebinding) could read the API otherwise. A request without a
      Host (HTTP/1.0) passes: a browser always sends one.
    """

    def __init__(self, app: ASGIApp, *, loopback_hosts_only: bool) -> None:
        self.app = app
        self.loopback_hosts_only = loopback_hosts_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        for key, value in scope["headers"]:
            if (
                key == b"sec-fetch-site"
                and value.strip().lower() == b"cross-site"
                and (path == "/api" or path.startswith("/api/"))
            ):
                log.info("403 on %s %s: a cross-site browser request", scope["method"], path)
                await _plain(
                    send,
                    403,
                    "Sec-Fetch-Site: cross-site: another web site's page may not call relia's API",
                )
                return
            if key == b"host" and self.loopback_hosts_only and not _is_loopback_host(value):
                host = value.decode("latin-1")
                log.info("421 on %s %s: Host %r is not loopback", scope["method"], path, host)
                await _plain(
                    send,
                    421,
                    f"Host {host!r} is not localhost, 127.0.0.1 or [::1]: with auth off relia "
                    "answers only loopback names (set api.tokens to serve others)",
                )
                return
        await self.app(scope, receive, send)


def _is_loopback_host(value: bytes) -> bool:
    """Whether a Host header names a loopback host: ``localhost``, an address of 127.0.0.0/8 or
    ``[::1]``, each with or without a port."""
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return False
        port = port[1:]
    else:
        host, _, port = text.partition(":")
    if port and not (port.isascii() and port.isdigit()):
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    # [::1] only bracketed, 127.x only bare: the forms a browser sends.
    return address.is_loopback and (address.version == 6) == text.startswith("[")


def _content_length(scope: Scope) -> int | None:
    """The declared length; None when absent, -1 when unparseable."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            text = value.decode("latin-1").strip()
            # isascii too: str.isdigit takes "²" (latin-1 0xb2), which int() refuses.
            return int(text) if text.isascii() and text.isdigit() else -1
    return None


async def _plain(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status in (400, 408, 413):
        # The rest of the body is still on its way, or where it ends is in doubt (a 400 here
        # refuses the framing): do not reuse the connection.
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
