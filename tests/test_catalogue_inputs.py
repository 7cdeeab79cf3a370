"""Bad inputs as a shell user meets them: manifests, images, audio and flags (docs/reliability.md).

Each case is one row of the catalogue. The manifest cases share one ``emoclient batch
--dry-run`` of a manifest holding every bad row (the dry run checks every row before
anything could be paid); each test checks that its row is named with its field and the
stable part of its message. The asserted words are the part other changes should keep:
the row, the field, the file and what is wrong with it.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from emoclient._cli import main
from emoclient.emulator.samples import make_portrait, make_speech

HEADER = "image,audio,driven_id,style_level,ratio,output\n"
GOOD_ROW = "face.png,voice.wav,,,,ok.mp4\n"  # row 2

# (the row's cells, the field named, words of the message); rows 3, 4, ... in this order.
CSV_CASES = [
    pytest.param(",voice.wav,,,,", "image", "missing; give the portrait's path or URL",
                 id="image-cell-empty"),
    pytest.param("face.png,,,,,", "audio", "missing; give audio (for an EMO video) or driven_id",
                 id="neither-audio-nor-driven-id"),
    pytest.param("face.png,voice.wav,mengwa_kaixin,,,", "driven_id", "not both",
                 id="both-audio-and-driven-id"),
    pytest.param("face.png,,mengwa_kaixn,,,", "driven_id", "did you mean 'mengwa_kaixin'?",
                 id="driven-id-misspelt"),
    pytest.param("face.png,,happy_dance,,,", "driven_id",
                 "'happy_dance' is not one of the 20 Emoji templates", id="driven-id-unknown"),
    pytest.param("face.png,voice.wav,,wild,,", "style_level",
                 "'wild' is not one of normal, calm, active", id="style-level-unknown"),
    pytest.param("face.png,voice.wav,,,16:9,", "ratio", "'16:9' is not one of 1:1, 3:4",
                 id="ratio-unknown"),
    pytest.param("face.png,,mengwa_kaixin,calm,,", "style_level", "applies to EMO rows only",
                 id="emo-setting-on-an-emoji-row"),
    pytest.param("face.png,voice.wav,,,,sub/dir.mp4", "output", "", id="output-with-a-folder"),
    pytest.param("face.png,voice.wav,,,,ok.mp4", "output", "already the output of row 2",
                 id="output-used-twice"),
    pytest.param("missing.png,voice.wav,,,,", "image", "missing.png does not exist",
                 id="image-file-missing"),
    pytest.param("folder.png,voice.wav,,,,", "image", "folder.png is a folder",
                 id="image-is-a-folder"),
    pytest.param("face.png,missing.wav,,,,", "audio", "missing.wav does not exist",
                 id="audio-file-missing"),
    pytest.param("face.png,voice.wav,,,,a.mp4,extra", "row",
                 "7 cells but the header names 6 columns", id="too-many-cells"),
    pytest.param("notes.png,voice.wav,,,,", "image", "notes.png: not a JPEG, PNG, BMP or WEBP",
                 id="image-is-text"),
    pytest.param("anim.gif,voice.wav,,,,", "image", "anim.gif: not a JPEG, PNG, BMP or WEBP",
                 id="image-is-a-gif"),
    pytest.param("cut.jpg,voice.wav,,,,", "image", "cut.jpg: truncated JPEG",
                 id="image-truncated-jpeg"),
    pytest.param("tiny.png,voice.wav,,,,", "image",
                 "tiny.png is 300x300 px; each side must be 400-7000 px", id="image-too-small"),
    pytest.param("wide.png,voice.wav,,,,", "image", "wide.png is 8000x600 px",
                 id="image-too-large"),
    pytest.param("heavy.png,,mengwa_kaixin,,,", "image",
                 "heavy.png is 11.0 MB; emoji-v1 allows 10 MB", id="image-over-10-mb-for-emoji"),
    pytest.param("face.png,long.wav,,,,", "audio", "long.wav lasts 61.0 s; the limit is 60 s",
                 id="audio-over-60-s"),
    pytest.param("face.png,silent.wav,,,,", "audio", "silent.wav contains no audio",
                 id="audio-without-samples"),
    pytest.param("face.png,heavy.wav,,,,", "audio", "heavy.wav is 16.0 MB; the limit is 15 MB",
                 id="audio-over-15-mb"),
    pytest.param("face.png,song.ogg,,,,", "audio", "song.ogg: an OGG file, not WAV or MP3",
                 id="audio-is-ogg"),
    pytest.param("face.png,notes.wav,,,,", "audio", "notes.wav: neither a WAV file nor an MP3",
                 id="audio-is-text"),
]  # fmt: skip

GOOD_LINE = '{"image": "face.png", "driven_id": "mengwa_kaixin"}'  # line 1
JSONL_CASES = [
    pytest.param('{"image": "face.png", "audio": "voice.wav"', "line", "not valid JSON",
                 id="line-not-json"),
    pytest.param('["face.png", "voice.wav"]', "line", "not a JSON object", id="line-not-an-object"),
    pytest.param('{"image": "face.png", "audio": "voice.wav", "fps": 30}', "fps", "unknown field",
                 id="unknown-field"),
    pytest.param('{"image": "face.png", "audio": "voice.wav", "face_bbox": [1, 2, 3], '
                 '"ext_bbox": [0, 0, 9, 9]}', "face_bbox", "must be four whole numbers",
                 id="box-of-three-numbers"),
    pytest.param('{"image": "face.png", "audio": "voice.wav", "face_bbox": [10, 10, 50, 50]}',
                 "ext_bbox", "give both boxes, or neither", id="one-box-only"),
    pytest.param('{"image": "face.png", "audio": "voice.wav", "face_bbox": [50, 50, 10, 10], '
                 '"ext_bbox": [0, 0, 90, 90]}', "face_bbox", "0 <= x1 < x2 and 0 <= y1 < y2",
                 id="box-corners-swapped"),
    pytest.param('{"image": 5, "audio": "voice.wav"}', "image", "must be a string",
                 id="image-not-text"),
    pytest.param('{"image": "face.png", "driven_id": "mengwa_kaixin", "output": "a\\u0000b.mp4"}',
                 "output", "", id="output-with-a-control-character"),
]  # fmt: skip


def _png_header(width: int, height: int, padding: int = 0) -> bytes:
    """A PNG signature and IHDR chunk: enough for the header probe, nothing to decode."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + crc + bytes(padding)


