"""Submitting without ever paying twice: intent first, and reconciliation of lost answers.

The service has no idempotency key, so a submit whose answer was lost (a dropped connection,
a 5xx, a crash between the POST and the journal write) may have created a billed task.
Every submit therefore leaves two traces first: the intent in the journal (durable, for this
batch's rerun) and an open intent in the account store (for every other process of the
account). A task id, once known, is claimed in the store by the job that owns it.

Before a job whose answer was lost is sent again, the account's tasks of that model are
listed. Candidates are tasks created after the newest task this journal claimed before the
intent, not CANCELED, and claimed by no one. When no other process has a submit of the
model open, the oldest candidate is the lost one. When others do, the match must not be a
guess: live intents of others are waited for (they usually resolve within a second);
what still overlaps (two answers lost at once, or a dead process's submit) is reported as
needing attention and the intent is kept, so a rerun looks again; nothing is matched by
guesswork. Only one job of a content key is submitted per account, also
across journals: the job is claimed in the store first.

HTTP-level retries (429, refused connections) happen in the transport; this module only
decides what to do after a submit whose outcome is unknown: look, then send again, at most
``policy.max_attempts`` times, waiting ``policy.delay()`` between.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio

from emoclient._batch.ledger import Ledger, Ticket
from emoclient._client import EmoClient
from emoclient._exceptions import (
    APIStatusError,
    EmoError,
    ServerError,
    SubmitOutcomeUnknownError,
    TransportError,
)
from emoclient._models import TaskStatus, TaskSummary
from emoclient._retry import RetryPolicy
from emoclient._store import AccountStore

__all__ = ["JobTakenError", "Owner", "UndecidedError", "find_lost_task", "submit_once"]

logger = logging.getLogger("emoclient")

# How far before the intent to look, for clock skew between us and the service.
_SKEW = timedelta(hours=1)
# An intent its process stops renewing (it died) is abandoned after this long.
INTENT_TTL = 300.0
# A job's claim outlives its task (24 h) and the download after it.
JOB_TTL = 48 * 3600.0


class JobTakenError(EmoError):
    """Another batch of the account (``owner``) has this job live; it is paid for once."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        super().__init__(
            f"another batch ({owner}) is rendering this job on the same account; it is paid "
            "for once: wait for that batch and take its video, or rerun once it is done"
        )


class UndecidedError(EmoError):
    """A lost submit's task cannot be told apart from other processes' tasks."""


@dataclass(frozen=True)
class Owner:
    """Who a batch is in the account store: its journal's id and path."""

    journal_id: str
    journal: str

    def job(self, key: str) -> str:
        """The owner id of one job's intents and tasks."""
        return f"{self.journal_id}:{key}"

    @property
    def batch(self) -> str:
        """The owner id of this batch's job claims, readable in a message."""
        return f"journal {self.journal} #{self.journal_id[:8]}"


async def find_lost_task(
    client: EmoClient,
    ledger: Ledger,
    *,
    model: str,
    intent_at: float,
    owner: str,
    settle: float = 30.0,
) -> str | None:
    """The id of the task a lost submit of ``model`` at ``intent_at`` created (claimed for
    ``owner``), or None when there is none. Raises :class:`UndecidedError` when other
    processes' submits overlap and the task cannot be told apart."""
    store, account = client.limits.store, client.limits.account
    deadline = anyio.current_time() + settle
    while True:
        mine = await _claimed_but_not_journalled(client, ledger, model, intent_at, owner)
        if mine is not None:
            return mine  # the answer arrived and was claimed, then the process died
        candidates = await _candidates(client, ledger, store, model=model, intent_at=intent_at)
        if not candidates:
            return None
        others = [i for i in await store.open_intents(account, model) if i.owner != owner]
        if not others:
            choice = candidates[0].task_id
        elif any(not i.abandoned for i in others) and anyio.current_time() < deadline:
            # Another process is between its POST and its claim: once it has claimed its
            # task, the candidates left are ours. Its order cannot tell which task is whose
            # (intents are written before the rate grant), so nothing is matched by order.
            await anyio.sleep(0.25)
            continue
        else:
            raise UndecidedError(
                f"the answer to a {model} submit was lost while {len(others)} other submit(s) "
                f"of the account were unresolved, and {len(candidates)} unclaimed task(s) "
                "could be this job's; emoclient will not guess. The intent is kept: rerun "
                "later to look again, or check the tasks in the console"
            )
        if await store.claim_task(account, model, task_id=choice, owner=owner) == owner:
            return choice
        # Another process claimed it a moment ago: look again.


