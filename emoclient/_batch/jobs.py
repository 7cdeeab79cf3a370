"""Batch jobs: one EMO or Emoji video to make, validated up front and keyed by content.

A job's key is a hash of everything that decides what the service would render and where
the result goes: the model, the parameters, the output name and, for every input, either the
URL string or the SHA-256 of the local file's bytes. The journal uses it to recognise a job
on a rerun, so that nothing is submitted twice.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Annotated, TypeAlias, TypeVar

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from emoclient._client import EmoClient
from emoclient._models import (
    DRIVEN_IDS,
    VIDEO_MODELS,
    BBox,
    BBoxTuple,
    Detection,
    DrivenId,
    Model,
    Ratio,
    StyleLevel,
    SubmittedTask,
    VideoModel,
)
from emoclient._validate import check_output_name

__all__ = ["EmoJob", "EmojiJob", "Job", "file_digest", "job_key"]

T = TypeVar("T")

_URL_PREFIXES = ("http://", "https://", "oss://")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

Source: TypeAlias = Annotated[str | Path, Field(union_mode="left_to_right")]


def is_url(source: str | Path) -> bool:
    """Whether an input is a URL the service fetches itself (else a local file to upload)."""
    return isinstance(source, str) and source.startswith(_URL_PREFIXES)


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def check_source(value: object) -> object:
    """An input as given (a path, or an http(s)/oss/file URL); an empty one, or a URL the
    service cannot fetch, raises ValueError saying what to give instead."""
    if isinstance(value, str):
        if not value.strip() or "\0" in value:
            raise ValueError(f"{value!r} is not a file path or URL; give a local file or a URL")
        scheme = _SCHEME.match(value)
        if scheme and not value.startswith((*_URL_PREFIXES, "file://")):
            raise ValueError(
                f"{value[:80]!r} is a {scheme[1]}:// URL, which the service cannot fetch; "
                "give an http(s):// or oss:// URL, or a local file"
            )
    return value


def local_path(source: str | Path) -> Path:
    """The local file behind a non-URL input (``file://`` prefixes are accepted)."""
    text = str(source)
    return Path(text.removeprefix("file://"))


class _JobBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    image: Source
    output: str | None = None
    face_bbox: BBox | None = None
    ext_bbox: BBox | None = None
    label: str | None = None

    @model_validator(mode="after")
    def _check_common(self) -> _JobBase:
        if (self.face_bbox is None) != (self.ext_bbox is None):
            raise ValueError("give both face_bbox and ext_bbox, or neither (to run detection)")
        return self

    @field_validator("image", mode="before")
    @classmethod
    def _check_image(cls, value: object) -> object:
        return check_source(value)

    @field_validator("output", mode="before")
    @classmethod
    def _check_output(cls, value: object) -> object:
        # The manifest's rule, word for word: refused here, before anything is paid.
        return None if value is None else check_output_name(value)

    @property
    def model(self) -> Model:
        """The service model that renders this job (``emo-v1`` or ``emoji-v1``)."""
        raise NotImplementedError

    @property
    def spec(self) -> VideoModel:
        """What the service says about this job's model (limits, prices, detection model)."""
        return VIDEO_MODELS[self.model]

    @property
    def detect_model(self) -> Model:
        """The detection model whose boxes this job's model accepts."""
        return self.spec.detect

    @property
    def detect_ratio(self) -> Ratio:
        """The ``ratio`` parameter for detection (also the output's ratio)."""
        return Ratio.SQUARE

    @property
    def display_label(self) -> str:
        """The label to show for this job: ``label`` if given, else the image name."""
        return self.label or Path(str(self.image)).name

    def sources(self) -> dict[str, str | Path]:
        """The job's inputs by field name (``image``, ``audio``)."""
        return {"image": self.image}

    def parameters(self) -> dict[str, object]:
        """The model parameters that change the rendered video."""
        return {"face_bbox": self.face_bbox, "ext_bbox": self.ext_bbox}

    async def detect(self, client: EmoClient, image_url: str) -> Detection:
        """Run this job's detection model on ``image_url``."""
        raise NotImplementedError

    async def submit(
        self, client: EmoClient, urls: Mapping[str, str], face: BBoxTuple, ext: BBoxTuple
    ) -> SubmittedTask:
        """Submit this job's task with its inputs at ``urls`` (by field name)."""
        raise NotImplementedError

    def _stem(self) -> str:
        return Path(str(self.image).split("?")[0]).stem


class EmoJob(_JobBase):
    """A talking-head video (``emo-v1``) from a portrait and a voice recording."""

    audio: Source
    style_level: StyleLevel = StyleLevel.NORMAL
    ratio: Ratio = Ratio.SQUARE

    @field_validator("audio", mode="before")
    @classmethod
    def _check_audio(cls, value: object) -> object:
        return check_source(value)

    @property
    def model(self) -> Model:
        return Model.EMO

    @property
    def detect_ratio(self) -> Ratio:
        return self.ratio

    async def detect(self, client: EmoClient, image_url: str) -> Detection:
        return await client.detect_emo(image_url, ratio=self.ratio)

    async def submit(
        self, client: EmoClient, urls: Mapping[str, str], face: BBoxTuple, ext: BBoxTuple
    ) -> SubmittedTask:
        return await client.submit_emo(
            urls["image"], urls["audio"], face_bbox=face, ext_bbox=ext, style_level=self.style_level
        )

    def sources(self) -> dict[str, str | Path]:
        return {"image": self.image, "audio": self.audio}

    def parameters(self) -> dict[str, object]:
        return {**super().parameters(), "style_level": self.style_level, "ratio": self.ratio}

    def _stem(self) -> str:
        return f"{super()._stem()}-{Path(str(self.audio).split('?')[0]).stem}"


class EmojiJob(_JobBase):
    """A short expression video (``emoji-v1``) from a portrait and a template ``driven_id``."""

    driven_id: DrivenId

    @field_validator("driven_id", mode="before")
    @classmethod
    def _check_driven_id(cls, value: object) -> object:
        if value not in DRIVEN_IDS:
            raise ValueError(
                f"driven_id {value!r} is not one of the 20 Emoji templates "
                f"(e.g. {', '.join(DRIVEN_IDS[:3])}, ...)"
            )
        return value

    @property
    def model(self) -> Model:
        return Model.EMOJI

    async def detect(self, client: EmoClient, image_url: str) -> Detection:
        return await client.detect_emoji(image_url)

    async def submit(
        self, client: EmoClient, urls: Mapping[str, str], face: BBoxTuple, ext: BBoxTuple
    ) -> SubmittedTask:
        return await client.submit_emoji(
            urls["image"], driven_id=self.driven_id, face_bbox=face, ext_bbox=ext
        )

    def parameters(self) -> dict[str, object]:
        return {**super().parameters(), "driven_id": self.driven_id}

    def _stem(self) -> str:
        return f"{super()._stem()}-{self.driven_id}"


Job: TypeAlias = EmoJob | EmojiJob


@functools.lru_cache(maxsize=4096)
def _hash_version(path: Path, size: int, mtime_ns: int, inode: int) -> str:
    # One version of a file (its size, modification time and inode) is hashed once.
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _digest_now(source: str | Path) -> str:
    if is_url(source):
        return f"url:{source}"
    path = local_path(source)
    try:
        stat = path.stat()
        return "sha256:" + _hash_version(path, stat.st_size, stat.st_mtime_ns, stat.st_ino)
    except OSError:
        # Preflight reports the file; the key still has to name the job.
        return f"unreadable:{path}"


def _digests_now(sources: dict[str, str | Path]) -> dict[str, str]:
    return {name: _digest_now(source) for name, source in sources.items()}


async def file_digest(source: str | Path) -> str:
    """``url:<url>`` for a URL, ``sha256:<hex>`` of a file's bytes (hashed off the loop,
    once per version of the file: path, size, modification time).

    A file that cannot be read gives ``unreadable:<path>``.
    """
    if is_url(source):
        return f"url:{source}"
    return await anyio.to_thread.run_sync(_digest_now, source)


async def input_digests(job: Job) -> dict[str, str]:
    """The :func:`file_digest` of each of the job's inputs, by field name (one thread hop)."""
    sources = job.sources()
    if all(is_url(source) for source in sources.values()):
        return _digests_now(sources)
    return await anyio.to_thread.run_sync(_digests_now, sources)


def key_from(job: Job, digests: dict[str, str]) -> str:
    """The content key of a job whose input digests are known."""
    payload = {
        "model": job.model,
        "inputs": digests,
        "parameters": job.parameters(),
        "output": job.output,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


async def job_key(job: Job) -> str:
    """The content key of a job: its model, parameters, output name and input digests."""
    return key_from(job, await input_digests(job))


def output_name(job: Job, key: str) -> str:
    """The video's file name: ``job.output`` or one derived from the inputs and the key."""
    if job.output is not None:
        return job.output
    stem = _SAFE_NAME.sub("_", job._stem()).strip("._") or "video"
    return f"{stem[:80]}-{key[:8]}.mp4"


async def aiterate(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    """Iterate a plain or an async iterable the same way, one item at a time."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