def _wav(data_bytes: int, *, rate: int = 16000, channels: int = 1, bits: int = 16) -> bytes:
    """A PCM WAV of ``data_bytes`` bytes of silence."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    chunks = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_bytes)
    return b"RIFF" + struct.pack("<I", len(chunks) + data_bytes) + chunks + bytes(data_bytes)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good and bad portraits and audio, named by what is wrong with them."""
    folder = tmp_path_factory.mktemp("inputs")
    make_portrait(folder / "face.png", seed=1, width=480, height=640)
    make_speech(folder / "voice.wav", seconds=1.5, seed=1)
    make_portrait(folder / "tiny.png", seed=3, width=300, height=300)
    (folder / "wide.png").write_bytes(_png_header(8000, 600))
    (folder / "heavy.png").write_bytes(_png_header(1000, 1000, padding=11 * 2**20))
    (folder / "notes.png").write_text("these are my notes, not a picture\n")
    (folder / "anim.gif").write_bytes(b"GIF89a" + bytes(100))
    (folder / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    (folder / "folder.png").mkdir()
    (folder / "long.wav").write_bytes(_wav(61 * 32000))
    (folder / "silent.wav").write_bytes(_wav(0))
    (folder / "heavy.wav").write_bytes(_wav(16 * 2**20, rate=192000, channels=8, bits=32))
    (folder / "song.ogg").write_bytes(b"OggS" + bytes(200))
    (folder / "notes.wav").write_text("not a sound, just words\n" * 10)
    return folder


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``emoclient ARGV`` in this process: its exit status, stdout and stderr."""
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse's usage errors
        status = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def csv_dry_run(inputs: Path) -> tuple[int, str]:
    manifest = inputs / "bad.csv"
    rows = [str(case.values[0]) for case in CSV_CASES]
    manifest.write_text(HEADER + GOOD_ROW + "".join(f"{row}\n" for row in rows))
    return _dry_run(manifest)


@pytest.fixture(scope="module")
def jsonl_dry_run(inputs: Path) -> tuple[int, str]:
    manifest = inputs / "bad.jsonl"
    lines = [GOOD_LINE, *(str(case.values[0]) for case in JSONL_CASES)]
    manifest.write_text("".join(f"{line}\n" for line in lines))
    return _dry_run(manifest)


def _dry_run(manifest: Path) -> tuple[int, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(
            ["batch", str(manifest), "--out", str(manifest.parent / "never"), "--dry-run"]
        )
    assert "Traceback" not in err.getvalue()
    return status, out.getvalue() + err.getvalue()


def _problem_line(output: str, row: int, field: str) -> str:
    prefix = f"row {row}, {field}: "
    lines = [line.strip() for line in output.splitlines() if line.strip().startswith(prefix)]
    assert lines, f"no problem line starting {prefix!r} in:\n{output}"
    return lines[0]


@pytest.mark.parametrize(("cells", "field", "words"), CSV_CASES)
def test_a_bad_csv_row_is_named_before_anything_is_paid(
    csv_dry_run: tuple[int, str], cells: str, field: str, words: str
) -> None:
    status, output = csv_dry_run
    assert status == 1
    row = 3 + [str(case.values[0]) for case in CSV_CASES].index(cells)
    assert words in _problem_line(output, row, field)


@pytest.mark.parametrize(("line", "field", "words"), JSONL_CASES)
def test_a_bad_jsonl_line_is_named_before_anything_is_paid(
    jsonl_dry_run: tuple[int, str], line: str, field: str, words: str
) -> None:
    status, output = jsonl_dry_run
    assert status == 1
    row = 2 + [str(case.values[0]) for case in JSONL_CASES].index(line)
    assert words in _problem_line(output, row, field)


def test_only_the_good_rows_are_planned(
    csv_dry_run: tuple[int, str], jsonl_dry_run: tuple[int, str]
) -> None:
    assert f"1 video(s) to render (1 EMO, 0 Emoji), {len(CSV_CASES)} row(s)" in csv_dry_run[1]
    assert f"1 video(s) to render (0 EMO, 1 Emoji), {len(JSONL_CASES)} row(s)" in jsonl_dry_run[1]
    assert "Dry run: nothing was submitted." in csv_dry_run[1]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        pytest.param(b"image,audio\n\xff\xfeface.png,voice.wav\n", "is not UTF-8 text",
                     id="not-utf8"),
        pytest.param(b"picture,audio\nface.png,voice.wav\n", "has no 'image' column",
                     id="no-image-column"),
        pytest.param(None, "cannot open the manifest", id="manifest-is-a-folder"),
    ],
)  # fmt: skip
def test_a_manifest_that_cannot_be_read_is_one_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, words: str
) -> None:
    manifest = tmp_path / "manifest.csv"
    if content is None:
        manifest.mkdir()
    else:
        manifest.write_bytes(content)
    status, _, err = _cli(capsys, "batch", str(manifest), "--out", str(tmp_path / "o"), "--dry-run")
    assert status == 2
    assert err.startswith("emoclient batch: ")
    assert words in err
    assert "manifest.csv" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        pytest.param(["detect", "face.png", "--ratio", "16:9"],
                     ("argument --ratio: ", "'16:9'"), id="detect-ratio"),
        pytest.param(["submit", "emoji", "face.png", "--driven-id", "nope"],
                     ("argument --driven-id: ", "'nope'"), id="submit-driven-id"),
        pytest.param(["submit", "emo", "face.png", "--face-bbox", "1,2,3"],
                     ("argument --face-bbox: ", "'1,2,3'", "four whole numbers"),
                     id="submit-face-bbox"),
        pytest.param(["upload", "face.png", "--model", "wan-v1"],
                     ("argument --model: ", "'wan-v1'"), id="upload-model"),
        pytest.param(["frobnicate"], ("argument COMMAND: ", "'frobnicate'"),
                     id="unknown-command"),
        pytest.param(["batch", "m.csv"], ("the following arguments are required: --out",),
                     id="batch-without-out"),
    ],
)  # fmt: skip
def test_a_bad_flag_is_a_usage_error_naming_it(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: tuple[str, ...]
) -> None:
    status, _, err = _cli(capsys, *argv)
    assert status == 2
    for word in words:
        assert word in err


@pytest.mark.parametrize(
    ("env", "words"),
    [
        pytest.param({"DASHSCOPE_API_KEY": "sk-abc\n"},
                     "(U+000A) at position 7 of 7; check DASHSCOPE_API_KEY", id="key-with-newline"),
        pytest.param({"DASHSCOPE_HTTP_BASE_URL": "ftp://example.com/api/v1"},
                     "The base URL ftp://example.com/api/v1 (base_url= or DASHSCOPE_HTTP_BASE_URL) "
                     "is not an http(s) URL", id="base-url-ftp"),
        pytest.param({"DASHSCOPE_HTTP_BASE_URL": "http://example.com/api/v1"},
                     "is plain http to another machine", id="base-url-plain-http"),
    ],
)  # fmt: skip
def test_a_bad_setting_stops_the_batch_before_it_starts(
    inputs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    words: str,
) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-catalogue")
    monkeypatch.delenv("DASHSCOPE_HTTP_BASE_URL", raising=False)
    monkeypatch.delenv("EMOCLIENT_ALLOW_INSECURE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    manifest = tmp_path / "one.csv"
    manifest.write_text(f"image,audio\n{inputs}/face.png,{inputs}/voice.wav\n")
    status, _, err = _cli(capsys, "batch", str(manifest), "--out", str(tmp_path / "out"))
    assert status == 2
    assert words in err
    assert "sk-abc" not in err
    assert not (tmp_path / "out").exists()
