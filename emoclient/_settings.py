"""The client's settings checked before anything is sent: the API key and the base URL."""

from __future__ import annotations

import ipaddress
import math
import os
from urllib.parse import urlsplit

from emoclient._exceptions import ConfigurationError

__all__ = [
    "DEFAULT_BASE_URL",
    "INSECURE_VARIABLE",
    "bytes_from_env",
    "checked_base_url",
    "checked_key",
]

DEFAULT_BASE_URL = "https://dashscope.aliyuncs.com/api/v1"
"""The Beijing endpoint; EMO and Emoji exist only there."""

#: Set to 1 to allow a plain-http base URL to a host that is not this machine.
INSECURE_VARIABLE = "EMOCLIENT_ALLOW_INSECURE"


def checked_key(key: str) -> str:
    """``key`` if it can go into an HTTP header as it is; the error never shows the key."""
    bad = next((i for i, char in enumerate(key) if not "!" <= char <= "~"), None)
    if bad is not None:  # not printable ASCII: whitespace, a newline, a control character...
        raise ConfigurationError(
            f"The API key (api_key= or DASHSCOPE_API_KEY) has a space, control or non-ASCII "
            f"character (U+{ord(key[bad]):04X}) at position {bad + 1} of {len(key)}; check "
            "DASHSCOPE_API_KEY for a stray space or newline (a key is one word, 'sk-...')."
        )
    return key


def checked_base_url(url: str) -> str:
    """``url`` if it is https, or http to this machine (or with EMOCLIENT_ALLOW_INSECURE=1)."""
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname or "", parts.port  # .port refuses a port that is not a number
    except ValueError:  # e.g. an unclosed [IPv6 address
        parts, host = urlsplit(""), ""
    shown = f"{parts.scheme}://{host}{parts.path}" if host else repr(url[:80])
    allowed = os.environ.get(INSECURE_VARIABLE, "").strip().lower() in ("1", "true", "yes")
    if parts.scheme not in ("http", "https") or not host:
        problem = "is not an http(s) URL"
    elif parts.scheme == "https" or allowed or _is_loopback(host):
        return url
    else:
        problem = (
            "is plain http to another machine, so the API key would travel unencrypted; use "
            f"https, or set {INSECURE_VARIABLE}=1 to allow it"
        )
    raise ConfigurationError(
        f"The base URL {shown} (base_url= or DASHSCOPE_HTTP_BASE_URL) {problem}. The service's "
        f"is {DEFAULT_BASE_URL}."
    )


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, not an address
        return False


def bytes_from_env(name: str, default: int, *, unit: int) -> int:
    """A size or speed from environment variable ``name`` (in ``unit`` bytes), else ``default``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (0 < value < math.inf):
        unit_name = "MiB" if unit == 1024 * 1024 else "KiB/s"
        raise ConfigurationError(f"{name}={raw!r} is not a positive number of {unit_name}.")
    return max(1, round(value * unit))
