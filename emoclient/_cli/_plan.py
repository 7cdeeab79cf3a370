"""``emoclient batch --dry-run``: every row checked, the plan and its cost printed, nothing
submitted. The manifest is streamed and each distinct local file probed once."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import anyio.to_thread

from emoclient._batch.jobs import EmoJob, Job
from emoclient._batch.scan import scan_manifest
from emoclient._batch.space import human_bytes

__all__ = ["dry_run"]


async def dry_run(manifest: Path, *, as_json: bool, out: TextIO) -> int:
    """Print the plan of a manifest (jobs, problems, billed seconds, cost); submit nothing."""
    scan = await anyio.to_thread.run_sync(scan_manifest, manifest)
    plan = scan.plan
    problems = [str(p) for p in scan.columns] + [str(p) for _, p in scan.problems]
    summary = {
        "event": "plan",
        "jobs": scan.jobs,
        "emo_jobs": scan.emo_jobs,
        "invalid_rows": len(scan.invalid_rows),
        "column_problems": len(scan.columns),
        "problems": problems,
        "billed_seconds": round(plan.billed_seconds, 3),
        "estimated_cost_cny": plan.estimated_cost_cny,
        "detect_calls": plan.detect_calls,
        "unknown_length": plan.unknown_length,
        "estimated_bytes": plan.estimated_bytes,
    }
    if as_json:
        out.write(json.dumps(summary, ensure_ascii=False) + "\n")
    else:
        out.write(_plan_text(manifest, scan.sample, summary) + "\n")
    return 1 if problems else 0


def _plan_text(manifest: Path, sample: list[Job], summary: Mapping[str, Any]) -> str:
    jobs, emo = summary["jobs"], summary["emo_jobs"]
    lines = [
        f"Plan for {manifest}: {jobs} video(s) to render ({emo} EMO, {jobs - emo} "
        f"Emoji), {summary['invalid_rows']} row(s) with problems"
    ]
    lines += [f"  {_describe_job(job)}" for job in sample]
    if jobs > len(sample):
        lines.append(f"  ... and {jobs - len(sample)} more")
    columns = summary["problems"][: summary["column_problems"]]
    problems = summary["problems"][summary["column_problems"] :]
    if columns:
        lines.append("Columns (their cells are ignored):")
        lines += [f"  {problem}" for problem in columns]
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
    lines.append(f"Disk: the videos need about {human_bytes(summary['estimated_bytes'])}")
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
