"""Every script in examples/ runs as a new user would run it, against the emulator.

Each runs as a subprocess in a folder of its own, with the emulator's base URL and a key of
its own in its environment (as the scripts' docstrings tell a user to set them). The
scripts spend their time waiting for the service, so they all run at once, within one
deadline; each test then checks what one of them did.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from client_support import new_key

from emoclient import DrivenId
from emoclient.emulator import EmulatorConfig, account_label, serve

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEADLINE = 60.0
# Three templates, not twenty: Emoji's one submit a second makes all 20 take 20 s, and
# every template goes through the same code.
GALLERY = [DrivenId.MENGWA_KAIXIN, DrivenId.DAGONG_WEIXIAO, DrivenId.MENGWA_DENGYAN]


def commands(script: str, cwd: Path) -> list[list[str]]:
    """The command lines a user would type for ``script``, one after the other, in ``cwd``."""
    python = sys.executable
    if script == "make_sample_inputs.py":
        for name in ("make_sample_inputs.py", "manifest.csv"):
            shutil.copy(EXAMPLES / name, cwd / name)  # it writes its inputs beside itself
        emoclient = str(Path(python).with_name("emoclient"))
        return [[python, script], [emoclient, "batch", "manifest.csv", "--out", "videos"]]
    arguments = {
        "emoji_gallery.py": [["--templates", ",".join(GALLERY)]],
        # Twice: the second time, with the folder and the voice named.
        "folder_batch.py": [[], ["folder-batch/portraits", "folder-batch/voice.wav"]],
    }
    return [[python, str(EXAMPLES / script), *args] for args in arguments.get(script, [[]])]


SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py"))


@dataclass
class Run:
    """What one script did: its folder, the output of each command, its account's stats."""

    cwd: Path
    key: str = field(default_factory=new_key)
    outputs: list[str] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def ok(self) -> str:
        """All its output, once every command is known to have exited 0."""
        text = "\n".join(self.outputs)
        assert self.codes, "it did not run"
        assert set(self.codes) == {0}, text
        return text


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    before = sorted(p.name for p in EXAMPLES.iterdir())
    done = {name: Run(tmp_path_factory.mktemp(name.removesuffix(".py"))) for name in SCRIPTS}
    anyio.run(run_every_script, done)
    yield done
    assert sorted(p.name for p in EXAMPLES.iterdir()) == before  # nothing written there


async def run_every_script(done: dict[str, Run]) -> None:
    async with serve(EmulatorConfig.fast()) as emulator:

        async def run(run: Run, command: list[str]) -> None:
            env = {**os.environ, "DASHSCOPE_API_KEY": run.key}
            env["DASHSCOPE_HTTP_BASE_URL"] = emulator.base_url
            result = await anyio.run_process(command, cwd=run.cwd, env=env, check=False)
            run.outputs.append(result.stdout.decode() + result.stderr.decode())
            run.codes.append(result.returncode)

        async def run_all(script: str) -> None:
            for command in commands(script, done[script].cwd):
                await run(done[script], command)

        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as tg:
                for script in SCRIPTS:
                    tg.start_soon(run_all, script)
        accounts = (await emulator.stats())["accounts"]
    for each in done.values():
        each.stats = accounts.get(account_label(each.key), {})


def test_every_example_is_tested() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    for script in SCRIPTS:
        assert f'runs["{script}"]' in source, f"{script} has no test here"


def test_quickstart_makes_an_emo_and_an_emoji_video(runs: dict[str, Run]) -> None:
    run = runs["quickstart.py"]
    assert "detect: passed=True" in run.ok()
    assert _is_mp4(run.cwd / "quickstart-out" / "emo.mp4")
    assert _is_mp4(run.cwd / "quickstart-out" / "emoji.mp4")


def test_blocking_client_makes_a_video_from_sync_code(runs: dict[str, Run]) -> None:
    run = runs["blocking_client.py"]
    assert "saved blocking-out/talking.mp4" in run.ok()
    assert _is_mp4(run.cwd / "blocking-out" / "talking.mp4")


def test_folder_batch_renders_each_portrait_once_even_when_run_twice(
    runs: dict[str, Run],
) -> None:
    run = runs["folder_batch.py"]
    run.ok()
    first, again = run.outputs
    assert "{'succeeded': 3}" in first
    assert "submitted as task" not in again  # the journal knew every video
    assert "{'succeeded': 3}" in again
    videos = sorted((run.cwd / "folder-batch" / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["person-1.mp4", "person-2.mp4", "person-3.mp4"]
    assert all(_is_mp4(video) for video in videos)
    assert run.stats["submissions"] == 3  # nothing paid twice


def test_emoji_gallery_writes_a_page_of_videos(runs: dict[str, Run]) -> None:
    run = runs["emoji_gallery.py"]
    assert "3 of 3 videos" in run.ok()
    page = (run.cwd / "emoji-gallery" / "index.html").read_text(encoding="utf-8")
    sources = re.findall(r'<video src="([^"]+)"', page)
    assert sorted(sources) == sorted(f"{t}.mp4" for t in GALLERY)
    assert all(_is_mp4(run.cwd / "emoji-gallery" / name) for name in sources)
    assert run.stats["routes"]["detect"]["requests"] == 1  # once for every template


def test_cancel_and_resume_pays_for_each_video_once(runs: dict[str, Run]) -> None:
    run = runs["cancel_and_resume.py"]
    first, second = run.ok().split("Second run")
    # How many end before the stop takes effect depends on the machine's load (a task
    # RUNNING at the stop is billed, so it finishes); never all of them.
    found = re.search(r"'succeeded': (\d+)", first)
    assert found is not None
    assert 1 <= int(found[1]) < 5
    assert "'succeeded': 5" in second
    assert len(list((run.cwd / "cancel-and-resume" / "videos").glob("*.mp4"))) == 5
    assert run.stats["submissions"] == run.stats["tasks"]["SUCCEEDED"] == 5


def test_make_sample_inputs_feeds_the_manifest(runs: dict[str, Run]) -> None:
    run = runs["make_sample_inputs.py"]
    assert "5 succeeded" in run.ok()
    assert len(list((run.cwd / "videos").glob("*.mp4"))) == 5


def _is_mp4(path: Path) -> bool:
    with path.open("rb") as video:
        return video.read(8)[4:8] == b"ftyp"
