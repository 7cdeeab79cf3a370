"""URL inputs: the audio's length read from its header, and timing by the service's clock.

Pure units first (the service clock, the timing policy, header-only lengths), with plain
numbers; then the batch on the emulator with image and audio served by a local media host.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from batch_support import collect, options
from client_support import account_stats, make_client

from emoclient._batch import Batch
from emoclient._batch.jobs import EmoJob, Job
from emoclient._batch.lengths import RemoteLengths
from emoclient._batch.options import SchedulerOptions, poll_schedule
from emoclient._batch.probe import MediaFormatError, audio_length, probe_audio
from emoclient._timing import AccountTiming, Progress, ServiceClock
from emoclient.emulator import EmulatorConfig, RunningEmulator, serve
from emoclient.emulator.samples import make_portrait, speech_bytes

# --- the service's clock on ours -------------------------------------------------------


def test_the_service_clock_is_learned_from_submit_windows() -> None:
    clock = ServiceClock()
    # The service runs 25x our clock, 1000 s ahead; each submit took 10 ms to answer.
    for local in (0.0, 0.01):  # back to back: the rate cannot be told yet
        clock.add(1000 + 25 * (local + 0.005), local, local + 0.01)
    assert clock.rate is None
    assert clock.to_local(1000.0) is None
    clock.add(1000 + 25 * 2.005, 2.0, 2.01)
    assert clock.rate == pytest.approx(25, rel=0.02)
    assert clock.to_local(1000 + 25 * 5.0) == pytest.approx(5.0, abs=0.05)


def test_the_service_clock_starts_again_when_its_windows_disagree() -> None:
    clock = ServiceClock()
    clock.add(100.0, 0.0, 0.01)
    clock.add(110.0, 10.0, 10.01)
    assert clock.rate == pytest.approx(1.0, rel=0.01)
    clock.add(500.0, 20.0, 20.01)  # the service's clock jumped
    assert clock.rate is None
    clock.add(510.0, 30.0, 30.01)
    assert clock.to_local(505.0) == pytest.approx(25.005, abs=0.01)


def test_an_answer_out_of_its_window_or_a_wide_window_is_not_trusted() -> None:
    clock = ServiceClock()
    clock.add(0.0, 5.0, 4.0)  # answered before it was sent: ignored
    assert clock.first is None
    clock.add(0.0, 0.0, 1.0)
    clock.add(10.0, 2.0, 3.0)  # the rate is somewhere in 3.3 .. 10
    assert clock.rate is None


def _timing(**opts: Any) -> AccountTiming:
    return AccountTiming(poll_schedule(SchedulerOptions(**opts)))


def _mapped(timing: AccountTiming, rate: float = 10.0) -> None:
    """Teach ``timing`` a service clock running ``rate`` x ours from 0."""
    for local in (0.0, 10.0):
        timing.clock.add(rate * local, local, local)


def test_a_running_task_is_dated_and_timed_by_the_service() -> None:
    timing = _timing(poll_min=0.1, poll_max=30.0, pending_poll=60.0)
    _mapped(timing)
    timing.learned.observe(2.0, None, 40.0)  # the service said: 40 s for a 2 s clip
    assert timing.expected_length(2.0) == pytest.approx(4.0)
    p = Progress()
    timing.submitted(p, 20.0, alone=True, sent=19.9)
    timing.answered(p, submit_time=199.5)
    # First seen RUNNING at 23; the service says it started at 200 (our 20.0).
    assert timing.running(p, 23.0, output_seconds=2.0, scheduled=200.0)
    assert p.started_at == pytest.approx(20.0)
    assert p.next_poll == pytest.approx(20.0 + 0.95 * 4.0)
    # It ended at 241 on the service's clock, though we only asked at 30.
    assert timing.ended(p, 30.0, end=241.0) == pytest.approx(24.1)
    timing.learn(p, output_seconds=2.0, now=30.0, server_seconds=41.0)
    assert timing.learned.local.predict(2.0) == pytest.approx(4.1)


def test_a_mapped_time_stays_between_the_submit_and_the_answer() -> None:
    timing = _timing()
    _mapped(timing)
    p = Progress()
    timing.submitted(p, 20.0, alone=True, sent=19.0)
    assert timing.running(p, 21.0, output_seconds=2.0, scheduled=150.0)  # our 15: too early
    assert p.started_at == 19.0
    assert timing.ended(p, 22.0, end=900.0) == 22.0  # in our future: now


def test_every_wait_for_a_running_task_is_capped_whatever_the_guess() -> None:
    timing = _timing(poll_min=0.1, poll_max=2.0)
    _mapped(timing)
    timing.learned.observe(2.0, None, 4000.0)  # a guess far too long: 400 s on our clock
    p = Progress()
    timing.submitted(p, 0.0, alone=True, sent=0.0)
    timing.running(p, 1.0, output_seconds=None, scheduled=5.0)
    assert p.next_poll - 1.0 <= 2.0
    q = Progress()
    timing.promote(q, ended=1.0, now=1.0, output_seconds=60.0)
    assert q.next_poll - 1.0 <= 2.0


def test_an_unknown_length_is_the_mean_the_service_reported() -> None:
    timing = _timing()
    assert timing.seconds(None) == 10.0  # nothing reported yet: a conservative 10 s
    timing.learned.observe(2.0, None, 40.0)
    timing.learned.observe(3.0, None, 45.0)
    assert 2.0 < timing.seconds(None) < 3.0
    assert timing.seconds(4.0) == 4.0
    # Predicted at the clips' own scale, not 5x it (the old 10 s default).
    assert timing.service_seconds(None) == pytest.approx(30 + 5 * timing.seconds(None))


def test_without_the_service_clock_our_idle_wait_is_still_not_learned() -> None:
    timing = _timing(poll_min=0.5, poll_max=30.0)
    p = Progress()
    timing.submitted(p, 0.0, alone=True)
    timing.running(p, 1.0, output_seconds=5.0)
    timing.learn(p, output_seconds=5.0, now=40.0, server_seconds=35.0)
    expected = timing.expected_length(5.0)
    assert expected is not None
    assert expected <= 1.0


# --- the length from the first bytes -----------------------------------------------------


def _wav_bytes(seconds: float, *, rate: int = 16000, open_size: bool = False) -> bytes:
    frames = int(seconds * rate)
    size = 0xFFFFFFFF if open_size else frames * 2
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    header = b"RIFF" + struct.pack("<I", 36 + frames * 2) + b"WAVEfmt " + struct.pack("<I", 16)
    return header + fmt + b"data" + struct.pack("<I", size) + bytes(frames * 2)


def _cbr_mp3(frames: int) -> bytes:
    # MPEG-1 layer III, 128 kbit/s, 44.1 kHz, joint stereo: 417-byte frames of 1152 samples.
    return (b"\xff\xfb\x90\x64" + bytes(413)) * frames


def test_a_wav_length_from_its_header_and_size() -> None:
    data = _wav_bytes(30.0)
    assert audio_length(data[:65536], len(data)) == pytest.approx(30.0)
    assert audio_length(data[:65536], None) == pytest.approx(30.0)  # the header says it
    streamed = _wav_bytes(30.0, open_size=True)
    assert audio_length(streamed[:65536], len(streamed)) == pytest.approx(30.0)
    with pytest.raises(MediaFormatError):
        audio_length(streamed[:65536], None)


def test_an_mp3_length_from_its_first_frames_and_size() -> None:
    data = _cbr_mp3(400)
    expected = 400 * 1152 / 44100
    assert audio_length(data[:65536], len(data)) == pytest.approx(expected, rel=1e-6)
    assert audio_length(data, len(data)) == pytest.approx(probe_audio(data).duration)
    with pytest.raises(MediaFormatError):
        audio_length(data[:65536], None)


# --- a media host on 127.0.0.1 -------------------------------------------------------------


@dataclass
class MediaHost:
    """Serves files by name and records every request's Range and Authorization headers."""

    files: dict[str, bytes] = field(default_factory=dict)
    seen: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    honour_range: bool = True
    refuse_range: bool = False
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        wanted = request.headers.get("Range")
        self.seen.append((name, wanted, request.headers.get("Authorization")))
        data = self.files.get(name)
        if data is None:
            raise web.HTTPNotFound()
        if wanted and self.refuse_range:
            raise web.HTTPForbidden()
        if wanted and self.honour_range:
            first, last = (int(x) for x in wanted.removeprefix("bytes=").split("-"))
            part = data[first : last + 1]
            headers = {"Content-Range": f"bytes {first}-{first + len(part) - 1}/{len(data)}"}
            return web.Response(status=206, body=part, headers=headers)
        return web.Response(body=data)

    def ranged(self, name: str) -> int:
        return sum(1 for n, wanted, _ in self.seen if n == name and wanted)


