"""The README's Python examples run as written against the emulator."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import anyio
import pytest

from emoclient.emulator import RunningEmulator
from emoclient.emulator.samples import make_portrait, make_speech

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
async def test_readme_example_runs(emulator: RunningEmulator, tmp_path: Path, code: str) -> None:
    make_portrait(tmp_path / "face.jpg", fmt="jpg")
    make_speech(tmp_path / "voice.wav", seconds=2.0)
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    env = {
        **os.environ,
        "DASHSCOPE_API_KEY": "sk-readme",
        "DASHSCOPE_HTTP_BASE_URL": emulator.base_url,
    }
    done = await anyio.run_process(
        [sys.executable, str(script)], cwd=tmp_path, env=env, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert not any(line.startswith("  ! ") for line in done.stdout.decode().splitlines())
