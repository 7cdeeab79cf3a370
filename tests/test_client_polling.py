"""The poll schedule behind EmoClient.wait()."""

from __future__ import annotations

import pytest
from client_support import make_client

from emoclient import TaskExpiredError
from emoclient._models import TaskStatus
from emoclient._timing import PollSchedule, Progress
from emoclient.emulator import RunningEmulator

P, R = TaskStatus.PENDING, TaskStatus.RUNNING


def _delays(schedule: PollSchedule, answers: list[tuple[TaskStatus, float]]) -> list[float]:
    progress = Progress()
    delays = []
    for status, now in answers:
        if status is R:
            schedule.running(progress, now, expected=None)
        else:
            schedule.pending(progress, now)
        delays.append(progress.next_poll - now)
    return delays


def test_backs_off_to_the_cap_and_resets_on_change() -> None:
    s = PollSchedule(min_interval=2.0, max_interval=15.0, growth=2.0, probe_growth=2.0)
    assert _delays(s, [(P, 0.0)] * 5 + [(R, 100.0)]) == [2.0, 4.0, 8.0, 15.0, 15.0, 2.0]


def test_running_task_polled_near_its_expected_end_within_the_cap() -> None:
    capped = PollSchedule(min_interval=3.0, max_interval=15.0)
    q = Progress()
    capped.pending(q, 0.0)
    capped.running(q, 10.0, expected=100.0)
    assert q.next_poll == 25.0  # every wait is bounded by max_interval, whatever the guess
    s = PollSchedule(min_interval=3.0, max_interval=150.0)
    p = Progress()
    s.pending(p, 0.0)
    assert p.next_poll == 3.0
    # First seen RUNNING at 10 s: it started between 0 and 10 s (5 s, say); 100 s long.
    assert s.running(p, 10.0, expected=100.0)
    assert p.next_poll == pytest.approx(5.0 + 0.95 * 100.0)
    # Past the expected end, steps of 8 % of the length, growing.
    s.running(p, 111.0, expected=100.0)
    assert p.next_poll - 111.0 == pytest.approx(8.0)
    s.running(p, 119.0, expected=100.0)
    assert p.next_poll - 119.0 == pytest.approx(12.0)


def test_bad_intervals_rejected() -> None:
    with pytest.raises(ValueError, match="min_interval"):
        PollSchedule(min_interval=0.0)
    with pytest.raises(ValueError, match="min_interval"):
        PollSchedule(min_interval=5.0, max_interval=1.0)
    with pytest.raises(ValueError, match="growth"):
        PollSchedule(growth=0.5)


async def test_client_poll_interval_above_the_default_cap(emulator: RunningEmulator) -> None:
    # poll_interval=20 with the default max_poll_interval=15 means "poll every 20 s".
    async with make_client(emulator, poll_interval=20.0, max_poll_interval=15.0) as client:
        with pytest.raises(TaskExpiredError):
            await client.wait("never-submitted")
