"""A lost submit answer beside another process's submit on the same account.

A batch runs in its own OS process (``tests/account_workers/worker.py``), against the
emulator in another, and every answer to its submit is lost after the task was created.
The other process is played by the test: it writes to the account store (the default
SQLite file, shared with the worker) exactly what ``submit_once`` of a second batch writes,
and submits through its own client, so the order of events is the test's to choose
instead of a race's.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from account_workers.harness import (
    RemoteEmulator,
    Workers,
    emo_job,
    new_key,
    results_of,
    worker_config,
)
from client_support import FAST_RETRY, account_stats

from emoclient import EmoClient, Model
from emoclient.emulator.samples import make_portrait, make_speech

#: The other batch's owner id in the store (``Owner.job``: journal id and job key).
OTHER = "0123456789abcdef:other-job"


async def until(check: Callable[[], Awaitable[bool]], *, deadline: float = 20.0) -> None:
    """Poll ``check`` until it holds: the other process and the emulator have no event
    to wait on (a deadline, not a timing assertion)."""
    with anyio.fail_after(deadline):
        while not await check():  # noqa: ASYNC110
            await anyio.sleep(0.01)


def digest(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def requests(emulator: RemoteEmulator, route: str) -> int:
    """Requests of ``route`` the emulator has seen from its one account."""
    stats = account_stats(await emulator.stats())
    return int(stats["routes"].get(route, {}).get("requests", 0))


async def test_a_lost_answer_is_not_matched_to_another_process_s_task(tmp_path: Path) -> None:
    # Both jobs have 1 s of speech and differ in the portrait only: a video of the other
    # process's task would pass for this job's by its length and frame size.
    job = emo_job(tmp_path / "in", 0, seconds=1.0)
    their_image = make_portrait(tmp_path / "in" / "theirs.png", width=480, height=640, seed=7)
    their_audio = make_speech(tmp_path / "in" / "theirs.wav", seconds=1.0, seed=7)
    key = new_key()
    async with Workers(tmp_path / "workers") as workers:
        emulator = await workers.emulator(render=True, faults={"drop_after_rate": {"submit": 1.0}})
        async with EmoClient(key, base_url=emulator.base_url, retry=FAST_RETRY) as other:
            store, account = other.limits.store, other.limits.account
            image = await other.resolve_input(their_image, model=Model.EMO)
            audio = await other.resolve_input(their_audio, model=Model.EMO)
            detection = await other.detect_emo(
                await other.resolve_input(their_image, model=Model.EMO_DETECT)
            )
            face, ext = detection.boxes()
            # The other batch's submit starts first: its intent is open while its POST waits
            # for the account's next submit grant (GCRA across processes: the grant may go to
            # this batch, which asked later).
            await store.open_intent(account, "emo-v1", owner=OTHER, at=time.time(), ttl=300.0)
            [batch] = await workers.start(
                worker_config(
                    "batch", emulator.base_url, [key], jobs=[job], out_dir=str(tmp_path / "out")
                )
            )

            async def submitted() -> bool:
                return int(account_stats(await emulator.stats())["submissions"]) == 1

            await until(submitted)  # this batch's task exists; its answer was lost
            [[own]] = [page async for page in other.list_tasks(model=Model.EMO)]
            await emulator.set_faults(drop_after_rate=0.0)
            theirs = await other.submit_emo(image, audio, face_bbox=face, ext_bbox=ext)
            looks = await requests(emulator, "task_list")

            async def decided() -> bool:
                # The batch took a task, or looked again after the other's task appeared.
                if await store.task_owners(account, "emo-v1", since=0.0):
                    return True
                return await requests(emulator, "task_list") >= looks + 2

            await until(decided)
            # The other batch got its answer: it claims its task, as submit_once does.
            owner = await store.claim_task(account, "emo-v1", task_id=theirs.task_id, owner=OTHER)
            [result], _ = await results_of(batch)
            own_video = await other.download(
                str((await other.wait(own.task_id)).video_url), tmp_path / "own.mp4"
            )
            their_video = await other.download(
                str((await other.wait(theirs.task_id)).video_url), tmp_path / "theirs.mp4"
            )
            stats = account_stats(await emulator.stats())
    assert stats["submissions"] == 2  # nothing submitted twice
    mine, others = digest(own_video), digest(their_video)
    assert mine != others
    # The batch's job gets the video of its own task, or (not knowing) fails for attention.
    if result["status"] != "succeeded":
        assert (result["status"], result["code"]) == ("failed", "NeedsAttention"), f"{result}"
    else:
        delivered = digest(Path(result["path"]))
        assert delivered != others, (
            f"the batch delivered the other process's video (task {theirs.task_id}) as its "
            f"job's; its own task {own.task_id} was paid for and left unclaimed"
        )
        assert delivered == mine
        assert result["task_id"] == own.task_id
    # The other batch's claim of its own task stands.
    assert owner == OTHER


async def test_a_lost_answer_beside_a_dead_process_s_submit_needs_attention(
    tmp_path: Path,
) -> None:
    job = emo_job(tmp_path / "in", 0)
    key = new_key()
    async with Workers(tmp_path / "workers") as workers:
        emulator = await workers.emulator(faults={"drop_after_rate": {"submit": 1.0}})
        async with EmoClient(key, base_url=emulator.base_url) as other:
            # A process of the account died between opening its submit intent and claiming
            # its task: the intent is abandoned, and its task may or may not exist.
            store, account = other.limits.store, other.limits.account
            await store.open_intent(account, "emo-v1", owner=OTHER, at=time.time(), ttl=0.001)
            [batch] = await workers.start(
                worker_config(
                    "batch", emulator.base_url, [key], jobs=[job], out_dir=str(tmp_path / "out")
                )
            )
            [result], _ = await results_of(batch)
            stats = account_stats(await emulator.stats())
    # One task, which this batch cannot tell from the dead process's: it does not guess,
    # does not pay again, and says the job needs attention.
    assert stats["submissions"] == 1
    assert result["path"] is None
    assert (result["status"], result["code"]) == ("failed", "NeedsAttention"), result
