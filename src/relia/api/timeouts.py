"""A deadline for a request's line and headers, which uvicorn does not have.

uvicorn times out a keep-alive connection that stays silent after a response, but a connection
that never sends anything, or sends its headers a byte every few seconds, stays open for good:
enough of them use up the process's file descriptors (the "slowloris" attack). nginx closes such
connections after ``client_header_timeout``; this does the same for relia's own server. The body
of a request has its own timeout in :class:`relia.api.auth.RequestLimits` (between two reads, as
nginx's ``client_body_timeout``).

uvicorn takes a protocol class for ``http``; this one is its h11 protocol (relia uses h11 for its
header size limit) with a timer armed when a connection opens and after each response, and
cancelled once the next request's headers are complete.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["with_header_timeout"]

log = logging.getLogger(__name__)


class _HeaderDeadlineProtocol(H11Protocol):
    header_timeout_s = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._waiting_after: object = None  # the request cycle the next headers come after

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self._header_deadline is not None and self.cycle is not self._waiting_after:
            self._disarm()  # a new request's headers are in: the body has its own timeout

    def on_response_complete(self) -> None:
        # Armed first: uvicorn goes on to a pipelined request's events in here, whose headers
        # (already in) must disarm it.
        if not self.transport.is_closing():
            self._arm()
        super().on_response_complete()

    def _arm(self) -> None:
        self._disarm()
        self._waiting_after = self.cycle
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _too_slow(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.info(
            "closed the connection of %s: no complete request headers in %gs (api.header_timeout)",
            client,
            self.header_timeout_s,
        )
        self.transport.close()


def with_header_timeout(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request line and headers are not
    complete ``seconds`` after it opened or after its previous response."""
    return type("HeaderDeadlineProtocol", (_HeaderDeadlineProtocol,), {"header_timeout_s": seconds})