async def _claimed_but_not_journalled(
    client: EmoClient, ledger: Ledger, model: str, intent_at: float, owner: str
) -> str | None:
    since = (datetime.fromtimestamp(intent_at, UTC) - _SKEW).timestamp()
    owned = await client.limits.store.task_owners(client.limits.account, model, since=since)
    journalled = await ledger.claimed_tasks(model)
    mine = [task for task, holder in owned.items() if holder == owner and task not in journalled]
    return mine[-1] if len(mine) == 1 else None


async def _candidates(
    client: EmoClient, ledger: Ledger, store: AccountStore, *, model: str, intent_at: float
) -> list[TaskSummary]:
    claimed = await ledger.claimed_tasks(model)
    before = await ledger.claimed_tasks(model, before=intent_at)
    since = datetime.fromtimestamp(intent_at, UTC) - _SKEW
    owned = await store.task_owners(client.limits.account, model, since=since.timestamp())
    listed: list[TaskSummary] = []
    async for page in client.list_tasks(model=model, start_time=since):
        listed.extend(page)
    # Tasks we claimed before the intent bound the search from below (in service time).
    floors = [t.created_at for t in listed if t.task_id in before and t.created_at is not None]
    floor = max(floors, default=None)
    found = [
        t
        for t in listed
        if t.task_id not in claimed
        and t.task_id not in owned
        and t.status is not TaskStatus.CANCELED
        and (floor is None or (t.created_at is not None and t.created_at > floor))
    ]
    return sorted(found, key=lambda t: t.created_at or datetime.max.replace(tzinfo=UTC))


async def _reconcile(
    client: EmoClient, ledger: Ledger, ticket: Ticket, intent_at: float, owner: str
) -> str | None:
    try:
        task_id = await find_lost_task(
            client, ledger, model=ticket.model, intent_at=intent_at, owner=owner
        )
    except UndecidedError:
        raise
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
    owner: Owner,
) -> str:
    """Submit ``ticket`` exactly once and return its task id (journalled and claimed).

    ``intent_at`` is set when an earlier run wrote intent but never learned the outcome:
    the list API is asked first. After an ambiguous failure (lost answer, 5xx, transport
    error) the list API is asked before sending again; any other error (a 4xx, or a 429 the
    transport gave up on) propagates. When the list API fails, ``SubmitOutcomeUnknownError``
    propagates and the journal keeps the intent; :class:`UndecidedError` when the lost task
    cannot be told apart; :class:`JobTakenError` when another batch has the job live.
    """
    assert ticket.submit is not None
    store, account, model = client.limits.store, client.limits.account, ticket.model
    job_owner = owner.job(ticket.key)
    holder = await store.claim_job(account, ticket.key, owner=owner.batch, ttl=JOB_TTL)
    if holder is not None:
        raise JobTakenError(holder)
    if intent_at is not None:
        found = await _reconcile(client, ledger, ticket, intent_at, job_owner)
        if found is not None:
            await ledger.submitted(ticket, found)
            return found
    attempt = 0
    while True:
        intent = time.time()
        await ledger.intent(ticket, at=intent)
        await store.open_intent(account, model, owner=job_owner, at=intent, ttl=INTENT_TTL)
        try:
            submitted = await ticket.submit()
        except (SubmitOutcomeUnknownError, TransportError, ServerError):
            # A task may exist: look before sending again.
            found = await _reconcile(client, ledger, ticket, intent, job_owner)
            if found is not None:
                await ledger.submitted(ticket, found)
                return found
            await store.close_intent(account, model, owner=job_owner)
            if not policy.should_retry(attempt):
                raise
            client.activity.retried("submit")
            await anyio.sleep(policy.delay(attempt))
            attempt += 1
            continue
        except APIStatusError:
            # Refused (4xx, or a 429 the transport gave up on): no task was created.
            await store.close_intent(account, model, owner=job_owner)
            raise
        holder = await store.claim_task(account, model, task_id=submitted.task_id, owner=job_owner)
        if holder != job_owner:  # the service's answer says it is ours, whatever was claimed
            logger.error(
                "task %s was claimed by %s before its own submit's answer arrived; this job "
                "keeps it (its journal has the answer)",
                submitted.task_id,
                holder,
            )
        await ledger.submitted(ticket, submitted.task_id)
        return submitted.task_id


async def release_job(client: EmoClient, key: str, owner: Owner) -> None:
    """The job ended (or was given back): other batches may render it again."""
    await client.limits.store.release_job(client.limits.account, key, owner=owner.batch)
