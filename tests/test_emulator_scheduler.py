"""The per-account scheduler as pure logic: one slot, FIFO, exact virtual timeline."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from emoclient.emulator._state import Account, Fate, Scheduler, Task, TaskInputs

TTL = 1000.0


def _scheduler(started: list[Task]) -> Scheduler:
    def succeed() -> Fate:
        return "succeed"

    return Scheduler(
        processing_seconds=lambda task: 10.0 + task.inputs.output_seconds,
        choose_fate=succeed,
        task_ttl=TTL,
        needs_render=lambda task: False,
        on_start=started.append,
    )


def _task(number: int, at: float, seconds: float) -> Task:
    inputs = TaskInputs(
        image=b"portrait",
        audio=b"speech",
        ext_bbox=(0, 0, 1, 1),
        output_seconds=seconds,
        video_ratio="1:1",
    )
    return Task(task_id=f"t{number}", account="a", model="emo-v1", submit_time=at, inputs=inputs)


operations = st.lists(
    st.tuples(
        st.sampled_from(["submit", "cancel", "wait"]),
        st.floats(min_value=0, max_value=400, allow_nan=False),
        st.integers(min_value=1, max_value=60),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_one_slot_fifo_without_overlap(ops: list[tuple[str, float, int]]) -> None:
    scheduler = _scheduler([])
    account = Account(label="a")
    now = 0.0
    for number, (op, gap, seconds) in enumerate(ops):
        now += gap
        if op == "submit":
            scheduler.submit(account, _task(number, now, seconds), now)
        elif op == "cancel" and account.queue:
            scheduler.cancel(account, account.queue[-1], now)
        else:
            scheduler.advance(account, now)
        assert sum(t.status == "RUNNING" for t in account.tasks) <= 1
    ran = [t for t in account.tasks if t.scheduled_time is not None]
    assert [t.submit_time for t in ran] == sorted(t.submit_time for t in ran)
    for earlier, later in itertools.pairwise(ran):
        assert earlier.end_time is not None
        assert later.scheduled_time is not None
        assert later.scheduled_time >= earlier.end_time
        assert later.scheduled_time < later.submit_time + TTL
    ended = [t for t in ran if t.end_time is not None]
    if ended:
        span = (ended[-1].end_time or 0.0) - (ran[0].scheduled_time or 0.0)
        assert account.busy_seconds <= span + 1e-9


def test_next_task_starts_exactly_when_the_previous_ends() -> None:
    started: list[Task] = []
    scheduler = _scheduler(started)
    account = Account(label="a")
    first, second = _task(1, 0.0, 5), _task(2, 1.0, 5)
    scheduler.submit(account, first, 0.0)
    scheduler.submit(account, second, 1.0)
    scheduler.advance(account, 100.0)  # polled late: the timeline is still exact
    assert (first.scheduled_time, first.end_time) == (0.0, 15.0)
    assert (second.scheduled_time, second.end_time) == (15.0, 30.0)
    assert started == []  # no render needed, so no start hook


def test_queued_task_is_lost_when_its_id_expires_first() -> None:
    scheduler = _scheduler([])
    account = Account(label="a")
    long = _task(1, 0.0, 2000)
    late = _task(2, 1.0, 5)
    scheduler.submit(account, long, 0.0)
    scheduler.submit(account, late, 1.0)
    scheduler.advance(account, 5000.0)
    assert long.status == "SUCCEEDED"
    assert late.status == "UNKNOWN"
    assert late.scheduled_time is None


def test_every_ended_task_lets_go_of_its_inputs() -> None:
    scheduler = _scheduler([])
    account = Account(label="a")
    done, canceled, lost = (_task(n, 0.0, 2000 if n == 1 else 5) for n in (1, 2, 3))
    running = _task(4, 5000.0, 5)
    for task in (done, canceled, lost):
        scheduler.submit(account, task, 0.0)
    assert scheduler.cancel(account, canceled, 1.0)
    scheduler.advance(account, 5000.0)
    scheduler.submit(account, running, 5000.0)
    assert [t.status for t in account.tasks] == ["SUCCEEDED", "CANCELED", "UNKNOWN", "RUNNING"]
    for task in (done, canceled, lost):
        assert (task.inputs.image, task.inputs.audio) == (b"", None)
    assert (running.inputs.image, running.inputs.audio) == (b"portrait", b"speech")
