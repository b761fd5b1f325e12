from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from relia.config import ReliaConfig, human_duration, load_config, parse_duration
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


def test_an_environment_value_is_text_unless_written_as_a_list_or_mapping() -> None:
    # YAML reads "::" and "a: b" as mappings; no scalar setting would take them.
    tokens = "[{name: ops, role: admin, sha256: " + "ab" * 32 + "}]"
    environ = {"RELIA_API__HOST": "::", "RELIA_API__TOKENS": tokens, "RELIA_API__PORT": "9100"}
    api = load_config(environ=environ).api
    assert api.host == "::" and api.port == 9100 and api.tokens[0].name == "ops"
    # A space before the bracket (an indented line in a compose file) still makes a list.
    api = load_config(environ={"RELIA_API__TOKENS": " " + tokens}).api
    assert api.tokens[0].name == "ops"


def test_errors_in_environment_values_name_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text("api:\n  port: 9000\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"RELIA_API__PORT": "abc", "RELIA_INTERVAL": "5x"})
    lines = str(info.value).splitlines()
    assert sorted(line.split(":")[0] for line in lines) == ["RELIA_API__PORT", "RELIA_INTERVAL"]
    assert all("relia.yaml" not in line for line in lines)
    # A check across a section's fields names the variable that took part in it.
    with pytest.raises(
        ConfigError, match=r"api\.auth: auth is off .*\(environment: RELIA_API__HOST\)"
    ):
        load_config(path, environ={"RELIA_API__HOST": "0.0.0.0"})
    # A top-level field of the file is not a section the variables share.
    path.write_text("interval: 5x\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"RELIA_API__PORT": "9100"})
    assert "(environment:" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://127.0.0.1:99999/metrics", "Port out of range 0-65535"),
        ("http://", "no host"),
        ("http://:9100/metrics", "no host"),
    ],
)
def test_a_url_no_request_can_go_to_is_refused_by_line(tmp_path: Path, url: str, why: str) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(f'scrape:\n  - name: a\n    url: "{url}"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == f"{path}:3: scrape.0.url: not a valid URL: {why}"


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


@pytest.mark.parametrize("text", ["", "fast", "-1s", "0", True, "1h30", "h", "1.s"])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("2d12h", 216_000.0),
        ("1s500ms", 1.5),
        ("1y", 31536000.0),
    ],
)
def test_parse_duration_takes_the_slo_specs_compound_durations(text: str, seconds: float) -> None:
    # One grammar for relia.yaml, RELIA_* variables, --start now-1h30m and SLO specs.
    assert parse_duration(text) == seconds


def test_a_compound_duration_in_relia_yaml_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text("interval: 1h30m\n")
    assert load_config(path, environ={}).interval == 5400.0
    assert load_config(None, environ={"RELIA_INTERVAL": "2m30s"}).interval == 150.0


@pytest.mark.parametrize("text", ["-5s", "-1h30m", "-2"])
def test_a_negative_duration_is_told_so(text: str) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["\u0661\u0665s", "\uff11\uff15s", "\u0967m"])
def test_a_duration_takes_ascii_digits_only(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0.4ms", "0.0009s", 0.0005])
def test_a_duration_under_a_millisecond_is_refused(text: object) -> None:
    # relia keeps time in whole milliseconds: a shorter interval or step cannot be kept.
    with pytest.raises(ValueError, match="at least 1ms"):
        parse_duration(text)
    assert parse_duration("1ms") == 0.001


def test_a_scrape_interval_under_a_millisecond_is_refused_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(
        "scrape:\n  - name: api\n    url: http://127.0.0.1:9100/metrics\n    interval: 0.1ms\n"
    )
    with pytest.raises(ConfigError, match=r"relia\.yaml:4: scrape\.0\.interval: .*at least 1ms"):
        load_config(path, environ={})


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


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["RELIA_API__HOST", "RELIA_API__PORT", "RELIA_INTERVAL", "RELIA_API__TOKENS"]),
    st.text(max_size=60),
)
def test_any_environment_value_is_a_config_or_an_error_naming_it(name: str, raw: str) -> None:
    try:
        load_config(environ={name: raw})
    except ConfigError as exc:
        assert name in str(exc)


def test_api_auth_is_off_only_on_loopback(tmp_path: Path) -> None:
    digest = "ab" * 32
    tokens = f"[{{name: ops, role: admin, sha256: {digest.upper()}}}]"
    # The default: loopback, no tokens, auth off with nothing to set up.
    default = load_config(environ={}).api
    assert not default.auth_enabled and default.max_body_bytes == 16 << 20
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert not load_config(environ={"RELIA_API__HOST": host}).api.auth_enabled, host
    # Tokens turn auth on; hashes are kept in lower case, as secrets.
    on = load_config(environ={"RELIA_API__TOKENS": tokens}).api
    assert on.auth_enabled and on.tokens[0].sha256.get_secret_value() == digest
    assert digest not in repr(on)
    exposed = {"RELIA_API__HOST": "0.0.0.0", "RELIA_API__TOKENS": tokens}
    assert load_config(environ=exposed).api.auth_enabled
    # Off on a non-loopback address, and on without tokens, are errors naming api.auth.
    path = tmp_path / "relia.yaml"
    path.write_text("api:\n  host: 0.0.0.0\n")
    with pytest.raises(ConfigError, match=r"relia\.yaml:1: api\.auth: auth is off but api\.host"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match=r"api\.auth: auth is off but api\.host '10\.0\.0\.1'"):
        load_config(environ={**exposed, "RELIA_API__HOST": "10.0.0.1", "RELIA_API__AUTH": "no"})
    with pytest.raises(ConfigError, match=r"api\.auth: auth is off but api\.host 'example\.org'"):
        load_config(environ={"RELIA_API__HOST": "example.org"})
    with pytest.raises(ConfigError, match=r"api\.auth: auth is on but no token is configured"):
        load_config(environ={"RELIA_API__AUTH": "true"})
    # Explicitly off on loopback is fine even with tokens; a disabled API needs nothing.
    assert not load_config(
        environ={"RELIA_API__TOKENS": tokens, "RELIA_API__AUTH": "false"}
    ).api.auth_enabled
    assert not load_config(
        environ={"RELIA_API__HOST": "0.0.0.0", "RELIA_API__ENABLED": "false"}
    ).api.enabled


