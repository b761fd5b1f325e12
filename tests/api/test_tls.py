"""TLS: the certificate checks at config load, and ``relia up`` serving HTTPS.

Certificates are made in the test with the system's ``openssl`` (the ``cryptography`` package is
not a dependency); without it the tests fail when ``CI`` is set and are skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from relia.api.auth import hash_token, new_token
from relia.config import ApiConfig, HostConfig, ReliaConfig, load_config
from relia.engine.up import run_up
from relia.errors import ConfigError


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("openssl is not installed")
        pytest.skip("openssl is not installed")
    return found


def _self_signed(
    directory: Path, name: str = "server", host: str = "127.0.0.1"
) -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` (an IP address or a DNS name) and its key."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    alt_name = f"IP:{host}" if host[0].isdigit() or ":" in host else f"DNS:{host}"
    subprocess.run(
        [
            _openssl(),
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={host}",
            "-addext",
            f"subjectAltName={alt_name}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _self_signed(tmp_path_factory.mktemp("tls"))


def _load(tmp_path: Path, cert: Path | str, key: Path | str) -> ReliaConfig:
    path = tmp_path / "relia.yaml"
    path.write_text(f"api:\n  tls_cert: {cert}\n  tls_key: {key}\n")
    return load_config(path, environ={})


def test_a_matching_pair_loads(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    cfg = _load(tmp_path, *pair)
    assert cfg.api.tls and cfg.api.tls_cert == pair[0] and cfg.api.tls_key == pair[1]
    assert not load_config(environ={}).api.tls


def test_bad_pairs_name_the_field(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    cert, key = pair
    _, other_key = _self_signed(tmp_path, "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        (tmp_path / "missing.crt", key, r"relia\.yaml:2: api\.tls_cert: cannot read .*missing"),
        (cert, tmp_path / "missing.key", r"relia\.yaml:3: api\.tls_key: cannot read .*missing"),
        (garbage, key, r"api\.tls_cert: .*garbage\.pem' is not a PEM certificate"),
        (cert, other_key, r"api\.tls_key: .*other\.key' is not the PEM private key"),
        (cert, garbage, r"api\.tls_key: .*garbage\.pem' is not the PEM private key"),
        (key, key, r"api\.tls_cert: .* is not a PEM certificate"),
    ]
    for c, k, message in cases:
        with pytest.raises(ConfigError, match=message):
            _load(tmp_path, c, k)
    with pytest.raises(ConfigError, match=r"api\.tls_key: set both"):
        load_config(environ={"RELIA_API__TLS_CERT": str(cert)})


def test_up_serves_https(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    cert, key = pair
    token = new_token()
    cfg = ReliaConfig(
        data_dir=tmp_path / "data",
        interval=0.2,
        host=HostConfig(enabled=False),
        api=ApiConfig(
            port=0,
            tls_cert=cert,
            tls_key=key,
            tokens=[{"name": "ops", "role": "read", "sha256": hash_token(token)}],
        ),
    )
    stop = threading.Event()
    got: dict[str, str] = {}
    ready = threading.Event()

    def on_ready(url: str) -> None:
        got["url"] = url
        ready.set()

    thread = threading.Thread(
        target=run_up, args=(cfg,), kwargs={"stop": stop, "ready": on_ready}, daemon=True
    )
    thread.start()
    try:
        assert ready.wait(60)
        url = got["url"]
        assert url.startswith("https://127.0.0.1:")
        trusting = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=url, verify=trusting, timeout=10) as c:
            assert c.get("/healthz").json()["status"] == "ok"
            assert c.get("/api/v1/series").status_code == 401
            auth = {"Authorization": f"Bearer {token}"}
            assert c.get("/api/v1/series", headers=auth).status_code == 200
        # A client that does not trust the certificate, and plain HTTP, get nowhere.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(url + "/healthz", timeout=10)
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https://", "http://") + "/healthz", timeout=10)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
