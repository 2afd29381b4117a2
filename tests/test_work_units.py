"""make test's two workers (tests/conftest.py): which tests share a unit, checked against
what the test modules use, so that a new module lands in the right one."""

from __future__ import annotations

import pathlib
import re

from tests.conftest import LIBRARY_USERS, SELF_CONTAINED, SHARED_MACHINE, work_unit

TESTS = pathlib.Path(__file__).resolve().parent
# what only the shared unit may touch: the machine's PostgreSQL (a fresh database, or the
# server stopped), the Redis database the shared stack uses, the shared API stack
SHARED_USE = re.compile(r"\bpg_url\b|\bpostgres_control\b|6379/0\b|\bstack\b"
                        r"|\bREDIS_URL\s*=|import[^\n]*\bREDIS_URL\b")


def modules():
    return sorted(p.relative_to(TESTS.parent).as_posix() for p in TESTS.rglob("test_*.py")
                  if p != pathlib.Path(__file__).resolve())


def test_the_modules_that_read_the_library_share_its_unit():
    users = [m for m in modules() if "library_data" in (TESTS.parent / m).read_text()]
    assert sorted(users) == sorted(LIBRARY_USERS)
    assert {work_unit(f"{m}::t") for m in users} == {"scenario-library"}


def test_only_the_shared_unit_touches_the_machines_stores():
    for m in modules():
        unit = work_unit(f"{m}::test_x[a/b]")
        uses = SHARED_USE.search((TESTS.parent / m).read_text())
        if unit != "machine-stores":
            assert uses is None, f"{m} uses {uses.group()} but runs outside the shared unit"
    assert work_unit("tests/actors/test_audit_trail.py::t") == "machine-stores"
    assert all(work_unit(f"{m}::t") == m for m in SELF_CONTAINED)
    assert set(SHARED_MACHINE) <= {p.name for p in TESTS.iterdir() if p.is_dir()}
