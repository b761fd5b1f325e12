from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request

from relia.api.app import create_app
from relia.api.auth import RequestLimits, Role
from relia.config import ApiConfig
from relia.engine.up import _Api, _bind, _url
from tests.engine.memstore import MemoryStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # Starlette's TestClient wants httpx2
    from fastapi.testclient import TestClient

LIMIT = 1000


def _echo() -> APIRouter:
    router = APIRouter()

    @router.post("/api/v1/write")
    async def write(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return router


def _app(limit: int = LIMIT, header_limit: int | None = None) -> FastAPI:
    return create_app(
        MemoryStore(),
        routers=[(_echo(), Role.INGEST)],
        max_body_bytes=limit,
        max_header_bytes=header_limit,
    )


# -- the middleware alone, on raw ASGI messages ----------------------------------------------


class _Recorder:
    """A downstream app that reads the whole body, and what reached the client."""

    def __init__(self) -> None:
        self.called = False
        self.sent: list[dict[str, Any]] = []

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        self.called = True
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


def _run(
    headers: list[tuple[bytes, bytes]], chunks: list[bytes], app: Any = None
) -> tuple[_Recorder, int]:
    rec = _Recorder()
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        i = pulled
        pulled += 1
        if i >= len(chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[i], "more_body": i < len(chunks) - 1}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    asyncio.run(RequestLimits(app or rec.app, LIMIT, 2000)(scope, receive, rec.send))
    return rec, pulled


def _status(rec: _Recorder) -> int:
    starts = [m for m in rec.sent if m["type"] == "http.response.start"]
    assert len(starts) == 1
    return int(starts[0]["status"])


def test_declared_length_over_the_limit_never_reaches_the_app() -> None:
    rec, pulled = _run([(b"content-length", b"1001")], [b"x" * 1001])
    # The body is drained and discarded (so the socket closes clean), never handed on.
    assert _status(rec) == 413 and not rec.called and pulled == 1


def test_streamed_body_is_cut_at_the_limit() -> None:
    seen: list[int] = []

    async def counting_app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            msg = await receive()
            seen.append(len(msg.get("body", b"")))
            if not msg.get("more_body"):
                break

    chunks = [b"x" * 300] * 100  # 30 kB announced by no header
    rec, pulled = _run([], chunks, app=counting_app)
    assert _status(rec) == 413
    assert seen == [300] * 3  # the app got 900 bytes; the chunk that passed the limit cut it off
    assert pulled == 100  # the rest was drained before the answer, not kept


def test_a_client_waiting_for_100_continue_is_not_asked_for_the_body() -> None:
    headers = [(b"content-length", b"5000"), (b"expect", b"100-continue")]
    rec, pulled = _run(headers, [b"x" * 5000])
    assert _status(rec) == 413 and pulled == 0


def test_a_refused_body_is_drained_only_so_far() -> None:
    chunks = [b"x" * 4096] * 1000  # 4 MB, well past what is worth draining
    rec, pulled = _run([(b"content-length", str(4096 * 1000).encode())], chunks)
    assert _status(rec) == 413 and not rec.called and pulled == 0  # declared past the bound
    rec, pulled = _run([], chunks)  # the same body, chunked: its size is learned as it comes
    assert _status(rec) == 413
    # The chunk that passed the limit, then just past 1 MiB drained; then the connection is cut.
    assert pulled == 1 + (1 << 20) // 4096 + 1


def test_bodies_within_the_limit_pass() -> None:
    rec, _ = _run([(b"content-length", b"1000")], [b"x" * 500, b"x" * 500])
    assert _status(rec) == 200 and rec.sent[-1]["body"] == b"1000"
    rec, _ = _run([], [b"x" * 999, b"x"])
    assert _status(rec) == 200 and rec.sent[-1]["body"] == b"1000"


def test_a_bad_content_length_is_a_400() -> None:
    rec, pulled = _run([(b"content-length", b"12abc")], [b"x"])
    assert _status(rec) == 400 and not rec.called and pulled == 0


@pytest.mark.parametrize("bad", [b"\xb2", b"\xb9\xb3", b"-1", b"+5", b" "])
def test_a_content_length_of_non_ascii_digits_is_a_400_too(bad: bytes) -> None:
    # "²" (latin-1 0xb2) is a digit to str.isdigit but not to int(): it raised ValueError. h11
    # refuses such a header before relia sees it; another server in front might not.
    rec, pulled = _run([(b"content-length", bad)], [b"x"])
    assert _status(rec) == 400 and not rec.called and pulled == 0


def test_headers_over_the_limit_are_a_431() -> None:
    rec, pulled = _run([(b"x-pad", b"a" * 2000)], [b""])
    assert _status(rec) == 431 and not rec.called and pulled == 0
    rec, _ = _run([(b"x-pad", b"a" * 1900)], [b""])
    assert _status(rec) == 200


# -- through the app (the limit must win over the app's own error handling) --------------------


def test_app_answers_413_for_both_kinds_of_body() -> None:
    c = TestClient(_app(), base_url="http://localhost")
    assert c.post("/api/v1/write", content=b"x" * LIMIT).json() == {"bytes": LIMIT}
    assert c.post("/api/v1/write", content=b"x" * (LIMIT + 1)).status_code == 413

    def chunked() -> Iterator[bytes]:
        for _ in range(50):
            yield b"y" * 100

    r = c.post("/api/v1/write", content=chunked())
    assert r.status_code == 413 and "1000 bytes" in r.json()["detail"]
    # Routes that do not read the body are not affected by it being declared small.
    assert c.get("/api/v1/series").status_code == 200


# -- a real uvicorn server: the body limit and uvicorn's header limit ---------------------------


def _serve(app: Any, cfg: ApiConfig) -> Iterator[str]:
    """Run ``app`` under relia's uvicorn set-up on an ephemeral loopback port; yield its URL."""
    sock = _bind("127.0.0.1", 0)
    api = _Api(app, sock, cfg)
    api.start()
    try:
        yield _url(sock)
    finally:
        api.stop()


@pytest.fixture
def server() -> Iterator[str]:
    cfg = ApiConfig(port=0, max_body_bytes=LIMIT, max_header_bytes=4096)
    yield from _serve(_app(cfg.max_body_bytes, cfg.max_header_bytes), cfg)


def test_real_server_limits_bodies(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10) as c:
        assert c.post("/api/v1/write", content=b"x" * 10).json() == {"bytes": 10}
        assert c.post("/api/v1/write", content=b"x" * 5000).status_code == 413
        r = c.post("/api/v1/write", content=iter([b"z" * 600, b"z" * 600, b"z" * 600]))
        assert r.status_code == 413
        assert c.get("/healthz").status_code == 200  # the server lives on


def test_real_server_answers_413_to_a_body_still_arriving(server: str) -> None:
    # The server decides on the headers alone; the rest of the body arrives after. Closing with
    # those bytes unread would reset the connection and could lose the 413 on its way out.
    host, port = server.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /api/v1/write HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n")
        s.sendall(b"x" * 2000)
        time.sleep(0.05)
        s.sendall(b"x" * 3000)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413"), reply[:100]
    assert reply.endswith(b'"request body over 1000 bytes"}'), reply[-100:]


def test_content_length_with_transfer_encoding_is_400_and_the_connection_closes(
    server: str,
) -> None:
    # Request smuggling: a proxy going by Content-Length passes the GET below as part of the
    # body, uvicorn going by Transfer-Encoding answered it as a second request.
    host, port = server.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            b"POST /api/v1/write HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            b"GET /api/v1/series HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        start = time.monotonic()
        reply = _read_all(s)  # EOF: closed by the server after its answer
    assert time.monotonic() - start < 3  # not uvicorn's keep-alive timeout
    assert reply.startswith(b"HTTP/1.1 400"), reply[:100]
    assert reply.count(b"HTTP/1.1 ") == 1, reply  # the second request was not answered
    assert b"connection: close" in reply.lower()
    assert b"both Content-Length and Transfer-Encoding" in reply


def test_real_server_limits_headers(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10) as c:
        assert c.get("/healthz", headers={"X-Pad": "a" * 3000}).status_code == 200
        assert c.get("/healthz", headers={"X-Pad": "a" * 5000}).status_code == 431
    # A header block that does not arrive in one read: h11 stops buffering it, answers 400 and
    # closes (httpx may see either, so a raw socket).
    host, port = server.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"a" * 200_000)
        except (BrokenPipeError, ConnectionResetError):
            # The server may answer and close before it has taken all 200 KB; its answer is
            # already in our receive queue, which a reset does not empty.
            pass
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:100]


