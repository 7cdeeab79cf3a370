"""A batch of EMO jobs under the fault mix of a bad network: what reaches the disk, first run.

Per seed, one ``Batch`` of ``--jobs`` EMO jobs (local portraits and audio, so every job
uploads, detects, submits, waits and downloads) runs on its own emulator account with:

- 10 % of requests answered 5xx, 5 % of connections dropped before the request takes effect,
  3 % of answers lost after it took effect (every route: uploads, detection, submits,
  queries, downloads);
- ``--latency`` real seconds added to every answer;
- 4 % of tasks FAILED with the service's own ``InternalError`` (billed nothing);
- every result download cut after ``--cut`` bytes (the client resumes with ``Range``).

Time is compressed as in ``bench_batch.py``: the emulator runs ``--speed`` times faster, and
the service's rate limits, the client's rates, its polling and its backoff are scaled by the
same factor. Printed per seed:

- **valid**: jobs whose output file is a complete MP4 of the right task (the emulator's own
  bytes for that task, byte for byte) whose inputs were this job's portrait and audio, with
  the frame size and duration the job asked for (``emoclient._batch.verify``);
- **dup**: tasks beyond one per job that were not FAILED by the service (paid twice);
- **429**: throttled answers (emulator statistics);
- **submits** (tasks the emulator accepted), **resub** (resubmissions after a transient task
  failure), retries by call kind (upload, submit, query, download, from the batch summary),
  reconciliations of lost submit answers, and wall time.

    python benchmarks/bench_faults.py                  # 50 jobs, seeds 1-5
    python benchmarks/bench_faults.py --quick          # 20 jobs, seed 1
    python benchmarks/bench_faults.py --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import re
import statistics
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio

from emoclient import Batch, EmoClient, EmoJob, MemoryStore, Rates, RetryPolicy, SchedulerOptions
from emoclient._batch.verify import Expected, mismatch, probe_mp4
from emoclient.emulator import EmulatorConfig, RunningEmulator, account_label, serve
from emoclient.emulator._results import placeholder_video
from emoclient.emulator._state import TaskInputs
from emoclient.emulator.samples import make_portrait, make_speech

RETRY_KINDS = ("upload", "detect", "submit", "query", "download")


def fault_mix(seed: int, *, latency: float, cut: int) -> dict[str, Any]:
    """The issue's fault mix, on every route."""
    return {
        "error_rate": 0.10,
        "drop_rate": 0.05,
        "drop_after_rate": 0.03,
        "latency": latency,
        "task_failure_rate": 0.04,
        "download_cut_bytes": cut,
        "seed": seed,
    }


@dataclass
class SeedResult:
    seed: int
    jobs: int
    valid: int = 0
    succeeded: int = 0
    duplicates: int = 0
    throttled: int = 0
    submissions: int = 0
    failed_tasks: int = 0
    resubmitted: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    reconciled: int = 0
    rate_waits: int = 0
    wall: float = 0.0
    problems: list[str] = field(default_factory=list)
    log_retries: dict[str, int] = field(default_factory=dict)
    most_failures_of_a_job: int = 0


class _RetryLog(logging.Handler):
    """Counts the library's "retrying" log lines by call kind (a cross-check of the summary)."""

    _KINDS = (
        ("upload", re.compile(r"^(getting an upload policy|uploading)")),
        ("submit", re.compile(r"^submit")),
        ("query", re.compile(r"^(getting task|listing tasks|querying|cancel)")),
        ("detect", re.compile(r"^detect")),
    )

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: Counter[str] = Counter()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            self.lines.append(message)
        if "retrying in" in message:
            kind = next((k for k, p in self._KINDS if p.match(message)), "other")
            self.counts[kind] += 1
        elif message.startswith("download of") and "resuming" in message:
            self.counts["download_resume"] += 1


def _jobs(folder: Path, count: int) -> tuple[list[EmoJob], dict[str, tuple[str, str, float]]]:
    seconds = (2.0, 3.0, 4.0)
    folder.mkdir(parents=True, exist_ok=True)
    sounds = [make_speech(folder / f"s{i}.wav", seconds=s, seed=i) for i, s in enumerate(seconds)]
    jobs, expected = [], {}
    for i in range(count):
        image = make_portrait(folder / f"p{i}.png", width=480, height=640, seed=i)
        sound = i % len(sounds)
        name = f"v{i:03d}.mp4"
        jobs.append(EmoJob(image=image, audio=sounds[sound], output=name, label=f"job {i}"))
        audio = sounds[sound].read_bytes()
        expected[name] = (_digest(image.read_bytes()), _digest(audio), seconds[sound])
    return jobs, expected


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _client(emulator: RunningEmulator, key: str, speed: float) -> EmoClient:
    rates = Rates(submit=5 * speed, query=20 * speed, detect=5 * speed, upload=100 * speed)
    retry = _scaled(RetryPolicy(), speed)
    return EmoClient(
        key,
        base_url=emulator.base_url,
        rates=rates,
        store=MemoryStore(),
        retry=retry,
        timeout=10.0,
    )


