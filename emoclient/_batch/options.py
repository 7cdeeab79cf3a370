"""The scheduler's tuning knobs, and the poll schedule they describe."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from emoclient._retry import RetryPolicy
from emoclient._timing import PollSchedule
from emoclient._validate import check_count, check_seconds

__all__ = ["SchedulerOptions", "poll_schedule"]


@dataclass
class SchedulerOptions:
    """Tuning knobs; the defaults suit the real service and the emulator alike.

    ``retry`` paces the batch's own second tries, after the transport's HTTP retries gave up:
    sending a submit again once its lost answer was looked for, and downloading again;
    ``query_retry`` the poller's queries of one task. A persistent 429 on a submit therefore
    costs the transport's ``RetryPolicy.max_attempts`` POSTs (5 by default), never more.
    """

    window: int = 2
    poll_min: float = 0.05
    poll_max: float = 30.0
    pending_poll: float = 60.0
    queries_per_second: float = 5.0
    task_ttl: float = 24 * 3600.0
    expiry_margin: float = 4 * 3600.0
    download_workers: int = 2
    #: A task that FAILED with the service's own error (``InternalError...``, billed nothing)
    #: is submitted again this many times; content errors never are.
    #: 3: with 4 % of tasks failing (the fault mix of ``benchmarks/bench_faults.py``) 2 would
    #: lose about 1 job in 15 000 (a job failed three times in a row there), 3 about 1 in
    #: 400 000.
    resubmits: int = 3
    #: A task RUNNING ``stall_factor`` times its expected length (and at least ``stall_min``
    #: seconds) is reported as stalled, again every ``stall_repeat`` seconds.
    stall_factor: float = 3.0
    stall_min: float = 600.0
    stall_repeat: float = 600.0
    #: 8 attempts: under a bad network (the fault mix of ``benchmarks/bench_faults.py``, where
    #: about 1 submit in 6 ends ambiguously) 4 would lose about 1 job in 1000 for this run.
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=8))
    query_retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(max_attempts=8, base_delay=1.0, max_delay=30.0)
    )
    clock: Callable[[], float] = field(default=time.monotonic)

    def __post_init__(self) -> None:
        # Refused here, before anything is paid: a NaN or negative knob would stall a batch.
        self.window = check_count("window", self.window)
        self.download_workers = check_count("download_workers", self.download_workers)
        self.resubmits = check_count("resubmits", self.resubmits, minimum=0)
        for name in (
            "poll_min",
            "poll_max",
            "pending_poll",
            "queries_per_second",
            "task_ttl",
            "stall_factor",
            "stall_repeat",
        ):
            setattr(self, name, check_seconds(name, getattr(self, name)))
        for name in ("expiry_margin", "stall_min"):
            setattr(self, name, check_seconds(name, getattr(self, name), zero=True))


def poll_schedule(options: SchedulerOptions) -> PollSchedule:
    """The poll schedule ``options`` describe."""
    return PollSchedule(
        min_interval=options.poll_min,
        max_interval=options.poll_max,
        growth=1.5,
        probe_growth=2.0,  # nothing learned yet: find the scale fast
        queued_interval=options.pending_poll,
    )
