"""Files the command line writes: checked before any work starts, written whole or not at
all, with the mode a plain write would give."""

from __future__ import annotations

import contextlib
import os
import pathlib
import stat
import tempfile
from collections.abc import Callable
from typing import TextIO

__all__ = ["OutputError", "check_output", "write_atomically"]


class OutputError(ValueError):
    """An output path that cannot be written; names it and why."""


def check_output(out: str) -> pathlib.Path:
    """Where output will go, checked before any work: a file in a folder that exists."""
    target = pathlib.Path(out)
    parent = target.parent if str(target.parent) else pathlib.Path(".")
    if target.is_dir():
        raise OutputError(f"{out}: is a directory: name a file")
    if not parent.is_dir():
        raise OutputError(f"{out}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: folder {str(parent)!r} is not writable")
    return target


def write_atomically(target: pathlib.Path, write: Callable[[TextIO], None]) -> None:
    """All or nothing, with the mode a plain ``open`` would give: an existing file keeps its
    own, a new one gets the user's umask (mkstemp alone would make it 0600)."""
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as exc:  # a folder that refuses files (/proc), or one gone since the check
        raise OutputError(f"{target}: cannot be written ({exc.strerror})") from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", newline="") as f:
            write(f)
        os.replace(tmp, target)
    except OSError as exc:  # a full disk, a quota: nothing is left behind, the target unchanged
        os.unlink(tmp)
        raise OutputError(f"{target}: could not be written ({exc.strerror}); it is "
                          "unchanged") from None
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    with contextlib.suppress(OSError):  # Linux says it without changing it
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere the only way to read it: set, and put back at once
    os.umask(mask)
    return mask
