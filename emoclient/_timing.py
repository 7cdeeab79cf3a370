"""When to ask about a task again, and what has been learned about how long tasks take.

Pure, no I/O: every function takes the time as a plain number. One :class:`PollSchedule`
serves ``EmoClient.wait()`` (one task) and the batch's poller (all live tasks of an account,
through :class:`AccountTiming`), so both ask the same way:
- a queued (PENDING) task is asked about at growing intervals, or rarely when it waits behind
  another task of ours that runs;
- a RUNNING task whose length can be predicted is first asked about a little before its
  expected end (so the estimate is corrected both ways, not only ever upwards), then in short
  steps; without a prediction, at intervals that grow fast to find the scale.

Lengths are learned from the service's own timestamps (a task's ``scheduled_time`` to its
``end_time``), never from how long we happened to wait: :class:`ServiceClock` maps those
timestamps onto our clock (the emulator's may run faster than ours), so a task's start and
end are dated exactly and its expected length on our clock is the service's over the rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from emoclient._models import TaskStatus

__all__ = ["AccountTiming", "Fit", "Learned", "PollSchedule", "Progress", "ServiceClock"]

# Guess of processing seconds per output second until the first task teaches us better.
_DEFAULT_SECONDS_PER_OUTPUT = 10.0
# Output seconds assumed for a task whose length is unknown, until the service reports some.
_DEFAULT_OUTPUT_SECONDS = 10.0


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
    sent_at: float | None = None  # when its submit was sent (this run's submits only)
    paired: bool = False  # its submit_time was given to the ServiceClock


@dataclass(frozen=True)
class PollSchedule:
    """Poll intervals: ``min_interval`` growing by ``growth`` up to ``max_interval``.

    ``queued_interval`` is used for a task queued behind another running task of the same
    caller (None: back off as usual). A RUNNING task of ``expected`` seconds is first asked
    about at ``early`` times its length after its start, then every ``step`` times its length
    (at least ``min_interval``), growing. ``probe_growth`` is the growth while no length is
    known, up to a third of ``max_interval`` (the task may end any moment: a video waiting to
    be noticed costs more than a query; the official SDK asks every 5 s then).
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
        started_at: float | None = None,
    ) -> bool:
        """The task answered RUNNING at ``now``: set ``p.next_poll``; True if it just started.

        ``expected`` is its predicted running time; ``started_at`` its start when the service
        dated it, else ``last_end_seen`` (when the task ahead of it was seen to end: the slot
        passes on at once) helps to estimate it.
        """
        started = p.status is not TaskStatus.RUNNING
        if started:
            p.status = TaskStatus.RUNNING
            p.started_at = start_estimate(p, now, last_end_seen)
            p.interval = 0.0
        if started_at is not None:
            p.started_at = started_at
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
        if expected is None:
            p.interval = min(p.interval, max(self.min_interval, self.max_interval / 3))
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

    def mean_seconds(self) -> float | None:
        """The (recency-weighted) mean clip length seen; None before any sample."""
        return self.sum_d / self.n if self.n else None

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


def _rate_bounds(
    one: tuple[float, float, float], two: tuple[float, float, float]
) -> tuple[float, float]:
    """Bounds on service seconds per second of ours from two (service, sent, received)."""
    if two[0] < one[0]:
        one, two = two, one
    service = two[0] - one[0]
    if service <= 0:
        return 0.0, math.inf
    widest, narrowest = two[2] - one[1], two[1] - one[2]
    low = service / widest if widest > 0 else math.inf  # inf: impossible, the caller resets
    high = service / narrowest if narrowest > 0 else math.inf
    return low, high


