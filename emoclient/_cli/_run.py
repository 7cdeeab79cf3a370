"""``emoclient batch`` itself: the run, its progress and its closing report."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
import signal
import sys
import textwrap
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.to_thread

from emoclient._batch.jobs import Job
from emoclient._batch.manifest import ManifestJob, ManifestProblem, aread_manifest
from emoclient._batch.scan import ManifestScan, scan_manifest
from emoclient._batch.space import check_room
from emoclient._cli._common import BatchOptions
from emoclient._cli._keys import read_keys
from emoclient._cli._progress import LogStream, ProgressView
from emoclient._cli._report import (
    Failure,
    final_counts,
    may_pass_on_retry,
    render_failures,
    render_summary,
    retry_hint,
    row_number,
    summary_notes,
)
from emoclient._cli._rich import RichProgressView, rich_available

if TYPE_CHECKING:
    from emoclient._batch import Batch, BatchSummary, JobResult
    from emoclient._client import EmoClient

__all__ = ["run_batch"]

# Shell convention: 128 + the signal's number.
_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
_FAILURE_LIMIT = 200


# -- the run ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Outcome:
    failures: list[Failure] = field(default_factory=list)
    invalid_rows: set[int] = field(default_factory=set)
    failure_count: int = 0
    retryable: int = 0  # failures that may pass on another try
    stopped_by: int | None = None
    entered: bool = False  # the batch holds its folder and journal

    def fail(self, failure: Failure) -> None:
        self.failure_count += 1
        if may_pass_on_retry(failure.status, failure.code):
            self.retryable += 1
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
    except MissingAPIKeyError:
        # The Python API's message says EmoClient(api_key=...); a shell user exports it.
        options.err.write(
            "emoclient batch: no DashScope API key. Set it in the shell: export "
            "DASHSCOPE_API_KEY=sk-... (a Beijing-region key), or give a file of keys with "
            "--api-key-file PATH.\n"
        )
        return 2
    except (OSError, ValueError) as exc:
        options.err.write(f"emoclient batch: {exc}\n")
        return 2
    # Every row is checked before the first paid call: its problems show at once.
    scan = await anyio.to_thread.run_sync(scan_manifest, options.manifest)
    view = _make_view(options, scan.rows)
    outcome = _Outcome()
    _report_problems(scan, view, outcome)
    shown = bool(scan.columns or scan.problems)  # a status line may be up
    started = time.monotonic()
    try:
        async with contextlib.AsyncExitStack() as stack:
            for client in clients:
                await stack.enter_async_context(client)
            for client, (_, _, where) in zip(clients, keys, strict=True):
                refused = await _key_refused(client)
                if refused is not None:
                    return _refuse(
                        options,
                        view,
                        shown,
                        f"the service refused the API key: {refused}\n"
                        f"Check {where} (EMO and Emoji need a key of the China (Beijing) region); "
                        "nothing was submitted.",
                    )
            no_room = await _no_room(options, scan)
            if no_room is not None:
                return _refuse(options, view, shown, no_room)
            try:
                summary = await _run(clients, options, view, outcome)
            except JournalError as exc:
                if outcome.entered:
                    raise
                # The folder, the journal or their locks cannot be had: nothing was started.
                return _refuse(options, view, shown, str(exc))
    except BaseException:
        view.close()  # the error's message starts on a line of its own
        raise
    _report(
        options, view, batch_summary=summary, outcome=outcome, elapsed=time.monotonic() - started
    )
    if outcome.stopped_by is not None:
        return _EXIT_CODES.get(signal.Signals(outcome.stopped_by), 130)
    return 1 if outcome.failure_count else 0


def _refuse(options: BatchOptions, view: ProgressView, shown: bool, text: str) -> int:
    """Stop before anything is paid: end the status line when one is up, say why; exit 2."""
    if shown:
        view.close()
    options.err.write(f"emoclient batch: {text}\n")
    return 2


def _make_view(options: BatchOptions, total: int) -> ProgressView:
    settings: dict[str, Any] = {"total": total, "err": options.err, "out": options.out_stream}
    if options.mode == "tty" and rich_available(options.err):
        return RichProgressView(**settings)
    return ProgressView(mode=options.mode, **settings)


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
    with _log_lines_clear(view):
        return await _drive(batch, options, view, outcome)


async def _drive(
    batch: Batch, options: BatchOptions, view: ProgressView, outcome: _Outcome
) -> BatchSummary:
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
    return Failure(label, result.status, result.code, message, result.task_id, result.job.output)


@contextlib.contextmanager
def _log_lines_clear(view: ProgressView) -> Iterator[None]:
    """While the status line is drawn, log lines (``-v``) go through the view, each on a
    line of its own."""
    handlers = [
        h
        for h in logging.getLogger("emoclient").handlers
        if view.mode == "tty"
        and isinstance(h, logging.StreamHandler)
        and getattr(h, "stream", None) in (sys.stderr, sys.__stderr__)
    ]
    streams = [h.setStream(LogStream(view)) for h in handlers]
    try:
        yield
    finally:
        for handler, stream in zip(handlers, streams, strict=True):
            handler.setStream(stream)


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
    options: BatchOptions,
    view: ProgressView,
    *,
    batch_summary: BatchSummary,
    outcome: _Outcome,
    elapsed: float,
) -> None:
    err = options.err
    counts = final_counts(
        batch_summary.counts,
        manifest_invalid=len(outcome.invalid_rows),
        interrupted=batch_summary.interrupted,
        total=view.total,
        stopped=outcome.stopped_by is not None,
    )
    view.finish(counts)  # the last status line shows the summary's own numbers
    view.close()
    width = shutil.get_terminal_size((100, 20)).columns - 1
    failures = sorted(outcome.failures, key=lambda f: row_number(f.label))
    table = render_failures(failures, width=width)
    if table:
        err.write(f"\n{outcome.failure_count} job(s) did not produce a video:\n{table}\n")
        if outcome.failure_count > len(outcome.failures):
            err.write(f"... and {outcome.failure_count - len(outcome.failures)} more\n")
    notes = summary_notes(batch_summary)
    err.write(
        render_summary(
            counts,
            billed_seconds=batch_summary.billed_seconds,
            estimated_cost_cny=batch_summary.estimated_cost_cny,
            elapsed=elapsed,
            extra=notes,
            width=width,
        )
        + "\n"
    )
    if options.json:
        record = {k: v for k, v in asdict(batch_summary).items() if k != "counts"}
        at = datetime.now(UTC).isoformat()
        summary = {"event": "summary", "at": at, "counts": counts, "total": sum(counts.values())}
        summary |= record
        options.out_stream.write(json.dumps(summary, ensure_ascii=False) + "\n")
        options.out_stream.flush()
    if outcome.stopped_by is not None:
        running = batch_summary.interrupted
        left = (
            f" {running} task(s) already RUNNING will finish on the service (they are billed "
            "anyway); the rerun fetches their videos."
            if running
            else ""
        )
        text = (
            "Stopped before the end: queued tasks were cancelled (not billed) and finished "
            f"videos were kept.{left} Run the same command again to resume."
        )
        err.write("\n".join(textwrap.wrap(text, width, break_long_words=False)) + "\n")
    hint = retry_hint(outcome.retryable, options.command("--retry-failed"), width=width)
    if hint:
        err.write(hint + "\n")
    err.write(f"Videos are in {options.out.resolve()}\n")
    err.flush()