async def _serve_media(host: MediaHost) -> AsyncIterator[MediaHost]:
    app = web.Application()
    app.router.add_get("/m/{name}", host.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    host.url = f"http://127.0.0.1:{port}/m"
    try:
        yield host
    finally:
        await runner.cleanup()


@pytest.fixture
async def media() -> AsyncIterator[MediaHost]:
    async for host in _serve_media(MediaHost()):
        yield host


async def _lengths(
    emulator: RunningEmulator, probe: Callable[[RemoteLengths], Awaitable[Any]]
) -> Any:
    async with make_client(emulator) as client:
        return await probe(RemoteLengths(client, within=5.0))


async def test_a_url_s_length_is_read_once_with_a_ranged_get(
    emulator: RunningEmulator, media: MediaHost
) -> None:
    media.files["long.wav"] = _wav_bytes(40.0)  # 1.3 MB: only 64 KiB of it is read
    url = f"{media.url}/long.wav"

    async def probe(lengths: RemoteLengths) -> list[float | None]:
        found: list[float | None] = []

        async def one() -> None:
            found.append(await lengths.seconds(url))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(one)
        return found

    assert await _lengths(emulator, probe) == [pytest.approx(40.0)] * 5
    assert media.seen == [("long.wav", "bytes=0-65535", None)]  # once, and no key


async def test_an_mp3_behind_long_tags_takes_a_second_ranged_get(
    emulator: RunningEmulator, media: MediaHost
) -> None:
    tags = 100_000
    syncsafe = bytes((tags >> shift) & 0x7F for shift in (21, 14, 7, 0))
    media.files["tagged.mp3"] = b"ID3\x04\x00\x00" + syncsafe + bytes(tags) + _cbr_mp3(400)
    seconds = await _lengths(emulator, lambda r: r.seconds(f"{media.url}/tagged.mp3"))
    assert seconds == pytest.approx(400 * 1152 / 44100, rel=1e-3)
    assert [wanted for _, wanted, _ in media.seen] == [
        "bytes=0-65535",
        f"bytes={tags + 10}-{tags + 10 + 65535}",
    ]


async def test_a_host_ignoring_range_still_tells_the_length(
    emulator: RunningEmulator, media: MediaHost
) -> None:
    media.honour_range = False
    media.files["a.wav"] = _wav_bytes(3.0, open_size=True)
    assert await _lengths(emulator, lambda r: r.seconds(f"{media.url}/a.wav")) == pytest.approx(3.0)


async def test_an_unreadable_url_leaves_the_length_unknown(
    emulator: RunningEmulator, media: MediaHost
) -> None:
    media.files["noise.bin"] = bytes(100_000)

    async def probe(lengths: RemoteLengths) -> list[float | None]:
        return [
            await lengths.seconds(f"{media.url}/missing.wav"),
            await lengths.seconds(f"{media.url}/noise.bin"),
            await lengths.seconds("oss://bucket/voice.wav"),  # never read: it needs the key
        ]

    assert await _lengths(emulator, probe) == [None, None, None]
    assert len(media.seen) == 2


# --- the batch with URL inputs -------------------------------------------------------------


def _url_jobs(tmp_path: Path, media: MediaHost, count: int) -> list[Job]:
    for i in range(2):
        media.files[f"s{i}.wav"] = speech_bytes(seconds=1.0 + 0.5 * i, seed=i)
    jobs: list[Job] = []
    for i in range(count):
        image = make_portrait(tmp_path / f"p{i}.png", width=480, height=640, seed=i)
        media.files[image.name] = image.read_bytes()
        jobs.append(
            EmoJob(
                image=f"{media.url}/{image.name}",
                audio=f"{media.url}/s{i % 2}.wav",
                label=f"row {i + 2}",
                output=f"v{i}.mp4",
            )
        )
    return jobs


async def test_a_batch_of_url_inputs_keeps_the_slot_busy(media: MediaHost, tmp_path: Path) -> None:
    # 25x real time: a task lasts 1.4-1.5 s. The poll cap is the real service's 30 s, so a
    # wait placed at a multiple of a wrong length would leave the slot idle for seconds.
    async with serve(EmulatorConfig.fast(speed=25.0)) as emulator:
        jobs = _url_jobs(tmp_path, media, 4)
        async with (
            make_client(emulator) as client,
            Batch(client, out_dir=tmp_path / "out", options=options(poll_max=30.0)) as batch,
        ):
            await collect(batch, jobs)
        stats = account_stats(await emulator.stats())
        (account,) = emulator.state.accounts.values()
    assert batch.summary.counts == {"succeeded": 4}
    assert stats["routes"]["task_get"]["requests"] <= 6 * len(jobs)
    # Each audio URL was read once for its length, with a Range; no request carried a key.
    assert [media.ranged("s0.wav"), media.ranged("s1.wav")] == [1, 1]
    assert all(auth is None for _, _, auth in media.seen)
    # The slot passed on at once: each task was queued before the one ahead of it ended.
    tasks = sorted(account.tasks, key=lambda t: t.scheduled_time or math.inf)
    for ahead, task in itertools.pairwise(tasks):
        assert ahead.end_time is not None
        assert task.submit_time <= ahead.end_time


async def test_a_batch_whose_audio_host_refuses_ranges_still_finishes(
    emulator: RunningEmulator, media: MediaHost, tmp_path: Path
) -> None:
    media.refuse_range = True
    jobs = _url_jobs(tmp_path, media, 3)
    async with (
        make_client(emulator) as client,
        Batch(client, out_dir=tmp_path / "out", options=options()) as batch,
    ):
        await collect(batch, jobs)
    assert batch.summary.counts == {"succeeded": 3}
    assert [media.ranged("s0.wav"), media.ranged("s1.wav")] == [1, 1]
