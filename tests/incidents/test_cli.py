"""``relia incidents list/show``: over HTTP from a real uvicorn on loopback, and from the store
when nothing listens."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from typer.testing import CliRunner

from relia.cli import app
from relia.config import IncidentsConfig
from relia.incidents.api import incidents_router
from relia.incidents.correlate import IncidentCorrelator, key_labels
from relia.incidents.model import Finding, FindingKind, Severity
from relia.store import DuckDBStore, open_store_url
from relia.store.duckdb import STORE_FILE
from tests.closed_pipe import run_into_closed_pipe
from tests.slow_http import slow_server, timed

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


@contextmanager
def serve(api: FastAPI) -> Iterator[str]:
    """``api`` served by uvicorn on 127.0.0.1 in a thread; yields its base URL."""
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
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


def test_list_since_and_limit_over_http(server: Server) -> None:
    base = ["--config", str(server.config), "--token", TOKEN, "--json"]
    db, api = server.ids['cpu{job="db"}'], server.ids['cpu{job="api"}']
    r = runner.invoke(app, ["incidents", "list", "--since", str(T0 + 25 * M), *base])
    assert r.exit_code == 0, r.output
    assert [i["id"] for i in json.loads(r.stdout)["incidents"]] == [db]
    r = runner.invoke(app, ["incidents", "list", "--limit", "1", *base])
    assert r.exit_code == 0, r.output
    assert [i["id"] for i in json.loads(r.stdout)["incidents"]] == [db]  # most recent first
    r = runner.invoke(app, ["incidents", "list", *base])
    assert [i["id"] for i in json.loads(r.stdout)["incidents"]] == [db, api]


def test_list_since_and_limit_from_the_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    ids = fill(data / STORE_FILE)
    config = tmp_path / "relia.yaml"
    config.write_text(f"data_dir: {data}\napi: {{port: {free_port()}}}\n")
    base = ["--config", str(config), "--json"]
    db = ids['cpu{job="db"}']
    r = runner.invoke(app, ["incidents", "list", "--since", str(T0 + 25 * M), *base])
    assert r.exit_code == 0, r.output
    assert [i["id"] for i in json.loads(r.stdout)["incidents"]] == [db]
    r = runner.invoke(app, ["incidents", "list", "--limit", "1", *base])
    assert r.exit_code == 0, r.output
    assert [i["id"] for i in json.loads(r.stdout)["incidents"]] == [db]
    assert json.loads(r.stdout)["truncated"] is True  # the api one was left out
    r = runner.invoke(app, ["incidents", "list", "--limit", "2", *base])
    assert json.loads(r.stdout)["truncated"] is False
    # The table says so on stderr, apart from its rows.
    r = runner.invoke(app, ["incidents", "list", "--limit", "1", "--config", str(config)])
    assert r.exit_code == 0, r.output
    assert "the 1 most recently updated are shown; more match" in r.stderr
    assert "more match" not in r.stdout


def test_list_says_when_the_server_cut_the_list(server: Server) -> None:
    base = ["--config", str(server.config), "--token", TOKEN]
    r = runner.invoke(app, ["incidents", "list", "--limit", "1", "--json", *base])
    assert json.loads(r.stdout)["truncated"] is True
    r = runner.invoke(app, ["incidents", "list", "--limit", "2", "--json", *base])
    assert json.loads(r.stdout)["truncated"] is False
    r = runner.invoke(app, ["incidents", "list", "--limit", "1", *base])
    assert "more match" in r.stderr and "more match" not in r.stdout


def test_list_table_columns_and_no_incidents(server: Server) -> None:
    base = ["--config", str(server.config), "--token", TOKEN]
    api_id = server.ids['cpu{job="api"}']
    r = runner.invoke(app, ["incidents", "list", *base])
    assert r.exit_code == 0, r.output
    (row,) = [line for line in r.stdout.splitlines() if api_id in line]
    # id, status, severity, version, start, updated, findings, title
    assert re.search(
        rf"{api_id}\s.*resolved\s.*warning\s.*\b2\s.*2023-11-14T22:13:20Z\s.*"
        r"2023-11-14T22:33:20Z\s.*\b2\s.*cpu\{job=\"api\"\} and 1 more on job=api",
        row,
    ), row
    r = runner.invoke(app, ["incidents", "list", "--since", str(T0 + 50 * M), *base])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "no incidents"


def test_show_prints_resolution_labels_and_ranked_cause(server: Server) -> None:
    base = ["--config", str(server.config), "--token", TOKEN]
    r = runner.invoke(app, ["incidents", "show", server.ids['cpu{job="api"}'], *base])
    assert r.exit_code == 0, r.output
    assert "status resolved (version 2), severity warning" in r.stdout
    assert ", resolved 2023-11-14T22:33:20Z" in r.stdout
    assert "labels: job=api" in r.stdout
    assert re.search(
        r"^\s*1[\s│]+cpu\{job=\"api\"\}[\s│]+0\.405[\s│]+went wrong first", r.stdout, re.M
    )
    assert re.search(
        r"^\s*2[\s│]+mem\{job=\"api\"\}[\s│]+0\.155[\s│]+went wrong 1s", r.stdout, re.M
    )
    r = runner.invoke(app, ["incidents", "show", server.ids['cpu{job="db"}'], *base])
    assert r.exit_code == 0, r.output
    assert "status open" in r.stdout and "resolved" not in r.stdout


def test_token_that_may_not_read_is_exit_2(tmp_path: Path) -> None:
    api = FastAPI()

    @api.get("/api/v1/incidents")
    def forbidden() -> None:
        raise HTTPException(status_code=403, detail="forbidden")

    with serve(api) as url:
        r = runner.invoke(app, ["incidents", "list", "--url", url, "--token", "t"])
    assert r.exit_code == 2
    assert r.stderr == f"relia: error: {url}: the API token may not read incidents\n"


def test_a_server_that_trickles_its_headers_is_given_up_at_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # httpx's timeout is per read: one header byte every 0.2 s held the command for good.
    import relia.incidents.cli

    monkeypatch.setattr(relia.incidents.cli, "_TIMEOUT_S", 0.5)
    results = []
    with slow_server(b"", header_every=0.2) as url:
        took, error = timed(
            lambda: results.append(runner.invoke(app, ["incidents", "list", "--url", url]))
        )
    assert error is None and took < 2.0
    r = results[0]
    assert r.exit_code == 2
    assert r.stderr.startswith(f"relia: error: {url}: cannot reach relia: ")


def test_error_answers_are_one_line_and_exit_2(tmp_path: Path) -> None:
    """A 400, a 422 with a list of details, a 500 without JSON and a 200 without JSON (a
    proxy, another service) are each one error line, never a traceback."""
    api = FastAPI()

    @api.get("/api/v1/incidents/{kind}")
    def answer(kind: str) -> object:
        if kind == "bad":
            return JSONResponse({"detail": "bad since"}, status_code=400)
        if kind == "invalid":
            return JSONResponse({"detail": [{"msg": "too big"}]}, status_code=422)
        if kind == "boom":
            return PlainTextResponse("upstream down", status_code=500)
        return PlainTextResponse("hello")

    config = tmp_path / "relia.yaml"
    config.write_text(f"data_dir: {tmp_path / 'none'}\n")
    with serve(api) as url:
        got = {
            kind: runner.invoke(
                app, ["incidents", "show", kind, "--url", url, "--config", str(config)]
            )
            for kind in ("bad", "invalid", "boom", "text")
        }
    for r in got.values():
        assert r.exit_code == 2 and r.stderr.startswith("relia: error: "), r.output
        assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""
    assert "relia answered 400: bad since" in got["bad"].stderr
    assert 'relia answered 422: [{"msg": "too big"}]' in got["invalid"].stderr
    assert "relia answered 500: upstream down" in got["boom"].stderr
    assert "relia answered 200 without JSON" in got["text"].stderr


def test_show_merged_incident_names_its_successor(tmp_path: Path) -> None:
    api = FastAPI()
    incident = {
        "id": "a1", "status": "resolved", "title": "t", "severity": "warning", "labels": {},
        "start": T0, "end": T0 + M, "opened_at": T0, "updated_at": T0 + M,
        "resolved_at": T0 + M, "version": 3, "finding_ids": [], "keys": [], "cause": [],
        "merged_into": "b2",
    }  # fmt: skip

    @api.get("/api/v1/incidents/{incident_id}")
    def one(incident_id: str) -> object:
        return {"incident": incident, "findings": []}

    with serve(api) as url:
        r = runner.invoke(app, ["incidents", "show", "a1", "--url", url])
    assert r.exit_code == 0, r.output
    assert "merged into b2" in r.stdout and "findings (0):" in r.stdout


def test_config_address_listening_everywhere_is_asked_over_loopback(
    server: Server, tmp_path: Path
) -> None:
    port = server.url.rsplit(":", 1)[1]
    config = tmp_path / "everywhere.yaml"
    tokens = "{name: ops, role: admin, sha256: " + "ab" * 32 + "}"
    config.write_text(
        f"data_dir: {tmp_path / 'empty'}\n"
        f"api: {{host: 0.0.0.0, port: {port}, tokens: [{tokens}]}}\n"
    )
    r = runner.invoke(app, ["incidents", "list", "--config", str(config), "--token", TOKEN])
    assert r.exit_code == 0, r.output
    assert server.ids['cpu{job="db"}'] in r.stdout


def test_url_with_trailing_slash_and_default_config(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = runner.invoke(
        app, ["incidents", "list", "--url", server.url + "/", "--token", TOKEN, "--json"]
    )
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["incidents"]) == 2
    # ./relia.yaml is the config when none is given: its api address is asked.
    monkeypatch.chdir(server.config.parent)
    r = runner.invoke(app, ["incidents", "list", "--token", TOKEN, "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["incidents"]) == 2


def test_ipv6_api_address_is_bracketed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    fill(data / STORE_FILE)
    config = tmp_path / "relia.yaml"
    port = free_port()
    config.write_text(f"data_dir: {data}\napi: {{host: '::1', port: {port}}}\n")
    r = runner.invoke(app, ["incidents", "list", "--config", str(config)])
    assert r.exit_code == 0, r.output
    assert f"relia is not running at http://[::1]:{port}" in r.stderr


def test_falls_back_to_the_store_directory_the_config_names(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ids = fill(elsewhere / STORE_FILE)
    config = tmp_path / "relia.yaml"
    config.write_text(
        f"store: {elsewhere}\ndata_dir: {tmp_path / 'unused'}\napi: {{port: {free_port()}}}\n"
    )
    r = runner.invoke(app, ["incidents", "list", "--config", str(config), "--json"])
    assert r.exit_code == 0, r.output
    assert {i["id"] for i in json.loads(r.stdout)["incidents"]} == set(ids.values())


@pytest.mark.parametrize(
    "incident_id", ["?", "?status=open", "../incidents", "a/b", "x#y", "", ".", ".."]
)
def test_show_an_id_that_is_not_one_is_exit_2(server: Server, incident_id: str) -> None:
    base = ["--config", str(server.config), "--token", TOKEN]
    r = runner.invoke(app, ["incidents", "show", incident_id, *base])
    assert r.exit_code == 2, r.output
    assert r.stderr == f"relia: error: no incident with id {incident_id!r}\n"


def test_list_at_an_address_without_the_incidents_api_is_exit_2(tmp_path: Path) -> None:
    """A URL with a wrong path (or another service) answers 404: an error, not "no incidents"."""
    api = FastAPI()
    with serve(api) as url:
        r = runner.invoke(app, ["incidents", "list", "--url", url + "/relia"])
    assert r.exit_code == 2, r.output
    assert "relia answered 404" in r.stderr and r.stdout == ""


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


def test_list_and_show_count_every_finding_of_an_incident_that_keeps_the_newest(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    ids = fill(data / STORE_FILE)
    db_id = ids['cpu{job="db"}']
    with DuckDBStore(data / STORE_FILE) as store:
        inc = store.incident(db_id)
        assert inc is not None and len(inc.finding_ids) == 1
        store.save_incidents([inc.model_copy(update={"finding_count": 1134})])  # a flapping key
    config = tmp_path / "relia.yaml"
    config.write_text(f"data_dir: {data}\napi: {{port: {free_port()}}}\n")
    r = runner.invoke(app, ["incidents", "list", "--config", str(config)])
    assert r.exit_code == 0, r.output
    (row,) = [line for line in r.stdout.splitlines() if db_id in line]
    assert re.search(r"\s1134\s", row), row
    r = runner.invoke(app, ["incidents", "list", "--config", str(config), "--json"])
    counts = {i["id"]: i["finding_count"] for i in json.loads(r.stdout)["incidents"]}
    assert counts == {db_id: 1134, ids['cpu{job="api"}']: 2}
    r = runner.invoke(app, ["incidents", "show", db_id, "--config", str(config)])
    assert r.exit_code == 0 and "findings (1 of 1134, the newest of each key):" in r.stdout


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999", "http://a b/"])
def test_url_that_cannot_be_parsed_is_one_line(url: str, tmp_path: Path) -> None:
    config = tmp_path / "relia.yaml"
    config.write_text(f"data_dir: {tmp_path / 'none'}\n")
    r = runner.invoke(app, ["incidents", "list", "--url", url, "--config", str(config)])
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.exception
    assert r.stderr.startswith("relia: error: --url: not a valid URL") and r.stderr.count("\n") == 1


def test_token_that_cannot_be_a_header_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "relia.yaml"
    config.write_text(f"data_dir: {tmp_path / 'none'}\napi: {{port: {free_port()}}}\n")
    for token in ("tøken", "a\nb", "a\x1bb"):
        r = runner.invoke(app, ["incidents", "list", "--token", token, "--config", str(config)])
        assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.exception
        assert r.stderr.startswith("relia: error: --token: ") and r.stderr.count("\n") == 1


def test_a_wrong_token_is_said_to_be_refused_not_missing(server: Server) -> None:
    base = ["--url", server.url, "--config", str(server.config)]
    r = runner.invoke(app, ["incidents", "list", *base, "--token", "wrong"])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr == (
        f"relia: error: {server.url}: relia refused the API token (401): check --token or "
        "RELIA_TOKEN\n"
    )


@pytest.mark.parametrize(
    ("since", "said"),
    [
        ("-99999999999h", "is out of range: expected a time in years 1 to 9999"),
        ("99999999999999999", "is out of range: expected a time in years 1 to 9999"),
    ],
)
def test_since_the_api_cannot_take_is_refused_here(
    server: Server, tmp_path: Path, since: str, said: str
) -> None:
    # The server's 400 showed a number never typed; with relia stopped: "no incidents", exit 0.
    base = ["incidents", "list", "--since", since]
    r = runner.invoke(app, [*base, "--url", server.url, "--token", TOKEN])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr == f"relia: error: --since: {since!r} {said}\n"
    stopped = tmp_path / "stopped.yaml"
    stopped.write_text(f"data_dir: {tmp_path}\napi: {{port: {free_port()}}}\n")
    fill(tmp_path / STORE_FILE)
    r = runner.invoke(app, [*base, "--config", str(stopped)])
    assert r.exit_code == 2 and r.stderr == f"relia: error: --since: {since!r} {said}\n"


def test_since_of_eight_digits_not_a_date_says_they_are_read_as_one(tmp_path: Path) -> None:
    # It said epoch seconds were accepted, hiding why 12345678 was refused, as --start says.
    stopped = tmp_path / "stopped.yaml"
    stopped.write_text(f"data_dir: {tmp_path}\napi: {{port: {free_port()}}}\n")
    r = runner.invoke(app, ["incidents", "list", "--since", "12345678", "--config", str(stopped)])
    assert r.exit_code == 2 and r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith("relia: error: --since: ") and "'12345678'" in line
    assert "eight digits are read as a date, YYYYMMDD" in line


def test_show_at_an_address_without_the_incidents_api_is_not_a_missing_incident(
    server: Server,
) -> None:
    base = ["--token", TOKEN, "--config", str(server.config)]
    r = runner.invoke(app, ["incidents", "show", "abc", "--url", server.url + "/foo", *base])
    assert r.exit_code == 2 and r.stdout == ""
    assert "relia answered 404: no incidents API at this address" in r.stderr
    r = runner.invoke(app, ["incidents", "show", "abc", "--url", server.url, *base])
    assert r.exit_code == 2 and r.stderr == "relia: error: no incident with id 'abc'\n"


@pytest.mark.parametrize("command", ["list", "show"])
@pytest.mark.parametrize("as_json", [False, True])
def test_a_closed_stdout_pipe_ends_the_run_quietly_with_0(
    server: Server, command: str, as_json: bool
) -> None:
    # `relia incidents list | head -1` exited 1.
    which = [server.ids['cpu{job="api"}']] if command == "show" else []
    args = ["incidents", command, *which, "--url", server.url, "--token", TOKEN]
    r = run_into_closed_pipe(*args, *(["--json"] if as_json else []))
    assert (r.returncode, r.stderr) == (0, b"")


def test_reading_incidents_needs_no_webhook_signing_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Readers had to export the sink's HMAC secret: "notify.sinks.0.secret_env: the environment
    # variable RELIA_HOOK_SECRET is not set".
    monkeypatch.delenv("RELIA_HOOK_SECRET", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    ids = fill(data / STORE_FILE)
    config = tmp_path / "relia.yaml"
    config.write_text(
        f"data_dir: {data}\napi: {{port: {free_port()}}}\nnotify:\n  sinks:\n"
        "    - {name: hook, type: webhook, url: 'https://hooks.example/relia', "
        "secret_env: RELIA_HOOK_SECRET}\n"
    )
    r = runner.invoke(app, ["incidents", "list", "--config", str(config), "--json"])
    assert r.exit_code == 0, r.output
    assert {i["id"] for i in json.loads(r.stdout)["incidents"]} == set(ids.values())
    r = runner.invoke(app, ["incidents", "show", ids['cpu{job="db"}'], "--config", str(config)])
    assert r.exit_code == 0, r.output
    # relia up still needs it.
    r = runner.invoke(app, ["config", "check", str(config)])
    assert r.exit_code == 2 and "RELIA_HOOK_SECRET is not set" in r.stderr


@contextmanager
def serve_tls(api: FastAPI, cert: Path, key: Path) -> Iterator[int]:
    """``api`` served over TLS by uvicorn on 127.0.0.1 in a thread; yields its port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    srv = uvicorn.Server(
        uvicorn.Config(
            api,
            log_level="error",
            lifespan="off",
            ssl_certfile=str(cert),
            ssl_keyfile=str(key),
        )
    )
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


