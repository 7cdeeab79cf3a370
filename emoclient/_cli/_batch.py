"""``emoclient batch MANIFEST --out DIR``: render every row of a manifest, resumably.

Connection settings come from ``DASHSCOPE_API_KEY`` and ``DASHSCOPE_HTTP_BASE_URL``. The
journal in the output folder makes a rerun of the same command resume: nothing is submitted
twice and finished videos are not fetched again. Ctrl-C (or SIGTERM) stops cleanly; a second
Ctrl-C quits at once (the journal stays consistent either way).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import signal
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import anyio.abc
import anyio.to_thread

from emoclient._batch.jobs import Job
from emoclient._batch.manifest import ManifestError, ManifestJob, ManifestProblem, aread_manifest
from emoclient._batch.scan import ManifestScan, scan_manifest
from emoclient._batch.space import FreeSpace, check_room, free_bytes
from emoclient._cli._args import file_path, folder, positive_int
from emoclient._cli._keys import read_keys
from emoclient._cli._progress import (
    Failure,
    Mode,
    ProgressView,
    render_failures,
    render_recovery,
    render_summary,
)

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
        "manifest", type=file_path, metavar="MANIFEST", help="CSV or JSONL file, one video per row"
    )
    parser.add_argument("--out", type=folder, required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--dry-run", action="store_true", help="check the rows and print the plan and its cost"
    )
    parser.add_argument(
        "--json", action="store_true", help="write one JSON event per line on stdout"
    )
    parser.add_argument(
        "--window",
        type=positive_int,
        default=None,
        metavar="N",
        help="tasks in flight per account: the running one plus N-1 queued (default 2)",
    )
    parser.add_argument(
        "--journal",
        type=file_path,
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
    #: Free bytes on a folder's disk (tests inject one).
    free_space: FreeSpace = free_bytes
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
            from emoclient._cli._plan import dry_run

            return anyio.run(
                functools.partial(
                    dry_run, options.manifest, as_json=options.json, out=options.out_stream
                )
            )
        return anyio.run(run_batch, options)
    except ManifestError as exc:
        print(f"emoclient batch: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        causes = expected_failures(exc)
        if not causes:
            leaves = _leaves(exc)
            if len(leaves) == 1 and leaves[0] is not exc:
                raise leaves[0] from None  # a bug: its own traceback, not a group's
            if len(leaves) == 1:
                raise
            for leaf in leaves:
                print(f"emoclient batch: {type(leaf).__name__}: {leaf}", file=sys.stderr)
            print(
                "emoclient batch: these are bugs; please report them. The journal keeps what "
                "was done: run the same command to resume.",
                file=sys.stderr,
            )
            return 1
        # Every error's own message, once (two downloads on one full disk say the same).
        for message in dict.fromkeys(_say(cause) for cause in causes):
            print(f"emoclient batch: {message}", file=sys.stderr)
        print(
            "The journal keeps what was done: fix that, then run the same command to resume.",
            file=sys.stderr,
        )
        return 1


def _say(cause: BaseException) -> str:
    """The line for an expected failure; a full disk says so, and what to do."""
    text = str(cause)
    if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"disk full writing {cause.filename or 'a file'}: free space and rerun the same command"
        )
    if text.startswith("journal ") and text.endswith(": database or disk is full"):
        where = text.removeprefix("journal ").removesuffix(": database or disk is full")
        return f"disk full writing the journal {where}: free space and rerun the same command"
    return text


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


def _row_number(label: str) -> int:
    number = label.removeprefix("row ")
    return int(number) if number.isdigit() else 0


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
    # Every row is checked before the first paid call: its problems show at once.
    scan = await anyio.to_thread.run_sync(scan_manifest, options.manifest)
    view = ProgressView(total=scan.rows, mode=options.mode, err=options.err, out=options.out_stream)
    outcome = _Outcome()
    _report_problems(scan, view, outcome)
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
        no_room = await _no_room(options, scan)
        if no_room is not None:
            options.err.write(f"emoclient batch: {no_room}\n")
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


async def _no_room(options: BatchOptions, scan: ManifestScan) -> str | None:
    """Why the output folder (or the journal's) cannot take the plan, else None."""
    from emoclient._batch.batch import JOURNAL_NAME
    from emoclient._exceptions import DiskFullError, JournalError

    journal = options.journal or options.out / JOURNAL_NAME
    try:
        await anyio.to_thread.run_sync(
            functools.partial(
                check_room,
                options.out,
                journal,
                video_bytes=scan.plan.estimated_bytes,
                jobs=scan.jobs,
                free=options.free_space,
            )
        )
    except (DiskFullError, JournalError) as exc:
        return str(exc)
    return None


def _report_problems(scan: ManifestScan, view: ProgressView, outcome: _Outcome) -> None:
    for column in scan.columns:
        view.note(f"emoclient batch: {column}")
    for row, problem in scan.problems:
        view.problem(
            problem.label if isinstance(problem, ManifestProblem) else problem.job_label,
            problem.field,
            problem.message,
        )
        outcome.invalid_rows.add(row)
        outcome.fail(Failure(f"row {row}", "invalid", None, f"{problem.field}: {problem.message}"))


async def _jobs(manifest: Path, view: ProgressView, outcome: _Outcome) -> AsyncIterator[Job]:
    # The rows the check before the run found wanting were reported then: they are skipped.
    async for entry in aread_manifest(manifest):
        if isinstance(entry, ManifestJob):
            if entry.row not in outcome.invalid_rows:
                yield entry.job
            continue
        if entry.scope == "column" or entry.row in outcome.invalid_rows:
            continue
        # Changed since the check (a file went missing): reported now.
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
            extra=render_recovery(batch_summary),
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
