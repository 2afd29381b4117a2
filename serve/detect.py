"""``selfheal detect``: score a ``timestamp,value`` CSV with the streaming detector.

The output path is checked first, then the file whole, before anything is scored or
written: text that is not UTF-8 (a byte-order mark is skipped), a bad header, a row with the
wrong number of fields or an unterminated quote, an unreadable timestamp or one not after the
row before it, a missing, non-numeric or non-finite value is an error naming the file, the
line and the field, and no output is written. Then each row
is scored in order, using only the rows before it, and written as
``timestamp,value,anomaly_score`` (the input's own text for the first two fields).

``--range MIN MAX`` gives the detector the stream's range before the first row, as NAB's
runner gives its detectors (a hint, never needed: see docs/learning.md for what it is worth).
"""

from __future__ import annotations

import csv
import io
import math
import pathlib
import re
import sys
from datetime import UTC, datetime
from typing import TextIO

from healing.files import NotUtf8Error, decode_utf8
from learning.detectors import DETECTORS

from .outputs import check_output, write_atomically

__all__ = ["CsvError", "detect_file"]


class CsvError(ValueError):
    def __init__(self, path: str, line: int, field: str, reason: str) -> None:
        super().__init__(f"{path}:{line}: {field}: {reason}" if line else
                         f"{path}: {field}: {reason}")
        self.path, self.line, self.field = path, line, field


def _seconds(stamp: datetime) -> float:
    """Epoch seconds; a time without a zone is taken as UTC (only spacing matters here)."""
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


# An ASCII decimal number: float() would also take "1_000", "١٢٣" or "nan", which no
# exporter writes and which are more likely a wrong column than a value.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def _text(path: str) -> str:
    """The file as text: UTF-8, with a leading byte-order mark (Excel's) skipped."""
    try:
        data = pathlib.Path(path).read_bytes()
    except IsADirectoryError:
        raise CsvError(path, 0, "file", "is a directory, not a CSV file") from None
    except OSError as exc:
        raise CsvError(path, 0, "file", f"cannot be read ({exc.strerror})") from None
    try:
        return decode_utf8(data)
    except NotUtf8Error as exc:
        raise CsvError(path, exc.line, "file", exc.reason) from None


def _rows(path: str) -> list[tuple[str, str, float, float]]:
    out: list[tuple[str, str, float, float]] = []
    reader = csv.reader(io.StringIO(_text(path), newline=""), strict=True)
    line = 1  # where the row being read starts (a quoted field may span lines)
    try:
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["timestamp", "value"]:
            raise CsvError(path, 1, "header", f"must be 'timestamp,value', got {header!r}")
        while True:
            line = reader.line_num + 1
            row = next(reader, None)
            if row is None:
                return out
            if not row:
                continue  # a blank line carries nothing
            if len(row) != 2:
                raise CsvError(path, line, "row", f"must have 2 fields, got {len(row)}")
            out.append(_row(path, line, row, out[-1][3] if out else None))
    except csv.Error as exc:
        raise CsvError(path, line, "row", f"is not valid CSV ({exc}: an unclosed quote?)") \
            from None


def _row(path: str, line: int, row: list[str],
         previous: float | None) -> tuple[str, str, float, float]:
    stamp, raw = row[0].strip(), row[1].strip()
    try:
        at = _seconds(datetime.fromisoformat(stamp))
    except ValueError:
        raise CsvError(path, line, "timestamp",
                       f"{stamp!r} is not a date-time like 2014-07-01 00:00:00") from None
    if previous is not None and at <= previous:
        raise CsvError(path, line, "timestamp",
                       f"{stamp!r} is {'the same as' if at == previous else 'before'} the "
                       "previous row's: rows must be in time order, each time once")
    if raw == "":
        raise CsvError(path, line, "value", "is missing (selfheal does not guess "
                                            "missing values: fill or drop the row)")
    if not _NUMBER.fullmatch(raw):
        raise CsvError(path, line, "value", f"{raw!r} is not a number like 12.5 or -3e2")
    value = float(raw)
    if not math.isfinite(value):
        raise CsvError(path, line, "value", f"{raw!r} is not a finite number")
    return row[0], row[1], value, at


HINTED = ("selfheal", "deviation")  # the detectors that take a range hint


def detect_file(path: str, out: str | None, detector: str = "selfheal",
                stdout: TextIO | None = None,
                value_range: tuple[float, float] | None = None) -> int:
    """Score ``path`` into ``out`` (or stdout); returns the number of rows scored."""
    if value_range is not None:
        lo, hi = value_range
        if detector not in HINTED:
            raise CsvError("--range", 0, detector, "takes no range hint (only "
                           f"{' and '.join(HINTED)} do)")
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise CsvError("--range", 0, "MIN MAX", f"must be two finite numbers, MIN below "
                                                    f"MAX; got {lo:g} {hi:g}")
    target = check_output(out) if out is not None else None
    rows = _rows(path)
    kinds = DETECTORS[detector]
    step = kinds(value_range=value_range) if value_range is not None else kinds()
    if target is None:
        _write(rows, step, stdout if stdout is not None else sys.stdout)
        return len(rows)
    write_atomically(target, lambda f: _write(rows, step, f))
    return len(rows)


def _write(rows: list[tuple[str, str, float, float]], step: object, f: TextIO) -> None:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["timestamp", "value", "anomaly_score"])
    for stamp, raw, value, at in rows:
        w.writerow([stamp, raw, f"{step(value, at):.6f}"])  # type: ignore[operator]
