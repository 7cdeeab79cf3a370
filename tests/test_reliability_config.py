"""Keys and base URLs are checked when the client is made; no error ever shows the key."""

from __future__ import annotations

import pytest

from emoclient import EmoClient, EmoError
from emoclient._exceptions import ConfigurationError

SECRET = "sk-SECRET0123456789"


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DASHSCOPE_API_KEY", "DASHSCOPE_HTTP_BASE_URL", "EMOCLIENT_ALLOW_INSECURE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    "key",
    [
        f"{SECRET}\n",  # the classic: a key file read with its newline
        f" {SECRET}",
        f"{SECRET[:6]}\t{SECRET[6:]}",
        f"{SECRET}\r\nX-Injected: 1",
        f"{SECRET}\x00",
        f"{SECRET}\u2026",  # copied from a page that shortened it
    ],
)
def test_a_key_that_cannot_be_a_header_is_refused_without_showing_it(key: str) -> None:
    with pytest.raises(ConfigurationError, match="DASHSCOPE_API_KEY") as caught:
        EmoClient(key, base_url="https://dashscope.aliyuncs.com/api/v1")
    assert SECRET[3:] not in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, EmoError)


def test_a_key_from_the_environment_with_a_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", f"{SECRET}\n")
    with pytest.raises(ConfigurationError, match=r"\(U\+000A\) at position 20 of 20") as caught:
        EmoClient()
    assert SECRET[3:] not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://dashscope.aliyuncs.com/api/v1",
        "file:///etc/dashscope",
        "dashscope.aliyuncs.com/api/v1",
        "not a url",
        "https://",
        "http://[::1/api/v1",
        "http://127.0.0.1:http/api/v1",
    ],
)
def test_a_base_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="is not an http\\(s\\) URL"):
        EmoClient(SECRET, base_url=url)


def test_the_base_url_from_the_environment_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", "file:///tmp/x")
    with pytest.raises(ConfigurationError, match="DASHSCOPE_HTTP_BASE_URL"):
        EmoClient(SECRET)


def test_plain_http_to_another_machine_needs_an_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "http://dashscope.example.com/api/v1"
    with pytest.raises(ConfigurationError, match="EMOCLIENT_ALLOW_INSECURE=1") as caught:
        EmoClient(SECRET, base_url=url)
    assert "unencrypted" in str(caught.value)
    monkeypatch.setenv("EMOCLIENT_ALLOW_INSECURE", "1")
    assert EmoClient(SECRET, base_url=url).base_url == url


@pytest.mark.parametrize(
    "url",
    [
        "https://dashscope.aliyuncs.com/api/v1",
        "http://127.0.0.1:8000/api/v1",
        "http://127.5.6.7/api/v1",
        "http://localhost:8000/api/v1",
        "http://[::1]:8000/api/v1",
    ],
)
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    assert EmoClient(SECRET, base_url=url).base_url == url
