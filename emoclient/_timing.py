"""When to ask about a task again, and what has been learned about how long tasks take.

Pure, no I/O: every function takes the time as a plain number. One :class:`PollSchedule`
serves ``EmoClient.wait()`` (one task) and the batch's poller (all live tasks of an account,
through :class:`AccountTiming`), so both ask the same way:
- a queued (PENDING) task is asked about at growing intervals, or rarely when it waits behind
  another task of ours that runs;
- a RUNNING task whose length can be predicted is first asked about a little before its
  expected end (so the estimate is corrected both ways, not only ever upwards), then in short
  steps; without a prediction, at intervals that grow fast to find the scale.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from emoclient._models import TaskStatus

__all__ = ["AccountTiming", "Fit", "Learned", "PollSchedule", "Progress"]

# Guess of processing seconds per output second until the first task teaches us better.
_DEFAULT_SECONDS_PER_OUTPUT = 10.0


@dataclass
class Progress:
    """What is known of one task's progress, on the caller's clock."""

    submitted_at: float = 0.0
    status: TaskStatus = TaskStatus.PENDING
    started_at: float | None = None
    last_pending: float = 0.0  # the last answer that said PENDING
    last_running: float | None = None  # the last answer that said RUNNING
    interval: float = 0.0
    next_poll: float = 0.0
    resumed: bool = False  # submitted by an earlier run: its start is not known


@dataclass(frozen=True)
class PollSchedule:
    """Poll intervals: ``min_interval`` growing by ``growth`` up to ``max_interval``.

    ``queued_interval`` is used for a task queued behind another running task of the same
    caller (None: back off as usual). A RUNNING task of ``expected`` seconds is first asked
    about at ``early`` times its length after its start, then every ``step`` times its length
    (at least ``min_interval``), growing. ``probe_growth`` is the growth while no length is
    known.
    """

    min_interval: float = 3.0
    max_interval: float = 15.0
    growth: float = 1.5
    probe_growth: float = 1.5
    queued_interval: float | None = None
    early: float = 0.95
    step: float = 0.08

    def __post_init__(self) -> None:
        if not 0 < self.min_interval <= self.max_interval:
            raise ValueError(
                f"need 0 < min_interval <= max_interval, got {self.min_interval}, "
                f"{self.max_interval}"
            )
        if self.growth < 1 or self.probe_growth < 1:
            raise ValueError("growth and probe_growth must be >= 1")

    def pending(self, p: Progress, now: float, *, behind_ours: bool = False) -> None:
        """The task answered PENDING at ``now``: set ``p.next_poll``."""
        if p.status is TaskStatus.RUNNING:  # it was assumed to have started; it had not
            p.status, p.started_at = TaskStatus.PENDING, None
        p.last_pending = now
        if behind_ours and self.queued_interval is not None:
            p.next_poll = now + self.queued_interval
            return
        p.interval = self._grow(p.interval, self.min_interval, self.growth)
        p.next_poll = now + p.interval

    def running(
        self,
        p: Progress,
        now: float,
        *,
        expected: float | None,
        last_end_seen: float | None = None,
    ) -> bool:
        """The task answered RUNNING at ``now``: set ``p.next_poll``; True if it just started.

        ``expected`` is its predicted running time; ``last_end_seen`` when the task ahead of
        it was seen to end (the slot passes on at once), to date its start.
        """
        started = p.status is not TaskStatus.RUNNING
        if started:
            p.status = TaskStatus.RUNNING
            p.started_at = start_estimate(p, now, last_end_seen)
            p.interval = 0.0
        p.last_running = now
        if expected is not None and p.started_at is not None:
            early = p.started_at + self.early * expected
            if now + self.min_interval < early:
                # Every wait is bounded: a wrong guess of the length costs a query, not the slot.
                p.next_poll = min(early, now + self.max_interval)
                return started
            step, growth = max(self.min_interval, self.step * expected), self.growth
        else:
            step, growth = self.min_interval, self.probe_growth
        p.interval = self._grow(p.interval, step, growth)
        p.next_poll = now + p.interval
        return started

    def promoted(self, p: Progress, *, ended: float, now: float, expected: float | None) -> None:
        """The task ahead of ``p`` ended at about ``ended``: ``p`` holds the slot from then."""
        p.status = TaskStatus.RUNNING
        p.started_at = max(p.submitted_at, ended)
        p.interval = 0.0
        if expected is None:
            p.next_poll = now
        else:
            p.next_poll = min(p.started_at + self.early * expected, now + self.max_interval)

    def _grow(self, interval: float, step: float, growth: float) -> float:
        return min(step if interval <= 0 else interval * growth, self.max_interval)


def start_estimate(p: Progress, now: float, last_end_seen: float | None) -> float:
    """Midpoint of what is known: after the last PENDING answer, before ``now`` and before
    the task ahead of it was seen to end."""
    lower = max(p.submitted_at, p.last_pending)
    upper = now
    if last_end_seen is not None and lower <= last_end_seen < upper:
        upper = last_end_seen
    return (lower + upper) / 2


@dataclass
class Fit:
    """Processing time as ``a + b * output_seconds``, least squares with forgetting.

    Tasks carry a fixed overhead, so seconds per output second alone would misjudge clips
    of other lengths. While all clips seen had one length, the fit is a plain ratio.
    """

    forget: float = 0.8
    n: float = 0.0
    sum_d: float = 0.0
    sum_t: float = 0.0
    sum_dd: float = 0.0
    sum_dt: float = 0.0

    def add(self, seconds: float, took: float) -> None:
        """Record a clip of ``seconds`` that took ``took`` seconds to render."""
        f = self.forget
        self.n = self.n * f + 1
        self.sum_d = self.sum_d * f + seconds
        self.sum_t = self.sum_t * f + took
        self.sum_dd = self.sum_dd * f + seconds * seconds
        self.sum_dt = self.sum_dt * f + seconds * took

    def predict(self, seconds: float) -> float | None:
        """Expected processing time of a clip of ``seconds``; None before any sample."""
        if self.n == 0:
            return None
        mean_d, mean_t = self.sum_d / self.n, self.sum_t / self.n
        var = self.sum_dd / self.n - mean_d * mean_d
        if var > 1e-6 * max(1.0, mean_d * mean_d):
            slope = (self.sum_dt / self.n - mean_d * mean_t) / var
            base = mean_t - slope * mean_d
            if base >= 0 and slope >= 0:
                return base + slope * seconds
        return mean_t * seconds / mean_d if mean_d > 0 else mean_t


@dataclass
class Learned:
    """Processing time fits on our clock (for polling) and the service's (for admission)."""

    local: Fit = field(default_factory=Fit)
    server: Fit = field(default_factory=Fit)

    def observe(self, seconds: float, local: float | None, server: float | None) -> None:
        """Record a task of ``seconds`` output that took ``local`` / ``server`` seconds."""
        if local is not None:
            self.local.add(seconds, local)
        if server is not None:
            self.server.add(seconds, server)


