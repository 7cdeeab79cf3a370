"""Getting a job ready to submit: preflight, detection (cached) and uploads (journalled).

Detection runs before the generation uploads, so a rejected portrait costs one detection
call and nothing else. Every temporary upload is bound to one model, so a local portrait is
uploaded once for the detect model and once for the video model; both URLs are journalled
with their expiry and reused while they stay valid for long enough.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio

from emoclient._batch.checks import estimate_seconds, inspect
from emoclient._batch.jobs import Job, is_url, local_path
from emoclient._batch.journal import CachedDetection
from emoclient._batch.ledger import Ledger, Ticket
from emoclient._client import EmoClient
from emoclient._exceptions import EmoError
from emoclient._models import BBoxTuple, SubmittedTask

__all__ = ["Preparer", "Rejection"]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a job will not be submitted: ``invalid`` (preflight) or ``failed`` (service said no)."""

    status: Literal["invalid", "failed"]
    message: str
    code: str | None = None
    problems: tuple[str, ...] = ()
    #: False when trying again may work (a network error): the job's journal state is kept.
    final: bool = True

    async def record(self, ledger: Ledger, ticket: Ticket) -> None:
        """Record the rejection as the job's end."""
        if self.status == "invalid":
            await ledger.invalid(ticket, self.problems)
        else:
            await ledger.not_prepared(ticket, self.message, code=self.code, final=self.final)


class Preparer:
    """Prepares jobs for submission; see the module docstring."""

    def __init__(
        self, client: EmoClient, ledger: Ledger, *, upload_margin: float = 12 * 3600.0
    ) -> None:
        self._client = client
        self._ledger = ledger
        self._upload_margin = upload_margin
        # Jobs sharing a file are prepared side by side: one upload and one (billed)
        # detection per content, the others wait for it and take it from the journal.
        self._locks: dict[tuple[str, ...], anyio.Lock] = {}

    def _lock(self, *key: str) -> anyio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = anyio.Lock()
        return lock

    async def prepare(self, job: Job, ticket: Ticket, digests: dict[str, str]) -> Rejection | None:
        """Make ``ticket.submit`` ready for ``job``, or say why the job cannot be submitted."""
        problems, audio = await inspect(job)
        if problems:
            found = tuple(str(p) for p in problems)
            return Rejection("invalid", "; ".join(found), problems=found)
        ticket.output_seconds = estimate_seconds(job, audio)
        try:
            boxes = await self._boxes(job, ticket, digests["image"])
            if isinstance(boxes, Rejection):
                return boxes
            urls = {
                name: await self._url(ticket, name, source, digests[name], job.model)
                for name, source in job.sources().items()
            }
        except (EmoError, OSError) as exc:
            message = f"preparing the job failed: {exc}; rerun the batch to try again"
            return Rejection("failed", message, final=False)
        face, ext = boxes
        await self._ledger.prepared(ticket, face=face, ext=ext)
        ticket.submit = _submitter(self._client, job, urls, face, ext)
        return None

    async def _boxes(
        self, job: Job, ticket: Ticket, digest: str
    ) -> tuple[BBoxTuple, BBoxTuple] | Rejection:
        if job.face_bbox is not None and job.ext_bbox is not None:
            return job.face_bbox, job.ext_bbox
        model, ratio = job.detect_model, job.detect_ratio
        async with self._lock("detect", digest, model, ratio):
            cached = await self._detection(job, ticket, digest)
        if not cached.passed or cached.face_bbox is None or cached.ext_bbox is None:
            message = (
                f"{model} rejected the portrait {job.image}: {cached.code or 'no code'}: "
                f"{cached.message or 'no message'}. Use a portrait of one front-facing person"
            )
            return Rejection("failed", message, cached.code)
        return cached.face_bbox, cached.ext_bbox

    async def _detection(self, job: Job, ticket: Ticket, digest: str) -> CachedDetection:
        model, ratio = job.detect_model, job.detect_ratio
        cached = await self._ledger.cached_detection(digest, model, ratio)
        if cached is None:
            url = await self._url(ticket, "image", job.image, digest, model)
            detection = await job.detect(self._client, url)
            cached = CachedDetection(
                detection.passed,
                detection.face_bbox,
                detection.ext_bbox,
                detection.code,
                detection.message,
            )
            await self._ledger.detected(ticket, cached, cache=(digest, model, ratio))
        else:
            await self._ledger.detected(ticket, cached, cache=None)
        return cached

    async def _url(
        self, ticket: Ticket, name: str, source: str | Path, digest: str, model: str
    ) -> str:
        if is_url(source):
            return str(source)
        async with self._lock("upload", digest, model):
            return await self._upload(ticket, name, source, digest, model)

    async def _upload(
        self, ticket: Ticket, name: str, source: str | Path, digest: str, model: str
    ) -> str:
        valid_after = time.time() + self._upload_margin
        cached = await self._ledger.cached_upload(ticket, digest, model, valid_after=valid_after)
        if cached is not None:
            return cached
        uploaded = await self._client.upload(local_path(source), model=model)
        await self._ledger.uploaded(ticket, field=name, digest=digest, uploaded=uploaded)
        return uploaded.url


def _submitter(
    client: EmoClient, job: Job, urls: Mapping[str, str], face: BBoxTuple, ext: BBoxTuple
) -> Callable[[], Awaitable[SubmittedTask]]:
    async def submit() -> SubmittedTask:
        return await job.submit(client, urls, face, ext)

    return submit
