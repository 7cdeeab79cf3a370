"""``EmoClient.wait``'s loop: poll a task until it ends or its deadline passes.

Transient query failures (what is left after the transport's retries) are ridden out until
the deadline; the poll at the deadline still gets a moment to answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from emoclient._exceptions import (
    APIStatusError,
    TaskCanceledError,
    TaskExpiredError,
    TaskFailedError,
    TransportError,
    WaitTimeoutError,
)
from emoclient._models import Task, TaskStatus
from emoclient._retry import is_retryable_status
from emoclient._timing import PollSchedule, Progress

__all__ = ["wait_for"]

_LAST_POLL_GRACE = 5.0


async def wait_for(
    get_task: Callable[[str], Awaitable[Task]],
    task_id: str,
    limit: float,
    schedule: PollSchedule,
    expected_seconds: float | None,
) -> Task:
    """The SUCCEEDED task; raises the task's failure or :class:`WaitTimeoutError`."""
    start = anyio.current_time()
    deadline = start + limit
    progress = Progress(submitted_at=start)
    last: TaskStatus | None = None
    while True:
        task = await _poll_once(get_task, task_id, deadline)
        if task is not None:
            _raise_if_unsuccessful(task)
            if task.status is TaskStatus.SUCCEEDED:
                return task
            last = task.status
        now = anyio.current_time()
        remaining = deadline - now
        if remaining <= 0:
            raise WaitTimeoutError(task_id=task_id, timeout=limit, last_status=last)
        if last is TaskStatus.RUNNING:
            schedule.running(progress, now, expected=expected_seconds)
        else:
            schedule.pending(progress, now)
        await anyio.sleep(min(progress.next_poll - now, remaining))


async def _poll_once(
    get_task: Callable[[str], Awaitable[Task]], task_id: str, deadline: float
) -> Task | None:
    """One query; a transient failure (after the transport's retries) returns None."""
    try:
        with anyio.fail_after(max(_LAST_POLL_GRACE, deadline - anyio.current_time())):
            return await get_task(task_id)
    except TimeoutError:
        return None
    except TransportError:
        return None
    except APIStatusError as exc:
        if is_retryable_status(exc.status, exc.code):
            return None
        raise


def _raise_if_unsuccessful(task: Task) -> None:
    if task.status is TaskStatus.FAILED:
        raise TaskFailedError(task_id=task.task_id, code=task.code, message=task.message)
    if task.status is TaskStatus.CANCELED:
        raise TaskCanceledError(task_id=task.task_id)
    if task.status is TaskStatus.UNKNOWN:
        raise TaskExpiredError(task_id=task.task_id)
