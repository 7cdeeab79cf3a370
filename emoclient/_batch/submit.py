"""Submitting without ever paying twice: intent first, and reconciliation of lost answers.

The service has no idempotency key, so a submit whose answer was lost (a dropped connection,
a 5xx, a crash between the POST and the journal write) may have created a billed task.
Before such a job is sent again, the account's tasks of that model are listed: a task created
after the intent and after the newest task this journal had claimed before it, and claimed
by no other journal row, is the lost one. Submits are serialised per batch, so at most one
intent per model is open at a time, which makes the match unambiguous for one batch per
account.

HTTP-level retries (429, refused connections) happen in the transport; this module only
decides what to do after a submit whose outcome is unknown: look, then send again, at most
``policy.max_attempts`` times, waiting ``policy.delay()`` between.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import anyio

from emoclient._batch.ledger import Ledger, Ticket
from emoclient._client import EmoClient
from emoclient._exceptions import EmoError, ServerError, SubmitOutcomeUnknownError, TransportError
from emoclient._models import TaskStatus, TaskSummary
from emoclient._retry import RetryPolicy

__all__ = ["find_lost_task", "submit_once"]

# How far before the intent to look, for clock skew between us and the service.
_SKEW = timedelta(hours=1)


async def find_lost_task(
    client: EmoClient, ledger: Ledger, *, model: str, intent_at: float
) -> str | None:
    """The id of the task a lost submit of ``model`` at ``intent_at`` created, if any."""
    claimed = await ledger.claimed_tasks(model)
    before = await ledger.claimed_tasks(model, before=intent_at)
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
    client: EmoClient, ledger: Ledger, ticket: Ticket, intent_at: float
) -> str | None:
    try:
        task_id = await find_lost_task(client, ledger, model=ticket.model, intent_at=intent_at)
    except EmoError as exc:
        # Not an answer from the submit: the outcome stays unknown and the intent must stay.
        raise SubmitOutcomeUnknownError(
            model=ticket.model,
            started_at=datetime.fromtimestamp(intent_at, UTC),
            ended_at=datetime.now(UTC),
            reason=f"then looking for the task failed: {exc}",
        ) from exc
    await ledger.reconciled(ticket, task_id)
    return task_id


async def submit_once(
    client: EmoClient,
    ledger: Ledger,
    ticket: Ticket,
    *,
    intent_at: float | None,
    policy: RetryPolicy,
) -> str:
    """Submit ``ticket`` exactly once and return its task id (journalled and claimed).

    ``intent_at`` is set when an earlier run wrote intent but never learned the outcome:
    the list API is asked first. After an ambiguous failure (lost answer, 5xx, transport
    error) the list API is asked before sending again; any other error (a 4xx, or a 429 the
    transport gave up on) propagates. When the list API fails, ``SubmitOutcomeUnknownError``
    propagates and the journal keeps the intent.
    """
    assert ticket.submit is not None
    if intent_at is not None:
        found = await _reconcile(client, ledger, ticket, intent_at)
        if found is not None:
            await ledger.submitted(ticket, found)
            return found
    attempt = 0
    while True:
        intent = time.time()
        await ledger.intent(ticket, at=intent)
        try:
            submitted = await ticket.submit()
        except (SubmitOutcomeUnknownError, TransportError, ServerError):
            # A task may exist: look before sending again.
            found = await _reconcile(client, ledger, ticket, intent)
            if found is not None:
                await ledger.submitted(ticket, found)
                return found
            if not policy.should_retry(attempt):
                raise
            await anyio.sleep(policy.delay(attempt))
            attempt += 1
            continue
        await ledger.submitted(ticket, submitted.task_id)
        return submitted.task_id