# -- slow clients: a deadline for the headers, a timeout between parts of the body --------------


@pytest.fixture
def impatient_server() -> Iterator[str]:
    cfg = ApiConfig(port=0, max_body_bytes=LIMIT, header_timeout=0.5, body_timeout=0.5)
    app = create_app(
        MemoryStore(),
        routers=[(_echo(), Role.INGEST)],
        max_body_bytes=LIMIT,
        body_timeout_s=cfg.body_timeout,
    )
    yield from _serve(app, cfg)


def _connect(server: str) -> socket.socket:
    host, port = server.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _read_all(s: socket.socket) -> bytes:
    reply = b""
    while chunk := s.recv(65536):
        reply += chunk
    return reply


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    impatient_server: str,
) -> None:
    with _connect(impatient_server) as s:
        start = time.monotonic()
        assert _read_all(s) == b""  # closed by the server, not by our 10 s timeout
        assert 0.4 < time.monotonic() - start < 5


def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_deadline(impatient_server: str) -> None:
    # Slowloris: every byte resets uvicorn's keep-alive timer, never the header deadline.
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100
    with _connect(impatient_server) as s:
        start = time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):  # noqa: PT012
            for byte in request:
                s.sendall(bytes([byte]))
                time.sleep(0.05)
        assert time.monotonic() - start < 3
        assert s.recv(4096) == b""


