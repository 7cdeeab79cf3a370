"""docs/reliability.md is backed by tests: every row names a test that exists.

The catalogue is a set of Markdown tables whose last column is a pytest node id. These
tests read it: it has at least 80 rows, every table row names a test, no case is listed
twice, and every named test exists (the function by the test file's syntax tree, a
parametrised case by pytest's own collection of the files that hold one).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
ROW = re.compile(r"^\|(?P<case>[^|]+)\|.*\|\s*`(?P<test>tests/[^`\s][^`]*)`\s*\|\s*$")
NODE = re.compile(r"^(?P<file>tests/[\w/]+\.py)::(?P<function>\w+)(?P<param>\[.*\])?$")
MIN_ROWS = 80


def _table_lines() -> list[str]:
    """The body lines of every table: no header row, no separator row."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    body = []
    for index, line in enumerate(lines):
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if following.startswith("|") and set(following) <= set("|-: "):
            continue  # a header row
        body.append(line)
    return body


@cache
def rows() -> list[tuple[str, str]]:
    """(case, node id) of every row."""
    found = []
    for line in _table_lines():
        match = ROW.match(line)
        assert match, f"a catalogue row without a test in its last column: {line[:120]}"
        found.append((match["case"].strip(), match["test"]))
    return found


def _normalised(case: str) -> str:
    return " ".join(case.replace("`", "").lower().split())


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


def _collected(files: list[str]) -> set[str]:
    """Node ids pytest collects from ``files`` (only collection: nothing runs)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return {line for line in done.stdout.splitlines() if "::" in line}


def test_the_catalogue_has_at_least_80_rows() -> None:
    assert len(rows()) >= MIN_ROWS


def test_no_case_is_listed_twice() -> None:
    seen: dict[str, str] = {}
    for case, test in rows():
        key = _normalised(case)
        assert key not in seen, f"{case!r} is listed twice ({seen[key]} and {test})"
        seen[key] = test


def test_every_row_names_a_test_that_exists() -> None:
    parametrised: dict[str, list[str]] = {}
    for _, test in rows():
        match = NODE.match(test)
        assert match, f"{test!r} is not a node id tests/test_x.py::test_name[param]"
        path = ROOT / match["file"]
        assert path.is_file(), f"{test}: no file {match['file']}"
        assert match["function"] in _functions(path), f"{test}: no test {match['function']}"
        if match["param"]:
            parametrised.setdefault(match["file"], []).append(test)
    if parametrised:
        collected = _collected(sorted(parametrised))
        missing = [
            test for tests in parametrised.values() for test in tests if test not in collected
        ]
        assert not missing, f"no such parametrised case: {missing}"
