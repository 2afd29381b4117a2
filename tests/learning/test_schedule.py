"""The training schedule: cron fire times, and which runs start or are missed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from healing import ConfigError
from learning.schedule import CronSchedule, TrainingScheduler


def ts(day, hour, minute=0):
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC).timestamp()


def test_fire_times_follow_the_expression_in_utc():
    s = CronSchedule("0 3 * * *")
    assert s.next_after(ts(5, 2, 59)) == ts(5, 3)
    assert s.next_after(ts(5, 3)) == ts(6, 3)  # strictly after
    assert s.fires_between(ts(5, 0), ts(8, 0)) == [ts(5, 3), ts(6, 3), ts(7, 3)]


def test_one_run_after_downtime_and_the_rest_reported_missed():
    sched = TrainingScheduler(CronSchedule("0 3 * * *"), last=ts(5, 0))
    assert sched.tick(ts(5, 2), running=False) is None
    assert sched.tick(ts(5, 3, 1), running=False) == ts(5, 3)
    assert sched.tick(ts(5, 4), running=False) is None  # nothing new is due
    # down for three days: one training now, the two before it missed
    assert sched.tick(ts(8, 3, 30), running=False) == ts(8, 3)
    assert sched.missed == [ts(6, 3), ts(7, 3)]


def test_a_fire_time_while_the_last_training_runs_is_missed_not_queued():
    sched = TrainingScheduler(CronSchedule("*/10 * * * *"), last=ts(5, 0))
    assert sched.tick(ts(5, 0, 10), running=True) is None
    assert sched.missed == [ts(5, 0, 10)]
    assert sched.tick(ts(5, 0, 20), running=False) == ts(5, 0, 20)


@pytest.mark.parametrize("expr", ["every night", "61 * * * *", "", "* * *"])
def test_a_bad_expression_names_the_setting(expr):
    with pytest.raises(ConfigError, match="training_schedule"):
        CronSchedule(expr)
