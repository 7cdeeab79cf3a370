"""A whole manifest checked before anything is paid: the dry run's plan and the run's preflight.

Every row is read (streamed), every distinct local file is probed once (by path, size and
modification time) and the plan is added up as it goes: memory holds the totals, the first
jobs (to show) and the problems, never every row. Blocking: run in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from emoclient._batch.checks import Plan, ProbeCache, Problem, count_job, inspect_now
from emoclient._batch.jobs import EmoJob, Job
from emoclient._batch.manifest import ManifestFormat, ManifestJob, ManifestProblem, read_manifest

__all__ = ["ManifestScan", "RowProblem", "scan_manifest"]

#: Why one row will not run: the manifest's verdict, or preflight's on the row's files.
RowProblem = ManifestProblem | Problem


@dataclass(slots=True)
class ManifestScan:
    """The checked manifest: counts, the plan's totals, and every problem in row order."""

    plan: Plan = field(default_factory=Plan)
    jobs: int = 0  # rows that will run
    emo_jobs: int = 0
    #: The first ``sample`` rows that will run, to show.
    sample: list[Job] = field(default_factory=list)
    problems: list[tuple[int, RowProblem]] = field(default_factory=list)
    #: Problems of a whole column (an unknown one): reported once, no row is invalid for them.
    columns: list[ManifestProblem] = field(default_factory=list)
    invalid_rows: set[int] = field(default_factory=set)

    @property
    def rows(self) -> int:
        """Rows of the manifest with something in them (good and invalid)."""
        return self.jobs + len(self.invalid_rows)


def scan_manifest(
    path: Path,
    *,
    format: ManifestFormat | None = None,
    sample: int = 100,
    cache: ProbeCache | None = None,
    on_problem: Callable[[int, RowProblem], None] | None = None,
) -> ManifestScan:
    """Read and check every row of the manifest at ``path``; see the module docstring.

    Raises ``ManifestError`` when the manifest as a whole cannot be used.
    """
    scan = ManifestScan()
    cache = cache or ProbeCache()

    def problem(row: int, found: RowProblem) -> None:
        scan.problems.append((row, found))
        scan.invalid_rows.add(row)
        if on_problem is not None:
            on_problem(row, found)

    for entry in read_manifest(path, format=format):
        if isinstance(entry, ManifestProblem):
            if entry.scope == "column":
                scan.columns.append(entry)
            else:
                problem(entry.row, entry)
            continue
        assert isinstance(entry, ManifestJob)
        job = entry.job
        found, audio = inspect_now(job, cache)
        count_job(scan.plan, job, found, audio)
        if found:
            for one in found:
                problem(entry.row, one)
            continue
        scan.jobs += 1
        scan.emo_jobs += isinstance(job, EmoJob)
        if len(scan.sample) < sample:
            scan.sample.append(job)
    scan.plan.problems = []  # they are in scan.problems, with their rows
    scan.plan.estimated_cost_cny = round(scan.plan.estimated_cost_cny, 4)
    return scan
