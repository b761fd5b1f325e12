"""HTTP API and dashboard.

``create_app`` and ``parse_time`` are loaded on first use: importing FastAPI costs the CLI about
0.2 s at start, and most commands (``relia token``, ``relia detect``) never serve HTTP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relia.api.app import create_app, parse_time

__all__ = ["create_app", "parse_time"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from relia.api import app

        return getattr(app, name)
    raise AttributeError(f"module 'relia.api' has no attribute {name!r}")