@pytest.mark.parametrize("issued_for", ["127.0.0.1", "localhost", "relia.example"])
def test_a_config_serving_tls_is_asked_over_https_trusting_its_certificate(
    tmp_path: Path, issued_for: str
) -> None:
    # The URL is https://127.0.0.1:PORT, and the certificate is issued for the service's name
    # (or localhost), seldom for 127.0.0.1: relia trusts the config's certificate itself,
    # whatever name it holds, and nothing else.
    from tests.api.test_tls import _self_signed

    cert, key = _self_signed(tmp_path, host=issued_for)
    fill_ids = fill(tmp_path / "served.duckdb")
    store = DuckDBStore(tmp_path / "served.duckdb")
    api = FastAPI()
    api.include_router(incidents_router(store, clock=lambda: T0 + 60 * M))
    try:
        with serve_tls(api, cert, key) as port:
            config = tmp_path / "relia.yaml"
            config.write_text(
                f"data_dir: {tmp_path / 'empty'}\n"
                f"api: {{host: 0.0.0.0, port: {port}, tls_cert: {cert}, tls_key: {key}, "
                f"tokens: [{{name: r, role: read, sha256: '{'0' * 64}'}}]}}\n"
            )
            r = runner.invoke(app, ["incidents", "list", "--config", str(config), "--json"])
    finally:
        store.close()
    # It was http://, which the TLS server cut off ("Server disconnected"); then the
    # certificate's name was checked against 127.0.0.1 ("IP address mismatch").
    assert r.exit_code == 0, r.output
    assert {i["id"] for i in json.loads(r.stdout)["incidents"]} == set(fill_ids.values())


