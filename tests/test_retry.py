"""Retry maths: what is retried and how long to wait."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emoclient._retry import RetryPolicy, is_retryable_status, parse_retry_after


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (429, "Throttling.RateQuota", True),
        (429, "Throttling", True),
        (429, "Throttling.AllocationQuota", False),
        (429, "PrepaidBillOverdue", False),
        (500, "InternalError", True),
        (503, "ModelUnavailable", True),
        (504, None, True),
        (400, "InvalidParameter", False),
        (401, "InvalidApiKey", False),
        (404, None, False),
    ],
)
def test_retryable_statuses(status: int, code: str | None, expected: bool) -> None:
    assert is_retryable_status(status, code) is expected


def test_retry_after_seconds_and_dates() -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=now) == 10.0
    assert parse_retry_after("soon") is None


def test_delay_is_full_jitter_under_a_capped_ceiling() -> None:
    top = RetryPolicy(base_delay=0.5, max_delay=4.0, rng=lambda: 1.0)
    assert [top.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    bottom = RetryPolicy(rng=lambda: 0.0)
    assert bottom.delay(3) == 0.0


def test_retry_after_is_a_floor_but_capped() -> None:
    policy = RetryPolicy(rng=lambda: 0.0, max_retry_after=10.0)
    assert policy.delay(0, retry_after=2.0) == 2.0
    assert policy.delay(0, retry_after=3600.0) == 10.0


def test_attempt_budget() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.should_retry(n) for n in range(3)] == [True, True, False]
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


@given(st.integers(min_value=0, max_value=10_000), st.floats(min_value=0, max_value=1))
def test_delay_never_exceeds_cap(attempt: int, u: float) -> None:
    policy = RetryPolicy(base_delay=0.3, max_delay=7.0, rng=lambda: u)
    assert 0.0 <= policy.delay(attempt) <= 7.0
