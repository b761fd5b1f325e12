"""What ``relia`` does before and around ``ray.init``: check that an address can work, and keep
Ray's own log lines off the terminal (a CLI run prints one clear message, not Ray's)."""

from __future__ import annotations

import importlib.util
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from relia.errors import ConfigError

__all__ = ["check_ray_address", "quiet_ray_logs"]

#: How long the reachability check of a ``host:port`` address waits for a TCP connection.
CONNECT_TIMEOUT_S = 3.0


def _has_ray_client() -> bool:
    """Whether Ray Client's dependency (``grpc``, from ``ray[client]``) can be imported."""
    return importlib.util.find_spec("grpc") is not None


def check_ray_address(address: str | None, where: str) -> None:
    """:class:`ConfigError` (``where`` names the option) for an address that cannot work.

    ``ray.init`` retries a ``host:port`` nobody listens on for many minutes, printing Ray's
    warnings as it goes; a TCP connection to the port, tried for a few seconds first, turns
    that into one message. ``ray://`` (Ray Client) needs the ``grpcio`` that ``ray[client]``
    brings, which ``relia[ray]`` does not install: refused at once with the command to add it.
    ``auto``, ``local`` and other forms go to Ray as they are.
    """
    if address is None or address in ("auto", "local"):
        return
    if address.startswith("ray://"):
        if not _has_ray_client():
            raise ConfigError(
                f"{address}: a ray:// (Ray Client) address needs pip install 'ray[client]'; "
                "or give the cluster's GCS address host:6379 from one of its nodes",
                where=where,
            )
        return
    if "://" in address:
        return
    host, sep, port_text = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return  # not host:port: Ray says what is wrong with it
    try:
        with socket.create_connection((host, int(port_text)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError) or reason == "timed out":
            reason = f"no answer within {CONNECT_TIMEOUT_S:g} s"
        raise ConfigError(
            f"cannot connect to Ray at {address}: {reason.lower()}", where=where
        ) from None


@contextmanager
def quiet_ray_logs() -> Iterator[None]:
    """Raise the ``ray`` logger to ERROR while Ray starts or connects: its warnings (the
    token-authentication notice among them) otherwise reach stderr through the root handler
    before relia's own message."""
    logger = logging.getLogger("ray")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