def test_the_deadline_comes_again_for_the_next_request_on_a_kept_alive_connection(
    impatient_server: str,
) -> None:
    with _connect(impatient_server) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        reply = b""
        while not reply.endswith(b"}}"):  # the whole response (it may come in two segments)
            chunk = s.recv(65536)
            assert chunk, reply
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200")
        s.sendall(b"GET /healthz HTTP/1.1\r\n")  # the next request's headers, never finished
        start = time.monotonic()
        for _ in range(20):  # a byte every 0.1 s keeps uvicorn's keep-alive timer off
            try:
                s.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
        assert time.monotonic() - start < 1.5
        assert s.recv(4096) == b""


def test_requests_that_keep_pace_are_not_cut_off(impatient_server: str) -> None:
    with httpx.Client(base_url=impatient_server, timeout=10) as c:
        for _ in range(3):
            assert c.get("/healthz").status_code == 200
            time.sleep(0.2)  # kept alive between requests, within every deadline
        body = iter([b"x" * 100 for _ in range(5)])  # each part well within the body timeout
        assert c.post("/api/v1/write", content=body).json() == {"bytes": 500}


def test_a_body_that_stops_arriving_gets_408_and_the_connection_closes(
    impatient_server: str,
) -> None:
    with _connect(impatient_server) as s:
        s.sendall(b"POST /api/v1/write HTTP/1.1\r\nHost: localhost\r\nContent-Length: 500\r\n\r\n")
        s.sendall(b"x" * 100)
        start = time.monotonic()
        reply = _read_all(s)  # nothing more is sent: the server answers and closes
    assert 0.4 < time.monotonic() - start < 5
    assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
    assert b"connection: close" in reply.lower()
    assert reply.endswith(b'"request body not received within 0.5s"}'), reply[-100:]


def test_a_pipelined_request_already_in_is_not_cut_off_while_it_is_served(
    impatient_server: str,
) -> None:
    # Two requests in one send: the second's headers are in when the first's response ends, so
    # no deadline may run for it (a slow handler would be cut off mid-request).
    with _connect(impatient_server) as s:
        s.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
            b"POST /api/v1/write HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n"
            b"yyyyy"
        )
        time.sleep(0.35)
        s.sendall(b"y" * 3)
        time.sleep(0.35)  # the headers came 0.7 s ago, past header_timeout; each gap in time
        s.sendall(b"y" * 2)
        reply = b""
        while reply.count(b"HTTP/1.1 ") < 2 or not reply.endswith(b"}"):
            chunk = s.recv(65536)
            assert chunk, reply
            reply += chunk
    assert reply.count(b"HTTP/1.1 200") == 2 and reply.endswith(b'{"bytes":10}'), reply


# -- a cap on connections ------------------------------------------------------------------------


@pytest.fixture
def capped_server() -> Iterator[str]:
    cfg = ApiConfig(port=0, max_connections=2)
    yield from _serve(create_app(MemoryStore()), cfg)


def test_a_request_on_a_connection_past_max_connections_gets_503(capped_server: str) -> None:
    with contextlib.ExitStack() as stack:
        first, second, third = (
            stack.enter_context(httpx.Client(base_url=capped_server, timeout=10)) for _ in range(3)
        )
        # Two kept-alive connections are open (idle between requests: they still count).
        assert first.get("/healthz").status_code == 200
        assert second.get("/healthz").status_code == 200
        refused = third.get("/healthz")
        assert refused.status_code == 503
        assert refused.headers["connection"] == "close"
        assert first.get("/healthz").status_code == 200  # those within the cap go on
        first.close()
        deadline = time.monotonic() + 5
        while (status := third.get("/healthz").status_code) == 503:
            assert time.monotonic() < deadline, "the freed connection never counted"
            time.sleep(0.05)
        assert status == 200


def test_a_path_with_its_own_body_limit_takes_bodies_over_the_api_limit() -> None:
    app = _app()
    app.limit_body("/api/v1/write", 2 * LIMIT)  # type: ignore[attr-defined]
    client = TestClient(app, base_url="http://localhost")
    r = client.post("/api/v1/write", content=b"x" * (LIMIT + LIMIT // 2))
    assert r.status_code == 200 and r.json() == {"bytes": LIMIT + LIMIT // 2}
    assert client.post("/api/v1/write", content=b"x" * (2 * LIMIT + 1)).status_code == 413
    assert client.post("/api/v1/findings", content=b"x" * (LIMIT + 1)).status_code == 413
