"""Preflight: local checks of a job's inputs before anything is paid for, and the batch plan.

Local images must be JPEG/PNG/BMP/WEBP, readable, each side 400-7000 px (Emoji: ≤ 10 MB);
local audio must be WAV or MP3, ≤ 60 s and ≤ 15 MB (API.md 1.2-1.4). URL inputs are not
fetched; the service checks them. The plan adds up billed seconds and the estimated cost.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread

from emoclient._batch.jobs import Job, aiterate, is_url, local_path
from emoclient._batch.probe import AudioInfo, ImageInfo, MediaFormatError, probe_audio, probe_image

__all__ = ["Plan", "Problem", "estimate_seconds", "plan_batch", "preflight", "price_per_second"]

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
class _Facts:
    """What preflight needs of one local file: its size and what its header says."""

    size: int
    info: ImageInfo | AudioInfo | None
    error: str | None  # why the header cannot be read


@functools.lru_cache(maxsize=4096)
def _probe_version(path: Path, kind: str, size: int, mtime_ns: int, inode: int) -> _Facts:
    # One version of a file (size, modification time, inode) is read and probed once.
    data = _read(path)
    try:
        info = probe_image(data) if kind == "image" else probe_audio(data)
    except MediaFormatError as exc:
        return _Facts(len(data), None, str(exc))
    return _Facts(len(data), info, None)


def _facts(sources: dict[str, Path]) -> dict[str, _Facts | OSError]:
    found: dict[str, _Facts | OSError] = {}
    for name, path in sources.items():
        try:
            stat = path.stat()
            kind = "image" if name == "image" else "audio"
            found[name] = _probe_version(path, kind, stat.st_size, stat.st_mtime_ns, stat.st_ino)
        except OSError as exc:
            found[name] = exc
    return found


def _unreadable(job: Job, name: str, path: Path, exc: OSError) -> Problem:
    if isinstance(exc, FileNotFoundError):
        return Problem(job.display_label, name, f"file {path} does not exist")
    return Problem(job.display_label, name, f"cannot read {path}: {exc.strerror}")


def _image_problems(job: Job, path: str, facts: _Facts) -> list[Problem]:
    def problem(message: str) -> Problem:
        return Problem(job.display_label, "image", message)

    info = facts.info
    if not isinstance(info, ImageInfo):
        return [problem(f"{path}: {facts.error}; use a JPEG, PNG, BMP or WEBP portrait")]
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
    if limit is not None and facts.size > limit:
        problems.append(
            problem(
                f"{path} is {facts.size / 2**20:.1f} MB; {job.model} allows {limit / 2**20:.0f} MB"
            )
        )
    return problems


def _audio_problems(job: Job, path: str, facts: _Facts) -> tuple[AudioInfo | None, list[Problem]]:
    def problem(message: str) -> Problem:
        return Problem(job.display_label, "audio", message)

    info = facts.info
    if not isinstance(info, AudioInfo):
        return None, [problem(f"{path}: {facts.error}; use a WAV or MP3 file")]
    problems = []
    if info.duration > AUDIO_MAX_SECONDS:
        problems.append(problem(f"{path} lasts {info.duration:.1f} s; the limit is 60 s (cut it)"))
    if info.duration <= 0:
        problems.append(problem(f"{path} contains no audio"))
    if facts.size > AUDIO_MAX_BYTES:
        problems.append(problem(f"{path} is {facts.size / 2**20:.1f} MB; the limit is 15 MB"))
    return info, problems


async def inspect(job: Job) -> tuple[list[Problem], AudioInfo | None]:
    """Run the local checks of ``job``; also return the probed audio (EMO, local file)."""
    problems: list[Problem] = []
    audio: AudioInfo | None = None
    local = {n: local_path(s) for n, s in job.sources().items() if not is_url(s)}
    if not local:
        return problems, audio
    # One thread hop for every input; a file already probed (same version) is not read again.
    for name, facts in (await anyio.to_thread.run_sync(_facts, local)).items():
        source = str(job.sources()[name])
        if isinstance(facts, OSError):
            problems.append(_unreadable(job, name, local[name], facts))
        elif name == "image":
            problems += _image_problems(job, source, facts)
        else:
            audio, found = _audio_problems(job, source, facts)
            problems += found
    return problems, audio


async def preflight(job: Job) -> list[Problem]:
    """Check a job's local inputs without calling the service; an empty list means ready."""
    problems, _ = await inspect(job)
    return problems


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


async def plan_batch(jobs: Iterable[Job] | AsyncIterable[Job]) -> Plan:
    """Preflight every job and add up billed seconds and cost, for a ``--dry-run``."""
    plan = Plan()
    async for job in aiterate(jobs):
        plan.jobs.append(job)
        problems, audio = await inspect(job)
        plan.problems += problems
        if problems:
            continue
        seconds = estimate_seconds(job, audio)
        if seconds is None:
            plan.unknown_length += 1
        else:
            plan.billed_seconds += seconds
            plan.estimated_cost_cny += seconds * price_per_second(job)
        if job.face_bbox is None:
            plan.detect_calls += 1
            plan.estimated_cost_cny += DETECT_PRICE_CNY
    plan.estimated_cost_cny = round(plan.estimated_cost_cny, 4)
    return plan
