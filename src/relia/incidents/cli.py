"""``relia incidents list`` and ``relia incidents show ID``.

They ask the running relia over HTTP (``--url``, default: the config's API address); when nothing
listens there (connection refused) they read the store in the config's ``data_dir`` directly, which
is free then: only a running relia holds it.
"""

from __future__ import annotations

import json
import re
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from relia._cliutil import check_url, err_console, stdout_console, to_stdout, user_errors
from relia._urls import shown_url
from relia.errors import ConfigError, DataError, SourceError
from relia.incidents.model import IncidentStatus

if TYPE_CHECKING:
    from relia.store.duckdb import DuckDBStore
    from relia.store.postgres import PostgresStore

__all__ = ["incidents_app"]

incidents_app = typer.Typer(
    help="Incidents: findings grouped by time, labels and topology, with a likely cause.",
    no_args_is_help=True,
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="relia.yaml (default: ./relia.yaml if present)"),
]
UrlOpt = Annotated[
    str | None,
    typer.Option("--url", help="base URL of the running relia (default: the config's api)"),
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="RELIA_TOKEN", help="API token (env RELIA_TOKEN)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the API's JSON instead of a table")]

_TIMEOUT_S = 10.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_INCIDENT = "no incident with id"  # the API's 404 detail for an id it does not hold


class _Source:
    """Where the answers come from: the running relia's API, else the store."""

    def __init__(self, config: Path | None, url: str | None, token: str | None) -> None:
        from relia.config import load_config

        if config is None and Path("relia.yaml").exists():
            config = Path("relia.yaml")
        # A reader needs no webhook's signing secret in its environment.
        self.cfg = load_config(config, secrets=False)
        #: How the API's certificate is checked: as any HTTPS client does for a given --url;
        #: pinned to the config's own certificate when the URL is the config's.
        self.verify: ssl.SSLContext | bool = True
        if url is None:
            host = self.cfg.api.host
            if host in ("0.0.0.0", "::", ""):  # listening everywhere: ask over loopback
                host = "127.0.0.1"
            if ":" in host:
                host = f"[{host}]"
            scheme = "https" if self.cfg.api.tls else "http"
            url = f"{scheme}://{host}:{self.cfg.api.port}"
            if self.cfg.api.tls_cert is not None:
                self.verify = _pinned(self.cfg.api.tls_cert)
        check_url(url, "--url")
        if token is not None and not (token.isascii() and token.isprintable()):
            # It goes into an Authorization header, which carries ASCII only.
            raise ConfigError("an API token is printable ASCII", where="--token")
        self.url = url.rstrip("/")
        self.shown = shown_url(self.url)  # for messages: without a password
        self.token = token

    def get(self, path: str, params: dict[str, Any]) -> tuple[int, Any] | None:
        """(status, JSON body) from the API, or None when nothing listens at the URL."""
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        from relia._http import deadline_client, request_deadline

        try:
            # Bounded as a whole: httpx's timeout is per read, and a server that trickles its
            # headers would hold the command for good.
            with (
                deadline_client(timeout=_TIMEOUT_S, verify=self.verify) as client,
                request_deadline(_TIMEOUT_S),
            ):
                r = client.get(self.url + path, params=params, headers=headers)
        except httpx.ConnectError as e:
            if _refused(e):
                return None
            raise SourceError(f"cannot reach relia: {e}", where=self.shown) from None
        except httpx.HTTPError as e:
            raise SourceError(
                f"cannot reach relia: {e or type(e).__name__}", where=self.shown
            ) from None
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code == 401:
            if self.token:  # one was sent: it is wrong (or revoked), not missing
                raise DataError(
                    "relia refused the API token (401): check --token or RELIA_TOKEN",
                    where=self.shown,
                )
            raise DataError(
                "relia wants an API token: give --token or set RELIA_TOKEN",
                where=self.shown,
            )
        if r.status_code == 403:
            raise DataError("the API token may not read incidents", where=self.shown)
        if r.status_code >= 400 and r.status_code != 404:
            detail = body.get("detail") if isinstance(body, dict) else None
            text = detail if isinstance(detail, str) else json.dumps(detail) if detail else r.text
            raise DataError(f"relia answered {r.status_code}: {text}", where=self.shown)
        if not isinstance(body, dict):
            raise SourceError(f"relia answered {r.status_code} without JSON", where=self.shown)
        return r.status_code, body

    def open_store(self) -> DuckDBStore | PostgresStore:
        """The configured store (read only by the caller), for when nothing listens at the URL:
        the PostgreSQL store when ``store:`` names one, else the DuckDB file in ``data_dir``,
        which must exist (opening would create an empty one)."""
        from relia.store import open_store_url
        from relia.store.duckdb import STORE_FILE, DuckDBStore

        if self.cfg.store_is_postgresql:
            assert self.cfg.store is not None
            err_console.print(
                f"relia is not running at {self.shown}: reading the PostgreSQL store",
                markup=False,
            )
            return open_store_url(self.cfg.store, self.cfg.data_dir)
        root = Path(self.cfg.store) if self.cfg.store else self.cfg.data_dir
        path = root / STORE_FILE
        if not path.exists():
            raise DataError(
                f"nothing listens at {self.shown} and there is no store at {path}: is relia up, "
                "and is this its config (--config) or address (--url)?"
            )
        err_console.print(
            f"relia is not running at {self.shown}: reading the store {path}", markup=False
        )
        return DuckDBStore(path)


