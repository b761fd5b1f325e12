"""URLs as relia checks and shows them: one rule for what a request can be sent to (the CLI's
options and relia.yaml give the same message), and a password in a URL never reaches a message,
a log or a status."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["http_url_problem", "looks_like_conninfo", "shown_url"]


def http_url_problem(url: str) -> str | None:
    """Why no HTTP request can be sent to ``url`` (not http or https, no host, a bad port, an
    unclosed bracket), or None when one can. Checked when it is given, not on the first request,
    so a bad URL is reported with the option or the line that holds it."""
    if not url.startswith(("http://", "https://")):
        scheme, sep, _ = url.partition("://")
        hint = f", not {scheme}://" if sep else f" ({shown_url(f'http://{url}')}?)"
        return f"must start with http:// or https://{hint}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if not parts.hostname or any(c.isspace() for c in parts.hostname):
        return "not a valid URL: no host"
    import httpx  # what sends the requests: what it cannot parse is refused too

    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"not a valid URL: {exc}"
    return None


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


#: libpq's connection keywords most often written first (``host=… dbname=…``).
_CONNINFO_KEYS = frozenset(
    "host hostaddr port dbname user password passfile service sslmode options "
    "application_name connect_timeout target_session_attrs".split()
)


def looks_like_conninfo(value: str) -> bool:
    """Whether ``value`` reads as a libpq keyword/value connection string (some word is
    ``key=…`` with a libpq key), not a directory."""
    return any(
        word.partition("=")[1] and word.partition("=")[0].strip().lower() in _CONNINFO_KEYS
        for word in value.split()
    )