@dataclass
class ServiceClock:
    """The service's clock mapped onto ours, learned from when our submits were answered.

    A task's ``submit_time`` (the service's clock) falls between when we sent its submit and
    when its answer came (ours). Two such windows bound the rate (service seconds per second
    of ours: 1 for the real service, more for an emulator running faster); the tightest
    window pins the offset. The map is used once the rate is known within ``tolerance``.
    Service times are plain seconds (e.g. epoch seconds of the answers' timestamps).
    """

    tolerance: float = 0.05
    low: float = 0.0
    high: float = math.inf
    first: tuple[float, float, float] | None = None
    anchor: tuple[float, float, float] | None = None

    def add(self, service: float, sent: float, received: float) -> None:
        """A submit sent at ``sent`` and answered at ``received`` was stamped ``service``."""
        if received < sent:
            return
        point = (service, sent, received)
        if self.first is None or self.anchor is None:
            self.first = self.anchor = point
            return
        low, high = self.low, self.high
        for ref in (self.first, self.anchor):
            lo, hi = _rate_bounds(ref, point)
            low, high = max(low, lo), min(high, hi)
        if low > high:  # the windows disagree (the service's clock jumped): start again
            self.low, self.high, self.first, self.anchor = 0.0, math.inf, point, point
            return
        self.low, self.high = low, high
        if received - sent <= self.anchor[2] - self.anchor[1]:
            self.anchor = point

    @property
    def rate(self) -> float | None:
        """Service seconds per second of ours, once known within the tolerance."""
        if self.low <= 0 or math.isinf(self.high):
            return None
        middle = (self.low + self.high) / 2
        return middle if self.high - self.low <= self.tolerance * middle else None

    def to_local(self, service: float | None) -> float | None:
        """The service's time ``service`` on our clock; None while the map is not known."""
        rate = self.rate
        if service is None or rate is None or self.anchor is None:
            return None
        at, sent, received = self.anchor
        return (sent + received) / 2 + (service - at) / rate


