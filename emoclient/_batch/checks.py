"""Preflight: local checks of a job's inputs before anything is paid for, and the batch plan.

Local images must be JPEG/PNG/BMP/WEBP, readable, each side 400-7000 px (Emoji: ≤ 10 MB);
local audio must be WAV or MP3, ≤ 60 s and ≤ 15 MB (API.md 1.2-1.4). URL inputs are not
fetched; the service checks them. The plan adds up billed seconds and the estimated cost.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread

from emoclient._batch.jobs import Job, aiterate, is_url, local_path
from emoclient._batch.probe import AudioInfo, ImageInfo, MediaFormatError, probe_audio, probe_image

__all__ = [
    "Plan",
    "ProbeCache",
    "Problem",
    "count_job",
    "estimate_seconds",
    "estimate_video_bytes",
    "inspect",
    "inspect_now",
    "plan_batch",
    "preflight",
    "price_per_second",
]

IMAGE_MIN_SIDE = 400
IMAGE_MAX_SIDE = 7000
AUDIO_MAX_BYTES = 15 * 1024 * 1024
AUDIO_MAX_SECONDS = 60.0
# Refuse to read anything much larger than an accepted input into memory.
_READ_CAP = 64 * 1024 * 1024

DETECT_PRICE_CNY = 0.004


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a job would fail: ``job_label`` (e.g. ``"row 3"``), the ``field`` and a message."""

    job_label: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.job_label}, {self.field}: {self.message}"


def price_per_second(job: Job) -> float:
    """CNY per billed second of the job's video."""
    return job.spec.price_cny[job.detect_ratio]


def estimate_seconds(job: Job, audio: AudioInfo | None) -> float | None:
    """Expected billed seconds: the model's estimate (Emoji), else the audio's length."""
    if job.spec.output_seconds is not None:
        return job.spec.output_seconds
    return audio.duration if audio is not None else None


def _read(path: Path) -> bytes:
    with path.open("rb") as stream:
        return stream.read(_READ_CAP)


@dataclass(frozen=True, slots=True)
class _Probed:
    """What probing one local file found: its size and header, or why it cannot be used."""

    size: int = 0
    info: ImageInfo | AudioInfo | None = None
    error: str | None = None  # the message, without the field; the path is in it


class ProbeCache:
    """Probe results by file (path, size, modification time, inode): a file that many jobs
    name is read and probed once. Thread-safe; keeps the ``limit`` latest files."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._entries: dict[tuple[object, ...], _Probed] = {}
        self._lock = threading.Lock()

    def probe(self, path: Path, kind: str) -> _Probed:
        """The probe of the ``kind`` (``image``/``audio``) file at ``path`` (blocking I/O)."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            where = "" if path.is_absolute() else f", relative to the current folder {Path.cwd()}"
            return _Probed(error=f"file {path} does not exist; check the path{where}")
        except OSError as exc:
            return _Probed(error=f"cannot read {path}: {exc.strerror or exc}")
        key = (str(path), kind, stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev)
        with self._lock:
            found = self._entries.get(key)
        if found is None:
            found = _probe_file(path, kind, stat.st_size)
            with self._lock:
                if len(self._entries) >= self._limit:
                    self._entries.pop(next(iter(self._entries)))
                self._entries[key] = found
        return found


def _probe_file(path: Path, kind: str, size: int) -> _Probed:
    if size == 0:
        # Not "not a JPEG image": the file is there, and empty.
        return _Probed(error=f"{path} is an empty file (0 bytes); give the real {kind} file")
    try:
        data = _read(path)
    except IsADirectoryError:
        return _Probed(error=f"{path} is a folder, not a file")
    except OSError as exc:
        return _Probed(error=f"cannot read {path}: {exc.strerror or exc}")
    try:
        info: ImageInfo | AudioInfo = probe_image(data) if kind == "image" else probe_audio(data)
    except MediaFormatError as exc:
        use = "a JPEG, PNG, BMP or WEBP portrait" if kind == "image" else "a WAV or MP3 file"
        return _Probed(size=size, error=f"{path}: {exc}; use {use}")
    return _Probed(size=size, info=info)


def _image_problems(job: Job, path: str, probed: _Probed) -> list[Problem]:
    def problem(message: str) -> Problem:
        return Problem(job.display_label, "image", message)

    info = probed.info
    if probed.error is not None or not isinstance(info, ImageInfo):
        return [problem(probed.error or f"{path}: not an image")]
    problems = []
    short, long = sorted((info.width, info.height))
    if short < IMAGE_MIN_SIDE or long > IMAGE_MAX_SIDE:
        problems.append(
            problem(
                f"{path} is {info.width}x{info.height} px; each side must be "
                f"{IMAGE_MIN_SIDE}-{IMAGE_MAX_SIDE} px (resize it)"
            )
        )
    limit = job.spec.image_max_bytes
    if limit is not None and probed.size > limit:
        problems.append(
            problem(
                f"{path} is {probed.size / 2**20:.1f} MB; {job.model} allows {limit / 2**20:.0f} MB"
            )
        )
    return problems