@pytest.mark.parametrize("host", ["localhost.example.org", "localhost6", "127.0.0.1.nip.io"])
def test_auth_off_on_a_name_that_only_looks_local_is_refused(host: str) -> None:
    # Only 127.0.0.0/8, ::1 and "localhost" itself are loopback: other names may resolve anywhere.
    with pytest.raises(ConfigError, match=r"api\.auth: auth is off but api\.host"):
        load_config(environ={"RELIA_API__HOST": host})


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ("[{name: a, role: read, sha256: abc}]", r"api\.tokens\.0\.sha256: expected 64 hex"),
        ("[{name: a, role: root, sha256: " + "a0" * 32 + "}]", r"api\.tokens\.0\.role"),
        (
            "[{name: a, role: read, sha256: "
            + "a0" * 32
            + "}, {name: a, role: admin, sha256: "
            + "b1" * 32
            + "}]",
            r"api\.tokens: tokens\[1\] and tokens\[0\] are both named 'a'",
        ),
        (
            "[{name: a, role: read, sha256: "
            + "a0" * 32
            + "}, {name: b, role: admin, sha256: "
            + "a0" * 32
            + "}]",
            r"api\.tokens: tokens\[1\] \('b'\) has the same sha256 as tokens\[0\]",
        ),
    ],
)
def test_api_tokens_rejected(tokens: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(environ={"RELIA_API__TOKENS": tokens})


def test_notify_sinks(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(
        """
notify:
  external_url: http://relia.example:8787/
  base_delay: 500ms
  breaker_threshold: 3
  sinks:
    - {name: am, type: alertmanager, url: "http://127.0.0.1:9093/", resend_interval: 30s}
    - {name: hook, type: webhook, url: "https://hooks.example/relia", secret_env: HOOK_KEY}
    - {name: log, type: log}
"""
    )
    cfg = load_config(path, environ={"HOOK_KEY": "hunter2-secret"})
    am, hook, log = cfg.notify.sinks
    assert (am.url, am.resend_interval, am.timeout) == ("http://127.0.0.1:9093", 30.0, 5.0)
    assert (hook.secret_env, hook.url) == ("HOOK_KEY", "https://hooks.example/relia")
    assert log.url is None
    assert cfg.notify.external_url == "http://relia.example:8787"
    assert (cfg.notify.base_delay, cfg.notify.max_delay, cfg.notify.max_age) == (0.5, 300, 86400)
    assert "hunter2" not in cfg.model_dump_json()  # only the variable's name is kept
    assert load_config(environ={}).notify.sinks == []


def test_a_webhook_secret_in_a_relia_variable_is_a_secret_not_a_setting(tmp_path: Path) -> None:
    # The README's relia.yaml names RELIA_HOOK_SECRET: that variable holds the secret and is not
    # read as a RELIA_* setting (hook_secret), which would refuse the whole config.
    path = tmp_path / "relia.yaml"
    path.write_text(
        "notify:\n  sinks:\n"
        '    - {name: hook, type: webhook, url: "https://hooks.example/relia", '
        "secret_env: RELIA_HOOK_SECRET}\n"
    )
    cfg = load_config(path, environ={"RELIA_HOOK_SECRET": "hunter2", "RELIA_API__PORT": "9100"})
    assert cfg.notify.sinks[0].secret_env == "RELIA_HOOK_SECRET" and cfg.api.port == 9100
    with pytest.raises(ConfigError, match="RELIA_OTHER: other"):  # other names are still settings
        load_config(path, environ={"RELIA_HOOK_SECRET": "hunter2", "RELIA_OTHER": "1"})


def test_notify_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(
        """
notify:
  sinks:
    - {name: am, type: alertmanager}
    - {name: hook, type: webhook, url: "http://h/x"}
    - {name: hook2, type: webhook, url: "http://h/x", secret_env: MISSING}
    - {name: "a:b", type: log}
    - {name: x, type: pagerduty}
    - {name: am, type: log}
"""
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    text = str(info.value)
    assert f"{path}:4: notify.sinks.0.url: a url is required for type alertmanager" in text
    assert f"{path}:5: notify.sinks.1.secret_env: a webhook sink needs secret_env" in text
    assert (
        f"{path}:6: notify.sinks.2.secret_env: the environment variable MISSING is not set" in text
    )
    assert f"{path}:7: notify.sinks.3.name: use letters" in text
    assert (
        f"{path}:8: notify.sinks.4.type: Input should be 'alertmanager', 'webhook' or 'log'" in text
    )
    path.write_text("notify:\n  sinks:\n    - {name: a, type: log}\n    - {name: a, type: log}\n")
    with pytest.raises(ConfigError, match="sinks.1. and sinks.0. are both named 'a'"):
        load_config(path, environ={})


def test_incidents_section(tmp_path: Path) -> None:
    from relia.config import IncidentsConfig

    cfg = load_config(environ={})
    assert cfg.incidents == IncidentsConfig()
    assert cfg.incidents.group_by == ["service", "job", "instance", "namespace", "pod"]
    assert cfg.incidents.resolve_after == 300.0 and cfg.incidents.flap_max == 3
    path = tmp_path / "relia.yaml"
    path.write_text(
        "incidents:\n  group_by: [service]\n  group_window: 2m\n  resolve_after: 90s\n"
        "  reopen_window: 1h\n  flap_window: 2h\n  flap_max: 5\n"
        "  topology: {web: [api], api: [db, cache]}\n"
    )
    cfg = load_config(path, environ={"RELIA_INCIDENTS__FLAP_MAX": "7", "RELIA_TOKEN": "x"})
    inc = cfg.incidents
    assert (inc.group_window, inc.resolve_after, inc.reopen_window) == (120.0, 90.0, 3600.0)
    assert inc.flap_window == 7200.0 and inc.flap_max == 7
    assert inc.topology == {"web": ["api"], "api": ["db", "cache"]}
    path.write_text(
        "incidents:\n  resolve_after: soon\n  flap_max: 0\n  group_by: []\n  topology: {db: [db]}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    text = str(info.value)
    assert f"{path}:2: incidents.resolve_after: expected a duration" in text
    assert f"{path}:3: incidents.flap_max:" in text
    assert f"{path}:4: incidents.group_by:" in text
    assert f"{path}:5: incidents.topology: 'db' depends on itself" in text


def test_retention_default_and_units(tmp_path: Path) -> None:
    assert load_config(environ={}).retention == 30 * 86400.0
    path = tmp_path / "relia.yaml"
    path.write_text("retention: 90d\n")
    assert load_config(path, environ={}).retention == 90 * 86400.0
    path.write_text("retention: 2w\n")
    assert load_config(path, environ={}).retention == 14 * 86400.0
    assert load_config(environ={"RELIA_RETENTION": "48h"}).retention == 2 * 86400.0


def test_retention_must_outlast_what_the_engine_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    # The defaults' longest window is notify.max_age (1d): at least twice that.
    path.write_text("interval: 15s\nretention: 36h\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    text = str(info.value)
    assert f"{path}:2: retention: 36h is too short, keep at least 2d" in text
    assert "twice notify.max_age, 1d" in text
    # The longest of the windows names itself, from the file or the environment.
    path.write_text("retention: 7d\nincidents:\n  flap_window: 5d\n")
    with pytest.raises(ConfigError, match=r"at least 10d \(twice incidents.flap_window, 5d\)"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match=r"at least 4d \(twice notify.max_age, 2d\)"):
        load_config(environ={"RELIA_NOTIFY__MAX_AGE": "2d", "RELIA_RETENTION": "3d"})
    # The default itself is checked: a long window with no retention set is an error too.
    path.write_text("incidents:\n  reopen_window: 20d\n")
    with pytest.raises(ConfigError, match=r"30d is too short, keep at least 40d"):
        load_config(path, environ={})
    # Short windows: the floor of a day still holds.
    path.write_text("retention: 12h\nnotify:\n  max_age: 1h\nincidents:\n  flap_window: 30m\n")
    with pytest.raises(ConfigError, match=r"12h is too short, keep at least 1d"):
        load_config(path, environ={})
    path.write_text("retention: 1d\nnotify:\n  max_age: 1h\n")
    assert load_config(path, environ={}).retention == 86400.0
    # A window that is itself invalid is reported once, not again through retention.
    path.write_text("retention: 3d\nincidents:\n  flap_window: soon\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert "incidents.flap_window" in str(info.value)
    assert "retention:" not in str(info.value)


def test_retention_outlasts_group_window_and_resolve_after_too(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    for name in ("group_window", "resolve_after"):
        path.write_text(f"retention: 5d\nincidents:\n  {name}: 3d\n")
        with pytest.raises(ConfigError, match=rf"at least 6d \(twice incidents.{name}, 3d\)"):
            load_config(path, environ={})
    # A window of exactly half the floor is still the reason named, not "the shortest".
    path.write_text("retention: 20h\nnotify:\n  max_age: 12h\n")
    with pytest.raises(ConfigError, match=r"at least 1d \(twice notify.max_age, 12h\)"):
        load_config(path, environ={})
    path.write_text("retention: 20h\nnotify:\n  max_age: 11h\n")
    with pytest.raises(ConfigError, match=r"at least 1d \(the shortest retention\)"):
        load_config(path, environ={})


def test_flap_help_text_speaks_of_episodes() -> None:
    from relia.config import IncidentsConfig

    fields = IncidentsConfig.model_fields
    window = fields["flap_window"].description or ""
    assert "episodes" in window and "resolve_after" in window
    assert "incident opens" not in window
    assert "episodes within flap_window" in (fields["flap_max"].description or "")


def test_ingest_section() -> None:
    from relia.config import load_config as _load

    cfg = _load(environ={})
    assert cfg.ingest.remote_write and cfg.ingest.wal_dir is None
    assert cfg.ingest.fsync_interval is None and cfg.ingest.max_queue_samples == 2_000_000
    cfg = _load(
        environ={"RELIA_INGEST__FSYNC_INTERVAL": "500ms", "RELIA_INGEST__MAX_QUEUE_SAMPLES": "10"}
    )
    assert cfg.ingest.fsync_interval == 0.5 and cfg.ingest.max_queue_samples == 10
    with pytest.raises(ConfigError, match="ingest.max_queue_samples"):
        _load(environ={"RELIA_INGEST__MAX_QUEUE_SAMPLES": "0"})
    assert cfg.ingest.max_future == 600.0  # samples over 10 minutes ahead are refused
    assert _load(environ={"RELIA_INGEST__MAX_FUTURE": "1h"}).ingest.max_future == 3600.0
    with pytest.raises(ConfigError, match="ingest.max_future"):
        _load(environ={"RELIA_INGEST__MAX_FUTURE": "0s"})


def test_ha_section(tmp_path: Path) -> None:
    cfg = load_config(environ={})
    assert (cfg.ha.lease_ttl, cfg.ha.renew_interval, cfg.ha.replica_id) == (10.0, 3.0, None)
    path = tmp_path / "relia.yaml"
    path.write_text("ha: {lease_ttl: 3s, renew_interval: 1s, replica_id: replica-a}\n")
    cfg = load_config(path, environ={"RELIA_HA__LEASE_TTL": "4s"})
    assert (cfg.ha.lease_ttl, cfg.ha.renew_interval, cfg.ha.replica_id) == (4.0, 1.0, "replica-a")
    # A ttl of two renewals or less would make a healthy leader count its lease as lost.
    path.write_text("data_dir: x\nha:\n  lease_ttl: 2s\n  renew_interval: 1s\n")
    with pytest.raises(ConfigError, match=r"relia.yaml:2: ha: .*more than twice renew_interval"):
        load_config(path, environ={})
    path.write_text("ha: {replica_id: ''}\n")
    with pytest.raises(ConfigError, match="ha.replica_id"):
        load_config(path, environ={})


def test_store_setting_picks_duckdb_or_postgresql(tmp_path: Path) -> None:
    cfg = load_config(environ={})
    assert cfg.store is None and not cfg.store_is_postgresql
    path = tmp_path / "relia.yaml"
    path.write_text("store: postgresql://relia@db.internal:5432/relia\n")
    cfg = load_config(path, environ={})
    assert cfg.store == "postgresql://relia@db.internal:5432/relia" and cfg.store_is_postgresql
    cfg = load_config(environ={"RELIA_STORE": "postgres://u@h/d"})
    assert cfg.store_is_postgresql
    cfg = load_config(environ={"RELIA_STORE": str(tmp_path / "state")})
    assert cfg.store == str(tmp_path / "state") and not cfg.store_is_postgresql
    assert load_config(environ={"RELIA_STORE": "  "}).store is None
    path.write_text("interval: 15s\nstore: mysql://root:hunter2@h/db\n")
    with pytest.raises(ConfigError, match=r"relia.yaml:2: store: unsupported store 'mysql'") as e:
        load_config(path, environ={})
    assert "hunter2" not in str(e.value)  # the value may hold a password: never echoed


def test_engine_section(tmp_path: Path) -> None:
    cfg = load_config(environ={})
    assert (cfg.engine.executor, cfg.engine.ray_address, cfg.engine.ray_actors) == (
        "local",
        None,
        None,
    )
    path = tmp_path / "relia.yaml"
    path.write_text("engine:\n  executor: ray\n  ray_address: ray://head:10001\n  ray_actors: 8\n")
    cfg = load_config(path, environ={"RELIA_ENGINE__RAY_ACTORS": "4"})
    assert (cfg.engine.executor, cfg.engine.ray_address, cfg.engine.ray_actors) == (
        "ray",
        "ray://head:10001",
        4,
    )
    path.write_text("interval: 15s\nengine:\n  executor: spark\n  ray_actors: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    text = str(info.value)
    assert f"{path}:3: engine.executor: Input should be 'local' or 'ray'" in text
    assert f"{path}:4: engine.ray_actors:" in text


def test_a_setting_written_twice_is_an_error_naming_both_lines(tmp_path: Path) -> None:
    # YAML forbids it and PyYAML keeps the last value: a second `scrape:` section appended to a
    # file would silently drop the first one's targets.
    path = tmp_path / "relia.yaml"
    path.write_text(
        "scrape:\n"
        "  - {name: app, url: 'http://127.0.0.1:9100/metrics'}\n"
        "api:\n"
        "  port: 8080\n"
        "  port: 9090\n"
        "scrape:\n"
        "  - {name: db, url: 'http://127.0.0.1:9187/metrics'}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert str(err.value).splitlines() == [
        f"{path}:5: api.port: written twice in one mapping (first at line 4)",
        f"{path}:6: scrape: written twice in one mapping (first at line 1)",
    ]


def test_a_key_beside_a_merge_overrides_it_and_is_no_repeat(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(
        "notify:\n"
        "  sinks:\n"
        "    - &am {name: a, type: alertmanager, url: 'http://127.0.0.1:9093'}\n"
        "    - {<<: *am, name: b}\n"
    )
    cfg = load_config(path, environ={})
    assert [s.name for s in cfg.notify.sinks] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (".inf", "a duration must be finite"),
        (".nan", "a duration must be finite"),
        ("1.0e+300", "longer than"),
        ("99999999999999999999999d", "longer than"),
    ],
)
def test_an_endless_duration_is_refused_naming_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    # `relia up` waits `interval` between ticks: an infinite or astronomically long wait
    # crashed it at its first tick (OverflowError from the clock), long after the config loaded.
    path = tmp_path / "relia.yaml"
    path.write_text(f"interval: {text}\n")
    with pytest.raises(ConfigError, match=rf"relia.yaml:1: interval: .*{message}"):
        load_config(path, environ={})
    assert parse_duration("15000w") == 15000 * 604_800.0  # 287 years: still a duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1.5s", 1.5),
        ("15 s", 15.0),
        (" 2m ", 120.0),
        ("30", 30.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        (0.25, 0.25),
    ],
)
def test_durations_a_user_writes(text: object, seconds: float) -> None:
    # A quoted number is seconds, like an unquoted one; a unit may follow a space.
    assert parse_duration(text) == seconds


def test_the_longest_duration_is_accepted_and_a_second_more_refused() -> None:
    assert parse_duration(9_223_372_036) == 9_223_372_036.0
    with pytest.raises(ValueError, match="longer than"):
        parse_duration(9_223_372_037)


def test_a_pasted_token_in_place_of_its_hash_is_refused_without_echoing_it() -> None:
    token = "relia_" + "x" * 40
    with pytest.raises(
        ConfigError, match=r"^RELIA_API__TOKENS: api\.tokens\.0\.sha256: this is a token, not"
    ):
        load_config(environ={"RELIA_API__TOKENS": f"[{{name: a, role: read, sha256: {token}}}]"})
    try:
        load_config(environ={"RELIA_API__TOKENS": f"[{{name: a, role: read, sha256: {token}}}]"})
    except ConfigError as exc:
        assert token not in str(exc)


@pytest.mark.parametrize(("port", "ok"), [(0, True), (65535, True), (65536, False), (-1, False)])
def test_api_port_range(port: int, ok: bool) -> None:
    # 0 asks the OS for a free port.
    environ = {"RELIA_API__PORT": str(port)}
    if ok:
        assert load_config(environ=environ).api.port == port
    else:
        with pytest.raises(ConfigError, match=r"^RELIA_API__PORT: api\.port:"):
            load_config(environ=environ)


def test_api_max_header_bytes_is_at_least_1024() -> None:
    assert load_config(environ={"RELIA_API__MAX_HEADER_BYTES": "1024"}).api.max_header_bytes == 1024
    with pytest.raises(ConfigError, match=r"api\.max_header_bytes"):
        load_config(environ={"RELIA_API__MAX_HEADER_BYTES": "1023"})


def test_durations_are_written_back_as_relia_yaml_writes_them() -> None:
    day, hour = 86_400, 3_600
    assert [human_duration(s) for s in (day, 2 * day, 36 * hour, 14 * day)] == [
        "1d",
        "2d",
        "36h",
        "14d",
    ]
    assert [human_duration(s) for s in (hour, 90, 1.5)] == ["1h", "90s", "1.5s"]
    assert all(parse_duration(human_duration(s)) == s for s in (60, 7 * day, 36 * hour, 0.25))


def test_api_slow_client_timeouts_are_durations_above_zero(tmp_path: Path) -> None:
    api = load_config(environ={}).api
    assert (api.header_timeout, api.body_timeout) == (30.0, 60.0)
    cfg = tmp_path / "relia.yaml"
    cfg.write_text("api:\n  header_timeout: 5s\n  body_timeout: 2m\n")
    api = load_config(cfg, environ={}).api
    assert (api.header_timeout, api.body_timeout) == (5.0, 120.0)
    cfg.write_text("api:\n  header_timeout: 0s\n")
    with pytest.raises(ConfigError, match=r"relia\.yaml:2.*api\.header_timeout"):
        load_config(cfg, environ={})
    with pytest.raises(ConfigError, match=r"api\.body_timeout"):
        load_config(environ={"RELIA_API__BODY_TIMEOUT": "soon"})


def test_api_max_connections_is_a_positive_integer(tmp_path: Path) -> None:
    assert load_config(environ={}).api.max_connections == 1000
    cfg = tmp_path / "relia.yaml"
    cfg.write_text("api:\n  max_connections: 50\n")
    assert load_config(cfg, environ={}).api.max_connections == 50
    for bad in ("0", "-3", "1.5", "many"):
        cfg.write_text(f"api:\n  max_connections: {bad}\n")
        with pytest.raises(ConfigError, match=r"relia\.yaml:2.*api\.max_connections"):
            load_config(cfg, environ={})
    with pytest.raises(ConfigError, match=r"api\.max_connections"):
        load_config(environ={"RELIA_API__MAX_CONNECTIONS": "lots"})


def test_the_plain_api_token_turns_auth_on_and_allows_any_host() -> None:
    api = load_config(environ={"RELIA_API__TOKEN": "s3cret", "RELIA_API__HOST": "0.0.0.0"}).api
    assert api.auth_enabled and api.host == "0.0.0.0"
    assert load_config(environ={"RELIA_API__TOKEN": "s3cret"}).api.auth_enabled


def test_an_empty_plain_api_token_is_refused(tmp_path: Path) -> None:
    # An unset ${TOKEN} in a compose file: auth on with a token nobody can send, every request
    # 401 with nothing to say why.
    with pytest.raises(ConfigError, match=r"^RELIA_API__TOKEN: api\.token: is empty \(an unset"):
        load_config(environ={"RELIA_API__TOKEN": ""})
    path = tmp_path / "relia.yaml"
    path.write_text('api:\n  token: " "\n')
    with pytest.raises(ConfigError, match=r"relia\.yaml:2: api\.token: is empty"):
        load_config(path, environ={})


def test_a_plain_api_token_written_as_a_variable_is_refused(tmp_path: Path) -> None:
    # relia.yaml does not expand variables: "${RELIA_TOKEN}" would be the token itself, a
    # text anyone reading the file (or its example) could send.
    path = tmp_path / "relia.yaml"
    for text in ("${RELIA_TOKEN}", "${TOKEN:-dev}", "$TOKEN"):
        path.write_text(f'api:\n  token: "{text}"\n')
        with pytest.raises(ConfigError, match=r"relia\.yaml:2: api\.token: .*RELIA_API__TOKEN"):
            load_config(path, environ={})
    # A token that merely holds a $ is a token.
    assert load_config(environ={"RELIA_API__TOKEN": "a$b{c}"}).api.auth_enabled


def test_localhost_in_capitals_is_loopback() -> None:
    assert not load_config(environ={"RELIA_API__HOST": "LocalHost"}).api.auth_enabled


def test_slos_section(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(
        "slos:\n  files: [slo.yaml]\n  prometheus: http://127.0.0.1:9090/\n  step: 90s\n"
    )
    slos = load_config(path, environ={}).slos
    assert (slos.prometheus, slos.step, slos.interval) == ("http://127.0.0.1:9090", 90.0, 60.0)
    path.write_text("slos:\n  files: [slo.yaml]\n  prometheus: http://p:9090\n  step: 1500ms\n")
    with pytest.raises(ConfigError, match=r"relia.yaml:4: slos.step: the step must be a whole"):
        load_config(path, environ={})
    # SLO files need a Prometheus: slos.prometheus, or the first prometheus source.
    path.write_text("slos:\n  files: [slo.yaml]\n")
    with pytest.raises(ConfigError, match=r"relia.yaml:1: slos: no Prometheus to evaluate"):
        load_config(path, environ={})
    path.write_text(
        "slos:\n  files: [slo.yaml]\nprometheus:\n"
        "  - {name: p, url: 'http://127.0.0.1:9090', queries: [{query: up}]}\n"
    )
    assert load_config(path, environ={}).slos.prometheus is None
    # A source that is itself wrong is the one error reported.
    path.write_text(
        "slos:\n  files: [slo.yaml]\nprometheus:\n"
        "  - {name: p, url: 'ftp://127.0.0.1:9090', queries: [{query: up}]}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value).splitlines() == [
        f"{path}:4: prometheus.0.url: must start with http:// or https://, not ftp://"
    ]


@pytest.mark.parametrize(
    ("threshold", "ok"), [("0", False), ("0.01", True), ("1", True), ("1.01", False)]
)
def test_detector_threshold_is_above_0_and_at_most_1(threshold: str, ok: bool) -> None:
    environ = {"RELIA_DETECTOR__THRESHOLD": threshold}
    if ok:
        assert load_config(environ=environ).detector.threshold == float(threshold)
    else:
        with pytest.raises(ConfigError, match=r"detector\.threshold"):
            load_config(environ=environ)


def test_logs_section(tmp_path: Path) -> None:
    logs = load_config(environ={}).logs
    assert (logs.files, logs.window, logs.warmup_lines, logs.start_at) == (
        [],
        60.0,
        1000,
        "beginning",
    )
    path = tmp_path / "relia.yaml"
    path.write_text(
        "interval: 1ms\nlogs:\n  window: 1ms\n  warmup_lines: 0\n  files:\n"
        "    - {path: /var/log/app.log}\n    - {path: /srv/app.log, name: srv}\n"
    )
    logs = load_config(path, environ={}).logs
    assert [f.label for f in logs.files] == ["app", "srv"]
    assert (logs.window, logs.warmup_lines) == (0.001, 0)
    path.write_text(
        "logs:\n  window: 0.0005\n  files:\n    - {path: /var/log/app.log}\n"
        "    - {path: /srv/app.log, session_key: 'id=(\\d+'}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    text = str(info.value)
    assert f"{path}:2: logs.window: a duration must be at least 1ms" in text
    assert f"{path}:5: logs.files.1.session_key: not a valid regular expression" in text
    path.write_text("logs:\n  files:\n    - {path: /var/log/app.log}\n    - {path: /srv/app.log}\n")
    with pytest.raises(
        ConfigError, match=r"logs\.files: files\[1\] and files\[0\] are both named 'app'"
    ):
        load_config(path, environ={})


def test_a_log_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    # A file not there yet is fine (it is waited for); a directory can never be tailed.
    path = tmp_path / "relia.yaml"
    path.write_text(
        f"logs:\n  files:\n    - {{path: {tmp_path / 'later.log'}}}\n    - {{path: {tmp_path}}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert f"{path}:4: logs.files.1.path: {str(tmp_path)!r} is a directory; name a log file" in str(
        info.value
    )


def test_incidents_refuse_empty_names(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text("incidents:\n  group_by: [service, ' ']\n  topology: {' ': [db]}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    text = str(info.value)
    assert f"{path}:2: incidents.group_by: group_by[1] is empty" in text
    assert f"{path}:3: incidents.topology: a service name is empty" in text


def test_sink_rules(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(
        "notify:\n  sinks:\n"
        "    - {name: hook, type: webhook, url: 'https://hooks.example/relia/', secret_env: K}\n"
    )
    # Only an Alertmanager base URL loses its slash: a webhook URL is posted to as written.
    assert load_config(path, environ={"K": "x"}).notify.sinks[0].url == (
        "https://hooks.example/relia/"
    )
    with pytest.raises(
        ConfigError, match=r"relia.yaml:3: notify.sinks.0.secret_env: .* K is not set"
    ):
        load_config(path, environ={"K": ""})
    path.write_text("notify:\n  breaker_threshold: 0\n  sinks:\n    - {name: my sink, type: log}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    text = str(info.value)
    assert f"{path}:2: notify.breaker_threshold:" in text
    assert f"{path}:4: notify.sinks.0.name: use letters" in text


def test_a_postgresql_store_in_capitals_is_postgresql() -> None:
    cfg = load_config(environ={"RELIA_STORE": "PostgreSQL://relia@db/relia"})
    assert cfg.store_is_postgresql
    # libpq takes the scheme in lower case only: "not a valid connection string" at relia up.
    assert cfg.store == "postgresql://relia@db/relia"
    from relia.ha.duties import ha_dsn

    assert ha_dsn("POSTGRES://u@h/d") == "postgres://u@h/d"


def test_a_keyword_value_connection_string_is_refused_not_taken_for_a_directory(
    tmp_path: Path,
) -> None:
    # It was a DuckDB store in a directory named "host=... dbname=...": no HA, no error.
    path = tmp_path / "relia.yaml"
    path.write_text("interval: 15s\nstore: host=127.0.0.1 dbname=i password=hunter2\n")
    with pytest.raises(ConfigError, match=r"relia.yaml:2: store: .*postgresql://") as e:
        load_config(path, environ={})
    assert "hunter2" not in str(e.value)
    from relia.store import open_store_url

    with pytest.raises(ConfigError, match="postgresql://"):
        open_store_url("dbname=relia user=relia", tmp_path)
    assert not (tmp_path / "dbname=relia user=relia").exists()
    # A directory whose name merely holds "=" is still a directory.
    cfg = load_config(environ={"RELIA_STORE": str(tmp_path / "a=b")})
    assert cfg.store == str(tmp_path / "a=b") and not cfg.store_is_postgresql


@pytest.mark.parametrize("bad", ["a\\0b", "a\\nb", "a\\tb"])
def test_a_replica_id_with_a_control_character_is_refused(tmp_path: Path, bad: str) -> None:
    # It goes into the lease connection's application_name: a NUL made every election round
    # fail with "the database did not answer".
    path = tmp_path / "relia.yaml"
    path.write_text(f'data_dir: x\nha:\n  replica_id: "{bad}"\n')
    with pytest.raises(ConfigError, match=r"relia.yaml:3: ha.replica_id: .*control character"):
        load_config(path, environ={})


def test_samples_per_series_is_at_least_10() -> None:
    assert load_config(environ={}).samples_per_series == 2000
    assert load_config(environ={"RELIA_SAMPLES_PER_SERIES": "10"}).samples_per_series == 10
    with pytest.raises(ConfigError, match=r"^RELIA_SAMPLES_PER_SERIES: samples_per_series:"):
        load_config(environ={"RELIA_SAMPLES_PER_SERIES": "9"})


def test_max_series_is_a_positive_integer_a_million_by_default(tmp_path: Path) -> None:
    assert load_config(environ={}).max_series == 1_000_000
    assert load_config(environ={"RELIA_MAX_SERIES": "5000"}).max_series == 5000
    path = tmp_path / "relia.yaml"
    path.write_text("interval: 15s\nmax_series: 250000\n")
    assert load_config(path, environ={}).max_series == 250_000
    for bad in ("0", "-3", "1.5", "lots", "null"):
        path.write_text(f"interval: 15s\nmax_series: {bad}\n")
        with pytest.raises(ConfigError, match=r"relia.yaml:2: max_series:"):
            load_config(path, environ={})
    with pytest.raises(ConfigError, match=r"^RELIA_MAX_SERIES: max_series:"):
        load_config(environ={"RELIA_MAX_SERIES": "0"})


def test_forget_after_is_a_week_by_default_at_least_an_hour_or_null_for_never(
    tmp_path: Path,
) -> None:
    assert load_config(environ={}).forget_after == 7 * 86400
    assert load_config(environ={"RELIA_FORGET_AFTER": "30d"}).forget_after == 30 * 86400
    path = tmp_path / "relia.yaml"
    path.write_text("interval: 15s\nforget_after: null\n")
    assert load_config(path, environ={}).forget_after is None
    path.write_text("interval: 15s\nforget_after: 2h\n")
    assert load_config(path, environ={}).forget_after == 7200
    path.write_text("interval: 15s\nforget_after: 30m\n")
    with pytest.raises(ConfigError, match=r"relia.yaml:2: forget_after: 30m is too short"):
        load_config(path, environ={})
    path.write_text("interval: 15s\nforget_after: soon\n")
    with pytest.raises(ConfigError, match=r"relia.yaml:2: forget_after:"):
        load_config(path, environ={})


def test_an_error_in_a_list_item_names_the_item_line(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text("scrape:\n  - {name: a, url: 'http://127.0.0.1:1/metrics'}\n  - 5\n")
    with pytest.raises(ConfigError, match=r"relia.yaml:3: scrape\.1:"):
        load_config(path, environ={})


def test_variables_that_are_no_settings_are_ignored() -> None:
    # RELIA_CONFIG names the file; other names merely start like relia's.
    environ = {
        "RELIA_CONFIG": "/etc/relia.yaml",
        "RELIABILITY": "high",
        "RELIA_": "1",
        "RELIA___": "1",
    }
    assert load_config(environ=environ) == ReliaConfig()


def test_a_variable_below_a_scalar_setting_is_no_crash() -> None:
    environ = {"RELIA_INTERVAL": "1m", "RELIA_INTERVAL__UNIT": "s"}
    assert load_config(environ=environ).interval == 60.0


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1:70000", "127.0.0.1:70000: port must be 1-65535"),
        ("head:0", "head:0: port must be 1-65535"),
        ("http://head:8265", "http://head:8265: not a Ray address: give host:6379 (the GCS) "),
    ],
)
def test_a_ray_address_ray_would_retry_is_refused_by_config_check(
    tmp_path: Path, address: str, problem: str
) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(f"engine:\n  executor: ray\n  ray_address: '{address}'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert f"{path}:3: engine.ray_address: {problem}" in str(info.value)


def test_an_environment_value_yaml_cannot_read_is_text() -> None:
    environ = {"RELIA_ENGINE__RAY_ADDRESS": "a: b: c", "RELIA_DETECTOR__NAME": ""}
    cfg = load_config(environ=environ)
    assert cfg.engine.ray_address == "a: b: c" and cfg.detector.name == ""


def test_invalid_yaml_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text("interval: 15s\napi:\n  port: [1, 2\n")
    with pytest.raises(ConfigError, match=rf"^{path}:4: not valid YAML"):
        load_config(path, environ={})


def test_yaml_nested_too_deeply_is_a_config_error(tmp_path: Path) -> None:
    # PyYAML recurses per level: this was a RecursionError traceback from relia config check.
    path = tmp_path / "relia.yaml"
    path.write_text("interval: 15s\napi: " + "[" * 5000 + "\n")
    with pytest.raises(ConfigError, match=rf"^{path}: not valid YAML: nested too deeply$"):
        load_config(path, environ={})


def test_an_environment_value_nested_too_deeply_is_a_config_error() -> None:
    environ = {"RELIA_DETECTOR__PARAMS": "[" * 5000}
    with pytest.raises(ConfigError, match=r"^RELIA_DETECTOR__PARAMS: not valid YAML: nested too"):
        load_config(environ=environ)


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text("# nothing set yet\n")
    assert load_config(path, environ={}) == ReliaConfig()


def test_a_file_that_is_not_text_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_bytes(b"\xff\xfeinterval: 1s\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path, environ={})


def test_a_top_level_list_names_line_1(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text("- 1\n")
    with pytest.raises(ConfigError, match=rf"^{path}:1: expected a mapping"):
        load_config(path, environ={})


def test_a_huge_whole_number_duration_is_refused_naming_the_field(tmp_path: Path) -> None:
    # A whole number too large for a float crashed the load with OverflowError (a traceback
    # from `relia config check`) instead of naming the setting.
    huge = "1" + "0" * 400
    path = tmp_path / "relia.yaml"
    path.write_text(f"data_dir: x\ninterval: {huge}\n")
    with pytest.raises(ConfigError, match=r"relia.yaml:2: interval: .*longer than"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match=r"^RELIA_SLOS__TIMEOUT: slos.timeout: .*longer than"):
        load_config(environ={"RELIA_SLOS__TIMEOUT": huge})
    with pytest.raises(ValueError, match="longer than"):
        parse_duration(10**400)
    with pytest.raises(ValueError, match="positive"):
        parse_duration(-(10**400))


def test_a_section_rule_broken_by_a_variable_names_it(tmp_path: Path) -> None:
    # ha's rule spans two fields: the error is on the section, the variable set one of them.
    # Before, it read "<defaults>: ha: lease_ttl (2s) must be ..." with no word of the variable.
    with pytest.raises(ConfigError, match=r"ha: lease_ttl .*\(environment: RELIA_HA__LEASE_TTL\)$"):
        load_config(environ={"RELIA_HA__LEASE_TTL": "2s"})
    path = tmp_path / "relia.yaml"
    path.write_text("data_dir: x\nha:\n  renew_interval: 1s\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"RELIA_HA__LEASE_TTL": "2s", "RELIA_API__PORT": "9000"})
    assert str(info.value) == (
        f"{path}:2: ha: lease_ttl (2s) must be more than twice renew_interval (1s) "
        "(environment: RELIA_HA__LEASE_TTL)"
    )
    # So does a rule across sections (slos needs a Prometheus).
    with pytest.raises(
        ConfigError, match=r"slos: no Prometheus .*\(environment: RELIA_SLOS__FILES\)$"
    ):
        load_config(environ={"RELIA_SLOS__FILES": "[slo.yaml]"})


def test_defaults_a_user_relies_on() -> None:
    cfg = load_config(environ={})
    assert (cfg.data_dir, cfg.interval, cfg.api.port) == (Path("relia-data"), 15.0, 8787)
    assert not cfg.host.per_cpu
    notify, ingest, inc = cfg.notify, cfg.ingest, cfg.incidents
    assert (notify.breaker_threshold, notify.breaker_cooldown) == (5, 30.0)
    assert ingest.max_samples_per_tick == 250_000
    assert (inc.group_window, inc.reopen_window, inc.flap_window) == (300.0, 1800.0, 3600.0)
    cfg = load_config(
        environ={
            "RELIA_SCRAPE": "[{name: a, url: 'http://127.0.0.1:9100/metrics'}]",
            "RELIA_PROMETHEUS": "[{name: p, url: 'http://127.0.0.1:9090', queries: [{query: up}]}]",
        }
    )
    assert (cfg.scrape[0].timeout, cfg.scrape[0].interval) == (5.0, None)
    prom = cfg.prometheus[0]
    assert (prom.lookback, prom.timeout, prom.queries[0].step) == (300.0, 10.0, 15.0)


def test_token_entries_are_trimmed_and_named() -> None:
    digest = "AB" * 32
    tokens = f"[{{name: a, role: read, sha256: ' {digest} '}}]"
    api = load_config(environ={"RELIA_API__TOKENS": tokens}).api
    assert api.tokens[0].sha256.get_secret_value() == digest.lower()
    with pytest.raises(ConfigError, match=r"^RELIA_API__TOKENS: api\.tokens\.0\.name:"):
        load_config(environ={"RELIA_API__TOKENS": tokens.replace("name: a", "name: ''")})


def test_a_store_written_with_spaces_is_trimmed(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text("store: ' postgresql://relia@db/relia '\n")
    cfg = load_config(path, environ={})
    assert cfg.store == "postgresql://relia@db/relia" and cfg.store_is_postgresql
    path.write_text("store: '  '\n")
    assert load_config(path, environ={}).store is None


def test_an_unknown_key_in_capitals_is_named_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text("data_dir: x\nInterval: 5s\n")
    with pytest.raises(
        ConfigError, match=rf"^{path}:2: Interval: unknown field 'Interval'; did you mean "
    ):
        load_config(path, environ={})


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("api:\n  prot: 9000\n", ":2: api.prot: unknown field 'prot'; did you mean 'port'?"),
        (
            "detectr: {name: default}\n",
            ":1: detectr: unknown field 'detectr'; did you mean 'detector'?",
        ),
        (
            "notify:\n  sinks:\n    - {name: a, url: 'http://127.0.0.1:1/x', typ: webhook}\n",
            ":3: notify.sinks.0.typ: unknown field 'typ'; did you mean 'type'?",
        ),
        ("api:\n  zzzzz: 1\n", ":2: api.zzzzz: unknown field 'zzzzz' (known here: enabled, host, "),
        ("zzzzz: 1\n", ":1: zzzzz: unknown field 'zzzzz' (known here: data_dir, store, "),
    ],
)
def test_an_unknown_field_is_told_the_closest_one_or_what_the_section_takes(
    tmp_path: Path, text: str, said: str
) -> None:
    # Pydantic's own words were "Extra inputs are not permitted", which says neither.
    path = tmp_path / "relia.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert f"{path}{said}" in str(err.value)


def test_a_tls_key_error_shows_no_missing_reason(tmp_path: Path) -> None:
    # A certificate given as the key: ssl gives no reason, and the message said "(None)".
    from tests.api.test_tls import _self_signed

    cert, _ = _self_signed(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    for key in (cert, garbage):
        path = tmp_path / "relia.yaml"
        path.write_text(f"api:\n  tls_cert: {cert}\n  tls_key: {key}\n")
        with pytest.raises(ConfigError) as err:
            load_config(path, environ={})
        assert "is not the PEM private key of api.tls_cert" in str(err.value)
        assert "None" not in str(err.value)


def test_a_sinks_min_severity(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(
        "notify:\n  sinks:\n    - {name: chat, type: log}\n"
        "    - {name: pager, type: log, min_severity: critical}\n"
        "    - {name: ops, type: log, min_severity: warning}\n"
    )
    chat, pager, ops = load_config(path, environ={}).notify.sinks
    assert (chat.min_severity, pager.min_severity, ops.min_severity) == (
        "info",
        "critical",
        "warning",
    )
    path.write_text(
        "notify:\n  sinks:\n    - {name: chat, type: log}\n"
        "    - {name: pager, type: log, min_severity: error}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert (
        f"{path}:4: notify.sinks.1.min_severity: Input should be 'info', 'warning' or 'critical'"
        in str(info.value)
    )


def test_the_readmes_relia_yaml_loads(tmp_path: Path) -> None:
    # The README's annotated relia.yaml is what people copy: every setting in it must exist.
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    found = re.search(r"### relia\.yaml.*?```yaml\n(.*?)```", readme, re.S)
    assert found is not None
    path = tmp_path / "relia.yaml"
    path.write_text(found.group(1))
    cfg = load_config(path, environ={"RELIA_HOOK_SECRET": "a", "RELIA_PAGER_SECRET": "b"})
    assert [s.name for s in cfg.notify.sinks] == ["am", "hook", "pager"]
    assert cfg.notify.sinks[2].min_severity == "critical"


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("api:\n  port: false\n", "api.port"),
        ("api:\n  max_connections: true\n", "api.max_connections"),
        ("samples_per_series: yes\n", "samples_per_series"),
    ],
)
def test_true_or_false_for_a_number_is_refused_naming_the_field(
    tmp_path: Path, line: str, field: str
) -> None:
    # YAML's true/false were taken as 1 and 0: `port: false` served on a random port.
    path = tmp_path / "relia.yaml"
    path.write_text(line)
    expected = rf"relia\.yaml:\d: {re.escape(field)}: expected a number"
    with pytest.raises(ConfigError, match=expected):
        load_config(path, environ={})


def test_a_relia_secret_variable_no_sink_names_is_not_a_setting(tmp_path: Path) -> None:
    # With the README's RELIA_HOOK_SECRET exported, a command that loads another config (or the
    # defaults: `relia incidents list --url ...` with no relia.yaml here) was refused with
    # "RELIA_HOOK_SECRET: hook_secret: Extra inputs are not permitted". No setting is named
    # *_secret, so such a variable is never one.
    environ = {"RELIA_HOOK_SECRET": "hunter2", "RELIA_PAGER_SECRET": "x", "RELIA_API__PORT": "9100"}
    assert load_config(environ=environ).api.port == 9100
    path = tmp_path / "relia.yaml"
    path.write_text("interval: 30s\n")
    assert load_config(path, environ=environ).interval == 30.0
    with pytest.raises(ConfigError, match="RELIA_OTHER: other"):  # other names are still settings
        load_config(path, environ={**environ, "RELIA_OTHER": "1"})


def test_a_prometheus_source_delay_defaults_to_30s_and_may_be_0(tmp_path: Path) -> None:
    source = "[{name: p, url: 'http://127.0.0.1:9090', queries: [{query: up}]%s}]"
    prom = load_config(environ={"RELIA_PROMETHEUS": source % ""}).prometheus[0]
    assert prom.delay == 30.0
    for text, seconds in ((", delay: 0", 0.0), (", delay: 0s", 0.0), (", delay: 1m", 60.0)):
        got = load_config(environ={"RELIA_PROMETHEUS": source % text}).prometheus[0]
        assert got.delay == seconds
    path = tmp_path / "relia.yaml"
    for value, why in (("-5s", "must not be negative"), ("soon", "expected a duration")):
        path.write_text(
            "prometheus:\n  - name: p\n    url: http://127.0.0.1:9090\n"
            f"    queries: [{{query: up}}]\n    delay: {value}\n"
        )
        with pytest.raises(ConfigError, match=rf"relia\.yaml:5: prometheus\.0\.delay: .*{why}"):
            load_config(path, environ={})


@pytest.mark.parametrize(
    ("interval", "window", "fits"),
    [("15s", "10s", "15s"), ("15s", "40s", "45s"), ("1m", "1ms", "1m")],
)
def test_a_logs_window_that_is_not_a_multiple_of_the_interval_is_refused(
    tmp_path: Path, interval: str, window: str, fits: str
) -> None:
    """Lines are counted in the window of the tick that read them: a window some ticks miss
    reads 0 now and then (steady logs as a saw-tooth)."""
    path = tmp_path / "relia.yaml"
    path.write_text(
        f"interval: {interval}\nlogs:\n  window: {window}\n  files:\n    - path: /var/log/a.log\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    text = str(info.value)
    assert text.startswith(f"{path}:3: logs.window: ") and "not a multiple of interval" in text
    assert f"use {fits} or another multiple of interval" in text
    path.write_text(
        f"interval: {interval}\nlogs:\n  window: {fits}\n  files:\n    - path: /var/log/a.log\n"
    )
    assert load_config(path, environ={}).logs.window == parse_duration(fits)
    # Without log files the window is not used: nothing to refuse.
    path.write_text(f"interval: {interval}\nlogs:\n  window: {window}\n")
    load_config(path, environ={})


@pytest.mark.parametrize("pattern", ["/var/log/nginx/*.log", "/var/log/app-?.log", "/x/[ab].log"])
def test_a_glob_pattern_as_a_log_path_is_refused(tmp_path: Path, pattern: str) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(f"logs:\n  files:\n    - name: a\n      path: {pattern}\n")
    with pytest.raises(
        ConfigError,
        match=r":4: logs\.files\.0\.path: .*is a glob pattern, which "
        r"is not supported: list each log file",
    ):
        load_config(path, environ={})


@pytest.mark.parametrize(
    "token", ["k7 #Qm9vZ2xl", "#abc", "&abc", "'q'", '"q"', "*x", "null", "1e3"]
)
def test_an_environment_token_is_taken_as_written(token: str) -> None:
    # YAML cut `k7 #…` at its comment (a 2-character admin token) and made `#…` null (auth off).
    api = load_config(environ={"RELIA_API__TOKEN": token}).api
    assert api.token is not None and api.token.get_secret_value() == token
    assert api.auth_enabled


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("RELIA_STORE", "/data/#1", "store"),
        ("RELIA_HA__REPLICA_ID", "007", "replica_id"),
        ("RELIA_ENGINE__RAY_ADDRESS", "'auto'", "ray_address"),
    ],
)
def test_an_environment_value_for_text_is_the_text(name: str, value: str, field: str) -> None:
    cfg = load_config(environ={name: value})
    section = cfg.ha if field == "replica_id" else cfg.engine if field == "ray_address" else cfg
    assert getattr(section, field) == value


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("RELIA_API__PORT", "9000", 9000),
        ("RELIA_HOST__ENABLED", "false", False),
        ("RELIA_FORGET_AFTER", "null", None),
        ("RELIA_INTERVAL", "2.5", 2.5),
        ("RELIA_INTERVAL", "1m #a comment?", None),
    ],
)
def test_an_environment_value_is_yaml_only_when_exactly_a_scalar(
    name: str, value: str, expected: object
) -> None:
    if expected is None and name == "RELIA_INTERVAL":
        # Not a number, so text: the duration parser says what is wrong with all of it.
        with pytest.raises(ConfigError, match=r"RELIA_INTERVAL: interval: .*'1m #a comment\?'"):
            load_config(environ={name: value})
        return
    cfg = load_config(environ={name: value})
    got = {
        "RELIA_API__PORT": cfg.api.port,
        "RELIA_HOST__ENABLED": cfg.host.enabled,
        "RELIA_FORGET_AFTER": cfg.forget_after,
        "RELIA_INTERVAL": cfg.interval,
    }[name]
    assert got == expected


@pytest.mark.parametrize("tagged", ["!!int abc", "!!float abc", "!!timestamp abc", "!!bool abc"])
def test_a_tagged_value_its_tag_cannot_take_is_not_valid_yaml(tmp_path: Path, tagged: str) -> None:
    # PyYAML raises ValueError, KeyError or AttributeError for these: a traceback before.
    path = tmp_path / "relia.yaml"
    path.write_text(f"interval: 15s\napi:\n  port: {tagged}\n")
    tag = tagged.split()[0]
    with pytest.raises(
        ConfigError, match=rf"^{path}:3: not valid YAML: 'abc' is not a valid {tag}$"
    ):
        load_config(path, environ={})
    with pytest.raises(
        ConfigError, match=rf"^RELIA_API__PORT: not valid YAML: 'abc' is not a valid {tag}$"
    ):
        load_config(environ={"RELIA_API__PORT": f"[{tagged}]"})


def test_an_integer_too_long_to_read_is_not_valid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text("api:\n  port: " + "9" * 5000 + "\n")
    with pytest.raises(
        ConfigError, match=rf"^{path}:2: not valid YAML: a value of 5000 characters"
    ):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match=r"^RELIA_API__PORT: not valid YAML: a value of 5000"):
        load_config(environ={"RELIA_API__PORT": "9" * 5000})


def test_a_control_character_in_the_file_is_one_line_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text("interval: 15s\n\nhost: {enabled: tr\0ue}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == (
        f"{path}:3: not valid YAML: unacceptable character #x0000: "
        "special characters are not allowed"
    )


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("data_dir: ~/relia-data\n", "data_dir"),
        ("logs:\n  files: [{path: ~/app.log}]\n", "logs"),
        ("ingest: {wal_dir: ~/wal}\n", "ingest"),
        ("slos: {files: [~/slo.yaml], prometheus: 'http://127.0.0.1:9090'}\n", "slos"),
        ("slos: {sloth_windows: ~/w.yaml}\n", "slos"),
    ],
)
def test_a_path_setting_expands_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, field: str
) -> None:
    # A literal "~" made a ./~ folder (data_dir), or a log file never found.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "relia.yaml"
    path.write_text(content)
    cfg = load_config(path, environ={})
    paths = {
        "data_dir": [cfg.data_dir],
        "logs": [f.path for f in cfg.logs.files],
        "ingest": [cfg.ingest.wal_dir],
        "slos": [*cfg.slos.files, cfg.slos.sloth_windows],
    }[field]
    home = tmp_path / "home"
    assert any(p is not None for p in paths)
    assert all(p is None or p.parent == home for p in paths), paths
    assert not (tmp_path / "~").exists()


def test_the_data_dir_from_the_environment_expands_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_config(environ={"RELIA_DATA_DIR": "~/d"}).data_dir == tmp_path / "d"


@pytest.mark.parametrize(
    ("content", "line", "field"),
    [
        ('data_dir: "/tmp/a\\0b"\n', 1, "data_dir"),
        ('logs:\n  files: [{path: "/tmp/a\\0b.log"}]\n', 2, "logs.files.0.path"),
        ('ingest:\n  wal_dir: "/tmp/w\\0al"\n', 2, "ingest.wal_dir"),
        ('slos:\n  sloth_windows: "/tmp/w\\0.yaml"\n', 2, "slos.sloth_windows"),
        ('api:\n  tls_cert: "/tmp/c\\0.pem"\n  tls_key: k.pem\n', 2, "api.tls_cert"),
    ],
)
def test_a_path_setting_holding_a_nul_is_refused(
    tmp_path: Path, content: str, line: int, field: str
) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=rf"^{path}:{line}: {re.escape(field)}: holds a NUL"):
        load_config(path, environ={})


def test_an_error_set_only_by_a_variable_points_at_no_line_of_the_file(tmp_path: Path) -> None:
    # The file has no api section: line 3 (interval) was named, which has nothing to do with it.
    path = tmp_path / "relia.yaml"
    path.write_text("# relia config\n\ninterval: 5m\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"RELIA_API__HOST": "0.0.0.0"})
    assert str(info.value).startswith(f"{path}: api.auth: auth is off")
    assert str(info.value).endswith("(environment: RELIA_API__HOST)")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("host: false\n", "host: expected a mapping of settings, got false"),
        ("api: [1]\n", "api: expected a mapping of settings, got a list"),
        ("data_dir: null\n", "data_dir: expected a path, got null"),
        ("data_dir: [a]\n", "data_dir: expected a path, got a list"),
        (
            "max_series: 1e6\n",
            "max_series: expected a whole number written out in digits, got '1e6'",
        ),
    ],
)
def test_messages_name_what_was_expected_not_pydantics_classes(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == f"{path}:1: {message}"


def test_samples_per_series_has_an_upper_bound(tmp_path: Path) -> None:
    # Past 2**63 every tick failed with an OverflowError in the store's marks.
    path = tmp_path / "relia.yaml"
    path.write_text("samples_per_series: 99999999999999999999\n")
    with pytest.raises(ConfigError, match=rf"^{path}:1: samples_per_series: .*1000000000"):
        load_config(path, environ={})
    path.write_text("samples_per_series: 1000000000\n")
    assert load_config(path, environ={}).samples_per_series == 10**9


def test_a_store_directory_expands_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_config(environ={"RELIA_STORE": "~/db"}).store == str(tmp_path / "db")
    assert load_config(environ={"RELIA_STORE": "postgresql://u@h/x"}).store_is_postgresql


# -- docs/deployment.md's relia.yaml reference ---------------------------------------------


_REPO = Path(__file__).resolve().parents[1]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _is_duration(field: FieldInfo) -> bool:
    from relia.config import parse_delay

    kinds = [field.annotation, *typing.get_args(field.annotation)]
    marks = [*field.metadata, *(m for k in kinds for m in getattr(k, "__metadata__", ()))]
    return any(
        isinstance(m, BeforeValidator) and m.func in (parse_duration, parse_delay) for m in marks
    )


def _default_as_documented(name: str, field: FieldInfo) -> str:
    """A setting's default as the reference table writes it."""
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and _is_duration(field):
        return human_duration(value)
    if isinstance(value, int) and "bytes" in name:
        for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
            if value % size == 0:
                return f"{value // size} {unit}"
    if isinstance(value, int):
        return f"{value:,}" if value >= 10_000 else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def _settings(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every setting of ``model`` as (dotted name, default); ``[]`` marks a list's entries."""
    for name, field in model.model_fields.items():
        inner = _models_in(field.annotation)
        if inner and typing.get_origin(field.annotation) is not list:
            yield from _settings(inner[0], f"{prefix}{name}.")
            continue
        yield prefix + name, _default_as_documented(name, field)
        if inner:
            yield from _settings(inner[0], f"{prefix}{name}[].")


def test_the_deployment_reference_names_every_setting_with_its_default() -> None:
    # host.per_cpu, ingest.max_decoded_bytes and others were in no doc: a new setting, or a
    # changed default, must be written into the table too.
    text = (_REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    section = text.split("## relia.yaml reference", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \|", section, flags=re.MULTILINE)
    documented = [(name, default.strip().strip("`")) for name, default in rows]
    assert documented == list(_settings(ReliaConfig))


@pytest.mark.parametrize("endpoint", ["/api/v2/alerts", "/api/v1/alerts/", "/api/v2/alerts?x=1"])
def test_an_alertmanager_url_with_the_alerts_endpoint_is_refused(
    tmp_path: Path, endpoint: str
) -> None:
    # relia appends /api/v2/alerts: this url passed, then every alert came back 404.
    path = tmp_path / "relia.yaml"
    path.write_text(
        "notify:\n  sinks:\n    - {name: log, type: log}\n"
        f"    - {{name: am, type: alertmanager, url: 'http://am:9093/am{endpoint}'}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == (
        f"{path}:4: notify.sinks.1.url: the base URL of Alertmanager, without "
        f"{endpoint.split('?')[0].rstrip('/')} (relia appends /api/v2/alerts): http://am:9093/am?"
    )
    path.write_text(
        "notify:\n  sinks:\n    - {name: am, type: alertmanager, url: 'http://am:9093/alerts'}\n"
    )
    assert load_config(path, environ={}).notify.sinks[0].url == "http://am:9093/alerts"


def test_an_encrypted_tls_key_is_one_config_error_never_a_passphrase_prompt(
    tmp_path: Path,
) -> None:
    # OpenSSL asked for the passphrase on the terminal (a hang under a TTY) or, with none,
    # raised a bare OSError: a traceback instead of an error naming api.tls_key.
    import os
    import pty
    import subprocess
    import sys

    from tests.api.test_tls import _openssl, _self_signed

    cert, key = _self_signed(tmp_path)
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        [_openssl(), "pkey", "-in", str(key), "-aes256", "-passout", "pass:abcd"]
        + ["-out", str(encrypted)],
        check=True,
        capture_output=True,
    )
    path = tmp_path / "relia.yaml"
    path.write_text(f"api:\n  tls_cert: {cert}\n  tls_key: {encrypted}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert "api.tls_key" in str(err.value)
    assert "is encrypted (has a passphrase)" in str(err.value)

    # relia config check with a controlling terminal (where OpenSSL prompts): one line,
    # exit 2, no prompt.
    def own_terminal() -> None:
        import fcntl
        import termios

        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "relia", "config", "check", str(path)],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=own_terminal,  # noqa: PLW1509 - the child needs the pty as its terminal
    )
    os.close(terminal)
    try:
        out, errtext = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("relia config check waited for a passphrase")
    finally:
        os.close(controller)
    assert proc.returncode == 2, errtext
    assert "api.tls_key" in errtext and "is encrypted" in errtext
    assert "Traceback" not in errtext and len(errtext.strip().splitlines()) == 1
    assert out == ""


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://relia:PGSECRET PW@127.0.0.1:1/relia",
        "postgresql://relia:PGSEC%zzRET@127.0.0.1:5432/relia",
        "postgresql://relia:PGSEC%00RET@db/relia",
        'postgresql://relia:PG"SECRET PW@db/relia',
        "postgresql://relia@db/relia?password=PGSEC%zzRET",
        "postgresql://relia:PGSECRET PW@db/relia?bogus=1",
    ],
)
def test_a_bad_postgresql_url_never_echoes_its_password(tmp_path: Path, url: str) -> None:
    # libpq quotes the component it cannot parse, and that was the password itself.
    path = tmp_path / "relia.yaml"
    path.write_text(f"store: '{url}'\n")
    with pytest.raises(ConfigError, match=r"relia.yaml:1: store: not a valid PostgreSQL URL") as e:
        load_config(path, environ={})
    assert "PGSEC" not in str(e.value) and "RET" not in str(e.value)
