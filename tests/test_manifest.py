from __future__ import annotations

import json
from pathlib import Path

import pytest

from emoclient._batch.jobs import EmojiJob, EmoJob
from emoclient._batch.manifest import (
    ManifestError,
    ManifestJob,
    ManifestProblem,
    aread_manifest,
    read_manifest,
)

INPUT_NAMES = (
    "a.png",
    "b.png",
    "a.wav",
    "ok.png",
    "ok.wav",
    "p.png",
    "x.wav",
    "last.png",
    "i",
    "a",
)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    """Write a manifest next to (empty) input files with the names the tests use."""
    for input_name in INPUT_NAMES:
        (tmp_path / input_name).touch()
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _split(path: Path) -> tuple[list[ManifestJob], list[ManifestProblem]]:
    jobs: list[ManifestJob] = []
    problems: list[ManifestProblem] = []
    for entry in read_manifest(path):
        (jobs if isinstance(entry, ManifestJob) else problems).append(entry)  # type: ignore[arg-type]
    return jobs, problems


def _where(problems: list[ManifestProblem]) -> list[tuple[int, str]]:
    return [(p.row, p.field) for p in problems]


def test_csv_mixed_rows_become_emo_and_emoji_jobs(tmp_path: Path) -> None:
    manifest = _write(
        tmp_path,
        "m.csv",
        "image,audio,driven_id,style_level,ratio,output\n"
        "a.png,a.wav,,calm,3:4,first.mp4\n"
        "b.png,,mengwa_kaixin,,,\n"
        "https://example.com/c.jpg,oss://bucket/c.mp3,,,,third\n",
    )
    jobs, problems = _split(manifest)
    assert problems == []
    assert [j.row for j in jobs] == [2, 3, 4]
    emo, emoji, remote = (j.job for j in jobs)
    assert isinstance(emo, EmoJob)
    assert Path(str(emo.image)) == tmp_path / "a.png"
    assert Path(str(emo.audio)) == tmp_path / "a.wav"
    assert (str(emo.style_level), str(emo.ratio), emo.output) == ("calm", "3:4", "first.mp4")
    assert emo.label == "row 2"
    assert isinstance(emoji, EmojiJob)
    assert str(emoji.driven_id) == "mengwa_kaixin"
    assert emoji.output is None
    assert isinstance(remote, EmoJob)
    assert str(remote.image) == "https://example.com/c.jpg"
    assert str(remote.audio) == "oss://bucket/c.mp3"
    assert remote.output == "third.mp4"


def test_jsonl_rows_and_bboxes(tmp_path: Path) -> None:
    lines = [
        {
            "image": "a.png",
            "audio": str(tmp_path / "a.wav"),
            "face_bbox": [1, 2, 30, 40],
            "ext_bbox": [0, 0, 50, 50],
        },
        {},
        {
            "image": "b.png",
            "driven_id": "dagong_weixiao",
            "ext_bbox": "0 0 500 500",
            "face_bbox": "[10, 10, 90, 90]",
        },
    ]
    text = "\n".join(json.dumps(line) if line else "" for line in lines) + "\n"
    jobs, problems = _split(_write(tmp_path, "m.jsonl", text))
    assert problems == []
    assert [j.row for j in jobs] == [1, 3]
    emo, emoji = (j.job for j in jobs)
    assert isinstance(emo, EmoJob)
    assert Path(str(emo.audio)) == tmp_path / "a.wav"
    assert tuple(emo.face_bbox or ()) == (1, 2, 30, 40)
    assert isinstance(emoji, EmojiJob)
    assert tuple(emoji.ext_bbox or ()) == (0, 0, 500, 500)


def test_bad_csv_rows_are_named_by_row_while_good_rows_proceed(tmp_path: Path) -> None:
    manifest = _write(
        tmp_path,
        "m.csv",
        "image,audio,driven_id,style_level,ratio,output\n"
        "ok.png,ok.wav,,,,one.mp4\n"  # 2
        ",x.wav,,,,\n"  # 3 missing image
        "p.png,x.wav,mengwa_kaixin,,,\n"  # 4 both
        "p.png,,mengwa_kaixn,,,\n"  # 5 unknown driven_id
        "p.png,x.wav,,loud,,\n"  # 6 bad style_level
        "p.png,x.wav,,,16:9,\n"  # 7 bad ratio
        "p.png,x.wav,,,,ONE.mp4\n"  # 8 duplicate output
        "p.png,,,,,\n"  # 9 neither audio nor driven_id
        "p.png,,dagong_ganji,calm,,\n"  # 10 style_level on Emoji
        "p.png,x.wav,,,,clip.mov\n"  # 11 not mp4
        "p.png,x.wav,,,,sub/dir.mp4\n"  # 12 folder in output
        "nothere.png,,jingdian_lei,,,\n"  # 13 no such file
        "p.png,/abs/nothere.wav,,,,\n"  # 14 no such file
        "\n"
        "last.png,,jingdian_lei,,,\n",  # 16
    )
    jobs, problems = _split(manifest)
    assert [j.row for j in jobs] == [2, 16]
    assert _where(problems) == [
        (3, "image"),
        (4, "driven_id"),
        (5, "driven_id"),
        (6, "style_level"),
        (7, "ratio"),
        (8, "output"),
        (9, "audio"),
        (10, "style_level"),
        (11, "output"),
        (12, "output"),
        (13, "image"),
        (14, "audio"),
    ]
    by_row = {p.row: str(p) for p in problems}
    assert "mengwa_kaixin" in by_row[5]  # the close match is suggested
    assert "row 2" in by_row[8]  # the duplicate names the first row
    assert by_row[3].startswith("row 3, image:")
    assert f"{tmp_path / 'nothere.png'} does not exist" in by_row[13]


