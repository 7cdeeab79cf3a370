"""Submitting without ever paying twice: intent first, and reconciliation of lost answers.

The service has no idempotency key, so a submit whose answer was lost (a dropped connection,
a 5xx, a crash between the POST and the journal write) may have created a billed task.
Before such a job is sent again, the account's tasks of that model are listed: a task created
after the intent and after the newest task this journal had claimed before it, and claimed
by no other journal row, is the lost one. Submits are serialised per batch, so at most one
intent per model is open at a time, which makes the match unambiguous for one batch per
account.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio

from emoclient._client import EmoClient
from emoclient._events import BatchEvent, JobReconciled
from emoclient._exceptions import (
    EmoError,
    RateLimitError,
    ServerError,
    SubmitOutcomeUnknownError,
    TransportError,
)
from emoclient._journal import Journal
from emoclient._models import TaskStatus, TaskSummary

if TYPE_CHECKING:
    from emoclient._tickets import Ticket

__all__ = ["find_lost_task", "submit_once"]

# How far before the intent to look, for clock skew between us and the service.
_SKEW = timedelta(hours=1)


async def find_lost_task(
    client: EmoClient, journal: Journal, *, model: str, intent_at: float
) -> str | None:
    """The id of the task a lost submit of ``model`` at ``intent_at`` created, if any."""
    claimed = await journal.claimed_tasks(model)
    before = await journal.claimed_tasks(model, before=intent_at)
    since = datetime.fromtimestamp(intent_at, UTC) - _SKEW
    listed: list[TaskSummary] = []
    async for page in client.list_tasks(model=model, start_time=since):
        listed.extend(page)
    # Tasks we claimed before the intent bound the search from below (in service time).
    floors = [t.created_at for t in listed if t.task_id in before and t.created_at is not None]
    floor = max(floors, default=None)
    candidates = [
        t
        for t in listed
        if t.task_id not in claimed
        and t.status is not TaskStatus.CANCELED
        and (floor is None or (t.created_at is not None and t.created_at > floor))
    ]
    if not candidates:
        return None
    oldest = min(candidates, key=lambda t: t.created_at or datetime.max.replace(tzinfo=UTC))
    return oldest.task_id


async def _reconcile(
    client: EmoClient,
    journal: Journal,
    ticket: Ticket,
    intent_at: float,
    emit: Callable[[BatchEvent], Awaitable[None]],
) -> str | None:
    try:
        task_id = await find_lost_task(client, journal, model=ticket.model, intent_at=intent_at)
    except EmoError as exc:
        # Not an answer from the submit: the outcome stays unknown and the intent must stay.
        raise SubmitOutcomeUnknownError(
            model=ticket.model,
            started_at=datetime.fromtimestamp(intent_at, UTC),
            ended_at=datetime.now(UTC),
            reason=f"then looking for the task failed: {exc}",
        ) from exc
    if task_id is not None:
        await journal.record_submitted(ticket.key, task_id=task_id, model=ticket.model)
    await emit(
        JobReconciled(
            label=ticket.label, key=ticket.key, task_id=task_id, found=task_id is not None
        )
    )
    return task_id


async def submit_once(
    client: EmoClient,
    journal: Journal,
    ticket: Ticket,
    *,
    intent_at: float | None,
    emit: Callable[[BatchEvent], Awaitable[None]],
    attempts: int = 4,
) -> str:
    """Submit ``ticket`` exactly once and return its task id (journalled and claimed).

    ``intent_at`` is set when an earlier run wrote intent but never learned the outcome:
    the list API is asked first. A 429 is retried; after an ambiguous failure (lost answer,
    5xx, transport error) the list API is asked before sending again; any other 4xx
    propagates as ``APIStatusError``. When the list API fails, ``SubmitOutcomeUnknownError``
    propagates and the journal keeps the intent.
    """
    assert ticket.submit is not None
    if intent_at is not None:
        found = await _reconcile(client, journal, ticket, intent_at, emit)
        if found is not None:
            return found
    error: Exception | None = None
    for attempt in range(attempts):
        intent = time.time()
        await journal.record_intent(ticket.key, at=intent)
        try:
            submitted = await ticket.submit()
        except RateLimitError as exc:
            error = exc  # a 429 proves that no task was created
            await anyio.sleep(exc.retry_after or min(2.0**attempt, 10.0))
            continue
        except (SubmitOutcomeUnknownError, TransportError, ServerError) as exc:
            error = exc  # a task may exist: look before sending again
            found = await _reconcile(client, journal, ticket, intent, emit)
            if found is not None:
                return found
            await anyio.sleep(min(0.2 * 2.0**attempt, 5.0))
            continue
        await journal.record_submitted(ticket.key, task_id=submitted.task_id, model=ticket.model)
        return submitted.task_id
    assert error is not None
    raise error
