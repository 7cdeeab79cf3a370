"""Small pure pieces of the emulator: the virtual clock, Range parsing, URL signing, times."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emoclient.emulator import VirtualClock, account_label
from emoclient.emulator._results import ResultSigner, parse_range
from emoclient.emulator._wire import format_time


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_clock_runs_speed_times_faster_and_advances() -> None:
    real = FakeMonotonic()
    clock = VirtualClock(speed=60.0, start=1_000.0, monotonic=real)
    real.now += 2.0
    assert clock.now() == 1_120.0
    clock.advance(30.0)
    assert clock.now() == 1_150.0
    assert clock.real_delay(1_210.0) == 1.0
    assert clock.real_delay(1_000.0) == 0.0
    for seconds in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="pass finite seconds >= 0"):
            clock.advance(seconds)
    assert clock.now() == 1_150.0


def test_frozen_clock_moves_only_when_advanced() -> None:
    real = FakeMonotonic()
    clock = VirtualClock(speed=1.0, start=0.0, monotonic=real)
    real.now += 5.0
    clock.set_speed(0.0)
    real.now += 1_000.0
    assert clock.now() == 5.0
    assert clock.real_delay(6.0) is None
    clock.advance(1.0)
    assert clock.now() == 6.0
    for speed in (-2.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="speed must be a finite number"):
            clock.set_speed(speed)
    assert clock.now() == 6.0


@given(st.integers(min_value=1, max_value=10_000), st.integers(0, 20_000), st.integers(0, 20_000))
def test_range_slices_match_http_semantics(size: int, first: int, last: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    wanted = parse_range(f"bytes={first}-{last}", size)
    if first >= size or last < first:
        assert wanted is False
    else:
        assert isinstance(wanted, tuple)
        start, end = wanted
        assert data[start : end + 1] == data[first : last + 1]


def test_range_forms() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=2-", 10) == (2, 9)
    assert parse_range("bytes=-3", 10) == (7, 9)
    assert parse_range("bytes=-30", 10) == (0, 9)
    assert parse_range("bytes=-0", 10) is False
    assert parse_range("bytes=0-1,4-5", 10) is None  # multi-range: the whole body
    assert parse_range("items=0-1", 10) is None


def test_signatures_bind_name_and_expiry() -> None:
    signer = ResultSigner(b"secret")
    signature = signer.sign("t.mp4", 1_700_000_000)
    assert signer.verify("t.mp4", "1700000000", signature)
    assert not signer.verify("u.mp4", "1700000000", signature)
    assert not signer.verify("t.mp4", "1700000001", signature)
    assert not signer.verify("t.mp4", "soon", signature)
    assert not ResultSigner(b"other").verify("t.mp4", "1700000000", signature)


def test_time_strings_are_utc_plus_8_with_milliseconds() -> None:
    assert format_time(0.0, utc_offset_hours=8) == "1970-01-01 08:00:00.000"
    assert format_time(1.2345, utc_offset_hours=0) == "1970-01-01 00:00:01.234"


def test_account_labels_hide_the_key() -> None:
    label = account_label("sk-secret")
    assert label.startswith("acct-")
    assert len(label) == 13
    assert "secret" not in label
