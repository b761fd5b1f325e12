"""A slow HTTP server on loopback, for tests of timeouts that must bound a whole request: it
answers GET and POST after ``delay`` seconds, then sends ``body`` one line every ``every``
seconds (a target or a Prometheus that trickles its answer)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["slow_server"]


@contextmanager
def slow_server(
    body: bytes, *, delay: float = 0.0, every: float = 0.0, ctype: str = "text/plain"
) -> Iterator[str]:
    """Serve ``body`` on 127.0.0.1 (ephemeral port) while the block runs; yields its URL."""
    stop = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if stop.wait(delay):
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
