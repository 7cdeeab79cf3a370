"""``emoclient batch MANIFEST --out DIR``: render every row of a manifest, resumably.

Connection settings come from ``DASHSCOPE_API_KEY`` and ``DASHSCOPE_HTTP_BASE_URL``. The
journal in the output folder makes a rerun of the same command resume: nothing is submitted
twice and finished videos are not fetched again. Ctrl-C (or SIGTERM) stops cleanly; a second
Ctrl-C quits at once (the journal stays consistent either way).

This module is the command's parser: it imports no client code, so that ``emoclient --help``
stays fast. The run is in ``_run``, the dry run in ``_plan``, their options in ``_common``.
"""

from __future__ import annotations

import argparse
import errno
import functools
import sys
from pathlib import Path

from emoclient._cli._args import file_path, folder, positive_int
from emoclient._cli._common import BatchOptions, error_leaves, expected_failures

__all__ = ["main", "register"]


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
        help="tasks in flight per account: the running one plus N-1 queued (default: 2)",
    )
    parser.add_argument(
        "--journal",
        type=file_path,
        default=None,
        metavar="PATH",
        help="the resume journal (default: DIR/emoclient-journal.sqlite3)",
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
            "account share its limits): jobs are spread over the accounts (default: the one "
            "key in DASHSCOPE_API_KEY)"
        ),
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="give jobs that failed or expired in an earlier run another go",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Entry point of ``emoclient batch``."""
    import anyio

    from emoclient._batch.manifest import ManifestError

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
        from emoclient._cli._run import run_batch

        return anyio.run(run_batch, options)
    except ManifestError as exc:
        print(f"emoclient batch: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        causes = expected_failures(exc)
        if not causes:
            leaves = error_leaves(exc)
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
