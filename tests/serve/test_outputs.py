"""Files the command line writes: whole or not at all, and an OS refusal is one line."""

from __future__ import annotations

import errno
import os
import pathlib

import pytest

from serve.outputs import OutputError, write_atomically
from tests.serve.test_cli_rows import one_line_error, run


def test_a_write_that_fails_part_way_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("the last report\n")

    def full_disk(f):
        f.write("half a rep")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OutputError) as err:
        write_atomically(target, full_disk)
    assert str(err.value) == (f"{target}: could not be written (No space left on device); "
                              "it is unchanged")
    assert target.read_text() == "the last report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    write_atomically(target, lambda f: f.write("new\n"))
    assert target.read_text() == "new\n"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_a_folder_that_refuses_new_files_is_named_in_one_line(tmp_path):
    """/proc exists and (as root) passes the writable check, but makes no files: each
    command said so with a traceback, the simulator after its whole run. (Not as root, the
    check before any work names it.)"""
    csv = tmp_path / "in.csv"
    csv.write_text("timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 00:05:00,2\n")
    err = one_line_error(run("detect", csv, "-o", "/proc/selfheal-out.csv"),
                         "/proc/selfheal-out.csv: ")
    assert "cannot be written" in err or "is not writable" in err
    with pytest.raises(OutputError, match="cannot be written"):
        write_atomically(pathlib.Path("/proc/selfheal-out.json"), lambda f: f.write("{}"))
