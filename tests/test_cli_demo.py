"""``emoclient demo``: the emulator in-process, sample inputs, a small batch, real videos."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import anyio


async def _demo(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    with anyio.fail_after(120):
        return await anyio.run_process(
            [sys.executable, "-m", "emoclient", "demo", *args],
            env={**base, **(env or {})},
            check=False,
        )


async def test_demo_renders_a_small_mixed_batch(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    # As after `make demo`: the command is in .venv/bin, which is not on PATH.
    path = {"PATH": os.defpath}
    done = await _demo("--out", str(out), "--jobs", "2,1", env=path)
    report = done.stderr.decode()
    assert done.returncode == 0, report
    videos = sorted(p.name for p in (out / "videos").glob("*.mp4"))
    assert videos == ["emo-1-1x1.mp4", "emo-2-3x4.mp4", "emoji-1-mengwa_kaixin.mp4"]
    assert all((out / "videos" / name).stat().st_size > 10_000 for name in videos)
    assert (out / "manifest.csv").read_text().startswith("image,audio,driven_id")
    assert "3 jobs: 3 succeeded" in report
    assert f"3 video(s) in {out / 'videos'}" in report

    # The next command it suggests works as printed, in a shell without the venv on PATH.
    lines = report.splitlines()
    suggested = lines[lines.index("  export DASHSCOPE_API_KEY=sk-...") + 1]
    command = shlex.split(suggested)
    assert command[0] != "emoclient"  # not on this PATH: the path of this installation's
    assert "source " in lines[-1]
    with anyio.fail_after(60):
        planned = await anyio.run_process(
            [*command, "--dry-run"], env={**os.environ, **path}, check=False
        )
    assert planned.returncode == 0, planned.stderr.decode()
    assert b"Dry run: nothing was submitted." in planned.stdout

    # A second run renders afresh into the same folder (the emulator is new each time).
    again = await _demo("--out", str(out), "--jobs", "1,0")
    assert again.returncode == 0, again.stderr.decode()
    assert sorted(p.name for p in (out / "videos").glob("*.mp4")) == ["emo-1-1x1.mp4"]


async def test_demo_without_the_emulator_extra_says_how_to_install_it(tmp_path: Path) -> None:
    # A stand-in for a missing PyAV: importing it fails as an uninstalled package would.
    fake = tmp_path / "site" / "av"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named av')\n")
    pythonpath = os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])
    done = await _demo("--out", str(tmp_path / "demo"), env={"PYTHONPATH": pythonpath})
    assert done.returncode == 2
    assert "pip install 'emoclient[emulator]'" in done.stderr.decode()
    assert b"Traceback" not in done.stderr
    assert not (tmp_path / "demo").exists()


async def test_demo_rejects_a_bad_job_count(tmp_path: Path) -> None:
    done = await _demo("--out", str(tmp_path), "--jobs", "many")
    assert done.returncode == 2
    assert "expected EMO or EMO,EMOJI counts" in done.stderr.decode()


async def test_demo_into_an_unusable_folder_is_a_message(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("a file, not a folder")
    done = await _demo("--out", str(not_a_folder / "demo"))
    report = done.stderr.decode()
    assert done.returncode == 1
    assert str(not_a_folder) in report
    assert "choose another --out folder" in report
    assert "Traceback" not in report
