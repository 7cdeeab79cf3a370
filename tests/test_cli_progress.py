from __future__ import annotations

import io
import json
from pathlib import Path

from emoclient._batch.events import (
    BatchFinished,
    JobDownloaded,
    JobFailed,
    JobPreflightFailed,
    JobQueued,
    JobStarted,
    JobSubmitted,
    JobSucceeded,
)
from emoclient._cli._progress import ProgressView


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run_three_jobs(view: ProgressView, clock: FakeClock) -> None:
    for key in ("a", "b", "c"):
        view(JobQueued(label=f"row {key}", key=key))
    view.problem("row 9", "image", "missing; give the portrait's path or URL")
    view(JobSubmitted(label="row a", key="a", task_id="t-a"))
    view(JobSubmitted(label="row b", key="b", task_id="t-b"))
    view(JobStarted(label="row a", key="a", task_id="t-a"))
    clock.now = 60.0
    view(JobSucceeded(label="row a", key="a", task_id="t-a", video_duration=4.5))
    view(JobDownloaded(label="row a", key="a", task_id="t-a", path=Path("out/a.mp4"), size=10))
    view(JobFailed(label="row c", key="c", code="InvalidFile.FacePose", message="turn the face"))


def test_status_line_counts_states_and_estimates_eta() -> None:
    clock = FakeClock()
    err = io.StringIO()
    view = ProgressView(total=4, mode="tty", err=err, clock=clock)
    _run_three_jobs(view, clock)
    line = view.status_line(width=200)
    assert line.startswith("[")
    assert "3/4" in line  # done + failed + invalid of 4
    assert "1 pending" in line
    assert "1 failed" in line
    assert "1 invalid" in line
    assert "1.0 videos/min" in line  # one video in the minute since the first submit
    assert "ETA 1m00s" in line  # one job left at one per minute
    assert view.counts["done"] == 1
    narrow = view.status_line(width=80)
    assert narrow.endswith("ETA 1m00s")  # on a narrow terminal the rate gives way first
    assert "videos/min" not in narrow


def test_tty_redraws_at_most_once_per_interval() -> None:
    clock = FakeClock()
    err = io.StringIO()
    view = ProgressView(total=3, mode="tty", err=err, clock=clock, interval=0.2)
    for key in ("a", "b", "c"):
        view(JobQueued(label=key, key=key))  # three events within one interval
    assert err.getvalue().count("\r") == 1
    clock.now = 0.5
    view(JobSubmitted(label="a", key="a", task_id="t"))
    assert err.getvalue().count("\r") == 2
    view.close()
    assert err.getvalue().endswith("\n")


def test_plain_mode_writes_one_line_per_event() -> None:
    clock = FakeClock()
    err = io.StringIO()
    view = ProgressView(total=4, mode="plain", err=err, clock=clock)
    _run_three_jobs(view, clock)
    lines = err.getvalue().splitlines()
    assert len(lines) == 10
    assert "\x1b" not in err.getvalue()
    assert any("row a: downloaded: out/a.mp4" in line for line in lines)
    assert any("row c: FAILED InvalidFile.FacePose: turn the face" in line for line in lines)
    assert "[1/4] row 9, image: missing" in lines[3]


def test_json_mode_writes_parseable_events_on_stdout() -> None:
    clock = FakeClock()
    out, err = io.StringIO(), io.StringIO()
    view = ProgressView(total=4, mode="json", out=out, err=err, clock=clock)
    _run_three_jobs(view, clock)
    view(
        BatchFinished(
            counts={"succeeded": 1, "failed": 1},
            billed_seconds=4.5,
            estimated_cost_cny=0.36,
            elapsed=60.0,
        )
    )
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == [
        "queued",
        "queued",
        "queued",
        "manifest_problem",
        "submitted",
        "submitted",
        "started",
        "succeeded",
        "downloaded",
        "failed",
        "batch_finished",
    ]
    assert events[3].pop("at")
    assert events[3] == {
        "event": "manifest_problem",
        "label": "row 9",
        "field": "image",
        "message": "missing; give the portrait's path or URL",
    }
    assert events[4]["task_id"] == "t-a"
    assert err.getvalue() == ""


def test_preflight_failure_counts_as_invalid() -> None:
    view = ProgressView(total=1, mode="plain", err=io.StringIO(), clock=FakeClock())
    view(JobPreflightFailed(label="row 2", key="k", problems=("image: too small",)))
    assert view.counts["invalid"] == 1
    assert view.eta() == 0.0


def test_batch_finished_forgets_jobs_that_will_not_report_again() -> None:
    view = ProgressView(total=3, mode="tty", err=io.StringIO(), clock=FakeClock())
    view(JobQueued(label="a", key="a"))
    view(JobSubmitted(label="b", key="b", task_id="t"))
    view(JobFailed(label="c", key="c", code=None, message="x"))
    finished = BatchFinished(
        counts={"failed": 1}, billed_seconds=0, estimated_cost_cny=0, elapsed=1, stopped=True
    )
    view(finished)
    assert +view.counts == {"failed": 1}
    assert "1/3 · 1 failed" in view.status_line(width=200)
