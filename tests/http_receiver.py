"""A recording HTTP server on loopback, for tests that receive webhooks (relia's own sinks,
Alertmanager's notifications)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["HttpReceiver", "Post"]


@dataclass(frozen=True)
class Post:
    """One request as it arrived, and the status it was answered with."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    answered: int


class HttpReceiver:
    """An HTTP server on 127.0.0.1 (ephemeral port) keeping every POST in arrival order. Each is
    answered with ``answer()`` (called per request, so a test can take the receiver down) and an
    empty body. ``url`` has no path: senders add their own."""

    def __init__(self, answer: Callable[[], int] = lambda: 204) -> None:
        self._posts: list[Post] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                code = answer()
                post = Post(self.path, dict(self.headers), body, time.monotonic(), code)
                with outer._lock:
                    outer._posts.append(post)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def posts(self) -> list[Post]:
        """Every POST so far, oldest first (a copy)."""
        with self._lock:
            return list(self._posts)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