def _audio_problems(job: Job, path: str, probed: _Probed) -> tuple[AudioInfo | None, list[Problem]]:
    def problem(message: str) -> Problem:
        return Problem(job.display_label, "audio", message)

    info = probed.info
    if probed.error is not None or not isinstance(info, AudioInfo):
        return None, [problem(probed.error or f"{path}: not audio")]
    problems = []
    if info.duration > AUDIO_MAX_SECONDS:
        problems.append(problem(f"{path} lasts {info.duration:.1f} s; the limit is 60 s (cut it)"))
    if info.duration <= 0:
        problems.append(problem(f"{path} contains no audio"))
    if probed.size > AUDIO_MAX_BYTES:
        problems.append(problem(f"{path} is {probed.size / 2**20:.1f} MB; the limit is 15 MB"))
    return info, problems


def inspect_now(
    job: Job, cache: ProbeCache | None = None
) -> tuple[list[Problem], AudioInfo | None]:
    """`inspect`, blocking (file I/O): for worker threads and streaming scans."""
    cache = cache or ProbeCache(limit=4)
    problems: list[Problem] = []
    audio: AudioInfo | None = None
    for name, source in job.sources().items():
        if is_url(source):
            continue
        probed = cache.probe(local_path(source), name)
        if name == "image":
            problems += _image_problems(job, str(source), probed)
        else:
            audio, found = _audio_problems(job, str(source), probed)
            problems += found
    return problems, audio


async def inspect(
    job: Job, cache: ProbeCache | None = None
) -> tuple[list[Problem], AudioInfo | None]:
    """Run the local checks of ``job``; also return the probed audio (EMO, local file)."""
    return await anyio.to_thread.run_sync(inspect_now, job, cache)


async def preflight(job: Job) -> list[Problem]:
    """Check a job's local inputs without calling the service; an empty list means ready."""
    problems, _ = await inspect(job)
    return problems


#: A conservative bitrate of the service's videos, for the disk space a plan needs: the
#: emulator's 512x512 H.264 files carry about 83 KB per second (250,410 bytes for a 3 s
#: video); the real service's are of the same size and kind. Three times that, plus an
#: MP4's headers, errs on the safe side.
VIDEO_BYTES_PER_SECOND = 250_000
VIDEO_BYTES_OVERHEAD = 64 * 1024


def estimate_video_bytes(seconds: float | None) -> int:
    """Disk bytes a video of ``seconds`` may take; unknown (remote audio) means the longest
    accepted (60 s)."""
    length = AUDIO_MAX_SECONDS if seconds is None else seconds
    return VIDEO_BYTES_OVERHEAD + int(length * VIDEO_BYTES_PER_SECOND)


@dataclass(slots=True)
class Plan:
    """What a batch would do: its jobs, their problems, and the expected bill."""

    jobs: list[Job] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    billed_seconds: float = 0.0
    estimated_cost_cny: float = 0.0
    #: Jobs whose length is unknown locally (EMO audio given as a URL): not in the totals.
    unknown_length: int = 0
    #: Detection calls needed (jobs without both boxes), billed per image even on failure.
    detect_calls: int = 0
    #: Disk space the videos may take (a conservative estimate, see `estimate_video_bytes`).
    estimated_bytes: int = 0


def count_job(plan: Plan, job: Job, problems: list[Problem], audio: AudioInfo | None) -> None:
    """Add one checked job to ``plan``'s totals (``plan.jobs`` is left alone: a streaming
    plan keeps no jobs)."""
    plan.problems += problems
    if problems:
        return
    seconds = estimate_seconds(job, audio)
    if seconds is None:
        plan.unknown_length += 1
    else:
        plan.billed_seconds += seconds
        plan.estimated_cost_cny += seconds * price_per_second(job)
    plan.estimated_bytes += estimate_video_bytes(seconds)
    if job.face_bbox is None:
        plan.detect_calls += 1
        plan.estimated_cost_cny += DETECT_PRICE_CNY


async def plan_batch(jobs: Iterable[Job] | AsyncIterable[Job]) -> Plan:
    """Preflight every job and add up billed seconds and cost, for a ``--dry-run``.

    A file that many jobs name is read and probed once.
    """
    plan = Plan()
    cache = ProbeCache()
    async for job in aiterate(jobs):
        plan.jobs.append(job)
        problems, audio = await inspect(job, cache)
        count_job(plan, job, problems, audio)
    plan.estimated_cost_cny = round(plan.estimated_cost_cny, 4)
    return plan
