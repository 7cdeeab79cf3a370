"""Terminal rendering of a batch: a progress bar, plain log lines, or JSON lines.

`ProgressView` is fed the batch's typed events (``Batch(on_event=view)``) and the manifest's
problems. On a terminal it redraws one status line on stderr at most ``1 / interval`` times a
second; elsewhere (a pipe, a CI log) it writes one plain line per event; with ``--json`` it
writes one JSON object per event on stdout. What a person must not miss (a failure, a
resubmission, a stall, a lost answer matched, an event kind this module does not know) gets
a line of its own above the status line. The closing report is in ``_report``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TextIO

from emoclient._batch.events import (
    BatchEvent,
    BatchFinished,
    JobCanceled,
    JobDetected,
    JobDownloaded,
    JobEvent,
    JobExpired,
    JobFailed,
    JobPreflightFailed,
    JobQueued,
    JobReconciled,
    JobResubmitted,
    JobResumed,
    JobStalled,
    JobStarted,
    JobSubmitted,
    JobSucceeded,
    JobUploaded,
)
from emoclient._cli._common import Mode
from emoclient._cli._eta import EtaEstimator
from emoclient._cli._report import counts_text, duration_text, summary_notes

__all__ = ["ENDED", "FINAL", "LogStream", "ProgressView"]

# Display states in the order the bar lists them. FINAL ones count as progress; a job
# cancelled by a stop ends too, but the rerun renders it (the bar does not count it done),
# and so do those "still running" and "not started" when the batch stopped.
STATES = ("queued", "preparing", "pending", "running", "downloading", "done")
FINAL = ("done", "failed", "expired", "invalid")
ENDED = (*FINAL, "canceled", "still running", "not started")

# Events that only move a job along the bar; every other kind (failures, resubmissions,
# stalls, reconciliations, and kinds added later) also gets a line of its own on a terminal.
_QUIET = (
    JobQueued,
    JobUploaded,
    JobDetected,  # a failed detection is told by the JobFailed that follows
    JobSubmitted,
    JobStarted,
    JobSucceeded,
    JobDownloaded,
    JobResumed,
    JobCanceled,
)
# Counted on the status line, by the word it shows.
_NOTED: dict[type[JobEvent], str] = {
    JobResubmitted: "resubmitted",
    JobStalled: "stall warnings",
    JobReconciled: "lost answers checked",
}

_STATE_OF: dict[type[JobEvent], str] = {
    JobQueued: "queued",
    JobUploaded: "preparing",
    JobDetected: "preparing",
    JobSubmitted: "pending",
    JobReconciled: "pending",
    JobResubmitted: "queued",
    JobStarted: "running",
    JobSucceeded: "downloading",
    JobDownloaded: "done",
    JobFailed: "failed",
    JobExpired: "expired",
    JobCanceled: "canceled",
    JobPreflightFailed: "invalid",
}
# Journal states a resumed job can stand in, mapped to what the bar shows.
_RESUMED_STATE = {
    "new": "queued",
    "submitting": "pending",
    "submitted": "pending",
    "succeeded": "downloading",
    "downloaded": "downloading",  # JobDownloaded(skipped=True) follows once the file is checked
    # Final states of an earlier run are reported again without any further event.
    "failed": "failed",
    "expired": "expired",
    "invalid": "invalid",
}


class ProgressView:
    """Render batch events; call it with each event, `problem` for manifest problems."""

    def __init__(
        self,
        *,
        total: int | None = None,
        mode: Mode = "plain",
        err: TextIO | None = None,
        out: TextIO | None = None,
        interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.mode = mode
        self._err = err or sys.stderr
        self._out = out or sys.stdout
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._states: dict[str, str] = {}
        self._invalid: set[str] = set()
        self.counts: Counter[str] = Counter()
        self.noted: Counter[str] = Counter()  # resubmissions, stalls, ... (see _NOTED)
        self.eta_estimator = EtaEstimator(weight=0.2, settle=20.0)
        self._drawn_at = -interval
        self._line_width = 0
        self._ended = False

    # -- input ------------------------------------------------------------------------------

    @property
    def manifest_invalid(self) -> int:
        """Rows of the manifest that never became a job (`problem`)."""
        return len(self._invalid)

    def __call__(self, event: BatchEvent) -> None:
        if isinstance(event, JobEvent):
            self._track(event)
        elif isinstance(event, BatchFinished):
            self._forget_live_jobs()
        if self.mode == "json":
            data = event.to_json()
            if isinstance(event, BatchFinished):
                data["counts"] = self.with_manifest_rows(event.counts)
            self._emit_json(data)
        elif self.mode == "plain":
            self._err.write(f"{self._plain_line(event)}\n")
            self._err.flush()
        elif isinstance(event, JobEvent) and not isinstance(event, _QUIET):
            stamp = event.at.astimezone().strftime("%H:%M:%S")
            self._print(f"{stamp} {_job_line(event)}")
        else:
            self.refresh(force=isinstance(event, BatchFinished))

    def with_manifest_rows(self, counts: Mapping[str, int]) -> dict[str, int]:
        """``counts`` by result status with the manifest's invalid rows added (the batch
        never saw them), as every report counts them."""
        merged = dict(counts)
        if self._invalid:
            merged["invalid"] = merged.get("invalid", 0) + len(self._invalid)
        return merged

    def problem(self, label: str, field: str, message: str) -> None:
        """Count and show a row that never became a job (a manifest problem)."""
        key = f"manifest:{label}"
        if key not in self._invalid:
            self._invalid.add(key)
            self._move(key, "invalid")
        if self.mode == "json":
            at = datetime.now(UTC).isoformat()
            self._emit_json(
                {"event": "manifest_problem", "at": at, "label": label, "field": field}
                | {"message": message}
            )
        elif self.mode == "plain":
            stamp = datetime.now().astimezone().strftime("%H:%M:%S")
            self._print(f"{stamp} {self._fraction()} {label}, {field}: {message}")
        else:
            self._print(f"{label}, {field}: {message}")

    def note(self, text: str) -> None:
        """Show a message to the person at the terminal (stderr, in every mode; on a
        terminal wrapped at word boundaries to its width)."""
        if self.mode == "tty":
            width = shutil.get_terminal_size((100, 20)).columns - 1
            text = "\n".join(textwrap.wrap(text, width, break_long_words=False)) or text
        self._print(text)

    def finish(self, counts: Mapping[str, int]) -> None:
        """Show the batch's final ``counts`` by result status (the closing report's own
        numbers, so that the last status line and the summary agree)."""
        self._states.clear()
        self.counts = Counter(
            {("done" if status == "succeeded" else status): n for status, n in counts.items()}
        )
        self.total = max(self.total or 0, sum(self.counts.values()))
        self._ended = True

    def _track(self, event: JobEvent) -> None:
        if isinstance(event, JobResumed):
            state = _RESUMED_STATE.get(event.state.lower(), "queued")
        else:
            state = _STATE_OF.get(type(event), self._states.get(event.key, "queued"))
        if isinstance(event, JobDownloaded) and not event.skipped:
            self.eta_estimator.finished(self._clock())
        if isinstance(event, JobSubmitted | JobStarted):
            self.eta_estimator.start(self._clock())
        noted = next((word for kind, word in _NOTED.items() if isinstance(event, kind)), None)
        if noted is not None:
            self.noted[noted] += 1
        self._move(event.key, state)

    def _forget_live_jobs(self) -> None:
        # A stopped batch ends with jobs that will never send another event; the final
        # status line shows only what this run finished.
        for state in self._states.values():
            self.counts[state] -= 1
        self._states.clear()

    def _move(self, key: str, state: str) -> None:
        previous = self._states.pop(key, None)
        if previous is not None:
            self.counts[previous] -= 1
        self.counts[state] += 1
        if state not in ENDED:  # finished jobs are forgotten: memory stays bounded
            self._states[key] = state

    # -- output -----------------------------------------------------------------------------

    def refresh(self, *, force: bool = False) -> None:
        """Redraw the status line (TTY mode), at most once per interval unless forced."""
        if self.mode != "tty":
            return
        now = self._clock()
        if not force and now - self._drawn_at < self._interval:
            return
        self._drawn_at = now
        width = shutil.get_terminal_size((100, 20)).columns - 1
        line = self.status_line(width=width)
        self._err.write(f"\r{line}\x1b[K")
        self._err.flush()
        self._line_width = len(line)

    def clear_line(self) -> None:
        """Wipe the status line (TTY mode) so that a line of text can be written; the next
        refresh draws it again."""
        if self.mode == "tty" and self._line_width:
            self._err.write("\r\x1b[K")
            self._err.flush()
            self._line_width = 0
            self._drawn_at = -self._interval

    def log_text(self, text: str) -> None:
        """Write a log record's text (``-v``) on a line of its own (the status line is
        drawn again at the next refresh)."""
        self.clear_line()
        self._err.write(text)
        self._err.flush()

    def close(self) -> None:
        """End the status line so that what follows starts on a fresh line."""
        if self.mode == "tty":
            self.refresh(force=True)
            self._err.write("\n")
            self._err.flush()
            self._line_width = 0

    def status_line(self, *, width: int = 100, bar: bool = True) -> str:
        """``[####....] 12/30 · 1 pending · 1 running · 2 failed · ETA 8m00s · 1.5 videos/min``
        followed by what was noted (``· 2 resubmitted``).

        When the line is wider than ``width``, the notes and the rate go first, then the
        states from the last (``…`` says some are left out); the ETA stays.
        """
        final = sum(self.counts[state] for state in FINAL)
        total = max(self.total or 0, sum(self.counts.values()))
        parts = [f"{final}/{total}" if total else f"{final}"]
        for state in (*STATES, *ENDED[1:]):
            if self.counts[state] and state != "done":
                parts.append(f"{self.counts[state]} {state}")
        eta = self.eta()
        eta_text = f"ETA {duration_text(eta)}" if eta is not None else "ETA --"
        if self._ended:  # after the end there is nothing left to wait for
            left = any(self.counts[state] for state in ENDED if state not in FINAL)
            eta_text = "stopped" if left else "finished"
        rate = self.videos_per_minute()
        bar_width = 20 if width >= 80 else 10  # a steady bar; the text gives way instead
        filled = round(bar_width * final / total) if total else 0
        drawn = f"[{'#' * filled}{'.' * (bar_width - filled)}] " if bar else ""
        line = drawn + " · ".join([*parts, eta_text])
        if len(line) > width and len(parts) > 1:
            while len(parts) > 1 and len(drawn + " · ".join([*parts, "…", eta_text])) > width:
                parts.pop()
            line = drawn + " · ".join([*parts, "…", eta_text])
        extras = [f"{rate:.1f} videos/min"] if rate else []
        extras += [f"{n} {word}" for word, n in self.noted.items() if n]
        for extra in extras:
            if len(line) + len(extra) + 3 > width:
                break
            line += f" · {extra}"
        return line[:width]

    def videos_per_minute(self) -> float | None:
        """Videos finished per minute in this run, at the smoothed pace of the last few."""
        return self.eta_estimator.per_minute()

    def eta(self) -> float | None:
        """Seconds until every job is final, at the measured pace (None: unknown yet).

        Smoothed (see `EtaEstimator`): it counts down between videos and one slow task
        moves it a little, not by the whole batch.
        """
        total = max(self.total or 0, sum(self.counts.values()))
        remaining = total - sum(self.counts[state] for state in ENDED)
        return self.eta_estimator.estimate(remaining, self._clock())

    def _plain_line(self, event: BatchEvent) -> str:
        stamp = event.at.astimezone().strftime("%H:%M:%S")
        if isinstance(event, BatchFinished):
            counts = counts_text(self.with_manifest_rows(event.counts))
            return " · ".join([f"{stamp} batch finished: {counts}", *summary_notes(event)])
        if not isinstance(event, JobEvent):
            return f"{stamp} {_generic(event)}"
        assert isinstance(event, JobEvent)
        return f"{stamp} {self._fraction()} {_job_line(event)}"

    def _fraction(self) -> str:
        final = sum(self.counts[state] for state in FINAL)
        return f"[{final}/{self.total}]" if self.total else f"[{final}]"

    def _emit_json(self, data: Mapping[str, object]) -> None:
        self._out.write(json.dumps(data, ensure_ascii=False) + "\n")
        self._out.flush()

    def _print(self, text: str) -> None:
        self.clear_line()
        self._err.write(text + "\n")
        self._err.flush()
        self.refresh(force=True)


class LogStream:
    """A stderr log handler's stream while the view draws (``handler.setStream``): each
    record goes through `ProgressView.log_text`, so it never lands inside the status line."""

    def __init__(self, view: ProgressView) -> None:
        self._view = view

    def write(self, text: str) -> int:
        self._view.log_text(text)
        return len(text)

    def flush(self) -> None:
        pass


def _job_line(event: JobEvent) -> str:
    text = _describe(event)
    if event.task_id and event.task_id not in text:
        text += f" (task {event.task_id})"
    return f"{event.label}: {text}"


_BASE_FIELDS = frozenset({"at", "label", "key", "task_id"})


def _generic(event: BatchEvent) -> str:
    """An event this module has no words for: its kind and its fields."""
    fields = [
        f"{f.name} {getattr(event, f.name)}"
        for f in dataclasses.fields(event)
        if f.name not in _BASE_FIELDS
    ]
    return event.kind.replace("_", " ") + (f" ({', '.join(fields)})" if fields else "")


def _describe(event: JobEvent) -> str:
    if isinstance(event, JobPreflightFailed):
        return "invalid: " + "; ".join(event.problems)
    if isinstance(event, JobResumed):
        return f"resumed from the journal ({event.state})"
    if isinstance(event, JobUploaded):
        return f"uploaded {event.field}"
    if isinstance(event, JobDetected):
        verdict = "passed" if event.passed else f"failed ({event.code}: {event.message})"
        return f"detection {verdict}{' (cached)' if event.cached else ''}"
    if isinstance(event, JobReconciled):
        return "lost submit matched a task" if event.found else "lost submit: no task was made"
    if isinstance(event, JobResubmitted | JobStalled):
        return event.message
    if isinstance(event, JobSucceeded):
        return f"succeeded, {event.video_duration:g} s of video"
    if isinstance(event, JobDownloaded):
        verb = "already on disk" if event.skipped else "downloaded"
        return f"{verb}: {event.path} ({event.size} bytes)"
    if isinstance(event, JobFailed):
        return f"FAILED {event.code or ''}: {event.message}".replace(" :", ":")
    if isinstance(event, JobExpired):
        return f"EXPIRED: {event.message}"
    if isinstance(event, JobCanceled):
        return "canceled (not billed; the rerun renders it)"
    if isinstance(event, JobQueued | JobSubmitted | JobStarted):
        return event.kind
    return _generic(event)
