from __future__ import annotations

from pathlib import Path

import pytest

from relia._urls import http_url_problem, shown_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:9090", "http://127.0.0.1:9090"),
        ("http://user:s3cret@prom:9090/x?q=1", "http://user:***@prom:9090/x?q=1"),
        ("https://:s3cret@[::1]:443", "https://:***@[::1]:443"),
        ("http://user@prom", "http://user@prom"),  # no password: nothing to hide
        ("http://u:p%40ss@prom", "http://u:***@prom"),
        ("http://[::1", "http://[::1"),  # unparsable: shown as it is (it holds no secret we know)
    ],
)
def test_a_password_in_a_url_is_never_shown(url: str, shown: str) -> None:
    assert shown_url(url) == shown


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:9090", None),
        ("https://[::1]:443/api", None),
        ("localhost:9090", "must start with http:// or https:// (http://localhost:9090?)"),
        ("ftp://127.0.0.1", "must start with http:// or https://, not ftp://"),
        ("http://", "not a valid URL: no host"),
        ("http://:9100/metrics", "not a valid URL: no host"),
        ("http://127.0.0.1:99999", "not a valid URL: Port out of range 0-65535"),
        ("http://[::1", "not a valid URL: Invalid IPv6 URL"),
    ],
)
def test_http_url_problem_says_why_no_request_can_be_sent(url: str, problem: str | None) -> None:
    assert http_url_problem(url) == problem


@pytest.mark.parametrize("url", ["localhost:9090", "ftp://127.0.0.1", "http://", "http://[::1"])
def test_the_cli_and_relia_yaml_refuse_a_url_with_the_same_words(tmp_path: Path, url: str) -> None:
    # They had their own checks, and said different things of the same URL.
    from relia._cliutil import check_url
    from relia.config import load_config
    from relia.errors import ConfigError

    with pytest.raises(ConfigError) as cli:
        check_url(url, "--prometheus")
    path = tmp_path / "relia.yaml"
    path.write_text(f'prometheus:\n  - name: p\n    url: "{url}"\n    queries: [{{query: up}}]\n')
    with pytest.raises(ConfigError) as yaml:
        load_config(path, environ={})
    assert str(cli.value) == f"--prometheus: {http_url_problem(url)}"
    assert str(yaml.value) == f"{path}:3: prometheus.0.url: {http_url_problem(url)}"