@dataclass
class AccountTiming:
    """The batch poller's policy for the live tasks of one account.

    Holds what has been learned about processing speed and when the last task was seen to
    end; says whether another task fits in the queue before its 24 h life runs short, and
    when to ask about each task (through ``schedule``).
    """

    schedule: PollSchedule
    learned: Learned = field(default_factory=Learned)
    last_end_seen: float | None = None

    def service_seconds(self, output_seconds: float) -> float:
        """Predicted service seconds to render ``output_seconds`` of video."""
        predicted = self.learned.server.predict(output_seconds)
        if predicted is None:
            return _DEFAULT_SECONDS_PER_OUTPUT * output_seconds
        return predicted

    def expected_length(self, output_seconds: float) -> float | None:
        """Predicted running time on our clock; None before the first task taught us."""
        return self.learned.local.predict(output_seconds)

    def service_per_local(self, output_seconds: float) -> float:
        """Service seconds per second of our clock, as both fits tell (1 until they do).

        The real service's clock runs at ours; the emulator's may run faster. Task lifetimes
        are service time, so a wait on our clock is scaled by this before it is compared.
        """
        server = self.learned.server.predict(output_seconds)
        local = self.learned.local.predict(output_seconds)
        if server is None or local is None or local <= 0:
            return 1.0
        return server / local

    def admits(self, live: Iterable[float], new: float, *, budget: float) -> bool:
        """Whether a task of ``new`` output seconds, queued behind tasks of ``live`` output
        seconds, would end within ``budget`` service seconds (always, with nothing ahead)."""
        ahead = list(live)
        if not ahead:
            return True
        return sum(self.service_seconds(s) for s in (*ahead, new)) < budget

    def submitted(self, p: Progress, now: float, *, alone: bool) -> None:
        """A task was submitted (or resumed) at ``now``; ``alone`` when none of ours is live."""
        p.submitted_at = p.submitted_at or now
        p.interval = 0.0
        first = self.schedule.queued_interval if not alone else None
        p.next_poll = now + (first if first is not None else self.schedule.min_interval)

    def pending(self, p: Progress, now: float, *, ours_running: bool) -> None:
        """The task answered PENDING."""
        self.schedule.pending(p, now, behind_ours=ours_running)

    def running(self, p: Progress, now: float, *, output_seconds: float) -> bool:
        """The task answered RUNNING; True when it just started."""
        expected = self.expected_length(output_seconds)
        return self.schedule.running(p, now, expected=expected, last_end_seen=self.last_end_seen)

    def ended(self, p: Progress, now: float) -> float:
        """The task answered with a final state at ``now``: when it most likely ended."""
        self.last_end_seen = now
        return (p.last_running + now) / 2 if p.last_running is not None else now

    def promote(self, p: Progress, *, ended: float, now: float, output_seconds: float) -> None:
        """``p`` is our oldest queued task and the one ahead ended: it runs from then."""
        expected = self.expected_length(output_seconds)
        self.schedule.promoted(p, ended=ended, now=now, expected=expected)

    def learn(
        self, p: Progress, *, output_seconds: float, now: float, server_seconds: float | None
    ) -> None:
        """Record how long a SUCCEEDED task of ``output_seconds`` took."""
        if not output_seconds:
            return
        local = None
        # A task from an earlier run may have started long before we first saw it; one never
        # seen RUNNING gives no end worth learning from.
        if p.started_at is not None and not p.resumed and p.last_running is not None:
            # It ended after the last RUNNING answer. When that answer is old (we waited
            # long), the middle of the gap would teach our own waiting as the task's length,
            # and every next wait would grow: lean on the side we saw instead.
            gap = now - p.last_running
            end = p.last_running + min(gap, 2 * self.schedule.min_interval) / 2
            local = end - p.started_at
        self.learned.observe(output_seconds, local, server_seconds)
