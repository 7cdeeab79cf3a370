"""``python -m benchmarks``: run every ``bench_*.py``, collect their JSON, write the report.

Each script runs as a subprocess of this interpreter (a missing or failing one is reported,
never fatal to the rest) with ``--json PATH`` (and ``--quick`` when asked). The harness writes

- ``benchmarks/results.json``: the machine, the command, and every script's document;
- ``benchmarks/README.md``: the tables in Markdown between the results markers, regenerated
  each run, with the machine it ran on and the command that reproduces it;
- ``benchmarks/makespan.png``: the running slot's timeline per arm (from bench_makespan.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"
#: The suite's scripts, in the report's order; a listed one that is absent is reported.
EXPECTED = ("makespan", "store", "download", "scale", "startup", "polling")
CHART = "makespan.png"


@dataclass
class Outcome:
    """What became of one benchmark script."""

    name: str
    status: str  # "ok", "failed" or "missing"
    seconds: float = 0.0
    message: str = ""
    document: dict[str, Any] | None = None
    output: str = field(default="", repr=False)


def discover(folder: Path) -> list[Path]:
    """The benchmark scripts of ``folder``: every ``bench_*.py``, in the report's order."""
    scripts = {path.stem.removeprefix("bench_"): path for path in folder.glob("bench_*.py")}
    known = [scripts[name] for name in EXPECTED if name in scripts]
    return known + sorted(path for name, path in scripts.items() if name not in EXPECTED)


def validate(document: Any, name: str) -> list[str]:
    """What is wrong with a script's results document (empty when it follows the interface)."""
    if not isinstance(document, dict):
        return ["the JSON is not an object"]
    problems = []
    if document.get("benchmark") != name:
        problems.append(f"'benchmark' is {document.get('benchmark')!r}, not {name!r}")
    if not isinstance(document.get("title"), str):
        problems.append("'title' is not a string")
    if not isinstance(document.get("notes", []), list):
        problems.append("'notes' is not a list")
    if not isinstance(document.get("extra", {}), dict):
        problems.append("'extra' is not an object")
    tables = document.get("tables")
    if not isinstance(tables, list):
        return [*problems, "'tables' is not a list"]
    for i, table in enumerate(tables):
        columns = table.get("columns") if isinstance(table, dict) else None
        rows = table.get("rows") if isinstance(table, dict) else None
        if not isinstance(columns, list) or not isinstance(rows, list):
            problems.append(f"table {i} lacks 'columns' or 'rows' lists")
            continue
        for j, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(columns):
                problems.append(f"table {i}, row {j}: not a list of {len(columns)} cells")
    return problems


def run_script(
    script: Path, *, quick: bool, timeout: float, workdir: Path, echo: bool = True
) -> Outcome:
    """Run one script with the interface's options; its outcome, never an exception."""
    name = script.stem.removeprefix("bench_")
    target = workdir / f"{name}.json"
    command = [sys.executable, str(script), "--json", str(target)]
    command += ["--quick"] if quick else []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        process.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    lines = []
    assert process.stdout is not None
    with process.stdout:
        for line in process.stdout:  # shown as it comes: a full run takes a while
            if echo:
                print(line, end="", flush=True)
            lines.append(line)
    code = process.wait()
    timer.cancel()
    seconds = time.monotonic() - started
    output = "".join(lines)
    if killed.is_set():
        return Outcome(
            name, "failed", seconds, f"did not finish within {timeout:g} s", None, output
        )
    if code != 0:
        last = [line.strip() for line in lines if line.strip()][-1:]
        reason = last[0] if last else "no message"
        return Outcome(name, "failed", seconds, f"exit status {code}: {reason}", None, output)
    try:
        document = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return Outcome(name, "failed", seconds, f"no readable --json output: {exc}", None, output)
    problems = validate(document, name)
    if problems:
        return Outcome(name, "failed", seconds, "; ".join(problems), None, output)
    return Outcome(name, "ok", seconds, "", document, output)


