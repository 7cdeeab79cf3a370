"""Every input answered clearly, and before anything is paid: one validator for output names,
seconds and counts (Python API, manifest and CLI alike), a manifest checked whole before the
first submit, the disk checked for room, and a disk that fills up mid-run losing nothing."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from batch_support import cli_options, make_inputs, options, total_submissions
from client_support import make_client

from emoclient import (
    EmoClient,
    Rates,
    SchedulerOptions,
    UploadError,
)
from emoclient._batch import Batch
from emoclient._batch.checks import preflight
from emoclient._batch.jobs import EmojiJob, EmoJob
from emoclient._batch.manifest import ManifestError, ManifestJob, ManifestProblem, read_manifest
from emoclient._batch.queue import JobQueue
from emoclient._cli._run import run_batch
from emoclient.emulator import RunningEmulator
from emoclient.emulator.samples import make_portrait, make_speech

HEADER = "image,audio,driven_id,style_level,ratio,output\n"

BAD_OUTPUTS = [
    (".", "is a folder, not a file name"),
    ("..", "is a folder, not a file name"),
    ("dir/", "names a folder or a path"),
    ("sub/video.mp4", "names a folder or a path"),
    ("/tmp/abs.mp4", "names a folder or a path"),
    ("..\\up.mp4", "names a folder or a path"),
    ("a\0b.mp4", "contains a NUL character"),
    ("line\nbreak.mp4", "contains control characters"),
    ("clip.mov", "videos are MP4, end the name with .mp4"),
    ("CON.mp4", "reserved for a device"),
    ("nul", "reserved for a device"),
    ("x" * 240 + ".mp4", "bytes long, over the 236"),
    ("trailing.", "starts or ends with a space or ends with a dot"),
]


def _manifest_problem(tmp_path: Path, output: str) -> ManifestProblem:
    (tmp_path / "a.png").touch()
    path = tmp_path / "m.jsonl"
    row = {"image": "a.png", "driven_id": "mengwa_kaixin", "output": output}
    path.write_text(json.dumps(row) + "\n")
    (entry,) = list(read_manifest(path))
    assert isinstance(entry, ManifestProblem), entry
    return entry


@pytest.mark.parametrize(("output", "message"), BAD_OUTPUTS)
def test_the_python_api_refuses_an_output_name_as_the_manifest_does(
    tmp_path: Path, output: str, message: str
) -> None:
    # Before: EmoJob took '.', 'dir/', a NUL or a subfolder and the batch billed the job,
    # then failed its download.
    with pytest.raises(ValueError, match="output") as raised:
        EmoJob(image="face.png", audio="voice.wav", output=output)
    with pytest.raises(ValueError, match="output"):
        EmojiJob(image="face.png", driven_id="mengwa_kaixin", output=output)
    problem = _manifest_problem(tmp_path, output)
    assert problem.field == "output"
    assert message in problem.message
    assert problem.message in str(raised.value)  # the same words, wherever it comes from


@pytest.mark.parametrize(
    ("output", "message"),
    [("", "is empty"), ("  ", "is empty"), ("trailing.mp4 ", "starts or ends with a space")],
)
def test_the_python_api_refuses_names_a_manifest_cell_cannot_hold(
    output: str, message: str
) -> None:
    # (A manifest strips its cells: an empty one means "an automatic name".)
    with pytest.raises(ValueError, match=message):
        EmoJob(image="face.png", audio="voice.wav", output=output)


def test_a_good_output_name_gets_its_suffix_in_both() -> None:
    assert EmoJob(image="f.png", audio="v.wav", output="alice").output == "alice.mp4"
    assert EmoJob(image="f.png", audio="v.wav", output="Alice Talks.MP4").output == (
        "Alice Talks.MP4"
    )


async def test_a_job_copied_past_its_checks_is_refused_before_it_is_paid(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    images, sounds = make_inputs(tmp_path / "in", portraits=1, audios=1)
    good = EmoJob(image=images[0], audio=sounds[0], output="ok.mp4", label="row 2")
    sneaky = good.model_copy(update={"output": "../escape.mp4", "label": "row 3"})
    async with (
        make_client(emulator) as client,
        Batch(client, out_dir=tmp_path / "out", options=options()) as batch,
    ):
        results = {r.job.display_label: r async for r in batch.run([sneaky])}
        assert results["row 3"].status == "invalid"
        assert "names a folder or a path" in (results["row 3"].error or "")
    assert (await emulator.stats())["accounts"] == {} or all(
        a["submissions"] == 0 for a in (await emulator.stats())["accounts"].values()
    )
    async with make_client(emulator) as client, JobQueue(client, out_dir=tmp_path / "q") as queue:
        with pytest.raises(ValueError, match="names a folder or a path"):
            await queue.start(sneaky)


@pytest.mark.parametrize("bad", [-1, 0, math.nan, math.inf, -math.inf])
async def test_bad_seconds_are_refused_before_any_request(bad: float) -> None:
    with pytest.raises(ValueError, match="wait_timeout must be a positive number of seconds"):
        EmoClient("sk-x", base_url="http://127.0.0.1:9", wait_timeout=bad)
    with pytest.raises(ValueError, match="poll_interval must be a positive number"):
        EmoClient("sk-x", base_url="http://127.0.0.1:9", poll_interval=bad)
    # Port 9 answers nothing: a request would be a connection error, not this message.
    async with EmoClient("sk-x", base_url="http://127.0.0.1:9", max_retries=0) as client:
        with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
            await client.wait("task", timeout=bad)
        with pytest.raises(ValueError, match="poll_interval must be a positive number"):
            await client.wait("task", poll_interval=bad)
        with pytest.raises(ValueError, match="wait_timeout must be a positive number"):
            await client.generate_emo("f.png", "v.wav", out="x.mp4", wait_timeout=bad)
        with pytest.raises(ValueError, match="wait_timeout must be a positive number"):
            await client.generate_emoji("f.png", "mengwa_kaixin", out="x.mp4", wait_timeout=bad)
    with pytest.raises(ValueError, match="poll_min must be a positive number"):
        SchedulerOptions(poll_min=bad)
    if bad != 0:
        with pytest.raises(ValueError, match="expiry_margin must be zero or more seconds"):
            SchedulerOptions(expiry_margin=bad)


@pytest.mark.parametrize("bad", [0, -2, math.nan, 1.5, True])
async def test_bad_windows_are_refused_with_their_name(
    emulator: RunningEmulator, tmp_path: Path, bad: Any
) -> None:
    with pytest.raises((ValueError, TypeError), match="window must be"):
        SchedulerOptions(window=bad)
    with pytest.raises((ValueError, TypeError), match="window must be"):
        Rates(window=bad)
    async with make_client(emulator) as client:
        with pytest.raises((ValueError, TypeError), match="window must be"):
            Batch(client, out_dir=tmp_path, window=bad)
        with pytest.raises((ValueError, TypeError), match="max_queued must be"):
            JobQueue(client, out_dir=tmp_path, max_queued=bad)
        with pytest.raises(ValueError, match="out_dir is empty; give a folder's path"):
            Batch(client, out_dir="")
        with pytest.raises(ValueError, match="journal is empty; give a file's path"):
            Batch(client, out_dir=tmp_path, journal="")


async def test_a_job_handle_wait_refuses_a_negative_timeout(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    images, sounds = make_inputs(tmp_path / "in", portraits=1, audios=1)
    async with make_client(emulator) as client, JobQueue(client, out_dir=tmp_path / "q") as queue:
        handle = await queue.start(EmoJob(image=images[0], audio=sounds[0]))
        with pytest.raises(ValueError, match="timeout must be a positive number"):
            await handle.wait(timeout=-5)
        await handle.cancel()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    # A key (for nothing: no call is made) so that the manifest's own message shows.
    env = {**os.environ, "DASHSCOPE_API_KEY": "sk-unused"}
    env["DASHSCOPE_HTTP_BASE_URL"] = "http://127.0.0.1:9/api/v1"
    return subprocess.run(
        [sys.executable, "-m", "emoclient", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("batch", "m.csv", "--out", ""), "argument --out: the folder is empty"),
        (("batch", "m.csv", "--out", "v", "--journal", ""), "argument --journal: '' is not a path"),
        (("batch", "", "--out", "v"), "argument MANIFEST: '' is not a path"),
        (("batch", "m.csv", "--out", "v", "--window", "-3"), "--window: must be 1 or more"),
        (("wait", "t", "--timeout", "-1"), "--timeout: must be a positive number of seconds"),
        (("wait", "t", "--timeout", "nan"), "--timeout: must be a positive number of seconds"),
        (("wait", "t", "--poll-interval", "0"), "--poll-interval: must be a positive number"),
        (("demo", "--out", " "), "argument --out: the folder is empty"),
    ],
)
def test_bad_flags_are_usage_errors_naming_the_flag(args: tuple[str, ...], message: str) -> None:
    done = _cli(*args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


# -- the manifest as a whole ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("m.csv", HEADER, "has no rows below its header row: nothing to render"),
        ("m.csv", HEADER + "\n ,,,,,\n", "has no rows below its header row"),
        ("m.csv", "", "is empty; its first row names the columns"),
        ("m.jsonl", "\n\n", "has no rows: nothing to render"),
    ],
)
def test_a_manifest_without_rows_says_so(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    # Before: a manifest with only a header was a silent success with nothing done.
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ManifestError, match=message):
        list(read_manifest(path))
    for extra in (["--dry-run"], []):
        done = _cli("batch", str(path), "--out", str(tmp_path / "v"), *extra)
        assert done.returncode == 2, done.stderr
        assert message.split(":")[0] in done.stderr
        assert "Traceback" not in done.stderr


def test_an_unknown_csv_column_is_one_column_problem_not_an_invalid_row(
    inputs: Path, tmp_path: Path
) -> None:
    path = tmp_path / "m.csv"
    face, voice = inputs / "face.png", inputs / "voice.wav"
    path.write_text(f"image,audio,outptu,notes\n{face},{voice},x,hi\n{face},{voice},y,there\n")
    entries = list(read_manifest(path))
    problems = [e for e in entries if isinstance(e, ManifestProblem)]
    assert [(p.scope, p.field) for p in problems] == [("column", "outptu"), ("column", "notes")]
    assert "did you mean 'output'?" in problems[0].message
    assert str(problems[0]).startswith("header (row 1), column 'outptu': unknown column")
    assert [e.row for e in entries if isinstance(e, ManifestJob)] == [2, 3]

    done = _cli("batch", str(path), "--out", str(tmp_path / "v"), "--dry-run", "--json")
    plan = json.loads(done.stdout)
    # Before: the header row was counted as an invalid job.
    assert (plan["jobs"], plan["invalid_rows"]) == (2, 0)
    assert len([p for p in plan["problems"] if "unknown column" in p]) == 2


async def test_an_empty_input_file_is_called_empty(tmp_path: Path) -> None:
    image, audio = tmp_path / "face.png", tmp_path / "voice.wav"
    image.touch()
    audio.touch()
    problems = await preflight(EmoJob(image=image, audio=audio, label="row 4"))
    assert [str(p) for p in problems] == [
        f"row 4, image: {image} is an empty file (0 bytes); give the real image file",
        f"row 4, audio: {audio} is an empty file (0 bytes); give the real audio file",
    ]


# -- the run: checked whole before the first submit, room on the disk -------------------------


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    make_portrait(folder / "face.png", seed=1, width=480, height=640)
    make_speech(folder / "voice.wav", seconds=1.0, seed=1)
    make_portrait(folder / "tiny.png", seed=2, width=300, height=300)
    return folder


async def test_every_row_is_checked_before_the_first_submit(
    emulator: RunningEmulator, inputs: Path, tmp_path: Path
) -> None:
    # Before: a bad row late in the manifest surfaced only when the batch reached it.
    good = "".join(f"{inputs}/face.png,{inputs}/voice.wav,,,,v{i}.mp4\n" for i in range(4))
    late = (
        f"{inputs}/tiny.png,{inputs}/voice.wav,,,,small.mp4\n{inputs}/nope.png,,jingdian_lei,,,\n"
    )
    manifest = tmp_path / "m.csv"
    manifest.write_text(HEADER + good + late)
    opts = cli_options(manifest, tmp_path / "out", emulator)
    assert await run_batch(opts) == 1
    events = [json.loads(line) for line in opts.out_stream.getvalue().splitlines()]  # type: ignore[attr-defined]
    kinds = [e["event"] for e in events]
    first_paid = min(kinds.index(k) for k in ("uploaded", "detected", "submitted") if k in kinds)
    problems = [i for i, k in enumerate(kinds) if k == "manifest_problem"]
    assert [events[i]["label"] for i in problems] == ["row 6", "row 7"]
    assert max(problems) < first_paid
    assert "is 300x300 px" in events[problems[0]]["message"]
    assert total_submissions(await emulator.stats()) == 4  # the good rows still ran


async def test_an_empty_file_is_never_uploaded(emulator: RunningEmulator, tmp_path: Path) -> None:
    empty = tmp_path / "face.jpg"
    empty.touch()
    async with make_client(emulator) as client:
        with pytest.raises(UploadError, match=r"face.jpg is an empty file \(0 bytes\)"):
            await client.upload(empty, model="emo-v1")
        with pytest.raises(UploadError, match="is an empty file"):
            await client.generate_emoji(empty, "mengwa_kaixin", out=tmp_path / "x.mp4")
    assert total_submissions(await emulator.stats()) == 0


def test_a_long_manifest_probes_each_distinct_file_once(
    inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emoclient._batch import checks
    from emoclient._batch.scan import scan_manifest

    probed: list[str] = []
    real = checks._probe_file

    def counting(path: Path, kind: str, size: int) -> Any:
        probed.append(path.name)
        return real(path, kind, size)

    monkeypatch.setattr(checks, "_probe_file", counting)
    rows = "".join(f"face.png,voice.wav,,,,v{i}.mp4\n" for i in range(300))
    manifest = inputs / "long.csv"
    manifest.write_text(HEADER + rows + "tiny.png,voice.wav,,,,last.mp4\n")
    scan = scan_manifest(manifest, sample=10)
    assert sorted(probed) == ["face.png", "tiny.png", "voice.wav"]  # 301 rows, 3 files
    assert (scan.jobs, scan.rows, len(scan.sample)) == (300, 301, 10)
    assert [(row, p.field) for row, p in scan.problems] == [(302, "image")]
    assert scan.plan.billed_seconds == pytest.approx(300.0, rel=0.01)  # 1 s clips
    assert scan.plan.jobs == []  # a streaming plan keeps no jobs


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "is not a file path or URL"),
        ("   ", "is not a file path or URL"),
        ("a\0b.png", "is not a file path or URL"),
        ("ftp://example.com/a.png", "is a ftp:// URL, which the service cannot fetch"),
        ("s3://bucket/a.png", "is a s3:// URL, which the service cannot fetch"),
    ],
)
def test_an_input_that_is_neither_a_file_nor_a_fetchable_url_is_refused(
    source: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        EmoJob(image=source, audio="voice.wav")
    with pytest.raises(ValueError, match=message):
        EmoJob(image="face.png", audio=source)
    with pytest.raises(ValueError, match=message):
        EmojiJob(image=source, driven_id="mengwa_kaixin")
    for fine in ("https://example.com/a.png", "oss://bucket/a.png", "file:///tmp/a.png"):
        assert EmoJob(image=fine, audio="voice.wav").image == fine


def test_a_manifest_url_the_service_cannot_fetch_is_named_not_taken_for_a_path(
    tmp_path: Path,
) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,audio\nftp://example.com/a.png,voice.wav\n", encoding="utf-8")
    (entry,) = list(read_manifest(manifest))
    assert isinstance(entry, ManifestProblem)
    assert entry.field == "image"
    assert "'ftp://example.com/a.png' is a ftp:// URL" in entry.message
