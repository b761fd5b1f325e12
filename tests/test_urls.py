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


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            'prometheus:\n  - name: p\n    url: "{url}"\n    queries: [{{query: up}}]\n',
            "prometheus.0.url",
        ),
        ('scrape:\n  - name: s\n    url: "{url}"\n', "scrape.0.url"),
        (
            'notify:\n  sinks:\n    - {{name: w, type: webhook, url: "{url}"}}\n',
            "notify.sinks.0.url",
        ),
    ],
    ids=["prometheus", "scrape", "webhook"],
)
def test_a_url_without_a_scheme_never_echoes_its_password(
    tmp_path: Path, text: str, where: str
) -> None:
    # The "(http://...?)" hint repeated the URL as it was, password and all.
    from relia._cliutil import check_url
    from relia.config import load_config
    from relia.errors import ConfigError

    url = "user:PWSECRET@127.0.0.1:9090"
    assert http_url_problem(url) == (
        "must start with http:// or https:// (http://user:***@127.0.0.1:9090?)"
    )
    for option in ("--prometheus", "--url"):
        with pytest.raises(ConfigError) as cli:
            check_url(url, option)
        assert "PWSECRET" not in str(cli.value) and option in str(cli.value)
    path = tmp_path / "relia.yaml"
    path.write_text(text.format(url=url))
    with pytest.raises(ConfigError) as yaml:
        load_config(path, environ={})
    assert where in str(yaml.value) and "PWSECRET" not in str(yaml.value)
