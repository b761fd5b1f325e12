"""``relia incidents list/show``: over HTTP from a real uvicorn on loopback, and from the store
when nothing listens."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from typer.testing import CliRunner

from relia.cli import app
from relia.config import IncidentsConfig
from relia.incidents.api import incidents_router
from relia.incidents.correlate import IncidentCorrelator, key_labels
from relia.incidents.model import Finding, FindingKind, Severity
from relia.store import DuckDBStore, open_store_url
from relia.store.duckdb import STORE_FILE

runner = CliRunner()
T0 = 1_700_000_000_000
M = 60_000
TOKEN = "s3cret"


def finding(key: str, start: int) -> Finding:
    return Finding(
        id=Finding.make_id(FindingKind.METRIC, key, start, "t"), kind=FindingKind.METRIC,
        key=key, start=start, end=start + M, score=0.8, severity=Severity.WARNING,
        detector="t", summary=f"{key} is odd",
    )  # fmt: skip


def fill(path: Path | str) -> dict[str, str]:
    """A store (a DuckDB file, or a PostgreSQL DSN) with two incidents (api resolved, db open);
    returns their ids by first key."""
    c = IncidentCorrelator(IncidentsConfig(), lambda f: key_labels(f.key))
    a, b, d = (
        finding('cpu{job="api"}', T0),
        finding('mem{job="api"}', T0 + 1000),
        finding('cpu{job="db"}', T0 + 30 * M),
    )
    with open_store_url(path, ".") if isinstance(path, str) else DuckDBStore(path) as store:
        store.add_findings([a, b, d])
        store.save_incidents(c.update([a, b], T0 + M))
        store.save_incidents(c.update([], T0 + 20 * M))
        store.save_incidents(c.update([d], T0 + 31 * M))
        return {i.keys[0]: i.id for i in store.incidents()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    ids: dict[str, str]
    config: Path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """The router behind a bearer token, served by uvicorn on 127.0.0.1 in a thread."""
    ids = fill(tmp_path / "served.duckdb")
    store = DuckDBStore(tmp_path / "served.duckdb")

    def auth(request: Request) -> None:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            raise HTTPException(status_code=401, detail="missing or wrong bearer token")

    api = FastAPI()
    api.include_router(
        incidents_router(store, clock=lambda: T0 + 60 * M), dependencies=[Depends(auth)]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(api, log_level="error", lifespan="off"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    # A config whose data_dir has no store: answers can only have come over HTTP.
    config = tmp_path / "relia.yaml"
    config.write_text(f"data_dir: {tmp_path / 'empty'}\napi: {{port: {port}}}\n")
    try:
        yield Server(f"http://127.0.0.1:{port}", ids, config)
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()
        store.close()


def test_list_and_show_over_http(server: Server) -> None:
    base = ["--config", str(server.config), "--token", TOKEN]
    r = runner.invoke(app, ["incidents", "list", *base])
    assert r.exit_code == 0, r.output
    assert server.ids['cpu{job="db"}'] in r.stdout and server.ids['cpu{job="api"}'] in r.stdout
    assert "resolved" in r.stdout and "and 1 more on job=api" in r.stdout

    r = runner.invoke(app, ["incidents", "list", "--status", "open", "--json", *base])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)["incidents"]
    assert [i["id"] for i in got] == [server.ids['cpu{job="db"}']]

    api_id = server.ids['cpu{job="api"}']
    r = runner.invoke(app, ["incidents", "show", api_id, *base])
    assert r.exit_code == 0, r.output
    assert f"incident {api_id}" in r.stdout and "likely cause" in r.stdout
    assert 'mem{job="api"} is odd' in r.stdout and "findings (2)" in r.stdout

    r = runner.invoke(app, ["incidents", "show", api_id, "--json", *base])
    body = json.loads(r.stdout)
    assert body["incident"]["status"] == "resolved" and len(body["findings"]) == 2


def test_token_from_environment_and_missing_token(server: Server) -> None:
    cfg = ["--config", str(server.config)]
    r = runner.invoke(app, ["incidents", "list", "--json", *cfg], env={"RELIA_TOKEN": TOKEN})
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["incidents"]) == 2
    r = runner.invoke(app, ["incidents", "list", *cfg], env={"RELIA_TOKEN": ""})
    assert r.exit_code == 2
    assert "relia: error:" in r.stderr and "--token or set RELIA_TOKEN" in r.stderr


def test_unknown_id_and_bad_since_are_exit_2(server: Server) -> None:
    base = ["--url", server.url, "--token", TOKEN, "--config", str(server.config)]
    r = runner.invoke(app, ["incidents", "show", "nope", *base])
    assert r.exit_code == 2 and "relia: error: no incident with id 'nope'" in r.stderr
    r = runner.invoke(app, ["incidents", "list", "--since", "last tuesday", *base])
    assert r.exit_code == 2 and "--since:" in r.stderr and "last tuesday" in r.stderr


def test_falls_back_to_the_store_when_nothing_listens(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    ids = fill(data / STORE_FILE)
    config = tmp_path / "relia.yaml"
    config.write_text(f"data_dir: {data}\napi: {{port: {free_port()}}}\n")
    r = runner.invoke(app, ["incidents", "list", "--config", str(config), "--json"])
    assert r.exit_code == 0, r.output
    assert "relia is not running at" in r.stderr
    assert {i["id"] for i in json.loads(r.stdout)["incidents"]} == set(ids.values())
    r = runner.invoke(app, ["incidents", "list", "--config", str(config), "--status", "resolved"])
    assert r.exit_code == 0 and ids['cpu{job="api"}'] in r.stdout
    assert ids['cpu{job="db"}'] not in r.stdout
    r = runner.invoke(app, ["incidents", "show", ids['cpu{job="db"}'], "--config", str(config)])
    assert r.exit_code == 0, r.output
    assert 'cpu{job="db"} is odd' in r.stdout and "status open" in r.stdout
    r = runner.invoke(app, ["incidents", "show", "nope", "--config", str(config)])
    assert r.exit_code == 2 and "no incident with id 'nope'" in r.stderr


def test_no_server_and_no_store_is_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "relia.yaml"
    config.write_text(f"data_dir: {tmp_path / 'none'}\napi: {{port: {free_port()}}}\n")
    r = runner.invoke(app, ["incidents", "list", "--config", str(config)])
    assert r.exit_code == 2 and "there is no store at" in r.stderr
    assert not (tmp_path / "none").exists()  # a read command creates nothing
    r = runner.invoke(app, ["incidents", "list", "--url", "ftp://x", "--config", str(config)])
    assert r.exit_code == 2 and "--url: must start with http" in r.stderr


@pytest.mark.integration
def test_falls_back_to_the_postgresql_store(tmp_path: Path, postgres_dsn: str) -> None:
    ids = fill(postgres_dsn)
    config = tmp_path / "relia.yaml"
    config.write_text(
        f"store: {postgres_dsn}\ndata_dir: {tmp_path / 'unused'}\napi: {{port: {free_port()}}}\n"
    )
    r = runner.invoke(app, ["incidents", "list", "--config", str(config), "--json"])
    assert r.exit_code == 0, r.output
    assert "reading the PostgreSQL store" in r.stderr
    assert {i["id"] for i in json.loads(r.stdout)["incidents"]} == set(ids.values())
    r = runner.invoke(app, ["incidents", "show", ids['cpu{job="db"}'], "--config", str(config)])
    assert r.exit_code == 0 and 'cpu{job="db"} is odd' in r.stdout
    assert not (tmp_path / "unused").exists()
