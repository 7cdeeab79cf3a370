"""Start-up: how long a fresh interpreter takes to import emoclient and to answer --help.

Each command runs in a new process of the same interpreter, interleaved round by round (so a
busy moment of the machine hits every command alike), after one untimed warm-up round that
fills the OS's file cache. Printed per command: the median and the fastest of ``--repeat``
wall times, and the median's ratio to ``import aiohttp`` (emoclient's one heavy dependency)
and to ``python -c pass``.

The target (issue 11): ``import emoclient`` within 1.3x ``import aiohttp``; ``emoclient --help``
within 0.4 s.

    python benchmarks/bench_startup.py            # 7 runs each, about 15 s
    python benchmarks/bench_startup.py --quick    # 7 runs each too: it is quick already
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import benchjson

COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import aiohttp": [sys.executable, "-c", "import aiohttp"],
    "import emoclient": [sys.executable, "-c", "import emoclient"],
    "from emoclient import EmoClient": [sys.executable, "-c", "from emoclient import EmoClient"],
    "emoclient --help": [sys.executable, "-m", "emoclient", "--help"],
}


def _cli() -> list[str]:
    """The installed ``emoclient`` script when it is this interpreter's, else ``-m emoclient``."""
    script = Path(sys.executable).with_name("emoclient")
    if script.exists():
        return [str(script), "--help"]
    found = shutil.which("emoclient")
    return [found, "--help"] if found else [sys.executable, "-m", "emoclient", "--help"]


def _time(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def main(args: argparse.Namespace) -> None:
    commands = dict(COMMANDS)
    commands["emoclient --help"] = _cli()
    # The emoclient of this checkout, as the benchmarks' other scripts see it.
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():  # warm-up: file cache and .pyc files
        _time(command, env)
    for _ in range(args.repeat):
        for name, command in commands.items():
            times[name].append(_time(command, env))
    medians = {name: statistics.median(values) for name, values in times.items()}
    rows = [
        [
            name,
            round(medians[name] * 1000),
            round(min(times[name]) * 1000),
            round(medians[name] / medians["import aiohttp"], 2),
            round(medians[name] / medians["python -c pass"], 2),
        ]
        for name in commands
    ]
    columns = ["command", "median ms", "fastest ms", "x import aiohttp", "x python -c pass"]
    title = f"Start-up of a fresh process, medians of {args.repeat} runs, interleaved"
    notes = [
        f"emoclient --help ran as {' '.join(Path(c).name for c in commands['emoclient --help'])}",
        "targets: import emoclient <= 1.3x import aiohttp; emoclient --help <= 0.4 s",
    ]
    benchjson.emit(
        args.json,
        benchmark="startup",
        title="Start-up times",
        tables=[benchjson.table(title, columns, rows)],
        notes=notes,
        extra={"seconds": times},
    )


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchjson.add_arguments(parser, "the same 7 runs (start-up is quick to measure)")
    parser.add_argument("--repeat", type=int, default=7)
    return parser.parse_args()


if __name__ == "__main__":
    main(_parse())
