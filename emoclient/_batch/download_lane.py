"""The download lane: finished videos fetched earliest URL expiry first, by a few workers.

Each download goes through the client's ``download()`` (temporary file, size check, fsync,
rename). A URL the result host refuses with 403 makes the task be queried again: a fresh URL
is used, an expired task is reported as expired. Other failures are retried with backoff,
the task asked for its URL afresh before each try; when they persist the job is reported
failed but stays ``succeeded`` in the journal, so a rerun fetches it. A full disk stops the
batch with one :class:`DiskFullError` (the journal keeps the task and its URL; the rerun
downloads it). Second tries follow the batch's ``RetryPolicy`` (the transport's retries of
one request come first).
"""

from __future__ import annotations

import errno
import heapq
import itertools
import logging
from pathlib import Path

import anyio

from emoclient._batch.ledger import Ledger, Ticket
from emoclient._batch.verify import Expected, VideoInfo, mismatch, probe_mp4
from emoclient._client import EmoClient
from emoclient._exceptions import DiskFullError, EmoError, ResultURLExpiredError
from emoclient._retry import RetryPolicy

__all__ = ["DownloadLane"]

logger = logging.getLogger("emoclient")
# No space left on the device, or the user's quota spent.
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class DownloadLane:
    """A priority queue of finished tasks and the workers that download them."""

    def __init__(
        self, client: EmoClient, ledger: Ledger, *, workers: int, retry: RetryPolicy
    ) -> None:
        self._client = client
        self._ledger = ledger
        self._workers = workers
        self._retry = retry
        self._heap: list[tuple[float, int, Ticket]] = []
        self._seq = itertools.count()
        self._changed = anyio.Condition()
        self._closed = False

    async def run(self) -> None:
        """Download until :meth:`close` was called and the queue is empty."""
        async with anyio.create_task_group() as tg:
            for _ in range(self._workers):
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
        policy = self._retry
        for attempt in range(policy.max_attempts):
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
                    await anyio.sleep(policy.delay(attempt))
                self._client.activity.retried("download")
                continue
            except OSError as exc:
                if exc.errno in _DISK_FULL:
                    # Every other video would fail the same way: the batch stops here, and
                    # the journal keeps the task and its URL for the rerun.
                    raise DiskFullError(
                        f"disk full writing {ticket.path}: free space and rerun the same "
                        f"command (the video of task {ticket.task_id} is kept at the service "
                        "and downloaded then)",
                        path=str(ticket.path),
                    ) from exc
                error = str(exc)
                await anyio.sleep(policy.delay(attempt))
                continue
            except EmoError as exc:
                error = str(exc)
                if not policy.should_retry(attempt):
                    break
                self._client.activity.retried("download")
                logger.info(
                    "%s: downloading the video of task %s failed (%s); retrying with a fresh URL",
                    ticket.label,
                    ticket.task_id,
                    error,
                )
                await anyio.sleep(policy.delay(attempt))
                await self._fresh_url(ticket)
                continue
            except ValueError as exc:
                # A URL or target path that can never work: fail this job, not the batch.
                error = str(exc)
                break
            size = await self._belongs(ticket)
            if size is not None:
                await self._ledger.downloaded(ticket, size=size)
            return
        message = f"downloading the video of task {ticket.task_id} failed ({error}); rerun to retry"
        await self._ledger.failed_this_run(ticket, message, billed=ticket.video_duration)

    async def _fresh_url(self, ticket: Ticket) -> None:
        """Ask the task for its URL again before another try (signed URLs may be renewed);
        a failed query keeps the URL there is."""
        assert ticket.task_id is not None
        try:
            task = await self._client.get_task(ticket.task_id)
        except EmoError:
            return
        if task.video_url and task.video_url != ticket.video_url:
            await self._ledger.url_refreshed(ticket, task.video_url)

    async def _refresh_url(self, ticket: Ticket) -> bool | None:
        """After a 403 on the result URL: True with a new URL, False after reporting the
        video expired, None when the task could not be queried."""
        assert ticket.task_id is not None
        try:
            task = await self._client.get_task(ticket.task_id)
        except EmoError:
            return None
        if task.video_url and task.video_url != ticket.video_url:
            await self._ledger.url_refreshed(ticket, task.video_url)
            return True
        message = (
            f"the video of task {ticket.task_id} can no longer be downloaded: its result URL "
            "expired (24 h after the task succeeded). The seconds are billed; rerun with retry "
            "to render it again"
        )
        await self._ledger.expired(ticket, message)
        return False

    async def _belongs(self, ticket: Ticket) -> int | None:
        """The saved video's size when it is the job's; if not, it is set aside, the job
        fails and None is returned."""
        seconds = ticket.output_seconds if ticket.exact_length else None
        try:
            size, info = await anyio.to_thread.run_sync(_size_and_probe, ticket.path)
            problem = mismatch(info, Expected(ratio=ticket.ratio, seconds=seconds))
        except (OSError, ValueError) as exc:
            problem = f"it cannot be read as an MP4 ({exc})"
        if problem is None:
            return size
        aside = ticket.path.with_name(f"{ticket.path.stem}.mismatch-{ticket.task_id}.mp4")
        await anyio.Path(ticket.path).rename(aside)
        message = (
            f"the video of task {ticket.task_id} does not belong to this job: {problem}. It "
            f"was kept as {aside.name}; check the task in the console, or rerun with retry to "
            "render the job again"
        )
        await self._ledger.failed(ticket, "VideoMismatch", message)
        return None


def _size_and_probe(path: Path) -> tuple[int, VideoInfo]:
    return path.stat().st_size, probe_mp4(path)
