"""The status line drawn with `rich` (the ``rich`` extra) when it is installed and stderr is a
terminal: a real progress bar, the failures in red, lines printed above it by rich's own
live display. Everything it shows comes from `ProgressView` (the same counts, ETA and lines);
without rich, or off a terminal, the plain status line and the plain and JSON modes stay.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, TextIO

from emoclient._cli._progress import ProgressView

__all__ = ["RichProgressView", "rich_available"]

_ALARM = ("failed", "expired", "invalid", "stall")


def rich_available(err: TextIO) -> bool:
    """Whether to draw with rich: installed, ``err`` a terminal, not switched off
    (``EMOCLIENT_PROGRESS=plain``)."""
    if os.environ.get("EMOCLIENT_PROGRESS", "").strip().lower() == "plain":
        return False
    return err.isatty() and importlib.util.find_spec("rich") is not None


class RichProgressView(ProgressView):
    """`ProgressView` in TTY mode, drawn by a `rich.live.Live` display on ``err``."""

    def __init__(self, **kwargs: Any) -> None:
        from rich.console import Console
        from rich.live import Live

        super().__init__(**{**kwargs, "mode": "tty"})
        self._console = Console(file=self._err, highlight=False, soft_wrap=False)
        self._live = Live(
            console=self._console,
            get_renderable=self._renderable,
            refresh_per_second=5,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._started = False

    def _start(self) -> None:
        # On the first thing to show, not when made: a run that stops before its first
        # event (a refused key) leaves the terminal as it was.
        if not self._started:
            self._started = True
            self._live.start()

    def _renderable(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        total = max(self.total or 0, sum(self.counts.values()))
        done = sum(self.counts[state] for state in ("done", "failed", "expired", "invalid"))
        width = max(self._console.width - 34, 20)
        text = Text()
        for i, part in enumerate(self.status_line(width=width, bar=False).split(" · ")):
            if i:
                text.append(" · ", style="dim")
            alarm = any(word in part for word in _ALARM)
            text.append(part, style="bold red" if alarm else "cyan" if "ETA" in part else "")
        grid = Table.grid(padding=(0, 1))
        grid.add_row(ProgressBar(total=total or None, completed=done, width=30), text)
        return grid

    # The live display redraws itself; these keep the base class's contract.

    def refresh(self, *, force: bool = False) -> None:
        self._start()
        if force:
            self._live.refresh()

    def clear_line(self) -> None:
        pass

    def _print(self, text: str) -> None:
        self._start()
        self._console.print(text, markup=False, highlight=False)

    def log_text(self, text: str) -> None:
        self._start()
        self._console.print(text.rstrip("\n"), markup=False, highlight=False)

    def close(self) -> None:
        if self._started:
            self._live.refresh()
            self._live.stop()
            self._started = False
