"""The poll schedule behind EmoClient.wait()."""

from __future__ import annotations

import pytest
from client_support import make_client

from emoclient import TaskExpiredError
from emoclient._models import TaskStatus
from emoclient._polling import PollSchedule
from emoclient.emulator import RunningEmulator

P, R = TaskStatus.PENDING, TaskStatus.RUNNING


def test_backs_off_to_the_cap_and_resets_on_change() -> None:
    s = PollSchedule(min_interval=2.0, max_interval=15.0, growth=2.0)
    delays = [s.next_delay(P, now=0.0) for _ in range(5)]
    assert delays == [2.0, 4.0, 8.0, 15.0, 15.0]
    assert s.next_delay(R, now=100.0) == 2.0


def test_running_task_polled_near_its_expected_end() -> None:
    s = PollSchedule(min_interval=3.0, max_interval=15.0, expected_seconds=100.0)
    assert s.next_delay(P, now=0.0) == 3.0
    assert s.next_delay(R, now=10.0) == pytest.approx(100.0)
    # Past the expected end, the ordinary back-off takes over again.
    assert s.next_delay(R, now=111.0) == pytest.approx(4.5)


def test_bad_intervals_rejected() -> None:
    with pytest.raises(ValueError, match="min_interval"):
        PollSchedule(min_interval=0.0)
    with pytest.raises(ValueError, match="min_interval"):
        PollSchedule(min_interval=5.0, max_interval=1.0)


async def test_client_poll_interval_above_the_default_cap(emulator: RunningEmulator) -> None:
    # poll_interval=20 with the default max_poll_interval=15 means "poll every 20 s".
    async with make_client(emulator, poll_interval=20.0, max_poll_interval=15.0) as client:
        with pytest.raises(TaskExpiredError):
            await client.wait("never-submitted")
