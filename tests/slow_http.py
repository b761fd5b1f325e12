"""A slow HTTP server on loopback, for tests of timeouts that must bound a whole request: it
answers GET and POST after ``delay`` seconds, then sends ``body`` one line every ``every``
seconds (a target or a Prometheus that trickles its answer), or, with ``header_every``, sends
its status line and then one byte of a header every ``header_every`` seconds for ever (a server
that never finishes its headers, each read just inside httpx's timeout)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["slow_server", "timed"]


@contextmanager
def slow_server(
    body: bytes,
    *,
    delay: float = 0.0,
    every: float = 0.0,
    ctype: str = "text/plain",
    header_every: float = 0.0,
) -> Iterator[str]:
    """Serve ``body`` on 127.0.0.1 (ephemeral port) while the block runs; yields its URL."""
    stop = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if stop.wait(delay):
                return
            if header_every:
                self._trickle_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Connection", "close")
            if not every:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for line in body.splitlines(keepends=True) if every else [body]:
                    self.wfile.write(line)
                    self.wfile.flush()
                    if every and stop.wait(every):
                        return
            except OSError:  # the client gave up: what the test is about
                return

        def _trickle_headers(self) -> None:
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                self.wfile.flush()
                while not stop.wait(header_every):
                    self.wfile.write(b"X")  # a header name that never ends
                    self.wfile.flush()
            except OSError:  # the client gave up: what the test is about
                return

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def timed(call: Callable[[], object], limit: float = 5.0) -> tuple[float, BaseException | None]:
    """Run ``call`` in a thread; the seconds it took and what it raised (None: it returned).
    Fails the test when it is still running after ``limit`` seconds, so a request that hangs
    cannot hang the suite (the thread ends when the slow server stops)."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    began = time.monotonic()
    thread.start()
    thread.join(limit)
    took = time.monotonic() - began
    if thread.is_alive():
        raise AssertionError(f"still running after {limit:g}s")
    return took, (raised[0] if raised else None)
