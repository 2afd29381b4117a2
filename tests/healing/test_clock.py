"""The clocks, and the rule that nothing else in the core reads time."""

from __future__ import annotations

import asyncio
import pathlib
import re

import pytest

from healing import ManualClock, SystemClock

CORE = pathlib.Path(__file__).resolve().parents[2] / "healing"


def test_manual_clock_moves_only_forward_when_told():
    c = ManualClock(start=5.0)
    assert c.now() == 5.0
    c.advance(2.5)
    c.sleep(1.5)  # a blocked thread: time passes at once
    assert c.now() == 9.0
    assert (c.utcnow() - ManualClock(start=5.0).utcnow()).total_seconds() == 4.0
    with pytest.raises(ValueError):
        c.set(1.0)
    with pytest.raises(ValueError):
        c.advance(-1)


def test_async_sleepers_wake_in_order_as_the_clock_jumps():
    c = ManualClock()
    log = []

    async def sleeper(name, s):
        await c.asleep(s)
        log.append((name, c.now()))

    async def main():
        await asyncio.gather(sleeper("b", 5), sleeper("a", 2), sleeper("c", 5))

    asyncio.run(c.run(main()))
    assert log == [("a", 2.0), ("b", 5.0), ("c", 5.0)]


def test_system_clock_is_monotonic_and_timezone_aware():
    c = SystemClock()
    assert c.now() <= c.now()
    assert c.utcnow().tzinfo is not None


def test_no_core_module_reads_time_except_the_clock():
    pattern = re.compile(r"time\.(time|monotonic|perf_counter)\b|datetime\.(now|utcnow)\("
                         r"|^\s*(import time|from time import)", re.MULTILINE)
    offenders = [p.name for p in CORE.glob("*.py")
                 if p.name != "clock.py" and pattern.search(p.read_text())]
    assert offenders == []
