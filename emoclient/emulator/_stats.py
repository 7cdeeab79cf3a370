"""The statistics document of ``GET /_emulator/stats``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._core import EmulatorState
from ._state import Account, Load, ModelUsage, RouteStats, Task


def stats_document(state: EmulatorState) -> dict[str, Any]:
    """Per-account counters; accounts are labelled by name or by a hash, never by a key."""
    state.sync()
    now = state.now()
    return {
        "accounts": {label: _account_stats(acct, now) for label, acct in state.accounts.items()},
        "foreign_auth_headers": state.foreign_auth_headers,
        "virtual_time": now,
    }


def _account_stats(account: Account, now: float) -> dict[str, Any]:
    """The account's totals over all models, then each model's own numbers."""
    usages = account.models.values()
    slots = [_slot(usage, now) for usage in usages]
    starts = [start for start, _, _ in slots if start is not None]
    ends = [end for _, end, _ in slots if end is not None]
    span = max(ends) - min(starts) if starts and ends else 0.0
    return {
        "routes": _routes(account.routes),
        "models": {
            name: _model_stats(account, name, usage, now) for name, usage in account.models.items()
        },
        "submissions": sum(usage.submissions for usage in usages),
        "tasks": _by_status(account.tasks),
        "slot_busy_seconds": round(sum(busy for _, _, busy in slots), 3),
        "slot_span_seconds": round(span, 3),
        **_peaks(account.load),
        "result_bytes_served": account.result_bytes_served,
    }


def _model_stats(account: Account, model: str, usage: ModelUsage, now: float) -> dict[str, Any]:
    start, end, busy = _slot(usage, now)
    span = end - start if start is not None and end is not None else 0.0
    return {
        "routes": _routes(usage.routes),
        "submissions": usage.submissions,
        "tasks": _by_status(task for task in account.tasks if task.model == model),
        "slot_busy_seconds": round(busy, 3),
        "slot_span_seconds": round(span, 3),
        **_peaks(usage.load),
    }


def _slot(usage: ModelUsage, now: float) -> tuple[float | None, float | None, float]:
    """First start, last end (now while a task runs) and busy seconds of a model's slot."""
    busy, last_end = usage.busy_seconds, usage.last_end
    running = usage.running
    if running is not None and running.scheduled_time is not None:
        busy += now - running.scheduled_time
        last_end = now
    return usage.first_start, last_end, busy


def _peaks(load: Load) -> dict[str, int]:
    return {"max_in_flight": load.in_flight.peak, "max_running": load.running.peak}


def _by_status(tasks: Iterable[Task]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.status] = counts.get(task.status, 0) + 1
    return counts


def _routes(routes: dict[str, RouteStats]) -> dict[str, dict[str, int]]:
    return {
        name: {"requests": r.requests, "throttled": r.throttled, "max_in_1s": r.peak.peak}
        for name, r in routes.items()
    }
