"""``emoclient --help`` and the parser: light to build, defaults shown, templates listed once."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from emoclient._cli import build_parser, main
from emoclient._enums import DRIVEN_IDS


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emoclient", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100"},
        timeout=60,
        check=False,
    )


def test_building_the_parser_loads_no_client_code() -> None:
    # The start-up time of `emoclient --help` is measured in benchmarks/; what keeps it
    # short is that none of this is imported.
    # Only what the parser adds counts (coverage, in CI, loads sqlite3 itself).
    code = (
        "import sys; before = set(sys.modules); "
        "from emoclient._cli import build_parser; build_parser(); "
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} & "
        "{'pydantic', 'aiohttp', 'anyio', 'sqlite3', 'importlib_metadata'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_help_lists_the_commands_and_the_version_still_works() -> None:
    done = _cli("--help")
    assert done.returncode == 0
    for command in ("demo", "batch", "submit", "emulator"):
        assert f"    {command} " in done.stdout
    assert "export DASHSCOPE_API_KEY=sk-..." in done.stdout
    version = _cli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("emoclient ")


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("batch", ["(default: 2)", "(default: DIR/emoclient-journal.sqlite3)"]),
        ("emulator", ["(default: 127.0.0.1)", "(default: 8089)", "(default: 1.0)"]),
        ("wait", ["(default: 1800.0)", "(default: 3.0)"]),
        ("demo", ["(default: emoclient-demo)", "(default: 6,3;"]),
        ("submit", ["(default: normal)", "(default: 1:1)"]),
    ],
)
def test_each_commands_help_shows_its_defaults(command: str, shown: list[str]) -> None:
    text = " ".join(_cli(command, "--help").stdout.split())  # across wrapped lines
    for default in shown:
        assert default in text
    assert "(default: None)" not in text
    assert "(default: False)" not in text


def test_the_templates_are_listed_once_and_not_in_the_usage_line() -> None:
    text = _cli("submit", "--help").stdout
    usage = text.split("\n\n", 1)[0]
    assert "TEMPLATE" in usage
    assert "mengwa_kaixin" not in usage
    for template in DRIVEN_IDS:
        assert text.count(template) == 1, template


def test_a_misspelt_template_gets_a_suggestion() -> None:
    done = _cli("submit", "emoji", "face.png", "--driven-id", "mengwa_kaixn")
    assert done.returncode == 2
    assert "did you mean 'mengwa_kaixin'?" in done.stderr
    assert done.stderr.count("jingdian") == 0  # not the whole list again


@pytest.fixture
def library_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("emoclient")
    handlers, level = list(logger.handlers), logger.level
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)


@pytest.mark.parametrize(("flags", "level"), [(["-v"], logging.INFO), (["-vv"], logging.DEBUG)])
def test_verbose_switches_on_the_librarys_log(
    library_logger: logging.Logger, tmp_path: Path, flags: list[str], level: int
) -> None:
    before = len(library_logger.handlers)
    args = [*flags, "batch", str(tmp_path / "none.csv"), "--out", str(tmp_path), "--dry-run"]
    assert main(args) == 2  # no such manifest; the log was switched on first
    assert library_logger.level == level
    assert len(library_logger.handlers) == before + 1
    main(args)
    assert len(library_logger.handlers) == before + 1  # one handler however often


def test_the_parser_is_built_in_process_too() -> None:
    parser = build_parser()
    args = parser.parse_args(["-v", "batch", "m.csv", "--out", "d"])
    assert args.verbose == 1
    assert args.command == "batch"


def test_the_command_name_is_the_scripts_path_when_path_does_not_find_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emoclient._cli import _common

    script = tmp_path / ".venv" / "bin" / "emoclient"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / ".venv"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", os.defpath)
    assert _common.command_name() == ".venv/bin/emoclient"
    monkeypatch.setenv("PATH", str(script.parent))
    script.chmod(0o755)
    assert _common.command_name() == "emoclient"
    monkeypatch.chdir("/")
    monkeypatch.setenv("PATH", os.defpath)
    assert _common.command_name() == str(script)
    options = _common.BatchOptions(manifest=Path("my rows.csv"), out=Path("v"), window=3)
    assert options.command("--retry-failed") == (
        f"{script} batch 'my rows.csv' --out v --window 3 --retry-failed"
    )


def test_a_single_call_without_a_key_says_what_to_export() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    done = subprocess.run(
        [sys.executable, "-m", "emoclient", "status", "some-task"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "export DASHSCOPE_API_KEY=sk-..." in done.stderr
    assert "EmoClient(" not in done.stderr
