"""Batch manifests: a CSV (with a header row) or JSONL file, one video per row.

Every row names an ``image`` and either an ``audio`` file (an EMO video) or a ``driven_id``
(an Emoji video), plus the optional ``style_level``, ``ratio`` (EMO only), ``output`` (the
video's file name), ``face_bbox`` and ``ext_bbox`` (skip detection when both are given).
Reading streams: memory stays bounded however long the manifest is, and a bad row becomes a
`ManifestProblem` naming its row number while the good rows still become jobs.
"""

from __future__ import annotations

import csv
import difflib
import json
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import anyio.to_thread

from emoclient._batch.jobs import EmojiJob, EmoJob, check_source, is_url
from emoclient._models import DRIVEN_IDS, Ratio, StyleLevel, parse_bbox
from emoclient._validate import check_output_name

__all__ = [
    "ManifestEntry",
    "ManifestError",
    "ManifestJob",
    "ManifestProblem",
    "aread_manifest",
    "read_manifest",
]

ManifestFormat = Literal["csv", "jsonl"]

FIELDS = ("image", "audio", "driven_id", "style_level", "ratio", "output", "face_bbox", "ext_bbox")
_EMO_ONLY = ("audio", "style_level", "ratio")


class ManifestError(ValueError):
    """The manifest as a whole cannot be read (missing file, unknown format, no header row)."""


@dataclass(frozen=True, slots=True)
class ManifestProblem:
    """One reason why one row of a manifest cannot become a job.

    ``row`` counts like a spreadsheet (the CSV header is row 1) or, for JSONL, like an editor
    (line numbers); ``field`` names the column at fault.
    """

    row: int
    field: str
    message: str
    #: ``"column"``: the problem is a column's (the header names one nobody knows), not a
    #: row's; it is reported once and no row is invalid because of it.
    scope: Literal["row", "column"] = "row"

    @property
    def label(self) -> str:
        return f"row {self.row}" if self.scope == "row" else f"column {self.field!r}"

    def __str__(self) -> str:
        if self.scope == "column":
            return f"header (row {self.row}), column {self.field!r}: {self.message}"
        return f"row {self.row}, {self.field}: {self.message}"


@dataclass(frozen=True, slots=True)
class ManifestJob:
    """A row that became a job; the job's label is ``"row N"``."""

    row: int
    job: EmoJob | EmojiJob


ManifestEntry = ManifestJob | ManifestProblem


def read_manifest(
    path: str | Path, *, format: ManifestFormat | None = None
) -> Generator[ManifestEntry, None, None]:
    """Yield a `ManifestJob` or `ManifestProblem`(s) per row of the manifest at *path*.

    Blocking file I/O: from async code use `aread_manifest`. The format follows the file
    suffix (``.csv``; ``.jsonl``/``.ndjson``/``.json``) or, failing that, the first character.
    Raises `ManifestError` when the file as a whole cannot be read.
    """
    path = Path(path)
    try:
        stream = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ManifestError(
            f"cannot open the manifest {path}: {exc.strerror or exc}; check the path"
        ) from exc
    with stream:
        try:
            fmt = format or _guess_format(path, stream)
            rows = _csv_rows(stream, path) if fmt == "csv" else _jsonl_rows(stream)
            found = False
            for entry in _entries(rows, base=path.parent):
                found = found or isinstance(entry, ManifestJob) or entry.scope == "row"
                yield entry
            if not found:
                below = " below its header row" if fmt == "csv" else ""
                raise ManifestError(
                    f"the manifest {path} has no rows{below}: nothing to render; add one row "
                    "per video"
                )
        except UnicodeDecodeError as exc:
            raise ManifestError(
                f"the manifest {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                "save it as UTF-8 (CSV UTF-8 in spreadsheet programs)"
            ) from exc


async def aread_manifest(
    path: str | Path, *, format: ManifestFormat | None = None, chunk_size: int = 256
) -> AsyncIterator[ManifestEntry]:
    """Like `read_manifest`, reading *chunk_size* entries at a time in a worker thread."""
    entries = read_manifest(path, format=format)
    try:
        while chunk := await anyio.to_thread.run_sync(_take, entries, chunk_size):
            for entry in chunk:
                yield entry
    finally:
        entries.close()


def _take(entries: Iterator[ManifestEntry], count: int) -> list[ManifestEntry]:
    chunk: list[ManifestEntry] = []
    for entry in entries:
        chunk.append(entry)
        if len(chunk) >= count:
            break
    return chunk


def _guess_format(path: Path, stream: TextIO) -> ManifestFormat:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    head = stream.read(4096)
    stream.seek(0)
    return "jsonl" if head.lstrip().startswith("{") else "csv"


