"""The scheduler as pure logic: one slot per account and model, FIFO, exact virtual timeline."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from emoclient.emulator._state import Account, Fate, Scheduler, Task, TaskInputs

TTL = 1000.0
MODELS = ("emo-v1", "emoji-v1")


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


def _task(number: int, at: float, seconds: float, model: str = "emo-v1") -> Task:
    inputs = TaskInputs(
        image=b"portrait",
        audio=b"speech",
        ext_bbox=(0, 0, 1, 1),
        output_seconds=seconds,
        video_ratio="1:1",
    )
    return Task(task_id=f"t{number}", account="a", model=model, submit_time=at, inputs=inputs)


def _most_at_once(intervals: list[tuple[float, float | None]]) -> int:
    """The most half-open intervals [start, end) overlapping at one instant (end None: open)."""
    events = [(start, 1) for start, _ in intervals]
    events += [(end, -1) for _, end in intervals if end is not None]
    now = most = 0
    for _, delta in sorted(events):  # at one instant, ends (-1) sort before starts
        now += delta
        most = max(most, now)
    return most


operations = st.lists(
    st.tuples(
        st.sampled_from(["submit", "cancel", "wait"]),
        st.sampled_from(MODELS),
        # Strictly increasing times: a submit and a cancel at one instant have no order.
        st.floats(min_value=0.001, max_value=400, allow_nan=False),
        st.integers(min_value=1, max_value=60),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_one_slot_per_model_fifo_without_overlap(ops: list[tuple[str, str, float, int]]) -> None:
    scheduler = _scheduler([])
    account = Account(label="a")
    now = 0.0
    for number, (op, model, gap, seconds) in enumerate(ops):
        now += gap
        queue = account.model(model).queue
        if op == "submit":
            scheduler.submit(account, _task(number, now, seconds, model), now)
        elif op == "cancel" and queue:
            scheduler.cancel(account, queue[-1], now)
        else:
            scheduler.advance(account, now)
        for name in MODELS:
            assert sum(t.status == "RUNNING" and t.model == name for t in account.tasks) <= 1
    for model in MODELS:
        _check_one_model(account, model)
    _check_peaks(account, account.tasks, account.load.in_flight.peak, account.load.running.peak)


def _check_one_model(account: Account, model: str) -> None:
    usage = account.model(model)
    ran = [t for t in account.tasks if t.model == model and t.scheduled_time is not None]
    assert [t.submit_time for t in ran] == sorted(t.submit_time for t in ran)
    for earlier, later in itertools.pairwise(ran):
        assert earlier.end_time is not None
        assert later.scheduled_time is not None
        assert later.scheduled_time >= earlier.end_time
        assert later.scheduled_time < later.submit_time + TTL
    ended = [t for t in ran if t.end_time is not None]
    if ended:
        span = (ended[-1].end_time or 0.0) - (ran[0].scheduled_time or 0.0)
        assert usage.busy_seconds <= span + 1e-9
    tasks = [t for t in account.tasks if t.model == model]
    _check_peaks(account, tasks, usage.load.in_flight.peak, usage.load.running.peak)
    assert usage.load.running.peak <= 1


def _check_peaks(account: Account, tasks: list[Task], in_flight: int, running: int) -> None:
    assert in_flight == _most_at_once([(t.submit_time, t.end_time) for t in tasks])
    started = [(t.scheduled_time, t.end_time) for t in tasks if t.scheduled_time is not None]
    assert running == _most_at_once([(start, end) for start, end in started if start is not None])


def test_emo_and_emoji_of_one_account_run_at_once() -> None:
    scheduler = _scheduler([])
    account = Account(label="a")
    emo, emoji, emo_next = _task(1, 0.0, 5), _task(2, 1.0, 5, "emoji-v1"), _task(3, 2.0, 5)
    for task in (emo, emoji, emo_next):
        scheduler.submit(account, task, task.submit_time)
    assert [t.status for t in (emo, emoji, emo_next)] == ["RUNNING", "RUNNING", "PENDING"]
    scheduler.advance(account, 100.0)
    assert (emoji.scheduled_time, emoji.end_time) == (1.0, 16.0)
    assert (emo_next.scheduled_time, emo_next.end_time) == (15.0, 30.0)
    assert (account.load.running.peak, account.load.in_flight.peak) == (2, 3)
    assert (account.load.running.now, account.load.in_flight.now) == (0, 0)
    emo_usage = account.model("emo-v1")
    assert (emo_usage.load.running.peak, emo_usage.load.in_flight.peak) == (1, 2)
    assert emo_usage.busy_seconds == 30.0


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
