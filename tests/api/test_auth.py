from __future__ import annotations

import hashlib
import hmac
import logging
import re
import warnings
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from relia.api import auth as auth_mod
from relia.api.app import create_app
from relia.api.auth import TOKEN_PREFIX, AuthConfig, Role, TokenEntry, hash_token, new_token
from relia.config import ApiConfig, ApiToken, load_config
from relia.errors import ConfigError
from tests.engine.memstore import MemoryStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # Starlette's TestClient wants httpx2
    from fastapi.testclient import TestClient

TOKENS = {role: new_token() for role in Role}


def _auth() -> AuthConfig:
    return AuthConfig(
        [TokenEntry(f"{r.value}-bot", r, bytes.fromhex(hash_token(t))) for r, t in TOKENS.items()]
    )


def _extra_routers() -> list[tuple[APIRouter, Role]]:
    # Stand-ins for the other helpers' routers: remote-write (ingest) and incidents (read).
    write = APIRouter()

    @write.post("/api/v1/write")
    async def remote_write(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    incidents = APIRouter()

    @incidents.get("/api/v1/incidents")
    def list_incidents() -> dict[str, list[Any]]:
        return {"incidents": []}

    return [(write, Role.INGEST), (incidents, Role.READ)]


def _app(auth: AuthConfig | None) -> FastAPI:
    return create_app(MemoryStore(), auth=auth, routers=_extra_routers())


def _bearer(role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def test_tokens_are_random_prefixed_and_hashed_with_sha256() -> None:
    a, b = new_token(), new_token()
    assert a != b and a.startswith(TOKEN_PREFIX) and b.startswith(TOKEN_PREFIX)
    assert len(a) - len(TOKEN_PREFIX) == 43  # 32 bytes, URL-safe base64 without padding
    assert hash_token(a) == hashlib.sha256(a.encode()).hexdigest()


def test_roles_are_not_a_ladder() -> None:
    assert Role.ADMIN.allows(Role.READ) and Role.ADMIN.allows(Role.INGEST)
    assert Role.READ.allows(Role.READ) and not Role.READ.allows(Role.INGEST)
    assert Role.INGEST.allows(Role.INGEST) and not Role.INGEST.allows(Role.READ)
    assert not Role.READ.allows(Role.ADMIN) and not Role.INGEST.allows(Role.ADMIN)


def test_identify_compares_every_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(auth_mod.hmac, "compare_digest", counting)
    auth = _auth()
    first = auth.tokens[0]
    assert auth.identify(TOKENS[first.role]) == first
    assert len(calls) == len(auth.tokens)  # no early exit on the first match
    calls.clear()
    assert auth.identify("relia_nope") is None
    assert len(calls) == len(auth.tokens)


def test_token_entries_show_name_and_role_never_the_hash() -> None:
    # Reprs end up in tracebacks and log lines: the hash must not, in hex or as bytes.
    auth = _auth()
    shown = repr(auth.tokens) + str(auth.tokens[0]) + f"{auth.tokens[-1]!r}"
    for entry in auth.tokens:
        assert repr(entry.name) in shown
        assert entry.digest.hex() not in shown and repr(entry.digest) not in shown


def test_every_route_but_healthz_needs_a_token() -> None:
    app = _app(_auth())
    c = TestClient(app, base_url="http://localhost")
    # Every operation of the schema (routers included), and the routes kept out of it.
    routes = [("GET", "/openapi.json"), ("GET", "/")]
    for path, ops in app.openapi()["paths"].items():
        routes += [(method.upper(), path) for method in ops]
    assert len(routes) >= 8
    for method, template in routes:
        path = re.sub(r"\{[^}]+\}", "1", template)
        r = c.request(method, path)
        if template in ("/healthz", "/"):
            assert r.status_code == 200, template
            continue
        assert r.status_code == 401, (method, template)
        assert r.headers["www-authenticate"] == "Bearer"
        bad = c.request(method, path, headers={"Authorization": "Bearer relia_wrong"})
        assert bad.status_code == 401, (method, template)
        basic = c.request(method, path, headers={"Authorization": "Basic " + TOKENS[Role.ADMIN]})
        assert basic.status_code == 401, (method, template)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/api/v1/series", {Role.READ, Role.ADMIN}),
        ("GET", "/api/v1/findings", {Role.READ, Role.ADMIN}),
        ("GET", "/api/v1/incidents", {Role.READ, Role.ADMIN}),
        ("GET", "/metrics", {Role.READ, Role.ADMIN}),
        ("GET", "/openapi.json", {Role.READ, Role.ADMIN}),
        ("POST", "/api/v1/write", {Role.INGEST, Role.ADMIN}),
    ],
)
def test_roles(method: str, path: str, allowed: set[Role]) -> None:
    c = TestClient(_app(_auth()), base_url="http://localhost")
    for role in Role:
        r = c.request(method, path, headers=_bearer(role), content=b"x" * 10)
        if role in allowed:
            assert r.status_code == 200, (role, r.text)
        else:
            assert r.status_code == 403, (role, r.text)
            assert r.json()["detail"] == f"token '{role.value}-bot' has role {role.value}; " + (
                f"this needs {'ingest' if path == '/api/v1/write' else 'read'}"
            )


