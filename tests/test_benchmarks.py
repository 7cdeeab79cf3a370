"""The benchmark harness (``python -m benchmarks``) on tiny fake scripts, never the real ones."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks.harness import (
    BEGIN,
    END,
    EXPECTED,
    discover,
    markdown_table,
    parse,
    replace_block,
    run,
    run_script,
    validate,
)

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
import argparse, json
parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true")
parser.add_argument("--json")
args = parser.parse_args()
print("alpha table")
document = {
    "benchmark": "alpha",
    "title": "Alpha | the first",
    "tables": [{"title": "t", "columns": ["arm", "x"], "rows": [["a", 1.5], ["b|c", 2]]}],
    "notes": ["a note"],
    "extra": {"quick": args.quick},
}
if args.json:
    open(args.json, "w").write(json.dumps(document))
"""
FAILING = """
import sys
print("half a table")
sys.exit("bench_broken: the emulator would not start")
"""
WRONG = """
import argparse, json
parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true")
parser.add_argument("--json")
args = parser.parse_args()
open(args.json, "w").write(json.dumps({"benchmark": "wrong", "title": "t", "tables": "no"}))
"""


def _suite(folder: Path) -> None:
    for name, body in (("alpha", GOOD), ("broken", FAILING), ("wrong", WRONG)):
        (folder / f"bench_{name}.py").write_text(textwrap.dedent(body))
    (folder / "helper.py").write_text("raise SystemExit('not a benchmark')\n")


def test_discovery_finds_bench_scripts_in_the_reports_order(tmp_path: Path) -> None:
    _suite(tmp_path)
    (tmp_path / "bench_startup.py").write_text("")
    assert [p.name for p in discover(tmp_path)] == [
        "bench_startup.py",  # a script of the suite first, then the rest by name
        "bench_alpha.py",
        "bench_broken.py",
        "bench_wrong.py",
    ]


def test_a_run_collects_reports_failures_and_renders_markdown(tmp_path: Path) -> None:
    _suite(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# Benchmarks\n\nintro kept\n\n{BEGIN}\nold table\n{END}\n\nfooter kept\n")
    results = tmp_path / "results.json"
    options = ["--quick", "--folder", str(tmp_path), "--results", str(results)]
    options += ["--readme", str(readme)]
    assert run(parse(options)) == 1  # a script failed

    report = json.loads(results.read_text())
    status = {b["name"]: (b["status"], b["message"]) for b in report["benchmarks"]}
    assert status["alpha"] == ("ok", "")
    assert status["broken"][0] == "failed"
    assert "the emulator would not start" in status["broken"][1]
    assert status["wrong"][0] == "failed"
    assert "'tables' is not a list" in status["wrong"][1]
    assert all(status[name] == ("missing", "not in this checkout") for name in EXPECTED)
    alpha = next(b for b in report["benchmarks"] if b["name"] == "alpha")
    assert alpha["result"]["extra"] == {"quick": True}  # --quick reached the script
    assert report["command"] == "python -m benchmarks --quick"
    assert report["machine"]["cores_usable"] >= 1
    assert {"cpu", "python", "os", "load_average"} <= set(report["machine"])

    text = readme.read_text()
    assert text.startswith("# Benchmarks\n\nintro kept\n")
    assert text.endswith(f"{END}\n\nfooter kept\n")
    assert "old table" not in text
    assert "`python -m benchmarks --quick`" in text
    assert "### Alpha | the first" in text
    assert "| arm | x |\n|---|---|\n| a | 1.5 |\n| b\\|c | 2 |" in text
    assert "- a note" in text
    assert "`bench_broken.py`: failed: exit status 1" in text
    assert "`bench_download.py`: missing" in text
    assert "Machine: " in text

    assert run(parse([*options, "--only", "alpha"])) == 0  # regenerated, not appended
    again = readme.read_text()
    assert again.count(BEGIN) == 1
    assert "bench_broken.py" not in again


def test_a_script_that_hangs_is_stopped_and_reported(tmp_path: Path) -> None:
    script = tmp_path / "bench_slow.py"
    script.write_text("import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    outcome = run_script(script, quick=True, timeout=0.5, workdir=tmp_path, echo=False)
    assert (outcome.name, outcome.status) == ("slow", "failed")
    assert outcome.message == "did not finish within 0.5 s"
    assert outcome.output == "started\n"


def test_validate_names_what_breaks_the_interface() -> None:
    good = {"benchmark": "x", "title": "t", "tables": [{"columns": ["a"], "rows": [[1]]}]}
    assert validate(good, "x") == []
    assert validate([], "x") == ["the JSON is not an object"]
    bad = {"benchmark": "y", "title": 3, "tables": [{"columns": ["a", "b"], "rows": [[1]]}]}
    assert validate(bad, "x") == [
        "'benchmark' is 'y', not 'x'",
        "'title' is not a string",
        "table 0, row 0: not a list of 2 cells",
    ]


def test_markers_are_appended_to_a_readme_without_them() -> None:
    assert replace_block("# B\n", "body") == f"# B\n\n{BEGIN}\nbody\n{END}\n"
    table = {"title": "t", "columns": ["n"], "rows": [[0.123456], [1234.5]]}
    assert markdown_table(table) == "| n |\n|---|\n| 0.123 |\n| 1234 |"


def test_the_chart_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    from benchmarks.chart import draw_timelines

    rows = [
        {
            "label": "local: batch",
            "ideal": 80.0,
            "makespan": 84.0,
            "tasks": [[0, 2, 42], [1, 42, 82]],
        },
        {"label": "url: sdk", "ideal": 80.0, "makespan": 95.0, "tasks": [[-1, 5, 45]]},
    ]
    path = tmp_path / "chart.png"
    draw_timelines(rows, path, title="two arms")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("script", sorted((ROOT / "benchmarks").glob("bench_*.py")))
def test_every_real_script_offers_the_interface(script: Path) -> None:
    """--help only: the real benchmarks never run in the tests."""
    done = subprocess.run(
        [sys.executable, str(script), "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout
    assert "--json" in done.stdout
