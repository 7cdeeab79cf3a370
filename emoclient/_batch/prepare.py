"""Getting a job ready to submit: preflight, detection (cached) and uploads (journalled).

Detection runs before the generation uploads, so a rejected portrait costs one detection
call and nothing else. Every temporary upload is bound to one model, so a local portrait is
uploaded once for the detect model and once for the video model; both URLs are journalled
with their expiry and reused while they stay valid for long enough. The length of audio given
as a URL is read from its header (once per URL) so the scheduler can time its queries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio

from emoclient._batch.checks import ProbeCache, estimate_seconds, inspect
from emoclient._batch.jobs import Job, is_url, local_path
from emoclient._batch.journal import CachedDetection
from emoclient._batch.ledger import Ledger, Ticket
from emoclient._batch.lengths import RemoteLengths
from emoclient._client import EmoClient
from emoclient._exceptions import APIStatusError, EmoError, TransportError, UploadError
from emoclient._models import BBoxTuple, SubmittedTask
from emoclient._retry import RetryPolicy, is_retryable_status

__all__ = ["Preparer", "Rejection"]

logger = logging.getLogger("emoclient")


def _transient(exc: BaseException | None) -> bool:
    """Whether a failed step may pass when tried again: the network or the service's own
    trouble (an upload error caused by either too), not a refusal."""
    if isinstance(exc, UploadError):
        return _transient(exc.__cause__)
    if isinstance(exc, APIStatusError):
        return is_retryable_status(exc.status, exc.code)
    return isinstance(exc, TransportError)


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
        self,
        client: EmoClient,
        ledger: Ledger,
        *,
        upload_margin: float = 12 * 3600.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._client = client
        # Second tries of a step whose requests the transport gave up on (network trouble).
        self._retry = retry or RetryPolicy(max_attempts=8)
        self._ledger = ledger
        self._upload_margin = upload_margin
        # Jobs sharing a file are prepared side by side: one upload and one (billed)
        # detection per content, the others wait for it and take it from the journal.
        # Inputs many jobs share are read and probed once (per version of the file).
        self._probes = ProbeCache()
        self._locks: dict[tuple[str, ...], anyio.Lock] = {}
        self.lengths = RemoteLengths(client)

    def _lock(self, *key: str) -> anyio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = anyio.Lock()
        return lock

    async def prepare(self, job: Job, ticket: Ticket, digests: dict[str, str]) -> Rejection | None:
        """Make ``ticket.submit`` ready for ``job``, or say why the job cannot be submitted."""
        problems, audio = await inspect(job, self._probes)
        if problems:
            found = tuple(str(p) for p in problems)
            return Rejection("invalid", "; ".join(found), problems=found)
        ticket.output_seconds = estimate_seconds(job, audio)
        audio_source = job.sources().get("audio")
        if ticket.output_seconds is None and audio_source is not None and is_url(audio_source):
            ticket.estimated_seconds = await self.lengths.seconds(str(audio_source))
        attempt = 0
        while True:
            try:
                boxes = await self._boxes(job, ticket, digests["image"])
                if isinstance(boxes, Rejection):
                    return boxes
                urls = {
                    name: await self._url(ticket, name, source, digests[name], job.model)
                    for name, source in job.sources().items()
                }
                break
            except (EmoError, OSError) as exc:
                if _transient(exc) and self._retry.should_retry(attempt):
                    # The transport's retries of one request gave up: try the step again.
                    kind = "upload" if isinstance(exc, UploadError) else "detect"
                    self._client.activity.retried(kind)
                    logger.info("%s: preparing failed (%s); trying again", ticket.label, exc)
                    await anyio.sleep(self._retry.delay(attempt))
                    attempt += 1
                    continue
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
