"""Terminal rendering of a batch: a progress bar, plain log lines, or JSON lines.

`ProgressView` is fed the batch's typed events (``Batch(on_event=view)``) and the manifest's
problems. On a terminal it redraws one status line on stderr at most ``1 / interval`` times a
second; elsewhere (a pipe, a CI log) it writes one plain line per event; with ``--json`` it
writes one JSON object per event on stdout. `render_failures` and `render_summary` make the
closing report.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, TextIO

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

if TYPE_CHECKING:
    from emoclient._batch.ledger import BatchSummary

__all__ = ["Failure", "ProgressView", "render_failures", "render_recovery", "render_summary"]

Mode = Literal["tty", "plain", "json"]

# Display states in the order the bar lists them; the last five are final.
STATES = ("queued", "preparing", "pending", "running", "downloading", "done")
FINAL = ("done", "failed", "expired", "canceled", "invalid")

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


@dataclass(frozen=True, slots=True)
class Failure:
    """One row of the closing failure table."""

    label: str
    status: str
    code: str | None
    message: str


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
        self._finished_videos = 0
        self._first_video_at: float | None = None
        self._drawn_at = -interval
        self._line_width = 0

    # -- input ------------------------------------------------------------------------------

    def __call__(self, event: BatchEvent) -> None:
        if isinstance(event, JobEvent):
            self._track(event)
        elif isinstance(event, BatchFinished):
            self._forget_live_jobs()
        if self.mode == "json":
            self._emit_json(event.to_json())
        elif self.mode == "plain":
            self._err.write(f"{self._plain_line(event)}\n")
            self._err.flush()
        else:
            self.refresh(force=isinstance(event, BatchFinished))

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
        """Show a message to the person at the terminal (stderr, in every mode)."""
        self._print(text)

    def _track(self, event: JobEvent) -> None:
        if isinstance(event, JobResumed):
            state = _RESUMED_STATE.get(event.state.lower(), "queued")
        else:
            state = _STATE_OF.get(type(event), self._states.get(event.key, "queued"))
        if isinstance(event, JobDownloaded) and not event.skipped:
            self._finished_videos += 1
        if isinstance(event, JobSubmitted | JobStarted) and self._first_video_at is None:
            self._first_video_at = self._clock()
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
        if state not in FINAL:  # finished jobs are forgotten: memory stays bounded
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

    def close(self) -> None:
        """End the status line so that what follows starts on a fresh line."""
        if self.mode == "tty" and self._line_width:
            self.refresh(force=True)
            self._err.write("\n")
            self._err.flush()
            self._line_width = 0

    def status_line(self, *, width: int = 100) -> str:
        """``[####....] 12/30 · 1 pending · 1 running · 2 failed · ETA 8m00s · 1.5 videos/min``.

        When the line is wider than ``width``, the rate goes first, then the end is cut.
        """
        final = sum(self.counts[state] for state in FINAL)
        total = max(self.total or 0, sum(self.counts.values()))
        parts = [f"{final}/{total}" if total else f"{final}"]
        for state in (*STATES, *FINAL[1:]):
            if self.counts[state] and state != "done":
                parts.append(f"{self.counts[state]} {state}")
        eta = self.eta()
        parts.append(f"ETA {_duration(eta)}" if eta is not None else "ETA --")
        rate = self.videos_per_minute()
        bar_width = 20 if width >= 80 else 10  # a steady bar; the text gives way instead
        filled = round(bar_width * final / total) if total else 0
        bar = f"[{'#' * filled}{'.' * (bar_width - filled)}] "
        line = bar + " · ".join(parts)
        if rate and len(line) + len(f" · {rate:.1f} videos/min") <= width:
            line += f" · {rate:.1f} videos/min"
        return line[:width]

    def videos_per_minute(self) -> float | None:
        """Videos finished per minute since the first task was submitted in this run."""
        if not self._finished_videos or self._first_video_at is None:
            return None
        elapsed = self._clock() - self._first_video_at
        return self._finished_videos * 60.0 / elapsed if elapsed > 0 else None

    def eta(self) -> float | None:
        """Seconds until every job is final, at the current throughput (None: unknown)."""
        rate = self.videos_per_minute()
        remaining = max(self.total or 0, sum(self.counts.values())) - sum(
            self.counts[state] for state in FINAL
        )
        if remaining <= 0:
            return 0.0
        return remaining * 60.0 / rate if rate else None

    def _plain_line(self, event: BatchEvent) -> str:
        stamp = event.at.astimezone().strftime("%H:%M:%S")
        if isinstance(event, BatchFinished):
            return f"{stamp} batch finished: {_counts(event.counts)}"
        assert isinstance(event, JobEvent)
        task = f" (task {event.task_id})" if event.task_id else ""
        return f"{stamp} {self._fraction()} {event.label}: {_describe(event)}{task}"

    def _fraction(self) -> str:
        final = sum(self.counts[state] for state in FINAL)
        return f"[{final}/{self.total}]" if self.total else f"[{final}]"

    def _emit_json(self, data: Mapping[str, object]) -> None:
        self._out.write(json.dumps(data, ensure_ascii=False) + "\n")
        self._out.flush()

    def _print(self, text: str) -> None:
        if self.mode == "tty" and self._line_width:
            self._err.write("\r\x1b[K")
            self._line_width = 0
        self._err.write(text + "\n")
        self._err.flush()
        self.refresh(force=True)


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
    return event.kind


def _counts(counts: dict[str, int] | Counter[str]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "no jobs"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def render_failures(failures: Sequence[Failure], *, limit: int = 50) -> str:
    """A plain-text table of the jobs that did not produce a video (empty if none)."""
    if not failures:
        return ""
    shown = failures[:limit]
    rows = [("job", "status", "code", "what happened")]
    rows += [(f.label, f.status, f.code or "-", f.message) for f in shown]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    ]
    if len(failures) > limit:
        lines.append(f"... and {len(failures) - limit} more (run with --json for all of them)")
    return "\n".join(lines)


def render_summary(
    counts: dict[str, int],
    *,
    billed_seconds: float,
    estimated_cost_cny: float,
    elapsed: float,
    extra: Iterable[str] = (),
) -> str:
    """``30 jobs: 28 succeeded, 2 failed · 412.3 s billed · ~CNY 33.98 · took 3m12s``."""
    total = sum(counts.values())
    parts = [
        f"{total} job{'s' if total != 1 else ''}: {_counts(counts)}",
        f"{billed_seconds:.1f} s of video billed",
        f"estimated cost CNY {estimated_cost_cny:.2f}",
        f"took {_duration(elapsed)}",
        *extra,
    ]
    return " · ".join(parts)


def render_recovery(summary: BatchSummary) -> list[str]:
    """What a batch rode out, as parts of the summary line (none when nothing happened)."""
    s = summary
    retries = ", ".join(f"{n} {kind}" for kind, n in s.retries.items() if n)
    parts = {
        f"retried {retries}": retries,
        f"{s.rate_waits} wait(s) for the rate limit": s.rate_waits,
        f"{s.reconciled} lost submit answer(s) looked up ({s.reconciled_found} found their "
        "task, none paid twice)": s.reconciled,
        f"{s.resubmitted} task(s) the service failed submitted again": s.resubmitted,
        f"{s.stalled} task(s) stalled": s.stalled,
    }
    return [part for part, shown in parts.items() if shown]