def test_docs_pages_only_without_auth() -> None:
    on = TestClient(_app(_auth()), base_url="http://localhost")
    assert on.get("/docs").status_code == 404  # it could not send a token for the schema
    schema = on.get("/openapi.json", headers=_bearer(Role.READ)).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    off = TestClient(_app(None), base_url="http://localhost")
    assert off.get("/docs").status_code == 200
    assert off.get("/api/v1/series").status_code == 200
    assert off.post("/api/v1/write", content=b"abc").json() == {"bytes": 3}
    assert off.get("/metrics").status_code == 200


def test_dashboard_page_loads_and_asks_for_a_token() -> None:
    c = TestClient(_app(_auth()), base_url="http://localhost")
    html = c.get("/").text
    # The token box, and the header the page sends with its API calls.
    assert 'id="token"' in html and '"Bearer "' in html
    assert c.get("/api/v1/series").status_code == 401  # what makes the page show the box


def test_no_secret_is_ever_logged_or_answered(caplog: pytest.LogCaptureFixture) -> None:
    legacy = "plain-legacy-" + "q" * 30
    cfg = ApiConfig(
        tokens=[
            ApiToken(name=f"{r.value}-bot", role=r.value, sha256=hash_token(t))
            for r, t in TOKENS.items()
        ],
        token=legacy,
    )
    secrets_ = [*TOKENS.values(), *(hash_token(t) for t in TOKENS.values()), legacy]
    secrets_.append(hash_token(legacy))
    seen: list[str] = [repr(cfg), str(cfg), cfg.model_dump_json()]
    with caplog.at_level(logging.DEBUG):
        auth = AuthConfig.from_api_config(cfg)
        assert auth is not None
        seen.append(repr(auth.tokens))
        c = TestClient(
            create_app(MemoryStore(), auth=auth, routers=_extra_routers()),
            base_url="http://localhost",
        )
        for presented in [*TOKENS.values(), legacy, TOKENS[Role.READ] + "x", "relia_guess"]:
            for method, path in (
                ("GET", "/healthz"),
                ("GET", "/api/v1/series"),
                ("GET", "/api/v1/findings?since=bogus"),
                ("POST", "/api/v1/write"),
                ("GET", "/metrics"),
            ):
                r = c.request(method, path, headers={"Authorization": f"Bearer {presented}"})
                seen.append(r.text)
                seen.append(str(r.headers))
    seen.append(caplog.text)
    assert "403 on POST /api/v1/write: token 'read-bot'" in caplog.text  # names, not values
    assert "api.token is deprecated" in caplog.text
    everything = "\n".join(seen)
    for secret in secrets_:
        assert secret not in everything
    # Config errors about hashes do not repeat what was given either.
    for bad in (TOKENS[Role.ADMIN], "abc" + TOKENS[Role.ADMIN]):
        with pytest.raises(ValidationError) as info:
            ApiToken(name="x", role="read", sha256=bad)
        assert bad not in str(info.value)
        env = {"RELIA_API__TOKENS": f"[{{name: x, role: read, sha256: {bad}}}]"}
        with pytest.raises(ConfigError, match=r"api\.tokens\.0\.sha256") as cfg_info:
            load_config(environ=env)
        assert bad not in str(cfg_info.value)


