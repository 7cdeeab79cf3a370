"""The pieces of ``emoclient batch``'s output as pure units: the ETA, the failure blocks, the
counts of the summary, the retry command and the summary's counters."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest

from emoclient._cli._eta import EtaEstimator
from emoclient._cli._report import (
    Failure,
    final_counts,
    may_pass_on_retry,
    render_failures,
    render_summary,
    retry_hint,
    summary_notes,
)


def _shown_each_second(gaps: list[float], estimator: EtaEstimator) -> list[tuple[int, float]]:
    """Videos finish ``gaps`` apart from a submit at 0; the ETA read once a second, with
    the true seconds left: ``(second, shown - truth)``-free pairs of (second, shown)."""
    ends = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    estimator.start(0.0)
    done = 0
    shown = []
    for second in range(int(ends[-1]) + 1):
        while done < len(ends) and ends[done] <= second:
            estimator.finished(ends[done])
            done += 1
        value = estimator.estimate(len(gaps) - done, float(second))
        if value is not None:
            shown.append((second, value))
    return shown


def test_eta_counts_down_steadily_through_one_slow_task() -> None:
    # Sixteen tasks of about 10 s; the fourth takes 25 s (the swing 57 s -> 1m28s -> 55 s).
    gaps = [10, 11, 9, 25, 10, 9, 11, 10, 10, 10, 12, 9, 10, 10, 10, 10]
    shown = _shown_each_second([float(g) for g in gaps], EtaEstimator(weight=0.2, settle=20))
    # From one second to the next the ETA moves by about the second that passed: never
    # more than 2.5 s off that, where the unsmoothed pace jumps by tens of seconds.
    for (_, before), (_, after) in itertools.pairwise(shown):
        assert abs(after - (before - 1.0)) <= 2.5
    # ...and it stays near the truth (within 20 % while more than 30 s are left).
    end = sum(gaps)
    for second, value in shown:
        if end - second > 30:
            assert abs(value - (end - second)) <= 0.2 * (end - second)


def test_eta_follows_a_real_change_of_pace() -> None:
    gaps = [10.0] * 5 + [20.0] * 15  # the tasks get twice as long
    shown = dict(_shown_each_second(gaps, EtaEstimator(weight=0.2, settle=20)))
    end = sum(gaps)
    second = int(sum(gaps[:15]))  # ten slow tasks later
    assert abs(shown[second] - (end - second)) <= 0.15 * (end - second)


def test_eta_before_the_first_video_is_unknown_and_zero_when_nothing_is_left() -> None:
    estimator = EtaEstimator()
    assert estimator.estimate(5, 1.0) is None
    estimator.start(0.0)
    assert estimator.estimate(5, 3.0) is None
    assert estimator.per_minute() is None
    estimator.finished(30.0)
    assert estimator.per_minute() == 2.0
    assert estimator.estimate(2, 30.0) == 60.0  # the next one 30 s away, then one more
    assert estimator.estimate(0, 31.0) == 0.0
    # Overdue: the next video is "any moment", the rest a gap each; never negative.
    assert estimator.raw(2, 100.0) == 30.0


@pytest.mark.parametrize(("weight", "settle"), [(0.0, 1.0), (1.5, 1.0), (0.5, -1.0)])
def test_eta_settings_are_checked(weight: float, settle: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        EtaEstimator(weight=weight, settle=settle)


def test_failure_blocks_wrap_at_words_and_name_the_task() -> None:
    message = (
        "The face in the portrait is turned too far from the camera; use a portrait that "
        "looks straight ahead, https://help.aliyun.com/zh/model-studio/emo-detect-api-reference"
    )
    failures = [
        Failure("row 3", "failed", "InvalidFile.FacePose", message, "task-3", "bob.mp4"),
        Failure("row 12", "invalid", None, "image: missing"),
    ]
    text = render_failures(failures, width=60)
    lines = text.splitlines()
    assert lines[0] == "  row 3 · failed · InvalidFile.FacePose · task task-3"
    assert lines[1] == "      -> bob.mp4"
    words = set(message.split())
    for line in lines[2:-2]:
        assert line.startswith("      ")
        # every piece is a whole word of the message: nothing was cut mid-word
        assert set(line.split()) <= words
        assert len(line) <= 60 or len(line.split()) == 1  # only an over-long URL overflows
    assert " ".join(" ".join(lines[2:-2]).split()) == message
    assert lines[-2:] == ["  row 12 · invalid", "      image: missing"]
    assert render_failures([]) == ""
    assert "and 1 more" in render_failures(failures, limit=1)


def test_summary_line() -> None:
    summary = render_summary(
        {"succeeded": 28, "failed": 2}, billed_seconds=412.25, estimated_cost_cny=33.98, elapsed=192
    )
    assert summary == (
        "30 jobs: 28 succeeded, 2 failed · 412.2 s of video billed"
        " · estimated cost CNY 33.98 · took 3m12s"
    )


def test_counts_after_a_stop_add_up_to_the_manifest() -> None:
    # 16 rows: 1 video made, 4 queued tasks cancelled, 2 left RUNNING, 1 bad row, 8 never read.
    counts = final_counts(
        {"succeeded": 1, "canceled": 4},
        manifest_invalid=1,
        interrupted=2,
        total=16,
        stopped=True,
    )
    same: dict[str, Any] = {"manifest_invalid": 0, "interrupted": 0, "total": 3, "stopped": False}
    assert counts == {
        "succeeded": 1,
        "canceled": 4,
        "invalid": 1,
        "still running": 2,
        "not started": 8,
    }
    assert sum(counts.values()) == 16
    assert list(final_counts({"failed": 1, "succeeded": 2}, **same)) == ["succeeded", "failed"]
    # A run to the end: the invalid rows of the manifest are counted with the batch's own.
    assert final_counts(
        {"succeeded": 4, "invalid": 1}, manifest_invalid=2, interrupted=0, total=7, stopped=False
    ) == {"succeeded": 4, "invalid": 3}


@pytest.mark.parametrize(
    ("status", "code", "retry"),
    [
        ("expired", None, True),
        ("failed", None, True),  # the network, a download: no code of the service's
        ("failed", "InternalError.Algo", True),
        ("failed", "Throttling.RateQuota", True),
        ("failed", "InvalidFile.FacePose", False),
        ("failed", "InvalidParameter", False),
        ("invalid", None, False),
        ("canceled", None, False),
    ],
)
def test_which_failures_may_pass_on_another_try(status: str, code: str | None, retry: bool) -> None:
    assert may_pass_on_retry(status, code) is retry


def test_the_retry_hint_is_the_exact_command() -> None:
    command = "emoclient batch 'my manifest.csv' --out videos --retry-failed"
    assert retry_hint(0, command) == ""
    hint = retry_hint(3, command, width=60)
    assert hint.startswith("3 job(s) failed for reasons that may pass on another try")
    assert hint.endswith(f"again with:\n  {command}")  # the command whole, on its own line
    assert all(len(line) <= 60 for line in hint.splitlines()[:-1])


@dataclass
class _Summary:
    counts: dict[str, int] = field(default_factory=dict)
    billed_seconds: float = 1.0
    estimated_cost_cny: float = 0.1
    elapsed: float = 3.0
    interrupted: int = 1
    stopped: bool = True
    resubmitted: int = 2
    upload_retries: int = 5  # a counter this module was never told about
    reconciled: int = 0
    retries: dict[str, int] = field(default_factory=lambda: {"upload": 3, "query": 0, "poll": 1})


def test_every_counter_of_the_summary_shows_when_not_zero() -> None:
    assert summary_notes(_Summary()) == [
        "2 task(s) failed on the service's side and were submitted again",
        "upload retries: 5",
        "retried 3 upload, 1 poll",
    ]


def test_a_long_summary_wraps_between_its_parts() -> None:
    notes = ["2 task(s) failed on the service's side and were submitted again"]
    text = render_summary(
        {"succeeded": 8, "invalid": 1},
        billed_seconds=14.0,
        estimated_cost_cny=1.12,
        elapsed=18,
        extra=notes,
        width=80,
    )
    assert text.splitlines() == [
        "9 jobs: 8 succeeded, 1 invalid · 14.0 s of video billed",
        "  estimated cost CNY 1.12 · took 18s",
        "  2 task(s) failed on the service's side and were submitted again",
    ]