def _pinned(cert_file: Path) -> ssl.SSLContext:
    """A TLS context that trusts exactly the first certificate of ``cert_file`` (relia's own,
    leaf first) and nothing else, whatever name it was issued for.

    The URL asks 127.0.0.1 while the certificate names the service (or ``localhost``), so the
    name cannot be checked; the pin stands in for it. Only the leaf is trusted, as a partial
    chain: trusting the file's intermediates as CAs would admit every certificate they issued.
    """
    text = cert_file.read_text(encoding="ascii", errors="replace")
    leaf = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.DOTALL)
    if leaf is None:  # checked at config load: a file without one is refused there
        raise ConfigError("no PEM certificate in the file", where=str(cert_file))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.load_verify_locations(cadata=leaf.group(0))
    return context


def _refused(e: Exception) -> bool:
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return True
        cause = cause.__cause__ or cause.__context__
    return "refused" in str(e).lower()


def _parse_since(since: str | None) -> int | None:
    if since is None:
        return None
    from relia.api.app import parse_time
    from relia.engine.loop import wall_clock_ms

    try:
        # The API's own reading (that of relia.timeparse), so both ways to list agree.
        return parse_time(since, wall_clock_ms(), field="since")
    except DataError as exc:
        raise DataError(exc.message, where="--since") from None


@incidents_app.command("list")
@user_errors
def list_incidents(
    status: Annotated[
        IncidentStatus | None, typer.Option("--status", help="only open or resolved ones")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="updated at or after: -1h, ISO-8601, ms")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="at most this many incidents")
    ] = 100,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List incidents, most recently updated first."""
    src = _Source(config, url, token)
    lo = _parse_since(since)
    params: dict[str, Any] = {"limit": limit}
    if status is not None:
        params["status"] = status.value
    if lo is not None:
        # ISO-8601 to the server: an epoch number below 1e11 would read as seconds there.
        params["since"] = (_EPOCH + timedelta(milliseconds=lo)).isoformat()
    got = src.get("/api/v1/incidents", params)
    if got is not None:
        if got[0] == 404:  # a wrong path in --url, or another service: not "no incidents"
            raise DataError("relia answered 404: no incidents API at this address", where=src.shown)
        incidents = got[1].get("incidents", [])
        # An older relia sends no flag: a full page may have been cut.
        truncated = bool(got[1].get("truncated", len(incidents) >= limit))
    else:
        from relia.incidents.api import incident_json

        with src.open_store() as store:
            found = store.incidents(since=lo, status=status, limit=limit + 1)
        truncated = len(found) > limit
        incidents = [incident_json(i) for i in found[:limit]]
    if as_json:
        _print_json({"incidents": incidents, "truncated": truncated})
        return
    _print_list(incidents)
    if truncated:
        # Said apart from the table (stderr), so a pipe reading the table reads only rows.
        typer.echo(
            f"the {len(incidents)} most recently updated are shown; more match "
            "(raise --limit, up to 10,000, or narrow with --since or --status)",
            err=True,
        )


def _has_incidents_api(src: _Source, answer: dict[str, Any]) -> bool:
    """Whether a 404 for an incident came from relia's incidents API (the id is unknown) rather
    than from an address without it. The API says ``no incident with id …``; an id that cannot
    be routed (``a/b``) gets the framework's plain 404, so then the list is asked for."""
    detail = answer.get("detail")
    if isinstance(detail, str) and detail.startswith(_NO_INCIDENT):
        return True
    probe = src.get("/api/v1/incidents", {"limit": 1})
    return probe is not None and probe[0] == 200 and isinstance(probe[1].get("incidents"), list)


