"""``emoclient batch MANIFEST --out DIR``: render every row of a manifest, resumably.

Connection settings come from ``DASHSCOPE_API_KEY`` and ``DASHSCOPE_HTTP_BASE_URL``. The
journal in the output folder makes a rerun of the same command resume: nothing is submitted
twice and finished videos are not fetched again. Ctrl-C (or SIGTERM) stops cleanly; a second
Ctrl-C quits at once (the journal stays consistent either way).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import anyio.abc
import anyio.to_thread

from emoclient._batch.checks import Problem, plan_batch
from emoclient._batch.jobs import EmoJob, Job
from emoclient._batch.manifest import ManifestError, ManifestJob, ManifestProblem, aread_manifest
from emoclient._batch.manifest import read_manifest as _read_manifest
from emoclient._cli._keys import read_keys
from emoclient._cli._progress import Failure, Mode, ProgressView, render_failures, render_summary

if TYPE_CHECKING:
    from emoclient._batch import Batch, BatchSummary, JobResult
    from emoclient._client import EmoClient

__all__ = ["BatchOptions", "register", "run_batch"]

# Shell convention: 128 + the signal's number.
_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
_FAILURE_LIMIT = 200


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``batch`` sub-command."""
    parser = subparsers.add_parser(
        "batch",
        help="render every row of a CSV/JSONL manifest into videos (resumable)",
        description=(
            "Render every row of MANIFEST (CSV with a header row, or JSONL) into DIR. Columns: "
            "image, audio (EMO) or driven_id (Emoji), and optional style_level, ratio, output, "
            "face_bbox, ext_bbox. Paths are relative to the manifest's folder. Uses "
            "DASHSCOPE_API_KEY and DASHSCOPE_HTTP_BASE_URL. Rerun the same command to resume."
        ),
    )
    parser.add_argument(
        "manifest", type=Path, metavar="MANIFEST", help="CSV or JSONL file, one video per row"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--dry-run", action="store_true", help="check the rows and print the plan and its cost"
    )
    parser.add_argument(
        "--json", action="store_true", help="write one JSON event per line on stdout"
    )
    parser.add_argument(
        "--window",
        type=_positive_int,
        default=None,
        metavar="N",
        help="tasks in flight per account: the running one plus N-1 queued (default 2)",
    )
    parser.add_argument(
        "--journal",
        type=Path,
        default=None,
        metavar="PATH",
        help="the resume journal (default DIR/emoclient-journal.sqlite3)",
    )
    parser.add_argument(
        "--store",
        default=None,
        metavar="SPEC",
        help=(
            "where the account's shared limits and task ownership live: memory, a file path "
            "(or sqlite:///path), or redis://host:port/db for several hosts (default: "
            "EMOCLIENT_STORE, else one SQLite file per user under EMOCLIENT_HOME)"
        ),
    )
    parser.add_argument(
        "--api-key-file",
        type=Path,
        default=None,
        metavar="PATH",
        help=(
            "several keys, one per line as KEY or KEY=ACCOUNT (keys of one Alibaba Cloud "
            "account share its limits): jobs are spread over the accounts"
        ),
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="give jobs that failed or expired in an earlier run another go",
    )
    parser.set_defaults(func=main)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


@dataclass(slots=True)
class BatchOptions:
    """What to run and how; ``api_key``/``base_url`` None means the environment's."""

    manifest: Path
    out: Path
    window: int | None = None
    journal: Path | None = None
    json: bool = False
    retry_failed: bool = False
    api_key: str | None = None
    base_url: str | None = None
    store: str | None = None
    api_key_file: Path | None = None
    err: TextIO = field(default_factory=lambda: sys.stderr)
    out_stream: TextIO = field(default_factory=lambda: sys.stdout)

    @property
    def mode(self) -> Mode:
        if self.json:
            return "json"
        return "tty" if self.err.isatty() else "plain"