def test_deprecated_token_argument_does_not_replace_the_configured_tokens() -> None:
    # create_app(token=...) is a fallback for auth=None only: given both, auth's tokens rule.
    c = TestClient(
        create_app(MemoryStore(), auth=_auth(), token="t0k"), base_url="http://localhost"
    )
    assert c.get("/api/v1/series", headers=_bearer(Role.READ)).status_code == 200
    stale = c.get("/api/v1/series", headers={"Authorization": "Bearer t0k"})
    assert stale.status_code == 401 and stale.headers["www-authenticate"] == "Bearer"


def test_legacy_token_is_an_admin_token() -> None:
    auth = AuthConfig.from_api_config(load_config(environ={"RELIA_API__TOKEN": "t0k"}).api)
    assert auth is not None
    entry = auth.identify("t0k")
    assert entry is not None and entry.name == "api.token" and entry.role is Role.ADMIN
    c = TestClient(
        create_app(MemoryStore(), token="t0k", routers=_extra_routers()),
        base_url="http://localhost",
    )
    assert c.post("/api/v1/write", headers={"Authorization": "Bearer t0k"}).status_code == 200
    assert c.get("/metrics").status_code == 401


class _StatusEngine:
    """An engine whose status names places: a log file's path, a source's error."""

    registry = CollectorRegistry()

    def status(self) -> dict[str, Any]:
        return {
            "running": True,
            "ticks": 7,
            "last_tick_ms": 1_700_000_000_000,
            "series": 3,
            "last_error": "StoreError: /srv/relia/relia.duckdb: disk full",
            "sources": {"app": {"errors": 1, "last_error": "http://10.0.0.7:9100/metrics: 503"}},
            "logs": {"api": {"path": "/var/log/api/secret.log", "lines": 10, "error": None}},
        }


def test_healthz_without_a_read_token_says_whether_relia_runs_but_not_where_things_are() -> None:
    # /healthz stays open for probes, but file paths, addresses and error texts are the
    # operator's: with auth on, only a token that may read gets them.
    app = create_app(MemoryStore(), engine=_StatusEngine(), auth=_auth())  # type: ignore[arg-type]
    c = TestClient(app, base_url="http://localhost")
    for headers in ({}, {"Authorization": "Bearer relia_wrong"}, _bearer(Role.INGEST)):
        r = c.get("/healthz", headers=headers)
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "ok"
        engine = body["engine"]
        assert engine["running"] is True and engine["ticks"] == 7 and engine["series"] == 3
        assert engine["last_error"] is not None  # that it fails shows, not why
        text = r.text
        for secret in ("relia.duckdb", "10.0.0.7", "secret.log", "disk full"):
            assert secret not in text, (headers, secret)
    for role in (Role.READ, Role.ADMIN):
        full = c.get("/healthz", headers=_bearer(role)).json()["engine"]
        assert full == _StatusEngine().status()
    ha = {
        "mode": "ha",
        "leader": True,
        "replica_id": "db-host-3:4242",
        "lease": "relia",
        "fencing_token": 12,
        "last_error": None,
    }
    app = create_app(MemoryStore(), auth=_auth(), leader=lambda: ha)
    shown = TestClient(app, base_url="http://localhost").get("/healthz").json()["ha"]
    assert (
        shown == {**ha, "replica_id": shown["replica_id"]} and "db-host" not in shown["replica_id"]
    )
    # Without auth there is no one to hide it from (relia listens on loopback by default).
    open_app = create_app(MemoryStore(), engine=_StatusEngine())  # type: ignore[arg-type]
    assert (
        TestClient(open_app, base_url="http://localhost").get("/healthz").json()["engine"]
        == _StatusEngine().status()
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/findings?bogus=1"),
        ("GET", "/api/v1/incidents?limt=5"),
        ("GET", "/api/v1/series/1/samples?since=x&foo=1"),
        ("POST", "/api/v1/write?x=1"),
    ],
)
def test_an_unknown_query_parameter_is_checked_after_the_token(method: str, path: str) -> None:
    # The 400 lists the route's parameters: only a caller of the right role may read it.
    client = TestClient(_app(_auth()), base_url="http://localhost")
    r = client.request(method, path)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
    wrong = Role.READ if method == "POST" else Role.INGEST
    assert client.request(method, path, headers=_bearer(wrong)).status_code == 403
    right = Role.INGEST if method == "POST" else Role.READ
    r = client.request(method, path, headers=_bearer(right))
    assert r.status_code == 400 and "unknown query parameter" in r.json()["detail"]


