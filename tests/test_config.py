from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relia.config import ReliaConfig, load_config, parse_duration
from relia.errors import ConfigError


def test_defaults_need_no_file() -> None:
    cfg = load_config(environ={})
    assert cfg == ReliaConfig()
    assert cfg.host.enabled and cfg.api.host == "127.0.0.1" and cfg.detector.name == "default"


def test_full_file(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(
        """
data_dir: /tmp/x
interval: 1m
host: {enabled: false}
scrape:
  - {name: app, url: "http://127.0.0.1:9100/metrics", timeout: 2s}
prometheus:
  - name: prom
    url: http://127.0.0.1:9090/
    queries: [{query: "rate(http_requests_total[5m])", step: 30s}]
detector: {name: mad, params: {window: 64}, threshold: 0.7}
"""
    )
    cfg = load_config(path, environ={})
    assert cfg.interval == 60.0
    assert cfg.scrape[0].timeout == 2.0
    assert cfg.prometheus[0].url == "http://127.0.0.1:9090"
    assert cfg.prometheus[0].queries[0].step == 30.0
    assert cfg.detector.params == {"window": 64}


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text("api: {port: 9000}\n")
    cfg = load_config(path, environ={"RELIA_API__PORT": "9100", "RELIA_HOST__ENABLED": "false"})
    assert cfg.api.port == 9100
    assert cfg.host.enabled is False


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text("interval: 5x\nprometheus:\n  - name: p\n    url: ftp://x\n    queries: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    text = str(info.value)
    assert f"{path}:1: interval:" in text
    assert f"{path}:4: prometheus.0.url: must start with http" in text
    assert f"{path}:5: prometheus.0.queries" in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a: [1, 2\n", "not valid YAML"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("unknown_key: 1\n", "unknown_key"),
    ],
)
def test_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml", environ={})


@pytest.mark.parametrize(
    ("text", "seconds"), [("15s", 15.0), ("5m", 300.0), ("250ms", 0.25), (2, 2.0), ("1h", 3600.0)]
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "fast", "-1s", "0", True, "1y"])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_config_or_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    path = tmp_path_factory.mktemp("cfg") / "relia.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path, environ={})
    except ConfigError as exc:
        assert str(exc).strip()
