"""The statistics document of ``GET /_emulator/stats``."""

from __future__ import annotations

from typing import Any

from ._core import EmulatorState
from ._state import Account, RouteStats


def stats_document(state: EmulatorState) -> dict[str, Any]:
    """Per-account counters; accounts are labelled by a hash, never by their key."""
    state.sync()
    now = state.now()
    return {
        "accounts": {label: _account_stats(acct, now) for label, acct in state.accounts.items()},
        "foreign_auth_headers": state.foreign_auth_headers,
        "virtual_time": now,
    }


def _account_stats(account: Account, now: float) -> dict[str, Any]:
    tasks: dict[str, int] = {}
    for task in account.tasks:
        tasks[task.status] = tasks.get(task.status, 0) + 1
    busy = account.busy_seconds
    last_end = account.last_end
    running = account.running
    if running is not None and running.scheduled_time is not None:
        busy += now - running.scheduled_time
        last_end = now
    span = 0.0
    if account.first_start is not None and last_end is not None:
        span = last_end - account.first_start
    return {
        "routes": _routes(account.routes),
        "models": {name: {"routes": _routes(m.routes)} for name, m in account.models.items()},
        "submissions": account.submissions,
        "tasks": tasks,
        "slot_busy_seconds": round(busy, 3),
        "slot_span_seconds": round(span, 3),
        "result_bytes_served": account.result_bytes_served,
    }


def _routes(routes: dict[str, RouteStats]) -> dict[str, dict[str, int]]:
    return {
        name: {"requests": r.requests, "throttled": r.throttled, "max_in_1s": r.peak.peak}
        for name, r in routes.items()
    }