# -- other web sites, through the operator's browser ------------------------------------------

REBOUND = ["evil.example", "evil.example:8787", "127.0.0.1.evil.example", "localhost.evil"]
OTHER_ADDRESSES = ["10.0.0.1", "0.0.0.0:8787", "[::2]:8787", "[::1", "::1", "127.0.0.1:x"]
LOOPBACK = ["localhost", "LOCALHOST:8787", "127.0.0.1", "127.0.0.2:8787", "[::1]", "[::1]:8787"]


@pytest.mark.parametrize("host", REBOUND + OTHER_ADDRESSES)
def test_with_auth_off_a_host_that_is_not_loopback_is_421(host: str) -> None:
    # DNS rebinding: a page of evil.example, its name now resolving to 127.0.0.1, reads the API
    # with Host: evil.example. Nothing is answered under a name other than loopback's.
    c = TestClient(_app(None), base_url="http://localhost")
    for method, path in [("GET", "/api/v1/series"), ("GET", "/"), ("POST", "/api/v1/write")]:
        r = c.request(method, path, headers={"Host": host})
        assert r.status_code == 421, (method, path)
        assert "not localhost, 127.0.0.1 or [::1]" in r.json()["detail"]


@pytest.mark.parametrize("host", LOOPBACK)
def test_with_auth_off_loopback_hosts_are_served(host: str) -> None:
    c = TestClient(_app(None), base_url="http://localhost")
    assert c.get("/api/v1/series", headers={"Host": host}).status_code == 200


def test_with_auth_on_the_host_is_not_checked() -> None:
    # A served name (relia.example behind its certificate): the token guards it.
    c = TestClient(_app(_auth()), base_url="http://relia.example")
    assert c.get("/api/v1/series").status_code == 401
    assert c.get("/api/v1/series", headers=_bearer(Role.READ)).status_code == 200


@pytest.mark.parametrize("auth", [None, _auth()], ids=["auth off", "auth on"])
def test_a_cross_site_browser_request_to_the_api_is_403(auth: AuthConfig | None) -> None:
    c = TestClient(_app(auth), base_url="http://localhost")
    cross = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
    for method, path in [("GET", "/api/v1/series"), ("POST", "/api/v1/write")]:
        r = c.request(method, path, headers={**cross, **_bearer(Role.ADMIN)}, content=b"x")
        assert r.status_code == 403, (method, path)
        assert "Sec-Fetch-Site: cross-site" in r.json()["detail"]
    # The dashboard's own calls, and a link to the page from another site, are served.
    same = {"Sec-Fetch-Site": "same-origin", **_bearer(Role.READ)}
    assert c.get("/api/v1/series", headers=same).status_code == 200
    assert c.get("/", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200