def main(args: argparse.Namespace) -> int:
    """Entry point of ``emoclient batch``."""
    options = BatchOptions(
        manifest=args.manifest,
        out=args.out,
        window=args.window,
        journal=args.journal,
        json=args.json,
        retry_failed=args.retry_failed,
        store=args.store,
        api_key_file=args.api_key_file,
    )
    try:
        if args.dry_run:
            return anyio.run(dry_run, options)
        return anyio.run(run_batch, options)
    except ManifestError as exc:
        print(f"emoclient batch: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        causes = expected_failures(exc)
        if not causes:
            raise
        for cause in causes:  # every error's own message, never a group's traceback
            print(f"emoclient batch: {cause}", file=sys.stderr)
        print(
            "The journal keeps what was done: fix that, then run the same command to resume.",
            file=sys.stderr,
        )
        return 1


def expected_failure(exc: BaseException) -> BaseException | None:
    """The error inside ``exc`` worth a message rather than a traceback (file, journal)."""
    causes = expected_failures(exc)
    return causes[0] if len(causes) == 1 else None


def expected_failures(exc: BaseException) -> list[BaseException]:
    """The errors inside ``exc`` (a group's leaves) when each is worth a message rather
    than a traceback: files, the journal, the store, the service; else none."""
    from emoclient._exceptions import EmoError

    leaves = _leaves(exc)
    if all(isinstance(e, OSError | EmoError | ManifestError) for e in leaves):
        return leaves
    return []


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


# -- dry run ----------------------------------------------------------------------------------


async def dry_run(options: BatchOptions) -> int:
    """Print the plan of a manifest (jobs, problems, billed seconds, cost); submit nothing."""
    jobs: list[ManifestJob] = []
    problems: list[ManifestProblem] = []
    async for entry in aread_manifest(options.manifest):
        (jobs if isinstance(entry, ManifestJob) else problems).append(entry)  # type: ignore[arg-type]
    plan = await plan_batch(entry.job for entry in jobs)
    rejected = {problem.job_label for problem in plan.problems}
    ready = [entry.job for entry in jobs if entry.job.display_label not in rejected]
    all_problems: list[ManifestProblem | Problem] = [*problems, *plan.problems]
    all_problems.sort(key=_row_of)
    summary = {
        "event": "plan",
        "jobs": len(ready),
        "emo_jobs": sum(isinstance(job, EmoJob) for job in ready),
        "invalid_rows": len({p.row for p in problems} | rejected),
        "problems": [str(problem) for problem in all_problems],
        "billed_seconds": round(plan.billed_seconds, 3),
        "estimated_cost_cny": plan.estimated_cost_cny,
        "detect_calls": plan.detect_calls,
        "unknown_length": plan.unknown_length,
    }
    out = options.out_stream
    if options.json:
        out.write(json.dumps(summary, ensure_ascii=False) + "\n")
    else:
        out.write(_plan_text(options.manifest, ready, summary) + "\n")
    return 1 if all_problems else 0


def _row_of(problem: ManifestProblem | Problem) -> int:
    return _row_number(problem.label if isinstance(problem, ManifestProblem) else problem.job_label)


def _row_number(label: str) -> int:
    number = label.removeprefix("row ")
    return int(number) if number.isdigit() else 0


def _plan_text(manifest: Path, jobs: list[Job], summary: Mapping[str, Any]) -> str:
    emo = summary["emo_jobs"]
    lines = [
        f"Plan for {manifest}: {len(jobs)} video(s) to render ({emo} EMO, {len(jobs) - emo} "
        f"Emoji), {summary['invalid_rows']} row(s) with problems"
    ]
    lines += [f"  {_describe_job(job)}" for job in jobs[:100]]
    if len(jobs) > 100:
        lines.append(f"  ... and {len(jobs) - 100} more")
    problems = summary["problems"]
    if problems:
        lines.append("Problems (these rows will not be rendered):")
        lines += [f"  {problem}" for problem in problems]
    unknown = summary["unknown_length"]
    lines.append(
        f"Billed: {summary['billed_seconds']:.1f} s of video"
        + (f" (+ {unknown} job(s) with remote audio of unknown length)" if unknown else "")
        + f", {summary['detect_calls']} detection call(s);"
        f" estimated cost CNY {summary['estimated_cost_cny']:.2f}"
    )
    lines.append("Dry run: nothing was submitted.")
    return "\n".join(lines)


def _describe_job(job: Job) -> str:
    if isinstance(job, EmoJob):
        what = f"emo-v1   {_name(job.image)} + {_name(job.audio)} ({job.ratio}, {job.style_level})"
    else:
        what = f"emoji-v1 {_name(job.image)} + {job.driven_id}"
    return f"{job.display_label:<8} {what} -> {job.output or '(automatic name)'}"


def _name(source: str | Path) -> str:
    return source if isinstance(source, str) else source.name


# -- the run ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Outcome:
    failures: list[Failure] = field(default_factory=list)
    invalid_rows: set[int] = field(default_factory=set)
    failure_count: int = 0
    stopped_by: int | None = None
    entered: bool = False  # the batch holds its folder and journal

    def fail(self, failure: Failure) -> None:
        self.failure_count += 1
        if len(self.failures) < _FAILURE_LIMIT:
            self.failures.append(failure)


async def run_batch(options: BatchOptions) -> int:
    """Run a manifest to completion (or until stopped) and print the report; the exit code."""
    from emoclient._client import EmoClient
    from emoclient._exceptions import JournalError, MissingAPIKeyError

    try:
        keys = await anyio.to_thread.run_sync(read_keys, options.api_key, options.api_key_file)
        clients = [
            EmoClient(api_key=key, base_url=options.base_url, store=options.store, account=account)
            for key, account, _ in keys
        ]
    except MissingAPIKeyError as exc:
        options.err.write(f"emoclient batch: {exc}\n")
        return 2
    except (OSError, ValueError) as exc:
        options.err.write(f"emoclient batch: {exc}\n")
        return 2
    total = await anyio.to_thread.run_sync(_count_rows, options.manifest)
    view = ProgressView(total=total, mode=options.mode, err=options.err, out=options.out_stream)
    outcome = _Outcome()
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        for client in clients:
            await stack.enter_async_context(client)
        for client, (_, _, where) in zip(clients, keys, strict=True):
            refused = await _key_refused(client)
            if refused is not None:
                options.err.write(
                    f"emoclient batch: the service refused the API key: {refused}\n"
                    f"Check {where} (EMO and Emoji need a key of the China (Beijing) region); "
                    "nothing was submitted.\n"
                )
                return 2
        try:
            summary = await _run(clients, options, view, outcome)
        except JournalError as exc:
            if outcome.entered:
                raise
            # The folder, the journal or their locks cannot be had: nothing was started.
            options.err.write(f"emoclient batch: {exc}\n")
            return 2
    view.close()
    _report(options, batch_summary=summary, outcome=outcome, elapsed=time.monotonic() - started)
    if outcome.stopped_by is not None:
        return _EXIT_CODES.get(signal.Signals(outcome.stopped_by), 130)
    return 1 if outcome.failure_count else 0


async def _key_refused(client: EmoClient) -> str | None:
    """The service's answer when it refuses the key (one free list call), else None."""
    from emoclient._exceptions import AuthenticationError, EmoError, PermissionDeniedError

    # A wrong key would otherwise fail every job one by one, and the journal would keep
    # them as failed after the key is fixed.
    pages = client.list_tasks(page_size=1)
    try:
        await anext(pages, None)
    except (AuthenticationError, PermissionDeniedError) as exc:
        return str(exc)
    except EmoError:
        return None  # throttling, outages: the batch handles those job by job
    finally:
        if isinstance(pages, AsyncGenerator):
            await pages.aclose()
    return None


def _retried(summary: BatchSummary) -> list[str]:
    if not summary.resubmitted:
        return []
    return [f"{summary.resubmitted} task(s) failed on the service's side and were submitted again"]


async def _run(
    clients: list[EmoClient], options: BatchOptions, view: ProgressView, outcome: _Outcome
) -> BatchSummary:
    from emoclient._batch import Batch

    settings: dict[str, Any] = {"journal": options.journal, "retry": options.retry_failed}
    if options.window is not None:
        settings["window"] = options.window
    batch = Batch(clients, out_dir=options.out, on_event=view, **settings)
    async with batch, anyio.create_task_group() as tg:
        outcome.entered = True
        tg.start_soon(_watch_signals, batch, view, outcome, tg.cancel_scope)
        if view.mode == "tty":
            tg.start_soon(_tick, view)
        async for result in batch.run(_jobs(options.manifest, view, outcome)):
            if result.status != "succeeded" and not _stopped(result, outcome):
                outcome.fail(_failure(result))
        tg.cancel_scope.cancel()
    return batch.summary


def _count_rows(manifest: Path) -> int:
    rows: set[int] = set()
    jobs = 0
    for entry in _read_manifest(manifest):
        if isinstance(entry, ManifestJob):
            jobs += 1
        else:
            rows.add(entry.row)
    return jobs + len(rows)


async def _jobs(manifest: Path, view: ProgressView, outcome: _Outcome) -> AsyncIterator[Job]:
    async for entry in aread_manifest(manifest):
        if isinstance(entry, ManifestJob):
            yield entry.job
            continue
        view.problem(entry.label, entry.field, entry.message)
        outcome.invalid_rows.add(entry.row)
        outcome.fail(Failure(entry.label, "invalid", None, f"{entry.field}: {entry.message}"))


def _stopped(result: JobResult, outcome: _Outcome) -> bool:
    # Jobs the user's Ctrl-C held back are not failures: the rerun renders them.
    return result.status == "canceled" and outcome.stopped_by is not None


def _failure(result: JobResult) -> Failure:
    label = result.job.display_label
    message = result.error or result.status
    return Failure(label, result.status, result.code, message)


async def _watch_signals(
    batch: Batch, view: ProgressView, outcome: _Outcome, scope: anyio.CancelScope
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if outcome.stopped_by is not None:
                view.note("Stopping at once; rerun the same command to resume.")
                scope.cancel()
                return
            outcome.stopped_by = signum
            view.note(
                "Stopping: no new tasks are submitted, PENDING tasks are being cancelled and "
                "finished videos are still downloaded (press Ctrl-C again to quit at once)."
            )
            batch.stop()


async def _tick(view: ProgressView) -> None:
    while True:
        # Time passes between events too; the ETA and the rate must keep moving.
        await anyio.sleep(0.5)
        view.refresh()


def _report(
    options: BatchOptions, *, batch_summary: BatchSummary, outcome: _Outcome, elapsed: float
) -> None:
    err = options.err
    counts = dict(batch_summary.counts)
    if outcome.invalid_rows:
        counts["invalid"] = counts.get("invalid", 0) + len(outcome.invalid_rows)
    if batch_summary.interrupted:
        counts["still running"] = batch_summary.interrupted
    table = render_failures(sorted(outcome.failures, key=lambda f: _row_number(f.label)))
    if table:
        err.write(f"\n{outcome.failure_count} job(s) did not produce a video:\n{table}\n")
        if outcome.failure_count > len(outcome.failures):
            err.write(f"... and {outcome.failure_count - len(outcome.failures)} more\n")
    err.write(
        render_summary(
            counts,
            billed_seconds=batch_summary.billed_seconds,
            estimated_cost_cny=batch_summary.estimated_cost_cny,
            elapsed=elapsed,
            extra=_retried(batch_summary),
        )
        + "\n"
    )
    if outcome.stopped_by is not None:
        running = batch_summary.interrupted
        left = (
            f" {running} task(s) already RUNNING will finish on the service (they are billed "
            "anyway); the rerun fetches their videos."
            if running
            else ""
        )
        err.write(
            "Stopped before the end: queued tasks were cancelled (not billed) and finished "
            f"videos were kept.{left} Run the same command again to resume.\n"
        )
    err.write(f"Videos are in {options.out.resolve()}\n")
    err.flush()