def _options(speed: float) -> SchedulerOptions:
    return SchedulerOptions(
        poll_min=0.05 / speed,
        poll_max=30.0 / speed,
        pending_poll=60.0 / speed,
        queries_per_second=5.0 * speed,
        retry=_scaled(SchedulerOptions().retry, speed),
        query_retry=_scaled(SchedulerOptions().query_retry, speed),
    )


def _scaled(policy: RetryPolicy, speed: float) -> RetryPolicy:
    """The library's default policy with its pauses compressed like the emulator's time."""
    return dataclasses.replace(
        policy, base_delay=policy.base_delay / speed, max_delay=policy.max_delay / speed
    )


def _scaled_limits(speed: float) -> dict[str, int]:
    base = {"submit": 5, "query": 20, "detect": 5, "upload_policy": 100}
    return {name: round(rate * speed) for name, rate in base.items()}


async def _run_seed(
    emulator: RunningEmulator,
    seed: int,
    args: argparse.Namespace,
    folder: Path,
    inputs: tuple[list[EmoJob], dict[str, tuple[str, str, float]]],
) -> SeedResult:
    jobs, expected = inputs
    key = f"sk-faults-{seed}-{uuid.uuid4().hex[:8]}"
    out = folder / f"out-{seed}"
    result = SeedResult(seed=seed, jobs=len(jobs))
    log = _RetryLog()
    library = logging.getLogger("emoclient")
    library.addHandler(log)
    old_level = library.level
    library.setLevel(logging.INFO)
    emulator.set_faults(**fault_mix(seed, latency=args.latency, cut=args.cut))
    started = time.monotonic()
    try:
        async with (
            _client(emulator, key, args.speed) as client,
            Batch(client, out_dir=out, options=_options(args.speed)) as batch,
        ):
            async for job_result in batch.run(jobs):
                if job_result.status == "succeeded":
                    result.succeeded += 1
                else:
                    result.problems.append(
                        f"{job_result.job.label}: {job_result.status}: {job_result.error}"
                    )
            summary = batch.summary
    finally:
        result.wall = time.monotonic() - started
        emulator.set_faults(**(fault_mix(seed, latency=0.0, cut=0) | _NO_FAULTS))
        library.removeHandler(log)
        library.setLevel(old_level)
    result.resubmitted = summary.resubmitted
    result.retries = {kind: _retries(summary, kind) for kind in RETRY_KINDS}
    result.reconciled = int(getattr(summary, "reconciled", 0))
    result.rate_waits = int(getattr(summary, "rate_waits", 0))
    result.log_retries = dict(log.counts)
    _check_outputs(emulator, account_label(key), out, expected, result)
    stats: dict[str, Any] = (await emulator.stats())["accounts"][account_label(key)]
    result.throttled = sum(route["throttled"] for route in stats["routes"].values())
    result.submissions = stats["submissions"]
    return result


_NO_FAULTS: dict[str, Any] = {
    "error_rate": 0.0,
    "drop_rate": 0.0,
    "drop_after_rate": 0.0,
    "task_failure_rate": 0.0,
    "download_cut_bytes": None,
}


def _retries(summary: Any, kind: str) -> int:
    retries = getattr(summary, "retries", None)
    return int(retries.get(kind, 0)) if isinstance(retries, dict) else 0


