"""Outbound HTTP whose every request is bounded as a whole.

httpx's ``timeout`` is per socket operation: a server that sends its status line and headers one
byte at a time, each just inside the timeout, holds a request for good (the callers bound the
body themselves, but the headers come before they see anything). :func:`deadline_client` makes
an ``httpx.Client`` whose connects, writes and reads wait at most until the deadline of the
request under way, set by :func:`request_deadline` around it::

    with request_deadline(timeout) as deadline:
        with client.stream("GET", url) as resp:
            ...

Each socket operation then waits for the time left, never more than httpx's own timeout, and
fails as httpx would (``ConnectTimeout``, ``WriteTimeout``, ``ReadTimeout``) once it is gone.
Outside a ``request_deadline`` block the client behaves as a plain one.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

__all__ = ["DeadlineBackend", "deadline_client", "request_deadline"]

log = logging.getLogger(__name__)

#: The ``time.monotonic()`` by which the request under way must be done; None: no bound.
_deadline: ContextVar[float | None] = ContextVar("relia_http_deadline", default=None)


@contextmanager
def request_deadline(seconds: float) -> Iterator[float]:
    """Bound every request of a :func:`deadline_client` inside the block by ``seconds`` from
    now, all of it (connect, request, status line, headers, body); yields the deadline (a
    ``time.monotonic()`` value)."""
    deadline = time.monotonic() + seconds
    token = _deadline.set(deadline)
    try:
        yield deadline
    finally:
        _deadline.reset(token)


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` cut to the time left before the deadline; ``error`` once none is left."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        # Not a socket timeout of 0: that would make the socket non-blocking instead.
        raise error("request deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose reads and writes end by the request's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        # The TLS stream is wrapped too: an https request is bounded like an http one.
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend (``backend``) with each connection's streams bounded by the
    deadline of :func:`request_deadline`."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _bound_transports(client: httpx.Client) -> bool:
    """Put a :class:`DeadlineBackend` under each of ``client``'s connection pools (its own and
    those of the proxies the environment names); False when httpx's insides have changed.

    The one place relia reaches into httpx's and httpcore's private attributes: httpx has no
    public way to give its transport a network backend (``tests/test_http.py`` fails when an
    upgrade breaks this)."""
    try:
        transports = [client._transport, *client._mounts.values()]
        pools = [t._pool for t in transports if isinstance(t, httpx.HTTPTransport)]
        if len(pools) != len([t for t in transports if t is not None]):
            return False  # a transport of a kind this does not know
        for pool in pools:
            if not isinstance(pool._network_backend, httpcore.NetworkBackend):
                return False
        for pool in pools:
            if not isinstance(pool._network_backend, DeadlineBackend):
                pool._network_backend = DeadlineBackend(pool._network_backend)
    except AttributeError:
        return False
    return True


def deadline_client(*, transport: httpx.BaseTransport | None = None, **kwargs: Any) -> httpx.Client:
    """``httpx.Client(transport=transport, **kwargs)`` whose requests inside
    :func:`request_deadline` are bounded as a whole. A given ``transport`` (a test's mock) is
    used as it is."""
    client = httpx.Client(transport=transport, **kwargs)
    if transport is None and not _bound_transports(client):
        log.warning(
            "this httpx (%s) is not one relia knows how to bound: a server that sends its "
            "headers slowly can hold a request past its timeout",
            httpx.__version__,
        )
    return client