@incidents_app.command("show")
@user_errors
def show_incident(
    incident_id: Annotated[str, typer.Argument(help="the incident's id (from list)")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show one incident: its likely cause and its findings."""
    if not incident_id.strip("."):  # "", "." and ".." would name a path, not an incident
        raise DataError(f"no incident with id {incident_id!r}")
    src = _Source(config, url, token)
    # Quoted: an id with '/', '?' or '#' names no incident, never another route.
    got = src.get(f"/api/v1/incidents/{quote(incident_id, safe='')}", {})
    body: dict[str, Any] | None
    if got is not None:
        body = got[1] if got[0] != 404 else None
        if got[0] == 404 and not _has_incidents_api(src, got[1]):
            # A wrong path in --url, or another service: not "no such incident".
            raise DataError("relia answered 404: no incidents API at this address", where=src.shown)
    else:
        from relia.api.app import _finding_json
        from relia.incidents.api import incident_findings, incident_json

        with src.open_store() as store:
            inc = store.incident(incident_id)
            body = (
                None
                if inc is None
                else {
                    "incident": incident_json(inc),
                    "findings": [_finding_json(f) for f in incident_findings(store, inc)],
                }
            )
    if body is None:
        raise DataError(f"{_NO_INCIDENT} {incident_id!r}")
    if as_json:
        _print_json(body)
        return
    _print_detail(body)


# -- output ------------------------------------------------------------------------------------


def _out() -> Console:
    return stdout_console()


def _print_json(obj: Any) -> None:
    to_stdout(json.dumps(obj, indent=2) + "\n")


def _time(ms: Any) -> str:
    from relia.timeparse import format_ms

    return "–" if ms is None else format_ms(int(ms))


def _print_list(incidents: list[dict[str, Any]]) -> None:
    console = _out()
    if not incidents:
        console.print("no incidents", markup=False)
        return
    table = Table(show_edge=False, header_style="bold")
    for col in ("id", "status", "severity", "version", "start (UTC)", "updated", "findings"):
        table.add_column(col)
    table.add_column("title", overflow="fold")
    for i in incidents:
        # Every finding it had: finding_ids lists only the newest of each key.
        count = i.get("finding_count", len(i["finding_ids"]))
        table.add_row(
            str(i["id"]), str(i["status"]), str(i["severity"]), str(i["version"]),
            _time(i["start"]), _time(i["updated_at"]), str(count), str(i["title"]),
        )  # fmt: skip
    console.print(table)


def _print_detail(body: dict[str, Any]) -> None:
    console = _out()
    i = body["incident"]
    lines = [
        f"incident {i['id']}: {i['title']}",
        f"status {i['status']} (version {i['version']}), severity {i['severity']}",
        f"findings from {_time(i['start'])} to {_time(i['end'])}; opened {_time(i['opened_at'])}"
        + (f", resolved {_time(i['resolved_at'])}" if i.get("resolved_at") is not None else ""),
    ]
    if i.get("merged_into"):
        lines.append(f"merged into {i['merged_into']}")
    if i.get("labels"):
        lines.append("labels: " + ", ".join(f"{k}={v}" for k, v in i["labels"].items()))
    for line in lines:
        console.print(line, markup=False)
    if i.get("cause"):
        console.print("\nlikely cause, best first:", markup=False)
        cause = Table(show_edge=False, header_style="bold")
        for col in ("#", "key", "score", "why"):
            cause.add_column(col)
        for n, c in enumerate(i["cause"], 1):
            cause.add_row(str(n), str(c["key"]), f"{float(c['score']):.3f}", str(c["reason"]))
        console.print(cause)
    findings = body.get("findings", [])
    count = int(i.get("finding_count", len(findings)))
    # An incident keeps the newest findings of each key; the others still count.
    of = f" of {count}, the newest of each key" if count > len(findings) else ""
    console.print(f"\nfindings ({len(findings)}{of}):", markup=False)
    if findings:
        table = Table(show_edge=False, header_style="bold")
        for col in ("start (UTC)", "end (UTC)", "severity", "score", "summary"):
            table.add_column(col)
        for f in findings:
            table.add_row(
                _time(f["start"]), _time(f["end"]), str(f["severity"]), f"{float(f['score']):.3f}",
                str(f["summary"]),
            )  # fmt: skip
        console.print(table)