@dataclass
class AccountTiming:
    """The batch poller's policy for the live tasks of one account.

    Holds what has been learned about processing speed, the map of the service's clock onto
    ours, and when the last task was seen to end; says whether another task fits in the queue
    before its 24 h life runs short, and when to ask about each task (through ``schedule``).
    A task's ``output_seconds`` may be None (EMO audio given as a URL whose header did not
    tell): the mean length of the videos the service made so far stands in for it.
    """

    schedule: PollSchedule
    learned: Learned = field(default_factory=Learned)
    clock: ServiceClock = field(default_factory=ServiceClock)
    last_end_seen: float | None = None

    def seconds(self, output_seconds: float | None) -> float:
        """``output_seconds``, or the mean the service reported when it is unknown."""
        if output_seconds:
            return output_seconds
        seen = self.learned.server.mean_seconds() or self.learned.local.mean_seconds()
        return seen or _DEFAULT_OUTPUT_SECONDS

    def service_seconds(self, output_seconds: float | None) -> float:
        """Predicted service seconds to render ``output_seconds`` of video."""
        seconds = self.seconds(output_seconds)
        predicted = self.learned.server.predict(seconds)
        if predicted is None:
            return _DEFAULT_SECONDS_PER_OUTPUT * seconds
        return predicted

    def expected_length(self, output_seconds: float | None) -> float | None:
        """Predicted running time on our clock; None before the first task taught us.

        The service's own length over the clock's rate once both are known; before that, what
        was seen on our clock."""
        seconds = self.seconds(output_seconds)
        server, rate = self.learned.server.predict(seconds), self.clock.rate
        if server is not None and rate is not None:
            return server / rate
        return self.learned.local.predict(seconds)

    def service_per_local(self, output_seconds: float | None) -> float:
        """Service seconds per second of our clock (1 until known).

        The real service's clock runs at ours; the emulator's may run faster. Task lifetimes
        are service time, so a wait on our clock is scaled by this before it is compared.
        """
        if self.clock.rate is not None:
            return self.clock.rate
        seconds = self.seconds(output_seconds)
        server = self.learned.server.predict(seconds)
        local = self.learned.local.predict(seconds)
        if server is None or local is None or local <= 0:
            return 1.0
        return server / local

    def admits(self, live: Iterable[float | None], new: float | None, *, budget: float) -> bool:
        """Whether a task of ``new`` output seconds, queued behind tasks of ``live`` output
        seconds, would end within ``budget`` service seconds (always, with nothing ahead)."""
        ahead = list(live)
        if not ahead:
            return True
        return sum(self.service_seconds(s) for s in (*ahead, new)) < budget

    def submitted(self, p: Progress, now: float, *, alone: bool, sent: float | None = None) -> None:
        """A task was submitted (or resumed) at ``now``; ``alone`` when none of ours is live.

        ``sent``: when its submit went out (this run's submits), to map the service's clock."""
        p.submitted_at = p.submitted_at or now
        p.sent_at = sent
        p.interval = 0.0
        first = self.schedule.queued_interval if not alone else None
        p.next_poll = now + (first if first is not None else self.schedule.min_interval)

    def answered(self, p: Progress, *, submit_time: float | None) -> None:
        """An answer about ``p``'s task gave its ``submit_time`` (service clock)."""
        if submit_time is not None and p.sent_at is not None and not p.paired:
            p.paired = True
            self.clock.add(submit_time, p.sent_at, p.submitted_at)

    def pending(self, p: Progress, now: float, *, ours_running: bool) -> None:
        """The task answered PENDING."""
        self.schedule.pending(p, now, behind_ours=ours_running)

    def running(
        self,
        p: Progress,
        now: float,
        *,
        output_seconds: float | None,
        scheduled: float | None = None,
    ) -> bool:
        """The task answered RUNNING (``scheduled``: its start, service clock); True when it
        just started."""
        return self.schedule.running(
            p,
            now,
            expected=self.expected_length(output_seconds),
            last_end_seen=self.last_end_seen,
            started_at=self._local(scheduled, p, now),
        )

    def ended(self, p: Progress, now: float, *, end: float | None = None) -> float:
        """The task answered with a final state at ``now`` (``end``: when, on the service's
        clock): when it ended on ours."""
        self.last_end_seen = now
        mapped = self._local(end, p, now)
        if mapped is not None:
            return mapped
        return (p.last_running + now) / 2 if p.last_running is not None else now

    def promote(
        self, p: Progress, *, ended: float, now: float, output_seconds: float | None
    ) -> None:
        """``p`` is our oldest queued task and the one ahead ended: it runs from then."""
        expected = self.expected_length(output_seconds)
        self.schedule.promoted(p, ended=ended, now=now, expected=expected)

    def learn(
        self,
        p: Progress,
        *,
        output_seconds: float,
        now: float,
        server_seconds: float | None,
    ) -> None:
        """Record how long a SUCCEEDED task of ``output_seconds`` took (``server_seconds``:
        from its ``scheduled_time`` to its ``end_time``)."""
        if not output_seconds:
            return
        local = None
        rate = self.clock.rate
        if server_seconds is not None and rate is not None:
            local = server_seconds / rate
        # A task from an earlier run may have started long before we first saw it; one never
        # seen RUNNING gives no end worth learning from.
        elif p.started_at is not None and not p.resumed and p.last_running is not None:
            # It ended after the last RUNNING answer. When that answer is old (we waited
            # long), the middle of the gap would teach our own waiting as the task's length,
            # and every next wait would grow: lean on the side we saw instead.
            gap = now - p.last_running
            end = p.last_running + min(gap, 2 * self.schedule.min_interval) / 2
            local = end - p.started_at
        self.learned.observe(output_seconds, local, server_seconds)

    def _local(self, service: float | None, p: Progress, now: float) -> float | None:
        """A service time of ``p``'s task on our clock, kept after its submit and by ``now``."""
        local = self.clock.to_local(service)
        if local is None:
            return None
        return min(max(local, p.sent_at if p.sent_at is not None else -math.inf), now)