# -- rows: (row number, raw fields) or a problem ---------------------------------------------

_Row = tuple[int, dict[str, Any]] | ManifestProblem


def _csv_rows(stream: TextIO, path: Path) -> Iterator[_Row]:
    records = _csv_records(csv.reader(stream, dialect=_sniff_dialect(stream)))
    first = next(records, (1, None))[1]
    if first is None:
        raise ManifestError(
            f"the manifest {path} is empty; its first row names the columns, e.g. "
            "image,audio,driven_id,style_level,ratio,output, then one row per video"
        )
    if isinstance(first, csv.Error):
        raise ManifestError(f"the header row of the CSV manifest {path} is not CSV ({first})")
    header = [cell.strip().lower() for cell in first]
    if "image" not in header:
        raise ManifestError(
            f"the CSV manifest {path} has no 'image' column in its first row; the first row "
            f"must name the columns, e.g. image,audio,driven_id,style_level,ratio,output"
        )
    for name in dict.fromkeys(header):
        if name and name not in FIELDS:
            close = difflib.get_close_matches(name, FIELDS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            yield ManifestProblem(
                1,
                name,
                f"unknown column, its cells are ignored; {hint}rename or remove it "
                f"(known columns: {', '.join(FIELDS)})",
                scope="column",
            )
    for row, cells in records:
        if isinstance(cells, csv.Error):
            yield ManifestProblem(row, "row", f"not readable as CSV ({cells}); fix the row")
            continue
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(header):
            yield ManifestProblem(
                row, "row", f"{len(cells)} cells but the header names {len(header)} columns"
            )
            continue
        yield row, {name: cell for name, cell in zip(header, cells, strict=False) if name in FIELDS}


def _csv_records(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str] | csv.Error]]:
    # A record the reader refuses (a field over its size limit) is that row's problem only:
    # the reader goes on with the next record.
    row = 0
    while True:
        row += 1
        try:
            yield row, next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield row, exc