def _check_outputs(
    emulator: RunningEmulator,
    account: str,
    out: Path,
    expected: dict[str, tuple[str, str, float]],
    result: SeedResult,
) -> None:
    """Count valid videos and duplicate tasks from the emulator's own record of the tasks."""
    tasks = [t for t in emulator.state.tasks.values() if t.account == account]
    by_video = {_digest(placeholder_video(t)): t for t in tasks if t.status == "SUCCEEDED"}
    per_job: Counter[tuple[str, str]] = Counter()
    failures: Counter[str] = Counter()
    for task in tasks:
        if task.status == "FAILED":
            result.failed_tasks += 1
            failures[_digest(task.inputs.image)] += 1
            continue
        per_job[(_digest(task.inputs.image), _digest(task.inputs.audio or b""))] += 1
    result.duplicates = sum(n - 1 for n in per_job.values() if n > 1)
    result.most_failures_of_a_job = max(failures.values(), default=0)
    for name, (image, audio, seconds) in expected.items():
        path = out / name
        if not path.exists():
            continue
        task = by_video.get(_digest(path.read_bytes()))
        if task is None:
            result.problems.append(f"{name}: not the bytes of any task of the account")
            continue
        if (_digest(task.inputs.image), _digest(task.inputs.audio or b"")) != (image, audio):
            result.problems.append(f"{name}: the video of task {task.task_id}, another job's")
            continue
        try:
            problem = mismatch(probe_mp4(path), Expected(ratio="1:1", seconds=seconds))
        except (OSError, ValueError) as exc:
            problem = str(exc)
        if problem is not None:
            result.problems.append(f"{name}: {problem}")
            continue
        result.valid += 1


def _keep_task_inputs() -> None:
    """Keep each task's input bytes after it ends (the emulator drops them to save memory),
    so that every video can be traced back to the portrait and audio it was made of."""
    TaskInputs.release = lambda self: None  # type: ignore[method-assign]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    _keep_task_inputs()
    config = EmulatorConfig(speed=args.speed, render=False, rate_limits=_scaled_limits(args.speed))
    results: list[SeedResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = _jobs(Path(tmp) / "inputs", args.jobs)  # each seed has its own account
        async with serve(config) as emulator:
            for seed in args.seeds:
                results.append(await _run_seed(emulator, seed, args, Path(tmp), inputs))
    return _report(results, args)


def _report(results: list[SeedResult], args: argparse.Namespace) -> dict[str, Any]:
    columns = [
        "seed",
        "valid",
        "dup",
        "429",
        "submits",
        "failed tasks",
        "resub",
        *[f"retry {k}" for k in RETRY_KINDS],
        "reconciled",
        "rate waits",
        "wall s",
    ]
    rows = [
        [
            r.seed,
            f"{r.valid}/{r.jobs}",
            r.duplicates,
            r.throttled,
            r.submissions,
            r.failed_tasks,
            r.resubmitted,
            *[r.retries.get(k, 0) for k in RETRY_KINDS],
            r.reconciled,
            r.rate_waits,
            round(r.wall, 1),
        ]
        for r in results
    ]
    notes = [
        f"{args.jobs} EMO jobs per seed, speed {args.speed:g}x, fault mix: 10 % 5xx, 5 % "
        f"dropped connections, 3 % lost answers (every route), {args.latency:g} s latency, "
        f"4 % failed tasks (InternalError), downloads cut after {args.cut} bytes",
        f"valid videos: median {statistics.median(r.valid for r in results):g} of {args.jobs}; "
        f"wall: median {statistics.median(r.wall for r in results):.1f} s",
    ]
    for r in results:
        notes.extend(f"seed {r.seed}: {p}" for p in r.problems[:10])
    return {
        "benchmark": "faults",
        "title": "A batch of EMO jobs under the fault mix, first run",
        "tables": [{"title": "per seed", "columns": columns, "rows": rows}],
        "notes": notes,
        "extra": {"seeds": [asdict(r) for r in results]},
    }


def _print(report: dict[str, Any]) -> None:
    print(report["title"])
    for table in report["tables"]:
        columns, rows = table["columns"], table["rows"]
        widths = [
            max(len(str(c)), *(len(str(row[i])) for row in rows)) for i, c in enumerate(columns)
        ]
        print("  ".join(str(c).rjust(w) for c, w in zip(columns, widths, strict=True)))
        for row in rows:
            print("  ".join(str(v).rjust(w) for v, w in zip(row, widths, strict=True)))
    for note in report["notes"]:
        print(f"- {note}")


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--speed", type=float, default=100.0)
    parser.add_argument("--latency", type=float, default=0.01, help="real seconds per answer")
    parser.add_argument("--cut", type=int, default=20_000, help="bytes per download attempt")
    parser.add_argument("--quick", action="store_true", help="20 jobs, seed 1")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.seeds = 20, [1]
    return args


if __name__ == "__main__":
    arguments = _parse()
    report = anyio.run(main, arguments)
    _print(report)
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(report, indent=2) + "\n")