def test_bad_jsonl_lines(tmp_path: Path) -> None:
    text = (
        '{"image": "a.png", "audio": "a.wav"}\n'
        '{"image": "a.png", "audio": \n'
        "[1, 2]\n"
        '{"image": "a.png", "audo": "a.wav"}\n'
        '{"image": 5, "audio": "a.wav"}\n'
        '{"image": "a.png", "audio": "a.wav", "face_bbox": [1, 2, 3]}\n'
        '{"image": "a.png", "audio": "a.wav", "face_bbox": [1, 2, 3, 4]}\n'
        '{"image": "i", "audio": "a", "face_bbox": [9, 2, 3, 4], "ext_bbox": [0, 0, 5, 5]}\n'
    )
    jobs, problems = _split(_write(tmp_path, "m.jsonl", text))
    assert [j.row for j in jobs] == [1]
    assert _where(problems) == [
        (2, "line"),
        (3, "line"),
        (4, "audo"),
        (5, "image"),
        (6, "face_bbox"),
        (7, "ext_bbox"),
        (8, "face_bbox"),
    ]
    assert "0 <= x1 < x2" in problems[-1].message
    assert "not valid JSON" in problems[0].message


def test_unknown_csv_column_is_reported_on_the_header_row(tmp_path: Path) -> None:
    manifest = _write(tmp_path, "m.csv", "image;audio;colour\na.png;a.wav;red\n")
    jobs, problems = _split(manifest)
    assert [j.row for j in jobs] == [2]  # ';' was recognised as the delimiter
    assert _where(problems) == [(1, "colour")]


def test_csv_too_many_cells(tmp_path: Path) -> None:
    jobs, problems = _split(_write(tmp_path, "m.csv", "image,audio\na.png,a.wav,extra\n"))
    assert jobs == []
    assert _where(problems) == [(2, "row")]


def test_a_csv_row_the_reader_refuses_is_a_problem_and_the_next_rows_proceed(
    tmp_path: Path,
) -> None:
    huge = "x" * 200_000  # over the csv module's field size limit
    text = f'image,audio\n"{huge}",a.wav\nok.png,ok.wav\n'
    jobs, problems = _split(_write(tmp_path, "m.csv", text))
    assert [j.row for j in jobs] == [3]
    assert _where(problems) == [(2, "row")]
    assert "field larger than field limit" in problems[0].message


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("a\u0000b.mp4", "contains a NUL character"),
        ("tab\there.mp4", "contains control characters"),
        ("x" * 233 + ".mp4", "is 237 bytes long, over the 236"),
        ("x" * 233, "is 237 bytes long, over the 236"),  # ".mp4" is added
    ],
)
def test_an_output_name_no_file_system_takes_is_a_problem(
    tmp_path: Path, output: str, message: str
) -> None:
    # Found too late, such a name failed the download of a video already paid for.
    row = {"image": "a.png", "driven_id": "mengwa_kaixin", "output": output}
    jobs, problems = _split(_write(tmp_path, "m.jsonl", json.dumps(row) + "\n"))
    assert jobs == []
    assert [(p.row, p.field) for p in problems] == [(1, "output")]
    assert message in problems[0].message


def test_an_image_path_the_file_system_refuses_is_a_row_problem(tmp_path: Path) -> None:
    text = f"image,audio\n{'x' * 300}.png,a.wav\na.png,a.wav\n"
    jobs, problems = _split(_write(tmp_path, "m.csv", text))
    assert [j.row for j in jobs] == [3]
    assert _where(problems) == [(2, "image")]
    assert "cannot be used (File name too long)" in problems[0].message


def test_whole_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot open"):
        list(read_manifest(tmp_path / "missing.csv"))
    with pytest.raises(ManifestError, match="no 'image' column"):
        list(read_manifest(_write(tmp_path, "h.csv", "a.png,a.wav\n")))
    latin = tmp_path / "l.csv"
    latin.write_bytes("image,audio\ncaf\xe9.png,a.wav\n".encode("latin-1"))
    with pytest.raises(ManifestError, match="not UTF-8"):
        list(read_manifest(latin))


def test_format_is_sniffed_without_a_known_suffix(tmp_path: Path) -> None:
    jobs, _ = _split(_write(tmp_path, "m.txt", '{"image": "a.png", "audio": "a.wav"}\n'))
    assert [j.row for j in jobs] == [1]
    jobs, _ = _split(_write(tmp_path, "n.txt", "image,driven_id\na.png,jingdian_lei\n"))
    assert [j.row for j in jobs] == [2]


async def test_async_reading_streams_in_chunks(tmp_path: Path) -> None:
    rows = "".join(f"a.png,,mengwa_kaixin,,,out{i}.mp4\n" for i in range(1000))
    manifest = _write(
        tmp_path, "big.csv", "image,audio,driven_id,style_level,ratio,output\n" + rows
    )
    seen = [entry async for entry in aread_manifest(manifest, chunk_size=64)]
    assert len(seen) == 1000
    assert all(isinstance(e, ManifestJob) for e in seen)
    assert seen[-1].row == 1001


def test_spreadsheet_csv_with_bom_crlf_and_semicolons(tmp_path: Path) -> None:
    manifest = tmp_path / "excel.csv"
    _write(tmp_path, "unused.csv", "")
    text = "\ufeffImage;Audio;Driven_ID\r\na.png;a.wav;\r\nb.png;;mengwa_kaixin\r\n"
    manifest.write_bytes(text.encode("utf-8"))
    jobs, problems = _split(manifest)
    assert problems == []
    assert [type(j.job) for j in jobs] == [EmoJob, EmojiJob]
