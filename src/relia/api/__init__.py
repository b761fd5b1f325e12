"""HTTP API and dashboard."""

from relia.api.app import create_app, parse_time

__all__ = ["create_app", "parse_time"]
