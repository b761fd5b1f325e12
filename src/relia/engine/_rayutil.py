"""What ``relia`` does before and around ``ray.init``: check that an address can work, and keep
Ray's own log lines off the terminal (a CLI run prints one clear message, not Ray's)."""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from relia._rayaddress import ray_address_problem
from relia.errors import ConfigError

__all__ = ["check_ray_address", "init_address", "quiet_ray_logs"]

#: How long the reachability check of a ``host:port`` address waits for a TCP connection.
CONNECT_TIMEOUT_S = 3.0


def _has_ray_client() -> bool:
    """Whether Ray Client's dependency (``grpc``, from ``ray[client]``) can be imported."""
    return importlib.util.find_spec("grpc") is not None


def init_address(address: str | None) -> str:
    """What ``ray.init`` is given for ``address``: unset is ``"local"``, a Ray of this process'
    own. Left unset, ``ray.init`` would join ``RAY_ADDRESS`` or the cluster of the last
    ``ray start`` on this machine (``/tmp/ray/ray_current_cluster``, even a stale one), which
    relia's docs and its address check do not promise."""
    return "local" if address is None else address


def check_ray_address(address: str | None, where: str) -> None:
    """:class:`ConfigError` (``where`` names the option) for an address that cannot work.

    ``ray.init`` retries a ``host:port`` nobody listens on for many minutes, printing Ray's
    warnings as it goes; a TCP connection to the port, tried for a few seconds first, turns
    that into one message. A scheme other than ``ray://`` or a port out of 1-65535 is refused
    without trying (:func:`~relia._rayaddress.ray_address_problem`). ``auto`` joins
    ``RAY_ADDRESS`` when that is set, so that address is tried the same way and named. ``ray://``
    (Ray Client) needs the ``grpcio`` that ``ray[client]`` brings, which ``relia[ray]`` does not
    install: refused at once with the command to add it. Unset (a local Ray: see
    :func:`init_address`), ``local`` and other forms go to Ray as they are.
    """
    if address is None or address == "local":
        return
    if address == "auto":
        from_env = os.environ.get("RAY_ADDRESS", "")
        if from_env in ("", "auto", "local"):
            return  # Ray looks for a cluster on this machine and says so when it finds none
        _check_given(from_env, where, f"{from_env} (auto: from RAY_ADDRESS)")
        return
    _check_given(address, where, address)


def _check_given(address: str, where: str, shown: str) -> None:
    """The checks of :func:`check_ray_address` on a given ``address``, named ``shown``."""
    problem = ray_address_problem(address)
    if problem is not None:
        raise ConfigError(problem.replace(address, shown, 1), where=where)
    if address.startswith("ray://"):
        if not _has_ray_client():
            raise ConfigError(
                f"{shown}: a ray:// (Ray Client) address needs pip install 'ray[client]'; "
                "or give the cluster's GCS address host:6379 from one of its nodes",
                where=where,
            )
        return
    host, sep, port_text = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit():
        return  # not host:port: Ray says what is wrong with it
    try:
        with socket.create_connection((host, int(port_text)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError) or reason == "timed out":
            reason = f"no answer within {CONNECT_TIMEOUT_S:g} s"
        raise ConfigError(
            f"cannot connect to Ray at {shown}: {reason.lower()}", where=where
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
