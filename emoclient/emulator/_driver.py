"""The background loop: moves tasks along the virtual clock and renders results off the loop."""

from __future__ import annotations

import math
import os
from functools import partial
from pathlib import Path

import anyio

from . import _render
from ._core import EmulatorState
from ._state import Task

#: Output sizes by EMO ratio (API.md §1.2); Emoji is always 1:1.
OUTPUT_SIZES = {"1:1": (512, 512), "3:4": (512, 704)}


def template_seconds(driven_id: str) -> float:
    """How many seconds the Emoji template ``driven_id`` lasts."""
    return float(_render.EMOJI_TEMPLATES[driven_id].duration)


def render_task(task: Task, out: Path) -> None:
    """Render ``task``'s MP4 to ``out`` (synchronous, CPU-bound: call it in a thread).

    PyAV and Pillow (the ``emulator`` extra) load only here, when a result is rendered.
    """
    inputs = task.inputs
    out.parent.mkdir(parents=True, exist_ok=True)
    if task.model == "emo-v1":
        size = OUTPUT_SIZES.get(inputs.video_ratio, (512, 512))
        _render.render_emo(inputs.image, inputs.ext_bbox, inputs.audio or b"", out, size=size)
    else:
        _render.render_emoji(inputs.image, inputs.ext_bbox, inputs.driven_id or "", out)


class Driver:
    """Wakes when the next task is due (in real time) or when something changed."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state
        self._renders = anyio.CapacityLimiter(max(1, os.cpu_count() or 1))

    async def run(self) -> None:
        """Run until cancelled."""
        state = self._state
        async with anyio.create_task_group() as tg:
            while True:
                wakeup = state.wakeup
                state.sync()
                while state.render_queue:
                    tg.start_soon(self._render, state.render_queue.pop(0))
                due = state.next_due()
                delay = None if due is None else state.clock.real_delay(due)
                with anyio.move_on_after(math.inf if delay is None else delay):
                    await wakeup.wait()

    async def _render(self, task: Task) -> None:
        out = self._state.data_dir / "results" / f"{task.task_id}.mp4"
        try:
            await anyio.to_thread.run_sync(partial(render_task, task, out), limiter=self._renders)
        except Exception as exc:  # a broken renderer fails the task, never the emulator
            task.render_error = f"The emulator could not render the result video: {exc!r}"
        else:
            task.result_path = out
        task.render_done_at = self._state.now()
        self._state.render_finished(task)
