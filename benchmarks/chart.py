"""The PNG of the makespan benchmark: the running slot's timeline, one row per arm.

Each row is one arm's account on the emulator: a bar per task while it held the running slot
(colour by job, grey for a task no delivered video came from), a red line at the ideal makespan
(the jobs' processing back to back) and a black tick where the arm's last video reached the
disk. Drawn with Pillow, which the dev venv has already (the emulator's extra): no plotting
library to install.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (188, 189, 34),
    (23, 190, 207),
]
GREY = (170, 170, 170)
LEFT, RIGHT, TOP, ROW, BOTTOM = 250, 30, 56, 30, 56


def _step(span: float) -> float:
    """A round tick step giving about eight ticks over ``span``."""
    raw = span / 8 or 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def draw_timelines(timelines: list[dict[str, Any]], path: Path, *, title: str) -> None:
    """Write the chart of ``timelines`` (rows: label, ideal, makespan, tasks) to ``path``."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=13)
    width = 1200
    height = TOP + ROW * len(timelines) + BOTTOM
    image = Image.new("RGB", (width, height), "white")
    pen = ImageDraw.Draw(image)
    ends = [end for row in timelines for _, _, end in row["tasks"]]
    ends += [max(row["ideal"], row["makespan"]) for row in timelines]
    span = max(ends, default=1.0) * 1.02
    scale = (width - LEFT - RIGHT) / span

    def x(seconds: float) -> float:
        return LEFT + max(0.0, seconds) * scale

    pen.text((10, 10), title, fill="black", font=font)
    pen.text(
        (10, 28),
        "bars: a task holding the running slot (colour = job); red: the ideal makespan; "
        "black: the last video on disk",
        fill=(90, 90, 90),
        font=font,
    )
    for i, row in enumerate(timelines):
        top = TOP + i * ROW
        if i % 2:
            pen.rectangle((0, top, width, top + ROW), fill=(246, 246, 246))
        pen.text((10, top + 8), row["label"], fill="black", font=font)
        for job, start, end in row["tasks"]:
            colour = PALETTE[int(job) % len(PALETTE)] if job >= 0 else GREY
            pen.rectangle((x(start), top + 6, max(x(start) + 1, x(end) - 1), top + ROW - 6), colour)
        pen.line((x(row["ideal"]), top + 2, x(row["ideal"]), top + ROW - 2), (214, 39, 40), 2)
        pen.line((x(row["makespan"]), top + 2, x(row["makespan"]), top + ROW - 2), "black", 3)
    axis = TOP + ROW * len(timelines) + 4
    pen.line((LEFT, axis, width - RIGHT, axis), "black", 1)
    step = _step(span)
    tick = 0.0
    while tick <= span:
        pen.line((x(tick), axis, x(tick), axis + 5), "black", 1)
        pen.text((x(tick) - 10, axis + 8), f"{tick:g}", fill="black", font=font)
        tick += step
    pen.text((LEFT, axis + 28), "service seconds since the arm started", fill="black", font=font)
    image.save(path, format="PNG", optimize=True)
