"""relia._http: a client whose requests are bounded as a whole, headers included."""

from __future__ import annotations

import http.server
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpcore
import httpx
import pytest

import relia._http as relia_http
from relia._http import DeadlineBackend, deadline_client, request_deadline
from tests.slow_http import slow_server, timed


def _backends(client: httpx.Client) -> list[object]:
    transports = [client._transport, *client._mounts.values()]
    return [t._pool._network_backend for t in transports if isinstance(t, httpx.HTTPTransport)]


def test_the_client_gets_the_deadline_backend_under_this_httpx() -> None:
    # Fails loudly when an httpx or httpcore upgrade moves the private attributes relia sets
    # (relia would then only log a warning and lose the bound on slow headers).
    with deadline_client(timeout=1.0) as client:
        backends = _backends(client)
    assert backends and all(isinstance(b, DeadlineBackend) for b in backends)


def test_proxies_from_the_environment_are_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with deadline_client(timeout=1.0) as client:
        backends = _backends(client)
    assert len(backends) == 2 and all(isinstance(b, DeadlineBackend) for b in backends)


def test_a_given_transport_is_used_as_it_is() -> None:
    mock = httpx.MockTransport(lambda request: httpx.Response(204))
    with deadline_client(transport=mock) as client, request_deadline(1.0):
        assert client._transport is mock
        assert client.get("http://relia.test/").status_code == 204


def test_an_unknown_httpx_is_used_unbounded_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert relia_http._bound_transports(SimpleNamespace()) is False  # type: ignore[arg-type]
    monkeypatch.setattr(relia_http, "_bound_transports", lambda client: False)
    with caplog.at_level(logging.WARNING, logger="relia._http"):
        client = deadline_client(timeout=1.0)
    client.close()
    assert "not one relia knows how to bound" in caplog.text


def test_a_normal_request_works_through_the_deadline_backend() -> None:
    with slow_server(b"a\nb\n", every=0.05) as url, deadline_client(timeout=1.0) as client:
        with request_deadline(2.0):
            first = client.get(url + "/x")
        second = client.get(url + "/y")  # outside a deadline: as a plain client
    assert (first.status_code, first.content) == (200, b"a\nb\n")
    assert (second.status_code, second.content) == (200, b"a\nb\n")


def test_slow_headers_time_out_at_the_deadline_not_never() -> None:
    with slow_server(b"", header_every=0.2) as url, deadline_client(timeout=0.5) as client:

        def get() -> None:
            with request_deadline(0.6):
                client.get(url)

        took, error = timed(get)
    assert isinstance(error, httpx.ReadTimeout)
    assert 0.5 < took < 1.2


def test_no_time_left_fails_before_connecting() -> None:
    with deadline_client(timeout=1.0) as client, request_deadline(0.0):
        with pytest.raises(httpx.ConnectTimeout):
            client.get("http://127.0.0.1:9/")


class _Streams(httpcore.NetworkBackend):
    """A backend that records the timeouts it is asked for."""

    def __init__(self) -> None:
        self.asked: list[float | None] = []

    def connect_tcp(self, *args: object, **kwargs: object) -> httpcore.NetworkStream:
        backend = self

        class Stream(httpcore.NetworkStream):
            def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
                backend.asked.append(timeout)
                return b""

            def write(self, buffer: bytes, timeout: float | None = None) -> None:
                backend.asked.append(timeout)

        return Stream()


def test_each_wait_is_the_time_left_never_more_than_the_timeout() -> None:
    streams = _Streams()
    stream = DeadlineBackend(streams).connect_tcp("h", 1, timeout=0.3)
    stream.read(1, 0.3)  # no deadline: as asked
    with request_deadline(10.0):
        stream.read(1, 0.3)  # the timeout is shorter
        stream.write(b"x", None)  # no timeout: the time left
    with request_deadline(0.1):
        stream.read(1, 0.3)
    assert streams.asked[0] == 0.3 and streams.asked[1] == 0.3
    assert streams.asked[2] is not None and 9.0 < streams.asked[2] <= 10.0
    assert streams.asked[3] is not None and 0.0 < streams.asked[3] <= 0.1
    with request_deadline(-1.0):
        with pytest.raises(httpcore.ReadTimeout):
            stream.read(1, 0.3)
        with pytest.raises(httpcore.WriteTimeout):
            stream.write(b"x", 0.3)


@pytest.fixture
def https_url(tmp_path: Path) -> Iterator[tuple[str, ssl.SSLContext]]:
    """An HTTPS server on loopback answering 200 ``ok``, and a context that trusts it."""
    from tests.api.test_tls import _self_signed

    cert, key = _self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield (
            f"https://127.0.0.1:{server.server_address[1]}",
            ssl.create_default_context(cafile=str(cert)),
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_https_works_through_the_deadline_backend(https_url: tuple[str, ssl.SSLContext]) -> None:
    url, trusted = https_url
    with deadline_client(timeout=2.0, verify=trusted) as client, request_deadline(3.0):
        began = time.monotonic()
        resp = client.get(url)
    assert (resp.status_code, resp.content) == (200, b"ok")
    assert time.monotonic() - began < 3.0
