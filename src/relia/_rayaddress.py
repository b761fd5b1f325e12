"""The shape of a Ray address, checked without Ray or the network, so that ``relia.yaml`` (``relia
config check``) and the CLI refuse the same typos that ``ray.init`` would retry for minutes."""

from __future__ import annotations

__all__ = ["ray_address_problem"]


def ray_address_problem(address: str) -> str | None:
    """Why ``address`` cannot be a Ray address (a scheme other than ``ray://``, a port out of
    1-65535), or None. ``auto``, ``local``, ``host:port`` and ``ray://host:port`` pass; other
    forms go to Ray, which says what is wrong with them."""
    scheme, sep, _ = address.partition("://")
    if sep and scheme != "ray":
        # Ray reads any other scheme as a Ray Client URL and fails with a text about
        # RAY_ADDRESS that the user never set.
        return f"{address}: not a Ray address: give host:6379 (the GCS) or ray://host:10001"
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if sep and host.strip("[]") and port.isdigit() and not 0 < int(port) < 65536:
        # Ray does not refuse such a port: it retries the connection for minutes.
        return f"{address}: port must be 1-65535"
    return None
