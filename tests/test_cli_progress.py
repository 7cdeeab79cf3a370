from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from emoclient._batch.events import (
    BatchFinished,
    JobCanceled,
    JobDownloaded,
    JobEvent,
    JobFailed,
    JobPreflightFailed,
    JobQueued,
    JobReconciled,
    JobResubmitted,
    JobStalled,
    JobStarted,
    JobSubmitted,
    JobSucceeded,
)
from emoclient._cli._progress import LogStream, ProgressView


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


@dataclass(frozen=True, kw_only=True)
class JobUnknownToTheView(JobEvent):
    """A kind of event the view was never told about (the library may add such)."""

    seconds: float
    reason: str


def test_on_a_terminal_failures_and_other_news_get_lines_of_their_own() -> None:
    clock = FakeClock()
    err = io.StringIO()
    view = ProgressView(total=4, mode="tty", err=err, clock=clock)
    _run_three_jobs(view, clock)
    view(
        JobResubmitted(
            label="row b",
            key="b",
            task_id="t-b",
            code="InternalError.Algo",
            message="task t-b failed (InternalError.Algo: boom); submitted again (1/2)",
            attempt=1,
        )
    )
    view(
        JobStalled(
            label="row d",
            key="d",
            task_id="t-d",
            running_for=900.0,
            expected=60.0,
            message="task t-d has been RUNNING for 900 s",
        )
    )
    view(JobReconciled(label="row e", key="e", task_id="t-e", found=True))
    view(
        JobUnknownToTheView(label="row f", key="f", seconds=2.5, reason="the account's rate limit")
    )
    # Lines written above the status line (each wipes it first; the bar is redrawn after).
    printed = [line.rpartition("\x1b[K")[2] for line in err.getvalue().split("\n")[:-1]]
    assert printed[0] == "row 9, image: missing; give the portrait's path or URL"
    assert [line.split(" ", 1)[1] for line in printed[1:]] == [
        "row c: FAILED InvalidFile.FacePose: turn the face",
        "row b: task t-b failed (InternalError.Algo: boom); submitted again (1/2)",
        "row d: task t-d has been RUNNING for 900 s",
        "row e: lost submit matched a task (task t-e)",
        "row f: unknown to the view (seconds 2.5, reason the account's rate limit)",
    ]
    assert all(line[:8].count(":") == 2 for line in printed[1:])  # HH:MM:SS first
    status = view.status_line(width=200)
    assert "1 resubmitted" in status
    assert "1 stall warnings" in status
    assert "1 lost answers checked" in status


def test_unknown_events_are_shown_in_plain_and_json_modes() -> None:
    event = JobUnknownToTheView(label="row f", key="f", seconds=2.5, reason="slot")
    err = io.StringIO()
    ProgressView(total=1, mode="plain", err=err, clock=FakeClock())(event)
    assert err.getvalue().endswith("[0/1] row f: unknown to the view (seconds 2.5, reason slot)\n")
    out = io.StringIO()
    ProgressView(total=1, mode="json", out=out, clock=FakeClock())(event)
    data = json.loads(out.getvalue())
    assert (data["event"], data["seconds"]) == ("unknown_to_the_view", 2.5)


def test_batch_finished_counts_the_manifests_invalid_rows_in_every_mode() -> None:
    finished = BatchFinished(
        counts={"succeeded": 2, "invalid": 1}, billed_seconds=1, estimated_cost_cny=0, elapsed=1
    )
    out, err = io.StringIO(), io.StringIO()
    plain = ProgressView(total=5, mode="plain", err=err, clock=FakeClock())
    as_json = ProgressView(total=5, mode="json", out=out, err=io.StringIO(), clock=FakeClock())
    for view in (plain, as_json):
        view.problem("row 7", "image", "missing")
        view.problem("row 7", "audio", "missing")  # one row, two problems: one invalid row
        view.problem("row 8", "driven_id", "unknown")
        view(finished)
    assert err.getvalue().splitlines()[-1].endswith("batch finished: 2 succeeded, 3 invalid")
    # Counters the event carries besides (resubmissions, retries, ...) follow the counts.
    plain(dataclasses.replace(finished, retries={"upload": 2}, resubmitted=1))
    assert (
        err.getvalue()
        .splitlines()[-1]
        .endswith(
            "batch finished: 2 succeeded, 3 invalid · retried 2 upload"
            " · 1 task(s) failed on the service's side and were submitted again"
        )
    )
    last = json.loads(out.getvalue().splitlines()[-1])
    assert last["counts"] == {"succeeded": 2, "invalid": 3}


def test_after_a_stop_the_last_status_line_shows_the_summarys_numbers() -> None:
    err = io.StringIO()
    view = ProgressView(total=16, mode="tty", err=err, clock=FakeClock())
    view(JobQueued(label="a", key="a"))
    view(JobDownloaded(label="a", key="a", path=Path("a.mp4"), size=1))
    view(JobCanceled(label="b", key="b", task_id="t-b"))
    view(JobStarted(label="c", key="c", task_id="t-c"))
    counts = {"succeeded": 1, "canceled": 5, "still running": 2, "not started": 8}
    view.finish(counts)
    line = view.status_line(width=200)
    assert line.startswith("[#")
    assert line.endswith("1/16 · 5 canceled · 2 still running · 8 not started · stopped")
    view.close()
    assert err.getvalue().endswith(f"{line}\x1b[K\n")


def test_a_log_line_first_wipes_the_status_line() -> None:
    err = io.StringIO()
    view = ProgressView(total=2, mode="tty", err=err, clock=FakeClock())
    view(JobQueued(label="a", key="a"))
    handler = logging.StreamHandler(LogStream(view))
    handler.handle(logging.LogRecord("emoclient", logging.INFO, __file__, 1, "retry", None, None))
    assert err.getvalue().endswith("\r\x1b[Kretry\n")


def test_a_narrow_status_line_leaves_out_states_not_the_eta() -> None:
    view = ProgressView(total=9, mode="tty", err=io.StringIO(), clock=FakeClock())
    for key, event in enumerate((JobQueued, JobSubmitted, JobStarted)):
        view(event(label=f"{key}", key=f"{key}"))
    view.problem("row 10", "driven_id", "unknown template")
    line = view.status_line(width=40)
    assert len(line) <= 40
    assert line.endswith(" · … · ETA --")
    assert " · · " not in line


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_with_rich_the_same_counts_are_drawn_and_lines_printed_above(monkeypatch: Any) -> None:
    pytest.importorskip("rich")
    monkeypatch.setenv("COLUMNS", "160")
    from emoclient._cli._rich import RichProgressView, rich_available

    err = _Terminal()
    assert rich_available(err)
    assert not rich_available(io.StringIO())  # not a terminal: the plain modes
    view = RichProgressView(total=4, err=err, clock=FakeClock())
    _run_three_jobs(view, FakeClock())
    view.log_text("[emoclient INFO] retrying\n")
    view.finish({"succeeded": 1, "failed": 1, "invalid": 1, "not started": 1})
    view.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err.getvalue())
    assert "row c: FAILED InvalidFile.FacePose: turn the face" in text
    assert "[emoclient INFO] retrying" in text
    assert "3/4 · 1 failed · 1 invalid · 1 not started · stopped" in text


def test_rich_is_not_used_when_switched_off(monkeypatch: Any) -> None:
    pytest.importorskip("rich")
    from emoclient._cli._rich import rich_available

    monkeypatch.setenv("EMOCLIENT_PROGRESS", "plain")
    assert not rich_available(_Terminal())
