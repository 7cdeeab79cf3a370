"""Shared helpers of the client's tests against the emulator (not a test module)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from emoclient import EmoClient, MemoryStore, RetryPolicy
from emoclient.emulator import RunningEmulator

_keys = itertools.count()


FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)


def new_key() -> str:
    """A fresh API key, so that every test has its own emulator account."""
    return f"sk-client-test-{next(_keys)}"


def make_client(
    emulator: RunningEmulator, *, api_key: str | None = None, **options: Any
) -> EmoClient:
    """A client on the emulator with fast polls, fast retries and limits of its own."""
    settings: dict[str, Any] = {
        "base_url": emulator.base_url,
        "retry": FAST_RETRY,
        "store": MemoryStore(),
        "poll_interval": 0.02,
        "max_poll_interval": 0.1,
        "wait_timeout": 60.0,
    }
    settings.update(options)
    return EmoClient(api_key or new_key(), **settings)


def account_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """The only account of a stats document."""
    (account,) = stats["accounts"].values()
    result: dict[str, Any] = account
    return result


def portrait(tmp_path: Path, name: str = "face.jpg", **options: Any) -> Path:
    """A JPEG portrait that passes detection unless told otherwise."""
    from emoclient.emulator.samples import make_portrait

    options.setdefault("fmt", name.rsplit(".", 1)[-1])
    return make_portrait(tmp_path / name, **options)


def speech(tmp_path: Path, name: str = "voice.wav", *, seconds: float = 1.0) -> Path:
    """A short speech-like WAV."""
    from emoclient.emulator.samples import make_speech

    return make_speech(tmp_path / name, seconds=seconds)
