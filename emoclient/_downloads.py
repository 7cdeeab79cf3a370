"""The download lane: finished videos fetched earliest URL expiry first, by a few workers.

Each download goes through the client's ``download()`` (temporary file, size check, fsync,
rename). A URL the result host refuses with 403 makes the task be queried again: a fresh URL
is used, an expired task is reported as expired. Other failures are retried with backoff;
when they persist the job is reported failed but stays ``succeeded`` in the journal, so a
rerun fetches it.
"""

from __future__ import annotations

import heapq
import itertools

import anyio

from emoclient._client import EmoClient
from emoclient._events import JobDownloaded
from emoclient._exceptions import EmoError, ResultURLExpiredError
from emoclient._journal import State
from emoclient._tickets import Outcome, Reporter, SchedulerOptions, Ticket

__all__ = ["DownloadLane"]


class DownloadLane:
    """A priority queue of finished tasks and the workers that download them."""

    def __init__(self, client: EmoClient, report: Reporter, *, options: SchedulerOptions) -> None:
        self._client = client
        self._report = report
        self._opt = options
        self._heap: list[tuple[float, int, Ticket]] = []
        self._seq = itertools.count()
        self._changed = anyio.Condition()
        self._closed = False

    async def run(self) -> None:
        """Download until :meth:`close` was called and the queue is empty."""
        async with anyio.create_task_group() as tg:
            for _ in range(self._opt.download_workers):
                tg.start_soon(self._worker)

    async def put(self, ticket: Ticket) -> None:
        """Queue a SUCCEEDED task's video."""
        heapq.heappush(self._heap, (ticket.url_expires_at, next(self._seq), ticket))
        async with self._changed:
            self._changed.notify_all()

    async def close(self) -> None:
        """Nothing more will be queued; the workers end once the queue is empty."""
        self._closed = True
        async with self._changed:
            self._changed.notify_all()

    async def _worker(self) -> None:
        while True:
            async with self._changed:
                while not self._heap and not self._closed:
                    await self._changed.wait()
                if not self._heap:
                    return
                _, _, ticket = heapq.heappop(self._heap)
            await self._fetch(ticket)

    async def _fetch(self, ticket: Ticket) -> None:
        error = "no video URL"
        for attempt in range(self._opt.download_attempts):
            if ticket.video_url is None:
                break
            try:
                await self._client.download(ticket.video_url, ticket.path)
            except ResultURLExpiredError as exc:
                fresh = await self._refresh_url(ticket)
                if fresh is False:
                    return
                if fresh is None:  # could not ask: try again later
                    error = str(exc)
                    await anyio.sleep(min(self._opt.download_backoff * 2**attempt, 8.0))
                continue
            except (EmoError, OSError) as exc:
                error = str(exc)
                await anyio.sleep(min(self._opt.download_backoff * 2**attempt, 8.0))
                continue
            except ValueError as exc:
                # A URL or target path that can never work: fail this job, not the batch.
                error = str(exc)
                break
            await self._downloaded(ticket)
            return
        message = f"downloading the video of task {ticket.task_id} failed ({error}); rerun to retry"
        await self._report.fail_this_run(ticket, message, billed_seconds=ticket.video_duration)

    async def _refresh_url(self, ticket: Ticket) -> bool | None:
        """After a 403 on the result URL: True with a new URL, False after reporting the
        video expired, None when the task could not be queried."""
        assert ticket.task_id is not None
        try:
            task = await self._client.get_task(ticket.task_id)
        except EmoError:
            return None
        if task.video_url and task.video_url != ticket.video_url:
            ticket.video_url = task.video_url
            await self._report.journal.update(ticket.key, video_url=task.video_url)
            return True
        message = (
            f"the video of task {ticket.task_id} can no longer be downloaded: its result URL "
            "expired (24 h after the task succeeded). The seconds are billed; rerun with retry "
            "to render it again"
        )
        await self._report.expire(ticket, message)
        return False

    async def _downloaded(self, ticket: Ticket) -> None:
        size = (await anyio.Path(ticket.path).stat()).st_size
        await self._report.journal.update(ticket.key, state=State.DOWNLOADED, size=size)
        await self._report.emit(
            JobDownloaded(
                label=ticket.label,
                key=ticket.key,
                task_id=ticket.task_id,
                path=ticket.path,
                size=size,
            )
        )
        await self._report.finish(
            Outcome(ticket, "succeeded", billed_seconds=ticket.video_duration)
        )
