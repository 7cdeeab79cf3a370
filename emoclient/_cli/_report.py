"""The closing report of ``emoclient batch``: the failures, the summary, what to do next.

Pure text from plain values (no I/O), so that each piece is tested as a unit. Every count
here is the same count the last status line, ``batch finished`` and the JSON events show.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Failure",
    "counts_text",
    "duration_text",
    "final_counts",
    "may_pass_on_retry",
    "render_failures",
    "render_summary",
    "retry_hint",
    "row_number",
    "summary_notes",
]

# Codes of the service's own failures: the same job may well pass on another try.
_TRANSIENT_CODES = (
    "InternalError",
    "SystemError",
    "ModelServiceFailed",
    "Throttling",
    "RequestTimeOut",
    "ServiceUnavailable",
    "Requeued",
)


@dataclass(frozen=True, slots=True)
class Failure:
    """One job that did not produce a video."""

    label: str
    status: str
    code: str | None
    message: str
    task_id: str | None = None
    output: str | None = None


def counts_text(counts: Mapping[str, int]) -> str:
    """``28 succeeded, 2 failed`` (statuses with no jobs left out)."""
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "no jobs"


def duration_text(seconds: float) -> str:
    """``45s``, ``3m12s``, ``2h05m``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def row_number(label: str) -> int:
    """The manifest row of a job's label (``row 12`` -> 12; 0 for other labels)."""
    number = label.removeprefix("row ")
    return int(number) if number.isdigit() else 0


def may_pass_on_retry(status: str, code: str | None) -> bool:
    """Whether a failure is the service's, the network's or time's (an expired task or
    URL) rather than the job's own (its content, its parameters): another try may pass."""
    if status == "expired":
        return True
    if status != "failed":
        return False
    return code is None or code.startswith(_TRANSIENT_CODES) or "Timeout" in code


def render_failures(failures: Sequence[Failure], *, width: int = 100, limit: int = 50) -> str:
    """One block per job that did not produce a video (empty if none): a heading line with
    the job, its status, code, task and output, then what happened, wrapped at word
    boundaries to ``width`` columns (a word longer than a line, such as a URL, is kept
    whole)."""
    if not failures:
        return ""
    width = max(width, 40)
    lines: list[str] = []
    for failure in failures[:limit]:
        heading = [failure.label, failure.status]
        if failure.code:
            heading.append(failure.code)
        if failure.task_id:
            heading.append(f"task {failure.task_id}")
        if failure.output:
            heading.append(f"-> {failure.output}")
        lines += _pack(heading, width, indent="  ", hanging="      ")
        lines += _wrap(failure.message, width, indent="      ", hanging="      ")
    if len(failures) > limit:
        lines.append(f"  ... and {len(failures) - limit} more (run with --json for all of them)")
    return "\n".join(lines)


def _pack(pieces: list[str], width: int, *, indent: str, hanging: str) -> list[str]:
    """``pieces`` joined by `` · `` into lines of ``width``, never splitting a piece."""
    lines = [indent + pieces[0]]
    for piece in pieces[1:]:
        if len(lines[-1]) + 3 + len(piece) <= width:
            lines[-1] += f" · {piece}"
        else:
            lines.append(hanging + piece)
    return lines


def _wrap(text: str, width: int, *, indent: str, hanging: str) -> list[str]:
    return textwrap.wrap(
        text,
        width=width,
        initial_indent=indent,
        subsequent_indent=hanging,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent.rstrip()]


_ORDER = ("succeeded", "failed", "expired", "invalid", "canceled", "still running", "not started")


def final_counts(
    counts: Mapping[str, int],
    *,
    manifest_invalid: int,
    interrupted: int,
    total: int | None,
    stopped: bool,
) -> dict[str, int]:
    """The batch's result counts with the manifest's invalid rows, and after a stop the
    tasks left RUNNING (``still running``) and the rows never reached (``not started``),
    so that they add up to the manifest's rows."""
    merged = dict(counts)
    if manifest_invalid:
        merged["invalid"] = merged.get("invalid", 0) + manifest_invalid
    if interrupted:
        merged["still running"] = interrupted
    if stopped and total:
        left = total - sum(merged.values())
        if left > 0:
            merged["not started"] = left
    known = {status: merged.pop(status) for status in _ORDER if status in merged}
    return known | merged


def render_summary(
    counts: Mapping[str, int],
    *,
    billed_seconds: float,
    estimated_cost_cny: float,
    elapsed: float,
    extra: Iterable[str] = (),
    width: int | None = None,
) -> str:
    """``30 jobs: 28 succeeded, 2 failed · 412.3 s billed · ~CNY 33.98 · took 3m12s``;
    with ``width``, wrapped between its parts (never inside one) to that many columns."""
    total = sum(counts.values())
    parts = [
        f"{total} job{'s' if total != 1 else ''}: {counts_text(counts)}",
        f"{billed_seconds:.1f} s of video billed",
        f"estimated cost CNY {estimated_cost_cny:.2f}",
        f"took {duration_text(elapsed)}",
        *extra,
    ]
    if width is None:
        return " · ".join(parts)
    return "\n".join(_pack(parts, width, indent="", hanging="  "))


# Fields of a BatchSummary (or BatchFinished) the summary line shows by itself, or that
# are not counters.
_SHOWN = frozenset(
    {"at", "counts", "billed_seconds", "estimated_cost_cny", "elapsed", "interrupted", "stopped"}
)
_PHRASES = {
    "resubmitted": "{n} task(s) failed on the service's side and were submitted again",
    "retries": "retried {n}",
    "rate_waits": "{n} wait(s) for the rate limit",
    "rate_wait_seconds": "{n} s waited for it",
    "reconciled": "{n} lost submit answers looked up",
    "reconciled_found": "{n} of them found their task (none paid twice)",
    "stalled": "{n} task(s) stalled",
    "from_earlier_runs": "{n} video(s) from earlier runs (paid for then)",
}


def summary_notes(summary: Any) -> list[str]:
    """The other counters of a ``BatchSummary`` or ``BatchFinished`` (resubmissions, retries
    by kind, ...), each non-zero one in a few words: counters added later show up without a
    change here."""
    notes = []
    for f in dataclasses.fields(summary):
        value = getattr(summary, f.name)
        if f.name in _SHOWN or isinstance(value, bool):
            continue
        if isinstance(value, Mapping):  # by kind: "3 upload, 1 query"
            text = ", ".join(f"{n:g} {kind}" for kind, n in value.items() if n)
        elif isinstance(value, float):
            text = f"{value:.1f}" if value >= 0.05 else ""
        elif isinstance(value, int):
            text = f"{value:g}" if value else ""
        else:
            continue
        if text:
            phrase = _PHRASES.get(f.name, "{name}: {n}")
            notes.append(phrase.format(n=text, name=f.name.replace("_", " ")))
    return notes


def retry_hint(failures: int, command: str, *, width: int = 100) -> str:
    """What to type to give ``failures`` jobs that may pass on another try that try: the
    reason wrapped to ``width``, the command on a line of its own."""
    if not failures:
        return ""
    text = (
        f"{failures} job(s) failed for reasons that may pass on another try (the service's "
        "own errors, the network, an expired task or link). Try them again with:"
    )
    return "\n".join([*_wrap(text, max(width, 40), indent="", hanging=""), f"  {command}"])
