"""``emoclient batch --dry-run``: the plan of a manifest and its cost; nothing is submitted."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from emoclient._batch.checks import Problem, plan_batch
from emoclient._batch.jobs import EmoJob, Job
from emoclient._batch.manifest import ManifestJob, ManifestProblem, aread_manifest
from emoclient._cli._report import row_number

__all__ = ["dry_run"]


async def dry_run(manifest: Path, *, as_json: bool, out: TextIO) -> int:
    """Print the plan of a manifest (jobs, problems, billed seconds, cost); submit nothing."""
    jobs: list[ManifestJob] = []
    problems: list[ManifestProblem] = []
    async for entry in aread_manifest(manifest):
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
    if as_json:
        out.write(json.dumps(summary, ensure_ascii=False) + "\n")
    else:
        out.write(_plan_text(manifest, ready, summary) + "\n")
    return 1 if all_problems else 0


def _row_of(problem: ManifestProblem | Problem) -> int:
    return row_number(problem.label if isinstance(problem, ManifestProblem) else problem.job_label)


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