def machine() -> dict[str, Any]:
    """The machine the run is on: CPU model, cores, Python, OS and load average."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    return {
        "cpu": model,
        "cores_usable": usable,
        "cores_online": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(table: dict[str, Any]) -> str:
    """One results table as GitHub Markdown."""
    columns = [_cell(c) for c in table["columns"]]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table["rows"]]
    return "\n".join(lines)


def render(report: dict[str, Any], outcomes: list[Outcome], chart: str | None) -> str:
    """The Markdown between the markers: when, where, how to reproduce, then every table."""
    m = report["machine"]
    load = " ".join(str(x) for x in m["load_average"])
    after = " ".join(str(x) for x in report["load_average_after"])
    lines = [
        f"Generated {report['generated']} in {report['seconds']:.0f} s by `{report['command']}` "
        f"(`make bench` runs the full suite).",
        "",
        f"Machine: {m['cpu']}, {m['cores_usable']} cores usable ({m['cores_online']} online); "
        f"{m['python']}; {m['os']}; load average {load} before, {after} after.",
    ]
    failed = [o for o in outcomes if o.status != "ok"]
    if failed:
        lines += ["", "Not measured in this run:", ""]
        lines += [f"- `bench_{o.name}.py`: {o.status}: {o.message}" for o in failed]
    for outcome in outcomes:
        if outcome.document is None:
            continue
        doc = outcome.document
        lines += ["", f"### {doc['title']}", ""]
        lines += [f"`benchmarks/bench_{outcome.name}.py`, {outcome.seconds:.0f} s."]
        if outcome.name == "makespan" and chart:
            lines += ["", f"![The running slot per arm]({chart})"]
        for table in doc["tables"]:
            lines += ["", f"**{_cell(table['title'])}**", "", markdown_table(table)]
        if doc.get("notes"):
            lines += [""] + [f"- {_cell(note)}" for note in doc["notes"]]
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """``text`` with what lies between the markers replaced (markers appended if absent)."""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        return f"{head}{BEGIN}\n{block}\n{END}{tail}"
    return f"{text.rstrip()}\n\n{BEGIN}\n{block}\n{END}\n"


def _chart(outcomes: list[Outcome], path: Path) -> tuple[str | None, str]:
    doc = next((o.document for o in outcomes if o.name == "makespan" and o.document), None)
    timelines = (doc or {}).get("extra", {}).get("timelines")
    if not timelines:
        return None, "no timelines (bench_makespan.py did not run)"
    from benchmarks.chart import draw_timelines

    try:
        draw_timelines(timelines, path, title=doc["tables"][0]["title"] if doc else "")
    except ImportError as exc:  # Pillow missing: the tables still stand
        return None, f"no chart: {exc} (install Pillow: pip install '.[emulator]')"
    return path.name, ""


def run(args: argparse.Namespace) -> int:
    """Run the suite; 0 when every script that is here succeeded (a missing one is reported)."""
    folder = Path(args.folder)
    scripts = discover(folder)
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    present = {s.stem.removeprefix("bench_") for s in discover(folder)}
    started = time.monotonic()
    info = machine()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as tmp:
        for script in scripts:
            print(f"== {script.name} ...", flush=True)
            outcome = run_script(script, quick=args.quick, timeout=args.timeout, workdir=Path(tmp))
            print(
                f"== {script.name}: {outcome.status} in {outcome.seconds:.0f} s {outcome.message}"
            )
            outcomes.append(outcome)
    if not args.only:
        missing = [name for name in EXPECTED if name not in present]
        outcomes += [Outcome(n, "missing", message="not in this checkout") for n in missing]
    command = "python -m benchmarks" + (" --quick" if args.quick else "")
    command += "".join(f" --only {name}" for name in args.only or [])
    report: dict[str, Any] = {
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": time.monotonic() - started,
        "command": command,
        "machine": info,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    chart, why = _chart(outcomes, folder / CHART)
    if why and any(o.name == "makespan" and o.status != "missing" for o in outcomes):
        print(f"chart: {why}")
    report["benchmarks"] = [
        {"name": o.name, "status": o.status, "seconds": round(o.seconds, 1), "message": o.message,
         "result": o.document}
        for o in outcomes
    ]  # fmt: skip
    Path(args.results).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    readme = Path(args.readme)
    text = readme.read_text(encoding="utf-8") if readme.exists() else "# Benchmarks\n"
    readme.write_text(replace_block(text, render(report, outcomes, chart)), encoding="utf-8")
    print(f"wrote {args.results} and {args.readme}" + (f" and {folder / chart}" if chart else ""))
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The harness's options."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Run the benchmark suite and write its report."
    )
    parser.add_argument("--quick", action="store_true", help="each script's quick variant")
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="run only bench_NAME.py (repeatable)"
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per script")
    parser.add_argument("--folder", default=str(HERE), help=argparse.SUPPRESS)
    parser.add_argument("--results", default=str(HERE / "results.json"), help="the JSON report")
    parser.add_argument("--readme", default=str(HERE / "README.md"), help="the Markdown report")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks``."""
    return run(parse(argv))
