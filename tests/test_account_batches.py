"""Batches on shared accounts, in real OS processes: one payment per job, the right video for
each job, jobs spread over accounts, both video models' slots busy.

Each batch runs in its own ``python`` process (``tests/account_workers/worker.py``) against
the real emulator (in a process of its own), with the default account store (the SQLite file under
the session's ``EMOCLIENT_HOME``, inherited by the workers).
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from pathlib import Path

import anyio
from account_workers.harness import (
    Workers,
    assert_inside_the_limits,
    emo_job,
    emoji_job,
    new_key,
    results_of,
    video_seconds,
    worker_config,
)
from client_support import account_stats

JOURNAL = "emoclient-journal.sqlite3"


async def test_two_batches_losing_submit_answers_each_get_their_own_videos(
    tmp_path: Path,
) -> None:
    # Every job has its own speech length (0.5 to 1.4 s in 0.1 s steps): a video of another
    # job would show in its length. 30 % of the submit answers are lost after the task was
    # created (2 to 4 of the 10 in practice: the emulator's draws also decide task fates, in
    # an order that timing decides), so submits are reconciled while the other batch submits.
    seconds = {f"emo {n}": 0.5 + 0.1 * n for n in range(10)}
    jobs = {
        side: [emo_job(tmp_path / "in", n, seconds=seconds[f"emo {n}"]) for n in numbers]
        for side, numbers in (("a", range(0, 10, 2)), ("b", range(1, 10, 2)))
    }
    key = new_key()
    async with Workers(tmp_path / "workers") as workers:
        emulator = await workers.emulator(
            render=True, faults={"drop_after_rate": {"submit": 0.3}, "seed": 20240607}
        )
        batches = await workers.start(
            *(
                worker_config(
                    "batch",
                    emulator.base_url,
                    [key],
                    jobs=jobs[side],
                    out_dir=str(tmp_path / f"out-{side}"),
                )
                for side in ("a", "b")
            )
        )
        outcomes = [await results_of(worker) for worker in batches]
        account = account_stats(await emulator.stats())
    results = [r for rs, _ in outcomes for r in rs]
    assert sorted(r["label"] for r in results) == sorted(seconds)
    attention = [r for r in results if r["status"] != "succeeded"]
    # A job the batch could not match to its task fails this run, flagged for attention.
    assert [(r["status"], r["code"]) for r in attention] == [("failed", "NeedsAttention")] * len(
        attention
    ), attention
    # No double payment: one task per job, lost answers included.
    assert account["submissions"] == len(results)
    videos = {r["label"]: Path(r["path"]) for r in results if r["status"] == "succeeded"}
    digests = {
        label: hashlib.sha256(path.read_bytes()).hexdigest() for label, path in videos.items()
    }
    same = [(a, b) for a, b in itertools.combinations(digests, 2) if digests[a] == digests[b]]
    assert same == [], "jobs of different inputs got the same video"
    lengths = {label: round(video_seconds(path), 2) for label, path in videos.items()}
    wrong = {
        label: (length, seconds[label])
        for label, length in lengths.items()
        if abs(length - seconds[label]) > 0.03
    }
    assert wrong == {}, "videos whose length is not their own speech's (video, speech)"


async def test_a_batch_over_two_accounts_spreads_its_jobs(tmp_path: Path) -> None:
    jobs = [emo_job(tmp_path / "in", n) for n in range(8)]
    keys = [new_key(), new_key()]
    async with Workers(tmp_path / "workers") as workers:
        emulator = await workers.emulator()
        [batch] = await workers.start(
            worker_config(
                "batch", emulator.base_url, keys, jobs=jobs, out_dir=str(tmp_path / "out")
            )
        )
        results, _ = await results_of(batch)
        stats = await emulator.stats()
    assert Counter(r["status"] for r in results) == {"succeeded": 8}
    accounts = stats["accounts"].values()
    submissions = sorted(account["submissions"] for account in accounts)
    assert len(submissions) == 2
    assert sum(submissions) == 8
    assert submissions[1] - submissions[0] <= 2, submissions  # about half each


async def test_a_mixed_batch_keeps_both_models_running_at_once(tmp_path: Path) -> None:
    # 60x: an EMO task of 1 s runs 35 virtual seconds (0.6 s), an Emoji task of the 3 s
    # template 45 (0.75 s); Emoji's 1 submit per second keeps its pipeline the slower one.
    jobs = [emo_job(tmp_path / "in", n) for n in range(4)] + [
        emoji_job(tmp_path / "in", n) for n in range(2)
    ]
    key = new_key()
    async with Workers(tmp_path / "workers") as workers:
        emulator = await workers.emulator(speed=60.0)
        [batch] = await workers.start(
            worker_config(
                "batch", emulator.base_url, [key], jobs=jobs, out_dir=str(tmp_path / "out")
            )
        )
        results, _ = await results_of(batch)
        account = account_stats(await emulator.stats())
    assert Counter(r["status"] for r in results) == {"succeeded": 6}
    assert account["models"]["emo-v1"]["max_running"] == 1
    assert account["models"]["emoji-v1"]["max_running"] == 1
    assert account["max_running"] == 2  # both slots busy at one moment
    assert account["models"]["emo-v1"]["submissions"] == 4
    assert account["models"]["emoji-v1"]["submissions"] == 2
    assert_inside_the_limits(account)


async def test_a_job_live_in_another_journal_is_not_paid_for_twice(tmp_path: Path) -> None:
    job = emo_job(tmp_path / "in", 0)
    out_a, out_b = tmp_path / "out-a", tmp_path / "out-b"
    key = new_key()
    # A frozen clock: batch A's task stays live until the test lets time run.
    async with Workers(tmp_path / "workers") as workers:
        emulator = await workers.emulator(speed=0.0)
        [first] = await workers.start(
            worker_config("batch", emulator.base_url, [key], jobs=[job], out_dir=str(out_a))
        )
        with anyio.fail_after(30):
            while (line := await first.read()).get("event") != "submitted":
                pass
        task_id = line["task_id"]
        [second] = await workers.start(
            worker_config("batch", emulator.base_url, [key], jobs=[job], out_dir=str(out_b))
        )
        [taken], _ = await results_of(second)
        await emulator.set_speed(1000.0)
        [done], _ = await results_of(first)
        account = account_stats(await emulator.stats())
    assert account["submissions"] == 1
    assert done["status"] == "succeeded"
    assert done["task_id"] == task_id
    assert taken["status"] == "failed"
    assert taken["path"] is None
    assert str(out_a / JOURNAL) in taken["error"]  # names the batch that has the job
    assert not list(out_b.glob("*.mp4"))
