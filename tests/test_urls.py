from __future__ import annotations

import pytest

from relia._urls import shown_url


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
