"""DashScope temporary storage: put a local file there and get an ``oss://`` URL (48 h).

A policy (upload credential) is fetched once per model and reused for every file while it is
valid; each file gets its own directory under the policy's ``upload_dir`` so equal basenames
never collide (the policy allows any key starting with ``upload_dir``, and forbids overwrite).
Both the policy call and the storage POST are retried by the transport like any read.
"""

from __future__ import annotations

import mimetypes
import os
import stat as stat_module
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import aiohttp
import anyio

from emoclient._exceptions import APIStatusError, TransportError, UploadError
from emoclient._limits import RateLimiter
from emoclient._models import UploadedFile, UploadPolicy
from emoclient._transport import Transport

__all__ = ["UPLOAD_LIFETIME", "Uploader"]

UPLOAD_LIFETIME = timedelta(hours=48)
"""How long an uploaded file stays usable."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Uploader:
    """Uploads files for one client, sharing one policy per model while it is valid."""

    def __init__(
        self,
        transport: Transport,
        limiter: Callable[[str], RateLimiter],
        *,
        margin: float = 60.0,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._transport = transport
        self._limiter = limiter
        self._margin = timedelta(seconds=margin)
        self._now = now
        self._policies: dict[str, UploadPolicy] = {}
        self._locks: dict[str, anyio.Lock] = {}

    async def policy(self, model: str, *, fresh: bool = False) -> UploadPolicy:
        """A policy for ``model`` valid for at least the margin; fetched only when needed."""
        lock = self._locks.setdefault(model, anyio.Lock())
        async with lock:
            cached = self._policies.get(model)
            if not fresh and cached and cached.expires_at - self._margin > self._now():
                return cached
            issued = self._now()
            body = await self._transport.call(
                "GET",
                "uploads",
                operation=f"getting an upload policy for {model}",
                limiter=self._limiter(model),
                params={"action": "getPolicy", "model": model},
            )
            policy = UploadPolicy.from_response(body, model=model, issued_at=issued)
            self._policies[model] = policy
            return policy

    async def upload(self, path: str | os.PathLike[str], *, model: str) -> UploadedFile:
        """Upload ``path`` for calls of ``model``; return its ``oss://`` URL and expiry."""
        source = Path(path)
        size = await _file_size(source)
        policy = await self.policy(model)
        if size > policy.max_file_size_mb * 1024 * 1024:
            raise UploadError(
                f"{source} is {size} bytes, over the {policy.max_file_size_mb:g} MB limit of "
                "temporary storage; host it elsewhere and pass its https URL.",
                path=str(source),
            )
        try:
            try:
                key = await self._post(source, policy, size=size)
            except APIStatusError as exc:
                if exc.status != 403:
                    raise
                # The policy expired in flight (clock skew, slow upload): renew it, once.
                fresh = await self.policy(model, fresh=True)
                key = await self._post(source, fresh, size=size)
        except (APIStatusError, TransportError) as exc:
            raise self._failed(source, exc) from exc
        return UploadedFile(
            url=f"oss://{key}", expires_at=self._now() + UPLOAD_LIFETIME, model=model
        )

    @staticmethod
    def _failed(source: Path, exc: Exception) -> UploadError:
        return UploadError(
            f"Uploading {source} to temporary storage failed: {exc}. Retry the upload.",
            path=str(source),
        )

    async def _post(self, source: Path, policy: UploadPolicy, *, size: int = 0) -> str:
        key = f"{policy.upload_dir}/{uuid.uuid4().hex}/{source.name}"
        mime = mimetypes.guess_type(source.name)[0] or "application/octet-stream"

        @asynccontextmanager
        async def form() -> AsyncIterator[aiohttp.FormData]:
            # A fresh form and file handle per attempt: a sent form cannot be sent again.
            handle: BinaryIO = await anyio.to_thread.run_sync(source.open, "rb")
            try:
                yield _form(policy, key, mime, source.name, handle)
            finally:
                # Shielded: a cancelled upload still closes its file (the thread call would not
                # run).
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(handle.close)

        await self._transport.post_form(
            policy.upload_host, form, operation=f"uploading {source.name}", size=size
        )
        return key


def _form(
    policy: UploadPolicy, key: str, mime: str, name: str, handle: BinaryIO
) -> aiohttp.FormData:
    form = aiohttp.FormData()
    # Field order as the official SDK sends it; OSS wants ``file`` last.
    form.add_field("OSSAccessKeyId", policy.oss_access_key_id)
    form.add_field("Signature", policy.signature)
    form.add_field("policy", policy.policy)
    form.add_field("key", key)
    form.add_field("x-oss-object-acl", policy.x_oss_object_acl)
    form.add_field("x-oss-forbid-overwrite", policy.x_oss_forbid_overwrite)
    form.add_field("success_action_status", "200")
    form.add_field("x-oss-content-type", mime)
    # aiohttp reads file payloads in a worker thread, so the loop never blocks on I/O.
    form.add_field("file", handle, filename=name, content_type=mime)
    return form


async def _file_size(source: Path) -> int:
    try:
        stat = await anyio.Path(source).stat()
    except OSError as exc:
        raise UploadError(
            f"Cannot read {source}: {exc.strerror}; check the path.", path=str(source)
        ) from exc
    if not stat_module.S_ISREG(stat.st_mode):
        raise UploadError(f"{source} is not a regular file; pass a file path.", path=str(source))
    if stat.st_size == 0:
        # The service would call it "not an image" (or audio) after the upload.
        raise UploadError(
            f"{source} is an empty file (0 bytes); give the real image or audio file.",
            path=str(source),
        )
    return stat.st_size
