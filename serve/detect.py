"""``selfheal detect``: score a ``timestamp,value`` CSV with the streaming detector.

The file is checked whole before anything is scored or written: a bad header, a row with the
wrong number of fields, an unreadable timestamp, a missing, non-numeric or non-finite value
is an error naming the file, the line and the field, and no output is written. Then each row
is scored in order, using only the rows before it, and written as
``timestamp,value,anomaly_score`` (the input's own text for the first two fields).
"""

from __future__ import annotations

import csv
import math
import os
import pathlib
import sys
import tempfile
from datetime import UTC, datetime
from typing import TextIO

from learning.detectors import DETECTORS

__all__ = ["CsvError", "detect_file"]


class CsvError(ValueError):
    def __init__(self, path: str, line: int, field: str, reason: str) -> None:
        super().__init__(f"{path}:{line}: {field}: {reason}")
        self.path, self.line, self.field = path, line, field


def _seconds(stamp: datetime) -> float:
    """Epoch seconds; a time without a zone is taken as UTC (only spacing matters here)."""
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def _rows(path: str) -> list[tuple[str, str, float, float]]:
    out = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["timestamp", "value"]:
            raise CsvError(path, 1, "header", f"must be 'timestamp,value', got {header!r}")
        for row in reader:
            line = reader.line_num
            if not row:
                continue  # a blank line carries nothing
            if len(row) != 2:
                raise CsvError(path, line, "row", f"must have 2 fields, got {len(row)}")
            stamp, raw = row[0].strip(), row[1].strip()
            try:
                at = _seconds(datetime.fromisoformat(stamp))
            except ValueError:
                raise CsvError(path, line, "timestamp",
                               f"{stamp!r} is not a date-time like 2014-07-01 00:00:00") from None
            if raw == "":
                raise CsvError(path, line, "value", "is missing (selfheal does not guess "
                                                    "missing values: fill or drop the row)")
            try:
                value = float(raw)
            except ValueError:
                raise CsvError(path, line, "value", f"{raw!r} is not a number") from None
            if not math.isfinite(value):
                raise CsvError(path, line, "value", f"{raw!r} is not a finite number")
            out.append((row[0], row[1], value, at))
    return out


def detect_file(path: str, out: str | None, detector: str = "selfheal",
                stdout: TextIO | None = None) -> int:
    """Score ``path`` into ``out`` (or stdout); returns the number of rows scored."""
    try:
        rows = _rows(path)
    except OSError as exc:
        raise CsvError(path, 0, "file", f"cannot be read ({exc.strerror})") from None
    step = DETECTORS[detector]()
    if out is None:
        _write(rows, step, stdout if stdout is not None else sys.stdout)
        return len(rows)
    target = pathlib.Path(out)
    fd, tmp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".",
                               prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            _write(rows, step, f)
        os.replace(tmp, target)  # all or nothing
    except BaseException:
        os.unlink(tmp)
        raise
    return len(rows)


def _write(rows: list[tuple[str, str, float, float]], step: object, f: TextIO) -> None:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["timestamp", "value", "anomaly_score"])
    for stamp, raw, value, at in rows:
        w.writerow([stamp, raw, f"{step(value, at):.6f}"])  # type: ignore[operator]
