"""URLs as relia shows them: a password in a URL never reaches a message, a log or a status."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["shown_url"]


def shown_url(url: str) -> str:
    """``url`` with its password, if it has one, replaced by ``***``.

    Prometheus and scrape targets behind basic auth are often written
    ``http://user:password@host``; error messages, logs and ``/healthz`` name the URL.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # unparsable: refused elsewhere, and nothing here is known to be secret
        return url
    if password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