def _sniff_dialect(stream: TextIO) -> type[csv.Dialect] | csv.Dialect:
    # Spreadsheets in some locales save with ';' or tabs; the header line tells which.
    head = stream.readline()
    stream.seek(0)
    try:
        return csv.Sniffer().sniff(head, delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _jsonl_rows(stream: TextIO) -> Iterator[_Row]:
    for row, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield ManifestProblem(
                row, "line", f"not valid JSON ({exc.msg} at character {exc.pos + 1}); fix the line"
            )
            continue
        if not isinstance(record, dict):
            yield ManifestProblem(row, "line", "not a JSON object; write one {...} per line")
            continue
        unknown = [key for key in record if key not in FIELDS]
        if unknown:
            yield ManifestProblem(
                row, unknown[0], f"unknown field; known fields: {', '.join(FIELDS)}"
            )
            continue
        yield row, record


# -- validation -------------------------------------------------------------------------------


def _entries(rows: Iterable[_Row], *, base: Path) -> Iterator[ManifestEntry]:
    outputs: dict[str, int] = {}
    for item in rows:
        if isinstance(item, ManifestProblem):
            yield item
            continue
        row, raw = item
        fields, problems = _clean(row, raw)
        problems = problems or _check(row, fields)
        output = fields.get("output")
        if output and not problems:
            first = outputs.setdefault(output.lower(), row)
            if first != row:
                problems.append(_duplicate(row, output, first))
        if problems:
            yield from problems
            continue
        entry = _build(row, fields, base=base)
        yield entry


def _duplicate(row: int, output: str, first: int) -> ManifestProblem:
    return ManifestProblem(
        row, "output", f"{output!r} is already the output of row {first}; give each row its own"
    )


def _clean(row: int, raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[ManifestProblem]]:
    fields: dict[str, Any] = {}
    problems: list[ManifestProblem] = []
    for name, value in raw.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if name in {"face_bbox", "ext_bbox"}:
            try:
                fields[name] = parse_bbox(value, name=name)
            except ValueError as exc:
                fields[name] = None
                problems.append(ManifestProblem(row, name, f"{exc}, or left empty"))
        elif isinstance(value, str):
            fields[name] = value.strip()
        else:
            problems.append(ManifestProblem(row, name, "must be a string (text in quotes)"))
    return fields, problems


def _check(row: int, fields: dict[str, Any]) -> list[ManifestProblem]:
    problems: list[ManifestProblem] = []
    if "image" not in fields:
        problems.append(ManifestProblem(row, "image", "missing; give the portrait's path or URL"))
    if "audio" in fields and "driven_id" in fields:
        problems.append(
            ManifestProblem(
                row,
                "driven_id",
                "a row has either audio (an EMO video) or driven_id (an Emoji video), not both; "
                "empty one of the two cells",
            )
        )
    elif "driven_id" in fields:
        problems += _check_emoji(row, fields)
    elif "audio" in fields:
        problems += _check_emo(row, fields)
    else:
        problems.append(
            ManifestProblem(
                row,
                "audio",
                "missing; give audio (for an EMO video) or driven_id (for an Emoji video)",
            )
        )
    if ("face_bbox" in fields) != ("ext_bbox" in fields):
        missing = "ext_bbox" if "face_bbox" in fields else "face_bbox"
        problems.append(
            ManifestProblem(row, missing, "give both boxes, or neither to run detection")
        )
    if "output" in fields:
        problems += _check_output(row, fields)
    return problems


def _check_emo(row: int, fields: dict[str, Any]) -> list[ManifestProblem]:
    problems = []
    for name, allowed in (("style_level", STYLE_LEVELS), ("ratio", RATIOS)):
        value = fields.get(name)
        if value is not None and value.lower() not in allowed:
            choices = ", ".join(allowed)
            problems.append(ManifestProblem(row, name, f"{value!r} is not one of {choices}"))
        elif value is not None:
            fields[name] = value.lower()
    return problems


def _check_emoji(row: int, fields: dict[str, Any]) -> list[ManifestProblem]:
    problems = [
        ManifestProblem(row, name, "applies to EMO rows only; leave it empty for Emoji rows")
        for name in _EMO_ONLY
        if name in fields and name != "audio"
    ]
    driven_id = fields["driven_id"]
    if driven_id not in DRIVEN_IDS:
        close = difflib.get_close_matches(driven_id, DRIVEN_IDS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"e.g. {DRIVEN_IDS[0]!r}"
        problems.append(
            ManifestProblem(
                row, "driven_id", f"{driven_id!r} is not one of the 20 Emoji templates; {hint}"
            )
        )
    return problems


def _check_output(row: int, fields: dict[str, Any]) -> list[ManifestProblem]:
    try:
        fields["output"] = check_output_name(fields["output"])
    except ValueError as exc:
        return [ManifestProblem(row, "output", str(exc))]
    return []


def _build(row: int, fields: dict[str, Any], *, base: Path) -> ManifestEntry:
    label = f"row {row}"
    for name in ("image", "audio"):
        try:  # a URL the service cannot fetch is not a relative path either
            check_source(fields.get(name))
        except ValueError as exc:
            return ManifestProblem(row, name, str(exc))
    image = _resolve(fields["image"], base)
    audio = _resolve(fields["audio"], base) if "audio" in fields else None
    for name, source in (("image", image), ("audio", audio)):
        if isinstance(source, Path):
            problem = _missing_file(source)
            if problem is not None:
                return ManifestProblem(row, name, problem)
    common: dict[str, Any] = {
        "output": fields.get("output"),
        "face_bbox": fields.get("face_bbox"),
        "ext_bbox": fields.get("ext_bbox"),
        "label": label,
    }
    job: EmoJob | EmojiJob
    try:
        if "driven_id" in fields:
            job = EmojiJob(image=image, driven_id=fields["driven_id"], **common)
        else:
            extra = {k: fields[k] for k in ("style_level", "ratio") if k in fields}
            job = EmoJob(image=image, audio=audio, **extra, **common)
    except (TypeError, ValueError) as exc:
        return ManifestProblem(row, _field_of(exc), _first_line(exc))
    return ManifestJob(row, job)


def _missing_file(path: Path) -> str | None:
    try:
        if path.is_file():
            return None
        what = "is a folder" if path.is_dir() else "does not exist"
    except OSError as exc:  # e.g. a name too long for the file system
        what = f"cannot be used ({exc.strerror or exc})"
    return f"{path} {what}; relative paths start at the manifest's folder"


def _resolve(value: str, base: Path) -> str | Path:
    if is_url(value):
        return value
    path = Path(value.removeprefix("file://")).expanduser()
    return path if path.is_absolute() else base / path


def _field_of(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            loc = errors()[0]["loc"]
        except (IndexError, KeyError, TypeError):
            return "row"
        return str(loc[0]) if loc else "row"
    return "row"


def _first_line(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            return str(errors()[0]["msg"]).removeprefix("Value error, ")
        except (IndexError, KeyError, TypeError):
            pass
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# The enumerations a row is checked against, taken from the jobs so that they never drift.
STYLE_LEVELS: tuple[str, ...] = tuple(StyleLevel)
RATIOS: tuple[str, ...] = tuple(Ratio)