def test_a_server_with_another_certificate_than_the_configs_is_refused(tmp_path: Path) -> None:
    # Pinned: the config's certificate is trusted alone, not as a CA for every name.
    from tests.api.test_tls import _self_signed

    served = _self_signed(tmp_path, "served", host="localhost")
    configured = _self_signed(tmp_path, "configured", host="localhost")
    config = tmp_path / "relia.yaml"
    with serve_tls(FastAPI(), *served) as port:
        config.write_text(
            f"data_dir: {tmp_path / 'empty'}\n"
            f"api: {{port: {port}, tls_cert: {configured[0]}, tls_key: {configured[1]}}}\n"
        )
        r = runner.invoke(app, ["incidents", "list", "--config", str(config)])
    assert r.exit_code == 2
    assert "certificate verify failed" in r.stderr and len(r.stderr.splitlines()) == 1


def _issued_by_a_ca(directory: Path, names: list[str]) -> list[tuple[Path, Path]]:
    """One CA, and for each name a chain file (leaf, then the CA) with its key."""
    import subprocess

    from tests.api.test_tls import _openssl

    def run(*args: str) -> None:
        subprocess.run([_openssl(), *args], check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_cert, ca_key = directory / "ca.crt", directory / "ca.key"
    run("req", "-x509", *ec, "-days", "1", "-subj", "/CN=relia test CA",
        "-keyout", str(ca_key), "-out", str(ca_cert))  # fmt: skip
    made = []
    for name in names:
        csr, leaf = directory / f"{name}.csr", directory / f"{name}.leaf"
        chain, key = directory / f"{name}.crt", directory / f"{name}.key"
        run("req", "-new", *ec, "-subj", f"/CN={name}", "-addext",
            f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(csr))  # fmt: skip
        run("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
            "-days", "1", "-copy_extensions", "copy", "-out", str(leaf))  # fmt: skip
        chain.write_text(leaf.read_text() + ca_cert.read_text())
        made.append((chain, key))
    return made


def test_only_the_leaf_of_the_configs_chain_is_trusted(tmp_path: Path) -> None:
    # A certificate from a CA, with its chain: the CA is not trusted for other names, or any
    # certificate it issued would pass, with no host name checked.
    ours, theirs = _issued_by_a_ca(tmp_path, ["relia.example", "other.example"])
    config = tmp_path / "relia.yaml"
    for served, trusted in [(ours, True), (theirs, False)]:
        with serve_tls(FastAPI(), *served) as port:
            config.write_text(
                f"data_dir: {tmp_path / 'empty'}\n"
                f"api: {{port: {port}, tls_cert: {ours[0]}, tls_key: {ours[1]}}}\n"
            )
            r = runner.invoke(app, ["incidents", "list", "--config", str(config)])
        # A server without the incidents API answers 404: reached, and trusted.
        assert r.exit_code == 2, r.output
        assert ("certificate verify failed" not in r.stderr) is trusted, r.stderr


def test_an_explicit_url_checks_the_certificate_as_usual(tmp_path: Path) -> None:
    # --url names the server: its certificate must be valid for that name, from the system's
    # CAs, as any HTTPS client checks it (the config's certificate is not trusted for it).
    from tests.api.test_tls import _self_signed

    cert, key = _self_signed(tmp_path, host="localhost")
    config = tmp_path / "relia.yaml"
    with serve_tls(FastAPI(), cert, key) as port:
        config.write_text(
            f"data_dir: {tmp_path / 'empty'}\n"
            f"api: {{port: {port}, tls_cert: {cert}, tls_key: {key}}}\n"
        )
        url = f"https://127.0.0.1:{port}"
        r = runner.invoke(app, ["incidents", "list", "--config", str(config), "--url", url])
    assert r.exit_code == 2
    assert "certificate verify failed" in r.stderr
